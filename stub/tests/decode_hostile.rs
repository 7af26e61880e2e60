//! Decoder safety on hostile input, for every codec, through the stub's one entry point
//! `zboot_stub::decode::decode` into a fixed-size destination followed by a guard region:
//! random bytes, random bytes behind the codec's magic, every truncation of a valid stream,
//! bit flips all over a valid stream, streams whose real size exceeds the declared output, and
//! destinations larger than the stream. Each call must return (terminate), must not panic (a
//! panic fails the test), must leave the guard region untouched, and must report an error
//! unless the destination came out exactly full with the right bytes.

use std::io::Write;

use zboot_format::Codec;
use zboot_format::testdata::XorShift64;
use zboot_stub::decode::{DecodeError, decode};

const GUARD: usize = 4096;
const FILL: u8 = 0xa5;
const CODECS: [Codec; 5] = [Codec::None, Codec::Gzip, Codec::Zstd, Codec::Xz, Codec::Lz4];

/// Pseudo-random bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    XorShift64::new(seed).bytes().take(len).collect()
}

/// Kernel-ish data: runs of zeros, repeated text, noise.
fn sample(len: usize) -> Vec<u8> {
    let n = noise(7, len);
    (0..len)
        .map(|i| match (i / 512) % 4 {
            0 => 0,
            1 => b"linux kernel text "[i % 18],
            _ => n[i] & 0x3f,
        })
        .collect()
}

fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
    match codec {
        Codec::None => data.to_vec(),
        Codec::Gzip => {
            let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3];
            v.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
            let crc = 0u32; // not checked by the stub (the payload's SHA-256 is)
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v
        }
        Codec::Zstd => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
        Codec::Xz => {
            let mut o = lzma_rust2::XzOptions::with_preset(6);
            o.set_check_sum_type(lzma_rust2::CheckType::Crc32);
            let mut w = lzma_rust2::XzWriter::new(Vec::new(), o).unwrap();
            w.write_all(data).unwrap();
            w.finish().unwrap()
        }
        Codec::Lz4 => {
            // Linux legacy frame: magic, then (u32 LE size, block) pairs of <= 8 MiB output.
            let mut v = 0x184c_2102u32.to_le_bytes().to_vec();
            let c = lz4_flex::block::compress(data);
            v.extend_from_slice(&(c.len() as u32).to_le_bytes());
            v.extend_from_slice(&c);
            v
        }
    }
}

/// Decode `src` into a `len`-byte destination followed by a guard; checks the guard and
/// returns the result and the destination.
fn guarded(codec: Codec, src: &[u8], len: usize) -> (Result<(), DecodeError>, Vec<u8>) {
    // The source in an allocation of exactly its size (so an over-read is at least UB-visible
    // to Miri/ASan runs of this test).
    let src = src.to_vec().into_boxed_slice();
    let mut buf = vec![FILL; len + GUARD];
    let r = decode(codec, &src, &mut buf[..len]);
    assert!(
        buf[len..].iter().all(|&b| b == FILL),
        "{codec:?}: wrote past a {len}-byte destination ({r:?})"
    );
    buf.truncate(len);
    (r, buf)
}

#[test]
fn valid_streams_decode_exactly() {
    let data = sample(96 * 1024);
    for codec in CODECS {
        let c = compress(codec, &data);
        let (r, out) = guarded(codec, &c, data.len());
        assert_eq!(r, Ok(()), "{codec:?}");
        assert!(out == data, "{codec:?}: wrong bytes");
    }
}

#[test]
fn random_bytes_are_rejected() {
    // Magic numbers, so that random bytes reach past the first check.
    let magic: [(Codec, &[u8]); 4] = [
        (Codec::Gzip, &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]),
        (Codec::Zstd, &[0x28, 0xb5, 0x2f, 0xfd]),
        (Codec::Xz, &[0xfd, b'7', b'z', b'X', b'Z', 0]),
        (Codec::Lz4, &[0x02, 0x21, 0x4c, 0x18]),
    ];
    for seed in 1..40u64 {
        let len = (seed as usize * 97) % 5000;
        let junk = noise(seed, len);
        for codec in CODECS {
            for dst in [0usize, 1, 4096, 65536] {
                let (r, _) = guarded(codec, &junk, dst);
                if codec == Codec::None {
                    assert_eq!(r.is_ok(), len == dst, "none: {len} -> {dst}");
                } else if dst > 0 {
                    assert!(
                        r.is_err(),
                        "{codec:?}: random bytes decoded ({len} -> {dst})"
                    );
                }
            }
        }
        for (codec, m) in magic {
            let src = [m, &junk[..]].concat();
            for dst in [1usize, 4096, 65536] {
                let (r, _) = guarded(codec, &src, dst);
                assert!(r.is_err(), "{codec:?}: magic + random bytes decoded");
            }
        }
    }
}

#[test]
fn truncated_streams_are_rejected() {
    let data = sample(40 * 1024);
    for codec in CODECS {
        let c = compress(codec, &data);
        let step = (c.len() / 300).max(1);
        for cut in (0..c.len()).step_by(step).chain([c.len() - 1]) {
            let (r, _) = guarded(codec, &c[..cut], data.len());
            assert!(
                r.is_err(),
                "{codec:?}: stream cut at {cut}/{} accepted",
                c.len()
            );
        }
    }
}

#[test]
fn bit_flips_never_escape_the_destination() {
    // A flip may still decode (to wrong bytes: the payload's SHA-256 catches that); it must
    // never write outside the destination or claim success with a short/long output.
    let data = sample(40 * 1024);
    for codec in CODECS {
        let c = compress(codec, &data);
        let step = (c.len() / 400).max(1);
        let mut rejected = 0;
        let mut total = 0;
        for at in (0..c.len()).step_by(step) {
            for bit in [0u8, 3, 7] {
                let mut bad = c.clone();
                bad[at] ^= 1 << bit;
                let (r, _) = guarded(codec, &bad, data.len());
                total += 1;
                rejected += usize::from(r.is_err());
            }
        }
        if codec != Codec::None {
            assert!(rejected > 0, "{codec:?}: no flip of {total} detected");
        }
    }
}

#[test]
fn streams_longer_than_declared_are_rejected() {
    let data = sample(64 * 1024);
    for codec in CODECS {
        let c = compress(codec, &data);
        for dst in [0usize, 1, data.len() / 2, data.len() - 1] {
            let (r, out) = guarded(codec, &c, dst);
            assert!(
                r.is_err(),
                "{codec:?}: {}-byte stream fit {dst} bytes",
                data.len()
            );
            // Whatever was written is a prefix of the real data (nothing invented).
            if codec != Codec::None {
                let n = out.iter().rposition(|&b| b != FILL).map_or(0, |p| p + 1);
                assert!(n <= dst);
            }
        }
    }
}

#[test]
fn destination_must_come_out_exactly_full() {
    let data = sample(32 * 1024);
    for codec in CODECS {
        let c = compress(codec, &data);
        for extra in [1usize, 7, 4096] {
            let (r, out) = guarded(codec, &c, data.len() + extra);
            assert!(r.is_err(), "{codec:?}: {extra} bytes left unfilled but Ok");
            if let Err(DecodeError::TooShort(n)) = r {
                assert_eq!(n, data.len(), "{codec:?}: produced count");
                assert!(out[..n] == data[..], "{codec:?}: prefix differs");
            }
        }
    }
}

#[test]
fn streams_decoded_with_the_wrong_codec_fail() {
    let data = sample(16 * 1024);
    for from in CODECS {
        let c = compress(from, &data);
        for to in CODECS
            .into_iter()
            .filter(|&t| t != from && t != Codec::None)
        {
            let (r, _) = guarded(to, &c, data.len());
            assert!(r.is_err(), "{from:?} stream accepted by {to:?}");
        }
    }
}

#[test]
fn damage_in_stream_trailers_is_detected() {
    // The last bytes of a stream are checksums/sizes the output's SHA-256 does not cover:
    // zstd content checksum, gzip ISIZE, xz check + index + footer.
    let data = sample(20 * 1024);
    for codec in [Codec::Zstd, Codec::Xz] {
        let c = compress(codec, &data);
        for back in 1..=4 {
            let mut bad = c.clone();
            let at = bad.len() - back;
            bad[at] ^= 0x10;
            let (r, _) = guarded(codec, &bad, data.len());
            assert!(
                r.is_err(),
                "{codec:?}: flip {back} bytes from the end accepted"
            );
        }
    }
    let c = compress(Codec::Gzip, &data);
    let mut bad = c.clone();
    let at = bad.len() - 1;
    bad[at] ^= 0x10;
    assert!(
        guarded(Codec::Gzip, &bad, data.len()).0.is_err(),
        "gzip ISIZE"
    );
}

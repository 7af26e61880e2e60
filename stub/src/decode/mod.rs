//! Step 4: decompress the payload stream straight into the kernel's final memory.
//!
//! One file per codec; every decoder writes only inside `dst` (exactly `uncompressed_size`
//! bytes), reads only inside `src`, and must fill `dst` exactly.

#[cfg(feature = "gzip")]
mod gzip;
#[cfg(any(feature = "lz4", feature = "lz4-rust"))]
pub mod lz4;
#[cfg(feature = "lz4")]
mod lz4_c;
mod none;
#[cfg(feature = "xz")]
mod xz;
#[cfg(feature = "zstd")]
mod zstd;
#[cfg(feature = "zstd-rust")]
pub mod zstd_rust;

use zboot_format::Codec;

/// Why decoding failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The stream is malformed (the codec's own words).
    Corrupt(&'static str),
    /// The stream decodes to more bytes than the header promised.
    TooLong,
    /// The stream ended before `dst` was full (bytes produced).
    TooShort(usize),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::Corrupt(why) => write!(f, "corrupt stream: {why}"),
            DecodeError::TooLong => f.write_str("stream decodes to more than the expected size"),
            DecodeError::TooShort(n) => write!(f, "stream ended early after {n} bytes"),
        }
    }
}

/// Whether this build carries `codec`'s decoder (cargo features `zstd`, `xz`, `gzip`, `lz4`).
pub const fn supports(codec: Codec) -> bool {
    match codec {
        Codec::None => true,
        Codec::Gzip => cfg!(feature = "gzip"),
        Codec::Zstd => cfg!(any(feature = "zstd", feature = "zstd-rust")),
        Codec::Xz => cfg!(feature = "xz"),
        Codec::Lz4 => cfg!(any(feature = "lz4", feature = "lz4-rust")),
    }
}

/// Decode `src` with `codec` into `dst`, which must come out exactly full.
pub fn decode(codec: Codec, src: &[u8], dst: &mut [u8]) -> Result<(), DecodeError> {
    let produced = match codec {
        Codec::None => none::decode(src, dst)?,
        #[cfg(feature = "gzip")]
        Codec::Gzip => gzip::decode(src, dst)?,
        #[cfg(feature = "zstd")]
        Codec::Zstd => zstd::decode(src, dst)?,
        #[cfg(all(feature = "zstd-rust", not(feature = "zstd")))]
        Codec::Zstd => zstd_rust::decode(src, dst)?,
        #[cfg(feature = "xz")]
        Codec::Xz => xz::decode(src, dst)?,
        #[cfg(any(feature = "lz4", feature = "lz4-rust"))]
        Codec::Lz4 => lz4::decode(src, dst)?,
        #[allow(unreachable_patterns)]
        _ => return Err(DecodeError::Corrupt("codec not built into this stub")),
    };
    if produced == dst.len() {
        Ok(())
    } else {
        Err(DecodeError::TooShort(produced))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Kernel-like test data: some code-ish bytes (E8/E9 calls), text and zero runs.
    pub(crate) fn sample(len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        let mut g = zboot_format::testdata::XorShift64::new(12345);
        while v.len() < len {
            let x = g.next_u32();
            match (x >> 16) % 5 {
                0 => v.extend_from_slice(&[0xe8, (x >> 8) as u8, x as u8, 0, 0]),
                1 => v.extend_from_slice(b"linux kernel text "),
                2 => v.extend(core::iter::repeat_n(0u8, (x % 300) as usize)),
                _ => v.push((x >> 24) as u8),
            }
        }
        v.truncate(len);
        v
    }

    pub(crate) fn roundtrip(codec: Codec, compressed: &[u8], expect: &[u8]) {
        let mut out = vec![0u8; expect.len()];
        decode(codec, compressed, &mut out).unwrap();
        assert!(out == expect, "{codec:?} output differs");
        // A destination one byte short must fail without writing past it.
        let mut short = vec![0u8; expect.len() - 1];
        assert!(
            decode(codec, compressed, &mut short).is_err(),
            "{codec:?} short dst"
        );
        // A destination one byte long must report the short stream.
        let mut long = vec![0u8; expect.len() + 1];
        assert!(
            decode(codec, compressed, &mut long).is_err(),
            "{codec:?} long dst"
        );
        // Truncated input must fail (never panic).
        let cut = &compressed[..compressed.len() / 2];
        assert!(decode(codec, cut, &mut out).is_err(), "{codec:?} truncated");
    }

    /// Flip bytes all over the stream: the decoder may succeed with wrong data (the stream
    /// checksum catches that) but must neither panic nor write outside `dst`.
    pub(crate) fn corruption_never_panics(codec: Codec, compressed: &[u8], len: usize) {
        let mut out = vec![0u8; len];
        for i in (0..compressed.len()).step_by(compressed.len() / 97 + 1) {
            let mut bad = compressed.to_vec();
            bad[i] ^= 0x5a;
            let _ = decode(codec, &bad, &mut out);
        }
    }
}

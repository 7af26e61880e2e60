//! Every stub decode path (`zboot_stub::decode::decode`) into a fixed-size buffer.
//! Input: byte 0 selects the codec (none, gzip, zstd, xz, lz4), bytes 1..3 the declared output
//! size (u16 LE, so at most 64 KiB), the rest is the stream. The source is copied into an
//! allocation of exactly its size (AddressSanitizer catches reads past it); the destination is
//! followed by a guard region that must come out untouched. Success means `dst` is exactly full.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zboot_format::Codec;

const GUARD: usize = 4096;
const CODECS: [Codec; 5] = [Codec::None, Codec::Gzip, Codec::Zstd, Codec::Xz, Codec::Lz4];

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let codec = CODECS[data[0] as usize % CODECS.len()];
    let len = u16::from_le_bytes([data[1], data[2]]) as usize;
    let src = data[3..].to_vec();
    let mut buf = vec![0xa5u8; len + GUARD];
    let r = zboot_stub::decode::decode(codec, &src, &mut buf[..len]);
    assert!(
        buf[len..].iter().all(|&b| b == 0xa5),
        "{codec:?} wrote past the destination ({r:?})"
    );
    if codec == Codec::None {
        assert_eq!(
            r.is_ok(),
            src.len() == len,
            "stored stream must be exactly dst"
        );
    }
});

//! Deterministic pseudo-random test data for the tests of every crate in the workspace: one
//! generator (xorshift64), so that a seed means the same bytes everywhere. Test-only (feature
//! `testdata`); the stub's boot-time randomness is its own (stub/src/rng.rs). And a valid
//! payload header for a stored stream, the start of every header a test needs.

use crate::header::{Arch, Flags, PayloadHeader, sha256};
use crate::{Codec, X86_KERNEL_ALIGN, X86_START_KERNEL_MAP, checksum};

/// Marsaglia's xorshift64 (13, 7, 17). Not for anything but test inputs.
#[derive(Clone, Debug)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator from `seed` (0, which xorshift cannot leave, is replaced by a constant).
    pub const fn new(seed: u64) -> XorShift64 {
        XorShift64(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// The next 32 bits (the high half: xorshift's low bits are its weakest).
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// The next byte.
    pub fn next_u8(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }

    /// An endless stream of bytes (collect a `take(n)` for a buffer).
    pub fn bytes(mut self) -> impl Iterator<Item = u8> {
        core::iter::from_fn(move || Some(self.next_u8()))
    }
}

/// A valid x86_64 payload header for `stream` stored as is (codec none, no filters, no
/// relocations): 2 MiB at 16 MiB, its checksums and digest, no command line or initrd. Tests
/// change what they exercise with struct update syntax.
pub fn stored_header(stream: &[u8]) -> PayloadHeader {
    PayloadHeader {
        arch: Arch::X86_64,
        codec: Codec::None,
        flags: Flags(0),
        compressed_size: stream.len() as u64,
        uncompressed_size: stream.len() as u64,
        image_size: stream.len() as u64,
        mem_size: X86_KERNEL_ALIGN
            .max(stream.len() as u64)
            .next_multiple_of(X86_KERNEL_ALIGN),
        alignment: X86_KERNEL_ALIGN,
        preferred_address: 16 << 20,
        entry_offset: 0,
        link_virt_base: X86_START_KERNEL_MAP + (16 << 20),
        relocs_offset: 0,
        relocs_count64: 0,
        relocs_count_inv32: 0,
        relocs_count32: 0,
        xloadflags: 0,
        boot_protocol: 0,
        cmdline_rva: 0,
        cmdline_size: 0,
        initrd_rva: 0,
        initrd_size: 0,
        text_size: 0,
        nx_end: 0,
        image_sha256: sha256(&[stream]),
        stream_check: checksum::of(stream),
        cmdline_check: checksum::of(&[]),
        initrd_check: checksum::of(&[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_not_constant() {
        let a: [u8; 64] = core::array::from_fn({
            let mut g = XorShift64::new(7);
            move |_| g.next_u8()
        });
        let mut bytes = XorShift64::new(7).bytes();
        let b: [u8; 64] = core::array::from_fn(|_| bytes.next().unwrap());
        assert_eq!(a, b);
        assert!(a.iter().any(|&x| x != a[0]));
        let mut z = XorShift64::new(0);
        assert_ne!(z.next_u64(), 0);
        assert_ne!(XorShift64::new(1).next_u64(), XorShift64::new(2).next_u64());
    }

    #[test]
    fn stored_header_is_valid() {
        let h = stored_header(&[1; 5000]);
        assert_eq!(h.validate(5000), Ok(()));
    }
}

//! Step 4, shared by the EFI and the bzImage pipelines: the compressed kernel checked, decoded
//! straight into its region, its filters undone, relocated, the rest of the region cleared.
//! Pure logic over byte slices (tested on the host); the caller's [`Clock`] times each stage.

use crate::decode::{self, DecodeError};
use zboot_format::filters;
use zboot_format::header::PayloadHeader;
use zboot_format::relocs::{RelocError, RelocTable};

/// Why unpacking stopped. Nothing was decoded on [`UnpackError::StreamChecksum`] or
/// [`UnpackError::Region`]; on the others the region holds partial bytes nobody may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnpackError {
    /// The region is smaller than the header's `mem_size`, or the header's sizes contradict
    /// each other (it did not pass [`PayloadHeader::validate`]).
    Region,
    /// The compressed stream does not match the header's `stream_check`.
    StreamChecksum,
    Decode(DecodeError),
    Relocs(RelocError),
}

/// A monotonic clock for the stages' timings (the stub's TSC; a host test's zero).
pub trait Clock {
    /// A point in time.
    fn now(&self) -> u64;
    /// Milliseconds since `start`.
    fn ms_since(&self, start: u64) -> u64;
}

/// How long each stage took, in milliseconds of the caller's [`Clock`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    pub check_ms: u64,
    pub decode_ms: u64,
    pub filters_ms: u64,
}

/// Unpack `compressed` into `region` (at least `h.mem_size` bytes) with the virtual KASLR
/// displacement `delta`: check, decode, undo the filters, apply the relocation table (which
/// sits in the decoded stream after the image), clear everything after the image.
pub fn unpack(
    h: &PayloadHeader,
    compressed: &[u8],
    region: &mut [u8],
    delta: u64,
    clock: &impl Clock,
) -> Result<Timings, UnpackError> {
    let (image_len, decoded_len) = (h.image_size as usize, h.uncompressed_size as usize);
    let region = region
        .get_mut(..h.mem_size as usize)
        .filter(|r| image_len <= decoded_len && decoded_len <= r.len())
        .ok_or(UnpackError::Region)?;
    let mut timings = Timings::default();
    // Integrity first: no decoder ever sees bytes that fail the stream's checksum. The decoded
    // stream is then fixed by verified input, exact-size filling and the codec's own checksum
    // (zstd, xz); checking 60+ MB again here would cost seconds (docs/format.md).
    let t = clock.now();
    if !h.stream_intact(compressed) {
        return Err(UnpackError::StreamChecksum);
    }
    timings.check_ms = clock.ms_since(t);
    let t = clock.now();
    decode::decode(h.codec, compressed, &mut region[..decoded_len]).map_err(UnpackError::Decode)?;
    timings.decode_ms = clock.ms_since(t);
    let t = clock.now();
    filters::undo(h.flags, filters::Span::of(h), &mut region[..decoded_len]);
    timings.filters_ms = clock.ms_since(t);
    if h.flags.has(zboot_format::Flags::RELOCS) {
        relocate(h, &mut region[..decoded_len], delta).map_err(UnpackError::Relocs)?;
    }
    region[image_len..].fill(0);
    Ok(timings)
}

/// Apply the table at `h.relocs_offset` of the decoded `stream` to its image part.
fn relocate(h: &PayloadHeader, stream: &mut [u8], delta: u64) -> Result<(), RelocError> {
    let (image, rest) = stream.split_at_mut(h.image_size as usize);
    let table_at = h.relocs_offset.saturating_sub(h.image_size) as usize;
    let table = RelocTable::parse(rest.get(table_at..).ok_or(RelocError::BadLength)?)?;
    table.check_counts(h.relocs_count64, h.relocs_count_inv32, h.relocs_count32)?;
    table.apply(image, h.link_virt_base, delta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zboot_format::{Flags, checksum};

    struct NoClock;
    impl Clock for NoClock {
        fn now(&self) -> u64 {
            0
        }
        fn ms_since(&self, _: u64) -> u64 {
            0
        }
    }

    const BASE: u64 = 0xffff_ffff_8100_0000;
    const IMAGE: usize = 3 * 4096;
    const MEM: u64 = 0x20_0000;
    const DELTA: u64 = 0x40_0000;
    /// A 64-bit pointer, an inverse 32-bit and a 32-bit relocation target in the image.
    const AT64: usize = 0x100;
    const AT_INV32: usize = 0x208;
    const AT32: usize = 0x310;

    /// A kernel image with three relocated words and a call-heavy text (for the BCJ filter).
    fn image() -> Vec<u8> {
        let mut img: Vec<u8> = (0..IMAGE).map(|i| (i * 7 % 251) as u8).collect();
        for at in (0x1000..0x2000).step_by(16) {
            img[at] = 0xe8; // x86 CALL rel32: what the BCJ filter rewrites
        }
        img[AT64..AT64 + 8].copy_from_slice(&(BASE + 0x2000).to_le_bytes());
        img[AT_INV32..AT_INV32 + 4].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        img[AT32..AT32 + 4].copy_from_slice(&((BASE + 0x10) as u32).to_le_bytes());
        img
    }

    /// Linux's relocs format: 0, 64-bit entries, 0, inverse 32-bit entries, 0, 32-bit entries.
    fn table() -> Vec<u8> {
        let entry = |off: usize| ((BASE + off as u64) as u32).to_le_bytes();
        [
            [0; 4],
            entry(AT64),
            [0; 4],
            entry(AT_INV32),
            [0; 4],
            entry(AT32),
        ]
        .concat()
    }

    /// The stored stream of codec `none` (filters applied) and its header.
    fn payload(flags: u16) -> (PayloadHeader, Vec<u8>) {
        let flags = Flags(flags);
        let mut stream = [image(), table()].concat();
        let span = filters::Span {
            image_size: IMAGE as u64,
            text_size: 0,
        };
        filters::apply(flags, span, &mut stream);
        let relocs = flags.has(Flags::RELOCS);
        let h = PayloadHeader {
            flags,
            uncompressed_size: if relocs { stream.len() } else { IMAGE } as u64,
            image_size: IMAGE as u64,
            mem_size: MEM,
            alignment: MEM,
            preferred_address: 0x100_0000,
            link_virt_base: BASE,
            relocs_offset: if relocs { IMAGE as u64 } else { 0 },
            relocs_count64: relocs as u32,
            relocs_count_inv32: relocs as u32,
            relocs_count32: relocs as u32,
            ..zboot_format::testdata::stored_header(&stream)
        };
        let stream = if relocs {
            stream
        } else {
            stream[..IMAGE].to_vec()
        };
        let h = PayloadHeader {
            compressed_size: stream.len() as u64,
            stream_check: checksum::of(&stream),
            ..h
        };
        h.validate(stream.len() as u64)
            .expect("a valid test header");
        (h, stream)
    }

    fn word(b: &[u8], at: usize, n: usize) -> u64 {
        let mut w = [0u8; 8];
        w[..n].copy_from_slice(&b[at..at + n]);
        u64::from_le_bytes(w)
    }

    #[test]
    fn check_decode_filters_relocations_and_bss() {
        let (h, stream) = payload(Flags::RELOCS | Flags::BCJ_X86 | Flags::RELOCS_DELTA);
        let want = image();
        assert_ne!(
            stream[0x1000..0x2000],
            want[0x1000..0x2000],
            "BCJ left the text alone"
        );
        assert_ne!(stream[IMAGE..], table()[..], "the table is not delta-coded");
        let mut region = vec![0xaa; MEM as usize];
        unpack(&h, &stream, &mut region, DELTA, &NoClock).unwrap();
        // Filters undone: the text is the kernel's again (where nothing was relocated).
        assert_eq!(region[0x1000..0x2000], want[0x1000..0x2000]);
        assert_eq!(word(&region, AT64, 8), BASE + 0x2000 + DELTA);
        assert_eq!(
            word(&region, AT_INV32, 4),
            u64::from(0x1234_5678u32 - DELTA as u32)
        );
        assert_eq!(
            word(&region, AT32, 4),
            u64::from((BASE + 0x10 + DELTA) as u32)
        );
        // The relocation table and everything after the image: cleared (the kernel's bss).
        assert!(region[IMAGE..].iter().all(|&b| b == 0));
    }

    #[test]
    fn without_relocations_the_image_is_taken_as_linked() {
        let (h, stream) = payload(0);
        let mut region = vec![0xaa; MEM as usize];
        unpack(&h, &stream, &mut region, 0, &NoClock).unwrap();
        assert_eq!(region[..IMAGE], image()[..]);
        assert!(region[IMAGE..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_damaged_stream_is_refused_before_a_byte_is_decoded() {
        let (h, mut stream) = payload(Flags::RELOCS);
        stream[IMAGE / 2] ^= 1;
        let mut region = vec![0xaa; MEM as usize];
        let err = unpack(&h, &stream, &mut region, DELTA, &NoClock);
        assert_eq!(err, Err(UnpackError::StreamChecksum));
        assert!(region.iter().all(|&b| b == 0xaa));
    }

    #[test]
    fn counts_that_contradict_the_table_are_refused() {
        let (mut h, stream) = payload(Flags::RELOCS);
        h.relocs_count64 = 2;
        h.relocs_count32 = 0;
        let mut region = vec![0; MEM as usize];
        let err = unpack(&h, &stream, &mut region, DELTA, &NoClock);
        assert_eq!(err, Err(UnpackError::Relocs(RelocError::CountMismatch)));
    }

    #[test]
    fn an_entry_outside_the_image_is_refused_and_nothing_relocated() {
        let (mut h, mut stream) = payload(Flags::RELOCS);
        let bad = (BASE as u32 + IMAGE as u32).to_le_bytes();
        stream[IMAGE + 4..IMAGE + 8].copy_from_slice(&bad);
        h.stream_check = checksum::of(&stream);
        let mut region = vec![0; MEM as usize];
        let err = unpack(&h, &stream, &mut region, DELTA, &NoClock);
        assert!(matches!(
            err,
            Err(UnpackError::Relocs(RelocError::OutOfImage { .. }))
        ));
        assert_eq!(word(&region, AT32, 4), u64::from((BASE + 0x10) as u32));
    }

    #[test]
    fn a_region_smaller_than_the_kernel_is_refused() {
        let (h, stream) = payload(0);
        let mut region = vec![0xaa; MEM as usize - 4096];
        let err = unpack(&h, &stream, &mut region, 0, &NoClock);
        assert_eq!(err, Err(UnpackError::Region));
        assert!(region.iter().all(|&b| b == 0xaa));
    }
}

//! The reversible transforms between a kernel's decoded stream (image + relocation table, the
//! bytes `image_sha256` covers) and the bytes the codec compresses. Which ones a payload used is
//! in its header flags; the packer [`apply`]s them before compressing, the stub and the packer's
//! `verify`/`extract` [`undo`] them after decoding.
//!
//! - `BCJ_X86`: the x86 BCJ filter over the image (`0..image_size`).
//! - `RELOCS_DELTA`: the relocation table (`image_size..`) delta-coded.

use crate::Flags;
use crate::bcj::{Direction, X86Bcj};
use crate::relocs;

/// The image and table parts of a stream (the table part is empty without relocations).
fn split(stream: &mut [u8], image_size: u64) -> (&mut [u8], &mut [u8]) {
    let at = usize::try_from(image_size).map_or(stream.len(), |n| n.min(stream.len()));
    stream.split_at_mut(at)
}

/// Turn a decoded stream into the stored one, in place.
pub fn apply(flags: Flags, image_size: u64, stream: &mut [u8]) {
    let (image, table) = split(stream, image_size);
    if flags.has(Flags::BCJ_X86) {
        X86Bcj::run_all(Direction::Encode, image);
    }
    if flags.has(Flags::RELOCS_DELTA) {
        relocs::delta_encode(table);
    }
}

/// Turn a stored stream back into the decoded one, in place.
pub fn undo(flags: Flags, image_size: u64, stream: &mut [u8]) {
    let (image, table) = split(stream, image_size);
    if flags.has(Flags::BCJ_X86) {
        X86Bcj::run_all(Direction::Decode, image);
    }
    if flags.has(Flags::RELOCS_DELTA) {
        relocs::delta_decode(table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_inverts_apply_for_every_flag_set() {
        let mut orig = [0u8; 64];
        for (i, b) in orig.iter_mut().enumerate() {
            *b = [0xe8, 0x10, 0x20, 0x00, 0x00, 0x41][i % 6];
        }
        for bits in 0..16u16 {
            let flags = Flags(bits & (Flags::BCJ_X86 | Flags::RELOCS_DELTA));
            for image_size in [0u64, 30, 64, 1 << 40] {
                let mut s = orig;
                apply(flags, image_size, &mut s);
                undo(flags, image_size, &mut s);
                assert_eq!(s, orig, "{flags:?} {image_size}");
            }
        }
        let mut s = orig;
        apply(Flags(Flags::BCJ_X86), 30, &mut s);
        assert_ne!(&s[..30], &orig[..30]);
        assert_eq!(&s[30..], &orig[30..], "BCJ stays inside the image");
    }
}

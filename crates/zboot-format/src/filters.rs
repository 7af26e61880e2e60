//! The reversible transforms between a kernel's decoded stream (image + relocation table, the
//! bytes `image_sha256` covers) and the bytes the codec compresses. Which ones a payload used is
//! in its header flags; the packer [`apply`]s them before compressing, the stub and the packer's
//! `verify`/`extract` [`undo`] them after decoding.
//!
//! - `BCJ_X86`: the x86 BCJ filter over the image (`0..image_size`), or, with `BCJ_TEXT`, over
//!   the kernel's text only (`0..text_size`).
//! - `RELOCS_DELTA`: the relocation table (`image_size..`) delta-coded.

use crate::bcj::{Direction, X86Bcj};
use crate::relocs;
use crate::{Flags, PayloadHeader};

/// Where in the decoded stream the filters act.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Bytes of image before the relocation table.
    pub image_size: u64,
    /// Bytes of kernel text at the image's start (`text_size`: the BCJ's extent with
    /// `BCJ_TEXT`).
    pub text_size: u64,
}

impl Span {
    /// The span a payload header describes.
    pub fn of(h: &PayloadHeader) -> Span {
        Span {
            image_size: h.image_size,
            text_size: u64::from(h.text_size),
        }
    }

    /// Bytes from the image's start that the BCJ filter covers under `flags`.
    pub fn bcj_len(self, flags: Flags) -> u64 {
        if flags.has(Flags::BCJ_TEXT) {
            self.text_size.min(self.image_size)
        } else {
            self.image_size
        }
    }
}

/// `stream[..n]` and the rest, `n` clamped to the stream.
fn split_at(stream: &mut [u8], n: u64) -> (&mut [u8], &mut [u8]) {
    let at = usize::try_from(n).map_or(stream.len(), |n| n.min(stream.len()));
    stream.split_at_mut(at)
}

/// Turn a decoded stream into the stored one, in place.
pub fn apply(flags: Flags, span: Span, stream: &mut [u8]) {
    let (image, table) = split_at(stream, span.image_size);
    if flags.has(Flags::BCJ_X86) {
        X86Bcj::run_all(Direction::Encode, split_at(image, span.bcj_len(flags)).0);
    }
    if flags.has(Flags::RELOCS_DELTA) {
        relocs::delta_encode(table);
    }
}

/// Turn a stored stream back into the decoded one, in place.
pub fn undo(flags: Flags, span: Span, stream: &mut [u8]) {
    let (image, table) = split_at(stream, span.image_size);
    if flags.has(Flags::BCJ_X86) {
        X86Bcj::run_all(Direction::Decode, split_at(image, span.bcj_len(flags)).0);
    }
    if flags.has(Flags::RELOCS_DELTA) {
        relocs::delta_decode(table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(image_size: u64, text_size: u64) -> Span {
        Span {
            image_size,
            text_size,
        }
    }

    #[test]
    fn undo_inverts_apply_for_every_flag_set() {
        let mut orig = [0u8; 64];
        for (i, b) in orig.iter_mut().enumerate() {
            *b = [0xe8, 0x10, 0x20, 0x00, 0x00, 0x41][i % 6];
        }
        let filters = Flags::BCJ_X86 | Flags::RELOCS_DELTA | Flags::BCJ_TEXT;
        for bits in 0..64u16 {
            let flags = Flags(bits & filters);
            for (image_size, text_size) in [(0u64, 0), (30, 12), (64, 64), (1 << 40, 1 << 41)] {
                let mut s = orig;
                apply(flags, span(image_size, text_size), &mut s);
                undo(flags, span(image_size, text_size), &mut s);
                assert_eq!(s, orig, "{flags:?} {image_size} {text_size}");
            }
        }
    }

    #[test]
    fn bcj_stays_inside_the_image_or_its_text() {
        let mut orig = [0u8; 64];
        for (i, b) in orig.iter_mut().enumerate() {
            *b = [0xe8, 0x10, 0x20, 0x00, 0x00, 0x41][i % 6];
        }
        let mut s = orig;
        apply(Flags(Flags::BCJ_X86), span(30, 12), &mut s);
        assert_ne!(&s[..30], &orig[..30]);
        assert_eq!(&s[30..], &orig[30..], "BCJ stays inside the image");
        let mut t = orig;
        apply(
            Flags(Flags::BCJ_X86 | Flags::BCJ_TEXT),
            span(30, 12),
            &mut t,
        );
        assert_eq!(&t[..12], &s[..12], "the text filtered as before");
        assert_eq!(&t[12..], &orig[12..], "nothing after the text");
    }
}

//! The x86 kernel relocation table (`vmlinux.relocs`, written by arch/x86/tools/relocs).
//!
//! Layout, little-endian u32 words: `0, rel64..., 0, inv32..., 0, rel32...`. Each entry is the low
//! 32 bits of a kernel virtual address; sign-extended to 64 bits it names a location in the image
//! (`vaddr - link_virt_base` bytes from its start). Applying a virtual displacement `delta`
//! (arch/x86/boot/compressed/misc.c `handle_relocations`): 32-bit entries `+= delta` (u32, wrapping),
//! inverse 32-bit entries `-= delta`, 64-bit entries `+= delta`.
//!
//! Linux reads the table backwards from the end of the decompressed kernel; here its start and
//! length are known, and parsing checks that the three separators sit exactly where a table with
//! the given structure has them.
//!
//! In a payload the table may be stored delta-coded (header flag `RELOCS_DELTA`): word `i` holds
//! `table[i] - table[i - 1]` (wrapping, `table[-1] = 0`). [`delta_encode`] and [`delta_decode`]
//! convert in place.

/// Why a relocation table was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocError {
    /// Length not a multiple of 4, or shorter than the three separators.
    BadLength,
    /// The first word is not the zero separator.
    MissingLeadingZero,
    /// Fewer than three zero separators (or more: entries are never zero).
    BadSeparators,
    /// An entry names a location outside the image (or too close to its end).
    OutOfImage { entry: u32 },
    /// Counts do not match the table.
    CountMismatch,
}

impl RelocError {
    pub const fn message(self) -> &'static str {
        match self {
            RelocError::BadLength => "relocation table length is not a multiple of 4 or too short",
            RelocError::MissingLeadingZero => {
                "relocation table does not start with a zero separator"
            }
            RelocError::BadSeparators => {
                "relocation table does not have exactly three zero separators"
            }
            RelocError::OutOfImage { .. } => "relocation entry points outside the kernel image",
            RelocError::CountMismatch => "relocation counts do not match the table",
        }
    }
}

impl core::fmt::Display for RelocError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RelocError::OutOfImage { entry } => {
                write!(f, "{} (entry {entry:#010x})", self.message())
            }
            _ => f.write_str(self.message()),
        }
    }
}

/// Size in bytes of a table with the given counts (three separators included).
pub const fn table_size(count64: u32, count_inv32: u32, count32: u32) -> u64 {
    (count64 as u64 + count_inv32 as u64 + count32 as u64 + 3) * 4
}

/// A parsed table: three lists of raw little-endian u32 entries.
#[derive(Clone, Copy, Debug)]
pub struct RelocTable<'a> {
    pub rel64: &'a [u8],
    pub inv32: &'a [u8],
    pub rel32: &'a [u8],
}

fn words(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

impl<'a> RelocTable<'a> {
    /// Split a table into its three lists.
    pub fn parse(table: &'a [u8]) -> Result<Self, RelocError> {
        if !table.len().is_multiple_of(4) || table.len() < 12 {
            return Err(RelocError::BadLength);
        }
        if table[..4] != [0; 4] {
            return Err(RelocError::MissingLeadingZero);
        }
        let mut zeros = [0usize; 3];
        let mut n = 0;
        for (i, w) in words(table).enumerate() {
            if w == 0 {
                if n == 3 {
                    return Err(RelocError::BadSeparators);
                }
                zeros[n] = i * 4;
                n += 1;
            }
        }
        if n != 3 {
            return Err(RelocError::BadSeparators);
        }
        Ok(RelocTable {
            rel64: &table[4..zeros[1]],
            inv32: &table[zeros[1] + 4..zeros[2]],
            rel32: &table[zeros[2] + 4..],
        })
    }

    /// Entry counts: (64-bit, inverse 32-bit, 32-bit).
    pub fn counts(&self) -> (u32, u32, u32) {
        let n = |s: &[u8]| (s.len() / 4) as u32;
        (n(self.rel64), n(self.inv32), n(self.rel32))
    }

    /// Check the counts recorded elsewhere (the payload header) against the table.
    pub fn check_counts(
        &self,
        count64: u32,
        count_inv32: u32,
        count32: u32,
    ) -> Result<(), RelocError> {
        if self.counts() == (count64, count_inv32, count32) {
            Ok(())
        } else {
            Err(RelocError::CountMismatch)
        }
    }

    /// Check that every entry names a location inside an image of `image_size` bytes linked at
    /// virtual address `link_virt_base`.
    pub fn validate(&self, link_virt_base: u64, image_size: u64) -> Result<(), RelocError> {
        self.for_each_target(link_virt_base, image_size, |_, _| {})
    }

    /// Apply the virtual displacement `delta` to `image` (linked at `link_virt_base`).
    /// Validates every entry before writing anything, so a bad table leaves `image` untouched.
    pub fn apply(
        &self,
        image: &mut [u8],
        link_virt_base: u64,
        delta: u64,
    ) -> Result<(), RelocError> {
        self.validate(link_virt_base, image.len() as u64)?;
        self.for_each_target(link_virt_base, image.len() as u64, |kind, off| {
            let off = off as usize;
            match kind {
                Kind::Rel64 => {
                    let v = u64::from_le_bytes(image[off..off + 8].try_into().unwrap());
                    image[off..off + 8].copy_from_slice(&v.wrapping_add(delta).to_le_bytes());
                }
                Kind::Inv32 | Kind::Rel32 => {
                    let v = u32::from_le_bytes(image[off..off + 4].try_into().unwrap());
                    let d = delta as u32;
                    let n = if kind == Kind::Rel32 {
                        v.wrapping_add(d)
                    } else {
                        v.wrapping_sub(d)
                    };
                    image[off..off + 4].copy_from_slice(&n.to_le_bytes());
                }
            }
        })
    }

    fn for_each_target(
        &self,
        link_virt_base: u64,
        image_size: u64,
        mut f: impl FnMut(Kind, u64),
    ) -> Result<(), RelocError> {
        let lists = [
            (Kind::Rel32, self.rel32),
            (Kind::Inv32, self.inv32),
            (Kind::Rel64, self.rel64),
        ];
        for (kind, list) in lists {
            let width = if kind == Kind::Rel64 { 8 } else { 4 };
            for entry in words(list) {
                let vaddr = entry as i32 as i64 as u64;
                let off = vaddr.wrapping_sub(link_virt_base);
                if off.checked_add(width).is_none_or(|end| end > image_size) {
                    return Err(RelocError::OutOfImage { entry });
                }
                f(kind, off);
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Rel64,
    Inv32,
    Rel32,
}

/// Delta-code a relocation table in place: each u32 word becomes its wrapping difference to the
/// original word before it. A trailing partial word is left as is.
pub fn delta_encode(table: &mut [u8]) {
    let mut prev = 0u32;
    for w in table.chunks_exact_mut(4) {
        let x = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        w.copy_from_slice(&x.wrapping_sub(prev).to_le_bytes());
        prev = x;
    }
}

/// Undo [`delta_encode`] in place (a running wrapping sum).
pub fn delta_decode(table: &mut [u8]) {
    let mut sum = 0u32;
    for w in table.chunks_exact_mut(4) {
        sum = sum.wrapping_add(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        w.copy_from_slice(&sum.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_coding_round_trips_and_shrinks_sorted_words() {
        let words = [
            0u32,
            0x8100_0010,
            0x8100_0018,
            0x8100_0100,
            0,
            0x8120_0000,
            7,
        ];
        let mut t = [0u8; 29];
        for (i, w) in words.iter().enumerate() {
            t[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        t[28] = 0xab;
        let orig = t;
        delta_encode(&mut t);
        assert_eq!(
            &t[8..12],
            &8u32.to_le_bytes(),
            "sorted neighbours become small"
        );
        assert_eq!(t[28], 0xab, "partial word untouched");
        delta_decode(&mut t);
        assert_eq!(t, orig);
    }

    const BASE: u64 = 0xffff_ffff_8100_0000;

    fn table(rel64: &[u32], inv32: &[u32], rel32: &[u32]) -> [u8; 64] {
        let mut out = [0u8; 64];
        let mut i = 4;
        for list in [rel64, &[0][..], inv32, &[0][..], rel32] {
            for w in list {
                out[i..i + 4].copy_from_slice(&w.to_le_bytes());
                i += 4;
            }
        }
        out
    }

    fn used(t: &[u8; 64], n: usize) -> &[u8] {
        &t[..(n + 3) * 4]
    }

    #[test]
    fn parse_and_apply() {
        let t = table(&[0x8100_0010], &[0x8100_0020], &[0x8100_0030, 0x8100_0034]);
        let t = used(&t, 4);
        let rt = RelocTable::parse(t).unwrap();
        assert_eq!(rt.counts(), (1, 1, 2));
        rt.check_counts(1, 1, 2).unwrap();
        let mut img = [0u8; 0x40];
        img[0x10..0x18].copy_from_slice(&(BASE + 0x100).to_le_bytes());
        img[0x20..0x24].copy_from_slice(&0x1000u32.to_le_bytes());
        img[0x30..0x34].copy_from_slice(&0x8100_0100u32.to_le_bytes());
        img[0x34..0x38].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        let delta = 0x0060_0000;
        rt.apply(&mut img, BASE, delta).unwrap();
        assert_eq!(
            u64::from_le_bytes(img[0x10..0x18].try_into().unwrap()),
            BASE + 0x100 + delta
        );
        assert_eq!(
            u32::from_le_bytes(img[0x20..0x24].try_into().unwrap()),
            0x1000u32.wrapping_sub(0x60_0000)
        );
        assert_eq!(
            u32::from_le_bytes(img[0x30..0x34].try_into().unwrap()),
            0x8160_0100
        );
        assert_eq!(
            u32::from_le_bytes(img[0x34..0x38].try_into().unwrap()),
            0x005f_fff0
        );
    }

    #[test]
    fn out_of_image_entry_leaves_image_untouched() {
        let t = table(&[0x8100_0010], &[], &[0x8100_003e]);
        let rt = RelocTable::parse(used(&t, 2)).unwrap();
        let mut img = [0xaau8; 0x40];
        assert_eq!(
            rt.apply(&mut img, BASE, 0x20_0000),
            Err(RelocError::OutOfImage { entry: 0x8100_003e })
        );
        assert!(img.iter().all(|&b| b == 0xaa));
    }

    #[test]
    fn malformed_tables() {
        assert_eq!(
            RelocTable::parse(&[0; 10]).unwrap_err(),
            RelocError::BadLength
        );
        assert_eq!(
            RelocTable::parse(&[0; 8]).unwrap_err(),
            RelocError::BadLength
        );
        let mut t = [0u8; 12];
        t[0] = 1;
        assert_eq!(
            RelocTable::parse(&t).unwrap_err(),
            RelocError::MissingLeadingZero
        );
        assert_eq!(
            RelocTable::parse(&[0; 16]).unwrap_err(),
            RelocError::BadSeparators
        );
        let mut t = [0u8; 16];
        t[4] = 1;
        t[8] = 1;
        assert_eq!(
            RelocTable::parse(&t).unwrap_err(),
            RelocError::BadSeparators
        );
        assert!(RelocTable::parse(&[0; 12]).is_ok());
    }

    #[test]
    fn size_matches_counts() {
        let t = table(&[0x8100_0010], &[0x8100_0020], &[0x8100_0030, 0x8100_0034]);
        assert_eq!(table_size(1, 1, 2) as usize, used(&t, 4).len());
    }
}

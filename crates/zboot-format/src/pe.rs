//! The one bounds-checked reader of a PE image's section table (`no_std`): the packer's PE
//! reader builds on it, and every tool that looks for a section (the boot tests' damaging and
//! signing helpers, the fuzz targets through the packer) goes through it. It accepts anything
//! structurally readable; whether an image is acceptable is the packer's strict-PE rules' job.

/// `e_lfanew`: where the PE signature is.
pub const OFF_E_LFANEW: usize = 0x3c;
/// `PE\0\0`.
pub const PE_SIGNATURE: [u8; 4] = *b"PE\0\0";
/// Bytes of the COFF file header after the signature.
pub const COFF_HEADER_SIZE: usize = 20;
/// Bytes of one section header.
pub const SECTION_HEADER_SIZE: usize = 40;

/// A section name as it sits in a section header (NUL-padded; at most 8 bytes, else a compile
/// error where it is used in a constant).
pub const fn name8(name: &str) -> [u8; 8] {
    let b = name.as_bytes();
    assert!(b.len() <= 8, "a PE section name has at most 8 bytes");
    let mut out = [0u8; 8];
    let mut i = 0;
    while i < b.len() {
        out[i] = b[i];
        i += 1;
    }
    out
}

/// Why an image has no readable section table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeError {
    /// No `MZ` at 0, or the file ends inside the DOS header.
    NotMz,
    /// No `PE\0\0` at `e_lfanew`.
    NoPeSignature(u32),
    /// The COFF header, optional header or section table runs past the end of the file.
    Truncated,
}

impl core::fmt::Display for PeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PeError::NotMz => f.write_str("not a PE image (no MZ header)"),
            PeError::NoPeSignature(at) => {
                write!(f, "not a PE image (no PE signature at e_lfanew {at:#x})")
            }
            PeError::Truncated => f.write_str("PE headers run past the end of the file"),
        }
    }
}

/// One section header's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: [u8; 8],
    pub virtual_size: u32,
    pub virtual_address: u32,
    pub size_of_raw_data: u32,
    pub pointer_to_raw_data: u32,
    pub characteristics: u32,
}

impl Section {
    /// The name up to its first NUL (lossy for non-UTF-8 bytes: `""`).
    pub fn name(&self) -> &str {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(8);
        core::str::from_utf8(&self.name[..end]).unwrap_or("")
    }

    /// End in memory (VirtualAddress + VirtualSize), saturating.
    pub fn va_end(&self) -> u32 {
        self.virtual_address.saturating_add(self.virtual_size)
    }

    pub fn contains_rva(&self, rva: u32) -> bool {
        rva >= self.virtual_address && rva < self.va_end()
    }
}

/// The section table of an image.
#[derive(Clone, Copy, Debug)]
pub struct SectionTable<'a> {
    /// The whole file.
    pub data: &'a [u8],
    /// `e_lfanew`.
    pub e_lfanew: u32,
    /// File offset of the optional header and its size.
    pub optional_header: (usize, usize),
    /// File offset of the table and the number of sections.
    pub offset: usize,
    pub count: usize,
}

fn le16(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn le32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}

impl<'a> SectionTable<'a> {
    /// Read the headers of `data` up to the end of the section table.
    pub fn parse(data: &'a [u8]) -> Result<Self, PeError> {
        if data.get(..2) != Some(b"MZ") {
            return Err(PeError::NotMz);
        }
        let e_lfanew = le32(data, OFF_E_LFANEW).ok_or(PeError::NotMz)?;
        let nt = e_lfanew as usize;
        if data.get(nt..nt.saturating_add(4)) != Some(&PE_SIGNATURE[..]) {
            return Err(PeError::NoPeSignature(e_lfanew));
        }
        let coff = nt + 4;
        let count = usize::from(le16(data, coff + 2).ok_or(PeError::Truncated)?);
        let opt_size = usize::from(le16(data, coff + 16).ok_or(PeError::Truncated)?);
        let opt = coff + COFF_HEADER_SIZE;
        let offset = opt + opt_size;
        let end = offset + count * SECTION_HEADER_SIZE;
        if end > data.len() {
            return Err(PeError::Truncated);
        }
        Ok(SectionTable {
            data,
            e_lfanew,
            optional_header: (opt, opt_size),
            offset,
            count,
        })
    }

    /// Section `i` (`i < count`).
    pub fn get(&self, i: usize) -> Option<Section> {
        if i >= self.count {
            return None;
        }
        let s = self.offset + i * SECTION_HEADER_SIZE;
        let h = self.data.get(s..s + SECTION_HEADER_SIZE)?;
        let at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().unwrap());
        Some(Section {
            name: h[..8].try_into().unwrap(),
            virtual_size: at(8),
            virtual_address: at(12),
            size_of_raw_data: at(16),
            pointer_to_raw_data: at(20),
            characteristics: at(36),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = Section> + '_ {
        (0..self.count).filter_map(|i| self.get(i))
    }

    /// The first section called `name`.
    pub fn find(&self, name: &str) -> Option<Section> {
        self.iter().find(|s| s.name() == name)
    }

    /// A section's bytes as stored in the file, clamped to the file.
    pub fn raw(&self, s: &Section) -> &'a [u8] {
        let start = (s.pointer_to_raw_data as usize).min(self.data.len());
        let end = start
            .saturating_add(s.size_of_raw_data as usize)
            .min(self.data.len());
        &self.data[start..end]
    }

    /// A section's file-backed bytes, limited to its VirtualSize.
    pub fn contents(&self, s: &Section) -> &'a [u8] {
        let raw = self.raw(s);
        &raw[..raw.len().min(s.virtual_size as usize)]
    }

    /// The optional header's `SizeOfImage` and `SizeOfHeaders` (at 56 and 60, the same in PE32
    /// and PE32+), when the optional header is long enough to hold them.
    pub fn image_sizes(&self) -> Option<(u32, u32)> {
        let (opt, size) = self.optional_header;
        if size < 64 {
            return None;
        }
        Some((le32(self.data, opt + 56)?, le32(self.data, opt + 60)?))
    }

    /// The file offset of `rva`, when a section's file bytes hold it.
    pub fn rva_to_file(&self, rva: u32) -> Option<usize> {
        let s = self.iter().find(|s| s.contains_rva(rva))?;
        let off = rva - s.virtual_address;
        (off < s.size_of_raw_data).then(|| s.pointer_to_raw_data as usize + off as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MZ, e_lfanew 0x40, PE, 2 sections, a 0xf0-byte optional header.
    fn image() -> [u8; 0x400] {
        let mut b = [0u8; 0x400];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c] = 0x40;
        b[0x40..0x44].copy_from_slice(b"PE\0\0");
        b[0x46] = 2;
        b[0x54] = 0xf0;
        let table = 0x40 + 4 + 20 + 0xf0;
        for (i, (name, va, vs, raw, rs)) in [
            (b".text\0\0\0", 0x1000u32, 0x800u32, 0x200u32, 0x200u32),
            (b".zpayld\0", 0x2000, 0x100, 0x300, 0x100),
        ]
        .into_iter()
        .enumerate()
        {
            let s = table + i * 40;
            b[s..s + 8].copy_from_slice(name);
            for (o, v) in [(8, vs), (12, va), (16, rs), (20, raw)] {
                b[s + o..s + o + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        b
    }

    #[test]
    fn reads_the_table() {
        let b = image();
        let t = SectionTable::parse(&b).unwrap();
        assert_eq!(t.count, 2);
        let p = t.find(".zpayld").unwrap();
        assert_eq!((p.virtual_address, p.pointer_to_raw_data), (0x2000, 0x300));
        assert_eq!(t.contents(&p).len(), 0x100);
        assert_eq!(t.rva_to_file(0x1010), Some(0x210));
        // Inside VirtualSize but past the file bytes: not in the file.
        assert_eq!(t.rva_to_file(0x1300), None);
        assert_eq!(t.rva_to_file(0x5000), None);
        let mut b = image();
        let opt = 0x40 + 4 + 20;
        b[opt + 56..opt + 60].copy_from_slice(&0x3000u32.to_le_bytes());
        b[opt + 60..opt + 64].copy_from_slice(&0x200u32.to_le_bytes());
        let t = SectionTable::parse(&b).unwrap();
        assert_eq!(t.image_sizes(), Some((0x3000, 0x200)));
        let short = SectionTable {
            optional_header: (opt, 60),
            ..t
        };
        assert_eq!(short.image_sizes(), None);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let b = image();
        assert_eq!(SectionTable::parse(&b[..1]).err(), Some(PeError::NotMz));
        assert_eq!(
            SectionTable::parse(&b[..0x140]).err(),
            Some(PeError::Truncated)
        );
        let mut c = b;
        c[0x3c] = 0x80;
        assert_eq!(
            SectionTable::parse(&c).err(),
            Some(PeError::NoPeSignature(0x80))
        );
        let mut c = b;
        c[0x46] = 0xff;
        c[0x47] = 0xff;
        assert_eq!(SectionTable::parse(&c).err(), Some(PeError::Truncated));
    }
}

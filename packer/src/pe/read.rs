//! A bounds-checked PE32+ reader on top of the one section-table reader (`zboot_format::pe`),
//! adding the optional header and data directories. It accepts anything structurally readable
//! (headers in the file); whether the image is *acceptable* is `rules`' job.

use anyhow::{Result, bail};
use object::LittleEndian as LE;
use object::pe::{
    IMAGE_NT_OPTIONAL_HDR64_MAGIC, ImageDataDirectory, ImageFileHeader, ImageOptionalHeader64,
    ImageSectionHeader,
};
use object::pod;
use zboot_format::pe::SectionTable;

use super::section_name;

/// One section header with convenient accessors.
#[derive(Clone, Copy, Debug)]
pub struct Section {
    pub header: ImageSectionHeader,
}

impl Section {
    pub fn name(&self) -> String {
        section_name(&self.header.name)
    }
    pub fn va(&self) -> u32 {
        self.header.virtual_address.get(LE)
    }
    pub fn vsize(&self) -> u32 {
        self.header.virtual_size.get(LE)
    }
    pub fn raw_ptr(&self) -> u32 {
        self.header.pointer_to_raw_data.get(LE)
    }
    pub fn raw_size(&self) -> u32 {
        self.header.size_of_raw_data.get(LE)
    }
    pub fn characteristics(&self) -> u32 {
        self.header.characteristics.get(LE)
    }
    /// End of the section in memory (VA + VirtualSize), saturating.
    pub fn va_end(&self) -> u32 {
        self.va().saturating_add(self.vsize())
    }
    pub fn contains_rva(&self, rva: u32) -> bool {
        rva >= self.va() && rva < self.va_end()
    }
}

/// A parsed PE32+ image.
#[derive(Clone, Debug)]
pub struct PeFile<'a> {
    pub data: &'a [u8],
    pub e_lfanew: u32,
    pub file_header: ImageFileHeader,
    /// File offset of the optional header.
    pub opt_offset: usize,
    pub opt: ImageOptionalHeader64,
    /// Data directories actually present (min of NumberOfRvaAndSizes and the room in the header).
    pub dirs: Vec<ImageDataDirectory>,
    /// File offset of the section table.
    pub section_table_offset: usize,
    pub sections: Vec<Section>,
}

/// Size of the fixed part of the PE32+ optional header.
pub const OPT_HEADER_FIXED: usize = size_of::<ImageOptionalHeader64>();

impl<'a> PeFile<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self> {
        // The signature, COFF header and section table: the one reader (zboot_format::pe).
        let table = SectionTable::parse(data).map_err(|e| anyhow::anyhow!("{e}"))?;
        let fh_off = table.e_lfanew as usize + 4;
        let (file_header, _) =
            pod::from_bytes::<ImageFileHeader>(data.get(fh_off..).unwrap_or(&[]))
                .map_err(|_| anyhow::anyhow!("truncated COFF header"))?;
        let (opt_offset, opt_size) = table.optional_header;
        let opt_bytes = &data[opt_offset..opt_offset + opt_size];
        if opt_bytes.len() < 2
            || u16::from_le_bytes([opt_bytes[0], opt_bytes[1]]) != IMAGE_NT_OPTIONAL_HDR64_MAGIC
        {
            bail!("not a PE32+ image (optional header magic is not 0x20b)");
        }
        let (opt, rest) = pod::from_bytes::<ImageOptionalHeader64>(opt_bytes)
            .map_err(|_| anyhow::anyhow!("optional header too short ({opt_size} bytes)"))?;
        let n_dirs = (opt.number_of_rva_and_sizes.get(LE) as usize)
            .min(rest.len() / 8)
            .min(16);
        let (dirs, _) = pod::slice_from_bytes::<ImageDataDirectory>(rest, n_dirs)
            .map_err(|_| anyhow::anyhow!("truncated data directories"))?;
        let (headers, _) =
            pod::slice_from_bytes::<ImageSectionHeader>(&data[table.offset..], table.count)
                .map_err(|_| anyhow::anyhow!("section table beyond the end of the file"))?;
        Ok(PeFile {
            data,
            e_lfanew: table.e_lfanew,
            file_header: *file_header,
            opt_offset,
            opt: *opt,
            dirs: dirs.to_vec(),
            section_table_offset: table.offset,
            sections: headers.iter().map(|&header| Section { header }).collect(),
        })
    }

    /// Data directory `i` as (rva, size); (0, 0) when absent.
    pub fn dir(&self, i: usize) -> (u32, u32) {
        self.dirs
            .get(i)
            .map(|d| (d.virtual_address.get(LE), d.size.get(LE)))
            .unwrap_or((0, 0))
    }

    /// The raw bytes of a section as stored in the file (clamped to the file).
    pub fn raw(&self, s: &Section) -> &'a [u8] {
        let start = (s.raw_ptr() as usize).min(self.data.len());
        let end = start
            .saturating_add(s.raw_size() as usize)
            .min(self.data.len());
        &self.data[start..end]
    }

    /// The file-backed bytes of a section, limited to its VirtualSize.
    pub fn contents(&self, s: &Section) -> &'a [u8] {
        let raw = self.raw(s);
        &raw[..raw.len().min(s.vsize() as usize)]
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name() == name)
    }

    /// `len` bytes at `rva`, if file-backed within one section.
    pub fn rva_bytes(&self, rva: u32, len: u32) -> Option<&'a [u8]> {
        let s = self.sections.iter().find(|s| s.contains_rva(rva))?;
        let off = (rva - s.va()) as usize;
        self.raw(s).get(off..off.checked_add(len as usize)?)
    }

    /// Map an RVA to a file offset (file-backed part only).
    pub fn rva_to_offset(&self, rva: u32) -> Option<usize> {
        let s = self.sections.iter().find(|s| s.contains_rva(rva))?;
        let off = rva - s.va();
        (off < s.raw_size()).then(|| s.raw_ptr() as usize + off as usize)
    }

    /// File offset of the optional header's CheckSum field.
    pub fn checksum_offset(&self) -> usize {
        self.opt_offset + std::mem::offset_of!(ImageOptionalHeader64, check_sum)
    }
}

/// One entry of a base relocation table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelocEntry {
    /// `IMAGE_REL_BASED_*` (padding entries, type 0, included).
    pub typ: u16,
    /// The block's page RVA.
    pub page: u32,
    /// `page` + the entry's offset.
    pub target: u64,
}

/// The entries of a base relocation table, block by block, up to the first malformed block,
/// which the error names.
pub fn reloc_entries(table: &[u8]) -> (Vec<RelocEntry>, Option<String>) {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < table.len() {
        if !off.is_multiple_of(4) || off + 8 > table.len() {
            let e = format!("base relocation block at {off:#x} misaligned or truncated");
            return (out, Some(e));
        }
        let page = u32::from_le_bytes(table[off..off + 4].try_into().unwrap());
        let bsize = u32::from_le_bytes(table[off + 4..off + 8].try_into().unwrap()) as usize;
        if bsize < 8 || !bsize.is_multiple_of(4) || off + bsize > table.len() {
            let e = format!("base relocation block at {off:#x} has bad size {bsize:#x}");
            return (out, Some(e));
        }
        for e in table[off + 8..off + bsize].chunks_exact(2) {
            let e = u16::from_le_bytes([e[0], e[1]]);
            out.push(RelocEntry {
                typ: e >> 12,
                page,
                target: u64::from(page) + u64::from(e & 0xfff),
            });
        }
        off += bsize;
    }
    (out, None)
}

/// The PE image checksum (as computed by Windows' CheckSumMappedFile): 16-bit one's-complement
/// style sum over the file with the CheckSum field skipped, plus the file length.
pub fn pe_checksum(data: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, chunk) in data.chunks(2).enumerate() {
        let off = i * 2;
        if off == checksum_offset || off == checksum_offset + 2 {
            continue;
        }
        let word = u64::from(chunk[0]) | (u64::from(*chunk.get(1).unwrap_or(&0)) << 8);
        sum += word;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(data.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(page: u32, entries: &[u16]) -> Vec<u8> {
        let mut b = page.to_le_bytes().to_vec();
        b.extend_from_slice(&((8 + 2 * entries.len()) as u32).to_le_bytes());
        for e in entries {
            b.extend_from_slice(&e.to_le_bytes());
        }
        b
    }

    #[test]
    fn reloc_entries_walk_blocks_and_stop_at_a_bad_one() {
        let mut t = block(0x1000, &[0xa008, 0x0000]);
        t.extend(block(0x3000, &[0xa010, 0xa018]));
        let (e, bad) = reloc_entries(&t);
        assert_eq!(bad, None);
        let targets: Vec<(u16, u64)> = e.iter().map(|e| (e.typ, e.target)).collect();
        assert_eq!(
            targets,
            [(10, 0x1008), (0, 0x1000), (10, 0x3010), (10, 0x3018)]
        );
        // A block whose size runs past the table: the entries before it, then the error.
        let mut t = block(0x1000, &[0xa008, 0x0000]);
        t.extend(0x2000u32.to_le_bytes());
        t.extend(64u32.to_le_bytes());
        let (e, bad) = reloc_entries(&t);
        assert_eq!(e.len(), 2);
        assert_eq!(
            bad.as_deref(),
            Some("base relocation block at 0xc has bad size 0x40")
        );
        let (e, bad) = reloc_entries(&[0u8; 6]);
        assert!(e.is_empty());
        assert_eq!(
            bad.as_deref(),
            Some("base relocation block at 0x0 misaligned or truncated")
        );
    }
}

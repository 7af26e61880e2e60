//! vmlinux ELF reader: ELF64, little-endian, EM_X86_64, PT_LOAD segments placed by `p_paddr`.
//! A relocation table appended after the ELF (distro bzImage payloads are `stripped vmlinux ||
//! vmlinux.relocs`) is detected and validated.

use anyhow::{Result, anyhow, bail};
use object::elf::{self, FileHeader64, ProgramHeader64};
use object::read::elf::{FileHeader as _, ProgramHeader as _};
use object::{LittleEndian as LE, U32, U64};

use super::{Facts, KernelImage, Segment, TextRange, detect, relocs};
use crate::align_up;
use zboot_format::{MAX_KERNEL_MEM, X86_KERNEL_ALIGN, X86_START_KERNEL_MAP};

/// Name of the note an extracted ELF carries so that packing it again reproduces the image.
pub const ZBOOT_NOTE_NAME: &[u8] = b"zboot-pack";
/// Note type of [`ZbootNote`].
pub const ZBOOT_NOTE_TYPE: u32 = 1;

/// Facts carried by an extracted ELF's `zboot-pack` note (all little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ZbootNote {
    pub mem_size: u64,
    pub alignment: u64,
    pub xloadflags: u16,
    pub boot_protocol: u16,
    /// Bit 0: LA57. Bit 1: TEXT_RO (`text_size`, `nx_end` valid).
    pub flags: u32,
    /// The payload header's `text_size` and `nx_end` (absent from notes of 24 bytes).
    pub text_size: u32,
    pub nx_end: u32,
}

impl ZbootNote {
    pub const SIZE: usize = 32;
    /// Size of the notes written before `text_size`/`nx_end` existed.
    const SIZE_V1: usize = 24;
    pub const FLAG_LA57: u32 = 1 << 0;
    pub const FLAG_TEXT_RO: u32 = 1 << 1;
    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..8].copy_from_slice(&self.mem_size.to_le_bytes());
        b[8..16].copy_from_slice(&self.alignment.to_le_bytes());
        b[16..18].copy_from_slice(&self.xloadflags.to_le_bytes());
        b[18..20].copy_from_slice(&self.boot_protocol.to_le_bytes());
        b[20..24].copy_from_slice(&self.flags.to_le_bytes());
        b[24..28].copy_from_slice(&self.text_size.to_le_bytes());
        b[28..32].copy_from_slice(&self.nx_end.to_le_bytes());
        b
    }
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != Self::SIZE && b.len() != Self::SIZE_V1 {
            return None;
        }
        let u32_at = |o: usize| {
            b.get(o..o + 4)
                .map_or(0, |w| u32::from_le_bytes(w.try_into().unwrap()))
        };
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        Some(ZbootNote {
            mem_size: u64_at(0),
            alignment: u64_at(8),
            xloadflags: u16::from_le_bytes([b[16], b[17]]),
            boot_protocol: u16::from_le_bytes([b[18], b[19]]),
            flags: u32_at(20),
            text_size: u32_at(24),
            nx_end: u32_at(28),
        })
    }
}

/// Where the ELF proper ends: the furthest of the section header table, the program header table
/// and any segment's file bytes. Bytes after it are an appended relocation table.
fn elf_end(hdr: &FileHeader64<LE>, phdrs: &[ProgramHeader64<LE>]) -> u64 {
    let e = LE;
    let mut end =
        hdr.e_phoff.get(e) + u64::from(hdr.e_phnum.get(e)) * u64::from(hdr.e_phentsize.get(e));
    end = end.max(u64::from(hdr.e_ehsize.get(e)));
    if hdr.e_shoff.get(e) != 0 {
        end = end.max(
            hdr.e_shoff.get(e) + u64::from(hdr.e_shnum.get(e)) * u64::from(hdr.e_shentsize.get(e)),
        );
    }
    for ph in phdrs {
        if ph.p_filesz(e) > 0 {
            end = end.max(ph.p_offset(e).saturating_add(ph.p_filesz(e)));
        }
    }
    end
}

fn parse_notes(data: &[u8]) -> Option<ZbootNote> {
    let mut rest = data;
    while rest.len() >= 12 {
        let namesz = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
        let descsz = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
        let typ = u32::from_le_bytes(rest[8..12].try_into().unwrap());
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = 12 + (align_up(namesz as u64, 4) as usize);
        let desc_end = desc_start.checked_add(descsz)?;
        let next = 12 + align_up(namesz as u64, 4) as usize + align_up(descsz as u64, 4) as usize;
        if desc_end > rest.len() || name_end > rest.len() {
            return None;
        }
        let name = &rest[12..name_end];
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        if name == ZBOOT_NOTE_NAME && typ == ZBOOT_NOTE_TYPE {
            return ZbootNote::from_bytes(&rest[desc_start..desc_end]);
        }
        rest = rest.get(next..)?;
    }
    None
}

/// Read a vmlinux ELF (optionally followed by its relocation table).
pub fn parse(data: &[u8]) -> Result<KernelImage> {
    let e = LE;
    if data.len() < 5 || !data.starts_with(b"\x7fELF") {
        bail!("not an ELF file (truncated header)");
    }
    // The class first: an ELF32 header is shorter than the ELF64 one.
    match data[4] {
        elf::ELFCLASS64 => {}
        elf::ELFCLASS32 => bail!("32-bit ELF; only ELF64 x86_64 kernels are supported"),
        c => bail!("bad ELF class {c}"),
    }
    if data.len() < 64 {
        bail!("not an ELF file (truncated header)");
    }
    if data[5] != elf::ELFDATA2LSB {
        bail!("big-endian ELF; only little-endian x86_64 kernels are supported");
    }
    let hdr = FileHeader64::<LE>::parse(data).map_err(|err| anyhow!("bad ELF header: {err}"))?;
    let machine = hdr.e_machine.get(e);
    if machine != elf::EM_X86_64 {
        bail!("ELF machine {machine} is not x86_64 (62)");
    }
    // A vmlinux is a fixed-address executable; programs and libraries (ET_DYN) are not kernels.
    let e_type = hdr.e_type.get(e);
    if e_type != elf::ET_EXEC {
        bail!("ELF type {e_type} is not ET_EXEC: not a kernel");
    }
    if hdr.e_phnum.get(e) != 0
        && usize::from(hdr.e_phentsize.get(e)) != size_of::<ProgramHeader64<LE>>()
    {
        bail!(
            "bad ELF program header entry size {}",
            hdr.e_phentsize.get(e)
        );
    }
    let phdrs = hdr
        .program_headers(e, data)
        .map_err(|_| anyhow!("program header table beyond the end of the file"))?;

    let mut segments = Vec::new();
    let mut note = None;
    for (i, ph) in phdrs.iter().enumerate() {
        let (off, filesz, memsz) = (ph.p_offset(e), ph.p_filesz(e), ph.p_memsz(e));
        let typ = ph.p_type(e);
        if typ != elf::PT_LOAD && typ != elf::PT_NOTE {
            continue;
        }
        let end = off.checked_add(filesz);
        if end.is_none_or(|end| end > data.len() as u64) {
            bail!(
                "segment {i} file bytes {off:#x}+{filesz:#x} beyond the end of the file ({:#x} bytes)",
                data.len()
            );
        }
        let bytes = &data[off as usize..(off + filesz) as usize];
        if typ == elf::PT_NOTE {
            note = note.or_else(|| parse_notes(bytes));
            continue;
        }
        if memsz == 0 {
            continue;
        }
        if filesz > memsz {
            bail!("segment {i}: file size {filesz:#x} larger than memory size {memsz:#x}");
        }
        if memsz > MAX_KERNEL_MEM {
            bail!("segment {i}: absurd memory size {memsz:#x} (limit 1 GiB)");
        }
        let paddr = ph.p_paddr(e);
        if paddr.checked_add(memsz).is_none() {
            bail!("segment {i}: physical address {paddr:#x} + size overflows");
        }
        segments.push(Segment {
            paddr,
            vaddr: ph.p_vaddr(e),
            mem_size: memsz,
            flags: ph.p_flags(e),
            data: bytes.to_vec(),
        });
    }
    if segments.is_empty() {
        bail!("no PT_LOAD segment");
    }
    segments.sort_by_key(|s| s.paddr);
    let link_virt_base = segments[0].vaddr;
    for w in segments.windows(2) {
        if w[0].paddr + w[0].mem_size > w[1].paddr {
            bail!(
                "overlapping segments: [{:#x}, {:#x}) and [{:#x}, {:#x})",
                w[0].paddr,
                w[0].paddr + w[0].mem_size,
                w[1].paddr,
                w[1].paddr + w[1].mem_size
            );
        }
    }
    let first = segments[0].paddr;
    let last_end = segments
        .iter()
        .map(|s| s.paddr + s.mem_size)
        .max()
        .unwrap_or(first);
    if last_end - first > MAX_KERNEL_MEM {
        bail!(
            "absurd size: segments span {:#x} bytes in memory (limit 1 GiB)",
            last_end - first
        );
    }
    if first % X86_KERNEL_ALIGN != 0 {
        bail!("first segment's physical address {first:#x} is not 2 MiB aligned");
    }
    // x86_64 kernels are linked in the kernel map (user programs sit far below it).
    if link_virt_base < X86_START_KERNEL_MAP {
        bail!(
            "first segment linked at {link_virt_base:#x}, below the kernel map {X86_START_KERNEL_MAP:#x}: not a kernel"
        );
    }

    let raw_entry = hdr.e_entry.get(e);
    let entry = if raw_entry >= X86_START_KERNEL_MAP {
        segments
            .iter()
            .find(|s| raw_entry >= s.vaddr && raw_entry - s.vaddr < s.mem_size)
            .map(|s| s.paddr + (raw_entry - s.vaddr))
            .ok_or_else(|| anyhow!("entry point {raw_entry:#x} is in no segment"))?
    } else {
        raw_entry
    };
    let image_end = segments
        .iter()
        .map(|s| s.paddr + s.data.len() as u64)
        .max()
        .unwrap_or(first);
    if entry < first || entry >= image_end {
        bail!("entry point {raw_entry:#x} outside the kernel image");
    }

    let end = elf_end(hdr, phdrs);
    let relocs = if end < data.len() as u64 {
        let table = &data[end as usize..];
        relocs::check(table, link_virt_base, image_end - first)
            .map_err(|err| anyhow!("{err} (appended after the ELF at offset {end:#x})"))?;
        Some(table.to_vec())
    } else {
        None
    };

    let mut facts = Facts::elf();
    // One search of the whole ELF for the banner serves the header's version and the text check.
    let banner = crate::payload::kernel_version(data);
    facts.kernel_version = banner.as_deref().and_then(crate::payload::header_version);
    if let Some(n) = note {
        facts.mem_size = Some(n.mem_size);
        facts.alignment = Some(n.alignment);
        facts.xloadflags = n.xloadflags;
        facts.boot_protocol = n.boot_protocol;
        facts.la57 = n.flags & ZbootNote::FLAG_LA57 != 0;
        facts.la57_source = Some("zboot-pack note of an extracted kernel".into());
        if n.flags & ZbootNote::FLAG_TEXT_RO != 0 {
            facts.text = Some(TextRange {
                size: n.text_size.into(),
                nx_end: Some(n.nx_end.into()),
            });
            facts.text_ro_source = Some("zboot-pack note of an extracted kernel".into());
        }
    } else {
        if let Some(d) = detect_la57(data) {
            facts.la57 = d.la57 == Some(true);
            facts.la57_source = Some(d.source);
        }
        facts.text = text_range(data, &segments, link_virt_base, entry - first);
        facts.text_ro_source = banner.and_then(|v| detect::text_ro_from_version(&v));
    }
    Ok(KernelImage {
        segments,
        entry,
        relocs,
        facts,
    })
}

/// `[_text, __start_rodata)` and the non-executable range after it, as image offsets: the text
/// ends where the `.rodata` section starts (page aligned, past the entry, in the first PT_LOAD or
/// where the next begins); the range after it ends at the next executable PT_LOAD.
fn text_range(
    data: &[u8],
    segments: &[Segment],
    link_virt_base: u64,
    entry_offset: u64,
) -> Option<TextRange> {
    let first = segments.first()?;
    let size = detect::rodata_start(data)?.checked_sub(link_virt_base)?;
    let only_first = segments[1..].iter().all(|s| s.paddr - first.paddr >= size);
    if !size.is_multiple_of(4096) || !only_first || size <= entry_offset {
        return None;
    }
    let nx_end = segments
        .iter()
        .skip(1)
        .filter(|s| s.flags & elf::PF_X != 0)
        .map(|s| (s.paddr - first.paddr) / 4096 * 4096)
        .min();
    Some(TextRange { size, nx_end })
}

/// 5-level support of a bare vmlinux from its own bytes: its exports or symbols, except that a
/// release that always has it (its banner says so) is never judged without.
fn detect_la57(data: &[u8]) -> Option<detect::Decision> {
    match detect::la57_from_elf(data) {
        Some(d) if d.la57 == Some(true) => Some(d),
        other => crate::payload::kernel_version(data)
            .and_then(|v| detect::la57_from_version(&v))
            .or(other),
    }
}

/// Little helpers for building ELF headers in tests and in `elfout`.
pub fn u32le(v: u32) -> U32<LE> {
    U32::new(LE, v)
}
pub fn u64le(v: u64) -> U64<LE> {
    U64::new(LE, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{self, EHDR, P_FILESZ, P_MEMSZ, P_PADDR, P_TYPE, PHDR, poke};

    fn err(data: &[u8]) -> String {
        format!("{:#}", parse(data).unwrap_err())
    }

    #[test]
    fn reads_the_synthetic_kernel() {
        let k = parse(&testkit::vmlinux(true)).unwrap();
        assert_eq!(k.segments.len(), 2);
        assert_eq!(k.entry, testkit::PADDR + 0x10);
        assert_eq!(k.relocs.as_deref(), Some(&testkit::relocs()[..]));
        let k = parse(&testkit::vmlinux(false)).unwrap();
        assert!(k.relocs.is_none());
    }

    #[test]
    fn virtual_entry_is_converted() {
        let mut d = testkit::vmlinux(false);
        poke::<8>(&mut d, 24, testkit::VADDR + 0x20);
        assert_eq!(parse(&d).unwrap().entry, testkit::PADDR + 0x20);
    }

    #[test]
    fn bad_inputs_have_clear_errors() {
        let good = testkit::vmlinux(false);
        type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|d| d[4] = 1), "32-bit"),
            (Box::new(|d| d[5] = 2), "big-endian"),
            (Box::new(|d| poke::<2>(d, 18, 183)), "not x86_64"),
            (
                Box::new(|d| {
                    poke::<4>(d, EHDR + P_TYPE, 0);
                    poke::<4>(d, EHDR + PHDR + P_TYPE, 0);
                }),
                "no PT_LOAD",
            ),
            (
                Box::new(|d| poke::<8>(d, EHDR + PHDR + P_PADDR, testkit::PADDR + 0x1000)),
                "overlapping",
            ),
            (
                Box::new(|d| poke::<8>(d, EHDR + P_FILESZ, 0x10_0000)),
                "beyond the end of the file",
            ),
            (
                Box::new(|d| poke::<8>(d, EHDR + PHDR + P_MEMSZ, 2 << 30)),
                "absurd",
            ),
            (
                Box::new(|d| {
                    poke::<8>(d, EHDR + P_PADDR, testkit::PADDR + 0x1000);
                    poke::<8>(d, EHDR + PHDR + P_PADDR, testkit::PADDR + 0x20_1000);
                    poke::<8>(d, 24, testkit::PADDR + 0x1010);
                }),
                "not 2 MiB aligned",
            ),
            (
                Box::new(|d| d.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])),
                "malformed relocation table",
            ),
            (Box::new(|d| d.truncate(40)), "truncated"),
        ];
        for (mutate, want) in cases {
            let mut d = good.clone();
            mutate(&mut d);
            let e = err(&d);
            assert!(e.contains(want), "expected {want:?} in {e:?}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn note_round_trips() {
        let n = ZbootNote {
            mem_size: 0x60_0000,
            alignment: 0x20_0000,
            xloadflags: 0x7f,
            boot_protocol: 0x20f,
            flags: ZbootNote::FLAG_LA57 | ZbootNote::FLAG_TEXT_RO,
            text_size: 0x100_0000,
            nx_end: 0x207_9000,
        };
        assert_eq!(ZbootNote::from_bytes(&n.to_bytes()), Some(n));
        // A note written before the text range existed still reads (range 0).
        let old = ZbootNote::from_bytes(&n.to_bytes()[..24]).unwrap();
        assert_eq!((old.flags, old.text_size, old.nx_end), (n.flags, 0, 0));
    }
}

//! The strict PE rules (shim, edk2/audk BasePeCoffLib2, Microsoft's UEFI CA memory-mitigation
//! requirements, sbsigntool). Used by `verify` and by the writer on its own output.

use object::LittleEndian as LE;
use object::pe::*;

use super::read::{PeFile, RelocEntry, pe_checksum};
use super::{FILE_ALIGNMENT, SECTION_ALIGNMENT, align32};
use crate::sbat;

/// Run every rule; one message per violation (empty: the image is acceptable).
pub fn check(data: &[u8]) -> Vec<String> {
    match PeFile::parse(data) {
        Ok(pe) => check_pe(&pe),
        Err(e) => vec![format!("{e:#}")],
    }
}

/// Run every rule on a parsed image.
pub fn check_pe(pe: &PeFile) -> Vec<String> {
    let mut v = Vec::new();
    headers(pe, &mut v);
    layout(pe, &mut v);
    sections(pe, &mut v);
    entry_point(pe, &mut v);
    base_relocations(pe, &mut v);
    if let Some(s) = pe.section(zboot_format::SBAT_SECTION_NAME)
        && let Err(e) = sbat::validate(pe.contents(s))
    {
        v.push(format!(".sbat: {e}"));
    }
    v
}

fn headers(pe: &PeFile, v: &mut Vec<String>) {
    let o = &pe.opt;
    let subsystem = o.subsystem.get(LE);
    if subsystem != IMAGE_SUBSYSTEM_EFI_APPLICATION {
        v.push(format!(
            "Subsystem is {subsystem}, not 10 (EFI application)"
        ));
    }
    let dll = o.dll_characteristics.get(LE);
    if dll & IMAGE_DLLCHARACTERISTICS_NX_COMPAT == 0 {
        v.push(format!(
            "DllCharacteristics {dll:#06x} lacks NX_COMPAT (0x100)"
        ));
    }
    let chars = pe.file_header.characteristics.get(LE);
    if chars & IMAGE_FILE_RELOCS_STRIPPED != 0 {
        v.push("COFF Characteristics has RELOCS_STRIPPED".into());
    }
    if chars & IMAGE_FILE_EXECUTABLE_IMAGE == 0 {
        v.push("COFF Characteristics lacks EXECUTABLE_IMAGE".into());
    }
    if pe.e_lfanew < 0x40 || !pe.e_lfanew.is_multiple_of(8) {
        v.push(format!(
            "e_lfanew {:#x} is below 0x40 or not 8-aligned",
            pe.e_lfanew
        ));
    }
    let n = o.number_of_rva_and_sizes.get(LE);
    if !(6..=16).contains(&n) {
        v.push(format!("NumberOfRvaAndSizes {n} not in 6..16"));
    }
    let opt_size = u32::from(pe.file_header.size_of_optional_header.get(LE));
    if opt_size != 112 + 8 * n {
        v.push(format!(
            "SizeOfOptionalHeader {opt_size} != 112 + 8 * NumberOfRvaAndSizes ({})",
            112 + 8 * n
        ));
    }
    let sa = o.section_alignment.get(LE);
    if sa != SECTION_ALIGNMENT {
        v.push(format!("SectionAlignment {sa:#x}, not 0x1000"));
    }
    let fa = o.file_alignment.get(LE);
    if fa != FILE_ALIGNMENT {
        v.push(format!("FileAlignment {fa:#x}, not 0x200"));
    }
    let soh = o.size_of_headers.get(LE);
    let table_end = pe.section_table_offset + pe.sections.len() * 40;
    if (soh as usize) < table_end {
        v.push(format!(
            "SizeOfHeaders {soh:#x} does not cover the section table (ends at {table_end:#x})"
        ));
    }
    if !soh.is_multiple_of(FILE_ALIGNMENT) {
        v.push(format!(
            "SizeOfHeaders {soh:#x} is not a multiple of FileAlignment 0x200"
        ));
    }
    if pe.sections.is_empty() {
        v.push("no sections".into());
    }
    let sum = o.check_sum.get(LE);
    if sum != 0 {
        let want = pe_checksum(pe.data, pe.checksum_offset());
        if sum != want {
            v.push(format!("CheckSum {sum:#x} wrong (computed {want:#x})"));
        }
    }
}

fn layout(pe: &PeFile, v: &mut Vec<String>) {
    let soh = pe.opt.size_of_headers.get(LE);
    // Memory: contiguous from align_up(SizeOfHeaders, 4K).
    let mut next_va = align32(soh, SECTION_ALIGNMENT);
    for s in &pe.sections {
        if s.va() != next_va {
            v.push(format!(
                "{}: VirtualAddress {:#x}, expected {next_va:#x} (sections must be contiguous)",
                s.name(),
                s.va()
            ));
        }
        next_va = align32(s.va_end(), SECTION_ALIGNMENT);
    }
    let soi = pe.opt.size_of_image.get(LE);
    if !pe.sections.is_empty() && soi != next_va {
        v.push(format!("SizeOfImage {soi:#x}, expected {next_va:#x}"));
    }
    // File: contiguous from SizeOfHeaders, each section's raw data right after the previous
    // one's (no gap: bytes in a gap are hashed by some signing tools and skipped by others, and
    // covered by no section), nothing trailing but a certificate table.
    let mut pos = soh;
    for s in &pe.sections {
        if s.raw_size() == 0 {
            continue;
        }
        if s.raw_ptr() != pos {
            v.push(format!(
                "{}: PointerToRawData {:#x}, expected {pos:#x} (raw data must be contiguous: a gap is signed by some tools and not by others)",
                s.name(),
                s.raw_ptr()
            ));
        }
        if s.raw_size() % FILE_ALIGNMENT != 0 {
            v.push(format!(
                "{}: SizeOfRawData {:#x} is not a multiple of 0x200",
                s.name(),
                s.raw_size()
            ));
        }
        pos = s.raw_ptr().saturating_add(s.raw_size());
    }
    let (cert_off, cert_size) = pe.dir(IMAGE_DIRECTORY_ENTRY_SECURITY);
    let len = pe.data.len() as u64;
    if cert_size != 0 {
        if u64::from(cert_off) != u64::from(align32(pos, 8))
            || u64::from(cert_off) + u64::from(cert_size) != len
        {
            v.push(format!("certificate table {cert_off:#x}+{cert_size:#x} is not right after the raw data ({pos:#x}) at the end of the file ({len:#x})"));
        }
    } else if u64::from(pos) != len {
        if u64::from(pos) > len {
            v.push(format!(
                "raw data ends at {pos:#x}, beyond the end of the file ({len:#x})"
            ));
        } else {
            v.push(format!(
                "{} bytes trailing after the last section's raw data ({pos:#x})",
                len - u64::from(pos)
            ));
        }
    }
}

fn sections(pe: &PeFile, v: &mut Vec<String>) {
    let soh = pe.opt.size_of_headers.get(LE);
    for s in &pe.sections {
        let name = s.name();
        let c = s.characteristics();
        if s.vsize() == 0 {
            v.push(format!("{name}: VirtualSize is 0"));
        }
        if c & IMAGE_SCN_MEM_READ == 0 {
            v.push(format!("{name}: not MEM_READ"));
        }
        if s.raw_ptr() < soh {
            v.push(format!(
                "{name}: PointerToRawData {:#x} below SizeOfHeaders {soh:#x}",
                s.raw_ptr()
            ));
        }
        let (w, x) = (c & IMAGE_SCN_MEM_WRITE != 0, c & IMAGE_SCN_MEM_EXECUTE != 0);
        if w && x {
            v.push(format!("{name}: both writable and executable"));
        }
        if (c & IMAGE_SCN_CNT_CODE != 0) != x {
            v.push(format!(
                "{name}: CNT_CODE must be set exactly on executable sections"
            ));
        }
        if s.raw_size() > align32(s.vsize(), FILE_ALIGNMENT) {
            v.push(format!(
                "{name}: SizeOfRawData {:#x} exceeds VirtualSize {:#x} rounded to FileAlignment",
                s.raw_size(),
                s.vsize()
            ));
        }
    }
    parts(pe, v);
}

/// A zboot-pack image's appended parts (payload, command line, initrd, SBAT): present once, in
/// order, read-only initialized data, within their sizes (zboot_format::image::check_parts).
/// Images without any of them (a Linux bzImage, another EFI program) are not judged here.
fn parts(pe: &PeFile, v: &mut Vec<String>) {
    let sections: Vec<zboot_format::image::SectionRow> = pe
        .sections
        .iter()
        .map(|s| (s.header.name, s.characteristics(), u64::from(s.vsize())))
        .collect();
    if sections
        .iter()
        .any(|(n, _, _)| zboot_format::image::Part::from_name8(n).is_some())
        && let Err(e) = zboot_format::image::check_parts(sections)
    {
        v.push(e.to_string());
    }
}

fn entry_point(pe: &PeFile, v: &mut Vec<String>) {
    let ep = pe.opt.address_of_entry_point.get(LE);
    let holders: Vec<_> = pe
        .sections
        .iter()
        .filter(|s| s.characteristics() & IMAGE_SCN_MEM_EXECUTE != 0 && s.contains_rva(ep))
        .collect();
    if holders.len() != 1 {
        v.push(format!(
            "entry point {ep:#x} is not inside exactly one executable section"
        ));
    }
}

fn base_relocations(pe: &PeFile, v: &mut Vec<String>) {
    let (rva, size) = pe.dir(IMAGE_DIRECTORY_ENTRY_BASERELOC);
    let relocs: Vec<_> = pe
        .sections
        .iter()
        .filter(|s| s.name() == ".reloc")
        .collect();
    if size == 0 {
        if !relocs.is_empty()
            && relocs
                .iter()
                .any(|s| pe.contents(s).iter().any(|&b| b != 0))
        {
            v.push(".reloc section present but the base relocation directory is empty".into());
        }
        return;
    }
    let [sec] = relocs.as_slice() else {
        v.push(format!(
            "base relocations need exactly one .reloc section ({} found)",
            relocs.len()
        ));
        return;
    };
    if sec.va() != rva || sec.vsize() != size {
        v.push(format!(
            ".reloc section [{:#x}, +{:#x}) differs from the base relocation directory [{rva:#x}, +{size:#x})",
            sec.va(),
            sec.vsize()
        ));
        return;
    }
    let Some(table) = pe.rva_bytes(rva, size) else {
        v.push("base relocation table is not file-backed".into());
        return;
    };
    let (entries, malformed) = super::read::reloc_entries(table);
    let mut last_target: Option<u64> = None;
    for RelocEntry { typ, page, target } in entries {
        let width = match typ {
            IMAGE_REL_BASED_ABSOLUTE => continue,
            IMAGE_REL_BASED_HIGHLOW => 4,
            IMAGE_REL_BASED_DIR64 => 8,
            t => {
                v.push(format!(
                    "base relocation type {t} at page {page:#x} not allowed"
                ));
                continue;
            }
        };
        if last_target.is_some_and(|l| target <= l) {
            v.push(format!("base relocation target {target:#x} not ascending"));
        }
        last_target = Some(target);
        let inside = pe
            .sections
            .iter()
            .any(|s| target >= u64::from(s.va()) && target + width <= u64::from(s.va_end()));
        if !inside {
            v.push(format!(
                "base relocation target {target:#x} not inside one section"
            ));
        }
    }
    v.extend(malformed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EMBEDDED_STUB;
    use crate::pe::write::{self, NewSection};
    use zboot_format::image::scn::READ_ONLY_DATA;

    fn image() -> Vec<u8> {
        let s = NewSection {
            name: *b".zpayld\0",
            data: vec![7; 1000],
            characteristics: READ_ONLY_DATA,
        };
        write::write(EMBEDDED_STUB, &[s], &write::Options::default()).unwrap()
    }

    fn set_u32(d: &mut [u8], off: usize, v: u32) {
        d[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn section_header_offset(d: &[u8], name: &str) -> usize {
        let pe = PeFile::parse(d).unwrap();
        let i = pe.sections.iter().position(|s| s.name() == name).unwrap();
        pe.section_table_offset + i * 40
    }

    #[test]
    fn each_broken_rule_is_reported() {
        let good = image();
        assert!(check(&good).is_empty());
        let pe = PeFile::parse(&good).unwrap();
        let opt = pe.opt_offset;
        let dll = opt + std::mem::offset_of!(ImageOptionalHeader64, dll_characteristics);
        type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(move |d| d[dll + 1] &= !0x01), "NX_COMPAT"),
            (Box::new(|d| d.extend_from_slice(&[0; 512])), "trailing"),
            (
                Box::new(|d| {
                    let o = section_header_offset(d, zboot_format::PAYLOAD_SECTION_NAME);
                    set_u32(d, o + 36, READ_ONLY_DATA | IMAGE_SCN_MEM_DISCARDABLE);
                }),
                "DISCARDABLE",
            ),
            (
                Box::new(|d| {
                    let o = section_header_offset(d, zboot_format::PAYLOAD_SECTION_NAME);
                    set_u32(
                        d,
                        o + 36,
                        READ_ONLY_DATA | IMAGE_SCN_MEM_WRITE | IMAGE_SCN_MEM_EXECUTE,
                    );
                }),
                "writable and executable",
            ),
            (
                Box::new(|d| {
                    let o = section_header_offset(d, ".data");
                    set_u32(d, o + 20, 0);
                }),
                "below SizeOfHeaders",
            ),
            (Box::new(move |d| set_u32(d, opt + 16, 0x10)), "entry point"),
            (Box::new(|d| d[200] ^= 0xff), "CheckSum"),
        ];
        for (mutate, want) in cases {
            let mut d = good.clone();
            mutate(&mut d);
            let v = check(&d);
            assert!(
                v.iter().any(|m| m.contains(want)),
                "expected {want:?} in {v:?}"
            );
        }
    }

    #[test]
    fn systemd_boot_252_is_flagged() {
        // systemd-boot-efi is in `cargo xtask setup`'s package list: under CI it must be there.
        let path = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
        let Ok(d) = std::fs::read(path) else {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
                "{path} missing under CI (cargo xtask setup installs systemd-boot-efi)"
            );
            return;
        };
        let v = check(&d);
        assert!(v.iter().any(|m| m.contains("NX_COMPAT")));
        assert!(v.iter().any(|m| m.contains("SectionAlignment")));
    }
}

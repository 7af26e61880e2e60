//! The PE writer: the stub's sections stay at their RVAs (its code and relocations refer to
//! them), new sections follow them; headers, file layout, zimg header and checksum are rebuilt;
//! the result must pass every rule in `rules` before it is returned.
//!
//! A stub with a [`zboot_format::descriptor`] loses its base relocations: its `.reloc` section
//! (the last one) is dropped, the relocation directory left empty, and the 64-bit addresses it
//! listed go into the descriptor with the stub's link base, the image size and where the payload
//! is, so the stub relocates itself and finds its payload without PE headers.

use anyhow::{Context, Result, bail};
use object::pe::*;
use object::pod::bytes_of;
use object::{LittleEndian as LE, U16, U32};
use zboot_format::bootparam::{
    KERNEL_INFO_SIZE, KernelInfo, SETUP_HEADER_OFFSET, SETUP_TYPE_MAX_DEFAULT,
};
use zboot_format::descriptor::{self, StubDescriptor};
use zboot_format::image;
use zboot_format::zimg::{self, ZimgHeader};

use super::read::{PeFile, pe_checksum};
use super::{FILE_ALIGNMENT, SECTION_ALIGNMENT, align32, rules};

/// A section to append after the stub's.
#[derive(Clone, Debug)]
pub struct NewSection {
    pub name: [u8; 8],
    pub data: Vec<u8>,
    pub characteristics: u32,
}

impl NewSection {
    /// One of the image's parts, named and flagged as zboot_format::image::Part says.
    pub fn part(part: image::Part, data: Vec<u8>) -> NewSection {
        NewSection {
            name: part.name8(),
            data,
            characteristics: part.characteristics(),
        }
    }
}

/// Where the zimg header should point.
#[derive(Clone, Copy, Debug)]
pub struct ZimgSpec {
    /// Index into the new sections.
    pub section: usize,
    /// Offset of the compressed stream inside that section.
    pub offset: u32,
    pub size: u32,
    pub comp_type: &'static str,
    /// The kernel's `xloadflags` (the setup header passes XLF_EFI_KEXEC on).
    pub kernel_xloadflags: u16,
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// COFF TimeDateStamp.
    pub timestamp: u32,
    /// Where the payload is (also what the stub descriptor records).
    pub zimg: Option<ZimgSpec>,
    /// With `zimg`: the kernel's version string for the setup header's `kernel_version`
    /// (`image::KERNEL_VERSION_AT`).
    pub kernel_version: Option<String>,
    /// With `zimg`: the kernel_info `setup_type_max` (default
    /// `bootparam::SETUP_TYPE_MAX_DEFAULT`).
    pub setup_type_max: Option<u32>,
}

/// The stub's base relocations as RVAs of 64-bit absolute addresses (`IMAGE_REL_BASED_DIR64`;
/// padding entries skipped, any other type refused).
fn stub_relocs(stub: &PeFile) -> Result<Vec<u32>> {
    let (rva, size) = stub.dir(IMAGE_DIRECTORY_ENTRY_BASERELOC);
    if size == 0 {
        return Ok(Vec::new());
    }
    let table = stub
        .rva_bytes(rva, size)
        .context("stub: base relocation table outside the file")?;
    let (entries, malformed) = super::read::reloc_entries(table);
    if let Some(e) = malformed {
        bail!("stub: {e}");
    }
    let mut out = Vec::new();
    for e in entries {
        match e.typ {
            IMAGE_REL_BASED_ABSOLUTE => {}
            IMAGE_REL_BASED_DIR64 => out.push(
                u32::try_from(e.target).context("stub: base relocation target beyond 4 GiB")?,
            ),
            t => bail!("stub: base relocation type {t} unsupported (only DIR64)"),
        }
    }
    Ok(out)
}

/// Where the stub's descriptor sits: (stub section index, offset in its raw data). It must be
/// exactly once in the stub, in a writable section.
fn find_descriptor(stub: &PeFile) -> Result<Option<(usize, usize)>> {
    let mut found = Vec::new();
    for (i, s) in stub.sections.iter().enumerate() {
        let raw = stub.raw(s);
        let mut from = 0;
        while let Some(p) = raw[from..]
            .windows(descriptor::MAGIC.len())
            .position(|w| w == descriptor::MAGIC)
        {
            found.push((i, from + p));
            from += p + 1;
        }
    }
    match found.as_slice() {
        [] => bail!("stub: no zboot descriptor (a stub from an older zboot-pack?)"),
        [(i, off)] => {
            let s = &stub.sections[*i];
            if s.characteristics() & IMAGE_SCN_MEM_WRITE == 0 {
                bail!("stub: its descriptor is in read-only section {}", s.name());
            }
            if stub.raw(s).len() < off + descriptor::RECORD_SIZE {
                bail!("stub: its descriptor is truncated");
            }
            Ok(Some((*i, *off)))
        }
        _ => bail!("stub: {} descriptor magics", found.len()),
    }
}

/// The stub facts the layout needs.
fn check_stub(stub: &PeFile) -> Result<()> {
    let machine = stub.file_header.machine.get(LE);
    if machine != IMAGE_FILE_MACHINE_AMD64 {
        bail!("stub machine {machine:#x} is not x86_64 (0x8664)");
    }
    let sa = stub.opt.section_alignment.get(LE);
    let fa = stub.opt.file_alignment.get(LE);
    if sa != SECTION_ALIGNMENT || fa != FILE_ALIGNMENT {
        bail!("stub alignment (section {sa:#x}, file {fa:#x}) is not 0x1000/0x200");
    }
    if stub.sections.is_empty() {
        bail!("stub has no sections");
    }
    for w in stub.sections.windows(2) {
        if w[1].va() != align32(w[0].va_end(), SECTION_ALIGNMENT) {
            bail!(
                "stub sections {} and {} are not contiguous in memory",
                w[0].name(),
                w[1].name()
            );
        }
    }
    Ok(())
}

/// The stub sections the output keeps: all but a trailing `.reloc` when the stub carries a
/// descriptor (it relocates itself).
fn kept_sections(stub: &PeFile) -> Result<usize> {
    let n = stub.sections.len();
    if find_descriptor(stub)?.is_none() {
        return Ok(n);
    }
    let relocs = stub.sections.iter().position(|s| s.name() == ".reloc");
    match relocs {
        None => Ok(n),
        Some(i) if i == n - 1 => Ok(n - 1),
        Some(_) => bail!("stub: .reloc is not its last section"),
    }
}

/// The image being built: the stub, then the parts after its sections, each given its RVA
/// once, when it is added (the payload header that names the others' RVAs is filled in after
/// them, through [`Builder::data_mut`]). [`Builder::finish`] lays out the file, writes the
/// headers, the descriptor and the checksum, and runs the strict-PE self-check.
pub struct Builder<'a> {
    stub: PeFile<'a>,
    /// The stub sections kept (all but a dropped `.reloc`).
    kept: usize,
    /// The RVA the next part gets.
    next: u32,
    new: Vec<NewSection>,
    rvas: Vec<u32>,
}

impl<'a> Builder<'a> {
    /// Start from the stub in `stub_bytes` (checked: x86_64, 4 KiB / 512 B alignment, sections
    /// contiguous in memory).
    pub fn new(stub_bytes: &'a [u8]) -> Result<Builder<'a>> {
        let stub = PeFile::parse(stub_bytes).context("stub")?;
        check_stub(&stub).context("stub")?;
        let kept = kept_sections(&stub)?;
        let next = align32(
            stub.sections[..kept].last().map_or(0, |s| s.va_end()),
            SECTION_ALIGNMENT,
        );
        Ok(Builder {
            stub,
            kept,
            next,
            new: Vec::new(),
            rvas: Vec::new(),
        })
    }

    /// Append `section` after everything added so far; returns its RVA, which no later step
    /// changes.
    pub fn add(&mut self, section: NewSection) -> Result<u32> {
        if section.data.is_empty() {
            bail!("empty section");
        }
        let size = u32::try_from(section.data.len())
            .ok()
            .filter(|s| *s < 0xf000_0000)
            .context("section too large for a PE image")?;
        let rva = self.next;
        self.next = rva
            .checked_add(align32(size, SECTION_ALIGNMENT))
            .context("image too large for a PE image")?;
        self.new.push(section);
        self.rvas.push(rva);
        Ok(rva)
    }

    /// The bytes of the `i`-th added section.
    pub fn data(&self, i: usize) -> &[u8] {
        &self.new[i].data
    }

    /// The bytes of the `i`-th added section, to fill in place (their length is fixed).
    pub fn data_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.new[i].data
    }

    /// The finished image.
    pub fn finish(self, opts: &Options) -> Result<Vec<u8>> {
        let Builder {
            stub,
            kept,
            new,
            rvas,
            ..
        } = self;
        finish(&stub, kept, new, &rvas, opts)
    }
}

/// Build the output image from `stub_bytes` and `new` sections, placed in order after the
/// stub's.
pub fn write(stub_bytes: &[u8], new: &[NewSection], opts: &Options) -> Result<Vec<u8>> {
    let mut b = Builder::new(stub_bytes)?;
    for s in new {
        b.add(s.clone())?;
    }
    b.finish(opts)
}

fn finish(
    stub: &PeFile,
    kept: usize,
    new: Vec<NewSection>,
    rvas: &[u32],
    opts: &Options,
) -> Result<Vec<u8>> {
    // Section contents: the stub's raw bytes (with the debug data cleared), then the new ones.
    struct Out {
        header: ImageSectionHeader,
        data: Vec<u8>,
    }
    let descriptor_at = find_descriptor(stub)?;
    let mut out_sections: Vec<Out> = stub.sections[..kept]
        .iter()
        .map(|s| {
            let mut data = stub.raw(s).to_vec();
            // Keep raw data no longer than the (file-aligned) memory size.
            data.truncate(align32(s.vsize(), FILE_ALIGNMENT) as usize);
            // Zero-initialized data is stored as zeros: systemd-stub >= 258 skips sections
            // without file bytes, and a flat-copy loader (EFI handover) copies only the file,
            // so memory past a section's file bytes would be whatever was there.
            if data.len() < s.vsize() as usize {
                data.resize(s.vsize() as usize, 0);
            }
            Out {
                header: s.header,
                data,
            }
        })
        .collect();
    clear_debug_data(
        stub,
        &mut out_sections
            .iter_mut()
            .map(|o| &mut o.data)
            .collect::<Vec<_>>(),
    );
    for (s, &rva) in new.into_iter().zip(rvas) {
        let mut header = ImageSectionHeader {
            name: s.name,
            virtual_size: U32::new(LE, s.data.len() as u32),
            virtual_address: U32::new(LE, rva),
            size_of_raw_data: U32::new(LE, 0),
            pointer_to_raw_data: U32::new(LE, 0),
            pointer_to_relocations: U32::new(LE, 0),
            pointer_to_linenumbers: U32::new(LE, 0),
            number_of_relocations: U16::new(LE, 0),
            number_of_linenumbers: U16::new(LE, 0),
            characteristics: U32::new(LE, s.characteristics),
        };
        header.pointer_to_relocations = U32::new(LE, 0);
        out_sections.push(Out {
            header,
            data: s.data,
        });
    }

    // Headers (zboot_format::image): zimg/MZ header, PE signature at 0x40, COFF, optional header
    // with 6 data directories, section table — all before the setup header at 0x1f1 — in the
    // first 4 KiB; the file is its own memory image (raw data at each section's RVA).
    let pe_offset = zimg::HEADER_LEN;
    let n_dirs = image::PE_DATA_DIRECTORIES;
    for i in n_dirs..stub.dirs.len() {
        if i != IMAGE_DIRECTORY_ENTRY_DEBUG && stub.dir(i) != (0, 0) {
            bail!("stub: data directory {i} is used (an image keeps only the first {n_dirs})");
        }
    }
    if out_sections.len() > image::MAX_SECTIONS {
        bail!(
            "{} sections: an image has room for {} (stub, payload, cmdline, initrd, sbat)",
            out_sections.len(),
            image::MAX_SECTIONS
        );
    }
    let opt_size = super::read::OPT_HEADER_FIXED + 8 * n_dirs;
    let table_offset = pe_offset + 4 + size_of::<ImageFileHeader>() + opt_size;
    let headers_end = table_offset + out_sections.len() * size_of::<ImageSectionHeader>();
    debug_assert!(headers_end <= SETUP_HEADER_OFFSET);
    let size_of_headers = image::HEADERS_SIZE;
    if stub.sections[0].va() != size_of_headers {
        bail!(
            "stub: first section at {:#x}, not {size_of_headers:#x}",
            stub.sections[0].va()
        );
    }

    // File layout: each section's raw data at its RVA.
    let mut pos = size_of_headers;
    for o in &mut out_sections {
        let raw = align32(o.data.len() as u32, FILE_ALIGNMENT);
        o.data.resize(raw as usize, 0);
        let va = o.header.virtual_address.get(LE);
        debug_assert!(va >= pos);
        pos = va;
        o.header.pointer_to_raw_data = U32::new(LE, pos);
        o.header.size_of_raw_data = U32::new(LE, raw);
        o.header.pointer_to_relocations = U32::new(LE, 0);
        o.header.pointer_to_linenumbers = U32::new(LE, 0);
        o.header.number_of_relocations = U16::new(LE, 0);
        o.header.number_of_linenumbers = U16::new(LE, 0);
        pos = pos.checked_add(raw).context("image too large")?;
    }
    // No gaps: each section's raw data reaches the next section's (its RVA), so every byte of
    // the file is in a section and covered by the Authenticode digest that every signing tool
    // computes the same way (sbverify warns of gaps, osslsigncode hashes them, pesign and
    // sbsign skip them). The padding is zeros, as the gap was.
    for i in 1..out_sections.len() {
        let next = out_sections[i].header.pointer_to_raw_data.get(LE);
        let o = &mut out_sections[i - 1];
        let raw = next - o.header.pointer_to_raw_data.get(LE);
        o.data.resize(raw as usize, 0);
        o.header.size_of_raw_data = U32::new(LE, raw);
    }
    let file_size = pos as usize;
    // No section holds more file bytes than it spans in memory (systemd-stub >= 258 refuses
    // that): the memory size covers the file-aligned raw size. Code spans whole pages: a loader
    // that makes it read-only + executable with the memory attribute protocol (systemd-stub
    // >= 258 for an NX_COMPAT image) needs page-sized ranges (OVMF answers UNSUPPORTED else).
    for o in &mut out_sections {
        let raw = o.header.size_of_raw_data.get(LE);
        let mut vsize = o.header.virtual_size.get(LE).max(raw);
        if o.header.characteristics.get(LE) & IMAGE_SCN_MEM_EXECUTE != 0 {
            vsize = align32(vsize, SECTION_ALIGNMENT);
        }
        o.header.virtual_size = U32::new(LE, vsize);
    }
    let last = &out_sections.last().unwrap().header;
    let size_of_image = align32(
        last.virtual_address.get(LE) + last.virtual_size.get(LE),
        SECTION_ALIGNMENT,
    );

    let mut file_header = stub.file_header;
    file_header.number_of_sections = U16::new(LE, out_sections.len() as u16);
    file_header.time_date_stamp = U32::new(LE, opts.timestamp);
    file_header.pointer_to_symbol_table = U32::new(LE, 0);
    file_header.number_of_symbols = U32::new(LE, 0);
    file_header.size_of_optional_header = U16::new(LE, opt_size as u16);
    let mut chars = file_header.characteristics.get(LE);
    chars &= !(IMAGE_FILE_RELOCS_STRIPPED
        | IMAGE_FILE_LINE_NUMS_STRIPPED
        | IMAGE_FILE_LOCAL_SYMS_STRIPPED);
    chars |= IMAGE_FILE_EXECUTABLE_IMAGE | IMAGE_FILE_DEBUG_STRIPPED;
    file_header.characteristics = U16::new(LE, chars);

    let sum_raw = |flag: u32| -> u32 {
        out_sections
            .iter()
            .filter(|o| o.header.characteristics.get(LE) & flag != 0)
            .map(|o| o.header.size_of_raw_data.get(LE))
            .sum()
    };
    let mut opt = stub.opt;
    opt.size_of_code = U32::new(LE, sum_raw(IMAGE_SCN_CNT_CODE));
    opt.size_of_initialized_data = U32::new(LE, sum_raw(IMAGE_SCN_CNT_INITIALIZED_DATA));
    opt.size_of_uninitialized_data = U32::new(LE, sum_raw(IMAGE_SCN_CNT_UNINITIALIZED_DATA));
    opt.size_of_image = U32::new(LE, size_of_image);
    opt.size_of_headers = U32::new(LE, size_of_headers);
    opt.check_sum = U32::new(LE, 0);
    // Linux's EFI stub version: loaders use LoadImage only for MajorImageVersion >= 1.
    opt.major_image_version = U16::new(LE, zimg::EFISTUB_MAJOR_VERSION);
    opt.minor_image_version = U16::new(LE, zimg::EFISTUB_MINOR_VERSION);
    opt.number_of_rva_and_sizes = U32::new(LE, n_dirs as u32);
    let mut dirs: Vec<ImageDataDirectory> = (0..n_dirs)
        .map(|i| {
            let (rva, size) = stub.dir(i);
            ImageDataDirectory {
                virtual_address: U32::new(LE, rva),
                size: U32::new(LE, size),
            }
        })
        .collect();
    if let Some((i, off)) = descriptor_at {
        fill_descriptor(
            stub,
            &mut out_sections[i].data[off..],
            size_of_image,
            opts,
            rvas,
        )?;
        if opts.zimg.is_some() {
            let info =
                &mut out_sections[i].data[off + descriptor::KERNEL_INFO_AT..][..KERNEL_INFO_SIZE];
            if KernelInfo::parse(info).is_none() {
                bail!(
                    "stub: no kernel_info block after its descriptor (a stub from an older zboot-pack?)"
                );
            }
            info.copy_from_slice(
                &KernelInfo {
                    setup_type_max: opts.setup_type_max.unwrap_or(SETUP_TYPE_MAX_DEFAULT),
                }
                .to_bytes(),
            );
        }
    }
    let dropped_relocs = descriptor_at.is_some();
    for i in [
        IMAGE_DIRECTORY_ENTRY_DEBUG,
        IMAGE_DIRECTORY_ENTRY_SECURITY,
        IMAGE_DIRECTORY_ENTRY_BASERELOC,
    ] {
        if i == IMAGE_DIRECTORY_ENTRY_BASERELOC && !dropped_relocs {
            continue;
        }
        if let Some(d) = dirs.get_mut(i) {
            *d = ImageDataDirectory {
                virtual_address: U32::new(LE, 0),
                size: U32::new(LE, 0),
            };
        }
    }

    let mut out = Vec::with_capacity(file_size);
    let mut dos = [0u8; zimg::HEADER_LEN];
    match opts.zimg {
        Some(z) => {
            let sec = &out_sections[kept + z.section].header;
            ZimgHeader {
                payload_offset: sec.pointer_to_raw_data.get(LE) + z.offset,
                payload_size: z.size,
                comp_type: z.comp_type,
                pe_offset: pe_offset as u32,
            }
            .write(&mut dos);
        }
        None => {
            dos[..2].copy_from_slice(b"MZ");
            dos[zimg::OFF_PE_HEADER..][..4].copy_from_slice(&(pe_offset as u32).to_le_bytes());
        }
    }
    out.extend_from_slice(&dos);
    out.extend_from_slice(b"PE\0\0");
    out.extend_from_slice(bytes_of(&file_header));
    out.extend_from_slice(bytes_of(&opt));
    for d in &dirs {
        out.extend_from_slice(bytes_of(d));
    }
    for o in &out_sections {
        out.extend_from_slice(bytes_of(&o.header));
    }
    if let Some(z) = opts.zimg {
        check_bzimage_entries(stub)?;
        let setup = image::setup_header(&image::SetupFacts {
            image_size: size_of_image,
            handover_rva: handover_rva(stub)?,
            payload_offset: out_sections[kept + z.section]
                .header
                .pointer_to_raw_data
                .get(LE)
                + z.offset,
            payload_size: z.size,
            kernel_xloadflags: z.kernel_xloadflags,
            kernel_version: opts.kernel_version.is_some(),
            kernel_info_rva: kernel_info_rva(stub)?,
        });
        out.resize(SETUP_HEADER_OFFSET, 0);
        out.extend_from_slice(&setup.to_bytes());
        debug_assert_eq!(out.len(), image::REAL_MODE_AT);
        out.extend_from_slice(real_mode_code(stub)?);
        if let Some(v) = &opts.kernel_version {
            image::check_kernel_version(v.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
            out.resize(image::KERNEL_VERSION_AT, 0);
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
    }
    out.resize(size_of_headers as usize, 0);
    for o in &out_sections {
        out.resize(o.header.pointer_to_raw_data.get(LE) as usize, 0);
        out.extend_from_slice(&o.data);
    }
    debug_assert_eq!(out.len(), file_size);

    let checksum_offset = pe_offset
        + 4
        + size_of::<ImageFileHeader>()
        + std::mem::offset_of!(ImageOptionalHeader64, check_sum);
    let sum = pe_checksum(&out, checksum_offset);
    out[checksum_offset..checksum_offset + 4].copy_from_slice(&sum.to_le_bytes());

    let violations = rules::check(&out);
    if !violations.is_empty() {
        bail!(
            "output would break the strict PE rules: {}",
            violations.join("; ")
        );
    }
    Ok(out)
}

/// RVA of the kernel_info block in the stub's record (`descriptor::KERNEL_INFO_AT`), in a stub
/// or in an image written from one (the sections keep their RVAs).
pub fn kernel_info_rva(stub: &PeFile) -> Result<u32> {
    let (i, off) = find_descriptor(stub)?.context("stub: no descriptor")?;
    let rva = stub.sections[i].va() as usize + off + descriptor::KERNEL_INFO_AT;
    u32::try_from(rva).context("stub: kernel_info beyond 4 GiB")
}

/// RVA of the stub's EFI handover entry: the link-time address after its descriptor (in a stub
/// or in an image written from one).
pub fn handover_rva(stub: &PeFile) -> Result<u32> {
    entry_rva(stub, descriptor::HANDOVER_AT, "handover entry")
}

/// Check that every entry the setup header advertises is one of the stub's: the bzImage entries
/// at the first bytes of the protected-mode part (as in Linux's bzImage; a stub linked
/// otherwise cannot be booted by kexec or a 32-bit loader), and the 32-bit EFI handover entry
/// `HANDOVER_ENTRY_BIAS` bytes before the 64-bit one, where `handover_offset` points (a 32-bit
/// GRUB calls it there).
pub fn check_bzimage_entries(stub: &PeFile) -> Result<()> {
    let handover64 = handover_rva(stub)?;
    let handover32 = entry_rva(stub, descriptor::HANDOVER32_AT, "32-bit EFI handover entry")?;
    if handover64.checked_sub(handover32) != Some(image::HANDOVER_ENTRY_BIAS) {
        bail!(
            "stub: 32-bit EFI handover entry at RVA {handover32:#x}, handover_offset needs it {:#x} bytes before the 64-bit one at {handover64:#x}",
            image::HANDOVER_ENTRY_BIAS
        );
    }
    for (at, what, want) in [
        (
            descriptor::ENTRY64_AT,
            "64-bit bzImage entry",
            image::ENTRY64_RVA,
        ),
        (
            descriptor::ENTRY32_AT,
            "32-bit bzImage entry",
            image::ENTRY32_RVA,
        ),
    ] {
        let rva = entry_rva(stub, at, what)?;
        if rva != want {
            bail!("stub: {what} at RVA {rva:#x}, the setup header needs it at {want:#x}");
        }
    }
    Ok(())
}

/// The stub's 16-bit entry code, which goes into the headers at `image::REAL_MODE_AT`.
pub fn real_mode_code<'a>(stub: &PeFile<'a>) -> Result<&'a [u8]> {
    let at = |k: usize| -> Result<u32> {
        let (i, off) = find_descriptor(stub)?.context("stub: no descriptor")?;
        let raw = stub.raw(&stub.sections[i]);
        let o = off + descriptor::REAL_MODE_AT + 8 * k;
        let addr = raw
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .context("stub: 16-bit entry bounds truncated")?;
        addr.checked_sub(stub.opt.image_base.get(LE))
            .and_then(|r| u32::try_from(r).ok())
            .context("stub: 16-bit entry bounds outside the image")
    };
    let (start, end) = (at(0)?, at(1)?);
    let len = end
        .checked_sub(start)
        .filter(|&n| n > 0 && n as usize <= image::REAL_MODE_MAX)
        .with_context(|| {
            format!(
                "stub: 16-bit entry code {start:#x}..{end:#x} does not fit the {} bytes after the setup header",
                image::REAL_MODE_MAX
            )
        })?;
    stub.rva_bytes(start, len)
        .context("stub: 16-bit entry code not in its file data")
}

/// RVA of the code address the stub keeps `at` bytes into its descriptor record.
fn entry_rva(stub: &PeFile, at: usize, what: &str) -> Result<u32> {
    let (i, off) = find_descriptor(stub)?.context("stub: no descriptor")?;
    let at = off + at;
    let raw = stub.raw(&stub.sections[i]);
    let addr = raw
        .get(at..at + 8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .with_context(|| format!("stub: {what} address truncated"))?;
    let rva = addr
        .checked_sub(stub.opt.image_base.get(LE))
        .and_then(|r| u32::try_from(r).ok())
        .filter(|&r| {
            stub.sections
                .iter()
                .any(|s| s.contains_rva(r) && s.characteristics() & IMAGE_SCN_MEM_EXECUTE != 0)
        })
        .with_context(|| format!("stub: {what} {addr:#x} is not in its code"))?;
    Ok(rva)
}

/// Where the stub's code ends: its first section, executable, starting at the 32-bit entry
/// (page-rounded; the bzImage entries map exactly that range executable).
fn stub_code_end(stub: &PeFile) -> Result<u32> {
    let text = &stub.sections[0];
    if text.va() != image::ENTRY32_RVA || text.characteristics() & IMAGE_SCN_MEM_EXECUTE == 0 {
        bail!(
            "stub: first section {} is not code at RVA {:#x}",
            text.name(),
            image::ENTRY32_RVA
        );
    }
    if stub
        .sections
        .iter()
        .skip(1)
        .any(|s| s.characteristics() & IMAGE_SCN_MEM_EXECUTE != 0)
    {
        bail!("stub: more than one code section");
    }
    Ok(align32(text.va_end(), SECTION_ALIGNMENT))
}

/// Fill the stub descriptor (`bytes` start at it): the stub's link base and 64-bit addresses to
/// relocate, the image size, the payload section.
fn fill_descriptor(
    stub: &PeFile,
    bytes: &mut [u8],
    size_of_image: u32,
    opts: &Options,
    rvas: &[u32],
) -> Result<()> {
    let relocs = stub_relocs(stub)?;
    let mut d = StubDescriptor::EMPTY;
    if relocs.len() > descriptor::MAX_RELOCS {
        bail!(
            "stub: {} base relocations (its descriptor holds {})",
            relocs.len(),
            descriptor::MAX_RELOCS
        );
    }
    d.reloc_count = relocs.len() as u32;
    d.relocs[..relocs.len()].copy_from_slice(&relocs);
    d.link_base = stub.opt.image_base.get(LE);
    d.image_size = size_of_image;
    d.code_end = stub_code_end(stub)?;
    if let Some(z) = opts.zimg {
        d.payload_rva = rvas[z.section];
        d.payload_size = z.offset + z.size;
    }
    d.validate()
        .map_err(|e| anyhow::anyhow!("stub descriptor: {e}"))?;
    bytes[..descriptor::SIZE].copy_from_slice(&d.to_bytes());
    Ok(())
}

/// Zero the debug directory entries and the data they point to (rust-lld records an absolute PDB
/// path there, which makes builds irreproducible). `data[i]` is the raw data of stub section `i`.
fn clear_debug_data(stub: &PeFile, data: &mut [&mut Vec<u8>]) {
    let (rva, size) = stub.dir(IMAGE_DIRECTORY_ENTRY_DEBUG);
    if size == 0 {
        return;
    }
    let mut clear = |rva: u32, len: u32| {
        for (i, s) in stub.sections.iter().enumerate().take(data.len()) {
            if s.contains_rva(rva) {
                let start = (rva - s.va()) as usize;
                let end = start.saturating_add(len as usize).min(data[i].len());
                if start < end {
                    data[i][start..end].fill(0);
                }
            }
        }
    };
    if let Some(entries) = stub.rva_bytes(rva, size) {
        for e in entries.chunks_exact(size_of::<ImageDebugDirectory>()) {
            let Ok((d, _)) = object::pod::from_bytes::<ImageDebugDirectory>(e) else {
                continue;
            };
            let (data_rva, data_size) = (d.address_of_raw_data.get(LE), d.size_of_data.get(LE));
            if data_rva != 0 && data_size != 0 {
                clear(data_rva, data_size);
            }
        }
    }
    clear(rva, size);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EMBEDDED_STUB;
    use proptest::prelude::*;
    use zboot_format::image::scn::READ_ONLY_DATA;

    fn name(s: &str) -> [u8; 8] {
        let mut n = [0u8; 8];
        n[..s.len()].copy_from_slice(s.as_bytes());
        n
    }

    #[test]
    fn stub_alone_passes_the_rules() {
        let out = write(EMBEDDED_STUB, &[], &Options::default()).unwrap();
        assert!(rules::check(&out).is_empty());
        let pe = PeFile::parse(&out).unwrap();
        assert_eq!(pe.dir(IMAGE_DIRECTORY_ENTRY_DEBUG), (0, 0));
        let stub = PeFile::parse(EMBEDDED_STUB).unwrap();
        // The stub's sections keep their places; its .reloc is gone (it relocates itself from
        // its descriptor), code spans whole pages, no section has more file than memory bytes.
        assert_eq!(stub.sections.last().unwrap().name(), ".reloc");
        assert_eq!(pe.sections.len(), stub.sections.len() - 1);
        assert_eq!(pe.dir(IMAGE_DIRECTORY_ENTRY_BASERELOC), (0, 0));
        for (a, b) in stub.sections.iter().zip(&pe.sections) {
            assert_eq!((a.va(), a.characteristics()), (b.va(), b.characteristics()));
            assert!(b.vsize() >= a.vsize() && b.vsize() >= b.raw_size());
            if b.characteristics() & IMAGE_SCN_MEM_EXECUTE != 0 {
                assert_eq!(b.vsize() % SECTION_ALIGNMENT, 0);
            }
        }
        let (i, off) = find_descriptor(&stub).unwrap().unwrap();
        let raw = pe.raw(&pe.sections[i]);
        let d = StubDescriptor::from_bytes(raw[off..off + descriptor::SIZE].try_into().unwrap());
        assert_eq!(d.relocs(), &stub_relocs(&stub).unwrap()[..]);
        assert!(!d.relocs().is_empty());
        assert_eq!(d.link_base, stub.opt.image_base.get(LE));
        assert_eq!(d.image_size, pe.opt.size_of_image.get(LE));
    }

    #[test]
    fn too_many_sections_are_refused() {
        let s = |i: usize| NewSection {
            name: name(&format!(".s{i}")),
            data: vec![1; 10],
            characteristics: READ_ONLY_DATA,
        };
        let new: Vec<NewSection> = (0..5).map(s).collect();
        let e = write(EMBEDDED_STUB, &new, &Options::default()).unwrap_err();
        assert!(format!("{e:#}").contains("room for 6"), "{e:#}");
    }

    #[test]
    fn setup_header_points_at_the_handover_entry() {
        let new = [NewSection {
            name: name(zboot_format::PAYLOAD_SECTION_NAME),
            data: vec![1; 300],
            characteristics: READ_ONLY_DATA,
        }];
        let zimg = Some(ZimgSpec {
            section: 0,
            offset: 256,
            size: 44,
            comp_type: "zstd22",
            kernel_xloadflags: 0,
        });
        let version = "6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC";
        let opts = Options {
            zimg,
            kernel_version: Some(version.into()),
            setup_type_max: Some(0x8000_000a),
            ..Options::default()
        };
        let out = write(EMBEDDED_STUB, &new, &opts).unwrap();
        let h = zboot_format::bootparam::SetupHeader::read(&out).unwrap();
        // kernel_version + 0x200 names the NUL-terminated string (file(1), mkinitcpio, ukify);
        // kernel_info_offset counts from the protected-mode part and finds "LToP".
        let at = usize::from(h.kernel_version) + 0x200;
        assert_eq!(
            &out[at..at + version.len() + 1],
            [version.as_bytes(), &[0]].concat()
        );
        let info = h.protected_mode_offset() + { h.kernel_info_offset } as usize;
        assert_eq!(
            zboot_format::bootparam::KernelInfo::parse(&out[info..]),
            Some(zboot_format::bootparam::KernelInfo {
                setup_type_max: 0x8000_000a
            })
        );
        let bad = Options {
            kernel_version: Some("two\nlines".into()),
            ..opts.clone()
        };
        assert!(
            format!("{:#}", write(EMBEDDED_STUB, &new, &bad).unwrap_err()).contains("printable")
        );
        let stub = PeFile::parse(EMBEDDED_STUB).unwrap();
        let entry = handover_rva(&stub).unwrap();
        assert_eq!(h.efi_handover64_offset(), u64::from(entry));
        assert_eq!({ h.boot_flag }, 0xaa55);
        assert_eq!({ h.header }, zboot_format::bootparam::HDRS_MAGIC);
        let pe = PeFile::parse(&out).unwrap();
        assert_eq!(
            { h.init_size },
            pe.opt.size_of_image.get(LE) - image::HEADERS_SIZE + image::BARE_SCRATCH_SIZE
        );
        // The bzImage entries are where the setup header sends kexec and 32-bit loaders.
        check_bzimage_entries(&stub).unwrap();
        // The code at the entry, in the file, is the stub's code at that RVA (1:1 layout).
        let text = &pe.sections[0];
        assert!(text.contains_rva(entry));
        assert_eq!(
            out[entry as usize..][..16],
            stub.rva_bytes(entry, 16).unwrap()[..]
        );
    }

    /// A stub whose 32-bit EFI handover entry is not 0x200 bytes before the 64-bit one (so
    /// `handover_offset` would name no entry for a 32-bit loader) is refused.
    #[test]
    fn misplaced_32bit_handover_entry_is_refused() {
        let mut bytes = EMBEDDED_STUB.to_vec();
        let (raw_at, at) = {
            let stub = PeFile::parse(EMBEDDED_STUB).unwrap();
            check_bzimage_entries(&stub).unwrap();
            let (i, off) = find_descriptor(&stub).unwrap().unwrap();
            let raw_at = stub.sections[i].raw_ptr() as usize;
            (raw_at, off + descriptor::HANDOVER32_AT)
        };
        let field = &mut bytes[raw_at + at..][..8];
        let moved = u64::from_le_bytes(field.try_into().unwrap()) + 0x10;
        field.copy_from_slice(&moved.to_le_bytes());
        let stub = PeFile::parse(&bytes).unwrap();
        let err = check_bzimage_entries(&stub).unwrap_err().to_string();
        assert!(err.contains("32-bit EFI handover entry"), "{err}");
    }

    #[test]
    fn empty_section_is_refused() {
        let s = NewSection {
            name: name(".x"),
            data: vec![],
            characteristics: READ_ONLY_DATA,
        };
        assert!(write(EMBEDDED_STUB, &[s], &Options::default()).is_err());
    }

    #[test]
    fn stub_with_bad_alignment_is_refused() {
        let mut stub = EMBEDDED_STUB.to_vec();
        let pe = PeFile::parse(EMBEDDED_STUB).unwrap();
        let off = pe.opt_offset + std::mem::offset_of!(ImageOptionalHeader64, section_alignment);
        stub[off..off + 4].copy_from_slice(&0x200u32.to_le_bytes());
        let e = write(&stub, &[], &Options::default()).unwrap_err();
        assert!(format!("{e:#}").contains("alignment"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn layout_invariants(specs in proptest::collection::vec((1usize..40_000, any::<u8>(), any::<bool>()), 0..5), ts in any::<u32>()) {
            let new: Vec<NewSection> = specs
                .iter()
                .enumerate()
                .map(|(i, &(len, fill, writable))| NewSection {
                    name: name(&format!(".s{i}")),
                    data: vec![fill | 1; len],
                    characteristics: if writable { READ_ONLY_DATA | IMAGE_SCN_MEM_WRITE } else { READ_ONLY_DATA },
                })
                .collect();
            let zimg = (!new.is_empty()).then_some(ZimgSpec { section: 0, offset: 0, size: 1, comp_type: "zstd22", kernel_xloadflags: 0 });
            let opts = Options { timestamp: ts, zimg, ..Options::default() };
            let mut b = Builder::new(EMBEDDED_STUB).unwrap();
            let planned: Vec<u32> = new.iter().map(|s| b.add(s.clone()).unwrap()).collect();
            let out = b.finish(&opts).unwrap();
            prop_assert!(rules::check(&out).is_empty());
            prop_assert_eq!(&out, &write(EMBEDDED_STUB, &new, &opts).unwrap());
            let pe = PeFile::parse(&out).unwrap();
            let stub = PeFile::parse(EMBEDDED_STUB).unwrap();
            let n_stub = kept_sections(&stub).unwrap();
            prop_assert_eq!(pe.sections.len(), n_stub + new.len());
            prop_assert_eq!(pe.file_header.time_date_stamp.get(LE), ts);
            for (i, s) in new.iter().enumerate() {
                let got = &pe.sections[n_stub + i];
                prop_assert_eq!(got.va(), planned[i]);
                // Memory size covers the file-aligned raw size: the data, then zeros.
                let (data, pad) = pe.contents(got).split_at(s.data.len());
                prop_assert_eq!(data, &s.data[..]);
                prop_assert!(pad.iter().all(|&b| b == 0) && got.vsize() == got.raw_size());
                prop_assert_eq!(got.raw_ptr(), got.va()); // the file is its memory image
            }
            prop_assert_eq!(out.len() % FILE_ALIGNMENT as usize, 0);
            prop_assert_eq!(pe_checksum(&out, pe.checksum_offset()), pe.opt.check_sum.get(LE));
            if let Some(z) = zimg {
                let h = ZimgHeader::parse(&out).unwrap();
                prop_assert_eq!(h.payload_offset, pe.sections[n_stub + z.section].raw_ptr());
            }
        }
    }
}

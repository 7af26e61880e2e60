//! How the parts of an image are laid out so that every kind of loader finds what it needs:
//! the file is its own memory image (each section's file offset equals its RVA), the first
//! 4 KiB hold the zimg/MZ header, the PE headers and, at 0x1f1, an x86 setup header as Linux's
//! arch/x86/boot/header.S lays them out. A PE loader maps sections; a loader that copies the file
//! flat (GRUB's `linuxefi`, the EFI handover protocol) sees the same bytes at the same offsets.
//!
//! The EFI handover protocol (Documentation/arch/x86/boot.rst): the loader copies the file from
//! `(setup_sects + 1) * 512` (here: [`HEADERS_SIZE`], so memory = file = RVA) and calls the
//! 64-bit entry at `copy + handover_offset + 512` with (image handle, system table, boot_params)
//! in the SysV ABI.
//!
//! The bzImage protocols enter that same copy (the "protected-mode part", which starts with the
//! stub's code): the 32-bit protocol at `code32_start` (the copy's first byte,
//! [`ENTRY32_RVA`]), the 64-bit protocol (kexec, VMMs) 0x200 bytes further ([`ENTRY64_RVA`]),
//! as in Linux's own bzImage (`startup_32`, `startup_64`). Without firmware to allocate from,
//! the stub runs on a stack right after its image, followed by the page tables the 32-bit entry
//! builds ([`BARE_SCRATCH_SIZE`] bytes, inside `init_size`, which every bzImage loader
//! reserves).

use crate::bootparam::{
    HDRS_MAGIC, LOADED_HIGH, SetupHeader, XLF_5LEVEL, XLF_5LEVEL_ENABLED,
    XLF_CAN_BE_LOADED_ABOVE_4G, XLF_EFI_HANDOVER_64, XLF_EFI_KEXEC, XLF_KERNEL_64,
};

/// Bytes before the first section: headers, in file and in memory.
pub const HEADERS_SIZE: u32 = 0x1000;
/// PE SectionAlignment: every section starts on a 4 KiB page.
pub const SECTION_ALIGNMENT: u32 = 0x1000;
/// PE FileAlignment: raw data is padded to 512 bytes (and `VirtualSize` covers the padding, so
/// that no section has more file than memory bytes).
pub const FILE_ALIGNMENT: u32 = 0x200;
/// `setup_sects`: the "real-mode setup" is the headers page, `(7 + 1) * 512` bytes.
pub const SETUP_SECTS: u8 = (HEADERS_SIZE / 512 - 1) as u8;
/// The PE headers and section table must end before the setup header at 0x1f1: with
/// [`PE_DATA_DIRECTORIES`] directories there is room for this many sections.
pub const MAX_SECTIONS: usize = 6;
/// Data directories (export .. base relocation; the certificate table is #4).
pub const PE_DATA_DIRECTORIES: usize = 6;
/// The handover entry is `handover_offset + 512` bytes into the copy (64-bit protocol).
pub const HANDOVER_ENTRY_BIAS: u32 = crate::bootparam::LONG_MODE_ENTRY_OFFSET as u32;
/// RVA of the 32-bit bzImage entry: the first byte of the protected-mode part.
pub const ENTRY32_RVA: u32 = HEADERS_SIZE;
/// RVA of the 64-bit bzImage entry: 0x200 into the protected-mode part (boot.rst, 64-bit boot
/// protocol; kexec_file_load enters `load address + 0x200`).
pub const ENTRY64_RVA: u32 = HEADERS_SIZE + crate::bootparam::LONG_MODE_ENTRY_OFFSET as u32;
/// `code32_start`: where a 32-bit loader jumps when it loads the protected-mode part at the
/// default 1 MiB (loaders that relocate it add their offset from 1 MiB).
pub const CODE32_START: u32 =
    crate::bootparam::PROTECTED_MODE_LOAD_ADDR + (ENTRY32_RVA - HEADERS_SIZE);
/// The stack of the bzImage entries, right after the image.
pub const BARE_STACK_SIZE: u32 = 128 * 1024;
/// The page tables the 32-bit entry builds, right after that stack (the stub's
/// `arch::x86_64::own_map` lays them out).
pub const BARE_TABLES_SIZE: u32 = 32 * 1024;
/// Memory the bzImage entries use after the image: stack and page tables.
pub const BARE_SCRATCH_SIZE: u32 = BARE_STACK_SIZE + BARE_TABLES_SIZE;
/// `pref_address` and `kernel_alignment`: the classic 1 MiB load address; the stub is
/// position independent, so any page-aligned address serves (`relocatable_kernel`).
pub const PREF_ADDRESS: u64 = 0x10_0000;
pub const KERNEL_ALIGNMENT: u32 = 0x1000;
/// The real-mode jump at 0x200 (`jmp short`) and its displacement: the byte at 0x201 also tells
/// loaders where the setup header ends (kexec_file_load copies `0x202 + disp - 0x1f1` bytes of
/// it; Linux puts its `start_of_setup` there).
pub const SETUP_JUMP: u16 = 0xeb | ((SETUP_HEADER_END - 0x202) as u16) << 8;
/// First byte after the setup header (0x26c for boot protocol 2.15).
pub const SETUP_HEADER_END: usize =
    crate::bootparam::SETUP_HEADER_OFFSET + core::mem::size_of::<SetupHeader>();
/// Where the 16-bit entry's code lies in the headers: right after the setup header, where the
/// jump at 0x200 lands (a real-mode loader enters the setup at `segment + 0x20 : 0`, i.e.
/// 0x200, as Linux's `start_of_setup`).
pub const REAL_MODE_AT: usize = SETUP_HEADER_END;
/// Where the kernel's version string lies in the headers (`kernel_version` = this - 0x200, as
/// the boot protocol counts it), NUL-terminated: the last 256 bytes of the headers page.
pub const KERNEL_VERSION_AT: usize = HEADERS_SIZE as usize - 0x100;
/// Longest version string (its NUL fills the page).
pub const KERNEL_VERSION_MAX: usize = HEADERS_SIZE as usize - KERNEL_VERSION_AT - 1;
/// Room for the 16-bit entry's code before the version string.
pub const REAL_MODE_MAX: usize = KERNEL_VERSION_AT - REAL_MODE_AT;
/// Setup header fields that describe the kernel, not our layout, as Linux's header.S writes
/// them: `root_flags` (ROOT_RDONLY: the root mounts read-only unless `rw`), `vid_mode`
/// (NORMAL_VGA), `start_sys_seg` (SYSSEG) and `setup_move_size` (obsolete, kept equal).
pub const ROOT_FLAGS: u16 = 1;
pub const VID_MODE: u16 = 0xffff;
pub const START_SYS_SEG: u16 = 0x1000;
pub const SETUP_MOVE_SIZE: u16 = 0x8000;

/// The setup header fields whose value in an image differs from the kernel's own bzImage of
/// the same kernel, and why: each describes the image's own layout or entries, not the kernel.
/// Every other field is the kernel's (a test compares them with Debian's bzImage).
pub const LAYOUT_FIELDS: [(&str, &str); 13] = [
    (
        "setup_sects",
        "the headers page: the protected-mode part starts at 0x1000",
    ),
    (
        "syssize",
        "the protected-mode part is the image after the headers page",
    ),
    (
        "kernel_version",
        "the same string, at 0xf00 of the headers page",
    ),
    (
        "heap_end_ptr",
        "the end of the kernel's real-mode heap; the 16-bit entry uses none (no CAN_USE_HEAP)",
    ),
    (
        "kernel_alignment",
        "the stub runs at any 4 KiB-aligned address; it places the kernel at the kernel's own alignment",
    ),
    ("min_alignment", "as kernel_alignment"),
    (
        "xloadflags",
        "the image's entries: no 32-bit EFI handover (EFI_HANDOVER_32) yet; EFI_KEXEC and 5LEVEL_ENABLED are the kernel's",
    ),
    ("payload_offset", "the image's compressed stream"),
    ("payload_length", "the image's compressed stream"),
    (
        "pref_address",
        "the stub's load address; the kernel's is in the payload header",
    ),
    (
        "init_size",
        "the stub's image, stack and page tables; the stub allocates the kernel's memory itself",
    ),
    ("handover_offset", "the stub's EFI handover entry"),
    (
        "kernel_info_offset",
        "the image's kernel_info block, in the stub's data (same contents)",
    ),
];

/// Why a kernel version string cannot go into the headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionError {
    Empty,
    TooLong(usize),
    /// Not printable ASCII (the byte at this index).
    Byte(usize),
}

impl core::fmt::Display for VersionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            VersionError::Empty => write!(f, "kernel version string is empty"),
            VersionError::TooLong(n) => write!(
                f,
                "kernel version string of {n} bytes, at most {KERNEL_VERSION_MAX}"
            ),
            VersionError::Byte(i) => {
                write!(f, "kernel version string: byte {i} is not printable ASCII")
            }
        }
    }
}

/// Check a version string for the headers: 1..=[`KERNEL_VERSION_MAX`] printable ASCII bytes.
pub fn check_kernel_version(v: &[u8]) -> Result<(), VersionError> {
    if v.is_empty() {
        return Err(VersionError::Empty);
    }
    if v.len() > KERNEL_VERSION_MAX {
        return Err(VersionError::TooLong(v.len()));
    }
    match v.iter().position(|b| !(0x20..0x7f).contains(b)) {
        Some(i) => Err(VersionError::Byte(i)),
        None => Ok(()),
    }
}

/// The version string a bzImage carries (`UTS_RELEASE (USER@HOST) UTS_VERSION`, as
/// arch/x86/boot/version.c writes it), taken apart from the kernel's `linux_banner`
/// (`Linux version UTS_RELEASE (USER@HOST) (COMPILER) UTS_VERSION\n`); its `Display` is the
/// string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelVersion<'a> {
    pub release: &'a str,
    pub by: &'a str,
    pub version: &'a str,
}

impl<'a> KernelVersion<'a> {
    /// `None` when `banner` is not a `linux_banner`.
    pub fn from_banner(banner: &'a str) -> Option<KernelVersion<'a>> {
        let rest = banner.strip_prefix("Linux version ")?;
        let (release, rest) = rest.split_once(" (")?;
        // "(USER@HOST) (COMPILER) VERSION": two balanced groups (the compiler's has its own).
        let (by, rest) = balanced(rest)?;
        let rest = rest.strip_prefix(' ')?;
        let rest = match rest.strip_prefix('(') {
            Some(r) => balanced(r)?.1.strip_prefix(' ')?,
            None => rest,
        };
        let version = rest.trim_end_matches(['\n', '\0']).trim_end();
        if release.is_empty() || release.contains(' ') || version.is_empty() {
            return None;
        }
        Some(KernelVersion {
            release,
            by,
            version,
        })
    }
}

impl core::fmt::Display for KernelVersion<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({}) {}", self.release, self.by, self.version)
    }
}

/// `s` starts inside a parenthesis: (its contents, what follows the closing one).
fn balanced(s: &str) -> Option<(&str, &str)> {
    let mut depth = 1usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&s[..i], &s[i + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}
/// Boot protocol version declared: 2.15, the version of Linux 6.1's header (`handover_offset`
/// since 2.11, `xloadflags` 2.12, `kernel_info_offset` 2.15).
pub const BOOT_PROTOCOL: u16 = 0x020f;
/// `boot_flag` at 0x1fe.
pub const BOOT_FLAG: u16 = 0xaa55;
/// `type_of_loader`/`cmdline_size`: the most the kernel keeps, less its NUL.
pub const CMDLINE_SIZE: u32 = crate::cmdline::MAX_LEN as u32;

/// What the setup header describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupFacts {
    /// SizeOfImage.
    pub image_size: u32,
    /// RVA of the stub's 64-bit handover entry.
    pub handover_rva: u32,
    /// File offset and size of the compressed stream (as the zimg header says).
    pub payload_offset: u32,
    pub payload_size: u32,
    /// The kernel's own `xloadflags` (payload header): [`XLF_EFI_KEXEC`] is declared when the
    /// kernel declares it (the stub hands the EFI information kexec passes on to the kernel).
    pub kernel_xloadflags: u16,
    /// A version string lies at [`KERNEL_VERSION_AT`].
    pub kernel_version: bool,
    /// RVA of the kernel_info block (in the stub's record, `descriptor::KERNEL_INFO_AT`).
    pub kernel_info_rva: u32,
}

/// The setup header an image carries at 0x1f1: the EFI handover entry, the 32- and 64-bit
/// bzImage entries and the memory they need (`init_size`: the image after the headers and the
/// stack of the bzImage entries). `XLF_5LEVEL`: the stub may be entered in 5-level paging mode
/// (it switches to what the kernel takes before entering it).
pub fn setup_header(f: &SetupFacts) -> SetupHeader {
    SetupHeader {
        setup_sects: SETUP_SECTS,
        syssize: (f.image_size - HEADERS_SIZE).div_ceil(16),
        boot_flag: BOOT_FLAG,
        jump: SETUP_JUMP,
        header: HDRS_MAGIC,
        version: BOOT_PROTOCOL,
        type_of_loader: 0,
        loadflags: LOADED_HIGH,
        code32_start: CODE32_START,
        initrd_addr_max: 0x7fff_ffff,
        kernel_alignment: KERNEL_ALIGNMENT,
        relocatable_kernel: 1,
        min_alignment: KERNEL_ALIGNMENT.trailing_zeros() as u8,
        xloadflags: XLF_KERNEL_64
            | XLF_CAN_BE_LOADED_ABOVE_4G
            | XLF_EFI_HANDOVER_64
            | XLF_5LEVEL
            | (f.kernel_xloadflags & (XLF_EFI_KEXEC | XLF_5LEVEL_ENABLED)),
        cmdline_size: CMDLINE_SIZE,
        payload_offset: f
            .payload_offset
            .saturating_sub(u32::from(SETUP_SECTS) * 512 + 512),
        payload_length: f.payload_size,
        pref_address: PREF_ADDRESS,
        init_size: f.image_size - HEADERS_SIZE + BARE_SCRATCH_SIZE,
        handover_offset: handover_offset(f.handover_rva),
        kernel_info_offset: f.kernel_info_rva.saturating_sub(HEADERS_SIZE),
        kernel_version: if f.kernel_version {
            (KERNEL_VERSION_AT - 0x200) as u16
        } else {
            0
        },
        root_flags: ROOT_FLAGS,
        vid_mode: VID_MODE,
        start_sys_seg: START_SYS_SEG,
        setup_move_size: SETUP_MOVE_SIZE,
        ..SetupHeader::default()
    }
}

/// `handover_offset` for an entry at `rva`.
pub const fn handover_offset(rva: u32) -> u32 {
    rva.saturating_sub(HEADERS_SIZE + HANDOVER_ENTRY_BIAS)
}

/// PE section characteristics the parts use (IMAGE_SCN_*, PE/COFF specification).
pub mod scn {
    pub const CNT_CODE: u32 = 0x0000_0020;
    pub const CNT_INITIALIZED_DATA: u32 = 0x0000_0040;
    pub const CNT_UNINITIALIZED_DATA: u32 = 0x0000_0080;
    pub const MEM_DISCARDABLE: u32 = 0x0200_0000;
    pub const MEM_EXECUTE: u32 = 0x2000_0000;
    pub const MEM_READ: u32 = 0x4000_0000;
    pub const MEM_WRITE: u32 = 0x8000_0000;
    /// Read-only initialized data: every part the packer appends.
    pub const READ_ONLY_DATA: u32 = CNT_INITIALIZED_DATA | MEM_READ;
    /// The flags above by name (error messages).
    pub const NAMES: [(u32, &str); 7] = [
        (CNT_CODE, "CNT_CODE"),
        (CNT_INITIALIZED_DATA, "CNT_INITIALIZED_DATA"),
        (CNT_UNINITIALIZED_DATA, "CNT_UNINITIALIZED_DATA"),
        (MEM_DISCARDABLE, "DISCARDABLE"),
        (MEM_EXECUTE, "MEM_EXECUTE"),
        (MEM_READ, "MEM_READ"),
        (MEM_WRITE, "MEM_WRITE"),
    ];
}

/// The parts the packer appends after the stub's own sections (its code, then its data; their
/// places are the stub's, fixed by its link), each one PE section, in [`Part::APPENDED`] order.
/// Every part is read-only initialized data, never discardable (shim copies no discardable
/// section), and lies inside the signed bytes of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// `.zpayld`: the payload header, then the compressed kernel. Always present.
    Payload,
    /// `.cmdline`: the embedded command line (`--cmdline`), rules of [`crate::cmdline`].
    Cmdline,
    /// `.initrd`: the embedded initrd (`--initrd`).
    Initrd,
    /// `.sbat`: SBAT metadata for shim (`--sbat`), a CSV whose first line is the SBAT version.
    Sbat,
}

/// Why the appended parts of an image break the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartsError {
    /// No `.zpayld` section.
    NoPayload,
    /// A part appears twice.
    Duplicate(Part),
    /// A part comes before one that must precede it.
    OutOfOrder(Part),
    /// A part's section has other characteristics than [`Part::characteristics`].
    Characteristics(Part, u32),
    /// A part is larger than [`Part::max_size`].
    TooLarge(Part, u64),
    /// A part is empty (an absent part has no section at all).
    Empty(Part),
}

impl core::fmt::Display for PartsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            PartsError::NoPayload => write!(f, "no {} section", Part::Payload.name()),
            PartsError::Duplicate(p) => write!(f, "{}: more than one such section", p.name()),
            PartsError::OutOfOrder(p) => write!(
                f,
                "{}: out of order (appended parts go {})",
                p.name(),
                Part::ORDER_TEXT
            ),
            PartsError::Characteristics(p, c) => {
                write!(f, "{}: characteristics {c:#010x}", p.name())?;
                let (want, names) = (p.characteristics(), scn::NAMES);
                for (bit, name) in names.iter().filter(|(b, _)| (c ^ want) & b != 0) {
                    let sign = if c & bit != 0 { '+' } else { '-' };
                    write!(f, " {sign}{name}")?;
                }
                write!(f, ", want {want:#010x} (read-only initialized data)")
            }
            PartsError::TooLarge(p, n) => write!(
                f,
                "{}: {n} bytes, at most {} ({} as a section)",
                p.name(),
                p.max_size(),
                p.max_section_size()
            ),
            PartsError::Empty(p) => write!(f, "{}: empty section", p.name()),
        }
    }
}

impl Part {
    /// The appended parts, in the order they follow the stub's sections.
    pub const APPENDED: [Part; 4] = [Part::Payload, Part::Cmdline, Part::Initrd, Part::Sbat];
    const ORDER_TEXT: &'static str = ".zpayld, .cmdline, .initrd, .sbat";

    /// The section name.
    pub const fn name(self) -> &'static str {
        match self {
            Part::Payload => crate::PAYLOAD_SECTION_NAME,
            Part::Cmdline => crate::CMDLINE_SECTION_NAME,
            Part::Initrd => crate::INITRD_SECTION_NAME,
            Part::Sbat => crate::SBAT_SECTION_NAME,
        }
    }

    /// The name as it sits in a section header.
    pub const fn name8(self) -> [u8; 8] {
        crate::pe::name8(self.name())
    }

    /// The part a section header's name stands for.
    pub fn from_name8(name: &[u8; 8]) -> Option<Part> {
        Part::APPENDED.into_iter().find(|p| p.name8() == *name)
    }

    /// Section characteristics: read-only initialized data for every part.
    pub const fn characteristics(self) -> u32 {
        scn::READ_ONLY_DATA
    }

    /// Largest size in bytes: the payload and initrd sizes are 32-bit fields (zimg header,
    /// payload header), the command line is what the kernel keeps ([`crate::cmdline::MAX_LEN`]),
    /// SBAT is bounded by the PE's 32-bit sizes only.
    pub const fn max_size(self) -> u64 {
        match self {
            Part::Cmdline => crate::cmdline::MAX_LEN as u64,
            Part::Payload | Part::Initrd | Part::Sbat => u32::MAX as u64,
        }
    }

    /// Largest section (`VirtualSize`): [`Part::max_size`] padded to [`SECTION_ALIGNMENT`] (a
    /// section's raw data reaches the next section's start: the file has no gaps).
    pub const fn max_section_size(self) -> u64 {
        self.max_size().next_multiple_of(SECTION_ALIGNMENT as u64)
    }

    /// Check a part's contents before they become a section: not empty, within
    /// [`Part::max_size`].
    pub fn check_len(self, len: u64) -> Result<(), PartsError> {
        match len {
            0 => Err(PartsError::Empty(self)),
            n if n > self.max_size() => Err(PartsError::TooLarge(self, n)),
            _ => Ok(()),
        }
    }

    /// Check a part's section: its characteristics, its `VirtualSize` within
    /// [`Part::max_section_size`].
    fn check_section(self, characteristics: u32, vsize: u64) -> Result<(), PartsError> {
        if characteristics != self.characteristics() {
            return Err(PartsError::Characteristics(self, characteristics));
        }
        match vsize {
            0 => Err(PartsError::Empty(self)),
            n if n > self.max_section_size() => Err(PartsError::TooLarge(self, n)),
            _ => Ok(()),
        }
    }
}

/// A section as [`check_parts`] sees it: name, characteristics, VirtualSize.
pub type SectionRow = ([u8; 8], u32, u64);

/// Check the appended parts among an image's sections, in section-table order: the payload is there, each part at most once, in
/// [`Part::APPENDED`] order, each with its characteristics and within its size. Sections that
/// are no part (the stub's) are not judged here.
pub fn check_parts(sections: impl IntoIterator<Item = SectionRow>) -> Result<(), PartsError> {
    let mut last: Option<Part> = None;
    let mut payload = false;
    for (name, characteristics, size) in sections {
        let Some(part) = Part::from_name8(&name) else {
            continue;
        };
        match last {
            Some(l) if l == part => return Err(PartsError::Duplicate(part)),
            Some(l) if l > part => return Err(PartsError::OutOfOrder(part)),
            _ => {}
        }
        part.check_section(characteristics, size)?;
        payload |= part == Part::Payload;
        last = Some(part);
    }
    if payload {
        Ok(())
    } else {
        Err(PartsError::NoPayload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handover_entry_is_where_grub_calls() {
        let h = setup_header(&SetupFacts {
            image_size: 0x80_0000,
            handover_rva: 0x4560,
            payload_offset: 0x1_8100,
            payload_size: 0x7000,
            kernel_xloadflags: 0x7f,
            kernel_version: true,
            kernel_info_rva: 0x2_3258,
        });
        assert_eq!({ h.xloadflags } & XLF_EFI_KEXEC, XLF_EFI_KEXEC);
        // The readers of kernel_version (file(1), mkinitcpio, ukify) add 0x200; kernel_info is
        // counted from the protected-mode part.
        assert_eq!(usize::from(h.kernel_version) + 0x200, KERNEL_VERSION_AT);
        assert_eq!({ h.kernel_info_offset } + HEADERS_SIZE, 0x2_3258);
        assert_eq!(({ h.root_flags }, { h.vid_mode }), (1, 0xffff));
        // GRUB linuxefi: copy = file + (setup_sects + 1) * 512; call copy + handover_offset + 512.
        let copy_at = (u32::from(h.setup_sects) + 1) * 512;
        assert_eq!(copy_at, HEADERS_SIZE);
        assert_eq!(copy_at + { h.handover_offset } + 512, 0x4560);
        assert_eq!({ h.init_size }, 0x80_0000 - 0x1000 + BARE_SCRATCH_SIZE);
        assert_eq!({ h.boot_flag }, 0xaa55);
        // The bzImage entries: code32_start at the copy, the 64-bit entry 0x200 further.
        assert_eq!({ h.code32_start } - 0x10_0000 + copy_at, ENTRY32_RVA);
        assert_eq!(ENTRY64_RVA - copy_at, 0x200);
        // kexec_file_load: setup header bytes = 0x202 + jump displacement - 0x1f1.
        assert_eq!(h.to_bytes()[0x200 - 0x1f1], 0xeb);
        assert_eq!(0x202 + usize::from(h.to_bytes()[0x201 - 0x1f1]), 0x26c);
        // payload_offset counts from the end of the setup sectors, as in a bzImage.
        assert_eq!({ h.payload_offset } + copy_at, 0x1_8100);
    }

    fn sec(p: Part, size: u64) -> SectionRow {
        (p.name8(), p.characteristics(), size)
    }

    #[test]
    fn parts_in_order_pass() {
        let text = (
            *b".text\0\0\0",
            scn::CNT_CODE | scn::MEM_EXECUTE | scn::MEM_READ,
            9,
        );
        assert_eq!(check_parts([text, sec(Part::Payload, 9)]), Ok(()));
        let all = Part::APPENDED.map(|p| sec(p, 10));
        assert_eq!(check_parts(all), Ok(()));
        assert_eq!(Part::from_name8(&Part::Sbat.name8()), Some(Part::Sbat));
        assert_eq!(Part::from_name8(b".text\0\0\0"), None);
    }

    #[test]
    fn parts_out_of_rule_fail() {
        use PartsError::*;
        let cases: [(&[SectionRow], PartsError); 7] = [
            (&[sec(Part::Cmdline, 5)], NoPayload),
            (
                &[sec(Part::Payload, 5), sec(Part::Payload, 5)],
                Duplicate(Part::Payload),
            ),
            (
                &[
                    sec(Part::Payload, 5),
                    sec(Part::Sbat, 5),
                    sec(Part::Initrd, 5),
                ],
                OutOfOrder(Part::Initrd),
            ),
            (
                &[sec(Part::Cmdline, 5), sec(Part::Payload, 5)],
                OutOfOrder(Part::Payload),
            ),
            (
                &[(
                    Part::Payload.name8(),
                    scn::READ_ONLY_DATA | scn::MEM_DISCARDABLE,
                    5,
                )],
                Characteristics(Part::Payload, scn::READ_ONLY_DATA | scn::MEM_DISCARDABLE),
            ),
            (
                &[sec(Part::Payload, 5), sec(Part::Cmdline, 4097)],
                TooLarge(Part::Cmdline, 4097),
            ),
            (&[sec(Part::Payload, 0)], Empty(Part::Payload)),
        ];
        for (sections, want) in cases {
            assert_eq!(
                check_parts(sections.iter().copied()),
                Err(want),
                "{sections:?}"
            );
        }
    }

    #[test]
    fn kernel_version_from_the_banner() {
        let b = "Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian \
                 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP \
                 PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)\n";
        let v = KernelVersion::from_banner(b).unwrap();
        extern crate std;
        use std::string::ToString;
        assert_eq!(
            v.to_string(),
            "6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian \
             6.1.192-3 (2026-11-26)"
        );
        assert_eq!(v.release, "6.1.0-57-amd64");
        // Without a compiler group (old banners), or not a banner at all.
        let v = KernelVersion::from_banner("Linux version 2.6.32 (me@box) #3 Mon").unwrap();
        assert_eq!(v.version, "#3 Mon");
        for bad in [
            "",
            "Linux version ",
            "Linux version 6.1 (unclosed",
            "Linux 6.1 (a) #1",
        ] {
            assert_eq!(KernelVersion::from_banner(bad), None, "{bad:?}");
        }
        assert_eq!(check_kernel_version(b"6.1 (a@b) #1"), Ok(()));
        assert_eq!(check_kernel_version(b""), Err(VersionError::Empty));
        assert_eq!(check_kernel_version(b"6.1\n"), Err(VersionError::Byte(3)));
        assert_eq!(
            check_kernel_version(&[b'x'; KERNEL_VERSION_MAX + 1]),
            Err(VersionError::TooLong(KERNEL_VERSION_MAX + 1))
        );
    }
}

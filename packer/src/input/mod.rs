//! Kernel inputs. Each reader turns one file format into the same [`KernelImage`].

pub mod bzimage;
pub mod detect;
pub mod elf;
pub mod relocs;

use std::path::Path;

use anyhow::{Context, Result, bail};

/// One PT_LOAD segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Physical (load) address, `p_paddr`.
    pub paddr: u64,
    /// Virtual address, `p_vaddr` (informational: placement uses `paddr`).
    pub vaddr: u64,
    /// Bytes in memory (`p_memsz`), at least `data.len()`.
    pub mem_size: u64,
    /// ELF `p_flags`.
    pub flags: u32,
    /// File-backed bytes (`p_filesz`).
    pub data: Vec<u8>,
}

/// Where a kernel came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Elf,
    BzImage,
}

/// Facts about the kernel that are not segments, entry or relocations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub source: SourceKind,
    /// bzImage `xloadflags` (0 for a bare vmlinux).
    pub xloadflags: u16,
    /// bzImage boot protocol version (0 for a bare vmlinux).
    pub boot_protocol: u16,
    /// Physical alignment the kernel needs (bzImage `kernel_alignment`, else 2 MiB).
    pub alignment: Option<u64>,
    /// bzImage `init_size` (informational).
    pub init_size: Option<u32>,
    /// Compression of the bzImage payload (informational).
    pub bz_codec: Option<&'static str>,
    /// The kernel may be entered with 5-level paging.
    pub la57: bool,
    /// Where `la57` was learnt (`None`: nothing said, so it stays off).
    pub la57_source: Option<String>,
    /// Memory size recorded in a zboot note of an extracted ELF (keeps round trips exact).
    pub mem_size: Option<u64>,
    /// Where the kernel's text ends and what after it is never executed early (image offsets).
    pub text: Option<TextRange>,
    /// Why the kernel is known to tolerate entry with its text read-only (`None`: not known).
    pub text_ro_source: Option<String>,
    /// The version string for the setup header (`RELEASE (USER@HOST) #N ...`): a bzImage's own,
    /// else derived from the kernel's banner.
    pub kernel_version: Option<String>,
    /// The kernel_info `setup_type_max` of a bzImage (protocol >= 2.15).
    pub setup_type_max: Option<u32>,
}

/// The kernel's text and the range after it that holds no early-run code, as offsets from the
/// image start: `[0, size)` is `[_text, __start_rodata)`; `[size, nx_end)` lies outside every
/// executable PT_LOAD but the text's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextRange {
    pub size: u64,
    /// `None`: to the end of the kernel's memory.
    pub nx_end: Option<u64>,
}

impl Facts {
    pub fn elf() -> Self {
        Facts {
            source: SourceKind::Elf,
            xloadflags: 0,
            boot_protocol: 0,
            alignment: None,
            init_size: None,
            bz_codec: None,
            la57: false,
            la57_source: None,
            mem_size: None,
            text: None,
            text_ro_source: None,
            kernel_version: None,
            setup_type_max: None,
        }
    }
}

/// A kernel ready to be laid out.
#[derive(Clone, Debug)]
pub struct KernelImage {
    /// PT_LOAD segments sorted by physical address, non-overlapping.
    pub segments: Vec<Segment>,
    /// Physical entry address.
    pub entry: u64,
    /// The x86 relocation table (validated), if any.
    pub relocs: Option<Vec<u8>>,
    pub facts: Facts,
}

/// Input files larger than this are rejected before being read.
pub const MAX_INPUT_FILE: u64 = 1 << 30;

/// Read a whole input file with a one-line error naming it.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if meta.is_dir() {
        bail!("{}: is a directory", path.display());
    }
    if meta.len() > MAX_INPUT_FILE {
        bail!("{}: file too large ({} bytes)", path.display(), meta.len());
    }
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// Detect the format of `data` and read it. Errors are prefixed with `path`.
pub fn read_kernel(path: &Path, data: &[u8]) -> Result<KernelImage> {
    parse_kernel(data).with_context(|| path.display().to_string())
}

/// Detect the format of `data` and read it.
pub fn parse_kernel(data: &[u8]) -> Result<KernelImage> {
    if data.starts_with(b"\x7fELF") {
        elf::parse(data)
    } else if zboot_format::zimg::ZimgHeader::parse(data).is_ok() {
        bail!("already a zboot image (`zboot-pack extract` recovers its kernel)")
    } else if bzimage::is_bzimage(data) {
        bzimage::parse(data)
    } else {
        bail!("not an ELF or bzImage (bad magic)")
    }
}

//! What a bare vmlinux does not say in its headers but a bzImage build knows: whether the kernel
//! can run with 5-level paging (the bzImage's `XLF_5LEVEL`, set by header.S exactly when
//! `CONFIG_X86_5LEVEL=y`), and where its relocation table is (`make bzImage` writes it beside the
//! vmlinux). Each answer says where it came from, for `inspect` and the packer's notes.

use std::path::{Path, PathBuf};

use object::LittleEndian as LE;
use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader as _, SectionHeader as _, Sym as _};

/// The first kernel release in which x86 5-level paging support is no longer optional
/// (`CONFIG_X86_5LEVEL` removed in 6.16: every x86_64 kernel since can run with LA57).
pub const LA57_UNCONDITIONAL_SINCE: (u32, u32) = (6, 16);

/// Symbols `arch/x86/kernel/head64.c` exports only when the kernel has 5-level support (under
/// `CONFIG_X86_5LEVEL` before 6.16, unconditionally since).
const LA57_EXPORTS: [&[u8]; 2] = [b"pgdir_shift", b"ptrs_per_p4d"];
/// The variable holding the paging mode; it exists only in a kernel with 5-level support.
const LA57_SYMBOL: &[u8] = b"__pgtable_l5_enabled";

/// An answer and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// `None`: nothing in or beside the file says.
    pub la57: Option<bool>,
    pub source: String,
}

impl Decision {
    fn yes(source: impl Into<String>) -> Self {
        Decision {
            la57: Some(true),
            source: source.into(),
        }
    }
    fn no(source: impl Into<String>) -> Self {
        Decision {
            la57: Some(false),
            source: source.into(),
        }
    }
}

/// 5-level support from the ELF's own contents: its exported-symbol strings, else its symbol
/// table, else its version banner. `None` when none of them says.
pub fn la57_from_elf(data: &[u8]) -> Option<Decision> {
    let sections = ElfSections::parse(data)?;
    if let Some(strings) = sections.bytes(b"__ksymtab_strings") {
        let has = |name: &[u8]| strings.split(|&b| b == 0).any(|s| s == name);
        return Some(if LA57_EXPORTS.iter().all(|n| has(n)) {
            Decision::yes("exported symbols pgdir_shift, ptrs_per_p4d (CONFIG_X86_5LEVEL)")
        } else {
            Decision::no("exported symbols lack pgdir_shift, ptrs_per_p4d (no CONFIG_X86_5LEVEL)")
        });
    }
    if let Some(found) = sections.has_symbol(LA57_SYMBOL) {
        return Some(if found {
            Decision::yes("symbol __pgtable_l5_enabled (CONFIG_X86_5LEVEL)")
        } else {
            Decision::no("symbol table lacks __pgtable_l5_enabled (no CONFIG_X86_5LEVEL)")
        });
    }
    None
}

/// The first release whose own EFI stub enters the kernel with its text read-only + executable
/// (x86-stub.c `efi_adjust_memory_range_protection`; 6.6.y and 6.1.y got it in backports that a
/// version number cannot tell apart, so those are only trusted through a bzImage's NX_COMPAT).
pub const TEXT_RO_SINCE: (u32, u32) = (6, 8);

/// `(major, minor)` of a "Linux version X.Y..." banner.
fn release(banner: &str) -> Option<(u32, u32)> {
    let release = banner.strip_prefix("Linux version ")?;
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Whether the kernel's release says it tolerates a read-only text at entry.
pub fn text_ro_from_version(banner: &str) -> Option<String> {
    let (major, minor) = release(banner)?;
    ((major, minor) >= TEXT_RO_SINCE).then(|| {
        format!("Linux {major}.{minor} (its own EFI stub enters it with read-only text since 6.8)")
    })
}

/// The virtual address of `__start_rodata` (the `.rodata` section), where the text ends.
pub fn rodata_start(data: &[u8]) -> Option<u64> {
    let sections = ElfSections::parse(data)?;
    let (_, sec) = sections.table.section_by_name(LE, b".rodata")?;
    Some(sec.sh_addr(LE))
}

/// 5-level support from a kernel version banner ("Linux version 6.16.0 ..."): yes from 6.16 on.
pub fn la57_from_version(banner: &str) -> Option<Decision> {
    let (major, minor) = release(banner)?;
    ((major, minor) >= LA57_UNCONDITIONAL_SINCE).then(|| {
        Decision::yes(format!(
            "Linux {major}.{minor} (5-level support is unconditional since 6.16)"
        ))
    })
}

/// 5-level support from the `.config` of the build tree the vmlinux sits in. A `.config` newer
/// than the vmlinux (configured again, not built yet) is not trusted.
pub fn la57_from_config(vmlinux: &Path) -> Option<Decision> {
    let config = vmlinux.parent()?.join(".config");
    let text = std::fs::read_to_string(&config).ok()?;
    if newer_than(&config, vmlinux) {
        return None;
    }
    let shown = config.display();
    text.lines().find_map(|l| match l.trim() {
        "CONFIG_X86_5LEVEL=y" => Some(Decision::yes(format!("{shown}: CONFIG_X86_5LEVEL=y"))),
        "# CONFIG_X86_5LEVEL is not set" => Some(Decision::no(format!(
            "{shown}: CONFIG_X86_5LEVEL is not set"
        ))),
        _ => None,
    })
}

/// Where a kernel build leaves the relocation table of `vmlinux` (`make bzImage`).
pub const RELOCS_BESIDE: &str = "arch/x86/boot/compressed/vmlinux.relocs";

/// The relocation table of a build tree's vmlinux, if one sits in its place and is not older
/// than the vmlinux (an older one belongs to an earlier build: `Err` says so).
pub fn relocs_beside(vmlinux: &Path) -> Option<Result<PathBuf, String>> {
    let path = vmlinux.parent()?.join(RELOCS_BESIDE);
    if !path.is_file() {
        return None;
    }
    Some(if newer_than(vmlinux, &path) {
        Err(format!(
            "{} is older than {}: not used (run `make bzImage` to rebuild it, or pass --relocs)",
            path.display(),
            vmlinux.display()
        ))
    } else {
        Ok(path)
    })
}

fn newer_than(a: &Path, b: &Path) -> bool {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((mtime(a), mtime(b)), (Some(x), Some(y)) if x > y)
}

/// The section header table of an ELF64 little-endian file, bounds-checked by `object`.
struct ElfSections<'a> {
    data: &'a [u8],
    table: object::read::elf::SectionTable<'a, FileHeader64<LE>>,
}

impl<'a> ElfSections<'a> {
    fn parse(data: &'a [u8]) -> Option<Self> {
        let hdr = FileHeader64::<LE>::parse(data).ok()?;
        let table = hdr.sections(LE, data).ok()?;
        (!table.is_empty()).then_some(ElfSections { data, table })
    }

    fn bytes(&self, name: &[u8]) -> Option<&'a [u8]> {
        let (_, sec) = self.table.section_by_name(LE, name)?;
        sec.data(LE, self.data).ok()
    }

    /// `Some(found)` when the file has a symbol table.
    fn has_symbol(&self, name: &[u8]) -> Option<bool> {
        let symbols = self.table.symbols(LE, self.data, elf::SHT_SYMTAB).ok()?;
        if symbols.is_empty() {
            return None;
        }
        Some(
            symbols
                .iter()
                .any(|s| s.name(LE, symbols.strings()).is_ok_and(|n| n == name)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_banner() {
        let v = |s| la57_from_version(s).map(|d| d.la57);
        assert_eq!(v("Linux version 6.16.0-rc1 (x@y) #1"), Some(Some(true)));
        assert_eq!(v("Linux version 7.0.2"), Some(Some(true)));
        assert_eq!(v("Linux version 6.12.48+deb12-amd64 (x)"), None);
        assert_eq!(v("Linux version 5.19.0"), None);
        assert_eq!(v("Linux version x"), None);
    }

    #[test]
    fn config_beside_the_vmlinux() {
        let dir = tempfile::tempdir().unwrap();
        let vmlinux = dir.path().join("vmlinux");
        std::fs::write(
            dir.path().join(".config"),
            "CONFIG_X86_64=y\nCONFIG_X86_5LEVEL=y\n",
        )
        .unwrap();
        std::fs::write(&vmlinux, b"elf").unwrap();
        assert_eq!(la57_from_config(&vmlinux).unwrap().la57, Some(true));
        std::fs::write(
            dir.path().join(".config"),
            "# CONFIG_X86_5LEVEL is not set\n",
        )
        .unwrap();
        std::fs::write(&vmlinux, b"elf").unwrap();
        assert_eq!(la57_from_config(&vmlinux).unwrap().la57, Some(false));
        std::fs::write(dir.path().join(".config"), "CONFIG_X86_64=y\n").unwrap();
        assert_eq!(la57_from_config(&vmlinux), None);
    }

    #[test]
    fn stale_relocs_are_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let vmlinux = dir.path().join("vmlinux");
        assert!(relocs_beside(&vmlinux).is_none());
        let relocs = dir.path().join(RELOCS_BESIDE);
        std::fs::create_dir_all(relocs.parent().unwrap()).unwrap();
        std::fs::write(&relocs, [0u8; 12]).unwrap();
        std::fs::write(&vmlinux, b"elf").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        crate::testkit::set_mtime(&relocs, old);
        assert!(relocs_beside(&vmlinux).unwrap().is_err());
        crate::testkit::set_mtime(&vmlinux, old - std::time::Duration::from_secs(60));
        assert_eq!(relocs_beside(&vmlinux).unwrap(), Ok(relocs));
    }
}

//! Building the probe kernel (`fixtures/probe-kernel`) and its relocation table.
//!
//! `cargo xtask probe build` builds the freestanding ELF for `x86_64-unknown-none`, then, like
//! Linux's `arch/x86/tools/relocs`, reads the relocations the linker kept (`--emit-relocs`) and
//! writes `vmlinux.relocs` (`0, rel64..., 0, inv32..., 0, rel32...`, u32 LE low 32 bits of the
//! kernel virtual address of each location). It also fills the probe's `.probe_manifest` section
//! with every location and its link-time value, so that the probe can check at boot that the
//! loader applied the whole table for the displacement it chose. Outputs, in
//! `target/probe-kernel/`: `vmlinux` (the patched ELF) and `vmlinux.relocs`.
//!
//! Invariants enforced here (the build fails otherwise):
//! - ELF64 x86_64 `ET_EXEC`, several PT_LOADs, first at physical 16 MiB, every PT_LOAD 2 MiB aligned
//!   with virtual = physical + `__START_KERNEL_map`, `e_entry` = physical address of `probe_entry`.
//! - No absolute relocation inside executable sections (the code is position independent: it first
//!   runs at whatever physical base the loader chose), no GOT use in the early phase.
//! - GOT slots (which the linker fills with absolute addresses and no relocation) are listed as
//!   64-bit entries, so a loader applying the table fixes them too.
//! - All three lists are non-empty.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use probe_kernel::layout::{
    self, INV32_VALUES, LINK_VIRT_BASE, LOAD_PHYSICAL_ADDR, MANIFEST_SECTION,
};
use probe_kernel::manifest::{self, Kind};
use zboot_format::X86_START_KERNEL_MAP;
use zboot_format::relocs::RelocTable;

/// What `build` produced.
#[derive(Clone, Debug)]
pub struct ProbeArtifacts {
    /// The probe kernel ELF (vmlinux-shaped, manifest filled in).
    pub vmlinux: PathBuf,
    /// Its relocation table (arch/x86/boot/compressed/vmlinux.relocs format).
    pub relocs: PathBuf,
    /// Entry counts: (64-bit, inverse 32-bit, 32-bit).
    pub counts: (u32, u32, u32),
    /// `_end - _text`.
    pub image_size: u64,
}

/// Build the probe kernel and generate its relocation table.
pub fn build(workspace_root: &Path) -> Result<ProbeArtifacts> {
    let target_dir = workspace_root.join("target").join("probe-kernel");
    let release = crate::fixtures::build_target_crate(
        workspace_root,
        "probe-kernel",
        "x86_64-unknown-none",
        &target_dir,
    )?;
    let elf_path = release.join("probe-kernel");
    let elf =
        std::fs::read(&elf_path).with_context(|| format!("reading {}", elf_path.display()))?;
    let g = generate(&elf).with_context(|| format!("processing {}", elf_path.display()))?;
    let vmlinux = target_dir.join("vmlinux");
    let relocs = target_dir.join("vmlinux.relocs");
    std::fs::write(&vmlinux, &g.elf).with_context(|| format!("writing {}", vmlinux.display()))?;
    std::fs::write(&relocs, &g.table).with_context(|| format!("writing {}", relocs.display()))?;
    Ok(ProbeArtifacts {
        vmlinux,
        relocs,
        counts: g.counts,
        image_size: g.image_size,
    })
}

/// `cargo xtask probe build`.
pub fn cli(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("build") | None => {
            let root = crate::workspace_root();
            let a = build(&root).map_err(|e| format!("{e:#}"))?;
            println!("vmlinux={}", a.vmlinux.display());
            println!("relocs={}", a.relocs.display());
            println!(
                "relocs_counts={},{},{} image_size={:#x}",
                a.counts.0, a.counts.1, a.counts.2, a.image_size
            );
            Ok(())
        }
        Some(other) => Err(format!(
            "unknown probe command {other:?} (usage: cargo xtask probe build)"
        )),
    }
}

// -------------------------------------------------------------------------------------------------
// The ELF as the generator reads it (headers through the `object` crate).

use object::LittleEndian as LE;
use object::elf::{
    EM_X86_64, ET_EXEC, FileHeader64, PT_LOAD, R_X86_64_32, R_X86_64_32S, R_X86_64_64,
    R_X86_64_GOTPCREL, R_X86_64_GOTPCRELX, R_X86_64_NONE, R_X86_64_PC32, R_X86_64_PC64,
    R_X86_64_PLT32, R_X86_64_REX_GOTPCRELX, SHN_ABS, SHT_RELA, SHT_SYMTAB,
};
use object::read::elf::{FileHeader as _, ProgramHeader as _, SectionHeader as _, Sym as _};

const SHF_ALLOC: u64 = object::elf::SHF_ALLOC as u64;
const SHF_EXECINSTR: u64 = object::elf::SHF_EXECINSTR as u64;

fn rd<const N: usize>(b: &[u8], off: u64) -> Result<[u8; N]> {
    let off = usize::try_from(off)?;
    b.get(off..off + N)
        .and_then(|s| s.try_into().ok())
        .with_context(|| format!("ELF truncated at {off:#x}"))
}
fn u16_at(b: &[u8], off: u64) -> Result<u16> {
    Ok(u16::from_le_bytes(rd(b, off)?))
}
fn u32_at(b: &[u8], off: u64) -> Result<u32> {
    Ok(u32::from_le_bytes(rd(b, off)?))
}
fn u64_at(b: &[u8], off: u64) -> Result<u64> {
    Ok(u64::from_le_bytes(rd(b, off)?))
}

#[derive(Clone, Copy, Debug)]
pub struct Phdr {
    pub typ: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

#[derive(Clone, Debug)]
pub struct Shdr {
    pub name: String,
    pub typ: u32,
    pub flags: u64,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
    pub info: u32,
    pub entsize: u64,
}

#[derive(Clone, Debug)]
pub struct Sym {
    pub name: String,
    pub value: u64,
}

/// The parts of an ELF file the generator reads.
pub struct Elf {
    pub entry: u64,
    pub phdrs: Vec<Phdr>,
    pub shdrs: Vec<Shdr>,
    pub syms: Vec<Sym>,
}

impl Elf {
    pub fn parse(b: &[u8]) -> Result<Self> {
        let h = FileHeader64::<LE>::parse(b).context("not an ELF64 little-endian file")?;
        ensure!(h.e_type(LE) == ET_EXEC, "not ET_EXEC");
        ensure!(h.e_machine(LE) == EM_X86_64, "not x86_64");
        let phdrs = h
            .program_headers(LE, b)
            .context("program headers")?
            .iter()
            .map(|p| Phdr {
                typ: p.p_type(LE),
                flags: p.p_flags(LE),
                offset: p.p_offset(LE),
                vaddr: p.p_vaddr(LE),
                paddr: p.p_paddr(LE),
                filesz: p.p_filesz(LE),
                memsz: p.p_memsz(LE),
                align: p.p_align(LE),
            })
            .collect();
        let sections = h.sections(LE, b).context("section headers")?;
        let name = |n: &[u8]| String::from_utf8_lossy(n).into_owned();
        let shdrs = sections
            .iter()
            .map(|s| {
                Ok(Shdr {
                    name: name(sections.section_name(LE, s).context("section name")?),
                    typ: s.sh_type(LE),
                    flags: s.sh_flags(LE),
                    addr: s.sh_addr(LE),
                    offset: s.sh_offset(LE),
                    size: s.sh_size(LE),
                    link: s.sh_link(LE),
                    info: s.sh_info(LE),
                    entsize: s.sh_entsize(LE),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let symbols = sections
            .symbols(LE, b, SHT_SYMTAB)
            .context("symbol table")?;
        let syms = symbols
            .iter()
            .map(|s| {
                Ok(Sym {
                    name: name(symbols.symbol_name(LE, s).context("symbol name")?),
                    value: s.st_value(LE),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Elf {
            entry: h.e_entry(LE),
            phdrs,
            shdrs,
            syms,
        })
    }

    pub fn sym(&self, name: &str) -> Result<u64> {
        self.syms
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.value)
            .with_context(|| format!("symbol {name} not found"))
    }

    pub fn section(&self, name: &str) -> Option<&Shdr> {
        self.shdrs.iter().find(|s| s.name == name)
    }

    pub fn loads(&self) -> impl Iterator<Item = &Phdr> {
        self.phdrs.iter().filter(|p| p.typ == PT_LOAD)
    }

    /// File offset of `len` bytes at virtual `vaddr` (inside one PT_LOAD's file bytes).
    pub fn file_offset(&self, vaddr: u64, len: u64) -> Result<u64> {
        self.loads()
            .find(|p| p.vaddr <= vaddr && vaddr + len <= p.vaddr + p.filesz)
            .map(|p| p.offset + (vaddr - p.vaddr))
            .with_context(|| format!("{vaddr:#x} not in a PT_LOAD's file data"))
    }
}

// -------------------------------------------------------------------------------------------------
// The generator.

/// The generator's outputs.
pub struct Generated {
    /// The ELF with `.probe_manifest` filled in.
    pub elf: Vec<u8>,
    /// `vmlinux.relocs`.
    pub table: Vec<u8>,
    pub counts: (u32, u32, u32),
    pub image_size: u64,
}

const ALIGN_2M: u64 = 2 << 20;

/// Check the ELF's shape, collect its relocations, fill the manifest, build the table.
pub fn generate(elf_bytes: &[u8]) -> Result<Generated> {
    let elf = Elf::parse(elf_bytes)?;
    check_shape(&elf)?;
    let text = elf.sym(layout::SYM_TEXT)?;
    let image_size = elf.sym(layout::SYM_END)? - text;

    let mut rel64 = BTreeSet::new();
    let mut rel32 = BTreeSet::new();
    let early = (elf.sym("__early_start")?, elf.sym("__early_end")?);
    for rs in elf.shdrs.iter().filter(|s| s.typ == SHT_RELA) {
        let target = elf.shdrs.get(rs.info as usize).context("bad sh_info")?;
        if target.flags & SHF_ALLOC == 0 {
            continue;
        }
        let symtab = elf.shdrs.get(rs.link as usize).context("bad sh_link")?;
        ensure!(rs.entsize == 24, "{}: unexpected entry size", rs.name);
        for i in 0..rs.size / 24 {
            let o = rs.offset + i * 24;
            let (at, info) = (u64_at(elf_bytes, o)?, u64_at(elf_bytes, o + 8)?);
            let (sym, typ) = (info >> 32, info as u32);
            let shndx = u16_at(elf_bytes, symtab.offset + sym * 24 + 6)?;
            let exec = target.flags & SHF_EXECINSTR != 0;
            let in_early = early.0 <= at && at < early.1;
            match typ {
                R_X86_64_NONE | R_X86_64_PC32 | R_X86_64_PLT32 | R_X86_64_PC64 => {}
                R_X86_64_GOTPCREL | R_X86_64_GOTPCRELX | R_X86_64_REX_GOTPCRELX => {
                    ensure!(
                        !in_early,
                        "GOT use at {at:#x} in the early (physical-address) phase"
                    );
                }
                R_X86_64_64 | R_X86_64_32 | R_X86_64_32S => {
                    ensure!(
                        shndx != SHN_ABS,
                        "absolute relocation at {at:#x} against an absolute symbol"
                    );
                    ensure!(
                        !exec,
                        "absolute relocation in code at {at:#x} ({}): the probe must be position independent",
                        target.name
                    );
                    if typ == R_X86_64_64 {
                        rel64.insert(at);
                    } else {
                        rel32.insert(at);
                    }
                }
                other => bail!(
                    "unsupported relocation type {other} at {at:#x} in {}",
                    target.name
                ),
            }
        }
    }
    // GOT slots hold absolute addresses the linker wrote without a relocation.
    if let Some(got) = elf.section(".got").filter(|s| s.size > 0) {
        for i in 0..got.size / 8 {
            let at = got.addr + 8 * i;
            let v = u64_at(elf_bytes, got.offset + 8 * i)?;
            if (text..=text + image_size).contains(&v) {
                rel64.insert(at);
            } else {
                ensure!(v == 0, "GOT slot {at:#x} holds {v:#x}, outside the image");
            }
        }
    }
    let inv_base = elf.sym(layout::SYM_INV32)?;
    let inv32: BTreeSet<u64> = (0..INV32_VALUES.len() as u64)
        .map(|i| inv_base + 4 * i)
        .collect();

    ensure!(
        !rel64.is_empty() && !inv32.is_empty() && !rel32.is_empty(),
        "a relocation list is empty"
    );
    let man = elf
        .section(MANIFEST_SECTION)
        .context("no .probe_manifest section")?;
    let man_range = man.addr..man.addr + man.size;
    let mut entries = Vec::new();
    for (kind, set, width) in [
        (Kind::Rel64, &rel64, 8),
        (Kind::Inv32, &inv32, 4),
        (Kind::Rel32, &rel32, 4),
    ] {
        for &at in set.iter() {
            ensure!(
                at >= text && at + width <= text + image_size,
                "relocation at {at:#x} outside the image"
            );
            ensure!(
                !man_range.contains(&at),
                "relocation inside the manifest at {at:#x}"
            );
            ensure!(
                at as u32 as i32 as i64 as u64 == at,
                "{at:#x} not sign-extendable from 32 bits"
            );
            let fo = elf.file_offset(at, width)?;
            let link_value = if width == 8 {
                u64_at(elf_bytes, fo)?
            } else {
                u32_at(elf_bytes, fo)? as u64
            };
            entries.push(manifest::Entry {
                kind,
                offset: u32::try_from(at - text)?,
                link_value,
            });
        }
    }
    let mut out = elf_bytes.to_vec();
    let m = &mut out[man.offset as usize..(man.offset + man.size) as usize];
    manifest::encode(&entries, m).with_context(|| {
        format!(
            "{} relocations do not fit in the manifest (capacity {})",
            entries.len(),
            manifest::capacity(man.size as usize)
        )
    })?;

    let mut table = Vec::new();
    for set in [&rel64, &inv32, &rel32] {
        table.extend_from_slice(&0u32.to_le_bytes());
        for &at in set.iter() {
            table.extend_from_slice(&(at as u32).to_le_bytes());
        }
    }
    let counts = (rel64.len() as u32, inv32.len() as u32, rel32.len() as u32);
    let rt = RelocTable::parse(&table).map_err(|e| anyhow::anyhow!("generated table: {e}"))?;
    ensure!(rt.counts() == counts, "generated table counts mismatch");
    rt.validate(LINK_VIRT_BASE, image_size)
        .map_err(|e| anyhow::anyhow!("generated table: {e}"))?;
    Ok(Generated {
        elf: out,
        table,
        counts,
        image_size,
    })
}

fn check_shape(elf: &Elf) -> Result<()> {
    let loads: Vec<&Phdr> = elf.loads().collect();
    ensure!(
        loads.len() >= 2,
        "want several PT_LOADs, got {}",
        loads.len()
    );
    ensure!(
        loads[0].paddr == LOAD_PHYSICAL_ADDR,
        "first PT_LOAD at physical {:#x}, want {LOAD_PHYSICAL_ADDR:#x}",
        loads[0].paddr
    );
    for p in &loads {
        ensure!(
            p.paddr % ALIGN_2M == 0 && p.align == ALIGN_2M,
            "PT_LOAD at {:#x} not 2 MiB aligned (align {:#x})",
            p.paddr,
            p.align
        );
        ensure!(
            p.vaddr == p.paddr + X86_START_KERNEL_MAP,
            "PT_LOAD vaddr {:#x} != paddr {:#x} + __START_KERNEL_map",
            p.vaddr,
            p.paddr
        );
        ensure!(p.memsz >= p.filesz, "PT_LOAD memsz < filesz");
        let _ = p.flags;
    }
    let text = elf.sym(layout::SYM_TEXT)?;
    ensure!(
        text == LINK_VIRT_BASE,
        "_text at {text:#x}, want {LINK_VIRT_BASE:#x}"
    );
    let entry = elf.sym(layout::SYM_ENTRY)?;
    ensure!(
        elf.entry == entry - X86_START_KERNEL_MAP,
        "e_entry {:#x} is not the physical address of probe_entry ({entry:#x})",
        elf.entry
    );
    ensure!(elf.section(".bss").is_some_and(|s| s.size > 0), "no .bss");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe_kernel::checks::{
        self, AR_CODE, AR_L, CR0_PE, CR0_PG, CR4_PAE, CpuState, EFER_LMA, EFER_LME,
    };
    use probe_kernel::layout::{Designated, MANIFEST_SIZE};
    use probe_kernel::mem::Regions;
    use probe_kernel::out::Sink;
    use probe_kernel::report::{self, Inputs};
    use std::process::Command;
    use zboot_format::bootparam::{BootParams, E820Entry, EFI_LOADER_SIGNATURE_64, KASLR_FLAG};

    struct Built {
        g: Generated,
        designated: Designated,
        manifest_off: u64,
    }

    /// Lay the PT_LOADs out as a loader does: each at `p_paddr - first p_paddr`, zero-filled gaps and
    /// `.bss`. Returns the image (its size is the end of the last segment).
    fn flatten(elf: &Elf, bytes: &[u8]) -> Result<Vec<u8>> {
        let first = elf.loads().next().context("no PT_LOAD")?.paddr;
        let end = elf
            .loads()
            .map(|p| p.paddr - first + p.memsz)
            .max()
            .unwrap_or(0);
        let mut img = vec![0u8; usize::try_from(end)?];
        for p in elf.loads() {
            let at = (p.paddr - first) as usize;
            let src = bytes
                .get(p.offset as usize..(p.offset + p.filesz) as usize)
                .context("PT_LOAD outside the file")?;
            img[at..at + src.len()].copy_from_slice(src);
        }
        Ok(img)
    }

    fn built() -> &'static Built {
        static B: std::sync::OnceLock<Built> = std::sync::OnceLock::new();
        B.get_or_init(|| {
            let a = build(&crate::workspace_root()).expect("probe build");
            let elf = std::fs::read(&a.vmlinux).unwrap();
            // Re-generate from the raw linker output to also test `generate` itself.
            let raw = std::fs::read(
                a.vmlinux
                    .with_file_name("x86_64-unknown-none/release/probe-kernel"),
            )
            .unwrap();
            let g = generate(&raw).unwrap();
            assert_eq!(g.elf, elf);
            assert_eq!(g.table, std::fs::read(&a.relocs).unwrap());
            let e = Elf::parse(&elf).unwrap();
            let off = |s: &str| e.sym(s).unwrap() - LINK_VIRT_BASE;
            Built {
                designated: Designated {
                    rel64: off(layout::SYM_REL64),
                    inv32: off(layout::SYM_INV32),
                    rel32: off(layout::SYM_REL32),
                },
                manifest_off: off(layout::SYM_MANIFEST),
                g,
            }
        })
    }

    /// Flatten and relocate the probe as a loader would, for `delta`.
    fn loaded(delta: u64) -> Vec<u8> {
        let b = built();
        let elf = Elf::parse(&b.g.elf).unwrap();
        let mut img = flatten(&elf, &b.g.elf).unwrap();
        assert_eq!(img.len() as u64, b.g.image_size);
        let rt = RelocTable::parse(&b.g.table).unwrap();
        rt.apply(&mut img, LINK_VIRT_BASE, delta).unwrap();
        img
    }

    #[test]
    fn elf_shape_and_table() {
        let b = built();
        let (n64, ninv, n32) = b.g.counts;
        assert!(n64 >= 4 && ninv == 3 && n32 >= 3, "{:?}", b.g.counts);
        let rt = RelocTable::parse(&b.g.table).unwrap();
        assert_eq!(rt.counts(), b.g.counts);
        let elf = Elf::parse(&b.g.elf).unwrap();
        assert!(elf.loads().count() >= 3);
        assert_eq!(
            elf.entry,
            elf.sym("probe_entry").unwrap() - X86_START_KERNEL_MAP
        );
        // readelf agrees (when installed).
        if let Ok(out) = Command::new("readelf")
            .arg("-lW")
            .arg(&build_paths().0)
            .output()
        {
            let s = String::from_utf8_lossy(&out.stdout);
            assert!(s.contains("Entry point 0x1000000"), "{s}");
            assert!(s.contains("0xffffffff81000000 0x0000000001000000"), "{s}");
            assert!(s.matches("LOAD").count() >= 3, "{s}");
        }
    }

    fn build_paths() -> (PathBuf, PathBuf) {
        let t = crate::workspace_root().join("target/probe-kernel");
        (t.join("vmlinux"), t.join("vmlinux.relocs"))
    }

    #[test]
    fn relocation_checks_accept_the_applied_delta_only() {
        let b = built();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let max_slots =
            (layout::KERNEL_IMAGE_SIZE - LOAD_PHYSICAL_ADDR - b.g.image_size) / (2 << 20);
        for round in 0..6 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let delta = if round == 0 {
                0
            } else {
                (seed % (max_slots + 1)) * (2 << 20)
            };
            let img = loaded(delta);
            let anchor =
                u64::from_le_bytes(img[b.designated.rel64 as usize..][..8].try_into().unwrap());
            assert_eq!(checks::delta_from_anchor(anchor), delta);
            checks::check_delta(delta, b.g.image_size).unwrap();
            checks::check_designated(&img, &b.designated, delta).unwrap();
            let man = &img[b.manifest_off as usize..][..MANIFEST_SIZE];
            assert_eq!(
                checks::check_manifest(&img, man, delta).unwrap(),
                b.g.counts
            );
            let wrong = delta ^ (2 << 20);
            assert!(checks::check_designated(&img, &b.designated, wrong).is_err());
            assert!(checks::check_manifest(&img, man, wrong).is_err());
        }
        // A loader that applies only the 64-bit list is caught.
        let delta = 0x0400_0000;
        let mut img = flatten(&Elf::parse(&b.g.elf).unwrap(), &b.g.elf).unwrap();
        let rt = RelocTable::parse(&b.g.table).unwrap();
        let only64 = RelocTable {
            rel64: rt.rel64,
            inv32: &[],
            rel32: &[],
        };
        only64.apply(&mut img, LINK_VIRT_BASE, delta).unwrap();
        let man = &img[b.manifest_off as usize..][..MANIFEST_SIZE];
        assert_eq!(
            checks::check_manifest(&img, man, delta).unwrap_err().what,
            "inv32"
        );
    }

    struct Buf(Vec<u8>);
    impl Sink for Buf {
        fn write(&mut self, b: &[u8]) {
            self.0.extend_from_slice(b)
        }
    }

    /// The whole report over a simulated machine: the loaded probe at 0x3e00000 displaced by 6 MiB.
    #[test]
    fn full_report_passes_on_a_simulated_machine() {
        let b = built();
        let delta = 0x60_0000;
        let load_base = 0x3e0_0000u64;
        let img = loaded(delta);
        let mut bp = BootParams::zeroed();
        bp.hdr.version = 0x020f;
        bp.hdr.type_of_loader = 0xff;
        bp.hdr.loadflags = KASLR_FLAG | 1;
        bp.hdr.cmd_line_ptr = 0x8000;
        bp.efi_info.efi_loader_signature = EFI_LOADER_SIGNATURE_64;
        bp.efi_info.efi_systab = 0xa000;
        bp.efi_info.efi_memmap = 0x9000;
        bp.efi_info.efi_memdesc_size = 48;
        bp.efi_info.efi_memdesc_version = 1;
        bp.e820_entries = 2;
        bp.e820_table[0] = E820Entry {
            addr: 0,
            size: 0x8000_0000,
            typ: 1,
        };
        bp.e820_table[1] = E820Entry {
            addr: 0xfeb0_0000,
            size: 0x10_0000,
            typ: 2,
        };
        let mut map = Vec::new();
        for (typ, phys, pages) in [
            (2u32, 0x7000u64, 4u64),
            (7, 0xb000, 0x3df5),
            (2, load_base, 0x2000),
        ] {
            let mut d = [0u8; 48];
            d[0..4].copy_from_slice(&typ.to_le_bytes());
            d[8..16].copy_from_slice(&phys.to_le_bytes());
            d[24..32].copy_from_slice(&pages.to_le_bytes());
            map.extend_from_slice(&d);
        }
        bp.efi_info.efi_memmap_size = map.len() as u32;
        let cmdline = b"console=ttyS0 probe\0";
        let systab = *b"IBI SYST";
        let regions: Vec<(u64, &[u8])> = vec![
            (0x7000, bp.as_bytes()),
            (0x8000, cmdline),
            (0x9000, &map),
            (0xa000, &systab),
            (load_base, &img),
        ];
        let inputs = Inputs {
            cpu: CpuState {
                rflags: 2,
                cr0: CR0_PG | CR0_PE,
                cr4: CR4_PAE,
                efer: EFER_LMA | EFER_LME,
                cs: 0x38,
                cs_access: Some(AR_CODE | AR_L | 0x9a00),
                ..CpuState::default()
            },
            boot_params: 0x7000,
            load_base,
            image_size: b.g.image_size,
            delta,
            designated: b.designated,
            manifest_off: b.manifest_off,
            manifest_len: MANIFEST_SIZE as u64,
            bss_zero: true,
            text_attr: Default::default(),
            rodata_attr: Default::default(),
            data_attr: Default::default(),
        };
        let mut out = Buf(Vec::new());
        let pass = report::run(&inputs, &Regions(&regions), &mut out);
        let text = String::from_utf8(out.0).unwrap();
        println!("{text}");
        assert!(pass, "{text}");
        assert!(text.ends_with("ZBOOT-PROBE result=pass\n"));
        assert!(text.contains("ZBOOT-PROBE cmdline=console=ttyS0 probe\n"));
        assert!(text.contains("ZBOOT-PROBE virt_delta=0x600000\n"));
        assert!(text.contains("ZBOOT-PROBE load_base=0x3e00000\n"));
        assert!(text.contains(&format!("ZBOOT-PROBE relocs_rel64={}\n", b.g.counts.0)));

        // The same machine, but the loader forgot the relocations: the report says so.
        let unrelocated = loaded(0);
        let regions2: Vec<(u64, &[u8])> = regions
            .iter()
            .map(|&(a, d)| {
                if a == load_base {
                    (a, &unrelocated[..])
                } else {
                    (a, d)
                }
            })
            .collect();
        let mut out = Buf(Vec::new());
        assert!(!report::run(&inputs, &Regions(&regions2), &mut out));
        let text = String::from_utf8(out.0).unwrap();
        assert!(
            text.contains("ZBOOT-PROBE check_relocs=fail:rel64:"),
            "{text}"
        );
        assert!(text.ends_with("ZBOOT-PROBE result=fail:relocs\n"), "{text}");
    }
}

//! Other loaders' build tools, unpacked (never installed) from Debian packages of the suite that
//! ships them: GRUB 2.12 (Debian 13) and 2.06 (Debian 12) with `grub-mkstandalone`, GRUB 2.06
//! for BIOS (i386-pc, `grub-mkimage`), systemd-stub and `ukify` 257 (Debian 13) and of Debian
//! unstable. Each tool set lives in `<cache>/tools/<name>-<version>/` (a filesystem root); a
//! suite other than the machine's comes through a private apt view ([`fixtures::suite_apt`]).
//! Binaries of a newer suite run with that suite's own dynamic loader and libraries
//! ([`ToolRoot::command`]); ukify is Python and runs with the machine's python3 and
//! python3-pefile.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::fixtures::{self, Apt, FetchOptions};

/// One tool set: which suite, which packages, and a file that proves it is complete.
pub struct ToolSet {
    /// Manifest key and directory prefix.
    pub name: &'static str,
    /// Debian suite (`None`: the machine's own apt configuration).
    pub suite: Option<&'static str>,
    /// The package whose version names the set (first), then the rest.
    pub packages: &'static [&'static str],
    /// A path inside the root that must exist.
    pub probe: &'static str,
}

/// Libraries `grub-mkstandalone` and its libc need beyond the machine's (Debian 13 names).
const GRUB_LIBS_13: &[&str] = &[
    "libc6",
    "liblzma5",
    "libdevmapper1.02.1",
    "libefivar1t64",
    "libefiboot1t64",
    "libselinux1",
    "libudev1",
    "libpcre2-8-0",
    "libcap2",
];

pub const GRUB_212: ToolSet = ToolSet {
    name: "grub212",
    suite: Some("trixie"),
    packages: &["grub-efi-amd64-bin", "grub-common"],
    probe: "usr/lib/grub/x86_64-efi/linux.mod",
};

pub const GRUB_206: ToolSet = ToolSet {
    name: "grub206",
    suite: None,
    packages: &[
        "grub-efi-amd64-bin",
        "grub-common",
        "libdevmapper1.02.1",
        "libefivar1",
        "libefiboot1",
    ],
    probe: "usr/lib/grub/x86_64-efi/linuxefi.mod",
};

/// Debian 12's GRUB 2.06 for BIOS (`grub-pc-bin`: the i386-pc modules, `lnxboot.img`), with the
/// same `grub-common` and libraries as [`GRUB_206`]: the GRUB BIOS rows build a `core.img` with
/// `grub-mkimage -O i386-pc`.
pub const GRUB_PC_206: ToolSet = ToolSet {
    name: "grubpc206",
    suite: None,
    packages: &[
        "grub-pc-bin",
        "grub-common",
        "libdevmapper1.02.1",
        "libefivar1",
        "libefiboot1",
    ],
    probe: "usr/lib/grub/i386-pc/lnxboot.img",
};

/// Debian 12's GRUB 2.06 for 32-bit UEFI (`grub-efi-ia32-bin`: the i386-efi modules, its
/// `linuxefi`), with the same `grub-common` and libraries as [`GRUB_206`].
pub const GRUB_IA32_206: ToolSet = ToolSet {
    name: "grubia32206",
    suite: None,
    packages: &[
        "grub-efi-ia32-bin",
        "grub-common",
        "libdevmapper1.02.1",
        "libefivar1",
        "libefiboot1",
    ],
    probe: "usr/lib/grub/i386-efi/linuxefi.mod",
};

/// Debian 12's 32-bit OVMF (`ovmf-ia32`, 2022.11): `OVMF32_CODE_4M.secboot.fd` (SMM, no keys
/// enrolled in `OVMF32_VARS_4M.fd`: Secure Boot not enforcing).
pub const OVMF_IA32: ToolSet = ToolSet {
    name: "ovmfia32",
    suite: None,
    packages: &["ovmf-ia32"],
    probe: "usr/share/OVMF/OVMF32_CODE_4M.secboot.fd",
};

/// Debian 12's ISOLINUX (`isolinux.bin`; `ldlinux.c32` from `syslinux-common`) and `xorriso`
/// with its libraries: the ISOLINUX row builds a CD image as Debian's installer images are
/// built (El Torito, no emulation, boot-info table).
pub const ISOLINUX: ToolSet = ToolSet {
    name: "isolinux",
    suite: None,
    packages: &[
        "isolinux",
        "syslinux-common",
        "xorriso",
        "libisoburn1",
        "libburn4",
        "libisofs6",
        "libjte2",
    ],
    probe: "usr/lib/syslinux/modules/bios/ldlinux.c32",
};

pub const UKI_257: ToolSet = ToolSet {
    name: "uki257",
    suite: Some("trixie"),
    packages: &["systemd-boot-efi", "systemd-ukify"],
    probe: "usr/lib/systemd/boot/efi/linuxx64.efi.stub",
};

pub const UKI_SID: ToolSet = ToolSet {
    name: "ukisid",
    suite: Some("sid"),
    packages: &["systemd-boot-efi", "systemd-ukify"],
    probe: "usr/lib/systemd/boot/efi/linuxx64.efi.stub",
};

/// Debian 13's `kernel-install` (systemd 257, a C program since 254) with its plugins
/// (`90-uki-copy.install` from `systemd`, `60-ukify.install` from `systemd-ukify`): the
/// `layout=uki` install flow. It runs with the
/// root's libc, `libsystemd-shared` and libcrypto (257 needs OpenSSL 3.4 symbols); the other
/// libraries it links are the machine's, under the same sonames.
pub const KERNEL_INSTALL_257: ToolSet = ToolSet {
    name: "ki257",
    suite: Some("trixie"),
    packages: &[
        "systemd",
        "systemd-ukify",
        "libsystemd-shared",
        "libc6",
        "libssl3t64",
    ],
    probe: "usr/lib/kernel/install.d/60-ukify.install",
};

/// Every tool set the boot tests use.
pub const ALL: [&ToolSet; 9] = [
    &GRUB_212,
    &GRUB_206,
    &GRUB_PC_206,
    &GRUB_IA32_206,
    &OVMF_IA32,
    &ISOLINUX,
    &UKI_257,
    &UKI_SID,
    &KERNEL_INSTALL_257,
];

/// An unpacked tool set.
#[derive(Debug, Clone)]
pub struct ToolRoot {
    pub root: PathBuf,
    /// Version of the set's first package.
    pub version: String,
}

impl ToolRoot {
    /// A path inside the root (`usr/bin/...`).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A command running the root's ELF binary `rel`: through the root's own dynamic loader and
    /// libraries when it ships a libc (a newer suite), else the machine's loader with the root's
    /// libraries first.
    pub fn command(&self, rel: &str) -> Command {
        let own = self.root.join("usr/lib64/ld-linux-x86-64.so.2");
        let loader = if own.is_file() {
            own
        } else {
            PathBuf::from("/lib64/ld-linux-x86-64.so.2")
        };
        let libs = [
            "usr/lib/x86_64-linux-gnu",
            "lib/x86_64-linux-gnu",
            // systemd's private library (its binaries' RUNPATH, which names the host's path).
            "usr/lib/x86_64-linux-gnu/systemd",
        ]
        .map(|d| self.root.join(d).display().to_string())
        .join(":");
        let mut c = Command::new(loader);
        c.arg("--library-path").arg(libs).arg(self.root.join(rel));
        c
    }

    /// `ukify` of this root, run by the machine's python3.
    pub fn ukify(&self) -> Command {
        let mut c = Command::new("/usr/bin/python3");
        c.arg(self.root.join("usr/bin/ukify"));
        c
    }
}

/// The manifest's `tool.<name>.<key>` of a set (`what` names its kind in the error).
fn recorded(m: &BTreeMap<String, String>, name: &str, what: &str, key: &str) -> Result<String> {
    m.get(&format!("tool.{name}.{key}"))
        .cloned()
        .ok_or_else(|| {
            fixtures::missing(format!(
                "{what} `{name}` not in the fixture manifest; run `cargo xtask fixtures`"
            ))
        })
}

/// Load a tool set recorded in the manifest.
pub fn load(root: &Path, m: &BTreeMap<String, String>, set: &ToolSet) -> Result<ToolRoot> {
    let get = |k: &str| recorded(m, set.name, "tool set", k);
    let t = ToolRoot {
        root: root.join(get("dir")?),
        version: get("version")?,
    };
    ensure!(
        t.root.join(set.probe).exists(),
        "{} lacks {}; run `cargo xtask fixtures --refresh`",
        t.root.display(),
        set.probe
    );
    Ok(t)
}

/// apt for a set's suite: the machine's own sources (`None`) or a private view of another
/// Debian suite, its package lists brought up to date.
fn set_apt(root: &Path, suite: Option<&str>, opts: &FetchOptions) -> Result<Apt> {
    match suite {
        Some(suite) => {
            let apt = fixtures::suite_apt(root, suite)?;
            fixtures::update_lists(root, suite, &apt, opts.refresh)?;
            Ok(apt)
        }
        None => Ok(Apt::default()),
    }
}

/// Fetch a tool set unless cached: resolve the first package's version, download every package
/// of the set (and, for a newer suite's binaries, its libc and libraries), unpack them into one
/// root.
pub fn fetch(
    root: &Path,
    m: &mut BTreeMap<String, String>,
    opts: &FetchOptions,
    set: &ToolSet,
) -> Result<()> {
    let dir_key = format!("tool.{}.dir", set.name);
    // Cached only if the recorded root has the set's probe (a set whose package list grew is
    // fetched again).
    let complete = m
        .get(&dir_key)
        .is_some_and(|d| root.join(d).join(set.probe).exists());
    if fixtures::cached(root, m, &[&dir_key]) && complete && !opts.refresh {
        let v = &m[&format!("tool.{}.version", set.name)];
        eprintln!("fixtures: {} {v} (cached)", set.name);
        return Ok(());
    }
    let apt = set_apt(root, set.suite, opts)?;
    let version = apt.show(set.packages[0])?["Version"].clone();
    let dir = root
        .join("tools")
        .join(format!("{}-{}", set.name, version.replace(['~', ':'], "_")));
    if !dir.join(set.probe).exists() {
        let work = root.join("tmp");
        let stage = tempfile::Builder::new().prefix("tools-").tempdir_in({
            fs::create_dir_all(&work)?;
            &work
        })?;
        let mut packages: Vec<&str> = set.packages.to_vec();
        if set.suite.is_some() && set.name.starts_with("grub") {
            packages.extend_from_slice(GRUB_LIBS_13);
        }
        for p in packages {
            let (_tmp, deb) = apt.download(p, &work)?;
            fixtures::extract_deb(&deb, stage.path(), &[])
                .with_context(|| format!("unpacking {p}"))?;
        }
        ensure!(
            stage.path().join(set.probe).exists(),
            "{} {version}: {} missing after unpacking",
            set.name,
            set.probe
        );
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(dir.parent().unwrap())?;
        fs::rename(stage.keep(), &dir)?;
    }
    eprintln!("fixtures: {} {version} in {}", set.name, dir.display());
    m.insert(dir_key, fixtures::rel(root, &dir));
    m.insert(format!("tool.{}.version", set.name), version);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// kexec-tools for the guest

/// Debian's `kexec-tools` unpacked for a guest initramfs (never installed on the host): the
/// package, its Xen libraries (`libxenctrl` is linked in; Debian builds kexec-tools with Xen
/// support) and the suite's libc, found by following the `libxen*` and `libc6` dependencies.
pub struct KexecSet {
    /// Manifest key (`tool.<name>.*`) and directory prefix.
    pub name: &'static str,
    /// Debian suite (`None`: the machine's own apt configuration).
    pub suite: Option<&'static str>,
}

/// Debian 12's kexec-tools (2.0.25), from the machine's apt sources.
pub const KEXEC_225: KexecSet = KexecSet {
    name: "kexec225",
    suite: None,
};

/// Debian 13's kexec-tools (2.0.29), through the private trixie apt view.
pub const KEXEC_229: KexecSet = KexecSet {
    name: "kexec229",
    suite: Some("trixie"),
};

pub const KEXEC_ALL: [&KexecSet; 2] = [&KEXEC_225, &KEXEC_229];

/// An unpacked kexec-tools set: the root, the package version, and the files a guest needs.
#[derive(Debug, Clone)]
pub struct KexecTools {
    pub root: PathBuf,
    /// `kexec-tools` package version.
    pub version: String,
}

impl KexecTools {
    /// The `kexec` binary inside the root (`sbin/kexec` or `usr/sbin/kexec`).
    pub fn binary(&self) -> Result<PathBuf> {
        ["sbin/kexec", "usr/sbin/kexec"]
            .iter()
            .map(|r| self.root.join(r))
            .find(|p| p.is_file())
            .ok_or_else(|| anyhow::anyhow!("no sbin/kexec under {}", self.root.display()))
    }

    /// What a guest needs to run `/sbin/kexec`: (path in the guest, file on the host) for the
    /// binary, its dynamic loader (its PT_INTERP path) and every library of its DT_NEEDED
    /// closure (in `/lib/x86_64-linux-gnu/<soname>`), all taken from the root.
    pub fn guest_files(&self) -> Result<Vec<(String, PathBuf)>> {
        let bin = self.binary()?;
        let elf = fs::read(&bin)?;
        let interp = elf_interp(&elf)?.context("kexec has no PT_INTERP")?;
        let mut files = vec![
            ("sbin/kexec".to_string(), bin.clone()),
            (
                interp.trim_start_matches('/').to_string(),
                self.find_lib(Path::new(&interp).file_name().unwrap().to_str().unwrap())?,
            ),
        ];
        let mut todo = elf_needed(&elf)?;
        // libc names the dynamic loader too: it is the PT_INTERP file already listed.
        let mut seen = std::collections::BTreeSet::from([Path::new(&interp)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()]);
        while let Some(so) = todo.pop() {
            if !seen.insert(so.clone()) {
                continue;
            }
            let host = self.find_lib(&so)?;
            todo.extend(elf_needed(&fs::read(&host)?)?);
            files.push((format!("lib/x86_64-linux-gnu/{so}"), host));
        }
        Ok(files)
    }

    fn find_lib(&self, soname: &str) -> Result<PathBuf> {
        [
            "lib/x86_64-linux-gnu",
            "usr/lib/x86_64-linux-gnu",
            "lib64",
            "usr/lib64",
        ]
        .iter()
        .filter_map(|d| resolve_in(&self.root, &Path::new(d).join(soname)))
        .next()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{soname} (needed by kexec) not found under {}: its Debian package is not in \
                     the set",
                self.root.display()
            )
        })
    }
}

/// `rel` inside `root` with symbolic links followed inside `root` (packages ship absolute links
/// such as `/lib64/ld-linux-x86-64.so.2`, which must not reach the host's files).
fn resolve_in(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut p = root.join(rel);
    for _ in 0..16 {
        let md = fs::symlink_metadata(&p).ok()?;
        if !md.file_type().is_symlink() {
            return md.is_file().then_some(p);
        }
        let target = fs::read_link(&p).ok()?;
        p = if target.is_absolute() {
            root.join(target.strip_prefix("/").ok()?)
        } else {
            p.parent()?.join(target)
        };
    }
    None
}

/// Load a kexec-tools set recorded in the manifest.
pub fn load_kexec(root: &Path, m: &BTreeMap<String, String>, set: &KexecSet) -> Result<KexecTools> {
    let get = |k: &str| recorded(m, set.name, "kexec-tools set", k);
    let t = KexecTools {
        root: root.join(get("dir")?),
        version: get("version")?,
    };
    t.binary()
        .map_err(|e| fixtures::missing(format!("{e:#}; run `cargo xtask fixtures`")))?;
    Ok(t)
}

/// The first alternative's package name of every entry of a `Depends` field.
fn depends_names(field: Option<&String>) -> Vec<String> {
    field
        .map(|d| {
            d.split(',')
                .filter_map(|e| e.split('|').next()?.split_whitespace().next())
                .map(|n| n.split(':').next().unwrap_or(n).to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Fetch a kexec-tools set unless cached: `kexec-tools`, then every `libxen*` package reachable
/// through `libxen*` dependencies, and `libc6`, all of the set's suite, unpacked into one root;
/// the DT_NEEDED closure of `kexec` must resolve inside it.
pub fn fetch_kexec(
    root: &Path,
    m: &mut BTreeMap<String, String>,
    opts: &FetchOptions,
    set: &KexecSet,
) -> Result<()> {
    let dir_key = format!("tool.{}.dir", set.name);
    if fixtures::cached(root, m, &[&dir_key]) && !opts.refresh {
        let v = &m[&format!("tool.{}.version", set.name)];
        eprintln!("fixtures: {} kexec-tools {v} (cached)", set.name);
        return Ok(());
    }
    let apt = set_apt(root, set.suite, opts)?;
    // (package, version), kexec-tools first.
    let mut packages: Vec<(String, String)> = Vec::new();
    let mut todo = vec!["kexec-tools".to_string(), "libc6".to_string()];
    while let Some(p) = todo.pop() {
        if packages.iter().any(|(q, _)| *q == p) {
            continue;
        }
        let rec = apt.show(&p)?;
        packages.push((p, rec["Version"].clone()));
        todo.extend(
            depends_names(rec.get("Depends"))
                .into_iter()
                .filter(|d| d.starts_with("libxen")),
        );
    }
    packages.sort_by_key(|(p, _)| (p != "kexec-tools", p.clone()));
    let version = packages[0].1.clone();
    let dir = root
        .join("tools")
        .join(format!("{}-{}", set.name, version.replace(['~', ':'], "_")));
    let probe = KexecTools {
        root: dir.clone(),
        version: version.clone(),
    };
    if probe.guest_files().is_err() {
        let work = root.join("tmp");
        fs::create_dir_all(&work)?;
        let stage = tempfile::Builder::new()
            .prefix("kexec-")
            .tempdir_in(&work)?;
        for (p, v) in &packages {
            let (_tmp, deb) = apt.download(&format!("{p}={v}"), &work)?;
            fixtures::extract_deb(&deb, stage.path(), &[])
                .with_context(|| format!("unpacking {p}"))?;
        }
        let staged = KexecTools {
            root: stage.path().to_path_buf(),
            version: version.clone(),
        };
        let files = staged.guest_files()?;
        eprintln!(
            "fixtures: {} kexec {} needs {}",
            set.name,
            version,
            files
                .iter()
                .skip(1)
                .map(|(g, _)| g.rsplit('/').next().unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        );
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(dir.parent().unwrap())?;
        fs::rename(stage.keep(), &dir)?;
    }
    probe.guest_files()?;
    eprintln!(
        "fixtures: {} kexec-tools {version} in {}",
        set.name,
        dir.display()
    );
    m.insert(dir_key, fixtures::rel(root, &dir));
    m.insert(format!("tool.{}.version", set.name), version);
    m.insert(
        format!("tool.{}.packages", set.name),
        packages
            .iter()
            .map(|(p, v)| format!("{p}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    Ok(())
}

// A minimal ELF64 little-endian reader: PT_INTERP and DT_NEEDED.

fn rd(b: &[u8], o: usize, n: usize) -> Result<u64> {
    let s = b.get(o..o + n).context("ELF truncated")?;
    let mut v = [0u8; 8];
    v[..n].copy_from_slice(s);
    Ok(u64::from_le_bytes(v))
}

/// (p_type, p_offset, p_vaddr, p_filesz) of every program header.
fn elf_phdrs(b: &[u8]) -> Result<Vec<(u32, usize, u64, usize)>> {
    ensure!(
        b.len() > 64 && &b[..4] == b"\x7fELF" && b[4] == 2 && b[5] == 1,
        "not a 64-bit little-endian ELF"
    );
    let phoff = rd(b, 32, 8)? as usize;
    let (phentsize, phnum) = (rd(b, 54, 2)? as usize, rd(b, 56, 2)? as usize);
    (0..phnum)
        .map(|i| {
            let o = phoff + i * phentsize;
            Ok((
                rd(b, o, 4)? as u32,
                rd(b, o + 8, 8)? as usize,
                rd(b, o + 16, 8)?,
                rd(b, o + 32, 8)? as usize,
            ))
        })
        .collect()
}

fn elf_interp(b: &[u8]) -> Result<Option<String>> {
    Ok(elf_phdrs(b)?
        .into_iter()
        .find(|p| p.0 == 3)
        .and_then(|(_, off, _, sz)| b.get(off..off + sz))
        .map(|s| {
            String::from_utf8_lossy(s)
                .trim_end_matches('\0')
                .to_string()
        }))
}

fn elf_needed(b: &[u8]) -> Result<Vec<String>> {
    let ph = elf_phdrs(b)?;
    let Some(&(_, dyn_off, _, dyn_sz)) = ph.iter().find(|p| p.0 == 2) else {
        return Ok(Vec::new());
    };
    let mut needed = Vec::new();
    let mut strtab = None;
    for i in 0..dyn_sz / 16 {
        let (tag, val) = (rd(b, dyn_off + i * 16, 8)?, rd(b, dyn_off + i * 16 + 8, 8)?);
        match tag {
            0 => break,
            1 => needed.push(val as usize),
            5 => strtab = Some(val),
            _ => {}
        }
    }
    let strtab = strtab.context("no DT_STRTAB")?;
    // DT_STRTAB is a virtual address: the PT_LOAD holding it gives the file offset.
    let off = ph
        .iter()
        .find(|p| p.0 == 1 && strtab >= p.2 && strtab < p.2 + p.3 as u64)
        .map(|p| p.1 + (strtab - p.2) as usize)
        .context("DT_STRTAB outside every PT_LOAD")?;
    needed
        .into_iter()
        .map(|n| {
            let s = b.get(off + n..).context("DT_NEEDED outside the file")?;
            let end = s
                .iter()
                .position(|&c| c == 0)
                .context("unterminated name")?;
            Ok(String::from_utf8_lossy(&s[..end]).into_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_reader_on_the_test_binary() {
        let exe = fs::read(std::env::current_exe().unwrap()).unwrap();
        let interp = elf_interp(&exe).unwrap().expect("dynamically linked");
        assert!(interp.contains("ld-linux"), "{interp}");
        let needed = elf_needed(&exe).unwrap();
        assert!(needed.iter().any(|n| n == "libc.so.6"), "{needed:?}");
        assert!(
            elf_needed(b"not an elf file at all, long enough to pass the length check......")
                .is_err()
        );
    }

    #[test]
    fn depends_first_alternatives() {
        let d = "libc6 (>= 2.34), libxenmisc4.17 (>= 4.17), debconf (>= 0.5) | debconf-2.0, x:any"
            .to_string();
        assert_eq!(
            depends_names(Some(&d)),
            ["libc6", "libxenmisc4.17", "debconf", "x"]
        );
        assert!(depends_names(None).is_empty());
    }
}

//! Test fixtures, fetched by Debian package name and cached outside the clone in
//! `${ZBOOT_CACHE:-$HOME/.cache/zboot-pack}`:
//!
//! * the Debian 6.1 generic kernel (`linux-image-6.1.0-N-amd64-unsigned`, the version that
//!   `linux-image-amd64` depends on): `/boot/vmlinuz-*`, its config and `efivarfs.ko`;
//! * Debian 12's 6.12 kernel the same way (`linux-image-6.12-amd64` picks the ABI package);
//! * `systemd-boot-efi` (`systemd-bootx64.efi`);
//! * the installed `ovmf` (2022.11, Debian 12);
//! * Debian 13 (trixie)'s `ovmf` (2025.02: strict-NX Secure Boot code, snakeoil-enrolled vars,
//!   snakeoil keys), fetched through a private apt configuration that leaves the system's apt
//!   state untouched;
//! * a busybox initramfs whose `/init` is `fixtures/initramfs/init`;
//! * other loaders' tools, unpacked from their suites' packages ([`crate::tools`]): GRUB 2.12
//!   and 2.06, systemd-stub + ukify 257 and unstable's;
//! * Debian 12's (2.0.25) and 13's (2.0.29) `kexec-tools` with the libraries `kexec` needs, for
//!   the guest ([`crate::tools::KexecTools`]), unpacked, never installed;
//! * SeaBIOS (`bios-256k.bin`, QEMU's default BIOS on Debian) for the QEMU `-kernel` rows.
//!
//! Every step is idempotent: what is cached is kept (use `--refresh` to re-resolve versions).
//! Versions and paths are recorded in `manifest.txt` (`key=value` lines) in the cache.

use crate::tools::{self, KexecTools, ToolRoot};
use anyhow::{Context, Result, anyhow, bail, ensure};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::initramfs;

/// The marker error for "a prerequisite is missing": test runners skip on it outside CI.
#[derive(Debug)]
pub struct Missing(pub String);

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "missing prerequisite: {}", self.0)
    }
}

impl std::error::Error for Missing {}

pub fn missing(what: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Missing(what.into()))
}

/// `${ZBOOT_CACHE:-$HOME/.cache/zboot-pack}`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ZBOOT_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache/zboot-pack")
}

const MANIFEST: &str = "manifest.txt";
const SYSTEMD_BOOT_INSTALLED: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// systemd-stub, the UKI stub, from the same package (`systemd-boot-efi`).
const SYSTEMD_STUB_INSTALLED: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
/// Passphrase of Debian's snakeoil Secure Boot key.
const SNAKEOIL_PASS: &str = "snakeoil";

/// The Debian generic kernel fixture.
#[derive(Debug, Clone)]
pub struct DebianKernel {
    /// `uname -r`, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// The distribution bzImage (`/boot/vmlinuz-<release>`).
    pub vmlinuz: PathBuf,
}

/// One OVMF build: a directory holding its `OVMF_*.fd` files (and snakeoil keys if shipped).
#[derive(Debug, Clone)]
pub struct Ovmf {
    pub version: String,
    pub dir: PathBuf,
}

impl Ovmf {
    /// The (passphrase-free key, certificate) of this build's snakeoil Secure Boot keys, the ones
    /// its `OVMF_VARS_4M.snakeoil.fd` enrols. (2022.11 and 2025.02 ship different keys.)
    pub fn snakeoil(&self) -> Result<(PathBuf, PathBuf)> {
        Ok((
            self.file("PkKek-1-snakeoil.nopass.key")?,
            self.file("PkKek-1-snakeoil.pem")?,
        ))
    }

    pub fn file(&self, name: &str) -> Result<PathBuf> {
        let p = self.dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(missing(format!(
                "{} (OVMF {}); run `cargo xtask fixtures`",
                p.display(),
                self.version
            )))
        }
    }
}

/// Everything the boot tests need, as recorded in the cache's manifest.
#[derive(Debug, Clone)]
pub struct Fixtures {
    pub kernel: DebianKernel,
    /// Debian 12's 6.12 kernel (zstd bzImage).
    pub kernel612: DebianKernel,
    pub systemd_boot: PathBuf,
    /// systemd-stub (`linuxx64.efi.stub`) of the same systemd-boot-efi package: UKIs.
    pub systemd_stub: PathBuf,
    pub ovmf2022: Ovmf,
    pub ovmf2025: Ovmf,
    /// gzip'd newc cpio with busybox and `/init`.
    pub initramfs: PathBuf,
    /// Other loaders' tools ([`crate::tools`]).
    pub grub212: ToolRoot,
    pub grub206: ToolRoot,
    /// Debian 12's GRUB 2.06 for BIOS (`None` until `cargo xtask fixtures` fetched it: only the
    /// GRUB BIOS rows need it, see [`Fixtures::grub_pc`]).
    pub grubpc206: Option<ToolRoot>,
    /// Debian 12's GRUB 2.06 for 32-bit UEFI and its 32-bit OVMF (`None` until `cargo xtask
    /// fixtures` fetched them: only the ia32 rows need them, see [`Fixtures::ia32`]).
    pub grubia32206: Option<ToolRoot>,
    pub ovmfia32: Option<ToolRoot>,
    /// Debian 12's ISOLINUX and xorriso (`None` until `cargo xtask fixtures` fetched them).
    pub isolinux: Option<ToolRoot>,
    pub uki257: ToolRoot,
    pub ukisid: ToolRoot,
    /// Debian 13's kernel-install 257 (`None` until `cargo xtask fixtures` fetched it: only the
    /// `layout=uki` row needs it, see [`Fixtures::kernel_install_257`]).
    pub ki257: Option<ToolRoot>,
    /// Debian 12's and 13's kexec-tools for the guest (`None` until `cargo xtask fixtures`
    /// fetched them: only the kexec rows need them, see [`Fixtures::kexec`]).
    pub kexec225: Option<KexecTools>,
    pub kexec229: Option<KexecTools>,
    /// SeaBIOS (`bios-256k.bin`) and its version, for the QEMU `-kernel` rows
    /// ([`Fixtures::seabios`]).
    pub seabios: Option<(PathBuf, String)>,
}

impl Fixtures {
    /// A kexec-tools set, or a [`Missing`] error naming the command that fetches it.
    pub fn kexec(&self, set: &tools::KexecSet) -> Result<&KexecTools> {
        let t = match set.name {
            "kexec225" => &self.kexec225,
            "kexec229" => &self.kexec229,
            other => bail!("unknown kexec-tools set {other}"),
        };
        t.as_ref().ok_or_else(|| {
            missing(format!(
                "kexec-tools set `{}`; run `cargo xtask fixtures`",
                set.name
            ))
        })
    }

    /// Debian 13's kernel-install 257, or a [`Missing`] error naming the command that fetches
    /// it.
    pub fn kernel_install_257(&self) -> Result<&ToolRoot> {
        self.ki257.as_ref().ok_or_else(|| {
            missing("kernel-install 257 (tool set `ki257`); run `cargo xtask fixtures`")
        })
    }

    /// Debian 12's GRUB 2.06 for BIOS, or a [`Missing`] error naming the command that fetches
    /// it.
    pub fn grub_pc(&self) -> Result<&ToolRoot> {
        self.grubpc206.as_ref().ok_or_else(|| {
            missing("tool set `grubpc206` (GRUB 2.06 i386-pc); run `cargo xtask fixtures`")
        })
    }

    /// Debian 12's GRUB 2.06 for 32-bit UEFI and 32-bit OVMF, or a [`Missing`] error naming
    /// the command that fetches them.
    pub fn ia32(&self) -> Result<(&ToolRoot, &ToolRoot)> {
        self.grubia32206
            .as_ref()
            .zip(self.ovmfia32.as_ref())
            .ok_or_else(|| {
                missing(
                    "tool sets `grubia32206` and `ovmfia32` (GRUB 2.06 i386-efi, OVMF ia32); run `cargo xtask fixtures`",
                )
            })
    }

    /// Debian 12's ISOLINUX and xorriso, or a [`Missing`] error naming the command that
    /// fetches them.
    pub fn isolinux(&self) -> Result<&ToolRoot> {
        self.isolinux.as_ref().ok_or_else(|| {
            missing("tool set `isolinux` (ISOLINUX, xorriso); run `cargo xtask fixtures`")
        })
    }

    /// SeaBIOS `bios-256k.bin` and its package version.
    pub fn seabios(&self) -> Result<(&Path, &str)> {
        self.seabios
            .as_ref()
            .map(|(p, v)| (p.as_path(), v.as_str()))
            .ok_or_else(|| {
                missing("SeaBIOS (`seabios.*` fixture keys); run `cargo xtask fixtures`")
            })
    }
}

fn read_manifest(root: &Path) -> BTreeMap<String, String> {
    fs::read_to_string(root.join(MANIFEST))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn write_manifest(root: &Path, m: &BTreeMap<String, String>) -> Result<()> {
    let mut s = String::from("# zboot-pack fixtures (written by `cargo xtask fixtures`)\n");
    for (k, v) in m {
        s.push_str(&format!("{k}={v}\n"));
    }
    let tmp = root.join(format!("{MANIFEST}.tmp"));
    fs::write(&tmp, s)?;
    fs::rename(&tmp, root.join(MANIFEST))?;
    Ok(())
}

impl Fixtures {
    /// Loads the cached fixtures without fetching anything. Fails with [`Missing`] when a fixture
    /// is absent.
    pub fn load() -> Result<Fixtures> {
        Self::load_from(&cache_dir())
    }

    pub fn load_from(root: &Path) -> Result<Fixtures> {
        let m = read_manifest(root);
        let get = |k: &str| -> Result<String> {
            m.get(k).cloned().ok_or_else(|| {
                missing(format!(
                    "fixture `{k}` not in {}; run `cargo xtask fixtures`",
                    root.join(MANIFEST).display()
                ))
            })
        };
        let path = |k: &str| -> Result<PathBuf> {
            let p = root.join(get(k)?);
            if p.exists() {
                Ok(p)
            } else {
                Err(missing(format!(
                    "fixture file {} is gone; run `cargo xtask fixtures`",
                    p.display()
                )))
            }
        };
        let kernel = |fam: &KernelFamily| -> Result<DebianKernel> {
            let k = |s: &str| format!("{}.{s}", fam.key);
            Ok(DebianKernel {
                release: get(&k("release"))?,
                vmlinuz: path(&k("vmlinuz"))?,
            })
        };
        Ok(Fixtures {
            kernel: kernel(&KERNEL_61)?,
            kernel612: kernel(&KERNEL_612)?,
            systemd_boot: path("systemd_boot.efi")?,
            systemd_stub: path("systemd_stub.efi")?,
            ovmf2022: Ovmf {
                version: get("ovmf2022.version")?,
                dir: path("ovmf2022.dir")?,
            },
            ovmf2025: Ovmf {
                version: get("ovmf2025.version")?,
                dir: path("ovmf2025.dir")?,
            },
            initramfs: path("initramfs")?,
            grub212: tools::load(root, &m, &tools::GRUB_212)?,
            grub206: tools::load(root, &m, &tools::GRUB_206)?,
            grubpc206: tools::load(root, &m, &tools::GRUB_PC_206).ok(),
            grubia32206: tools::load(root, &m, &tools::GRUB_IA32_206).ok(),
            ovmfia32: tools::load(root, &m, &tools::OVMF_IA32).ok(),
            isolinux: tools::load(root, &m, &tools::ISOLINUX).ok(),
            uki257: tools::load(root, &m, &tools::UKI_257)?,
            ukisid: tools::load(root, &m, &tools::UKI_SID)?,
            ki257: tools::load(root, &m, &tools::KERNEL_INSTALL_257).ok(),
            kexec225: tools::load_kexec(root, &m, &tools::KEXEC_225).ok(),
            kexec229: tools::load_kexec(root, &m, &tools::KEXEC_229).ok(),
            seabios: path("seabios.bios")
                .ok()
                .zip(m.get("seabios.version").cloned()),
        })
    }
}

/// Options of `cargo xtask fixtures`.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Re-resolve package versions (and re-download what changed) instead of keeping the cache.
    pub refresh: bool,
    /// Print the manifest at the end.
    pub verbose: bool,
}

/// Fetches whatever is missing from the cache, then loads the fixtures.
pub fn ensure(opts: &FetchOptions) -> Result<Fixtures> {
    let root = cache_dir();
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let mut m = read_manifest(&root);
    m.insert("format".into(), "1".into());

    kernel(&root, &mut m, opts, &KERNEL_61)?;
    write_manifest(&root, &m)?;
    kernel(&root, &mut m, opts, &KERNEL_612)?;
    write_manifest(&root, &m)?;
    systemd_boot(&root, &mut m, opts)?;
    write_manifest(&root, &m)?;
    ovmf2022(&root, &mut m, opts)?;
    write_manifest(&root, &m)?;
    ovmf2025(&root, &mut m, opts)?;
    write_manifest(&root, &m)?;
    build_initramfs(&root, &mut m)?;
    write_manifest(&root, &m)?;
    for set in tools::ALL {
        tools::fetch(&root, &mut m, opts, set)?;
        write_manifest(&root, &m)?;
    }
    for set in tools::KEXEC_ALL {
        tools::fetch_kexec(&root, &mut m, opts, set)?;
        write_manifest(&root, &m)?;
    }
    seabios(&root, &mut m, opts)?;
    write_manifest(&root, &m)?;

    let fx = Fixtures::load_from(&root)?;
    eprintln!("fixtures ready in {}", root.display());
    if opts.verbose {
        for (k, v) in &m {
            eprintln!("  {k} = {v}");
        }
    }
    Ok(fx)
}

pub(crate) fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

pub(crate) fn cached(root: &Path, m: &BTreeMap<String, String>, keys: &[&str]) -> bool {
    keys.iter()
        .all(|k| m.get(*k).is_some_and(|v| root.join(v).exists()))
}

// ---------------------------------------------------------------------------------------------
// apt helpers

/// Runs a command, failing with its stderr if it fails; returns stdout.
pub fn run_capture(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn have_tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// An apt configuration: the system's, or a private one (`-o ...` options).
#[derive(Debug, Clone, Default)]
pub(crate) struct Apt {
    opts: Vec<String>,
}

impl Apt {
    pub(crate) fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.args(["-o", "APT::Sandbox::User=root", "-q"]);
        for o in &self.opts {
            c.args(["-o", o]);
        }
        c
    }

    /// `apt-cache show --no-all-versions PKG` fields of the candidate.
    pub(crate) fn show(&self, pkg: &str) -> Result<BTreeMap<String, String>> {
        let out = run_capture(
            self.cmd("apt-cache")
                .args(["show", "--no-all-versions", pkg]),
        )
        .with_context(|| format!("apt does not know `{pkg}`; is `apt-get update` needed?"))?;
        let mut fields = BTreeMap::new();
        for line in out.lines() {
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(": ")
                && !k.starts_with(' ')
            {
                fields.insert(k.to_string(), v.trim().to_string());
            }
        }
        ensure!(!fields.is_empty(), "apt-cache show {pkg}: no record");
        Ok(fields)
    }

    /// `apt-get download PKG` into a fresh temporary directory under `work`; returns the .deb.
    pub(crate) fn download(&self, pkg: &str, work: &Path) -> Result<(tempfile::TempDir, PathBuf)> {
        fs::create_dir_all(work)?;
        let dir = tempfile::Builder::new().prefix("dl-").tempdir_in(work)?;
        eprintln!("fixtures: apt-get download {pkg}");
        run_capture(
            self.cmd("apt-get")
                .arg("download")
                .arg(pkg)
                .current_dir(dir.path()),
        )?;
        let deb = fs::read_dir(dir.path())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or_else(|| anyhow!("apt-get download {pkg} produced no .deb"))?;
        Ok((dir, deb))
    }
}

/// Extracts the members matching `patterns` (tar wildcards, e.g. `./boot/*`) of a .deb into `dest`.
pub(crate) fn extract_deb(deb: &Path, dest: &Path, patterns: &[&str]) -> Result<()> {
    fs::create_dir_all(dest)?;
    if patterns.is_empty() {
        run_capture(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest))?;
        return Ok(());
    }
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("running dpkg-deb")?;
    let out = Command::new("tar")
        .args(["-x", "--wildcards", "-C"])
        .arg(dest)
        .arg("-f")
        .arg("-")
        .args(patterns)
        .stdin(dpkg.stdout.take().unwrap())
        .output()
        .context("running tar")?;
    let st = dpkg.wait()?;
    ensure!(
        st.success(),
        "dpkg-deb --fsys-tarfile {} failed",
        deb.display()
    );
    ensure!(
        out.status.success(),
        "extracting {patterns:?} from {}: {}",
        deb.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn dpkg_installed_version(pkg: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}|${Version}", pkg])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, version) = s.split_once('|')?;
    (out.status.success() && status.ends_with(" installed")).then(|| version.to_string())
}

/// Copies `src` to `dst` unless `dst` already has the same size (fixtures are immutable files).
fn copy_if_changed(src: &Path, dst: &Path) -> Result<()> {
    if let (Ok(a), Ok(b)) = (fs::metadata(src), fs::metadata(dst))
        && a.len() == b.len()
        && fs::read(src)? == fs::read(dst)?
    {
        return Ok(());
    }
    if let Some(p) = dst.parent() {
        fs::create_dir_all(p)?;
    }
    fs::copy(src, dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The Debian kernel

/// A Debian generic kernel fixture: which metapackage picks it, and its manifest keys.
struct KernelFamily {
    /// Manifest key prefix (`kernel`, `kernel612`).
    key: &'static str,
    /// The metapackage that depends on exactly one ABI package (`linux-image-6.1.0-N-amd64`).
    meta: &'static str,
    /// The ABI package name must start with this.
    abi_prefix: &'static str,
    /// Keep its [`INITRAMFS_MODULES`] for the initramfs (only the 6.1 ones are carried).
    efivarfs: bool,
}

/// The modules of Debian's kernel the test initramfs carries (relative to
/// `lib/modules/<release>/`) and the manifest key of each: efivarfs (Secure Boot state), edd
/// (the BIOS disks the 16-bit entry found, `/sys/firmware/edd`).
const INITRAMFS_MODULES: [(&str, &str); 2] = [
    ("kernel/fs/efivarfs/efivarfs.ko", "efivarfs_ko"),
    ("kernel/drivers/firmware/edd.ko", "edd_ko"),
];

/// Debian 12's default kernel (6.1).
const KERNEL_61: KernelFamily = KernelFamily {
    key: "kernel",
    meta: "linux-image-amd64",
    abi_prefix: "linux-image-6.1.",
    efivarfs: true,
};
/// Debian 12's 6.12 kernel (bookworm-security / point releases): zstd bzImage, newer EFI stub.
const KERNEL_612: KernelFamily = KernelFamily {
    key: "kernel612",
    meta: "linux-image-6.12-amd64",
    abi_prefix: "linux-image-6.12.",
    efivarfs: false,
};

fn kernel(
    root: &Path,
    m: &mut BTreeMap<String, String>,
    opts: &FetchOptions,
    fam: &KernelFamily,
) -> Result<()> {
    let k = |s: &str| format!("{}.{s}", fam.key);
    let mut keys = vec![k("vmlinuz"), k("config")];
    if fam.efivarfs {
        keys.extend(INITRAMFS_MODULES.iter().map(|(_, key)| k(key)));
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    if cached(root, m, &keys) && !opts.refresh {
        eprintln!(
            "fixtures: kernel {} {} (cached)",
            m[&k("package")],
            m[&k("version")]
        );
        return check_kernel_config(&root.join(&m[&k("config")]));
    }
    let apt = Apt::default();
    // The metapackage depends on exactly one ABI package: `linux-image-<release> (= V)`.
    let meta = apt.show(fam.meta)?;
    let dep = meta
        .get("Depends")
        .ok_or_else(|| anyhow!("{} has no Depends", fam.meta))?;
    let first = dep.split(',').next().unwrap().trim();
    let name = first.split_whitespace().next().unwrap();
    ensure!(
        name.starts_with(fam.abi_prefix) && name.ends_with("-amd64"),
        "{} depends on `{first}`, expected {}*-amd64 (is this Debian 12?)",
        fam.meta,
        fam.abi_prefix
    );
    let release = name.trim_start_matches("linux-image-").to_string();
    let package = format!("{name}-unsigned");
    let version = apt
        .show(&package)?
        .get("Version")
        .cloned()
        .unwrap_or_default();

    let dir = root.join("kernel").join(format!("{package}_{version}"));
    let vmlinuz = dir.join(format!("boot/vmlinuz-{release}"));
    let config = dir.join(format!("boot/config-{release}"));
    let ko_rels: Vec<(String, &str)> = INITRAMFS_MODULES
        .iter()
        .filter(|_| fam.efivarfs)
        .map(|(p, key)| (format!("lib/modules/{release}/{p}"), *key))
        .collect();
    let modules_missing = ko_rels.iter().any(|(p, _)| !dir.join(p).is_file());
    if !vmlinuz.is_file() || !config.is_file() || modules_missing {
        let (_tmp, deb) = apt.download(&format!("{package}={version}"), &root.join("tmp"))?;
        let stage = tempfile::Builder::new()
            .prefix("kernel-")
            .tempdir_in(root.join("tmp"))?;
        let ko_patterns: Vec<String> = ko_rels.iter().map(|(p, _)| format!("./{p}")).collect();
        let mut patterns = vec!["./boot/*"];
        patterns.extend(ko_patterns.iter().map(String::as_str));
        extract_deb(&deb, stage.path(), &patterns)?;
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(dir.parent().unwrap())?;
        fs::rename(stage.keep(), &dir)?;
    }
    ensure!(
        vmlinuz.is_file(),
        "{} missing after extraction",
        vmlinuz.display()
    );
    check_kernel_config(&config)?;

    m.insert(k("package"), package);
    m.insert(k("version"), version);
    m.insert(k("release"), release);
    m.insert(k("vmlinuz"), rel(root, &vmlinuz));
    m.insert(k("config"), rel(root, &config));
    for (ko_rel, key) in &ko_rels {
        let ko = dir.join(ko_rel);
        if ko.is_file() {
            m.insert(k(key), rel(root, &ko));
        }
    }
    Ok(())
}

/// The boot tests rely on the kernel needing no modules: console, framebuffer, initramfs and
/// devtmpfs must be built in. (efivarfs is a module in Debian; the initramfs carries it.)
fn check_kernel_config(config: &Path) -> Result<()> {
    let text = fs::read_to_string(config)?;
    let needed = [
        "CONFIG_SERIAL_8250=y",
        "CONFIG_SERIAL_8250_CONSOLE=y",
        "CONFIG_FB_EFI=y",
        "CONFIG_EFI=y",
        "CONFIG_EFI_STUB=y",
        "CONFIG_BLK_DEV_INITRD=y",
        "CONFIG_RD_GZIP=y",
        "CONFIG_DEVTMPFS=y",
        "CONFIG_KALLSYMS=y",
        "CONFIG_ACPI=y",
    ];
    let lines: Vec<&str> = text.lines().collect();
    let absent: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|n| !lines.contains(n))
        .collect();
    ensure!(
        absent.is_empty(),
        "kernel config {} lacks built-in {absent:?}",
        config.display()
    );
    let efivarfs = lines
        .iter()
        .find_map(|l| l.strip_prefix("CONFIG_EFIVAR_FS="))
        .unwrap_or("n");
    eprintln!(
        "fixtures: kernel config: 8250 console, efifb, EFI, ACPI, initrd+gzip, devtmpfs, kallsyms \
         built in (no module needed to boot); efivarfs={efivarfs} (the initramfs carries it)"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// systemd-boot

fn systemd_boot(root: &Path, m: &mut BTreeMap<String, String>, opts: &FetchOptions) -> Result<()> {
    if cached(root, m, &["systemd_boot.efi", "systemd_stub.efi"]) && !opts.refresh {
        eprintln!(
            "fixtures: systemd-boot {} (cached)",
            m["systemd_boot.version"]
        );
        return Ok(());
    }
    let dst = root.join("systemd-boot/systemd-bootx64.efi");
    let stub_dst = root.join("systemd-boot/linuxx64.efi.stub");
    let version = match dpkg_installed_version("systemd-boot-efi") {
        Some(v)
            if Path::new(SYSTEMD_BOOT_INSTALLED).is_file()
                && Path::new(SYSTEMD_STUB_INSTALLED).is_file() =>
        {
            copy_if_changed(Path::new(SYSTEMD_BOOT_INSTALLED), &dst)?;
            copy_if_changed(Path::new(SYSTEMD_STUB_INSTALLED), &stub_dst)?;
            v
        }
        _ => {
            let apt = Apt::default();
            let v = apt.show("systemd-boot-efi")?["Version"].clone();
            let (_tmp, deb) = apt.download("systemd-boot-efi", &root.join("tmp"))?;
            let stage = tempfile::Builder::new()
                .prefix("sdboot-")
                .tempdir_in(root.join("tmp"))?;
            extract_deb(&deb, stage.path(), &[])?;
            copy_if_changed(&stage.path().join(&SYSTEMD_BOOT_INSTALLED[1..]), &dst)?;
            copy_if_changed(&stage.path().join(&SYSTEMD_STUB_INSTALLED[1..]), &stub_dst)?;
            v
        }
    };
    eprintln!("fixtures: systemd-boot {version}");
    m.insert("systemd_boot.efi".into(), rel(root, &dst));
    m.insert("systemd_stub.efi".into(), rel(root, &stub_dst));
    m.insert("systemd_boot.version".into(), version);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// OVMF

/// Copies the firmware files (`usr/share/OVMF/*_4M*.fd`, `usr/share/ovmf/PkKek-1-snakeoil.*`)
/// found under `sysroot` into `dir`.
fn collect_ovmf(sysroot: &Path, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    let mut n = 0;
    for sub in ["usr/share/OVMF", "usr/share/ovmf"] {
        let Ok(rd) = fs::read_dir(sysroot.join(sub)) else {
            continue;
        };
        for e in rd {
            let p = e?.path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let want = (name.starts_with("OVMF_") && name.contains("_4M") && name.ends_with(".fd"))
                || name.starts_with("PkKek-1-snakeoil.");
            // Symlinks (e.g. to compatibility names) are resolved by fs::copy.
            if want && p.exists() {
                copy_if_changed(&p, &dir.join(&name))?;
                n += 1;
            }
        }
    }
    ensure!(n > 0, "no OVMF files under {}", sysroot.display());
    Ok(())
}

fn ovmf2022(root: &Path, m: &mut BTreeMap<String, String>, opts: &FetchOptions) -> Result<()> {
    if cached(root, m, &["ovmf2022.dir"]) && !opts.refresh {
        let dir = root.join(&m["ovmf2022.dir"]);
        if dir.join("PkKek-1-snakeoil.key").is_file() {
            decrypt_snakeoil_key(&dir)?;
        }
        eprintln!("fixtures: ovmf {} (cached)", m["ovmf2022.version"]);
        return Ok(());
    }
    let (version, dir) = match dpkg_installed_version("ovmf") {
        Some(v) if Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd").is_file() => {
            let dir = root.join(format!("ovmf/{v}"));
            collect_ovmf(Path::new("/"), &dir)?;
            (v, dir)
        }
        _ => {
            let apt = Apt::default();
            let v = apt.show("ovmf")?["Version"].clone();
            let dir = root.join(format!("ovmf/{v}"));
            let (_tmp, deb) = apt.download("ovmf", &root.join("tmp"))?;
            let stage = tempfile::Builder::new()
                .prefix("ovmf-")
                .tempdir_in(root.join("tmp"))?;
            extract_deb(&deb, stage.path(), &[])?;
            collect_ovmf(stage.path(), &dir)?;
            (v, dir)
        }
    };
    ensure!(
        version.starts_with("2022.11"),
        "the system's ovmf is {version}, expected 2022.11 (Debian 12)"
    );
    if dir.join("PkKek-1-snakeoil.key").is_file() {
        decrypt_snakeoil_key(&dir)?;
    }
    eprintln!("fixtures: ovmf {version}");
    m.insert("ovmf2022.version".into(), version);
    m.insert("ovmf2022.dir".into(), rel(root, &dir));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// SeaBIOS

/// Where Debian's `seabios` package (a dependency of qemu-system-x86) puts QEMU's default BIOS
/// for the pc and q35 machines.
const SEABIOS_INSTALLED: &str = "/usr/share/seabios/bios-256k.bin";

/// SeaBIOS `bios-256k.bin`: the installed `seabios` package's (what QEMU uses without `-bios`),
/// else the file from `apt-get download seabios`.
fn seabios(root: &Path, m: &mut BTreeMap<String, String>, opts: &FetchOptions) -> Result<()> {
    if cached(root, m, &["seabios.bios"]) && !opts.refresh {
        eprintln!("fixtures: seabios {} (cached)", m["seabios.version"]);
        return Ok(());
    }
    let (version, src_root, _stage) = match dpkg_installed_version("seabios") {
        Some(v) if Path::new(SEABIOS_INSTALLED).is_file() => (v, PathBuf::from("/"), None),
        _ => {
            let apt = Apt::default();
            let v = apt.show("seabios")?["Version"].clone();
            let (_tmp, deb) = apt.download(&format!("seabios={v}"), &root.join("tmp"))?;
            let stage = tempfile::Builder::new()
                .prefix("seabios-")
                .tempdir_in(root.join("tmp"))?;
            extract_deb(&deb, stage.path(), &["./usr/share/seabios/*"])?;
            (v, stage.path().to_path_buf(), Some(stage))
        }
    };
    let dst = root.join(format!("seabios/{version}/bios-256k.bin"));
    copy_if_changed(&src_root.join(&SEABIOS_INSTALLED[1..]), &dst)?;
    eprintln!("fixtures: seabios {version}");
    m.insert("seabios.version".into(), version);
    m.insert("seabios.bios".into(), rel(root, &dst));
    Ok(())
}

/// A Debian mirror URI and keyring of the machine's apt sources (the stanza of the base suite,
/// not -security/-updates), read from deb822 `.sources` files or one-line `sources.list`.
fn system_debian_mirror() -> Result<(String, Option<String>)> {
    let mut candidates: Vec<(String, Option<String>, Vec<String>)> = Vec::new();
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            if f.extension().is_some_and(|e| e == "sources") {
                let text = fs::read_to_string(&f).unwrap_or_default();
                for stanza in text.split("\n\n") {
                    let field = |name: &str| {
                        stanza
                            .lines()
                            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
                    };
                    if field("Enabled:").is_some_and(|v| v == "no") {
                        continue;
                    }
                    if !field("Types:").is_some_and(|t| t.split_whitespace().any(|t| t == "deb")) {
                        continue;
                    }
                    let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) else {
                        continue;
                    };
                    let suites: Vec<String> = suites.split_whitespace().map(String::from).collect();
                    for uri in uris.split_whitespace() {
                        candidates.push((uri.to_string(), field("Signed-By:"), suites.clone()));
                    }
                }
            } else if f.extension().is_some_and(|e| e == "list") {
                parse_one_line_sources(
                    &fs::read_to_string(&f).unwrap_or_default(),
                    &mut candidates,
                );
            }
        }
    }
    parse_one_line_sources(
        &fs::read_to_string("/etc/apt/sources.list").unwrap_or_default(),
        &mut candidates,
    );
    // Prefer a stanza serving a plain suite (e.g. `bookworm`), whose URI is the main archive.
    candidates
        .iter()
        .find(|(uri, _, suites)| {
            !uri.contains("security") && suites.iter().any(|s| !s.contains('-') && !s.contains('/'))
        })
        .or_else(|| {
            candidates
                .iter()
                .find(|(uri, _, _)| !uri.contains("security"))
        })
        .map(|(u, k, _)| (u.clone(), k.clone()))
        .ok_or_else(|| anyhow!("no Debian mirror found in the machine's apt sources"))
}

fn parse_one_line_sources(text: &str, out: &mut Vec<(String, Option<String>, Vec<String>)>) {
    for line in text.lines() {
        let line = line.split('#').next().unwrap().trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut rest = rest.trim();
        let mut keyring = None;
        if let Some(r) = rest.strip_prefix('[') {
            let (opts, after) = r.split_once(']').unwrap_or((r, ""));
            keyring = opts
                .split_whitespace()
                .find_map(|o| o.strip_prefix("signed-by=").map(String::from));
            rest = after.trim();
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push((uri.to_string(), keyring, vec![suite.to_string()]));
        }
    }
}

/// A private apt configuration for Debian 13 (trixie) under `<cache>/apt-trixie`.
fn trixie_apt(root: &Path) -> Result<Apt> {
    suite_apt(root, "trixie")
}

/// A private apt configuration for another Debian `suite` in `<cache>/apt-<suite>`: one source
/// line reusing the machine's mirror URI, its own lists and cache; the system's apt state is
/// never touched. `apt-get update` runs when it has no package lists yet.
pub(crate) fn suite_apt(root: &Path, suite: &str) -> Result<Apt> {
    let base = root.join(format!("apt-{suite}"));
    let (uri, keyring) = system_debian_mirror()?;
    for d in [
        "lists/partial",
        "cache/archives/partial",
        "sources.list.d",
        "preferences.d",
    ] {
        fs::create_dir_all(base.join(d))?;
    }
    let signed = keyring
        .filter(|k| Path::new(k).is_file())
        .map(|k| format!(" signed-by={k}"))
        .unwrap_or_default();
    let list = base.join("sources.list");
    let line = format!("deb [arch=amd64{signed}] {uri} {suite} main\n");
    if fs::read_to_string(&list).ok().as_deref() != Some(line.as_str()) {
        fs::write(&list, line)?;
    }
    let p = |s: &str| base.join(s).display().to_string();
    Ok(Apt {
        opts: vec![
            format!("Dir::Etc::SourceList={}", list.display()),
            format!("Dir::Etc::SourceParts={}", p("sources.list.d")),
            format!("Dir::Etc::PreferencesParts={}", p("preferences.d")),
            format!("Dir::State::Lists={}", p("lists")),
            format!("Dir::Cache={}", p("cache")),
            "Dir::Cache::pkgcache=".into(),
            "Dir::Cache::srcpkgcache=".into(),
            "Acquire::Languages=none".into(),
            "APT::Architectures=amd64".into(),
        ],
    })
}

/// `apt-get update` for a [`suite_apt`] view that has no package lists yet (or on `refresh`).
pub(crate) fn update_lists(root: &Path, suite: &str, apt: &Apt, refresh: bool) -> Result<()> {
    let lists = root.join(format!("apt-{suite}/lists"));
    let have_lists = fs::read_dir(&lists)?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"));
    if !have_lists || refresh {
        eprintln!("fixtures: apt-get update (private {suite} configuration)");
        run_capture(apt.cmd("apt-get").arg("update"))?;
    }
    Ok(())
}

fn ovmf2025(root: &Path, m: &mut BTreeMap<String, String>, opts: &FetchOptions) -> Result<()> {
    let keys = ["ovmf2025.dir", "snakeoil.key", "snakeoil.cert"];
    if cached(root, m, &keys) && !opts.refresh {
        eprintln!("fixtures: trixie ovmf {} (cached)", m["ovmf2025.version"]);
        return Ok(());
    }
    let apt = trixie_apt(root)?;
    update_lists(root, "trixie", &apt, opts.refresh)?;
    let version = apt.show("ovmf/trixie").or_else(|_| apt.show("ovmf"))?["Version"].clone();
    ensure!(
        version.starts_with("2025.02"),
        "trixie's ovmf is {version}, expected 2025.02"
    );
    let dir = root.join(format!("ovmf/{version}"));
    if !dir.join("OVMF_CODE_4M.secboot.strictnx.fd").is_file() {
        let (_tmp, deb) = apt.download(&format!("ovmf={version}"), &root.join("tmp"))?;
        let stage = tempfile::Builder::new()
            .prefix("ovmf-")
            .tempdir_in(root.join("tmp"))?;
        extract_deb(&deb, stage.path(), &[])?;
        collect_ovmf(stage.path(), &dir)?;
    }
    for f in [
        "OVMF_CODE_4M.secboot.strictnx.fd",
        "OVMF_VARS_4M.snakeoil.fd",
        "OVMF_VARS_4M.fd",
        "PkKek-1-snakeoil.key",
        "PkKek-1-snakeoil.pem",
    ] {
        ensure!(dir.join(f).is_file(), "trixie's ovmf {version} lacks {f}");
    }
    let key = decrypt_snakeoil_key(&dir)?;
    let listing: Vec<String> = {
        let mut v: Vec<String> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    eprintln!("fixtures: trixie ovmf {version}: {}", listing.join(" "));
    m.insert("ovmf2025.version".into(), version);
    m.insert("ovmf2025.dir".into(), rel(root, &dir));
    m.insert("ovmf2025.files".into(), listing.join(" "));
    m.insert("snakeoil.key".into(), rel(root, &key));
    m.insert(
        "snakeoil.cert".into(),
        rel(root, &dir.join("PkKek-1-snakeoil.pem")),
    );
    Ok(())
}

/// sbsign cannot take a passphrase on the command line: keep a decrypted copy of an OVMF
/// package's snakeoil key (`PkKek-1-snakeoil.nopass.key`) next to it.
fn decrypt_snakeoil_key(dir: &Path) -> Result<PathBuf> {
    let key = dir.join("PkKek-1-snakeoil.nopass.key");
    if !key.is_file() {
        ensure!(
            have_tool("openssl"),
            "`openssl` is needed to decrypt the snakeoil key"
        );
        run_capture(
            Command::new("openssl")
                .args(["pkey", "-passin"])
                .arg(format!("pass:{SNAKEOIL_PASS}"))
                .arg("-in")
                .arg(dir.join("PkKek-1-snakeoil.key"))
                .arg("-out")
                .arg(&key),
        )?;
    }
    Ok(key)
}

// ---------------------------------------------------------------------------------------------
// initramfs

/// Whether an ELF file is statically linked (no PT_INTERP program header).
fn is_static_elf(data: &[u8]) -> bool {
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= data.len() && u32::from_le_bytes(data[o..o + 4].try_into().unwrap()) != 3
    })
}

fn static_busybox(root: &Path) -> Result<(Vec<u8>, String)> {
    if let Ok(bin) = fs::read("/bin/busybox")
        && is_static_elf(&bin)
    {
        let v = dpkg_installed_version("busybox-static").unwrap_or_else(|| "system".into());
        return Ok((bin, v));
    }
    let dir = root.join("busybox-static");
    let apt = Apt::default();
    let v = apt.show("busybox-static")?["Version"].clone();
    let bin_path = dir.join(format!("{v}/bin/busybox"));
    if !bin_path.is_file() {
        let (_tmp, deb) = apt.download("busybox-static", &root.join("tmp"))?;
        extract_deb(&deb, &dir.join(&v), &["./bin/busybox"])?;
    }
    let bin = fs::read(&bin_path)?;
    ensure!(is_static_elf(&bin), "{} is not static", bin_path.display());
    Ok((bin, v))
}

/// `/bin/stage-stamp` of the initramfs (`fixtures/initramfs/stage-stamp.c`, freestanding),
/// built with the host's gcc.
fn stage_stamp(root: &Path) -> Result<Vec<u8>> {
    let src = crate::workspace_root().join("fixtures/initramfs/stage-stamp.c");
    let dir = root.join("tmp");
    fs::create_dir_all(&dir)?;
    let out = dir.join("stage-stamp");
    build_freestanding(&src, &out)?;
    Ok(fs::read(&out)?)
}

/// Builds the freestanding crate `package` of the workspace at `root` (the probe kernel,
/// hostile-handover) in release for `target` into its own `target_dir`, with none of the
/// caller's target directory or RUSTFLAGS; returns `<target_dir>/<target>/release`, where its
/// artifacts are.
pub fn build_target_crate(
    root: &Path,
    package: &str,
    target: &str,
    target_dir: &Path,
) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "-p",
            package,
            "--target",
            target,
            "--release",
            "--target-dir",
        ])
        .arg(target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .with_context(|| format!("running cargo build for {package}"))?;
    ensure!(status.success(), "cargo build of {package} failed");
    Ok(target_dir.join(target).join("release"))
}

/// Builds the freestanding C program `src` (no libc: its own `_start` and system calls) into
/// the static x86_64 binary `out` with the host's gcc.
pub fn build_freestanding(src: &Path, out: &Path) -> Result<()> {
    let o = Command::new("gcc")
        .args([
            "-static",
            "-nostdlib",
            "-ffreestanding",
            "-fno-stack-protector",
        ])
        .args([
            "-fno-pie",
            "-no-pie",
            "-Os",
            "-s",
            "-Wl,--build-id=none",
            "-Wall",
            "-o",
        ])
        .arg(out)
        .arg(src)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("building {} with gcc", src.display()))?;
    ensure!(
        o.status.success(),
        "gcc {}: {}",
        src.display(),
        String::from_utf8_lossy(&o.stderr).trim()
    );
    Ok(())
}

fn build_initramfs(root: &Path, m: &mut BTreeMap<String, String>) -> Result<()> {
    let (busybox, bb_version) = static_busybox(root)?;
    let release = m["kernel.release"].clone();
    let mut modules = initramfs::Modules {
        release: &release,
        files: Vec::new(),
    };
    for (ko_rel, key) in INITRAMFS_MODULES {
        let Some(p) = m.get(&format!("kernel.{key}")).map(|k| root.join(k)) else {
            continue;
        };
        if p.is_file() {
            let name = ko_rel.rsplit('/').next().unwrap();
            modules.files.push((name, fs::read(&p)?));
        }
    }
    let stamp = stage_stamp(root)?;
    let image = initramfs::build(
        initramfs::INIT_SCRIPT.as_bytes(),
        &busybox,
        &[("stage-stamp", stamp)],
        &modules,
    )?;
    let dst = root.join("initramfs/initramfs.cpio.gz");
    let unchanged = fs::read(&dst).is_ok_and(|old| old == image);
    if !unchanged {
        fs::create_dir_all(dst.parent().unwrap())?;
        fs::write(&dst, &image)?;
    }
    eprintln!(
        "fixtures: initramfs {} ({} bytes, busybox {bb_version}{})",
        if unchanged { "unchanged" } else { "written" },
        image.len(),
        modules
            .files
            .iter()
            .map(|(n, _)| format!(", {n}"))
            .collect::<String>()
    );
    m.insert("initramfs".into(), rel(root, &dst));
    m.insert("initramfs.busybox".into(), bb_version);
    Ok(())
}

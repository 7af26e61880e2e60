//! `cargo xtask setup`: everything a fresh machine needs before the demo or the tests run, in one
//! place. `demo`, `test` and `.ci/run` call it first; it changes nothing when all is there.
//!
//! 1. **Rust**: the targets and components `rust-toolchain.toml` lists. rustup ≥ 1.28 installs
//!    none of them on `rustup show` or on first use of a toolchain that is already installed, so
//!    the missing ones are installed with `rustup target add` / `rustup component add` for the
//!    pinned channel.
//! 2. **Debian packages** ([`PACKAGES`], the one list): the missing ones are installed with
//!    `apt-get update` (once) and `apt-get install --no-remove`, as root or through `sudo -n`.
//!    Neither possible, or not a Debian-family machine: one error naming the exact commands to run.
//!    **Nothing the machine has is ever removed**: the install is simulated first (`apt-get -s`),
//!    and a plan that removes a package stops with one line naming it and the package that would
//!    remove it. The one known case is handled instead of refused: a newer `qemu-utils` (from
//!    bookworm-backports, as on this project's CI machines) `Breaks` bookworm's
//!    `qemu-system-common`, so QEMU cannot be installed beside it; then QEMU's own packages
//!    ([`QEMU_UNPACKED`]) are unpacked into `<cache>/qemu/` (never installed; the harness runs
//!    that binary, [`qemu_binary`]) and only their libraries are installed.
//! 3. **cargo-fuzz** (the test suite's `fuzz` step only): `cargo install cargo-fuzz --locked`.

use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};

/// What the caller is about to run: the test suite needs more than the demo.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    Demo,
    Test,
}

/// One Debian package and what needs it.
pub struct Package {
    pub name: &'static str,
    pub why: &'static str,
    /// Only `cargo xtask test` needs it (the demo does not).
    pub test_only: bool,
}

const fn pkg(name: &'static str, why: &'static str) -> Package {
    Package {
        name,
        why,
        test_only: false,
    }
}

const fn test_pkg(name: &'static str, why: &'static str) -> Package {
    Package {
        name,
        why,
        test_only: true,
    }
}

/// Every Debian package the demo and the tests need: the one list (`.ci/run` calls
/// `cargo xtask setup`, which reads it).
pub const PACKAGES: &[Package] = &[
    pkg(QEMU_PACKAGE, "the QEMU boots"),
    pkg("ovmf", "OVMF 2022.11 firmware"),
    pkg("systemd-boot-efi", "systemd-boot, the test loader"),
    pkg("busybox-static", "the test initramfs"),
    pkg("cpio", "the test initramfs"),
    pkg("mtools", "FAT images for the ESP"),
    pkg("dosfstools", "FAT images for the ESP"),
    pkg("ca-certificates", "downloads of the fixtures"),
    pkg("curl", "downloads of the fixtures"),
    pkg("clang", "the stub's C decoders for the UEFI target"),
    pkg("llvm", "llvm-ar for the stub's C decoders"),
    pkg("gcc", "C code of host crates"),
    pkg("libc6-dev", "C code of host crates"),
    test_pkg("sbsigntool", "Secure Boot signing and sbverify"),
    test_pkg("pesign", "the second signing tool whose digest must agree"),
    test_pkg(
        "libnss3-tools",
        "certutil and pk12util: pesign's key database",
    ),
    test_pkg(
        "osslsigncode",
        "the third signing tool whose digest must agree",
    ),
    test_pkg(
        "file",
        "file(1), a reader of the setup header's kernel version",
    ),
    test_pkg("swtpm", "the software TPM of the measured-boot rows"),
    test_pkg("openssl", "throwaway signing keys"),
    test_pkg("python3-pefile", "the independent PE checks"),
    test_pkg("g++", "cargo-fuzz's libFuzzer"),
    test_pkg("zstd", "reference codec CLIs"),
    test_pkg("xz-utils", "reference codec CLIs"),
    test_pkg("lz4", "reference codec CLIs"),
    test_pkg("gzip", "reference codec CLIs"),
    test_pkg("make", "kernel-build"),
    test_pkg("bc", "kernel-build"),
    test_pkg("bison", "kernel-build"),
    test_pkg("flex", "kernel-build"),
    test_pkg("libelf-dev", "kernel-build"),
    test_pkg("libssl-dev", "kernel-build"),
    test_pkg("perl", "kernel-build"),
    test_pkg("systemd", "kernel-install, for the install-flow test"),
    test_pkg("man-db", "man -l, for the install test"),
    test_pkg(
        "bash-completion",
        "the install test loads the bash completion",
    ),
];

/// The packages `scope` needs.
pub fn packages(scope: Scope) -> impl Iterator<Item = &'static Package> {
    PACKAGES
        .iter()
        .filter(move |p| scope == Scope::Test || !p.test_only)
}

#[derive(clap::Args, Debug)]
pub struct SetupArgs {
    /// Install what the demo needs only (default: what the whole test suite needs).
    #[arg(long)]
    pub demo_only: bool,
    /// Print the package list and what needs each, install nothing.
    #[arg(long)]
    pub list: bool,
}

pub fn cli(a: &SetupArgs) -> Result<()> {
    let scope = if a.demo_only {
        Scope::Demo
    } else {
        Scope::Test
    };
    if a.list {
        for p in packages(scope) {
            println!("{:<18} {}", p.name, p.why);
        }
        return Ok(());
    }
    ensure(scope)
}

/// Installs whatever `scope` needs and is missing.
pub fn ensure(scope: Scope) -> Result<()> {
    rust_toolchain()?;
    debian_packages(scope)?;
    if scope == Scope::Test {
        cargo_fuzz()?;
    }
    Ok(())
}

/// The `targets` and `components` arrays of `rust-toolchain.toml`.
#[derive(Debug, Default, PartialEq)]
pub struct ToolchainFile {
    pub channel: String,
    pub targets: Vec<String>,
    pub components: Vec<String>,
}

pub fn read_toolchain_file() -> Result<ToolchainFile> {
    let path = crate::workspace_root().join("rust-toolchain.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: toml::Table = text
        .parse()
        .with_context(|| format!("{}: not TOML", path.display()))?;
    let tc = v
        .get("toolchain")
        .and_then(|t| t.as_table())
        .with_context(|| format!("{}: no [toolchain] table", path.display()))?;
    let list = |key: &str| -> Vec<String> {
        tc.get(key)
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    Ok(ToolchainFile {
        channel: tc
            .get("channel")
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_string(),
        targets: list("targets"),
        components: list("components"),
    })
}

/// The installed names rustup lists for `what` ("target" or "component") of the active
/// toolchain, with the host triple suffix of components removed (`clippy-x86_64-…` -> `clippy`).
fn rustup_installed(what: &str) -> Result<BTreeSet<String>> {
    let out = Command::new("rustup")
        .args([what, "list", "--installed"])
        .current_dir(crate::workspace_root())
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            "rustup is required (https://rustup.rs): the project pins its toolchain in \
             rust-toolchain.toml"
        })?;
    if !out.status.success() {
        bail!(
            "rustup {what} list --installed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .collect())
}

/// Which entries of `wanted` are not in `installed` (components match with or without the host
/// triple rustup appends).
pub fn missing_of(wanted: &[String], installed: &BTreeSet<String>) -> Vec<String> {
    wanted
        .iter()
        .filter(|w| {
            !installed.iter().any(|i| {
                i == *w
                    || i.strip_prefix(w.as_str())
                        .is_some_and(|r| r.starts_with('-'))
            })
        })
        .cloned()
        .collect()
}

fn rust_toolchain() -> Result<()> {
    let file = read_toolchain_file()?;
    let missing = |what: &str, wanted: &[String]| -> Result<Vec<String>> {
        Ok(missing_of(wanted, &rustup_installed(what)?))
    };
    for (what, wanted) in [("target", &file.targets), ("component", &file.components)] {
        let need = missing(what, wanted)?;
        if need.is_empty() {
            continue;
        }
        // `rustup <what> add --toolchain <channel> ...`: explicit, because `rustup toolchain
        // install` without arguments does nothing for a toolchain that is already installed.
        let mut argv = vec![what.to_string(), "add".into(), "--toolchain".into()];
        argv.push(file.channel.clone());
        argv.extend(need.iter().cloned());
        eprintln!(
            "setup: installing Rust {what}s {} (rustup {})",
            need.join(" "),
            argv.join(" ")
        );
        let st = Command::new("rustup")
            .args(&argv)
            .current_dir(crate::workspace_root())
            .stdin(Stdio::null())
            .status()
            .context("running rustup")?;
        let still = missing(what, wanted)?;
        if !st.success() || !still.is_empty() {
            bail!(
                "setup: rustup {} failed ({st}); {} still missing: run it by hand",
                argv.join(" "),
                still.join(" ")
            );
        }
    }
    Ok(())
}

/// How packages can be installed on this machine.
#[derive(Debug, PartialEq, Eq)]
pub enum Installer {
    Root,
    Sudo,
    /// Neither root nor password-less sudo.
    None,
    /// No dpkg/apt-get: not a Debian-family machine.
    NotDebian,
}

/// `tool` on PATH, as the shell would find it.
pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|f| f.is_file())
    })
}

fn on_path(tool: &str) -> bool {
    which(tool).is_some()
}

fn installer() -> Installer {
    if !on_path("dpkg-query") || !on_path("apt-get") {
        return Installer::NotDebian;
    }
    if is_root() {
        return Installer::Root;
    }
    let sudo_ok = on_path("sudo") && succeeds(Command::new("sudo").args(["-n", "true"]));
    if sudo_ok {
        Installer::Sudo
    } else {
        Installer::None
    }
}

/// Whether `cmd` runs and exits 0, with no input and its output discarded.
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this process runs as root (`id -u`: xtask has no unsafe code).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Whether dpkg reports `name` as installed.
fn dpkg_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).ends_with(" installed"))
}

/// The install command: no recommends, and never a removal (`--no-remove` makes apt stop
/// instead; the plan was simulated first).
const APT_INSTALL: [&str; 6] = [
    "apt-get",
    "install",
    "-y",
    "-q",
    "--no-install-recommends",
    "--no-remove",
];

/// What to do about `missing` packages with `installer`: the commands to run, or the error to
/// give. Pure, so the decision is unit-tested.
pub fn plan(missing: &[&str], installer: &Installer) -> Result<Vec<Vec<String>>, String> {
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let install = |prefix: &[&str]| -> Vec<Vec<String>> {
        let mut update: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        update.extend(["apt-get", "update", "-q"].map(String::from));
        let mut inst: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        inst.extend(APT_INSTALL.map(String::from));
        inst.extend(missing.iter().map(|s| s.to_string()));
        vec![update, inst]
    };
    let by_hand = format!(
        "apt-get update && apt-get install --no-install-recommends --no-remove {}",
        missing.join(" ")
    );
    match installer {
        Installer::Root => Ok(install(&[])),
        Installer::Sudo => Ok(install(&["sudo", "-n"])),
        Installer::None => Err(format!(
            "missing Debian packages {}: not root and no password-less sudo; as root run: {by_hand}",
            missing.join(" ")
        )),
        Installer::NotDebian => Err(format!(
            "missing packages {}: this is not a Debian-family machine (no dpkg-query/apt-get); \
             install their equivalents, or on Debian run as root: {by_hand}",
            missing.join(" ")
        )),
    }
}

fn debian_packages(scope: Scope) -> Result<()> {
    let inst = installer();
    if inst == Installer::NotDebian {
        // Nothing to ask dpkg: name what the tests use whose tool is absent.
        let missing: Vec<&str> = packages(scope)
            .filter(|p| p.name == QEMU_PACKAGE && !on_path("qemu-system-x86_64"))
            .map(|p| p.name)
            .collect();
        plan(&missing, &inst).map_err(|e| anyhow::anyhow!("setup: {e}"))?;
        return Ok(());
    }
    let mut install: Vec<String> = packages(scope)
        .filter(|p| !dpkg_installed(p.name))
        .map(|p| p.name.to_string())
        .collect();
    // QEMU that apt cannot install beside what the machine has: unpacked, its libraries installed.
    let mut unpack = false;
    if install.iter().any(|p| p == QEMU_PACKAGE) {
        let q = simulate(&[QEMU_PACKAGE.to_string()])?;
        if !q.remove.is_empty() {
            eprintln!(
                "setup: {QEMU_PACKAGE} cannot be installed without removing {} ({}); unpacking \
                 QEMU into the cache instead",
                q.remove.join(" "),
                conflicts_of(&q.remove)
            );
            install.retain(|p| p != QEMU_PACKAGE);
            for (name, _) in q.install {
                if !QEMU_UNPACKED.contains(&name.as_str()) && !install.contains(&name) {
                    install.push(name);
                }
            }
            unpack = true;
        }
    }
    install_packages(&install, &inst)?;
    if unpack {
        // The versions apt chooses now: an install runs `apt-get update`, after which the plan's
        // may be gone (a rebuild, +b3 for +b2).
        let own: Vec<_> = simulate(&[QEMU_PACKAGE.to_string()])?
            .install
            .into_iter()
            .filter(|(name, _)| QEMU_UNPACKED.contains(&name.as_str()))
            .collect();
        unpack_qemu(&own)?;
    }
    Ok(())
}

/// `apt-get install` of `names` (missing packages) after a simulation proved it removes nothing.
fn install_packages(names: &[String], inst: &Installer) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let cmds = plan(&refs, inst).map_err(|e| anyhow::anyhow!("setup: {e}"))?;
    let sim = simulate(names)?;
    if !sim.remove.is_empty() {
        bail!("setup: {}", refusal(names, &sim.remove)?);
    }
    eprintln!("setup: installing Debian packages {}", names.join(" "));
    for argv in cmds {
        let st = Command::new(&argv[0])
            .args(&argv[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("running {}", argv.join(" ")))?;
        if !st.success() {
            bail!(
                "setup: `{}` failed ({st}) while installing {} (offline? run it by hand once the \
                 package sources are reachable)",
                argv.join(" "),
                names.join(" ")
            );
        }
    }
    let still: Vec<&str> = refs
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if !still.is_empty() {
        bail!("setup: apt-get install left {} missing", still.join(" "));
    }
    Ok(())
}

/// The one line for a plan apt would carry out only by removing `removed`: which of `names`
/// removes what, and the dependency fields that say why.
fn refusal(names: &[String], removed: &[String]) -> Result<String> {
    let mut culprits = Vec::new();
    for n in names {
        if !simulate(std::slice::from_ref(n))?.remove.is_empty() {
            culprits.push(n.as_str());
        }
    }
    Ok(format!(
        "installing {} would remove {} ({}), and setup never removes a package the machine has: \
         install them by hand, choosing what to keep",
        if culprits.is_empty() {
            names.join(" ")
        } else {
            culprits.join(" ")
        },
        removed.join(" "),
        conflicts_of(removed)
    ))
}

/// `Breaks`/`Conflicts` of the installed packages `names`, for an error line.
fn conflicts_of(names: &[String]) -> String {
    let fields: Vec<String> = names
        .iter()
        .filter_map(|n| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Version}|${Breaks}|${Conflicts}", n])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut it = text.split('|');
            let (version, breaks, conflicts) = (it.next()?, it.next()?, it.next()?);
            let mut what = vec![format!("{n} {version} installed")];
            if !breaks.is_empty() {
                what.push(format!("Breaks: {breaks}"));
            }
            if !conflicts.is_empty() {
                what.push(format!("Conflicts: {conflicts}"));
            }
            Some(what.join(", "))
        })
        .collect();
    fields.join("; ")
}

/// What `apt-get -s install` would do.
#[derive(Debug, Default, PartialEq)]
pub struct Simulation {
    /// (package, version) of every `Inst` line.
    pub install: Vec<(String, String)>,
    /// Every package of a `Remv` line.
    pub remove: Vec<String>,
}

/// Reads `apt-get -s` output: `Inst NAME [OLD] (VERSION ...)` and `Remv NAME [VERSION]` lines.
pub fn parse_simulation(text: &str) -> Simulation {
    let mut sim = Simulation::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Inst ") {
            let mut words = rest.split_whitespace();
            let Some(name) = words.next() else { continue };
            let version = rest
                .split_once('(')
                .and_then(|(_, v)| v.split_whitespace().next())
                .unwrap_or_default();
            sim.install.push((name.to_string(), version.to_string()));
        } else if let Some(rest) = line.strip_prefix("Remv ")
            && let Some(name) = rest.split_whitespace().next()
        {
            sim.remove.push(name.to_string());
        }
    }
    sim
}

/// `apt-get -s install --no-install-recommends NAMES` (needs no root).
fn simulate(names: &[String]) -> Result<Simulation> {
    let out = crate::fixtures::run_capture(
        Command::new("apt-get")
            .args(["-s", "-q", "install", "--no-install-recommends"])
            .args(names)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("setup: apt cannot install {}", names.join(" ")))?;
    Ok(parse_simulation(&out))
}

/// The Debian package of the QEMU the boot tests run.
pub const QEMU_PACKAGE: &str = "qemu-system-x86";
/// QEMU's own packages, unpacked into `<cache>/qemu/` when apt cannot install them.
pub const QEMU_UNPACKED: [&str; 3] = ["qemu-system-x86", "qemu-system-common", "qemu-system-data"];

/// `<cache>/qemu/current`: the unpacked QEMU root in use.
fn qemu_root() -> std::path::PathBuf {
    crate::fixtures::cache_dir().join("qemu/current")
}

/// The QEMU binary: the installed package's on PATH, else the one [`unpack_qemu`] unpacked.
pub fn qemu_binary() -> Option<std::path::PathBuf> {
    which("qemu-system-x86_64").or_else(|| {
        let p = qemu_root().join("usr/bin/qemu-system-x86_64");
        p.is_file().then_some(p)
    })
}

/// Unpacks `own` (QEMU's packages at the versions apt chose) into `<cache>/qemu/<version>/` and
/// points `<cache>/qemu/current` at it. QEMU finds its data relative to its binary
/// (`../share/qemu`, `../share/seabios`, `../lib/ipxe/qemu`): the last two are links to the
/// installed `seabios` and `ipxe-qemu`, which are among the libraries installed beside it.
fn unpack_qemu(own: &[(String, String)]) -> Result<()> {
    let version = own
        .iter()
        .find(|(n, _)| n == QEMU_PACKAGE)
        .map(|(_, v)| v.clone())
        .with_context(|| format!("setup: apt would not install {QEMU_PACKAGE}"))?;
    let base = crate::fixtures::cache_dir().join("qemu");
    let dir = base.join(version.replace(['~', ':'], "_"));
    if !dir.join("usr/bin/qemu-system-x86_64").is_file() {
        let work = crate::fixtures::cache_dir().join("tmp");
        std::fs::create_dir_all(&work)?;
        let stage = tempfile::Builder::new().prefix("qemu-").tempdir_in(&work)?;
        let apt = crate::fixtures::Apt::default();
        for (name, v) in own {
            let (_tmp, deb) = apt.download(&format!("{name}={v}"), &work)?;
            crate::fixtures::extract_deb(&deb, stage.path(), &[])
                .with_context(|| format!("unpacking {name}"))?;
        }
        for (link, to) in [
            ("usr/share/seabios", "/usr/share/seabios"),
            ("usr/lib/ipxe/qemu", "/usr/lib/ipxe/qemu"),
        ] {
            let at = stage.path().join(link);
            if at.symlink_metadata().is_err() {
                std::fs::create_dir_all(at.parent().unwrap())?;
                std::os::unix::fs::symlink(to, &at)?;
            }
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&base)?;
        std::fs::rename(stage.keep(), &dir)?;
    }
    let current = qemu_root();
    let _ = std::fs::remove_file(&current);
    std::os::unix::fs::symlink(dir.file_name().unwrap(), &current)?;
    eprintln!("setup: QEMU {version} in {}", dir.display());
    Ok(())
}

fn cargo_fuzz() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let present = succeeds(Command::new(&cargo).args(["fuzz", "--version"]));
    if present {
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    let st = Command::new(&cargo)
        .args(["install", "cargo-fuzz", "--locked"])
        .stdin(Stdio::null())
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !st.success() {
        bail!("setup: cargo install cargo-fuzz --locked failed ({st})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn toolchain_file_lists_the_stub_target() {
        let f = read_toolchain_file().unwrap();
        assert!(f.targets.iter().any(|t| t == "x86_64-unknown-uefi"));
        assert!(f.components.iter().any(|c| c == "clippy"));
        assert!(!f.channel.is_empty());
    }

    #[test]
    fn missing_targets_and_components() {
        let wanted: Vec<String> = ["x86_64-unknown-uefi", "clippy", "rustfmt"]
            .map(String::from)
            .to_vec();
        let installed = set(&[
            "x86_64-unknown-linux-gnu",
            "clippy-x86_64-unknown-linux-gnu",
        ]);
        assert_eq!(
            missing_of(&wanted, &installed),
            ["x86_64-unknown-uefi", "rustfmt"]
        );
        let all = set(&[
            "x86_64-unknown-uefi",
            "clippy-x86_64-unknown-linux-gnu",
            "rustfmt",
        ]);
        assert!(missing_of(&wanted, &all).is_empty());
        // A prefix that is not followed by '-' is another component.
        assert_eq!(missing_of(&["rust".into()], &set(&["rustfmt"])), ["rust"]);
    }

    #[test]
    fn plan_installs_missing_as_root_or_sudo() {
        assert!(plan(&[], &Installer::None).unwrap().is_empty());
        let root = plan(&["ovmf", "clang"], &Installer::Root).unwrap();
        assert_eq!(root[0], ["apt-get", "update", "-q"]);
        assert!(APT_INSTALL.contains(&"--no-remove") && APT_INSTALL[..2] == ["apt-get", "install"]);
        assert_eq!(root[1][..APT_INSTALL.len()], APT_INSTALL);
        assert_eq!(root[1][APT_INSTALL.len()..], ["ovmf", "clang"]);
        let sudo = plan(&["ovmf"], &Installer::Sudo).unwrap();
        assert!(sudo.iter().all(|c| c[..2] == ["sudo", "-n"]));
    }

    #[test]
    fn plan_names_packages_and_commands_when_it_cannot_install() {
        let e = plan(&["ovmf", "clang"], &Installer::None).unwrap_err();
        assert!(
            e.contains("ovmf clang") && e.contains("apt-get install"),
            "{e}"
        );
        let e = plan(&["qemu-system-x86"], &Installer::NotDebian).unwrap_err();
        assert!(
            e.contains("not a Debian-family") && e.contains("qemu-system-x86"),
            "{e}"
        );
    }

    #[test]
    fn simulation_lists_installs_and_removals() {
        let text = "NOTE: This is only a simulation!\n\
            Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]\n\
            Inst libc6 [2.36-9+deb12u13] (2.36-9+deb12u14 Debian:12.13/stable [amd64])\n\
            Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.13/stable [amd64])\n\
            Conf qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.13/stable [amd64])\n";
        let sim = parse_simulation(text);
        assert_eq!(sim.remove, ["qemu-utils"]);
        assert_eq!(
            sim.install,
            [
                ("libc6".to_string(), "2.36-9+deb12u14".to_string()),
                (
                    "qemu-system-x86".to_string(),
                    "1:7.2+dfsg-7+deb12u18+b3".to_string()
                )
            ]
        );
        assert_eq!(
            parse_simulation("0 upgraded, 0 newly installed\n"),
            Simulation::default()
        );
    }

    #[test]
    fn test_scope_is_a_superset_of_demo_scope() {
        let demo: BTreeSet<_> = packages(Scope::Demo).map(|p| p.name).collect();
        let test: BTreeSet<_> = packages(Scope::Test).map(|p| p.name).collect();
        assert!(demo.is_subset(&test) && demo.contains("clang") && test.contains("sbsigntool"));
        let all: Vec<_> = PACKAGES.iter().map(|p| p.name).collect();
        let unique: BTreeSet<_> = all.iter().collect();
        assert_eq!(all.len(), unique.len(), "a package listed twice");
    }
}

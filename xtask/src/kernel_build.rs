//! `cargo xtask kernel-build`: proves `make/zboot.mk` on a real kernel build tree.
//!
//! 1. Source: Debian's `linux-source-6.1` package (`apt-get download`, `dpkg-deb -x`, the tarball
//!    in `/usr/src` unpacked) in `<cache>/kernel-build/src/` (`<cache>` =
//!    `${ZBOOT_CACHE:-$HOME/.cache/zboot-pack}`), kept between runs.
//! 2. Config: `make allnoconfig` with [`FRAGMENT`] as `KCONFIG_ALLCONFIG` in the build directory
//!    `<cache>/kernel-build/out/`; every fragment line must survive (checked).
//! 3. Build: `nice -n 10 make -j2 bzImage` (builds `vmlinux` and
//!    `arch/x86/boot/compressed/vmlinux.relocs`); incremental, so a cached tree costs seconds.
//! 4. The fragment: `make -f make/zboot.mk O=<out> ZBOOT_*=...` writes the image; `make -q` must
//!    then report it up to date, a second run must not rewrite it, a touched input or a changed
//!    variable must rebuild it. `zboot-pack verify` and `inspect --json` check the result.
//! 5. Boot: systemd-boot on OVMF 2025.02 strict NX with the test initramfs, to the init report,
//!    in 4-level paging (the kernel has no 5-level support; `inspect` of the vmlinux says so).
//!
//! `cargo xtask test` runs the same as its `kernel-build` test (skipped outside CI when the
//! fixtures or build tools are missing).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};

use crate::boot_tests::{self, Ctx};
use crate::fixtures::{self, missing};
use crate::qemu::{BootSpec, Firmware};

/// The Debian source package the kernel is built from.
pub const SOURCE_PACKAGE: &str = "linux-source-6.1";

/// The minimal configuration (on top of `allnoconfig`): x86_64, EFI, initramfs (gzip), serial
/// console, ACPI (power-off, tables), EFI framebuffer, KASLR with relocations, ELF and script
/// binaries for the busybox init, kallsyms for the report's `_text`.
pub const FRAGMENT: &str = "\
CONFIG_64BIT=y
CONFIG_PRINTK=y
CONFIG_TTY=y
CONFIG_SERIAL_8250=y
CONFIG_SERIAL_8250_CONSOLE=y
CONFIG_BLK_DEV_INITRD=y
CONFIG_RD_GZIP=y
CONFIG_BINFMT_ELF=y
CONFIG_BINFMT_SCRIPT=y
CONFIG_PROC_FS=y
CONFIG_SYSFS=y
CONFIG_DEVTMPFS=y
CONFIG_PCI=y
CONFIG_ACPI=y
CONFIG_EFI=y
CONFIG_EFIVAR_FS=y
CONFIG_RELOCATABLE=y
CONFIG_RANDOMIZE_BASE=y
CONFIG_KALLSYMS=y
CONFIG_FB=y
CONFIG_FB_EFI=y
";

/// The command line the fragment embeds (`ZBOOT_CMDLINE`); the report must show it.
const EMBEDDED_CMDLINE: &str = "zboot.kbuild=1 loglevel=4";

/// Build tools the kernel needs (Debian packages), checked before building.
const TOOLS: &[(&str, &str)] = &[
    ("make", "make"),
    ("gcc", "gcc"),
    ("bc", "bc"),
    ("bison", "bison"),
    ("flex", "flex"),
    ("perl", "perl"),
    ("xz", "xz-utils"),
    ("dpkg-deb", "dpkg"),
    ("apt-get", "apt"),
];

/// The cached tree: `<cache>/kernel-build/{dl,src,out}`.
pub struct Tree {
    pub root: PathBuf,
    pub src: PathBuf,
    pub out: PathBuf,
}

impl Tree {
    pub fn locate() -> Tree {
        let root = fixtures::cache_dir().join("kernel-build");
        Tree {
            src: root.join("src").join(SOURCE_PACKAGE),
            out: root.join("out"),
            root,
        }
    }
    pub fn vmlinux(&self) -> PathBuf {
        self.out.join("vmlinux")
    }
    pub fn relocs(&self) -> PathBuf {
        self.out.join("arch/x86/boot/compressed/vmlinux.relocs")
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn run(cmd: &mut Command) -> Result<()> {
    let st = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {cmd:?}"))?;
    ensure!(st.success(), "{cmd:?} failed: {st}");
    Ok(())
}

/// Steps 1-3: source, config, build. Returns the tree and how long the `make` took.
pub fn ensure_built() -> Result<(Tree, Duration)> {
    let tree = Tree::locate();
    let lacking: Vec<String> = TOOLS
        .iter()
        .filter(|(t, _)| !have(t))
        .map(|(t, p)| format!("{t} ({p})"))
        .collect();
    if !lacking.is_empty() {
        return Err(missing(format!(
            "kernel build tools: {} (.ci/run installs them)",
            lacking.join(", ")
        )));
    }
    if !Path::new("/usr/include/gelf.h").exists() {
        return Err(missing("libelf headers (libelf-dev) for objtool"));
    }
    ensure_source(&tree)?;
    ensure_config(&tree)?;
    println!(
        "    kernel-build: make -j2 bzImage in {} (first build: tens of minutes)",
        tree.out.display()
    );
    let t = Instant::now();
    run(Command::new("nice")
        .args(["-n", "10", "make", "-s", "-C"])
        .arg(&tree.src)
        .arg(format!("O={}", tree.out.display()))
        .args(["ARCH=x86_64", "-j2", "bzImage"]))?;
    let took = t.elapsed();
    println!(
        "    kernel-build: make bzImage took {:.1} s",
        took.as_secs_f64()
    );
    for f in [tree.vmlinux(), tree.relocs()] {
        ensure!(f.is_file(), "{} was not built", f.display());
    }
    Ok((tree, took))
}

fn ensure_source(tree: &Tree) -> Result<()> {
    let stamp = tree.src.join(".zboot-source");
    if stamp.is_file() && tree.src.join("Makefile").is_file() {
        return Ok(());
    }
    let dl = tree.root.join("dl");
    std::fs::create_dir_all(&dl)?;
    let find_deb = || -> Option<PathBuf> {
        let mut debs: Vec<PathBuf> = std::fs::read_dir(&dl)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(SOURCE_PACKAGE) && n.ends_with(".deb"))
            })
            .collect();
        debs.sort();
        debs.pop()
    };
    let deb = match find_deb() {
        Some(d) => d,
        None => {
            println!("    kernel-build: apt-get download {SOURCE_PACKAGE}");
            run(Command::new("apt-get")
                .args(["download", SOURCE_PACKAGE])
                .current_dir(&dl))?;
            find_deb().context("apt-get download left no .deb")?
        }
    };
    let pkg = tree.root.join("pkg");
    let _ = std::fs::remove_dir_all(&pkg);
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&pkg))?;
    let tarball = pkg.join(format!("usr/src/{SOURCE_PACKAGE}.tar.xz"));
    ensure!(
        tarball.is_file(),
        "{} not in {}",
        tarball.display(),
        deb.display()
    );
    let src_parent = tree.src.parent().unwrap();
    let _ = std::fs::remove_dir_all(&tree.src);
    std::fs::create_dir_all(src_parent)?;
    println!("    kernel-build: unpacking {}", tarball.display());
    run(Command::new("tar")
        .arg("-xJf")
        .arg(&tarball)
        .arg("-C")
        .arg(src_parent))?;
    ensure!(
        tree.src.join("Makefile").is_file(),
        "no Makefile in {}",
        tree.src.display()
    );
    std::fs::write(
        &stamp,
        deb.file_name().unwrap().to_string_lossy().as_bytes(),
    )?;
    let _ = std::fs::remove_dir_all(&pkg);
    Ok(())
}

fn ensure_config(tree: &Tree) -> Result<()> {
    let stamp = tree.out.join(".zboot-fragment");
    let config = tree.out.join(".config");
    if config.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(FRAGMENT) {
        return Ok(());
    }
    std::fs::create_dir_all(&tree.out)?;
    let fragment = tree.root.join("zboot-test.config");
    std::fs::write(&fragment, FRAGMENT)?;
    run(Command::new("make")
        .args(["-s", "-C"])
        .arg(&tree.src)
        .arg(format!("O={}", tree.out.display()))
        .arg("ARCH=x86_64")
        .arg(format!("KCONFIG_ALLCONFIG={}", fragment.display()))
        .arg("allnoconfig"))?;
    let have = std::fs::read_to_string(&config)?;
    let lost: Vec<&str> = FRAGMENT
        .lines()
        .filter(|l| !have.lines().any(|h| h == *l))
        .collect();
    ensure!(
        lost.is_empty(),
        "the config lost {lost:?} (unmet dependencies?)"
    );
    std::fs::write(&stamp, FRAGMENT)?;
    Ok(())
}

// -------------------------------------------------------------------------------------------------
// The fragment

/// One `make -f make/zboot.mk` invocation.
struct Fragment<'a> {
    tree: &'a Tree,
    packer: &'a Path,
    out: PathBuf,
    sbat: PathBuf,
}

impl Fragment<'_> {
    fn make(&self, extra: &[&str]) -> Command {
        let mut c = Command::new("make");
        c.arg("-f")
            .arg(crate::workspace_root().join("make/zboot.mk"))
            .arg(format!("O={}", self.tree.out.display()))
            .arg(format!("ZBOOT_PACK={}", self.packer.display()))
            .arg(format!("ZBOOT_OUT={}", self.out.display()))
            .arg(format!("ZBOOT_SBAT={}", self.sbat.display()))
            .arg(format!("ZBOOT_CMDLINE={EMBEDDED_CMDLINE}"))
            .arg("ZBOOT_CODEC=zstd")
            .args(extra)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .stdin(Stdio::null());
        c
    }
    /// Runs make; returns its stdout.
    fn build(&self, extra: &[&str]) -> Result<String> {
        let o = self.make(extra).output().context("running make")?;
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        ensure!(
            o.status.success(),
            "make -f zboot.mk failed: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(out)
    }
    /// `make -q`: is the image up to date?
    fn up_to_date(&self, extra: &[&str]) -> Result<bool> {
        let st = self.make(extra).arg("-q").status()?;
        match st.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => bail!("make -q -f zboot.mk: {st}"),
        }
    }
    fn mtime(&self) -> Result<SystemTime> {
        Ok(std::fs::metadata(&self.out)?.modified()?)
    }
}

/// Step 4: run the fragment and check its rebuild rules. Returns the image.
fn run_fragment(tree: &Tree, packer: &Path) -> Result<PathBuf> {
    let dir = tree.root.join("image");
    std::fs::create_dir_all(&dir)?;
    let sbat = dir.join("sbat.csv");
    std::fs::write(
        &sbat,
        "sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n\
         linux,1,Linux,linux,6.1,https://kernel.org\n",
    )?;
    let f = Fragment {
        tree,
        packer,
        out: dir.join("zboot.efi"),
        sbat,
    };
    for stale in [f.out.clone(), dir.join("zboot.efi.opts")] {
        let _ = std::fs::remove_file(stale);
    }
    ensure!(
        !f.up_to_date(&[])?,
        "make -q says a missing image is up to date"
    );
    let first = f.build(&[])?;
    ensure!(first.contains("ZBOOT"), "first run did not pack: {first}");
    ensure!(f.out.is_file(), "{} not written", f.out.display());
    let t0 = f.mtime()?;

    ensure!(
        f.up_to_date(&[])?,
        "make -q: image not up to date right after the build"
    );
    let again = f.build(&[])?;
    ensure!(!again.contains("ZBOOT"), "second run packed again: {again}");
    ensure!(f.mtime()? == t0, "second run rewrote the image");

    // A newer input file rebuilds.
    std::thread::sleep(Duration::from_millis(1100));
    let now = std::fs::File::options().append(true).open(&f.sbat)?;
    now.set_modified(SystemTime::now())?;
    ensure!(
        !f.up_to_date(&[])?,
        "make -q: a touched SBAT file did not make the image stale"
    );
    let rebuilt = f.build(&[])?;
    ensure!(
        rebuilt.contains("ZBOOT"),
        "touched input did not rebuild: {rebuilt}"
    );
    let t1 = f.mtime()?;
    ensure!(t1 > t0, "touched input: image not rewritten");

    // A changed variable rebuilds (the options record), and changing it back rebuilds again.
    ensure!(
        !f.up_to_date(&["ZBOOT_CODEC=lz4"])?,
        "make -q: a changed ZBOOT_CODEC did not make the image stale"
    );
    let _ = f.build(&[])?;
    ensure!(
        f.up_to_date(&[])?,
        "not up to date after restoring the options"
    );

    let o = Command::new(packer).arg("verify").arg(&f.out).output()?;
    ensure!(
        o.status.success(),
        "zboot-pack verify: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = Command::new(packer)
        .args(["inspect", "--json"])
        .arg(&f.out)
        .output()?;
    ensure!(o.status.success(), "zboot-pack inspect failed");
    let j = String::from_utf8_lossy(&o.stdout);
    for want in [
        "\"RELOCS\"",
        "\"codec\": \"zstd\"",
        "\"name\": \".sbat\"",
        "\"text\": \"zboot.kbuild=1 loglevel=4\"",
        "\"kernel_version\": \"Linux version 6.1.",
    ] {
        ensure!(j.contains(want), "inspect --json lacks {want}");
    }
    Ok(f.out)
}

/// Steps 1-5 (`cargo xtask kernel-build` and the `kernel-build` test).
pub fn test(ctx: &Ctx) -> Result<()> {
    let fx = ctx.fixtures()?;
    let (tree, took) = ensure_built()?;
    let packer = ctx.packer()?;
    let image = run_fragment(&tree, &packer)?;
    // What packing the bare vmlinux decides without options: no 5-level support (allnoconfig
    // leaves CONFIG_X86_5LEVEL off; its symbol table says so), and the build tree's relocs.
    let v = boot_tests::hardening::inspect_json(ctx, &tree.vmlinux())?;
    let k = &v["vmlinux"];
    ensure!(
        k["la57"] == false
            && k["la57_source"]
                .as_str()
                .is_some_and(|s| s.contains("__pgtable_l5_enabled")),
        "inspect {}: 5-level decision {} / {}",
        tree.vmlinux().display(),
        k["la57"],
        k["la57_source"]
    );
    ensure!(
        k["relocations_source"].as_str() == Some(&*tree.relocs().display().to_string()),
        "inspect {}: relocation table {} (want the build tree's {})",
        tree.vmlinux().display(),
        k["relocations_source"],
        tree.relocs().display()
    );
    println!(
        "    kernel-build: fragment OK -> {} ({} bytes; make bzImage {:.1} s)",
        image.display(),
        std::fs::metadata(&image)?.len(),
        took.as_secs_f64()
    );
    let fw = Firmware::Ovmf2025StrictNx;
    let spec = BootSpec::systemd_boot(
        "kernel-build",
        fw,
        &image,
        Some(fx.initramfs.clone()),
        boot_tests::baseline_options(),
    );
    let out = ctx.boot(&spec)?;
    let r = out.complete_report()?;
    let mut problems = r.problems();
    let release = r.release.clone().unwrap_or_default();
    if !release.starts_with("6.1.") || release == fx.kernel.release {
        problems.push(format!("release {release:?} is not the kernel built here"));
    }
    if r.vmalloc_total_kb != Some(boot_tests::hardening::VMALLOC_4LEVEL_KB) {
        problems.push(format!(
            "VmallocTotal {:?} kB: not 4-level (the kernel has no 5-level support)",
            r.vmalloc_total_kb
        ));
    }
    for word in [boot_tests::MARKER, "zboot.kbuild=1"] {
        if !r.cmdline_has(word) {
            problems.push(format!("cmdline {:?} lacks {word}", r.cmdline));
        }
    }
    match r.kallsyms_text {
        Some(t) => println!(
            "    kernel-build: booted {release}, _text {t:#x} (virtual KASLR delta {:#x})",
            t.wrapping_sub(0xffff_ffff_8100_0000)
        ),
        None => problems.push("no _text in /proc/kallsyms".into()),
    }
    if !problems.is_empty() {
        bail!("{} (log {})", problems.join("; "), out.log_path.display());
    }
    Ok(())
}

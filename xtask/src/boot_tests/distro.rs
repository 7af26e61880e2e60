//! The distribution's install flow: `cargo xtask install` into a staging root, and the
//! kernel-install plugin driven by Debian's own `kernel-install` (systemd 252) into a scratch
//! `$BOOT_ROOT` that then boots through systemd-boot.

use super::*;
use crate::install::{self, LAYOUT, PLUGIN};
use crate::setup::which;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `cmd`, returns stdout; any failure names the command and its stderr.
fn run_ok(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A missing tool is a missing prerequisite (a failure under CI).
fn need_tool(tool: &str, package: &str) -> Result<()> {
    match which(tool) {
        Some(_) => Ok(()),
        None => Err(missing(format!("{tool} (Debian package {package})"))),
    }
}

/// `cargo xtask install --prefix /usr --destdir TMP`: every file in its FHS place with the
/// right mode, the man page renders with `man -l`, the bash completion loads and completes the
/// subcommands, the plugin is valid shell and points at the installed binary.
fn install_destdir(ctx: &Ctx) -> Result<()> {
    need_tool("man", "man-db")?;
    let tmp = tempfile::tempdir()?;
    let files = install::install(&ctx.packer()?, Path::new("/usr"), Some(tmp.path()))?;
    let usr = tmp.path().join("usr");
    for (rel, mode) in [
        (LAYOUT.bin, 0o755),
        (LAYOUT.bash, 0o644),
        (LAYOUT.zsh, 0o644),
        (LAYOUT.fish, 0o644),
        (LAYOUT.make, 0o644),
        (LAYOUT.plugin, 0o755),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let p = usr.join(rel);
        let m = std::fs::metadata(&p).with_context(|| format!("{} not installed", p.display()))?;
        ensure!(
            m.permissions().mode() & 0o777 == mode,
            "{}: mode {:o}, want {mode:o}",
            p.display(),
            m.permissions().mode() & 0o777
        );
        ensure!(
            files.contains(&p),
            "{} missing from the file list",
            p.display()
        );
    }
    let page = usr.join(LAYOUT.man1).join("zboot-pack.1");
    let text = run_ok(
        Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(&page)
            .env("MANWIDTH", "100"),
    )?;
    ensure!(
        text.contains("zboot-pack") && text.contains("--codec"),
        "man -l {} rendered no zboot-pack page:\n{text}",
        page.display()
    );
    println!(
        "    man -l renders {} lines; {} files installed",
        text.lines().count(),
        files.len()
    );
    // Load the completion as bash-completion would and ask it for the subcommands.
    let script = format!(
        "source {} && f=$(complete -p zboot-pack | sed -n 's/.* -F \\([^ ]*\\) .*/\\1/p') && \
         [ -n \"$f\" ] && COMP_WORDS=(zboot-pack in) COMP_CWORD=1 COMP_LINE='zboot-pack in' \
         COMP_POINT=13 && \"$f\" zboot-pack in zboot-pack && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        usr.join(LAYOUT.bash).display()
    );
    let replies = run_ok(Command::new("bash").args(["-c", &script]))?;
    ensure!(
        replies.lines().any(|l| l == "inspect"),
        "the bash completion did not complete `zboot-pack in` to inspect: {replies:?}"
    );
    run_ok(Command::new("sh").arg("-n").arg(usr.join(LAYOUT.plugin)))?;
    let plugin = std::fs::read_to_string(usr.join(LAYOUT.plugin))?;
    ensure!(
        plugin.contains("\nZBOOT_PACK=/usr/bin/zboot-pack\n"),
        "the installed plugin does not default to /usr/bin/zboot-pack"
    );
    Ok(())
}

/// The shell script run in a private mount namespace: `$BOOT_ROOT` is a fresh tmpfs (a mount
/// point, as an ESP is, so 90-loaderentry writes ESP-relative paths), `kernel-install add`, a
/// copy of the result to `$SNAP`, `kernel-install remove`, and a listing of what is left.
const KERNEL_INSTALL_SCRIPT: &str = r#"
set -eu
mount -t tmpfs zboot-esp "$BOOT_ROOT"
kernel-install --verbose add "$KVER" "$KIMAGE" "$KINITRD"
cp -r "$BOOT_ROOT/." "$SNAP/"
kernel-install --verbose remove "$KVER"
(cd "$BOOT_ROOT" && find . -type f) > "$LEFT"
"#;

/// Debian's kernel-install (systemd 252) with our plugin after its 90-loaderentry.install, a
/// scratch BOOT_ROOT and configuration root (layout=bls, /etc/kernel/cmdline, zboot-pack.conf
/// choosing the codec): the entry's `linux` is a zboot-pack image of Debian's bzImage, the ESP
/// boots through systemd-boot to the reporting init with the entry's options and initrd, and
/// `kernel-install remove` leaves no file behind.
fn kernel_install_bls(ctx: &Ctx) -> Result<()> {
    need_tool("kernel-install", "systemd")?;
    need_tool("unshare", "util-linux")?;
    let fx = ctx.fixtures()?;
    let loaderentry = Path::new("/usr/lib/kernel/install.d/90-loaderentry.install");
    ensure!(loaderentry.is_file(), "{} not found", loaderentry.display());

    let tmp = tempfile::tempdir()?;
    let dest = tmp.path().join("dest");
    install::install(&ctx.packer()?, Path::new("/usr"), Some(&dest))?;
    let conf = tmp.path().join("etc-kernel");
    let boot_root = tmp.path().join("boot");
    let snap = qemu::target_dir().join("boot-tests/kernel-install-esp");
    let _ = std::fs::remove_dir_all(&snap);
    for d in [&conf, &boot_root, &snap] {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(conf.join("install.conf"), "layout=bls\n")?;
    std::fs::write(conf.join("cmdline"), format!("{}\n", baseline_options()))?;
    std::fs::write(
        conf.join("zboot-pack.conf"),
        format!(
            "ZBOOT_PACK={}\nZBOOT_CODEC=zstd\n",
            dest.join("usr").join(LAYOUT.bin).display()
        ),
    )?;
    let machine_id = "0123456789abcdef0123456789abcdef";
    let left = tmp.path().join("left.txt");
    let plugins = format!(
        "{} {}",
        loaderentry.display(),
        dest.join("usr").join(LAYOUT.plugin).display()
    );
    let root = crate::setup::is_root();
    let mut cmd = Command::new("unshare");
    cmd.args(if root { &["-m"][..] } else { &["-r", "-m"][..] })
        .args(["sh", "-c", KERNEL_INSTALL_SCRIPT])
        .env("BOOT_ROOT", &boot_root)
        .env("KERNEL_INSTALL_CONF_ROOT", &conf)
        .env("KERNEL_INSTALL_PLUGINS", &plugins)
        .env("MACHINE_ID", machine_id)
        .env("KVER", &fx.kernel.release)
        .env("KIMAGE", &fx.kernel.vmlinuz)
        .env("KINITRD", &fx.initramfs)
        .env("SNAP", &snap)
        .env("LEFT", &left);
    let log = run_ok(&mut cmd)?;
    ensure!(
        log.contains(PLUGIN),
        "kernel-install did not run {PLUGIN}:\n{log}"
    );

    let entry_dir = snap.join(machine_id).join(&fx.kernel.release);
    let linux = entry_dir.join("linux");
    let image = std::fs::read(&linux).with_context(|| format!("{} missing", linux.display()))?;
    ensure!(
        image.get(4..8) == Some(&b"zimg"[..]),
        "{} is not a zboot-pack image (no zimg header)",
        linux.display()
    );
    let inspect = run_ok(Command::new(ctx.packer()?).arg("inspect").arg(&linux))?;
    ensure!(
        inspect.contains("zstd"),
        "ZBOOT_CODEC=zstd not honoured:\n{inspect}"
    );
    let entry_file = snap
        .join("loader/entries")
        .join(format!("{machine_id}-{}.conf", fx.kernel.release));
    let entry = std::fs::read_to_string(&entry_file)
        .with_context(|| format!("{} missing", entry_file.display()))?;
    let rel = format!("/{machine_id}/{}/linux", fx.kernel.release);
    ensure!(
        entry
            .lines()
            .any(|l| l.split_whitespace().eq(["linux", rel.as_str()])),
        "entry does not boot {rel}:\n{entry}"
    );
    let leftover = std::fs::read_to_string(&left)?;
    ensure!(
        leftover.trim().is_empty(),
        "kernel-install remove left files behind:\n{leftover}"
    );
    println!(
        "    entry {} -> zboot-pack image {} bytes (bzImage {} bytes); remove left nothing",
        entry_file.file_name().unwrap_or_default().to_string_lossy(),
        image.len(),
        std::fs::metadata(&fx.kernel.vmlinuz)?.len()
    );

    // Boot the ESP kernel-install produced, as systemd-boot finds it.
    let fw = Firmware::Ovmf2025StrictNx;
    let mut spec = BootSpec::new(
        format!("kernel-install-bls-{fw}"),
        fw,
        BootMode::Bare {
            image: fx.systemd_boot.clone(),
        },
    );
    let loader_conf = tmp.path().join("loader.conf");
    std::fs::write(&loader_conf, "timeout 0\nconsole-mode keep\neditor no\n")?;
    spec.extra_files
        .push(("loader/loader.conf".into(), loader_conf));
    for f in walk(&snap)? {
        let rel = f.strip_prefix(&snap)?.to_string_lossy().into_owned();
        spec.extra_files.push((rel, f));
    }
    let out = ctx.boot(&spec)?;
    let r = check_linux_report(ctx, &out)?;
    ensure!(
        r.cmdline_has(&format!("systemd.machine_id={machine_id}")),
        "the entry's options did not arrive: {:?}",
        r.cmdline
    );
    Ok(())
}

/// The README's main command on a fresh machine's Rust: a fresh `RUSTUP_HOME` holding only the
/// pinned toolchain (`--profile minimal`, none of the project's targets or components) and a fresh
/// `CARGO_HOME` run `cargo xtask demo` in a fresh clone of this repository's HEAD, and it reaches
/// the booted report; afterwards the fresh toolchain has the targets `setup` installed. The Debian
/// packages and fixtures are the machine's (the package step's decisions are unit-tested in
/// `setup.rs`; the first run of `.ci/run` on a new machine installs them for real).
fn fresh_rustup_demo(ctx: &Ctx) -> Result<()> {
    ctx.fixtures()?;
    need_tool("rustup", "rustup")?;
    need_tool("git", "git")?;
    let tc = crate::setup::read_toolchain_file()?;
    let tmp = tempfile::tempdir()?;
    let rustup_home = tmp.path().join("rustup");
    let cargo_home = tmp.path().join("cargo");
    let clone = tmp.path().join("clone");
    // The child sees none of this cargo's or rustup's variables (CARGO would point it at our
    // toolchain's cargo, RUSTUP_TOOLCHAIN would override the toolchain file).
    let fresh = |program: &str| {
        let mut c = Command::new(program);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("CARGO") || k.starts_with("RUSTUP") || k.starts_with("RUSTC") {
                c.env_remove(k.as_ref());
            }
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![cargo_home.join("bin")];
        dirs.extend(std::env::split_paths(&path));
        // No automatic installs by rustup (this machine's setting, and rustup ≥ 1.28's for an
        // installed toolchain): the demo has to install what it needs itself.
        c.env("RUSTUP_HOME", &rustup_home)
            .env("RUSTUP_AUTO_INSTALL", "0")
            .env("CARGO_HOME", &cargo_home)
            .env("PATH", std::env::join_paths(dirs).unwrap_or(path))
            .env("ZBOOT_CACHE", crate::fixtures::cache_dir());
        c
    };
    // rustup-init is the rustup binary under that name: the toolchain as a user installs it.
    let rustup = which("rustup").context("rustup not on PATH")?;
    let init = tmp.path().join("rustup-init");
    std::fs::copy(&rustup, &init)
        .with_context(|| format!("copying {} to {}", rustup.display(), init.display()))?;
    run_ok(fresh(init.to_str().context("temporary path")?).args([
        "-y",
        "--no-modify-path",
        "--profile",
        "minimal",
        "--default-toolchain",
        &tc.channel,
    ]))?;
    let targets = || -> Result<String> {
        run_ok(fresh("rustup").args(["target", "list", "--installed", "--toolchain", &tc.channel]))
    };
    let before = targets()?;
    ensure!(
        !before.contains("x86_64-unknown-uefi"),
        "the fresh toolchain already has the UEFI target: {before}"
    );
    run_ok(
        Command::new("git")
            .args(["clone", "--quiet"])
            .arg(crate::workspace_root())
            .arg(&clone),
    )?;
    let t = std::time::Instant::now();
    let out = fresh("cargo")
        .args(["xtask", "demo"])
        .current_dir(&clone)
        .stdin(Stdio::null())
        .output()
        .context("running cargo xtask demo")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = qemu::target_dir().join("boot-logs/fresh-rustup-demo.txt");
    std::fs::create_dir_all(log.parent().unwrap())?;
    std::fs::write(&log, format!("{stdout}\n--- stderr ---\n{stderr}"))?;
    ensure!(
        out.status.success() && stdout.contains("demo: OK"),
        "cargo xtask demo on a fresh rustup home: {} (output {})",
        out.status,
        log.display()
    );
    ensure!(
        stderr.contains("setup: installing Rust targets"),
        "the demo did not install the targets itself (output {})",
        log.display()
    );
    let after = targets()?;
    for want in &tc.targets {
        ensure!(
            after.contains(want.as_str()),
            "{want} not installed: {after}"
        );
    }
    println!(
        "    fresh rustup home + clone: cargo xtask demo booted in {:.0} s (log {})",
        t.elapsed().as_secs_f64(),
        log.display()
    );
    Ok(())
}

/// Every file under `dir`, sorted.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn tests() -> Vec<BootTest> {
    vec![
        BootTest::new("fresh-rustup-demo", fresh_rustup_demo),
        BootTest::new("install-destdir", install_destdir),
        BootTest::new("kernel-install-bls-ovmf2025-strictnx", kernel_install_bls),
    ]
}

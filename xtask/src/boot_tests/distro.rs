//! The distribution's install flow: `cargo xtask install` into a staging root, and the
//! kernel-install plugin driven by Debian's own `kernel-install` into a scratch `$BOOT_ROOT` that
//! then boots through systemd-boot: Debian 12's (systemd 252, `layout=bls`) and Debian 13's
//! (systemd 257, `layout=uki`, with systemd's own ukify plugins).

use super::*;
use crate::install::{self, LAYOUT, PLUGIN};
use crate::setup::which;
use std::path::{Path, PathBuf};
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
    say!(
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
/// point, as an ESP is, so 90-loaderentry writes ESP-relative paths), `kernel-install add` (the
/// command is the script's arguments), a copy of the result to `$SNAP`, `kernel-install remove`,
/// and a listing of what is left.
const KERNEL_INSTALL_SCRIPT: &str = r#"
set -eu
mount -t tmpfs zboot-esp "$BOOT_ROOT"
"$@" --verbose add "$KVER" "$KIMAGE" "$KINITRD"
cp -r "$BOOT_ROOT/." "$SNAP/"
"$@" --verbose remove "$KVER"
(cd "$BOOT_ROOT" && find . -type f) > "$LEFT"
"#;

/// The machine ID the kernel-install rows install for (entries and UKIs are named after it).
const MACHINE_ID: &str = "0123456789abcdef0123456789abcdef";

/// One kernel-install flow: the `layout=` of install.conf, the kernel-install command, the
/// plugins it runs (ours is added last) and more environment.
struct KernelInstall {
    layout: &'static str,
    command: Vec<std::ffi::OsString>,
    plugins: Vec<PathBuf>,
    env: Vec<(&'static str, std::ffi::OsString)>,
}

/// What a [`KernelInstall`] left: its scratch directory and a copy of the ESP after `add`.
struct Installed {
    tmp: tempfile::TempDir,
    esp: PathBuf,
}

/// Runs `ki` with our plugin (installed by `cargo xtask install` into a staging root), a scratch
/// BOOT_ROOT and configuration root (the layout, /etc/kernel/cmdline, zboot-pack.conf choosing
/// the codec), Debian's bzImage and the test initramfs; checks that our plugin ran and that
/// `kernel-install remove` left no file behind.
fn kernel_install(ctx: &Ctx, ki: KernelInstall) -> Result<Installed> {
    need_tool("unshare", "util-linux")?;
    let fx = ctx.fixtures()?;
    let tmp = tempfile::tempdir()?;
    let dest = tmp.path().join("dest");
    install::install(&ctx.packer()?, Path::new("/usr"), Some(&dest))?;
    let conf = tmp.path().join("etc-kernel");
    let boot_root = tmp.path().join("boot");
    let esp = super::scratch().join(format!("kernel-install-{}-esp", ki.layout));
    let _ = std::fs::remove_dir_all(&esp);
    for d in [&conf, &boot_root, &esp] {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(conf.join("install.conf"), format!("layout={}\n", ki.layout))?;
    std::fs::write(conf.join("cmdline"), format!("{}\n", baseline_options()))?;
    std::fs::write(
        conf.join("zboot-pack.conf"),
        format!(
            "ZBOOT_PACK={}\nZBOOT_CODEC=zstd\n",
            dest.join("usr").join(LAYOUT.bin).display()
        ),
    )?;
    let left = tmp.path().join("left.txt");
    let mut plugins: Vec<String> = ki.plugins.iter().map(|p| p.display().to_string()).collect();
    plugins.push(dest.join("usr").join(LAYOUT.plugin).display().to_string());
    let root = crate::setup::is_root();
    let mut cmd = Command::new("unshare");
    cmd.args(if root { &["-m"][..] } else { &["-r", "-m"][..] })
        .args(["sh", "-c", KERNEL_INSTALL_SCRIPT, "sh"])
        .args(&ki.command)
        .env("BOOT_ROOT", &boot_root)
        .env("KERNEL_INSTALL_CONF_ROOT", &conf)
        .env("KERNEL_INSTALL_PLUGINS", plugins.join(" "))
        .env("MACHINE_ID", MACHINE_ID)
        .env("KVER", &fx.kernel.release)
        .env("KIMAGE", &fx.kernel.vmlinuz)
        .env("KINITRD", &fx.initramfs)
        .env("SNAP", &esp)
        .env("LEFT", &left);
    for (k, v) in &ki.env {
        cmd.env(k, v);
    }
    let log = run_ok(&mut cmd)?;
    // The plugin's own last line under --verbose (kernel-install 257 logs plugin names to
    // stderr, 252 to stdout: this line is the plugin's, on stdout in both).
    ensure!(
        log.contains("is now a zboot-pack"),
        "{PLUGIN} did not replace the installed kernel:\n{log}"
    );
    let leftover = std::fs::read_to_string(&left)?;
    ensure!(
        leftover.trim().is_empty(),
        "kernel-install remove left files behind:\n{leftover}"
    );
    Ok(Installed { tmp, esp })
}

/// Boots the ESP kernel-install wrote, as systemd-boot finds its entries, to the reporting init;
/// the options of /etc/kernel/cmdline and the machine ID arrive.
fn boot_installed(ctx: &Ctx, row: &On, installed: &Installed) -> Result<()> {
    let fx = ctx.fixtures()?;
    let mut spec = BootSpec::new(
        row.name(),
        row.fw,
        BootMode::Bare {
            image: fx.systemd_boot.clone(),
        },
    );
    let loader_conf = installed.tmp.path().join("loader.conf");
    std::fs::write(&loader_conf, "timeout 0\nconsole-mode keep\neditor no\n")?;
    spec.extra_files
        .push(("loader/loader.conf".into(), loader_conf));
    for f in walk(&installed.esp)? {
        let rel = f
            .strip_prefix(&installed.esp)?
            .to_string_lossy()
            .into_owned();
        spec.extra_files.push((rel, f));
    }
    let out = ctx.boot(&spec)?;
    let r = check_linux_report(ctx, &out)?;
    ensure!(
        r.cmdline_has(&format!("systemd.machine_id={MACHINE_ID}")),
        "the entry's options did not arrive: {:?}",
        r.cmdline
    );
    Ok(())
}

/// Checks that `image` is a zboot-pack image whose codec is zstd (zboot-pack.conf's choice).
fn check_zboot_image(ctx: &Ctx, image: &[u8], what: &Path) -> Result<()> {
    ensure!(
        image.get(4..8) == Some(&b"zimg"[..]),
        "{} is not a zboot-pack image (no zimg header)",
        what.display()
    );
    let copy = tempfile::NamedTempFile::new()?;
    std::fs::write(copy.path(), image)?;
    let inspect = run_ok(Command::new(ctx.packer()?).arg("inspect").arg(copy.path()))?;
    ensure!(
        inspect.contains("zstd"),
        "ZBOOT_CODEC=zstd not honoured in {}:\n{inspect}",
        what.display()
    );
    Ok(())
}

/// Debian's kernel-install (systemd 252) with our plugin after its 90-loaderentry.install
/// (`layout=bls`): the entry's `linux` is a zboot-pack image of Debian's bzImage, the ESP boots
/// through systemd-boot to the reporting init with the entry's options and initrd, and
/// `kernel-install remove` leaves no file behind.
fn kernel_install_bls(ctx: &Ctx, row: &On) -> Result<()> {
    need_tool("kernel-install", "systemd")?;
    let fx = ctx.fixtures()?;
    let loaderentry = PathBuf::from("/usr/lib/kernel/install.d/90-loaderentry.install");
    ensure!(loaderentry.is_file(), "{} not found", loaderentry.display());
    let installed = kernel_install(
        ctx,
        KernelInstall {
            layout: "bls",
            command: vec!["kernel-install".into()],
            plugins: vec![loaderentry],
            env: Vec::new(),
        },
    )?;
    let entry_dir = installed.esp.join(MACHINE_ID).join(&fx.kernel.release);
    let linux = entry_dir.join("linux");
    let image = std::fs::read(&linux).with_context(|| format!("{} missing", linux.display()))?;
    check_zboot_image(ctx, &image, &linux)?;
    let entry_file = installed
        .esp
        .join("loader/entries")
        .join(format!("{MACHINE_ID}-{}.conf", fx.kernel.release));
    let entry = std::fs::read_to_string(&entry_file)
        .with_context(|| format!("{} missing", entry_file.display()))?;
    let rel = format!("/{MACHINE_ID}/{}/linux", fx.kernel.release);
    ensure!(
        entry
            .lines()
            .any(|l| l.split_whitespace().eq(["linux", rel.as_str()])),
        "entry does not boot {rel}:\n{entry}"
    );
    say!(
        "    entry {} -> zboot-pack image {} bytes (bzImage {} bytes); remove left nothing",
        entry_file.file_name().unwrap_or_default().to_string_lossy(),
        image.len(),
        std::fs::metadata(&fx.kernel.vmlinuz)?.len()
    );
    boot_installed(ctx, row, &installed)
}

/// Debian 13's kernel-install 257 (`layout=uki`) with its own 60-ukify.install and
/// 90-uki-copy.install, ukify and systemd-stub 257, and our plugin: the one file in
/// `EFI/Linux/` is `<machine-id>-<release>.efi`, a UKI whose `.linux` is a zboot-pack image of
/// Debian's bzImage, with `.uname` the release, `.osrel` and `.cmdline` (/etc/kernel/cmdline and
/// the machine ID) as ukify writes them; systemd-boot lists it with no entry file (Type #2) and
/// boots it to the reporting init; `kernel-install remove` leaves no file behind.
fn kernel_install_uki(ctx: &Ctx, row: &On) -> Result<()> {
    let fx = ctx.fixtures()?;
    let ki = fx.kernel_install_257()?;
    let uki = &fx.uki257;
    let plugin = |name: &str| ki.path(&format!("usr/lib/kernel/install.d/{name}"));
    let mut command = vec![
        ki.command("usr/bin/kernel-install")
            .get_program()
            .to_owned(),
    ];
    command.extend(
        ki.command("usr/bin/kernel-install")
            .get_args()
            .map(|a| a.to_owned()),
    );
    let installed = kernel_install(
        ctx,
        KernelInstall {
            layout: "uki",
            command,
            plugins: vec![plugin("60-ukify.install"), plugin("90-uki-copy.install")],
            env: vec![
                // ukify and 60-ukify.install are Python run as `python3`: Debian's, which has
                // python3-pefile (not a python of the user's that PATH may name first).
                ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".into()),
                ("KERNEL_INSTALL_UKIFY", uki.path("usr/bin/ukify").into()),
                (
                    "KERNEL_INSTALL_BOOT_STUB",
                    uki.path("usr/lib/systemd/boot/efi/linuxx64.efi.stub")
                        .into(),
                ),
            ],
        },
    )?;
    let dir = installed.esp.join("EFI/Linux");
    let ukis = walk(&dir)?;
    let want = dir.join(format!("{MACHINE_ID}-{}.efi", fx.kernel.release));
    ensure!(
        ukis == [want.clone()],
        "EFI/Linux holds {ukis:?}, want only {}",
        want.display()
    );
    let file = std::fs::read(&want)?;
    let pe = zboot_format::pe::SectionTable::parse(&file)
        .map_err(|e| anyhow::anyhow!("{}: not a PE image: {e:?}", want.display()))?;
    let section = |name: &str| -> Result<&[u8]> {
        pe.find(name)
            .map(|s| pe.contents(&s))
            .with_context(|| format!("{} has no {name} section", want.display()))
    };
    check_zboot_image(ctx, section(".linux")?, &want)?;
    let text = |name: &str| -> Result<String> {
        Ok(String::from_utf8_lossy(section(name)?)
            .trim_end_matches('\0')
            .trim()
            .to_string())
    };
    ensure!(
        text(".uname")? == fx.kernel.release,
        ".uname is {:?}, want {}",
        text(".uname")?,
        fx.kernel.release
    );
    ensure!(
        text(".osrel")?.contains("ID="),
        ".osrel holds no os-release"
    );
    let cmdline = text(".cmdline")?;
    ensure!(
        cmdline.contains(baseline_options().trim())
            && cmdline.contains(&format!("systemd.machine_id={MACHINE_ID}")),
        ".cmdline is {cmdline:?}"
    );
    say!(
        "    {} -> UKI {} bytes, .linux a zboot-pack image of {} bytes; remove left nothing",
        want.file_name().unwrap_or_default().to_string_lossy(),
        file.len(),
        section(".linux")?.len()
    );
    boot_installed(ctx, row, &installed)
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
    say!(
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
        // It builds the whole workspace on both cores, then boots through its own process.
        BootTest::new("fresh-rustup-demo", fresh_rustup_demo).alone(),
        BootTest::new("install-destdir", install_destdir),
        on(
            "kernel-install-bls",
            Firmware::Ovmf2025StrictNx,
            kernel_install_bls,
        ),
        on(
            "kernel-install-uki",
            Firmware::Ovmf2025StrictNx,
            kernel_install_uki,
        ),
    ]
}

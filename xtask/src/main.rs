//! `cargo xtask <command>`: fixtures, the QEMU boot harness, the demo and the test suite.
//!
//! * `setup` — install what a fresh machine lacks: rustup targets/components, Debian packages,
//!   cargo-fuzz (see `setup.rs`); `demo`, `test` and `.ci/run` run it first.
//! * `fixtures` — fetch and cache the Debian kernel, systemd-boot, OVMF 2022.11 and 2025.02, and
//!   build the busybox initramfs (see `fixtures.rs`).
//! * `boot` — boot one image under QEMU/OVMF and print the report (see `qemu.rs`).
//! * `demo` — build the packer, pack the Debian kernel, boot it, show the report.
//! * `test` — everything CI runs (fmt, clippy, unit tests, boot tests).
//! * `bench` — performance figures as ratios, not a test (see `bench.rs`, docs/performance.md).
//! * `probe` — the probe kernel (see `probe.rs`).
//! * `fuzz` — the cargo-fuzz targets of `fuzz/`, bounded time each (see `fuzz.rs`).
//! * `soak` — the placement soak (see `boot_tests/soak.rs`).
//! * `kernel-build` — build a small kernel from Debian's source, pack it with `make/zboot.mk`,
//!   boot it (see `kernel_build.rs`).
//! * `docs-check` — run the runnable blocks of the docs (see `docs_check.rs`).
//! * `install` — the packer, man pages, completions, make fragment and kernel-install plugin in
//!   FHS places (see `install.rs`).
//! * `man` — write the packer's man pages to `target/man/`.
//! * `dist` — the offline source release: the tree, every crate vendored, a config that uses
//!   them (see `dist.rs`).

// The harness modules are a library-style API for later boot tests: not every item is used yet.

#[macro_use]
mod say;

mod bench;
mod boot_tests;
mod demo;
mod dist;
mod docs_check;
mod fixtures;
mod fuzz;
mod initramfs;
mod install;
mod kernel_build;
mod probe;
mod qemu;
mod report;
mod setup;
mod stage;
mod swtpm;
mod test_cmd;
mod tools;
mod tpm_log;
mod typist;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "zboot-pack developer tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what this machine lacks for the demo and the tests: the rustup targets and
    /// components of rust-toolchain.toml, the Debian packages, cargo-fuzz. `demo` and `test` run
    /// it first.
    Setup(setup::SetupArgs),
    /// Fetch and cache the test fixtures (kernel, systemd-boot, OVMF, initramfs).
    Fixtures {
        /// Re-resolve package versions instead of keeping what is cached.
        #[arg(long)]
        refresh: bool,
    },
    /// Boot one image under QEMU (TCG) + OVMF and print the serial report.
    Boot(BootArgs),
    /// Build the packer, pack the Debian kernel and boot it via systemd-boot on OVMF 2025.02
    /// strict NX with the test initramfs.
    Demo {
        /// Compression codec passed to `zboot-pack --codec`.
        #[arg(long)]
        codec: Option<String>,
        /// Firmware to boot on.
        #[arg(long, value_enum, default_value_t = qemu::Firmware::Ovmf2025StrictNx)]
        firmware: qemu::Firmware,
        /// Also boot Debian's own bzImage the same way and compare MemTotal and boot time.
        #[arg(long)]
        compare: bool,
    },
    /// Install the packer, its man pages, completions, make fragment and kernel-install plugin
    /// in FHS places under --destdir/--prefix.
    Install(install::InstallArgs),
    /// Run everything CI runs: fmt, clippy, unit tests and the boot tests.
    Test(test_cmd::TestArgs),
    /// Performance figures (issue 7), each a ratio against a reference measured in the same run:
    /// table on stdout, JSON in target/bench/results.json. Not part of `test`.
    Bench(bench::BenchArgs),
    /// Run the cargo-fuzz targets of fuzz/ for a bounded time each; report executions and
    /// findings.
    Fuzz(fuzz::FuzzArgs),
    /// The placement soak: the default image booted many times with KASLR on, both pipelines,
    /// memory and CPU counts cycled; prints the slots the kernel landed in.
    Soak(boot_tests::soak::SoakArgs),
    /// Build/run the probe kernel.
    Probe {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build a minimal kernel from Debian's linux-source-6.1 (cached), pack it with
    /// make/zboot.mk, check the fragment's rebuild rules and boot the image.
    KernelBuild,
    /// Run the runnable shell and workflow blocks of README.md and docs/*.md.
    DocsCheck,
    /// Write the zboot-pack man pages (clap_mangen) to target/man/.
    Man,
    /// Write the offline source release: `target/dist/zboot-pack-<version>.tar.gz` with every
    /// crate vendored and a .cargo/config.toml that builds from them with no network.
    Dist(dist::DistArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    SystemdBoot,
    Bare,
    Shell,
}

#[derive(clap::Args)]
struct BootArgs {
    #[arg(long, value_enum, default_value_t = ModeArg::SystemdBoot)]
    mode: ModeArg,
    #[arg(long, value_enum, default_value_t = qemu::Firmware::Ovmf2022)]
    firmware: qemu::Firmware,
    /// The kernel / EFI image under test (default: the Debian bzImage fixture).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initrd for systemd-boot mode (default: the test initramfs).
    #[arg(long, conflicts_with = "no_initrd")]
    initrd: Option<PathBuf>,
    /// No initrd at all.
    #[arg(long)]
    no_initrd: bool,
    /// Kernel options (systemd-boot mode) or shell arguments (shell mode).
    #[arg(long, default_value = "console=ttyS0")]
    append: String,
    /// Sign the EFI binaries with the snakeoil key (default: when the firmware enforces SB).
    #[arg(long)]
    sign: bool,
    /// Attach a software TPM 2.0 (swtpm; the init then reports PCR 9 and the event log).
    #[arg(long)]
    tpm: bool,
    /// Extra ESP files: ESP_PATH=FILE.
    #[arg(long = "esp-file", value_name = "ESP_PATH=FILE")]
    esp_files: Vec<String>,
    /// Guest memory in MiB (QEMU `-m`; default the harness's 2048).
    #[arg(long, value_name = "MB")]
    memory: Option<u32>,
    /// Timeout in seconds.
    #[arg(long)]
    timeout: Option<u64>,
    /// Print the whole serial log.
    #[arg(long)]
    log: bool,
    /// Count guest instructions (`-icount shift=3,sleep=off`) and print the guest time before
    /// the kernel's clock started (the init's `stage_tsc` - `stage_mono_ns`).
    #[arg(long)]
    icount: bool,
}

/// The workspace root (parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent().map(PathBuf::from).unwrap_or(dir)
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = dispatch(cli.cmd) {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Fixtures { refresh } => {
            fixtures::ensure(&fixtures::FetchOptions {
                refresh,
                verbose: true,
            })?;
            Ok(())
        }
        Cmd::Setup(a) => setup::cli(&a),
        Cmd::Install(a) => install::cli(&a),
        Cmd::Boot(a) => boot_cmd(a),
        Cmd::Demo {
            codec,
            firmware,
            compare,
        } => {
            setup::ensure(setup::Scope::Demo)?;
            demo::run(codec.as_deref(), firmware, compare)
        }
        Cmd::Test(a) => {
            if !a.list {
                setup::ensure(setup::Scope::Test)?;
                fixtures::ensure(&fixtures::FetchOptions::default())?;
            }
            test_cmd::run(&a)
        }
        Cmd::Fuzz(a) => fuzz::run(&a),
        Cmd::Soak(a) => boot_tests::soak::run(&a),
        Cmd::Bench(a) => bench::run(&a),
        Cmd::KernelBuild => kernel_build::test(&boot_tests::Ctx::new()),
        Cmd::DocsCheck => docs_check::run(&boot_tests::Ctx::new()),
        Cmd::Man => man(),
        Cmd::Dist(a) => dist::cli(&a),
        Cmd::Probe { args } => {
            if let Err(e) = probe::cli(&args) {
                bail!("probe: {e:#}");
            }
            Ok(())
        }
    }
}

/// `cargo xtask man`: builds the release packer and has it write its pages to `target/man/`.
fn man() -> Result<()> {
    let packer = demo::build_packer()?;
    let dir = workspace_root().join("target/man");
    let st = std::process::Command::new(&packer)
        .args(["man", "--out-dir"])
        .arg(&dir)
        .status()?;
    anyhow::ensure!(st.success(), "{} man failed", packer.display());
    let page = dir.join("zboot-pack.1");
    anyhow::ensure!(page.is_file(), "{} not written", page.display());
    println!("{}", page.display());
    Ok(())
}

fn boot_cmd(a: BootArgs) -> Result<()> {
    let fx = fixtures::Fixtures::load()?;
    let kernel = a.kernel.unwrap_or_else(|| fx.kernel.vmlinuz.clone());
    let mode = match a.mode {
        ModeArg::SystemdBoot => qemu::BootMode::SystemdBoot {
            linux: kernel,
            initrd: if a.no_initrd {
                None
            } else {
                Some(a.initrd.unwrap_or_else(|| fx.initramfs.clone()))
            },
            options: a.append,
        },
        ModeArg::Bare => qemu::BootMode::Bare { image: kernel },
        ModeArg::Shell => qemu::BootMode::Shell {
            image: kernel,
            args: a.append,
        },
    };
    let mut spec = qemu::BootSpec::new("manual", a.firmware, mode);
    spec.sign |= a.sign;
    spec.tpm = a.tpm;
    if a.icount {
        spec.qemu_args.extend(stage::qemu_args());
    }
    if let Some(t) = a.timeout {
        spec.timeout = Duration::from_secs(t);
    }
    if let Some(mb) = a.memory {
        spec.memory_mb = mb;
    }
    for f in &a.esp_files {
        let Some((esp, file)) = f.split_once('=') else {
            bail!("--esp-file wants ESP_PATH=FILE, got {f}");
        };
        spec.extra_files
            .push((esp.to_string(), PathBuf::from(file)));
    }
    let out = qemu::run(&fx, &spec)?;
    if a.log {
        println!("{}", out.log);
    }
    print_outcome(&out);
    if a.icount
        && let Some(r) = &out.report
    {
        let ns = stage::before_clock_ns(r)?;
        println!(
            "before the kernel's clock: {:.3} ms of guest time = {:.1} M instructions \
             (firmware and loader included: `cargo xtask bench --stage-only` subtracts them)",
            ns as f64 / 1e6,
            ns as f64 / stage::ns_per_instruction() / 1e6
        );
    }
    match &out.report {
        Some(r) if r.end => Ok(()),
        _ if out.probe.as_ref().is_some_and(|p| p.passed()) => Ok(()),
        _ => bail!("no complete report; serial log: {}", out.log_path.display()),
    }
}

/// Prints an outcome for humans: status, timings, and the report lines.
pub fn print_outcome(out: &qemu::BootOutcome) {
    println!(
        "boot {}: exit {:?}{}{}, {:.1} s{}",
        out.name,
        out.exit_code,
        if out.timed_out { ", TIMED OUT" } else { "" },
        out.stopped_on
            .as_ref()
            .map(|s| format!(", stopped on {s:?}"))
            .unwrap_or_default(),
        out.duration.as_secs_f64(),
        out.time_to_report
            .map(|t| format!(" (report after {:.1} s)", t.as_secs_f64()))
            .unwrap_or_default(),
    );
    println!("serial log: {}", out.log_path.display());
    if let Some(r) = &out.report {
        for (k, v) in &r.raw {
            println!("  {k} = {v}");
        }
        let problems = r.problems();
        if !problems.is_empty() {
            println!("  problems: {}", problems.join("; "));
        }
    }
    if let Some(p) = &out.probe {
        for (k, v) in &p.values {
            println!("  probe {k} = {v}");
        }
    }
    if out.report.is_none() && out.probe.is_none() {
        println!("no report; last serial lines:\n{}", out.log_tail(30));
    }
}

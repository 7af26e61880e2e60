//! `cargo xtask demo`: build the packer, pack the Debian kernel, boot it via systemd-boot on
//! OVMF 2025.02 strict NX with the test initramfs, and show the report.
//! Also the packer helpers the boot tests use ([`build_packer`], [`pack`]).

use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::fixtures;
use crate::qemu::{self, BootSpec, Firmware};

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `cargo build --release -p zboot-pack`; returns the binary.
pub fn build_packer() -> Result<PathBuf> {
    eprintln!("demo: cargo build --release -p zboot-pack");
    let st = cargo()
        .args(["build", "--release", "-p", "zboot-pack"])
        .current_dir(crate::workspace_root())
        .stdin(Stdio::null())
        .status()
        .context("running cargo build")?;
    ensure!(st.success(), "cargo build --release -p zboot-pack failed");
    let bin = qemu::target_dir().join("release/zboot-pack");
    ensure!(bin.is_file(), "{} was not built", bin.display());
    Ok(bin)
}

/// Runs `zboot-pack <input> -o <output> <args...>`.
pub fn pack(packer: &Path, input: &Path, output: &Path, args: &[&str]) -> Result<()> {
    std::fs::create_dir_all(output.parent().unwrap())?;
    let mut all = vec![input.as_os_str(), "-o".as_ref(), output.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    run_packer(packer, &all)?;
    ensure!(output.is_file(), "zboot-pack wrote no {}", output.display());
    Ok(())
}

/// Runs `zboot-pack <args...>` and returns its stdout; a failure names the command, its exit
/// status and its stderr.
pub fn run_packer(packer: &Path, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>> {
    let out = Command::new(packer)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", packer.display()))?;
    if !out.status.success() {
        let line: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        bail!(
            "zboot-pack {}: {}\n{}",
            line.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

pub fn run(codec: Option<&str>, firmware: Firmware, compare: bool) -> Result<()> {
    let fx = fixtures::ensure(&fixtures::FetchOptions::default())?;
    let packer = build_packer()?;
    let output = qemu::target_dir().join("demo/bzImage.efi");
    let mut args = Vec::new();
    if let Some(c) = codec {
        args.extend(["--codec", c]);
    }
    pack(&packer, &fx.kernel.vmlinuz, &output, &args)?;
    let in_len = std::fs::metadata(&fx.kernel.vmlinuz)?.len();
    let out_len = std::fs::metadata(&output)?.len();
    println!(
        "packed {} ({} bytes) -> {} ({} bytes)",
        fx.kernel.vmlinuz.display(),
        in_len,
        output.display(),
        out_len
    );
    // The packer's own strict-PE check, when it has one.
    if let Ok(o) = Command::new(&packer)
        .arg("verify")
        .arg(&output)
        .stdin(Stdio::null())
        .output()
    {
        println!(
            "zboot-pack verify: {}\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    let spec = BootSpec::systemd_boot(
        format!("demo-{firmware}"),
        firmware,
        &output,
        Some(fx.initramfs.clone()),
        "console=ttyS0 zboot.demo=1",
    );
    let out = qemu::run(&fx, &spec)?;
    crate::print_outcome(&out);
    let report = out.complete_report()?;
    let problems = report.problems();
    if !problems.is_empty() {
        bail!(
            "the packed kernel booted with problems: {}",
            problems.join("; ")
        );
    }
    if report.release.as_deref() != Some(fx.kernel.release.as_str()) {
        bail!(
            "release mismatch: booted {:?}, packed {}",
            report.release,
            fx.kernel.release
        );
    }
    println!(
        "demo: OK — {} booted through zboot-pack on {firmware}",
        fx.kernel.release
    );
    if compare {
        let ctx = crate::boot_tests::Ctx::new();
        let base = ctx.baseline(firmware)?;
        let b = base.complete_report()?;
        let (got, want) = (report.memtotal_kb.unwrap_or(0), b.memtotal_kb.unwrap_or(0));
        println!(
            "compare with Debian's bzImage on {firmware}: MemTotal {got} kB vs {want} kB ({:+.3}%), \
             report after {:.1} s vs {:.1} s",
            (got as f64 - want as f64) / (want.max(1) as f64) * 100.0,
            out.time_to_report.unwrap_or_default().as_secs_f64(),
            base.time_to_report.unwrap_or_default().as_secs_f64(),
        );
    }
    Ok(())
}

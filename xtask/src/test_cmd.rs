//! `cargo xtask test`: what CI runs. Steps (`fmt`, `clippy`, `unit-tests`, `rustdoc`, then `docs-check`)
//! then the boot tests of [`crate::boot_tests::all`], then `kernel-build`. The last line is always
//! `N passed, N failed`.
//!
//! Under `CI=true` a missing prerequisite (QEMU, firmware, fixture) is a failure; elsewhere the
//! test is skipped with a message.

use anyhow::Result;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::boot_tests::{self, Ctx};
use crate::fixtures::Missing;

#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Only the boot tests (no fmt/clippy/unit tests).
    #[arg(long)]
    pub boot_only: bool,
    /// No boot tests (fmt/clippy/unit tests only).
    #[arg(long, conflicts_with = "boot_only")]
    pub no_boot: bool,
    /// Run only the steps and boot tests whose name contains this string (repeatable).
    #[arg(long)]
    pub filter: Vec<String>,
    /// List the steps and boot tests, run nothing.
    #[arg(long)]
    pub list: bool,
}

pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

const STEPS: &[(&str, &[&str])] = &[
    ("fmt", &["fmt", "--all", "--check"]),
    (
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ),
    // The freestanding programs, linted for the targets they actually run on.
    (
        "clippy-stub-uefi",
        &[
            "clippy",
            "-p",
            "zboot-stub",
            "--target",
            zboot_format::stub_build::TARGET,
            "--",
            "-D",
            "warnings",
        ],
    ),
    // The architecture seam: the stub's library builds (and lints clean) for an architecture
    // that has no `arch/` module yet, so a new one is added without touching the pipeline's
    // inputs.
    (
        "clippy-stub-lib-aarch64",
        &[
            "clippy",
            "-p",
            "zboot-stub",
            "--lib",
            "--target",
            "aarch64-unknown-uefi",
            "--",
            "-D",
            "warnings",
        ],
    ),
    (
        "clippy-probe-none",
        &[
            "clippy",
            "-p",
            "probe-kernel",
            "--target",
            "x86_64-unknown-none",
            "--",
            "-D",
            "warnings",
        ],
    ),
    ("unit-tests", &["test", "--workspace"]),
    // Broken intra-doc links and malformed doc comments fail (private items too: the stub's
    // EFI glue and the probe are binaries).
    (
        "rustdoc",
        &[
            "--config",
            "build.rustdocflags=[\"-D\",\"warnings\"]",
            "doc",
            "--workspace",
            "--no-deps",
            "--document-private-items",
        ],
    ),
    (
        "rustdoc-stub-uefi",
        &[
            "--config",
            "build.rustdocflags=[\"-D\",\"warnings\"]",
            "doc",
            "-p",
            "zboot-stub",
            "--target",
            zboot_format::stub_build::TARGET,
            "--no-deps",
            "--document-private-items",
        ],
    ),
    // libFuzzer on every fuzz target, 25 s each (see xtask/src/fuzz.rs).
    ("fuzz", &["xtask", "fuzz", "--seconds", "25"]),
];

/// A named step or test run in-process.
type InProcess = (&'static str, fn(&Ctx) -> Result<()>);

/// Steps run in-process after the cargo steps (`--boot-only` skips them): they need the fixtures
/// and the release packer but boot nothing.
const XTASK_STEPS: &[InProcess] = &[
    ("docs-check", crate::docs_check::run),
    ("reproducible", crate::dist::test),
];

/// Run after the boot tests (`--no-boot` skips them): they boot QEMU. `kernel-build` reuses the
/// kernel tree cached in `<cache>/kernel-build` (a first build takes tens of minutes).
const LATE_TESTS: &[InProcess] = &[("kernel-build", crate::kernel_build::test)];

/// Runs one in-process step or test: a missing prerequisite is a skip outside CI.
fn run_in_process(name: &str, f: fn(&Ctx) -> Result<()>, ctx: &Ctx, ci: bool) -> (Verdict, f64) {
    let start = Instant::now();
    let v = match f(ctx) {
        Ok(()) => Verdict::Pass,
        Err(e) if e.downcast_ref::<Missing>().is_some() && !ci => Verdict::Skip(format!("{e:#}")),
        Err(e) => Verdict::Fail(format!("{e:#}")),
    };
    let secs = start.elapsed().as_secs_f64();
    report(name, &v, secs);
    (v, secs)
}

enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

pub fn run(a: &TestArgs) -> Result<()> {
    let ci = is_ci();
    let selected = |name: &str| a.filter.is_empty() || a.filter.iter().any(|f| name.contains(f));
    if a.list {
        for (name, args) in STEPS {
            println!("step {name}: cargo {}", args.join(" "));
        }
        for (name, _) in XTASK_STEPS {
            println!("step {name}");
        }
        for t in boot_tests::all() {
            match &t.about {
                Some(about) => println!("boot {}: {about}", t.name),
                None => println!("boot {}", t.name),
            }
        }
        for (name, _) in LATE_TESTS {
            println!("boot {name}");
        }
        return Ok(());
    }
    let mut results: Vec<(String, Verdict, f64)> = Vec::new();
    if !a.boot_only {
        for (name, args) in STEPS.iter().filter(|(n, _)| selected(n)) {
            println!("==> step {name}: cargo {}", args.join(" "));
            let t = Instant::now();
            let st = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args(*args)
                .current_dir(crate::workspace_root())
                .stdin(Stdio::null())
                .status();
            let v = match st {
                Ok(s) if s.success() => Verdict::Pass,
                Ok(s) => Verdict::Fail(format!("cargo {} {s}", args.join(" "))),
                Err(e) => Verdict::Fail(format!("cannot run cargo: {e}")),
            };
            report(name, &v, t.elapsed().as_secs_f64());
            results.push((name.to_string(), v, t.elapsed().as_secs_f64()));
        }
        let ctx = Ctx::new();
        for (name, f) in XTASK_STEPS.iter().filter(|(n, _)| selected(n)) {
            println!("==> step {name}");
            let (v, secs) = run_in_process(name, *f, &ctx, ci);
            results.push((name.to_string(), v, secs));
        }
    }
    if !a.no_boot {
        let ctx = Ctx::new();
        for t in boot_tests::all().filter(|t| selected(&t.name)) {
            println!("==> boot {}", t.name);
            let start = Instant::now();
            let v = match (t.run)(&ctx) {
                Ok(()) => Verdict::Pass,
                Err(e) if e.downcast_ref::<Missing>().is_some() && !ci => {
                    Verdict::Skip(format!("{e:#}"))
                }
                Err(e) => Verdict::Fail(format!("{e:#}")),
            };
            let secs = start.elapsed().as_secs_f64();
            report(&t.name, &v, secs);
            results.push((t.name.clone(), v, secs));
        }
        for (name, f) in LATE_TESTS.iter().filter(|(n, _)| selected(n)) {
            println!("==> boot {name}");
            let (v, secs) = run_in_process(name, *f, &ctx, ci);
            results.push((name.to_string(), v, secs));
        }
    }

    let passed = results
        .iter()
        .filter(|r| matches!(r.1, Verdict::Pass))
        .count();
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| matches!(r.1, Verdict::Fail(_)))
        .map(|r| r.0.as_str())
        .collect();
    let skipped = results
        .iter()
        .filter(|r| matches!(r.1, Verdict::Skip(_)))
        .count();
    println!();
    println!("summary:");
    for (name, v, secs) in &results {
        let tag = match v {
            Verdict::Pass => "PASS",
            Verdict::Fail(_) => "FAIL",
            Verdict::Skip(_) => "SKIP",
        };
        println!("  {tag} {name} ({secs:.1} s)");
    }
    if skipped > 0 {
        println!("{skipped} skipped (missing prerequisites; CI=true makes this a failure)");
    }
    println!("{passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        // Nothing may follow the summary line: exit without the usual error report.
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(1);
    }
    Ok(())
}

fn report(name: &str, v: &Verdict, secs: f64) {
    match v {
        Verdict::Pass => println!("<== PASS {name} ({secs:.1} s)"),
        Verdict::Fail(msg) => println!("<== FAIL {name} ({secs:.1} s): {msg}"),
        Verdict::Skip(msg) => println!("<== SKIP {name}: {msg}"),
    }
}

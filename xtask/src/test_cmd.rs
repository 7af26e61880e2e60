//! `cargo xtask test`: what CI runs. Steps (`fmt`, `clippy`, `unit-tests`, `rustdoc`, then `docs-check`)
//! then the boot tests of [`crate::boot_tests::all`], then `kernel-build`. The last line is always
//! `N passed, N failed`.
//!
//! Under `CI=true` a missing prerequisite (QEMU, firmware, fixture) is a failure; elsewhere the
//! test is skipped with a message.

use anyhow::Result;
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crate::boot_tests::{self, BootTest, Ctx};
use crate::fixtures::Missing;
use crate::qemu;

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
    (
        "clippy-hostile-handover-uefi",
        &[
            "clippy",
            "-p",
            "hostile-handover",
            "--target",
            "x86_64-unknown-uefi",
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

/// Run after the boot tests (`--no-boot` skips them): they boot QEMU. `soak` is the short
/// placement soak (three boots through each pipeline, see `cargo xtask soak`). `kernel-build` reuses the
/// kernel tree cached in `<cache>/kernel-build` (a first build takes tens of minutes).
const LATE_TESTS: &[InProcess] = &[
    ("soak", boot_tests::soak::ci),
    ("kernel-build", crate::kernel_build::test),
];

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

pub(crate) enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

impl Verdict {
    pub(crate) fn passed(&self) -> bool {
        matches!(self, Verdict::Pass)
    }
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
        let tests: Vec<BootTest> = boot_tests::all().filter(|t| selected(&t.name)).collect();
        results.extend(run_boot_tests(&tests, &ctx, ci, boot_jobs()));
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

/// How many boot tests run at once: `ZBOOT_BOOT_JOBS`, else [`qemu::SLOTS`] (one per core).
fn boot_jobs() -> usize {
    std::env::var("ZBOOT_BOOT_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(qemu::SLOTS)
}

/// Which boot test a worker takes next, and what is running.
struct Queue {
    next: usize,
    running: usize,
    alone_running: bool,
}

/// Runs `tests` on `jobs` workers, each taking the next test in order; a test marked
/// [`BootTest::alone`] starts only when nothing else runs, and nothing starts beside it. Each
/// test's lines are printed together when it ends; the results come back in the tests' order.
pub(crate) fn run_boot_tests(
    tests: &[BootTest],
    ctx: &Ctx,
    ci: bool,
    jobs: usize,
) -> Vec<(String, Verdict, f64)> {
    let queue = Mutex::new(Queue {
        next: 0,
        running: 0,
        alone_running: false,
    });
    let turn = Condvar::new();
    let done: Mutex<Vec<Option<(Verdict, f64)>>> = Mutex::new(tests.iter().map(|_| None).collect());
    crate::qemu::share_slots(jobs > 1);
    std::thread::scope(|s| {
        for worker in 0..jobs {
            let (queue, turn, done) = (&queue, &turn, &done);
            s.spawn(move || {
                boot_tests::set_worker(worker);
                while let Some(i) = take(queue, turn, tests) {
                    let t = &tests[i];
                    let start = Instant::now();
                    let (r, lines) = crate::say::collect(|| {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (t.run)(ctx)))
                    });
                    let v = match r {
                        Ok(Ok(())) => Verdict::Pass,
                        Ok(Err(e)) if e.downcast_ref::<Missing>().is_some() && !ci => {
                            Verdict::Skip(format!("{e:#}"))
                        }
                        Ok(Err(e)) => Verdict::Fail(format!("{e:#}")),
                        Err(_) => Verdict::Fail("the test panicked".into()),
                    };
                    let secs = start.elapsed().as_secs_f64();
                    {
                        use std::io::Write;
                        let block = format!(
                            "==> boot {}\n{lines}{}\n",
                            t.name,
                            report_line(&t.name, &v, secs)
                        );
                        let _ = std::io::stdout().lock().write_all(block.as_bytes());
                    }
                    done.lock().unwrap_or_else(|e| e.into_inner())[i] = Some((v, secs));
                    let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                    q.running -= 1;
                    q.alone_running &= !t.alone;
                    turn.notify_all();
                }
            });
        }
    });
    crate::qemu::share_slots(false);
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    tests
        .iter()
        .zip(done)
        .map(|(t, r)| {
            let (v, secs) = r.unwrap_or((Verdict::Fail("never ran".into()), 0.0));
            (t.name.clone(), v, secs)
        })
        .collect()
}

/// The index of the next test this worker runs, once it may start; `None` when none is left.
fn take(queue: &Mutex<Queue>, turn: &Condvar, tests: &[BootTest]) -> Option<usize> {
    let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let i = q.next;
        if i >= tests.len() {
            return None;
        }
        if !q.alone_running && (!tests[i].alone || q.running == 0) {
            q.next += 1;
            q.running += 1;
            q.alone_running = tests[i].alone;
            return Some(i);
        }
        q = turn.wait(q).unwrap_or_else(|e| e.into_inner());
    }
}

fn report(name: &str, v: &Verdict, secs: f64) {
    println!("{}", report_line(name, v, secs));
}

fn report_line(name: &str, v: &Verdict, secs: f64) -> String {
    match v {
        Verdict::Pass => format!("<== PASS {name} ({secs:.1} s)"),
        Verdict::Fail(msg) => format!("<== FAIL {name} ({secs:.1} s): {msg}"),
        Verdict::Skip(msg) => format!("<== SKIP {name}: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A test that counts how many run at once while it sleeps; `alone` ones fail if another
    /// runs beside them.
    fn counting(
        name: &str,
        alone: bool,
        running: &Arc<AtomicUsize>,
        most: &Arc<AtomicUsize>,
    ) -> BootTest {
        let (running, most) = (running.clone(), most.clone());
        let t = BootTest::new(name, move |_| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(60));
            let beside = running.load(Ordering::SeqCst);
            running.fetch_sub(1, Ordering::SeqCst);
            anyhow::ensure!(
                !alone || beside == 1,
                "{beside} tests ran beside an alone one"
            );
            Ok(())
        });
        if alone { t.alone() } else { t }
    }

    #[test]
    fn boot_tests_run_two_at_a_time_and_alone_ones_by_themselves() {
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tests: Vec<BootTest> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .enumerate()
            .map(|(i, n)| counting(n, i == 2 || i == 3, &running, &most))
            .chain([BootTest::new("expected-failure", |_| anyhow::bail!("no"))])
            .collect();
        let results = run_boot_tests(&tests, &Ctx::new(), true, 2);
        let names: Vec<&str> = results.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "e", "f", "expected-failure"]);
        for (name, v, _) in &results[..6] {
            assert!(matches!(v, Verdict::Pass), "{name} did not pass");
        }
        assert!(matches!(&results[6].1, Verdict::Fail(m) if m == "no"));
        assert_eq!(most.load(Ordering::SeqCst), 2, "never two at a time");
    }

    #[test]
    fn a_tests_lines_are_kept_until_it_ends() {
        let ((), lines) = crate::say::collect(|| {
            say!("one");
            say!("two {}", 2);
        });
        assert_eq!(lines, "one\ntwo 2\n");
    }
}

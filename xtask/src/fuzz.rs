//! `cargo xtask fuzz [--seconds N] [--seeds] [TARGET]...`: the cargo-fuzz (libFuzzer) targets
//! of `fuzz/`, each run for a bounded time, with a summary of executions and findings.
//!
//! * Builds with `cargo fuzz build -O` (AddressSanitizer, debug assertions) on the pinned stable
//!   toolchain: `RUSTC_BOOTSTRAP=1` lets stable accept the `-Z` sanitizer flags cargo-fuzz passes.
//!   The fuzz project builds into `<cache>/fuzz-target` ([`fuzz_target_dir`], the fixture
//!   cache's directory, shared by every clone on the machine): cargo's fingerprints keep the
//!   sanitizer builds of the registry crates and the UEFI stubs the packer's build script makes
//!   across clones, so a fresh clone rebuilds only its own crates.
//! * Targets run `--jobs` at a time (default 2, one per core; libFuzzer's loop is one thread).
//! * Each target starts from its committed seeds (`fuzz/corpus/<target>`, read only here) plus
//!   a working corpus in `fuzz/target/work-corpus/<target>` (kept between runs, not committed).
//! * A crash, leak, timeout (> 10 s for one input) or out-of-memory (> 2 GiB) is a finding:
//!   libFuzzer writes the input to `fuzz/artifacts/<target>/`; the command fails and says how to
//!   reproduce it. Fixed findings become unit tests next to the code they exercise.
//! * `--seeds` regenerates the seed corpora first (`fuzz/src/gen_seeds.rs`).
//!
//! Without cargo-fuzz (`cargo install cargo-fuzz --locked`) the command fails under `CI=true`
//! and is skipped with a message elsewhere.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Every target of `fuzz/Cargo.toml`, in run order.
pub const TARGETS: &[&str] = &[
    "payload_header",
    "stub_locate",
    "decode",
    "elf_reader",
    "bzimage_reader",
    "pe_reader",
    "verify",
    "bare_handover",
];

#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Regenerate the committed seed corpora (fuzz/corpus) before fuzzing.
    #[arg(long)]
    pub seeds: bool,
    /// Targets fuzzed at once (libFuzzer uses one core each).
    #[arg(long, default_value_t = crate::qemu::SLOTS)]
    pub jobs: usize,
    /// Only build the targets.
    #[arg(long)]
    pub build_only: bool,
    /// Targets to run (default: all).
    pub targets: Vec<String>,
}

fn fuzz_dir() -> PathBuf {
    crate::workspace_root().join("fuzz")
}

/// Where the fuzz project builds: `<cache>/fuzz-target`.
pub fn fuzz_target_dir() -> PathBuf {
    crate::fixtures::cache_dir().join("fuzz-target")
}

/// `cargo` in `fuzz/`, building into [`fuzz_target_dir`], the main build's flags removed.
fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.args(args)
        .current_dir(fuzz_dir())
        .env("CARGO_TARGET_DIR", fuzz_target_dir())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTC_BOOTSTRAP", "1")
        .stdin(Stdio::null());
    c
}

fn cargo_fuzz_installed() -> bool {
    cargo(&["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What one target's run gave.
#[derive(Debug, Default)]
pub struct TargetRun {
    pub name: String,
    pub executions: u64,
    pub exec_per_sec: u64,
    pub coverage: u64,
    pub corpus: u64,
    pub seconds: f64,
    /// A crash/leak/timeout/OOM: the reason and the artifact path.
    pub finding: Option<(String, Option<String>)>,
    pub log: PathBuf,
}

/// The numbers of libFuzzer's output (`-print_final_stats=1` and its status lines).
pub fn parse_stats(name: &str, log: &str) -> TargetRun {
    let mut r = TargetRun {
        name: name.to_string(),
        ..Default::default()
    };
    let num = |s: &str| s.trim().parse::<u64>().unwrap_or(0);
    for line in log.lines() {
        if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
            r.executions = num(v);
        } else if let Some(v) = line.strip_prefix("stat::average_exec_per_sec:") {
            r.exec_per_sec = num(v);
        } else if line.starts_with('#') {
            // "#1234\tDONE   cov: 567 ft: 890 corp: 12/3456b ..."
            let mut words = line.split_whitespace();
            while let Some(w) = words.next() {
                match w {
                    "cov:" => r.coverage = words.next().map_or(r.coverage, num),
                    "corp:" => {
                        r.corpus = words
                            .next()
                            .and_then(|c| c.split('/').next())
                            .map_or(r.corpus, num)
                    }
                    _ => {}
                }
            }
        }
    }
    let reason = log.lines().find_map(|l| {
        let l = l.trim();
        if l.starts_with("==") && l.contains("ERROR: libFuzzer:") {
            Some(
                l.split("ERROR: libFuzzer:")
                    .nth(1)
                    .unwrap_or(l)
                    .trim()
                    .to_string(),
            )
        } else if l.starts_with("==") && l.contains("ERROR: AddressSanitizer:") {
            Some(l.split("ERROR: ").nth(1).unwrap_or(l).trim().to_string())
        } else if l.contains("panicked at") {
            Some(l.to_string())
        } else {
            None
        }
    });
    let artifact = log.lines().find_map(|l| {
        l.split("Test unit written to ")
            .nth(1)
            .map(|p| p.trim().to_string())
    });
    if reason.is_some() || artifact.is_some() {
        r.finding = Some((reason.unwrap_or_else(|| "crash".into()), artifact));
    }
    r
}

fn build() -> Result<()> {
    println!("==> cargo fuzz build -O (RUSTC_BOOTSTRAP=1, AddressSanitizer)");
    let st = cargo(&["fuzz", "build", "-O"])
        .status()
        .context("running cargo fuzz build")?;
    if !st.success() {
        bail!("cargo fuzz build failed ({st})");
    }
    Ok(())
}

fn gen_seeds() -> Result<()> {
    println!("==> regenerating fuzz/corpus (gen-seeds)");
    let st = cargo(&["run", "--release", "--quiet", "--bin", "gen-seeds"])
        .status()
        .context("running gen-seeds")?;
    if !st.success() {
        bail!("gen-seeds failed ({st})");
    }
    Ok(())
}

fn run_target(name: &str, seconds: u64) -> Result<TargetRun> {
    let dir = fuzz_dir();
    let seeds = dir.join("corpus").join(name);
    let work = dir.join("target/work-corpus").join(name);
    let logs = dir.join("target/fuzz-logs");
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)?;
    let t = Instant::now();
    let max_time = format!("-max_total_time={seconds}");
    let mut c = cargo(&["fuzz", "run", "-O", name]);
    c.arg(&work);
    if seeds.is_dir() {
        c.arg(&seeds);
    }
    c.args([
        "--",
        &max_time,
        "-timeout=10",
        "-rss_limit_mb=2048",
        "-max_len=262144",
        "-print_final_stats=1",
    ])
    .stdout(log.try_clone()?)
    .stderr(log);
    let st = c.status().context("running cargo fuzz run")?;
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut r = parse_stats(name, &text);
    r.seconds = t.elapsed().as_secs_f64();
    r.log = log_path;
    if !st.success() && r.finding.is_none() {
        r.finding = Some((format!("cargo fuzz run exited with {st}"), None));
    }
    Ok(r)
}

/// Fuzzes `targets`, `jobs` at a time, each for `seconds`; the runs come back in their order.
fn run_targets(targets: &[&str], seconds: u64, jobs: usize) -> Result<Vec<TargetRun>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let runs: std::sync::Mutex<Vec<Option<Result<TargetRun>>>> =
        std::sync::Mutex::new(targets.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(targets.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(&t) = targets.get(i) else { break };
                    println!("==> fuzz {t} for {seconds} s");
                    let r = run_target(t, seconds);
                    if let Ok(r) = &r {
                        println!("<== {t}: {}", outcome(r));
                    }
                    runs.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    runs.into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| bail!("a fuzz target never ran")))
        .collect()
}

/// One line of what a target's run gave.
fn outcome(r: &TargetRun) -> String {
    format!(
        "{} executions ({} /s), cov {}, corpus {}, {:.0} s{}",
        r.executions,
        r.exec_per_sec,
        r.coverage,
        r.corpus,
        r.seconds,
        match &r.finding {
            Some((why, _)) => format!(", FINDING: {why}"),
            None => String::new(),
        }
    )
}

fn check_names(names: &[String]) -> Result<()> {
    for n in names {
        if !TARGETS.contains(&n.as_str()) {
            bail!(
                "unknown fuzz target {n:?} (targets: {})",
                TARGETS.join(", ")
            );
        }
    }
    Ok(())
}

pub fn run(a: &FuzzArgs) -> Result<()> {
    check_names(&a.targets)?;
    if !cargo_fuzz_installed() {
        let msg = "cargo-fuzz is not installed (cargo install cargo-fuzz --locked)";
        if crate::test_cmd::is_ci() {
            bail!("{msg}");
        }
        println!("fuzz: skipped: {msg}");
        return Ok(());
    }
    if a.seeds {
        gen_seeds()?;
    }
    build()?;
    if a.build_only {
        return Ok(());
    }
    let targets: Vec<&str> = if a.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        a.targets.iter().map(String::as_str).collect()
    };
    let runs = run_targets(&targets, a.seconds, a.jobs.max(1))?;
    println!();
    println!("fuzz summary ({} s per target):", a.seconds);
    for r in &runs {
        println!(
            "  {:<15} {:>10} executions {:>7} /s  cov {:>5}  corpus {:>5}  {}",
            r.name,
            r.executions,
            r.exec_per_sec,
            r.coverage,
            r.corpus,
            match &r.finding {
                None => "no findings".to_string(),
                Some((why, art)) => format!(
                    "FINDING {why}{}",
                    art.as_ref().map(|p| format!(" -> {p}")).unwrap_or_default()
                ),
            }
        );
    }
    let findings: Vec<&TargetRun> = runs.iter().filter(|r| r.finding.is_some()).collect();
    if !findings.is_empty() {
        for r in &findings {
            println!(
                "  reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O {} <artifact>); log {}",
                r.name,
                r.log.display()
            );
        }
        bail!("{} fuzz target(s) found a problem", findings.len());
    }
    println!("{} targets, no findings", runs.len());
    Ok(())
}

/// The committed seed directory of `target` (for tests).
#[cfg(test)]
pub fn seed_dir(target: &str) -> PathBuf {
    fuzz_dir().join("corpus").join(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libfuzzer_stats() {
        let log = "INFO: Seed: 1\n#2\tINITED cov: 10 ft: 11 corp: 3/100b exec/s: 0 rss: 30Mb\n\
                   #4096\tpulse  cov: 55 ft: 80 corp: 9/900b lim: 40 exec/s: 2048 rss: 40Mb\n\
                   #9000\tDONE   cov: 60 ft: 90 corp: 12/1kb lim: 43 exec/s: 900 rss: 41Mb\n\
                   stat::number_of_executed_units: 9000\nstat::average_exec_per_sec:     900\n";
        let r = parse_stats("t", log);
        assert_eq!(
            (r.executions, r.exec_per_sec, r.coverage, r.corpus),
            (9000, 900, 60, 12)
        );
        assert!(r.finding.is_none());
    }

    #[test]
    fn parses_a_crash() {
        let log = "#100\tNEW cov: 5 ft: 5 corp: 2/2b\n\
                   thread '<unnamed>' panicked at fuzz_targets/x.rs:3:5:\nboom\n\
                   ==123== ERROR: libFuzzer: deadly signal\n\
                   artifact_prefix='/w/fuzz/artifacts/x/'; Test unit written to /w/fuzz/artifacts/x/crash-abc\n";
        let r = parse_stats("x", log);
        let (why, art) = r.finding.unwrap();
        assert!(why.contains("panicked"), "{why}");
        assert_eq!(art.as_deref(), Some("/w/fuzz/artifacts/x/crash-abc"));
    }

    #[test]
    fn every_target_is_declared_and_seeded() {
        let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
        for t in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{t}\"")),
                "{t} missing from fuzz/Cargo.toml"
            );
            let n = std::fs::read_dir(seed_dir(t)).map_or(0, |d| d.count());
            assert!(n > 0, "no seeds for {t}");
        }
    }
}

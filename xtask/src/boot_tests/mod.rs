//! The boot tests: tables of named tests, one module per area, each test building a [`BootSpec`]
//! and asserting on the [`BootOutcome`]. [`all`] is the run order: foundation first, because its
//! baselines are what later rows compare against. New tests go into their area's `tests()` table.
//!
//! Shared state lives in [`Ctx`]: the fixtures, the packer binary (built once), and the
//! parity baselines (Debian's own bzImage booted through systemd-boot, once per firmware).

use anyhow::{Context, Result, anyhow, bail, ensure};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use crate::demo;
use crate::fixtures::{Fixtures, Missing, missing};
use crate::probe::ProbeArtifacts;
use crate::qemu::{self, BootMode, BootOutcome, BootSpec, Firmware};
use crate::report::InitReport;

/// What a boot test runs. Tests run on two worker threads at once (see [`crate::test_cmd`]).
pub type TestFn = Box<dyn Fn(&Ctx) -> Result<()> + Send + Sync>;

/// A named boot test.
pub struct BootTest {
    pub name: String,
    /// What a row written as data boots and expects (`cargo xtask test --list`).
    pub about: Option<String>,
    /// Runs with no other boot test beside it: it types at its guest on a timer, or keeps both
    /// cores busy itself.
    pub alone: bool,
    pub run: TestFn,
}

impl BootTest {
    pub fn new(
        name: impl Into<String>,
        run: impl Fn(&Ctx) -> Result<()> + Send + Sync + 'static,
    ) -> BootTest {
        BootTest {
            name: name.into(),
            about: None,
            alone: false,
            run: Box::new(run),
        }
    }

    pub fn about(mut self, about: String) -> BootTest {
        self.about = Some(about);
        self
    }

    /// See [`BootTest::alone`].
    pub fn alone(mut self) -> BootTest {
        self.alone = true;
        self
    }
}

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Makes this thread boot-test worker `n` (see [`scratch`]).
pub fn set_worker(n: usize) {
    WORKER.with(|w| w.set(n));
}

/// `<target>/boot-tests` for worker 0 (and outside the test runner), `<target>/boot-tests/w<n>`
/// for worker `n`: where a test writes the files it makes, so that two tests running at once
/// never write the same path. What [`Ctx`] makes once per run lives in `<target>/boot-tests`.
pub fn scratch() -> PathBuf {
    let dir = qemu::target_dir().join("boot-tests");
    match WORKER.with(|w| w.get()) {
        0 => dir,
        n => dir.join(format!("w{n}")),
    }
}

/// A row's label and firmware. Its name, `<label>-<firmware>`, is derived, so the firmware is
/// written once, as a value.
#[derive(Clone, Debug)]
pub struct On {
    pub label: String,
    pub fw: Firmware,
}

impl On {
    pub fn name(&self) -> String {
        format!("{}-{}", self.label, self.fw)
    }

    /// The name of one of the row's several boots: `<label>-<part>-<firmware>`.
    pub fn part(&self, part: impl std::fmt::Display) -> String {
        format!("{}-{part}-{}", self.label, self.fw)
    }
}

/// The row `<label>-<fw>`; its test gets the [`On`].
pub fn on(
    label: impl Into<String>,
    fw: Firmware,
    run: impl Fn(&Ctx, &On) -> Result<()> + Send + Sync + 'static,
) -> BootTest {
    let row = On {
        label: label.into(),
        fw,
    };
    BootTest::new(row.name(), move |ctx| run(ctx, &row))
}

/// One row per firmware in `fws`, each named `<name>-<firmware>`.
pub fn on_each(
    name: &str,
    fws: &[Firmware],
    run: fn(&Ctx, Firmware) -> Result<()>,
) -> impl Iterator<Item = BootTest> {
    fws.iter()
        .map(move |&fw| on(name, fw, move |ctx, row| run(ctx, row.fw)))
}

/// The two firmware most rows run on: strict-NX OVMF 2025.02 first, then OVMF 2022.11.
pub const BOTH_OVMF: [Firmware; 2] = [Firmware::Ovmf2025StrictNx, Firmware::Ovmf2022];

/// The kernel option every baseline-style boot carries, to prove the command line arrived.
pub const MARKER: &str = "zboot.marker=4f1c9a";

/// Kernel options of the baseline boots.
pub fn baseline_options() -> String {
    format!("console=ttyS0 {MARKER}")
}

/// A value made once per run, by whichever test asks first (the other waits for it).
type Once<T> = Arc<OnceLock<std::result::Result<T, String>>>;

/// A packing: the input and the packer's arguments.
type PackKey = (PathBuf, Vec<String>);

/// State shared by the tests of one `cargo xtask test` run (and its two workers).
pub struct Ctx {
    fixtures: OnceLock<std::result::Result<Fixtures, (bool, String)>>,
    packer: OnceLock<std::result::Result<PathBuf, String>>,
    probe: OnceLock<std::result::Result<ProbeArtifacts, String>>,
    baselines: Mutex<BTreeMap<Firmware, Once<BootOutcome>>>,
    packed: Mutex<BTreeMap<PackKey, Once<PathBuf>>>,
}

/// The cell of `key` in `map`, made empty if absent.
fn cell<K: Ord, T>(map: &Mutex<BTreeMap<K, Once<T>>>, key: K) -> Once<T> {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    m.entry(key).or_default().clone()
}

impl Ctx {
    pub fn new() -> Ctx {
        Ctx {
            fixtures: OnceLock::new(),
            packer: OnceLock::new(),
            probe: OnceLock::new(),
            baselines: Mutex::new(BTreeMap::new()),
            packed: Mutex::new(BTreeMap::new()),
        }
    }

    /// The cached fixtures (never fetches: `cargo xtask fixtures` does).
    pub fn fixtures(&self) -> Result<&Fixtures> {
        let r = self.fixtures.get_or_init(|| {
            Fixtures::load().map_err(|e| (e.downcast_ref::<Missing>().is_some(), format!("{e:#}")))
        });
        match r {
            Ok(fx) => Ok(fx),
            Err((true, msg)) => Err(missing(msg.clone())),
            Err((false, msg)) => Err(anyhow!("{msg}")),
        }
    }

    /// The release packer (`cargo build --release -p zboot-pack`, once per run).
    pub fn packer(&self) -> Result<PathBuf> {
        self.packer
            .get_or_init(|| demo::build_packer().map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(|e| anyhow!("{e}"))
    }

    /// The probe kernel and its relocation table (built once per run).
    pub fn probe(&self) -> Result<ProbeArtifacts> {
        self.probe
            .get_or_init(|| {
                crate::probe::build(&crate::workspace_root()).map_err(|e| format!("{e:#}"))
            })
            .clone()
            .map_err(|e| anyhow!("building the probe kernel: {e}"))
    }

    /// Packs `input` with `args` into `<target>/boot-tests/<name>-<key>.efi`, `<key>` a hash of
    /// the input's path and the arguments (two packings never share a file). Packing the same
    /// input with the same arguments again in one run reuses the first image.
    pub fn pack(&self, name: &str, input: &std::path::Path, args: &[&str]) -> Result<PathBuf> {
        let key = (
            input.to_path_buf(),
            args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        let out = qemu::target_dir()
            .join("boot-tests")
            .join(format!("{name}-{:08x}.efi", pack_key_hash(&key)));
        let packer = self.packer()?;
        cell(&self.packed, key)
            .get_or_init(|| {
                let t = std::time::Instant::now();
                demo::pack(&packer, input, &out, args).map_err(|e| format!("{e:#}"))?;
                say!(
                    "    packed {} {} -> {} ({} bytes, {:.1} s)",
                    input.display(),
                    args.join(" "),
                    out.display(),
                    std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0),
                    t.elapsed().as_secs_f64()
                );
                Ok(out)
            })
            .clone()
            .map_err(|e| anyhow!("{e}"))
    }

    /// Boots a spec (thin wrapper so tests read uniformly).
    pub fn boot(&self, spec: &BootSpec) -> Result<BootOutcome> {
        let out = qemu::run(self.fixtures()?, spec)?;
        say!(
            "    {}: exit {:?}, {:.1} s{}{}",
            spec.name,
            out.exit_code,
            out.duration.as_secs_f64(),
            out.time_to_report
                .map(|t| format!(", report after {:.1} s", t.as_secs_f64()))
                .unwrap_or_default(),
            if out.timed_out { ", TIMED OUT" } else { "" }
        );
        Ok(out)
    }

    /// The parity baseline on `fw`: Debian's own bzImage through systemd-boot with the test
    /// initramfs and [`baseline_options`]. Booted once per run and firmware (by the first test
    /// that asks), then reused.
    pub fn baseline(&self, fw: Firmware) -> Result<BootOutcome> {
        let fx = self.fixtures()?;
        cell(&self.baselines, fw)
            .get_or_init(|| self.boot_baseline(fx, fw).map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(|e| anyhow!("baseline on {fw}: {e}"))
    }

    fn boot_baseline(&self, fx: &Fixtures, fw: Firmware) -> Result<BootOutcome> {
        let spec = BootSpec::systemd_boot(
            format!("baseline-bzimage-{fw}"),
            fw,
            &fx.kernel.vmlinuz,
            Some(fx.initramfs.clone()),
            baseline_options(),
        );
        let out = self.boot(&spec)?;
        let r = out.complete_report()?;
        say!(
            "    baseline {fw}: MemTotal {} kB, boot {:.1} s (report after {:.1} s), VmallocTotal {} kB, Kernel code {:x?}",
            r.memtotal_kb.unwrap_or(0),
            out.duration.as_secs_f64(),
            out.time_to_report.unwrap_or_default().as_secs_f64(),
            r.vmalloc_total_kb.unwrap_or(0),
            r.iomem_kernel_code,
        );
        Ok(out)
    }

    /// The baseline's report on `fw` (see [`Ctx::baseline`]).
    pub fn baseline_report(&self, fw: Firmware) -> Result<InitReport> {
        Ok(self.baseline(fw)?.complete_report()?.clone())
    }
}

/// FNV-1a of a packing's input path and arguments: stable across runs, so the same packing
/// gets the same file name.
fn pack_key_hash((input, args): &PackKey) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let path = input.to_string_lossy();
    for part in std::iter::once(path.as_ref()).chain(args.iter().map(String::as_str)) {
        for b in part.bytes().chain([0]) {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// What tells the kernel that reported is the one under test: the fixture's release and the
/// marker in its command line.
pub(super) fn identity_problems(ctx: &Ctx, r: &InitReport) -> Result<Vec<String>> {
    let fx = ctx.fixtures()?;
    let mut problems = Vec::new();
    if r.release.as_deref() != Some(fx.kernel.release.as_str()) {
        problems.push(format!(
            "release {:?}, want {}",
            r.release, fx.kernel.release
        ));
    }
    if !r.cmdline_has(MARKER) {
        problems.push(format!("cmdline {:?} lacks {MARKER}", r.cmdline));
    }
    Ok(problems)
}

/// The checks every "Linux booted on UEFI with the test initramfs" outcome must pass:
/// complete report, the fixture's release, the marker in the command line, EFI runtime, ACPI,
/// EFI framebuffer, sane MemTotal.
pub fn check_linux_report<'a>(ctx: &Ctx, out: &'a BootOutcome) -> Result<&'a InitReport> {
    let r = out.complete_report()?;
    let mut problems = r.problems();
    problems.extend(identity_problems(ctx, r)?);
    if !problems.is_empty() {
        bail!(
            "{}: {} (log {})",
            out.name,
            problems.join("; "),
            out.log_path.display()
        );
    }
    Ok(r)
}

/// [`check_linux_report`], and the init saw Secure Boot enabled (`boot_params.secure_boot`).
pub fn check_secure_boot_report<'a>(ctx: &Ctx, out: &'a BootOutcome) -> Result<&'a InitReport> {
    let r = check_linux_report(ctx, out)?;
    ensure!(
        r.secure_boot == Some(true),
        "{}: secure_boot={:?}, want 1",
        out.name,
        r.raw.get("secure_boot")
    );
    Ok(r)
}

/// A bare boot of `image` (used as is, never signed) that enforcing Secure Boot must refuse:
/// capped at 90 s and stopped as soon as OVMF reports the refusal or gives up on its options.
pub fn refused_image_spec(name: impl Into<String>, fw: Firmware, image: PathBuf) -> BootSpec {
    let mut spec = BootSpec::new(name, fw, BootMode::Bare { image });
    spec.sign = false;
    spec.timeout = spec.timeout.min(std::time::Duration::from_secs(90));
    spec.stop_on.extend([
        "Access Denied".to_string(),
        "BdsDxe: No bootable option".to_string(),
    ]);
    spec
}

/// MemTotal of `r` is within 1% of the baseline's on `fw`.
pub fn check_memtotal_parity(ctx: &Ctx, fw: Firmware, r: &InitReport) -> Result<()> {
    let base = ctx.baseline_report(fw)?.memtotal_kb.unwrap_or(0) as f64;
    let got = r.memtotal_kb.unwrap_or(0) as f64;
    let diff = (got - base).abs() / base.max(1.0);
    ensure!(
        diff <= 0.01,
        "MemTotal {got} kB differs from the bzImage baseline {base} kB by {:.2}% (> 1%)",
        diff * 100.0
    );
    say!(
        "    MemTotal {got} kB vs baseline {base} kB ({:+.3}%)",
        (got - base) / base * 100.0
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The tests

mod distro;
mod foundation;
pub(crate) mod hardening;
mod hostile;
mod legacy;
mod loaders;
mod measured;
mod probe;
mod readers;
mod real_mode;
mod reliability;
mod signing;
pub(crate) mod soak;
mod stub;

/// Every boot test, in run order.
pub fn all() -> impl Iterator<Item = BootTest> {
    [
        foundation::tests(),
        stub::tests(),
        hardening::tests(),
        reliability::tests(),
        loaders::tests(),
        measured::tests(),
        legacy::tests(),
        hostile::tests(),
        soak::tests(),
        distro::tests(),
        signing::tests(),
        readers::tests(),
        real_mode::tests(),
    ]
    .into_iter()
    .flatten()
}

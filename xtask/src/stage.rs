//! The pre-kernel stage counted in guest instructions (docs/performance.md, "The pre-kernel
//! stage"). Under QEMU `-icount shift=3,sleep=off` the guest clock advances 2^3 ns per guest
//! instruction, whatever the host does, and the guest's TSC is that clock since reset. The test
//! initramfs's first report lines (`/bin/stage-stamp`) read the TSC and the kernel's
//! CLOCK_MONOTONIC together: their difference is the guest time before the kernel's clock
//! started — firmware, loader, file reads, the image's own stage (our stub, or Linux's EFI stub
//! and decompressor) and the kernel's first steps. A baseline EFI app (the stub built with
//! `stage-baseline`) padded to the image's size and booted the same way reads the TSC at its
//! entry: the firmware, loader and file-read share, which is subtracted. What is left is the
//! image's stage plus the kernel's steps before its clock, the same for every image of one
//! kernel.

use anyhow::{Context, Result, ensure};
use std::path::Path;
use std::time::Duration;

use crate::fixtures::Fixtures;
use crate::qemu::{self, BootSpec, Firmware};
use crate::report::InitReport;

/// `-icount shift=N`: 2^N ns of guest time per instruction.
pub const ICOUNT_SHIFT: u32 = 3;

/// The QEMU arguments of a counted boot (`sleep=off`: the guest never waits for the host).
pub fn qemu_args() -> Vec<String> {
    vec!["-icount".into(), format!("shift={ICOUNT_SHIFT},sleep=off")]
}

/// Guest nanoseconds per instruction.
pub fn ns_per_instruction() -> f64 {
    f64::from(1u32 << ICOUNT_SHIFT)
}

/// Kernel options of the counted boots: no KASLR (the same placement every run), no console
/// chatter.
pub const OPTIONS: &str = "console=ttyS0 nokaslr quiet";

/// The baseline app's line.
const BASELINE_KEY: &str = "ZBOOT-BASE tsc=";

/// A counted boot generous enough for Debian 6.1's xz bzImage (~36 s of guest time before its
/// clock, several times that in TCG's real time).
const TIMEOUT: Duration = Duration::from_secs(900);

/// One image's stage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage {
    /// Guest ns before the kernel's clock started.
    pub before_clock_ns: u64,
    /// Guest ns before the baseline app's first instruction, booted the same way.
    pub baseline_ns: u64,
}

impl Stage {
    /// The image's own share, in guest ns.
    pub fn ns(&self) -> u64 {
        self.before_clock_ns.saturating_sub(self.baseline_ns)
    }

    /// The image's own share in guest instructions.
    pub fn instructions(&self) -> f64 {
        self.ns() as f64 / ns_per_instruction()
    }
}

/// Guest ns before the kernel's clock started, from the init's report.
pub fn before_clock_ns(r: &InitReport) -> Result<u64> {
    let num = |key: &str| -> Result<u64> {
        let v = r.raw.get(key).with_context(|| {
            format!(
                "the init reported no {key} (stage_error={:?})",
                r.raw.get("stage_error")
            )
        })?;
        v.trim()
            .parse()
            .with_context(|| format!("{key}={v:?} is not a number"))
    };
    let (tsc, mono) = (num("stage_tsc")?, num("stage_mono_ns")?);
    ensure!(
        tsc >= mono,
        "stage_tsc {tsc} < stage_mono_ns {mono}: the TSC is not the guest clock (no -icount?)"
    );
    Ok(tsc - mono)
}

/// The baseline app's counter at entry, from its serial log.
pub fn baseline_tsc(log: &str) -> Option<u64> {
    log.lines().find_map(|l| {
        let v = &l[l.find(BASELINE_KEY)? + BASELINE_KEY.len()..];
        let end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
        v[..end].parse().ok()
    })
}

/// The baseline app padded with zeros to `len` bytes (what the loader reads is then as long as
/// the image it stands for).
pub fn padded(app: &[u8], len: u64) -> Result<Vec<u8>> {
    let len = usize::try_from(len)?;
    ensure!(
        app.len() <= len,
        "the baseline app ({} B) is larger than the image ({len} B)",
        app.len()
    );
    let mut out = app.to_vec();
    out.resize(len, 0);
    Ok(out)
}

/// A counted boot of `linux` through systemd-boot on `fw` with the test initramfs.
pub fn spec(fx: &Fixtures, name: &str, fw: Firmware, linux: &Path, options: &str) -> BootSpec {
    let mut spec = BootSpec::systemd_boot(name, fw, linux, Some(fx.initramfs.clone()), options);
    spec.qemu_args.extend(qemu_args());
    spec.timeout = TIMEOUT;
    spec
}

/// Counts `image`'s stage: one boot of it, one of the baseline `app` padded to its size (written
/// to `dir`). `label` names the boots.
pub fn measure(
    fx: &Fixtures,
    fw: Firmware,
    app: &[u8],
    image: &Path,
    dir: &Path,
    label: &str,
) -> Result<Stage> {
    let len = std::fs::metadata(image)
        .with_context(|| format!("reading {}", image.display()))?
        .len();
    let base_path = dir.join(format!("stage-baseline-{len}.efi"));
    std::fs::write(&base_path, padded(app, len)?)?;
    let out = qemu::run(
        fx,
        &spec(
            fx,
            &format!("stage-{label}-baseline"),
            fw,
            &base_path,
            OPTIONS,
        ),
    )?;
    let baseline_ns = baseline_tsc(&out.log).with_context(|| {
        format!(
            "{label}: the baseline app printed no `{BASELINE_KEY}` (log {})",
            out.log_path.display()
        )
    })?;
    let out = qemu::run(fx, &spec(fx, &format!("stage-{label}"), fw, image, OPTIONS))?;
    let report = out
        .report
        .as_ref()
        .filter(|r| r.end)
        .with_context(|| format!("{label}: no init report (log {})", out.log_path.display()))?;
    let before_clock_ns = before_clock_ns(report)
        .with_context(|| format!("{label} (log {})", out.log_path.display()))?;
    let stage = Stage {
        before_clock_ns,
        baseline_ns,
    };
    eprintln!(
        "bench: stage {label}: {:.1} ms before the kernel's clock, baseline {:.1} ms: {:.0} M instructions",
        before_clock_ns as f64 / 1e6,
        baseline_ns as f64 / 1e6,
        stage.instructions() / 1e6
    );
    Ok(stage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_is_the_time_before_the_clock_less_the_baseline() {
        let mut r = InitReport::default();
        r.raw.insert("stage_tsc".into(), "9000000000".into());
        r.raw.insert("stage_mono_ns".into(), "2500000000".into());
        let before = before_clock_ns(&r).unwrap();
        assert_eq!(before, 6_500_000_000);
        let s = Stage {
            before_clock_ns: before,
            baseline_ns: 800_000_000,
        };
        assert_eq!(s.ns(), 5_700_000_000);
        assert_eq!(s.instructions(), 712_500_000.0);
    }

    #[test]
    fn a_tsc_behind_the_clock_or_a_missing_key_is_an_error() {
        let mut r = InitReport::default();
        r.raw.insert("stage_tsc".into(), "10".into());
        assert!(before_clock_ns(&r).is_err());
        r.raw.insert("stage_mono_ns".into(), "11".into());
        let e = before_clock_ns(&r).unwrap_err().to_string();
        assert!(e.contains("no -icount"), "{e}");
    }

    #[test]
    fn the_baseline_line_and_padding() {
        let log = "BdsDxe: starting\r\nZBOOT-BASE tsc=123456789\r\n";
        assert_eq!(baseline_tsc(log), Some(123_456_789));
        assert_eq!(baseline_tsc("ZBOOT-INIT end=1"), None);
        let p = padded(b"MZ", 5).unwrap();
        assert_eq!(p, b"MZ\0\0\0");
        assert!(padded(b"MZxx", 3).is_err());
    }
}

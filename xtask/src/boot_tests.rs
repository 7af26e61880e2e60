//! The boot tests: one table of named tests, each building a [`BootSpec`] and asserting on the
//! [`BootOutcome`]. Later work adds rows to [`TESTS`].
//!
//! Shared state lives in [`Ctx`]: the fixtures, the packer binary (built once), and the
//! parity baselines (Debian's own bzImage booted through systemd-boot, once per firmware).

use anyhow::{Context, Result, anyhow, bail, ensure};
use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::demo;
use crate::fixtures::{Fixtures, Missing, missing};
use crate::qemu::{self, BootMode, BootOutcome, BootSpec, Firmware};
use crate::report::InitReport;

/// A named boot test.
pub struct BootTest {
    pub name: &'static str,
    pub run: fn(&Ctx) -> Result<()>,
}

/// The kernel option every baseline-style boot carries, to prove the command line arrived.
pub const MARKER: &str = "zboot.marker=4f1c9a";

/// Kernel options of the baseline boots.
pub fn baseline_options() -> String {
    format!("console=ttyS0 {MARKER}")
}

/// State shared by the tests of one `cargo xtask test` run.
pub struct Ctx {
    pub ci: bool,
    fixtures: OnceCell<std::result::Result<Fixtures, (bool, String)>>,
    packer: OnceCell<std::result::Result<PathBuf, String>>,
    baselines: RefCell<BTreeMap<Firmware, BootOutcome>>,
    packed: RefCell<BTreeMap<(PathBuf, Vec<String>), PathBuf>>,
}

impl Ctx {
    pub fn new(ci: bool) -> Ctx {
        Ctx {
            ci,
            fixtures: OnceCell::new(),
            packer: OnceCell::new(),
            baselines: RefCell::new(BTreeMap::new()),
            packed: RefCell::new(BTreeMap::new()),
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

    /// Packs `input` with `args` into `<target>/boot-tests/<name>.efi`. Packing the same input
    /// with the same arguments again in one run reuses the first image.
    pub fn pack(&self, name: &str, input: &std::path::Path, args: &[&str]) -> Result<PathBuf> {
        let key = (
            input.to_path_buf(),
            args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        if let Some(p) = self.packed.borrow().get(&key) {
            return Ok(p.clone());
        }
        let out = qemu::target_dir()
            .join("boot-tests")
            .join(format!("{name}.efi"));
        let t = std::time::Instant::now();
        demo::pack(&self.packer()?, input, &out, args)?;
        println!(
            "    packed {} {} -> {} ({} bytes, {:.1} s)",
            input.display(),
            args.join(" "),
            out.display(),
            std::fs::metadata(&out)?.len(),
            t.elapsed().as_secs_f64()
        );
        self.packed.borrow_mut().insert(key, out.clone());
        Ok(out)
    }

    /// Boots a spec (thin wrapper so tests read uniformly).
    pub fn boot(&self, spec: &BootSpec) -> Result<BootOutcome> {
        let out = qemu::run(self.fixtures()?, spec)?;
        println!(
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
    /// initramfs and [`baseline_options`]. Booted once per run and firmware, then reused.
    pub fn baseline(&self, fw: Firmware) -> Result<BootOutcome> {
        if let Some(o) = self.baselines.borrow().get(&fw) {
            return Ok(o.clone());
        }
        let fx = self.fixtures()?;
        let spec = BootSpec::systemd_boot(
            format!("baseline-bzimage-{fw}"),
            fw,
            &fx.kernel.vmlinuz,
            Some(fx.initramfs.clone()),
            baseline_options(),
        );
        let out = self.boot(&spec)?;
        let r = out.complete_report()?;
        println!(
            "    baseline {fw}: MemTotal {} kB, boot {:.1} s (report after {:.1} s), VmallocTotal {} kB, Kernel code {:x?}",
            r.memtotal_kb.unwrap_or(0),
            out.duration.as_secs_f64(),
            out.time_to_report.unwrap_or_default().as_secs_f64(),
            r.vmalloc_total_kb.unwrap_or(0),
            r.iomem_kernel_code,
        );
        self.baselines.borrow_mut().insert(fw, out.clone());
        Ok(out)
    }

    /// The baseline's report on `fw` (see [`Ctx::baseline`]).
    pub fn baseline_report(&self, fw: Firmware) -> Result<InitReport> {
        Ok(self.baseline(fw)?.complete_report()?.clone())
    }
}

/// The checks every "Linux booted on UEFI with the test initramfs" outcome must pass:
/// complete report, the fixture's release, the marker in the command line, EFI runtime, ACPI,
/// EFI framebuffer, sane MemTotal.
pub fn check_linux_report<'a>(ctx: &Ctx, out: &'a BootOutcome) -> Result<&'a InitReport> {
    let fx = ctx.fixtures()?;
    let r = out.complete_report()?;
    let mut problems = r.problems();
    if r.release.as_deref() != Some(fx.kernel.release.as_str()) {
        problems.push(format!(
            "release {:?}, want {}",
            r.release, fx.kernel.release
        ));
    }
    if !r.cmdline_has(MARKER) {
        problems.push(format!("cmdline {:?} lacks {MARKER}", r.cmdline));
    }
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
    println!(
        "    MemTotal {got} kB vs baseline {base} kB ({:+.3}%)",
        (got - base) / base * 100.0
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The tests

fn bzimage_baseline(ctx: &Ctx, fw: Firmware) -> Result<()> {
    let out = ctx.baseline(fw)?;
    check_linux_report(ctx, &out)?;
    Ok(())
}

/// The UEFI shell mode works: startup.nsh starts the bzImage with arguments, and the Linux EFI
/// stub's own `initrd=` loads the initramfs from the ESP.
fn bzimage_shell(ctx: &Ctx) -> Result<()> {
    let fx = ctx.fixtures()?;
    let mut spec = BootSpec::new(
        "bzimage-shell-ovmf2022",
        Firmware::Ovmf2022,
        BootMode::Shell {
            image: fx.kernel.vmlinuz.clone(),
            args: format!("initrd=\\initrd.img {}", baseline_options()),
        },
    );
    spec.extra_files
        .push(("initrd.img".into(), fx.initramfs.clone()));
    let out = ctx.boot(&spec)?;
    check_linux_report(ctx, &out)?;
    Ok(())
}

/// Secure Boot enforcing (snakeoil keys) on strict-NX 2025.02: signed systemd-boot and a signed
/// bzImage boot, and the guest sees Secure Boot enabled.
fn bzimage_secure_boot(ctx: &Ctx) -> Result<()> {
    let fx = ctx.fixtures()?;
    let fw = Firmware::Ovmf2025StrictNxSecureBoot;
    let spec = BootSpec::systemd_boot(
        format!("bzimage-sdboot-{fw}"),
        fw,
        &fx.kernel.vmlinuz,
        Some(fx.initramfs.clone()),
        baseline_options(),
    );
    ensure!(spec.sign, "images must be signed for {fw}");
    let out = ctx.boot(&spec)?;
    let r = check_linux_report(ctx, &out)?;
    ensure!(
        r.secure_boot == Some(true),
        "secure_boot={:?}, want 1",
        r.raw.get("secure_boot")
    );
    Ok(())
}

/// Secure Boot enforcing rejects an unsigned image: nothing boots.
fn unsigned_rejected_secure_boot(ctx: &Ctx) -> Result<()> {
    let fx = ctx.fixtures()?;
    let fw = Firmware::Ovmf2025StrictNxSecureBoot;
    let mut spec = BootSpec::new(
        format!("unsigned-bare-{fw}"),
        fw,
        BootMode::Bare {
            image: fx.kernel.vmlinuz.clone(),
        },
    );
    spec.sign = false;
    spec.timeout = spec.timeout.min(std::time::Duration::from_secs(90));
    // OVMF gives up on the boot options and drops to the boot manager: stop there.
    spec.stop_on.extend([
        "Access Denied".to_string(),
        "BdsDxe: No bootable option".to_string(),
    ]);
    let out = ctx.boot(&spec)?;
    ensure!(
        out.report.is_none(),
        "an unsigned image booted under enforcing Secure Boot"
    );
    ensure!(
        out.log.contains("Access Denied"),
        "the firmware did not deny the unsigned image (log {}):\n{}",
        out.log_path.display(),
        out.log_tail(10)
    );
    Ok(())
}

/// The packed Debian kernel boots like the bzImage baseline (MemTotal within 1%).
fn packed_sdboot(ctx: &Ctx, fw: Firmware) -> Result<()> {
    let fx = ctx.fixtures()?;
    let name = format!("packed-bzimage-sdboot-{fw}");
    let image = ctx
        .pack("packed-bzimage", &fx.kernel.vmlinuz, &[])
        .context("packing the Debian kernel")?;
    let spec = BootSpec::systemd_boot(
        &name,
        fw,
        image,
        Some(fx.initramfs.clone()),
        baseline_options(),
    );
    let out = ctx.boot(&spec)?;
    let r = check_linux_report(ctx, &out)?;
    check_memtotal_parity(ctx, fw, r)?;
    Ok(())
}

/// The packed kernel, signed with the snakeoil key, boots under enforcing Secure Boot on
/// strict-NX firmware (sbsign accepts the image; the firmware verifies it).
fn packed_secure_boot(ctx: &Ctx) -> Result<()> {
    let fx = ctx.fixtures()?;
    let fw = Firmware::Ovmf2025StrictNxSecureBoot;
    let image = ctx.pack("packed-bzimage", &fx.kernel.vmlinuz, &[])?;
    let spec = BootSpec::systemd_boot(
        format!("packed-bzimage-sdboot-{fw}"),
        fw,
        image,
        Some(fx.initramfs.clone()),
        baseline_options(),
    );
    let out = ctx.boot(&spec)?;
    let r = check_linux_report(ctx, &out)?;
    ensure!(
        r.secure_boot == Some(true),
        "secure_boot={:?}, want 1",
        r.raw.get("secure_boot")
    );
    Ok(())
}

/// The packed kernel started directly by the firmware (no loader, no load options) uses its
/// embedded `.cmdline` and `.initrd`.
fn packed_embedded_bare(ctx: &Ctx) -> Result<()> {
    let fx = ctx.fixtures()?;
    let fw = Firmware::Ovmf2025StrictNx;
    let cmdline = baseline_options();
    let initrd = fx.initramfs.display().to_string();
    let image = ctx.pack(
        "packed-bzimage-embedded",
        &fx.kernel.vmlinuz,
        &["--cmdline", &cmdline, "--initrd", &initrd],
    )?;
    let spec = BootSpec::new(
        format!("packed-embedded-bare-{fw}"),
        fw,
        BootMode::Bare { image },
    );
    let out = ctx.boot(&spec)?;
    let r = check_linux_report(ctx, &out)?;
    check_memtotal_parity(ctx, fw, r)?;
    Ok(())
}

/// The table. Baselines first: later rows compare against them.
pub const TESTS: &[BootTest] = &[
    BootTest {
        name: "bzimage-sdboot-ovmf2022",
        run: |ctx| bzimage_baseline(ctx, Firmware::Ovmf2022),
    },
    BootTest {
        name: "bzimage-sdboot-ovmf2025-strict-nx",
        run: |ctx| bzimage_baseline(ctx, Firmware::Ovmf2025StrictNx),
    },
    BootTest {
        name: "bzimage-shell-ovmf2022",
        run: bzimage_shell,
    },
    BootTest {
        name: "bzimage-sdboot-ovmf2025-strict-nx-secure-boot",
        run: bzimage_secure_boot,
    },
    BootTest {
        name: "unsigned-rejected-ovmf2025-strict-nx-secure-boot",
        run: unsigned_rejected_secure_boot,
    },
    BootTest {
        name: "packed-bzimage-sdboot-ovmf2025-strict-nx",
        run: |ctx| packed_sdboot(ctx, Firmware::Ovmf2025StrictNx),
    },
    BootTest {
        name: "packed-bzimage-sdboot-ovmf2022",
        run: |ctx| packed_sdboot(ctx, Firmware::Ovmf2022),
    },
    BootTest {
        name: "packed-bzimage-sdboot-ovmf2025-strict-nx-secure-boot",
        run: packed_secure_boot,
    },
    BootTest {
        name: "packed-embedded-cmdline-initrd-bare-ovmf2025-strict-nx",
        run: packed_embedded_bare,
    },
];

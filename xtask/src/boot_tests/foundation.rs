//! Foundation boot tests: Debian's own bzImage (the parity baselines), the UEFI shell and Secure
//! Boot modes, and the first packed-image boots.

use super::*;

fn bzimage_baseline(ctx: &Ctx, fw: Firmware) -> Result<()> {
    let out = ctx.baseline(fw)?;
    check_linux_report(ctx, &out)?;
    Ok(())
}

/// The UEFI shell mode works: startup.nsh starts the bzImage with arguments, and the Linux EFI
/// stub's own `initrd=` loads the initramfs from the ESP.
fn bzimage_shell(ctx: &Ctx, row: &On) -> Result<()> {
    let fx = ctx.fixtures()?;
    let mut spec = BootSpec::new(
        row.name(),
        row.fw,
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

/// Secure Boot enforcing (snakeoil keys): signed systemd-boot and a signed bzImage boot, and
/// the guest sees Secure Boot enabled.
fn bzimage_secure_boot(ctx: &Ctx, row: &On) -> Result<()> {
    let vmlinuz = ctx.fixtures()?.kernel.vmlinuz.clone();
    boot_under_secure_boot(ctx, row, vmlinuz)
}

/// `kernel` (signed by the harness) through signed systemd-boot on the row's enforcing
/// firmware: it boots and the guest sees Secure Boot enabled.
fn boot_under_secure_boot(ctx: &Ctx, row: &On, kernel: PathBuf) -> Result<()> {
    let fx = ctx.fixtures()?;
    let fw = row.fw;
    let spec = BootSpec::systemd_boot(
        row.name(),
        fw,
        kernel,
        Some(fx.initramfs.clone()),
        baseline_options(),
    );
    ensure!(spec.sign, "images must be signed for {fw}");
    let out = ctx.boot(&spec)?;
    check_secure_boot_report(ctx, &out)?;
    Ok(())
}

/// Secure Boot enforcing rejects an unsigned image: nothing boots.
fn unsigned_rejected_secure_boot(ctx: &Ctx, row: &On) -> Result<()> {
    let fx = ctx.fixtures()?;
    let spec = refused_image_spec(row.name(), row.fw, fx.kernel.vmlinuz.clone());
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
fn packed_secure_boot(ctx: &Ctx, row: &On) -> Result<()> {
    let fx = ctx.fixtures()?;
    let image = ctx.pack("packed-bzimage", &fx.kernel.vmlinuz, &[])?;
    boot_under_secure_boot(ctx, row, image)
}

/// Debian's kernel packed with the baseline command line and the test initramfs embedded (one
/// image per run).
pub(super) fn packed_embedded(ctx: &Ctx) -> Result<PathBuf> {
    let fx = ctx.fixtures()?;
    let cmdline = baseline_options();
    let initrd = fx.initramfs.display().to_string();
    ctx.pack(
        "packed-bzimage-embedded",
        &fx.kernel.vmlinuz,
        &["--cmdline", &cmdline, "--initrd", &initrd],
    )
}

/// The packed kernel started directly by the firmware (no loader, no load options) uses its
/// embedded `.cmdline` and `.initrd` (one image per run, booted on each firmware that asks).
pub(super) fn packed_embedded_bare(ctx: &Ctx, fw: Firmware) -> Result<()> {
    let image = packed_embedded(ctx)?;
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
pub fn tests() -> Vec<BootTest> {
    let mut rows: Vec<BootTest> = on_each(
        "bzimage-sdboot",
        &[Firmware::Ovmf2022, Firmware::Ovmf2025StrictNx],
        bzimage_baseline,
    )
    .collect();
    let secure = Firmware::Ovmf2025StrictNxSecureBoot;
    rows.extend([
        on("bzimage-shell", Firmware::Ovmf2022, bzimage_shell),
        on("bzimage-sdboot", secure, bzimage_secure_boot),
        on("unsigned-rejected", secure, unsigned_rejected_secure_boot),
    ]);
    rows.extend(on_each("packed-bzimage-sdboot", &BOTH_OVMF, packed_sdboot));
    rows.extend([
        on("packed-bzimage-sdboot", secure, packed_secure_boot),
        on(
            "packed-embedded-cmdline-initrd-bare",
            Firmware::Ovmf2025StrictNx,
            |ctx, row| packed_embedded_bare(ctx, row.fw),
        ),
    ]);
    rows
}

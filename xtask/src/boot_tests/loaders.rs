//! Other loaders' boot paths: our image inside a UKI (systemd-stub loads it as `.linux`).
//!
//! systemd-stub 252 (Debian 12) starts the inner kernel with LoadImage/StartImage only when its
//! PE MajorImageVersion is at least 1 (Linux's EFI stub version), hands it the `.initrd` through
//! LoadFile2 and the `.cmdline` as LoadOptions. The UKI is assembled with objcopy as systemd
//! 252's documentation does it.

use super::*;
use std::process::{Command, Stdio};

/// `objcopy` recipe of systemd 252's docs: `.osrel`, `.cmdline`, `.linux`, `.initrd` added to
/// `linuxx64.efi.stub` at fixed VMAs above the stub.
fn build_uki_252(
    stub: &std::path::Path,
    linux: &std::path::Path,
    initrd: &std::path::Path,
    cmdline: &str,
    out: &std::path::Path,
) -> Result<()> {
    let dir = out.parent().context("UKI path")?;
    std::fs::create_dir_all(dir)?;
    let osrel = dir.join("uki-osrel.txt");
    std::fs::write(
        &osrel,
        "ID=zboot-test\nPRETTY_NAME=\"zboot-pack UKI test\"\n",
    )?;
    let cmdline_file = dir.join("uki-cmdline.txt");
    std::fs::write(&cmdline_file, cmdline)?;
    let linux_len = std::fs::metadata(linux)?.len();
    ensure!(
        linux_len < 0x100_0000,
        "{} is {linux_len} bytes: more than the 16 MiB between .linux and .initrd",
        linux.display()
    );
    let section = |name: &str, file: &std::path::Path, vma: u64| -> [String; 4] {
        [
            "--add-section".into(),
            format!("{name}={}", file.display()),
            "--change-section-vma".into(),
            format!("{name}={vma:#x}"),
        ]
    };
    let mut args: Vec<String> = Vec::new();
    args.extend(section(".osrel", &osrel, 0x20000));
    args.extend(section(".cmdline", &cmdline_file, 0x30000));
    args.extend(section(".linux", linux, 0x200_0000));
    args.extend(section(".initrd", initrd, 0x300_0000));
    let o = Command::new("objcopy")
        .args(&args)
        .arg(stub)
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing(format!("objcopy (Debian package binutils): {e}")))?;
    ensure!(
        o.status.success(),
        "objcopy (UKI): {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
    Ok(())
}

/// Debian's 6.1 kernel packed with the default codec, inside a systemd-stub 252 UKI with the
/// test initramfs and the marker command line, booted as `\EFI\BOOT\BOOTX64.EFI` on `fw`
/// (signed, inner image first, where Secure Boot enforces): the kernel's own init reports the
/// command line, and the initrd arrived (the init runs from it).
fn uki_252(ctx: &Ctx, fw: Firmware) -> Result<()> {
    let fx = ctx.fixtures()?;
    let image = ctx.pack("packed-bzimage", &fx.kernel.vmlinuz, &[])?;
    let dir = qemu::target_dir().join("boot-tests/uki");
    std::fs::create_dir_all(&dir)?;
    let linux = if fw.enforcing() {
        let signed = dir.join(format!("linux-signed-{fw}.efi"));
        qemu::sign(fx, fw, &image, &signed)?;
        signed
    } else {
        image
    };
    let uki = dir.join(format!("uki-252-{fw}.efi"));
    build_uki_252(
        &fx.systemd_stub,
        &linux,
        &fx.initramfs,
        &baseline_options(),
        &uki,
    )?;
    let spec = BootSpec::new(format!("uki-252-{fw}"), fw, BootMode::Bare { image: uki });
    let out = ctx.boot(&spec)?;
    let r = check_linux_report(ctx, &out)?;
    if fw.enforcing() {
        ensure!(r.secure_boot == Some(true), "Secure Boot not seen enabled");
    }
    Ok(())
}

pub const TESTS: &[BootTest] = &[
    BootTest {
        name: "uki-systemd-stub-252-ovmf2022",
        run: |ctx| uki_252(ctx, Firmware::Ovmf2022),
    },
    BootTest {
        name: "uki-systemd-stub-252-ovmf2025-strictnx",
        run: |ctx| uki_252(ctx, Firmware::Ovmf2025StrictNx),
    },
    BootTest {
        name: "uki-systemd-stub-252-ovmf2025-secureboot",
        run: |ctx| uki_252(ctx, Firmware::Ovmf2025StrictNxSecureBoot),
    },
];

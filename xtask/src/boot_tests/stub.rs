//! x86_64 stub acceptance (issue 4): the probe kernel and the Debian kernel through the stub, per
//! boot path, codec and firmware.
//!
//! * `probe-*`: the probe kernel (fixtures/probe-kernel, packed with `--relocs`) must pass every
//!   entry check (`result=pass`, isa-debug-exit 33), and the facts it reports are compared with
//!   what the host knows: the command line, the initrd's size and CRC32 (which source won), a
//!   2 MiB aligned load base, a KASLR flag consistent with the displacement, and the number of
//!   relocation entries it verified.
//! * `linux-vmlinux-<codec>-*`: Debian's 6.1 vmlinux (`zboot-pack extract` of the vmlinuz: ELF +
//!   appended relocations) packed with each codec boots to the initramfs `init` through
//!   systemd-boot (initrd via LoadFile2). Every codec runs on `ovmf2025-strict-nx`; on
//!   `ovmf2022` only zstd (the default) and xz (the slowest decoder) run, to keep CI time sane.
//! * Repacking Debian's vmlinuz is the foundation's `packed-bzimage-sdboot-*` rows (not
//!   duplicated here); its embedded `--cmdline`/`--initrd` bare row on 2025 strict NX gets a
//!   2022.11 twin here.
//! * `initrd=` without LoadFile2: through the UEFI shell (one file, two files concatenated,
//!   `noinitrd`, embedded initrd overridden; a missing file makes the stub fail cleanly), and
//!   through a systemd-boot entry without an `initrd` line (2025.02 strict NX has no shell).

use super::probe::{Cmdline, Image, Initrd, Row, Start, embedded_cmdline, words};
use super::*;
use crate::report::ProbeReport;
use std::sync::OnceLock;
use zboot_format::Codec;

// ---------------------------------------------------------------------------------------------
// Shared inputs (built once per run)

/// Debian's vmlinux (ELF + appended relocation table), extracted from the vmlinuz once per run
/// with `zboot-pack extract`.
pub(super) fn debian_vmlinux(ctx: &Ctx) -> Result<PathBuf> {
    static V: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let fx = ctx.fixtures()?;
    let packer = ctx.packer()?;
    V.get_or_init(|| {
        let out = qemu::target_dir().join("boot-tests/debian-vmlinux");
        let run = || -> Result<PathBuf> {
            std::fs::create_dir_all(out.parent().unwrap())?;
            let o = std::process::Command::new(&packer)
                .arg("extract")
                .arg(&fx.kernel.vmlinuz)
                .arg("-o")
                .arg(&out)
                .stdin(std::process::Stdio::null())
                .output()
                .context("running zboot-pack extract")?;
            ensure!(
                o.status.success(),
                "zboot-pack extract {}: {}",
                fx.kernel.vmlinuz.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
            let head = std::fs::read(&out)?;
            ensure!(
                head.starts_with(b"\x7fELF"),
                "extract did not produce an ELF"
            );
            Ok(out.clone())
        };
        run().map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(|e| anyhow!("{e}"))
}

// ---------------------------------------------------------------------------------------------
// The probe kernel

/// A missing `initrd=` file: the stub prints an error naming it and returns to the firmware;
/// the kernel never starts.
fn probe_shell_missing_initrd(ctx: &Ctx, row: &On) -> Result<()> {
    let image = super::probe::pack(ctx, "probe", &[])?;
    let mut spec = BootSpec::new(
        row.name(),
        row.fw,
        BootMode::Shell {
            image,
            args: "initrd=\\missing.img console=ttyS0".into(),
        },
    );
    // After the stub returns, the shell waits at its prompt: stop at the error line instead.
    spec.stop_on.push("error: ".into());
    spec.timeout = spec.timeout.min(std::time::Duration::from_secs(90));
    let out = ctx.boot(&spec)?;
    ensure!(
        out.probe.is_none(),
        "{}: the kernel started despite a missing initrd= file",
        out.name
    );
    let line = out
        .log
        .lines()
        .find(|l| l.contains("error: "))
        .ok_or_else(|| {
            anyhow!(
                "{}: no error line from the stub (log {}):\n{}",
                out.name,
                out.log_path.display(),
                out.log_tail(15)
            )
        })?;
    ensure!(
        line.contains("missing.img") && line.contains("NOT_FOUND"),
        "{}: error line {line:?} does not name the missing initrd",
        out.name
    );
    say!("    stub said: {}", line.trim());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Debian kernel

/// Debian's vmlinux packed with `codec`, through systemd-boot (LoadFile2 initrd, options) on
/// `fw`: the standard Linux checks and MemTotal parity with the bzImage on the same firmware.
fn linux_vmlinux_sdboot(ctx: &Ctx, codec: &str, fw: Firmware) -> Result<()> {
    let fx = ctx.fixtures()?;
    let vmlinux = debian_vmlinux(ctx)?;
    let image = ctx
        .pack(
            &format!("debian-vmlinux-{codec}"),
            &vmlinux,
            &["--codec", codec],
        )
        .with_context(|| format!("packing Debian's vmlinux with {codec}"))?;
    let spec = BootSpec::systemd_boot(
        format!("linux-vmlinux-{codec}-sdboot-{fw}"),
        fw,
        image,
        Some(fx.initramfs.clone()),
        baseline_options(),
    );
    let out = ctx.boot(&super::probe::fail_fast(&spec))?;
    let r = check_linux_report(ctx, &out)?;
    check_memtotal_parity(ctx, fw, r)?;
    Ok(())
}

/// Debian's vmlinux (zstd) on a CPU without BMI2 (`-cpu Nehalem`): libzstd's plain loops, not
/// the BMI2 copy every other row's `-cpu max` runs, decode the kernel.
fn linux_vmlinux_no_bmi2(ctx: &Ctx, row: &On) -> Result<()> {
    let fx = ctx.fixtures()?;
    let image = debian_vmlinux_zstd(ctx)?;
    let mut spec = BootSpec::systemd_boot(
        row.name(),
        row.fw,
        image,
        Some(fx.initramfs.clone()),
        baseline_options(),
    );
    spec.cpu = "Nehalem".into();
    let out = ctx.boot(&super::probe::fail_fast(&spec))?;
    check_linux_report(ctx, &out)?;
    Ok(())
}

/// Debian's vmlinux packed with zstd (the default codec).
fn debian_vmlinux_zstd(ctx: &Ctx) -> Result<PathBuf> {
    let vmlinux = debian_vmlinux(ctx)?;
    ctx.pack("debian-vmlinux-zstd", &vmlinux, &["--codec", "zstd"])
}

/// Boots `spec` with the test initramfs as `\initrd.img` on the ESP (the options name it):
/// the standard Linux checks and MemTotal parity with the bzImage on `fw`.
fn boot_with_initrd_file(ctx: &Ctx, mut spec: BootSpec, fw: Firmware) -> Result<()> {
    let fx = ctx.fixtures()?;
    spec.extra_files
        .push(("initrd.img".into(), fx.initramfs.clone()));
    let out = ctx.boot(&spec)?;
    let r = check_linux_report(ctx, &out)?;
    check_memtotal_parity(ctx, fw, r)?;
    Ok(())
}

/// Debian's vmlinux (zstd) started from the UEFI shell with `initrd=\initrd.img` (no LoadFile2).
fn linux_vmlinux_shell(ctx: &Ctx, row: &On) -> Result<()> {
    let fw = row.fw;
    let image = debian_vmlinux_zstd(ctx)?;
    let spec = BootSpec::new(
        row.name(),
        fw,
        BootMode::Shell {
            image,
            args: format!("initrd=\\initrd.img {}", baseline_options()),
        },
    );
    boot_with_initrd_file(ctx, spec, fw)
}

/// Debian's vmlinux (zstd) through systemd-boot without an `initrd` line: the options'
/// `initrd=\initrd.img` is read by the stub from the ESP (no LoadFile2), on `fw`.
fn linux_vmlinux_sdboot_initrd_option(ctx: &Ctx, row: &On) -> Result<()> {
    let fw = row.fw;
    let image = debian_vmlinux_zstd(ctx)?;
    let spec = BootSpec::systemd_boot(
        row.name(),
        fw,
        image,
        None,
        format!("initrd=\\initrd.img {}", baseline_options()),
    );
    boot_with_initrd_file(ctx, spec, fw)
}

/// The probe rows, as data.
fn probe_rows() -> Vec<Row> {
    use Firmware::{Ovmf2022, Ovmf2025StrictNx, Seabios};
    use Initrd::{A, B};
    let marked = |s: &str| format!("console=ttyS0 {MARKER}{s}");
    let mut rows = Vec::new();
    // The bzImage entries' contract: QEMU `-kernel` on SeaBIOS enters the 16-bit entry, which goes
    // through the 32-bit one (its own page tables) into the firmware-less pipeline. No EFI
    // information at all, a VGA text screen_info, the BIOS e820 map, and W^X in the stub's own
    // page tables (the probe packed with `--protect-text`).
    let append = marked(" probe.firmware=bios");
    rows.push(Row {
        also: Some((
            "W^X in the stub's page tables, a VGA text screen",
            bios_facts,
        )),
        ..Row::new(
            "probe-qemu-kernel",
            Image::Packed {
                label: "probe-wx",
                args: words("--protect-text"),
            },
            Start::QemuKernel {
                initrd: Some(A),
                append: append.clone(),
            },
            Seabios,
            Cmdline::Words(words(&append)),
            &[A],
        )
    });
    for fw in BOTH_OVMF {
        // The EFI handover protocol: GRUB 2.06 `linuxefi` + `initrdefi`; the stub takes the
        // command line and initrd from GRUB's boot_params.
        let args = "console=ttyS0 probe.grub=linuxefi";
        rows.push(Row::new(
            "probe-grub-2.06-linuxefi",
            Image::Plain,
            Start::GrubLinuxefi {
                args: args.into(),
                initrd: A,
            },
            fw,
            Cmdline::Words(words(&format!("BOOT_IMAGE=/zboot/linux.efi {args}"))),
            &[A],
        ));
    }
    for fw in BOTH_OVMF {
        // LoadFile2's initrd (A) wins over every `initrd=`: the options name a decoy (B) and
        // systemd-boot adds its own `initrd=\zboot\initrd.img`.
        let options = marked(" initrd=\\decoy.img");
        rows.push(Row {
            files: vec![("decoy.img", B)],
            ..Row::new(
                "probe-sdboot",
                Image::Plain,
                Start::SystemdBoot {
                    initrd: Some(A),
                    options: options.clone(),
                },
                fw,
                Cmdline::Words(words(&options)),
                &[A],
            )
        });
    }
    for fw in BOTH_OVMF {
        // No load options: exactly the embedded command line, the embedded initrd.
        rows.push(Row::new(
            "probe-embedded-bare",
            Image::Embedded,
            Start::Bare,
            fw,
            Cmdline::Exact(embedded_cmdline()),
            &[A],
        ));
    }
    // `noinitrd` beats LoadFile2.
    let options = marked(" noinitrd");
    rows.push(Row::new(
        "probe-sdboot-noinitrd",
        Image::Plain,
        Start::SystemdBoot {
            initrd: Some(A),
            options: options.clone(),
        },
        Ovmf2025StrictNx,
        Cmdline::Words(words(&options)),
        &[],
    ));
    // An entry without an `initrd` line: the stub reads `initrd=/zboot/b.img` (written with `/`)
    // from its own volume. The strict-NX firmware has no shell: this is its `initrd=` row.
    let options = format!("console=ttyS0 initrd=/zboot/b.img {MARKER} efi=debug");
    rows.push(Row {
        files: vec![("zboot/b.img", B)],
        ..Row::new(
            "probe-sdboot-initrd-option",
            Image::Plain,
            Start::SystemdBoot {
                initrd: None,
                options: options.clone(),
            },
            Ovmf2025StrictNx,
            Cmdline::Words(words(&options)),
            &[B],
        )
    });
    // Every stub variant the packer embeds (one per codec) reaches the kernel.
    for codec in Codec::ALL {
        let cmdline = marked(&format!(" probe.codec={}", codec.name()));
        rows.push(Row::new(
            codec_label(codec),
            Image::Packed {
                label: codec_label(codec),
                args: vec![
                    "--codec".into(),
                    codec.name().into(),
                    "--cmdline".into(),
                    cmdline.clone(),
                ],
            },
            Start::Bare,
            Ovmf2025StrictNx,
            Cmdline::Exact(cmdline),
            &[],
        ));
    }
    // The UEFI shell (no LoadFile2): `initrd=` files from the image's volume; two are
    // concatenated in order (one in a subdirectory, written with `/`).
    let shell = |label, image, args: String, files, cmdline, initrd: &[Initrd]| Row {
        files,
        ..Row::new(
            label,
            image,
            Start::Shell { args },
            Ovmf2022,
            cmdline,
            initrd,
        )
    };
    let args = format!("initrd=\\initrd.img console=ttyS0 {MARKER}");
    rows.push(shell(
        "probe-shell-initrd",
        Image::Plain,
        args.clone(),
        vec![("initrd.img", A)],
        Cmdline::Words(words(&args)),
        &[A],
    ));
    let args = format!("initrd=\\b.img console=ttyS0 initrd=/sub/a.img {MARKER}");
    rows.push(shell(
        "probe-shell-two-initrds",
        Image::Plain,
        args.clone(),
        vec![("b.img", B), ("sub/a.img", A)],
        Cmdline::Words(words(&args)),
        &[B, A],
    ));
    // Over the embedded command line and initrd (A): the embedded line first, the shell's
    // arguments appended; an `initrd=` file (B) beats the embedded initrd, `noinitrd` both.
    for (label, args, initrd) in [
        (
            "probe-shell-embedded-override",
            "initrd=\\b.img probe.loader=1",
            &[B][..],
        ),
        ("probe-shell-noinitrd", "initrd=\\b.img noinitrd", &[]),
    ] {
        let mut want = words(&embedded_cmdline());
        want.extend(words(args));
        rows.push(shell(
            label,
            Image::Embedded,
            args.into(),
            vec![("b.img", B)],
            Cmdline::Words(want),
            initrd,
        ));
    }
    rows
}

/// `probe-codec-<codec>-bare`.
fn codec_label(codec: Codec) -> &'static str {
    match codec {
        Codec::Zstd => "probe-codec-zstd-bare",
        Codec::Xz => "probe-codec-xz-bare",
        Codec::Gzip => "probe-codec-gzip-bare",
        Codec::Lz4 => "probe-codec-lz4-bare",
        Codec::None => "probe-codec-none-bare",
    }
}

/// The BIOS boot's extra facts: text r-x and data rw- in the stub's own page tables, the BIOS
/// text screen.
fn bios_facts(p: &ProbeReport) -> Result<()> {
    let attrs = ["text_attr", "rodata_attr", "data_attr"].map(|k| p.get(k).unwrap_or("?"));
    ensure!(
        attrs == ["r-x", "rw-", "rw-"],
        "text/rodata/data {attrs:?} in the stub's own page tables, want r-x, rw-, rw-"
    );
    ensure!(
        p.get("video_type") == Some("0x1"),
        "video_type={:?}, want the BIOS text screen (0x1)",
        p.get("video_type")
    );
    Ok(())
}

pub fn tests() -> Vec<BootTest> {
    let mut rows: Vec<BootTest> = probe_rows().into_iter().map(Row::test).collect();
    rows.push(on(
        "probe-shell-missing-initrd",
        Firmware::Ovmf2022,
        probe_shell_missing_initrd,
    ));
    // Debian's vmlinux, every codec on strict NX 2025.02; zstd and xz on 2022.11.
    let vmlinux_codecs: [(Firmware, &[Codec]); 2] = [
        (Firmware::Ovmf2025StrictNx, &Codec::ALL),
        (Firmware::Ovmf2022, &[Codec::Zstd, Codec::Xz]),
    ];
    for (fw, codecs) in vmlinux_codecs {
        rows.extend(codecs.iter().map(|&codec| {
            BootTest::new(
                format!("linux-vmlinux-{}-sdboot-{fw}", codec.name()),
                move |ctx| linux_vmlinux_sdboot(ctx, codec.name(), fw),
            )
        }));
    }
    rows.extend([
        on(
            "linux-vmlinux-zstd-shell-initrd",
            Firmware::Ovmf2022,
            linux_vmlinux_shell,
        ),
        on(
            "linux-vmlinux-zstd-no-bmi2-sdboot",
            Firmware::Ovmf2025StrictNx,
            linux_vmlinux_no_bmi2,
        ),
        on(
            "linux-vmlinux-zstd-sdboot-initrd-option",
            Firmware::Ovmf2025StrictNx,
            linux_vmlinux_sdboot_initrd_option,
        ),
        on(
            "packed-embedded-cmdline-initrd-bare",
            Firmware::Ovmf2022,
            |ctx, row| super::foundation::packed_embedded_bare(ctx, row.fw),
        ),
    ]);
    rows
}

//! Legacy boot protocols (issue 13): kexec and QEMU's direct kernel boot.
//!
//! * `kexec-*` / `kdump-*`: the first kernel is Debian's 6.1 kernel packed with the default
//!   codec, booted through systemd-boot with `zboot.kexec=<mode>`; its initrd is the test
//!   initramfs with an overlay archive appended ([`kexec_initrd`]): Debian's `/sbin/kexec` and
//!   its libraries, `/kexec/image` (the second kernel), `/kexec/initrd` (the test initramfs) and
//!   `/kexec/append` (the second kernel's command line). After its report the init loads the
//!   second kernel with kexec-tools (`file`: `kexec -s -l` = kexec_file_load, `load`: `kexec -c
//!   -l` = kexec_load, `crash`: `kexec -s -p` into the `crashkernel=` region) and starts it
//!   (`kexec -e`, or a forced crash through sysrq). The second kernel's report must follow in the
//!   same serial log with the second command line (`zboot.stage=2` and its own marker, not the
//!   first kernel's). Debian's bzImage as the second kernel proves the harness; our image as the
//!   second kernel is what the stub's 64-bit bzImage entry (+0x200 of the protected-mode part)
//!   must boot.
//! * `qemu-kernel-*`: `-kernel IMAGE -initrd FILE -append LINE` without any disk: on SeaBIOS
//!   (QEMU's option ROM runs the 16-bit setup entry; reference row with Debian's bzImage) and on
//!   OVMF (the firmware takes the files from fw_cfg and starts the kernel itself).

use super::*;
use crate::report::InitReport;
use crate::tools::{KEXEC_225, KexecSet};
use std::time::Duration;

/// Words of the second kernel's command line: the stage and its own marker (the first kernel
/// has [`MARKER`]; the second must not).
const STAGE2: &str = "zboot.stage=2";
const MARKER2: &str = "zboot.marker2=b83e1d";
/// The first kernel's crash-kernel reservation for the kdump rows.
const CRASHKERNEL: &str = "crashkernel=256M";
/// The stub's error line prefix (stub/src/console.rs).
const STUB_ERROR: &str = "zboot: error: ";

/// How the first kernel's init starts the second (`zboot.kexec=<mode>`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `kexec -s -l` (kexec_file_load: the running kernel's bzImage64 loader), `kexec -e`.
    File,
    /// `kexec -c -l` (kexec_load: kexec-tools' own bzImage64 loader and purgatory), `kexec -e`.
    Load,
    /// `kexec -s -p` into the `crashkernel=` region, then `echo c > /proc/sysrq-trigger`.
    Crash,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::File => "file",
            Mode::Load => "load",
            Mode::Crash => "crash",
        }
    }
}

/// The second kernel (or, for QEMU's `-kernel`, the only one).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// Debian's own bzImage (the reference: boots through kexec today).
    BzImage,
    /// Our image of the same kernel (default codec).
    Zboot,
    /// Our image with one byte in the middle of its compressed stream flipped: the stub must
    /// say `zboot: error:` and no kernel may start.
    ZbootDamaged,
}

/// The packed image of Debian's 6.1 kernel the rows share (the same one as the loader rows).
fn packed(ctx: &Ctx) -> Result<PathBuf> {
    let fx = ctx.fixtures()?;
    ctx.pack("packed-bzimage", &fx.kernel.vmlinuz, &[])
}

/// File offset and length of the compressed stream of a packed image (`.zpayld` raw data after
/// the payload header).
fn compressed_stream(pe: &[u8]) -> Result<(usize, usize)> {
    let le = |o: usize, n: usize| -> Result<usize> {
        let b = pe.get(o..o + n).context("PE headers truncated")?;
        Ok(b.iter().rev().fold(0usize, |v, &x| (v << 8) | x as usize))
    };
    let nt = le(0x3c, 4)?;
    ensure!(pe.get(nt..nt + 4) == Some(b"PE\0\0"), "no PE signature");
    let table = nt + 24 + le(nt + 20, 2)?;
    for i in 0..le(nt + 6, 2)? {
        let s = table + i * 40;
        if pe.get(s..s + 8) == Some(b".zpayld\0") {
            let (vsize, raw) = (le(s + 8, 4)?, le(s + 20, 4)?);
            let payload = pe.get(raw..raw + vsize).context(".zpayld past the file")?;
            let h = zboot_format::header::PayloadHeader::parse(payload)
                .map_err(|e| anyhow!("payload header: {e}"))?;
            return Ok((
                raw + zboot_format::header::HEADER_SIZE,
                h.compressed_size as usize,
            ));
        }
    }
    bail!("no .zpayld section")
}

/// The second kernel's file.
fn second_image(ctx: &Ctx, second: Kernel) -> Result<PathBuf> {
    let fx = ctx.fixtures()?;
    Ok(match second {
        Kernel::BzImage => fx.kernel.vmlinuz.clone(),
        Kernel::Zboot => packed(ctx)?,
        Kernel::ZbootDamaged => {
            let good = packed(ctx)?;
            let mut bytes = std::fs::read(&good)?;
            let (at, len) = compressed_stream(&bytes)?;
            let off = at + len / 2;
            bytes[off] ^= 0x10;
            let out = qemu::target_dir().join("boot-tests/kexec/damaged-stream-middle.efi");
            std::fs::create_dir_all(out.parent().unwrap())?;
            std::fs::write(&out, &bytes)?;
            println!(
                "    second kernel: {} with bit 4 of byte {off:#x} (middle of the compressed stream) flipped",
                good.display()
            );
            out
        }
    })
}

/// The first kernel's initrd: the test initramfs followed by an uncompressed archive holding
/// `/sbin/kexec` of `set` with its loader and libraries, `/kexec/image` = `image`,
/// `/kexec/initrd` = the test initramfs and `/kexec/append` = `append`.
fn kexec_initrd(
    ctx: &Ctx,
    name: &str,
    set: &KexecSet,
    image: &std::path::Path,
    append: &str,
) -> Result<PathBuf> {
    let fx = ctx.fixtures()?;
    let tools = fx.kexec(set)?;
    let mut files: Vec<(String, u32, Vec<u8>)> = Vec::new();
    for (guest, host) in tools.guest_files()? {
        let data = std::fs::read(&host).with_context(|| format!("reading {}", host.display()))?;
        files.push((guest, 0o755, data));
    }
    files.push(("kexec/image".into(), 0o644, std::fs::read(image)?));
    files.push(("kexec/initrd".into(), 0o644, std::fs::read(&fx.initramfs)?));
    files.push(("kexec/append".into(), 0o644, append.as_bytes().to_vec()));
    let mut initrd = std::fs::read(&fx.initramfs)?;
    // The kernel takes an uncompressed archive only at an offset that is a multiple of 4
    // (init/initramfs.c skips zeros between archives): pad the gzip member.
    initrd.resize(initrd.len().next_multiple_of(512), 0);
    initrd.extend(crate::initramfs::overlay(&files));
    let out = qemu::target_dir().join(format!("boot-tests/kexec/{name}-initrd.img"));
    std::fs::create_dir_all(out.parent().unwrap())?;
    std::fs::write(&out, &initrd)?;
    println!(
        "    first initrd {} ({} bytes): kexec-tools {}, /kexec/image = {}",
        out.display(),
        initrd.len(),
        tools.version,
        image.display()
    );
    Ok(out)
}

/// The part of the log after the first line containing `marker` (the whole log if none).
fn log_after<'a>(log: &'a str, marker: &str) -> Option<&'a str> {
    log.find(marker).map(|i| &log[i..])
}

/// One kexec row: boot the packed kernel through systemd-boot on `fw` with `zboot.kexec=<mode>`;
/// its init loads and starts `second`; check both kernels' reports (or, for a damaged second
/// image, the stub's error line and no second kernel).
fn kexec_row(ctx: &Ctx, name: &str, mode: Mode, second: Kernel, fw: Firmware) -> Result<()> {
    let fx = ctx.fixtures()?;
    let first = packed(ctx)?;
    let image = second_image(ctx, second)?;
    let append = format!("console=ttyS0 {STAGE2} {MARKER2}");
    let initrd = kexec_initrd(ctx, name, &KEXEC_225, &image, &append)?;
    let mut options = format!("{} zboot.kexec={}", baseline_options(), mode.arg());
    if mode == Mode::Crash {
        options.push_str(&format!(" {CRASHKERNEL}"));
    }
    let mut spec = BootSpec::systemd_boot(name, fw, first, Some(initrd), options);
    // Two boots: the default timeout covers both; a kernel panic of the first kernel is the
    // point of the kdump rows, not a reason to stop.
    if mode == Mode::Crash {
        spec.stop_on.clear();
    }
    if second == Kernel::ZbootDamaged {
        spec.stop_on.push(STUB_ERROR.into());
    }
    let out = ctx.boot(&spec)?;
    let ctx_log = || format!("(log {}):\n{}", out.log_path.display(), out.log_tail(30));
    let reports = InitReport::parse_all(&out.log);

    // The first kernel reported, with its own command line, and kexec loaded the second kernel.
    let r1 = reports
        .first()
        .ok_or_else(|| anyhow!("the first kernel did not report {}", ctx_log()))?;
    ensure!(
        r1.end && r1.cmdline_has(MARKER),
        "first report incomplete or without {MARKER} (cmdline {:?}) {}",
        r1.cmdline,
        ctx_log()
    );
    if let Some(e) = r1.raw.get("kexec_error") {
        bail!(
            "kexec failed in the first kernel: {e}; dmesg: {} {}",
            r1.raw.get("kexec_dmesg").map(String::as_str).unwrap_or(""),
            ctx_log()
        );
    }
    let started = if mode == Mode::Crash {
        "ZBOOT-INIT kexec_crash=1"
    } else {
        "ZBOOT-INIT kexec_exec=1"
    };
    let after = log_after(&out.log, started).ok_or_else(|| {
        anyhow!(
            "the first kernel never started the second ({started:?} missing) {}",
            ctx_log()
        )
    })?;
    println!(
        "    first kernel: {} -> {}",
        r1.raw.get("kexec_load").map(String::as_str).unwrap_or("?"),
        started
    );

    if second == Kernel::ZbootDamaged {
        let err = after
            .lines()
            .find_map(|l| l.find(STUB_ERROR).map(|i| l[i..].trim_end()))
            .ok_or_else(|| {
                anyhow!(
                    "no {STUB_ERROR:?} line after kexec -e (timed out {}) {}",
                    out.timed_out,
                    ctx_log()
                )
            })?;
        ensure!(
            reports.len() == 1 && !after.contains("Linux version"),
            "a kernel started from the damaged image {}",
            ctx_log()
        );
        println!("    stub: {err}");
        return Ok(());
    }

    // The second kernel reported with the command line from /kexec/append (so it is the second
    // kernel, and its initrd's init ran).
    ensure!(
        reports.len() == 2,
        "{} report(s) in the log, want 2 (first and second kernel; exit {:?}, timed out {}) {}",
        reports.len(),
        out.exit_code,
        out.timed_out,
        ctx_log()
    );
    let r2 = &reports[1];
    let mut problems = Vec::new();
    if !r2.end {
        problems.push("report incomplete (no end=1)".to_string());
    }
    if !(r2.cmdline_has(STAGE2) && r2.cmdline_has(MARKER2)) || r2.cmdline_has(MARKER) {
        problems.push(format!(
            "cmdline {:?}: want {STAGE2} {MARKER2}, not {MARKER}",
            r2.cmdline
        ));
    }
    if r2.release.as_deref() != Some(fx.kernel.release.as_str()) {
        problems.push(format!(
            "release {:?}, want {}",
            r2.release, fx.kernel.release
        ));
    }
    // The second kernel runs in the paging mode the first one did (kexec enters it with the
    // first kernel's paging: 5-level on `-cpu max`).
    if r2.five_level_paging() != r1.five_level_paging() {
        problems.push(format!(
            "5-level paging {:?}, the first kernel {:?} (VmallocTotal)",
            r2.five_level_paging(),
            r1.five_level_paging()
        ));
    }
    if mode != Mode::Crash {
        // Same machine, same memory: MemTotal within 1% of the first kernel's.
        let (a, b) = (r1.memtotal_kb.unwrap_or(0), r2.memtotal_kb.unwrap_or(0));
        if a.abs_diff(b) * 100 > a {
            problems.push(format!(
                "MemTotal {b} kB, the first kernel {a} kB (> 1% apart)"
            ));
        }
    }
    if mode == Mode::Crash {
        // The crash kernel runs in the reservation and gets the old kernel's core header.
        if !r2
            .cmdline
            .as_deref()
            .is_some_and(|c| c.contains("elfcorehdr="))
        {
            problems.push(format!("cmdline {:?} lacks elfcorehdr=", r2.cmdline));
        }
        if r2.memtotal_kb.is_none_or(|m| m >= 256 * 1024) {
            problems.push(format!(
                "MemTotal {:?} kB: not inside the 256 MiB reservation",
                r2.memtotal_kb
            ));
        }
    }
    ensure!(
        problems.is_empty(),
        "second kernel: {} {}",
        problems.join("; "),
        ctx_log()
    );
    println!(
        "    second kernel: cmdline {:?}, MemTotal {} kB; first report after {:.1} s, both in {:.1} s",
        r2.cmdline.as_deref().unwrap_or(""),
        r2.memtotal_kb.unwrap_or(0),
        out.time_to_report.unwrap_or_default().as_secs_f64(),
        out.duration.as_secs_f64()
    );
    Ok(())
}

/// QEMU's direct kernel boot of `image` (Debian's bzImage or our image) with the test initramfs
/// and the marker line on `fw`.
fn qemu_kernel(ctx: &Ctx, name: &str, kernel: Kernel, fw: Firmware) -> Result<()> {
    let fx = ctx.fixtures()?;
    let kernel = second_image(ctx, kernel)?;
    let mode = BootMode::Direct {
        kernel,
        initrd: Some(fx.initramfs.clone()),
        append: baseline_options(),
    };
    let mut spec = BootSpec::new(name, fw, mode);
    spec.timeout = spec.timeout.min(Duration::from_secs(90));
    if fw == Firmware::Seabios {
        let (bios, version) = fx.seabios()?;
        println!("    SeaBIOS {version} ({})", bios.display());
    }
    let out = ctx.boot(&spec)?;
    if fw.is_uefi() {
        let r = check_linux_report(ctx, &out)?;
        // OVMF's LoadImage path (X86QemuLoadImageLib) appends `initrd=initrd` for an initrd;
        // its legacy bzImage path does not.
        println!(
            "    OVMF started it {}",
            if r.cmdline_has("initrd=initrd") {
                "with LoadImage (`initrd=initrd` appended)"
            } else {
                "without appending `initrd=initrd` (legacy bzImage path?)"
            }
        );
        return Ok(());
    }
    // BIOS: no EFI (no runtime, no EFI framebuffer), everything else as usual.
    let r = out.complete_report()?;
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
    if r.efi_runtime != Some(false) || !r.efi_entries.is_empty() {
        problems.push(format!(
            "EFI seen on SeaBIOS (efi_runtime {:?}, entries {:?})",
            r.efi_runtime, r.efi_entries
        ));
    }
    if r.acpi_tables.is_empty() {
        problems.push("no ACPI tables".into());
    }
    if !r
        .memtotal_kb
        .is_some_and(|m| (1_500_000..=2_097_152).contains(&m))
    {
        problems.push(format!("MemTotal {:?} kB", r.memtotal_kb));
    }
    ensure!(
        problems.is_empty(),
        "{}: {} (log {})",
        out.name,
        problems.join("; "),
        out.log_path.display()
    );
    Ok(())
}

/// A kexec row: the name is written once.
macro_rules! kexec_row {
    ($name:literal, $mode:expr, $second:expr, $fw:expr) => {
        BootTest {
            name: $name,
            run: |ctx| kexec_row(ctx, $name, $mode, $second, $fw),
        }
    };
}

/// A QEMU `-kernel` row.
macro_rules! qemu_kernel_row {
    ($name:literal, $kernel:expr, $fw:expr) => {
        BootTest {
            name: $name,
            run: |ctx| qemu_kernel(ctx, $name, $kernel, $fw),
        }
    };
}

pub const TESTS: &[BootTest] = &[
    // Reference rows: Debian's bzImage as the second kernel (the harness works).
    kexec_row!(
        "kexec-file-bzimage-ovmf2025-strict-nx",
        Mode::File,
        Kernel::BzImage,
        Firmware::Ovmf2025StrictNx
    ),
    kexec_row!(
        "kexec-load-bzimage-ovmf2025-strict-nx",
        Mode::Load,
        Kernel::BzImage,
        Firmware::Ovmf2025StrictNx
    ),
    // Our image as the second kernel: the stub's 64-bit bzImage entry.
    kexec_row!(
        "kexec-file-zboot-ovmf2025-strict-nx",
        Mode::File,
        Kernel::Zboot,
        Firmware::Ovmf2025StrictNx
    ),
    kexec_row!(
        "kexec-load-zboot-ovmf2025-strict-nx",
        Mode::Load,
        Kernel::Zboot,
        Firmware::Ovmf2025StrictNx
    ),
    kexec_row!(
        "kdump-zboot-ovmf2025-strict-nx",
        Mode::Crash,
        Kernel::Zboot,
        Firmware::Ovmf2025StrictNx
    ),
    kexec_row!(
        "kexec-file-damaged-zboot-ovmf2025-strict-nx",
        Mode::File,
        Kernel::ZbootDamaged,
        Firmware::Ovmf2025StrictNx
    ),
    qemu_kernel_row!(
        "qemu-kernel-bzimage-seabios",
        Kernel::BzImage,
        Firmware::Seabios
    ),
    qemu_kernel_row!(
        "qemu-kernel-zboot-ovmf2025-strict-nx",
        Kernel::Zboot,
        Firmware::Ovmf2025StrictNx
    ),
    qemu_kernel_row!(
        "qemu-kernel-zboot-ovmf2022",
        Kernel::Zboot,
        Firmware::Ovmf2022
    ),
];

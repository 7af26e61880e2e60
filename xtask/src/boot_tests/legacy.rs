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
//!   must boot, and with `load32` (`kexec -c -l -t bzImage`: kexec-tools' 32-bit loader) its
//!   32-bit entry at `code32_start`. `file-signed` runs under enforcing Secure Boot (lockdown):
//!   the unsigned image must be refused, the snakeoil-signed one booted.
//! * `qemu-kernel-*`: `-kernel IMAGE -initrd FILE -append LINE` without any disk: on SeaBIOS
//!   (QEMU's option ROM runs the 16-bit setup entry; reference row with Debian's bzImage) and on
//!   OVMF (the firmware takes the files from fw_cfg and starts the kernel itself).
//!
//! Which of the stub's entries ran is read from its `efi=debug` lines ([`entry_seen`]).

use super::*;
use crate::report::InitReport;
use crate::tools::{KEXEC_225, KEXEC_229, KexecSet};
use std::time::Duration;

/// Words of the second kernel's command line: the stage and its own marker (the first kernel
/// has [`MARKER`]; the second must not).
const STAGE2: &str = "zboot.stage=2";
const MARKER2: &str = "zboot.marker2=b83e1d";
/// The kernel's boot message when boot_params says Secure Boot (security/lockdown/lockdown.c,
/// through Debian's patch locking down EFI Secure Boot boots).
const LOCKED_DOWN: &str = "Kernel is locked down from EFI Secure Boot";
/// The kernel's reason for refusing an unsigned image under lockdown (kernel/kexec_file.c).
const SIG_REFUSED: &str = "signature verification failed";
/// The first kernel's crash-kernel reservation for the kdump rows.
const CRASHKERNEL: &str = "crashkernel=256M";
/// The stub's error line prefix (stub/src/console.rs).
const STUB_ERROR: &str = "zboot: error: ";
/// What the stub's error says of a payload that fails its stream check (stub/src/error.rs).
const HASH_ERROR: &str = "does not match its checksum";

/// The stub's `efi=debug` line of its bzImage entries, 32- and 64-bit (stub/src/platform/bare/mod.rs).
const BZIMAGE_ENTRY: &str = "zboot: bzImage entry: ";
/// Printed on the bzImage path only when the stub built its own page tables, i.e. when it was
/// entered through the 32-bit protocol (stub/src/platform/bare/own_tables.rs, `open_kernel`); the 64-bit protocol
/// runs on the loader's identity map.
const OWN_TABLES: &str = "zboot: kernel region executable as it needs";
/// The stub's `efi=debug` line of the EFI handover entry (stub/src/platform/efi/mod.rs).
const HANDOVER: &str = "zboot: EFI handover: ";
/// The stub's `efi=debug` command line line, printed on every path.
const STUB_CMDLINE: &str = "zboot: cmdline: ";

/// One of the stub's entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Entry {
    /// The PE entry (LoadImage/StartImage, or a loader's own PE loader).
    Pe,
    /// EFI handover protocol (`handover_offset`).
    Handover,
    /// bzImage 32-bit protocol at `code32_start` (also the tail of the 16-bit entry).
    Bzimage32,
    /// bzImage 64-bit protocol at +0x200 of the protected-mode part.
    Bzimage64,
}

/// Which entry the stub's `efi=debug` lines in `log` show (`None`: no stub line at all, so no
/// `efi=debug` or no stub).
pub(super) fn entry_seen(log: &str) -> Option<Entry> {
    Some(if log.contains(HANDOVER) {
        Entry::Handover
    } else if log.contains(BZIMAGE_ENTRY) {
        if log.contains(OWN_TABLES) {
            Entry::Bzimage32
        } else {
            Entry::Bzimage64
        }
    } else if log.contains(STUB_CMDLINE) {
        Entry::Pe
    } else {
        return None;
    })
}

/// `log` shows the stub entered through `want` (under `efi=debug`).
pub(super) fn check_entry(log: &str, want: Entry) -> Result<()> {
    let got = entry_seen(log);
    ensure!(
        got == Some(want),
        "the stub's efi=debug lines show entry {got:?}, want {want:?}"
    );
    say!(
        "    stub entry: {want:?} ({})",
        log.lines()
            .find(|l| l.contains(BZIMAGE_ENTRY) || l.contains(HANDOVER))
            .map(str::trim)
            .unwrap_or("no bzImage or handover line: the PE entry")
    );
    Ok(())
}

/// The report runs in 5-level paging (VmallocTotal), as the kernel does on the EFI path:
/// `-cpu max` has LA57 and Debian's kernel supports it. Entered through the 32-bit protocol
/// (or the 16-bit one, which ends in it) the stub builds its own page tables, 4-level, and
/// switches to 5-level through its trampoline before the kernel (the `efi=debug` line
/// `5-level paging: Enable via trampoline`; stub/src/platform/bare/mod.rs (bare.rs since 5b7bcff); before that
/// these entries left the kernel in 4-level paging).
pub(super) fn check_five_level(r: &InitReport) -> Result<()> {
    ensure!(
        r.five_level_paging() == Some(true),
        "5-level paging {:?} (VmallocTotal {:?} kB), want 5-level (-cpu max, a kernel with \
         5-level support)",
        r.five_level_paging(),
        r.vmalloc_total_kb
    );
    Ok(())
}

/// A kernel booted on SeaBIOS: complete report, the fixture's release, the marker on the
/// command line, no EFI (no runtime, no EFI framebuffer), ACPI, sane MemTotal.
pub(super) fn check_bios_report<'a>(ctx: &Ctx, out: &'a BootOutcome) -> Result<&'a InitReport> {
    let r = out.complete_report()?;
    let mut problems = super::identity_problems(ctx, r)?;
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
    Ok(r)
}

/// A damaged image's run: the stub's error line names the failed stream check and no kernel
/// started (no `Linux version`, no report) in `log` (the part after the image was started).
fn check_damaged(out: &BootOutcome, log: &str) -> Result<()> {
    let ctx_log = || format!("(log {}):\n{}", out.log_path.display(), out.log_tail(30));
    let err = log
        .lines()
        .find_map(|l| l.find(STUB_ERROR).map(|i| l[i..].trim_end()))
        .ok_or_else(|| {
            anyhow!(
                "no {STUB_ERROR:?} line (timed out {}) {}",
                out.timed_out,
                ctx_log()
            )
        })?;
    ensure!(
        err.contains(HASH_ERROR),
        "the stub's error does not name the {HASH_ERROR} check: {err:?} {}",
        ctx_log()
    );
    ensure!(
        !log.contains("Linux version") && !log.contains("ZBOOT-INIT release="),
        "a kernel started from the damaged image {}",
        ctx_log()
    );
    say!("    stub: {err}");
    Ok(())
}

/// How the first kernel's init starts the second (`zboot.kexec=<mode>`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `kexec -s -l` (kexec_file_load: the running kernel's bzImage64 loader), `kexec -e`.
    File,
    /// Under enforcing Secure Boot (the kernel in lockdown): `kexec -s -l` of the unsigned
    /// image must be refused, then [`Mode::File`] with the snakeoil-signed image.
    FileSigned,
    /// `kexec -c -l` (kexec_load: kexec-tools' own bzImage64 loader and purgatory), `kexec -e`.
    Load,
    /// `kexec -c -l -t bzImage` (kexec_load with kexec-tools' 32-bit bzImage loader: purgatory
    /// leaves long mode and enters `code32_start` in flat protected mode), `kexec -e`.
    Load32,
    /// `kexec -s -p` into the `crashkernel=` region, then `echo c > /proc/sysrq-trigger`.
    Crash,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::File => "file",
            Mode::FileSigned => "file-signed",
            Mode::Load => "load",
            Mode::Load32 => "load32",
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
    /// The probe kernel packed by zboot-pack: it checks the entry contract it was given.
    Probe,
}

/// The packed image of Debian's 6.1 kernel the rows share (the same one as the loader rows).
fn packed(ctx: &Ctx) -> Result<PathBuf> {
    let fx = ctx.fixtures()?;
    ctx.pack("packed-bzimage", &fx.kernel.vmlinuz, &[])
}

/// File offset and length of the compressed stream of a packed image (`.zpayld` raw data after
/// the payload header).
fn compressed_stream(pe: &[u8]) -> Result<(usize, usize)> {
    let secs = zboot_format::pe::SectionTable::parse(pe).map_err(|e| anyhow!("{e}"))?;
    let s = secs
        .find(zboot_format::PAYLOAD_SECTION_NAME)
        .context("no .zpayld section")?;
    let h = zboot_format::header::PayloadHeader::parse(secs.contents(&s))
        .map_err(|e| anyhow!("payload header: {e}"))?;
    Ok((
        s.pointer_to_raw_data as usize + zboot_format::header::HEADER_SIZE,
        h.compressed_size as usize,
    ))
}

/// The second kernel's file.
fn second_image(ctx: &Ctx, second: Kernel) -> Result<PathBuf> {
    let fx = ctx.fixtures()?;
    Ok(match second {
        Kernel::BzImage => fx.kernel.vmlinuz.clone(),
        Kernel::Zboot => packed(ctx)?,
        Kernel::Probe => super::probe::pack(ctx, "probe", &[])?,
        Kernel::ZbootDamaged => {
            let good = packed(ctx)?;
            let mut bytes = std::fs::read(&good)?;
            let (at, len) = compressed_stream(&bytes)?;
            let off = at + len / 2;
            bytes[off] ^= 0x10;
            let out = super::scratch().join("kexec/damaged-stream-middle.efi");
            std::fs::create_dir_all(out.parent().unwrap())?;
            std::fs::write(&out, &bytes)?;
            say!(
                "    second kernel: {} with bit 4 of byte {off:#x} (middle of the compressed stream) flipped",
                good.display()
            );
            out
        }
    })
}

/// The first kernel's initrd: the test initramfs followed by an uncompressed archive holding
/// `/sbin/kexec` of `set` with its loader and libraries, `images` ((path in the guest, file):
/// `kexec/image` and, for [`Mode::FileSigned`], `kexec/image-unsigned`), `/kexec/initrd` = the
/// test initramfs and `/kexec/append` = `append`.
fn kexec_initrd(
    ctx: &Ctx,
    name: &str,
    set: &KexecSet,
    images: &[(&str, PathBuf)],
    append: &str,
) -> Result<PathBuf> {
    let fx = ctx.fixtures()?;
    let tools = fx.kexec(set)?;
    let mut files: Vec<(String, u32, Vec<u8>)> = Vec::new();
    for (guest, host) in tools.guest_files()? {
        let data = std::fs::read(&host).with_context(|| format!("reading {}", host.display()))?;
        files.push((guest, 0o755, data));
    }
    for (guest, host) in images {
        files.push((guest.to_string(), 0o644, std::fs::read(host)?));
    }
    files.push(("kexec/initrd".into(), 0o644, std::fs::read(&fx.initramfs)?));
    files.push(("kexec/append".into(), 0o644, append.as_bytes().to_vec()));
    let mut initrd = std::fs::read(&fx.initramfs)?;
    // The kernel takes an uncompressed archive only at an offset that is a multiple of 4
    // (init/initramfs.c skips zeros between archives): pad the gzip member.
    initrd.resize(initrd.len().next_multiple_of(512), 0);
    initrd.extend(crate::initramfs::overlay(&files));
    let out = super::scratch().join(format!("kexec/{name}-initrd.img"));
    std::fs::create_dir_all(out.parent().unwrap())?;
    std::fs::write(&out, &initrd)?;
    say!(
        "    first initrd {} ({} bytes): kexec-tools {}, {}",
        out.display(),
        initrd.len(),
        tools.version,
        images
            .iter()
            .map(|(g, h)| format!("/{g} = {}", h.display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(out)
}

/// The part of the log after the first line containing `marker` (the whole log if none).
fn log_after<'a>(log: &'a str, marker: &str) -> Option<&'a str> {
    log.find(marker).map(|i| &log[i..])
}

/// One kexec row: boot the packed kernel through systemd-boot on `fw` with `zboot.kexec=<mode>`;
/// its init loads and starts `second` with kexec-tools of `set`; check both kernels' reports (or,
/// for a damaged second image, the stub's error line and no second kernel).
fn kexec_row(
    ctx: &Ctx,
    name: &str,
    mode: Mode,
    second: Kernel,
    fw: Firmware,
    set: &KexecSet,
) -> Result<()> {
    let fx = ctx.fixtures()?;
    let first = packed(ctx)?;
    let image = second_image(ctx, second)?;
    let mut images = vec![("kexec/image", image.clone())];
    if mode == Mode::FileSigned {
        // The first kernel (and systemd-boot) are signed by BootSpec::sign; the second image is
        // signed here, the unsigned one goes next to it.
        ensure!(fw.enforcing(), "{name}: {fw} does not enforce Secure Boot");
        let signed = super::scratch().join(format!("kexec/second-signed-{fw}.efi"));
        qemu::sign(fx, fw, &image, &signed)?;
        // The signed image with one byte of its compressed stream changed afterwards.
        let mut bytes = std::fs::read(&signed)?;
        let (at, len) = compressed_stream(&bytes)?;
        bytes[at + len / 2] ^= 0x10;
        let tampered = signed.with_file_name(format!("second-tampered-{fw}.efi"));
        std::fs::write(&tampered, &bytes)?;
        images = vec![("kexec/image", signed), ("kexec/image-tampered", tampered)];
        // The same image signed by pesign and osslsigncode: each must load too.
        for signer in super::signing::OTHER_SIGNERS {
            let by =
                super::scratch().join(format!("kexec/second-signed-by-{}-{fw}.efi", signer.name()));
            super::signing::sign_snakeoil(ctx, signer, &image, &by)?;
            images.push((signer.kexec_path(), by));
        }
        images.push(("kexec/image-unsigned", image));
    }
    // The 32-bit entry is told from the 64-bit one by the stub's efi=debug lines.
    let debug = match second {
        Kernel::Zboot if mode == Mode::Load32 => " efi=debug",
        Kernel::Probe => " probe.loader=kexec",
        _ => "",
    };
    let append = format!("console=ttyS0 {STAGE2} {MARKER2}{debug}");
    let initrd = kexec_initrd(ctx, name, set, &images, &append)?;
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
    say!(
        "    first kernel: {} -> {}",
        r1.raw.get("kexec_load").map(String::as_str).unwrap_or("?"),
        started
    );
    if mode == Mode::FileSigned {
        // Enforcing Secure Boot puts Debian's kernel in lockdown (integrity): kexec_file_load
        // then needs a PE signature the kernel trusts (for a bzImage: the platform keyring =
        // the firmware's db, which the snakeoil vars enrol), and kexec_load is refused.
        let lockdown = r1.raw.get("kexec_lockdown").map(String::as_str);
        let refused = r1.raw.get("kexec_refused").map(String::as_str);
        let tampered = r1.raw.get("kexec_refused_tampered").map(String::as_str);
        // In the init's (glob) order.
        let mut loaded: Vec<&str> = r1
            .raw
            .get("kexec_loaded_signed")
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default();
        loaded.sort_unstable();
        say!(
            "    first kernel: lockdown {lockdown:?}; unsigned image: {refused:?}; tampered signed image: {tampered:?}; loaded with kexec -s, signed by: sbsign (then booted), {}",
            loaded.join(", ")
        );
        let mut want: Vec<&str> = super::signing::OTHER_SIGNERS
            .iter()
            .map(|s| s.name())
            .collect();
        want.sort_unstable();
        ensure!(
            loaded == want,
            "kexec -s under lockdown loaded the images signed by {loaded:?}, want {want:?} {}",
            ctx_log()
        );
        ensure!(
            r1.secure_boot == Some(true),
            "the first kernel does not see Secure Boot enabled ({:?}) {}",
            r1.secure_boot,
            ctx_log()
        );
        ensure!(
            lockdown.is_some_and(|l| !l.contains("[none]") && l.contains('[')),
            "the first kernel is not locked down: lockdown {lockdown:?} {}",
            ctx_log()
        );
        // Refused for its signature (PEFILE: Unsigned PE binary; kexec_file: Enforced kernel
        // signature verification failed (-61)), not for anything else.
        ensure!(
            refused.is_some_and(|r| r.contains(SIG_REFUSED)),
            "the unsigned image was not refused for its signature ({SIG_REFUSED:?} missing): \
             {refused:?} {}",
            ctx_log()
        );
        // A signed image changed after signing: its Authenticode digest no longer matches.
        ensure!(
            tampered.is_some_and(|r| r.contains(SIG_REFUSED) || r.contains("Digest mismatch")),
            "the tampered signed image was not refused for its signature: {tampered:?} {}",
            ctx_log()
        );
    }

    if second == Kernel::ZbootDamaged {
        ensure!(reports.len() == 1, "a second report {}", ctx_log());
        return check_damaged(&out, after);
    }
    if second == Kernel::Probe {
        // The probe checks the 64-bit entry contract it got through the stub's bzImage entry
        // on kexec's identity map (EFI information passed on by kexec_file_load included),
        // with the appended line and the initrd.
        let initrd = std::fs::read(&fx.initramfs)?;
        super::probe::check(
            ctx,
            &out,
            &super::probe::Expect::words(&append, Some(&initrd)),
        )?;
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
    // The second kernel runs in the paging mode the first one did: kexec enters it with the
    // first kernel's paging (5-level on `-cpu max`), except through the 32-bit protocol, where
    // purgatory turns paging off and the stub's 32-bit entry switches to 5-level itself
    // ([`check_five_level`]).
    if mode == Mode::Load32
        && second == Kernel::Zboot
        && let Err(e) = check_entry(after, Entry::Bzimage32)
    {
        problems.push(format!("{e:#}"));
    }
    // EFI runtime services survive the kexec: kexec_file_load passes the EFI information on,
    // kexec-tools' bzImage64 loader does when the image declares XLF_EFI_KEXEC (the kernel's own
    // flag, which the setup header passes on). Its 32-bit loader never passes it
    // (`bzImage_support_efi_boot` is the 64-bit loader's), for any bzImage.
    if mode != Mode::Load32 && r2.efi_runtime != r1.efi_runtime {
        problems.push(format!(
            "EFI runtime {:?}, the first kernel {:?}",
            r2.efi_runtime, r1.efi_runtime
        ));
    }
    if r2.five_level_paging() != r1.five_level_paging() {
        problems.push(format!(
            "5-level paging {:?}, the first kernel {:?} (VmallocTotal)",
            r2.five_level_paging(),
            r1.five_level_paging()
        ));
    }
    // The signed kernel is locked down too: the stub passed the loader's Secure Boot state
    // (boot_params.secure_boot, which kexec_file_load copies from the first kernel) on.
    if mode == Mode::FileSigned && !after.contains(LOCKED_DOWN) {
        problems.push(format!("no {LOCKED_DOWN:?} from the second kernel"));
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
    say!(
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
    let image = second_image(ctx, kernel)?;
    // On SeaBIOS the stub's efi=debug lines show which entry ran.
    let stub_bios = kernel != Kernel::BzImage && !fw.is_uefi();
    let mut append = baseline_options();
    if stub_bios {
        append.push_str(" efi=debug");
    }
    let mode = BootMode::Direct {
        kernel: image,
        initrd: Some(fx.initramfs.clone()),
        append,
    };
    let mut spec = BootSpec::new(name, fw, mode);
    spec.timeout = spec.timeout.min(Duration::from_secs(90));
    if kernel == Kernel::ZbootDamaged {
        spec.stop_on.push(STUB_ERROR.into());
    }
    if fw == Firmware::Seabios {
        let (bios, version) = fx.seabios()?;
        say!("    SeaBIOS {version} ({})", bios.display());
    }
    let out = ctx.boot(&spec)?;
    if kernel == Kernel::ZbootDamaged {
        return check_damaged(&out, &out.log);
    }
    if fw.is_uefi() {
        let r = check_linux_report(ctx, &out)?;
        // OVMF's LoadImage path (X86QemuLoadImageLib) appends `initrd=initrd` for an initrd;
        // its legacy bzImage path does not.
        say!(
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
    let r = check_bios_report(ctx, &out)?;
    say!(
        "    VmallocTotal {} kB ({}-level paging)",
        r.vmalloc_total_kb.unwrap_or(0),
        if r.five_level_paging() == Some(true) {
            5
        } else {
            4
        }
    );
    if stub_bios {
        // QEMU's option ROM runs the 16-bit entry, which ends in the 32-bit one: the stub's own
        // page tables, then 5-level paging as the bzImage gets on SeaBIOS.
        check_entry(&out.log, Entry::Bzimage32)?;
        check_five_level(r)?;
    }
    Ok(())
}

/// A kexec row with Debian 12's kexec-tools, named `<label>-<fw>`.
fn kexec(label: &str, mode: Mode, second: Kernel, fw: Firmware) -> BootTest {
    kexec_with(label, mode, second, fw, &KEXEC_225)
}

/// A kexec row with the kexec-tools of `set`.
fn kexec_with(
    label: &str,
    mode: Mode,
    second: Kernel,
    fw: Firmware,
    set: &'static KexecSet,
) -> BootTest {
    super::on(label, fw, move |ctx, row| {
        kexec_row(ctx, &row.name(), mode, second, fw, set)
    })
}

/// A QEMU `-kernel` row, named `<label>-<fw>`.
fn qemu_kernel_row(label: &str, kernel: Kernel, fw: Firmware) -> BootTest {
    super::on(label, fw, move |ctx, row| {
        qemu_kernel(ctx, &row.name(), kernel, fw)
    })
}

pub fn tests() -> Vec<BootTest> {
    vec![
        // Reference rows: Debian's bzImage as the second kernel (the harness works).
        kexec(
            "kexec-file-bzimage",
            Mode::File,
            Kernel::BzImage,
            Firmware::Ovmf2025StrictNx,
        ),
        kexec(
            "kexec-load-bzimage",
            Mode::Load,
            Kernel::BzImage,
            Firmware::Ovmf2025StrictNx,
        ),
        // Our image as the second kernel: the stub's 64-bit bzImage entry.
        kexec(
            "kexec-file-zboot",
            Mode::File,
            Kernel::Zboot,
            Firmware::Ovmf2025StrictNx,
        ),
        kexec(
            "kexec-load-zboot",
            Mode::Load,
            Kernel::Zboot,
            Firmware::Ovmf2025StrictNx,
        ),
        // kexec-tools' 32-bit bzImage loader: the stub's 32-bit entry.
        kexec(
            "kexec-load32-zboot",
            Mode::Load32,
            Kernel::Zboot,
            Firmware::Ovmf2025StrictNx,
        ),
        // Debian 13's kexec-tools 2.0.29 (its own bzImage64 loader and purgatory).
        kexec_with(
            "kexec-load-zboot-kexec229",
            Mode::Load,
            Kernel::Zboot,
            Firmware::Ovmf2025StrictNx,
            &KEXEC_229,
        ),
        // Secure Boot: a locked-down first kernel refuses the unsigned image, boots the signed one.
        kexec(
            "kexec-file-signed-zboot",
            Mode::FileSigned,
            Kernel::Zboot,
            Firmware::Ovmf2025StrictNxSecureBoot,
        ),
        // The probe kernel through the stub's 64-bit bzImage entry: the entry contract.
        kexec(
            "probe-kexec-file",
            Mode::File,
            Kernel::Probe,
            Firmware::Ovmf2025StrictNx,
        ),
        kexec(
            "kdump-zboot",
            Mode::Crash,
            Kernel::Zboot,
            Firmware::Ovmf2025StrictNx,
        ),
        kexec(
            "kexec-file-damaged-zboot",
            Mode::File,
            Kernel::ZbootDamaged,
            Firmware::Ovmf2025StrictNx,
        ),
        qemu_kernel_row("qemu-kernel-bzimage", Kernel::BzImage, Firmware::Seabios),
        // Our image on SeaBIOS: the 16-bit entry (then the 32-bit one).
        qemu_kernel_row("qemu-kernel-zboot", Kernel::Zboot, Firmware::Seabios),
        qemu_kernel_row(
            "qemu-kernel-damaged-zboot",
            Kernel::ZbootDamaged,
            Firmware::Seabios,
        ),
        qemu_kernel_row(
            "qemu-kernel-zboot",
            Kernel::Zboot,
            Firmware::Ovmf2025StrictNx,
        ),
        qemu_kernel_row("qemu-kernel-zboot", Kernel::Zboot, Firmware::Ovmf2022),
    ]
}

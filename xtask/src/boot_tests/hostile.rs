//! Hostile loaders, for real: a first kernel (Debian's bzImage through systemd-boot) whose init
//! runs `lying-kexec` (fixtures/initramfs/lying-kexec.c, built here with the host's gcc): it
//! builds kexec_load(2)'s segments itself — our image's protected-mode part, a boot_params page
//! it crafts, a purgatory that enters the 64-bit entry — with one field a lie, and reboots into
//! it. Each lie must end in the stub's one `zboot: error:` line naming the problem, no kernel
//! output after it, and a halt (QEMU still running, not reset). The honest rows, built the same
//! way, boot to init: our image and Debian's bzImage, so a lie row that is refused proves the
//! stub refused it, not that the loader is broken.
//!
//! The EFI handover rows do the same through `hostile-handover` (fixtures/hostile-handover, a
//! Rust EFI application built here for x86_64-unknown-uefi), started by systemd-boot: it loads
//! the image as GRUB's `linuxefi` does and calls its 64-bit handover entry with a boot_params it
//! crafts. A lie must end in the stub's error line and an error status back to the app, which
//! prints it; the honest rows boot to init.

use super::*;
use std::sync::OnceLock;

/// The stub's error line prefix (stub/src/console.rs).
const STUB_ERROR: &str = "zboot: error: ";
/// The second kernel's stage word and marker.
const STAGE2: &str = "zboot.stage=2";
const MARKER2: &str = "zboot.marker2=7c41e0";

/// A lie of `lying-kexec` and the words the stub's error line must hold for it.
pub(super) const LIES: &[(&str, &str)] = &[
    (
        "cmdline-outside-ram",
        "loader's command line at 0xfed00000 is not memory it allocated",
    ),
    (
        "cmdline-above-ram",
        "loader's command line at 0x10010001000 is not memory it allocated",
    ),
    ("cmdline-unterminated", "kernel command line refused: "),
    (
        "cmdline-in-image",
        "loader's command line 0x2100000+0x1 overlaps our image 0x2000000..",
    ),
    ("initrd-outside-ram", "loader's initrd 0xfed00000+"),
    (
        "initrd-over-image",
        "loader's initrd 0x2100000+0x100000 overlaps our image 0x2000000..",
    ),
    (
        "initrd-over-boot-params",
        "loader's initrd 0x10000000+0x2000 overlaps its boot_params 0x10000000..0x10001000",
    ),
    (
        "boot-params-in-image",
        "loader's boot_params 0x2200000+0x1000 overlaps our image 0x2000000..",
    ),
    (
        "initrd-past-ram",
        "loader's initrd 0x30000000+0xfffff000 is not memory it allocated",
    ),
    (
        "initrd-wraps",
        "loader's initrd 0xfffffffffffff000+0x2000 is not memory it allocated",
    ),
    (
        "e820-too-many",
        "loader's e820 map: 200 entries in the zero page, which holds 128",
    ),
    (
        "e820-empty",
        "loader's e820 map: no entries in the zero page",
    ),
    ("e820-no-room", "no free RAM in the e820 map for"),
    (
        "e820-image-reserved",
        "loader put our image at 0x2000000: not RAM in its e820 map",
    ),
    (
        "entry32:e820-ram-above-4g",
        "no free RAM in the e820 map for the kernel below 4 GiB",
    ),
    (
        "image-misaligned",
        "loader put our image at 0x2000800: not a multiple of kernel_alignment 0x1000",
    ),
    (
        "hdr-magic",
        "loader's boot_params: setup header not copied from this image (header 0x21646142, this image's 0x53726448)",
    ),
    (
        "hdr-setup-sects",
        "loader's boot_params: setup header not copied from this image (setup_sects 0xff, this image's 0x7)",
    ),
    (
        "setup-data-outside-ram",
        "loader's setup_data node at 0xfed00000 is not in RAM",
    ),
    (
        "setup-data-cycle",
        "loader's setup_data list has more than 64 nodes",
    ),
    (
        "setup-data-too-long",
        "loader's setup_data node at 0x10002000 is not in RAM",
    ),
    (
        "setup-indirect-outside-ram",
        "loader's SETUP_INDIRECT node at 0x10002000 names 0xfed00000+0x1000, which is not RAM",
    ),
    (
        "boot-params-first-page",
        "loader's boot_params at 0x800 is not memory it allocated",
    ),
    (
        "boot-params-outside-ram",
        "loader's boot_params at 0xfed00000 is not memory it allocated",
    ),
];

/// The honest loads (each booting our image and Debian's bzImage to init): the row label and
/// `lying-kexec`'s mode. `entry32:` enters the 32-bit entry in protected mode; `high:` puts
/// everything above 4 GiB and hands over RAM only in the first MiB and above 4 GiB.
const HONEST: &[(&str, &str)] = &[
    ("honest", "honest"),
    ("honest-entry32", "entry32:honest"),
    ("ram-above-4g", "high:honest"),
    ("e820-messy", "e820-messy"),
];

/// `e820-messy`'s reserved entry over RAM (lying-kexec.c `MESSY_RESERVED`): no kernel there.
const MESSY_RESERVED: std::ops::Range<u64> = 0x4000_0000..0x7800_0000;

/// The first kernel's memory: 6 GiB where the load needs RAM above 4 GiB (q35 puts 2 GiB
/// below the PCI hole, 4 above), else the harness's default.
fn memory_mb(lie: &str) -> Option<u32> {
    (lie.starts_with("high:") || lie.contains("above-4g")).then_some(6144)
}

/// A program the rows run, built by the first row that asks (the others wait for it).
type Built = OnceLock<std::result::Result<PathBuf, String>>;

fn built_once(cell: &'static Built, build: fn() -> Result<PathBuf>) -> Result<PathBuf> {
    cell.get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("{e}"))
}

/// `lying-kexec`, built once per run.
fn lying_kexec() -> Result<PathBuf> {
    static BIN: Built = OnceLock::new();
    built_once(&BIN, build_lying_kexec)
}

fn build_lying_kexec() -> Result<PathBuf> {
    let src = crate::workspace_root().join("fixtures/initramfs/lying-kexec.c");
    let out = qemu::target_dir().join("boot-tests/lying-kexec");
    std::fs::create_dir_all(out.parent().unwrap())?;
    crate::fixtures::build_freestanding(&src, &out)?;
    Ok(out)
}

/// What the second kernel is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Second {
    Zboot,
    BzImage,
}

impl Second {
    /// Both, with their row-name parts.
    const BOTH: [(Second, &str); 2] = [(Second::Zboot, "zboot"), (Second::BzImage, "bzimage")];

    /// The image file: our default image of Debian's kernel, or Debian's bzImage itself.
    fn image(self, ctx: &Ctx) -> Result<PathBuf> {
        let fx = ctx.fixtures()?;
        Ok(match self {
            Second::Zboot => ctx.pack("packed-bzimage", &fx.kernel.vmlinuz, &[])?,
            Second::BzImage => fx.kernel.vmlinuz.clone(),
        })
    }
}

/// Boots Debian's bzImage on `row.fw` with an initrd whose init runs `lying-kexec load` with
/// `lie`, then `exec`.
fn boot(ctx: &Ctx, row: &On, second: Second, lie: &str) -> Result<BootOutcome> {
    let fx = ctx.fixtures()?;
    let image = second.image(ctx)?;
    let append = format!("console=ttyS0 {STAGE2} {MARKER2}");
    let files: Vec<(String, u32, Vec<u8>)> = vec![
        // The init of this tree (the fixture's may predate the `lie` mode).
        (
            "init".into(),
            0o755,
            crate::initramfs::INIT_SCRIPT.as_bytes().to_vec(),
        ),
        (
            "kexec/lying-kexec".into(),
            0o755,
            std::fs::read(lying_kexec()?)?,
        ),
        ("kexec/image".into(), 0o644, std::fs::read(&image)?),
        ("kexec/initrd".into(), 0o644, std::fs::read(&fx.initramfs)?),
        ("kexec/append".into(), 0o644, append.into_bytes()),
        ("kexec/lie".into(), 0o644, lie.as_bytes().to_vec()),
    ];
    let mut initrd = std::fs::read(&fx.initramfs)?;
    initrd.resize(initrd.len().next_multiple_of(512), 0);
    initrd.extend(crate::initramfs::overlay(&files));
    let path = super::scratch().join(format!("hostile/{}-initrd.img", row.name()));
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, &initrd)?;
    let options = format!("{} zboot.kexec=lie", baseline_options());
    let mut spec =
        BootSpec::systemd_boot(row.name(), row.fw, &fx.kernel.vmlinuz, Some(path), options);
    spec.stop_on.push(STUB_ERROR.into());
    if let Some(mb) = memory_mb(lie) {
        spec.memory_mb = mb;
    }
    spec.timeout = spec.timeout.min(std::time::Duration::from_secs(120));
    ctx.boot(&spec)
}

/// The part of the log after the first kernel started the second, or why it did not.
fn after_kexec(out: &BootOutcome) -> Result<&str> {
    let reports = crate::report::InitReport::parse_all(&out.log);
    let first = reports.first().ok_or_else(|| {
        anyhow!(
            "the first kernel did not report (log {})",
            out.log_path.display()
        )
    })?;
    if let Some(e) = first.raw.get("kexec_error") {
        bail!(
            "lying-kexec failed in the first kernel: {e}; dmesg: {} (log {})",
            first
                .raw
                .get("kexec_dmesg")
                .map(String::as_str)
                .unwrap_or(""),
            out.log_path.display()
        );
    }
    let started = "ZBOOT-INIT kexec_exec=1";
    let at = out.log.find(started).ok_or_else(|| {
        anyhow!(
            "the first kernel never started the second (log {}):\n{}",
            out.log_path.display(),
            out.log_tail(20)
        )
    })?;
    Ok(&out.log[at + started.len()..])
}

/// The honest loader: the second kernel boots to init with its own command line.
fn honest(ctx: &Ctx, row: &On, second: Second, mode: &str) -> Result<()> {
    let out = boot(ctx, row, second, mode)?;
    let after = after_kexec(&out)?;
    let r = crate::report::InitReport::parse_all(after)
        .into_iter()
        .next()
        .ok_or_else(|| {
            anyhow!(
                "the second kernel did not report (log {}):\n{}",
                out.log_path.display(),
                out.log_tail(30)
            )
        })?;
    ensure!(
        r.end && r.cmdline_has(MARKER2) && !r.cmdline_has(MARKER),
        "second report incomplete or not the second kernel's (cmdline {:?}, log {})",
        r.cmdline,
        out.log_path.display()
    );
    ensure!(
        !after.contains(STUB_ERROR),
        "the stub refused the honest loader (log {})",
        out.log_path.display()
    );
    if mode == "e820-messy" {
        let at = r.kernel_phys_start().unwrap_or(0);
        let inside = MESSY_RESERVED.contains(&at);
        // Linux's own decompressor reads each e820 RAM entry on its own (its KASLR does not
        // subtract a reserved entry that overlaps one): the bzImage may land there, and is
        // only shown.
        ensure!(
            second == Second::BzImage || (at != 0 && !inside),
            "the second kernel's code is at {at:#x}, inside the reserved {MESSY_RESERVED:#x?} (log {})",
            out.log_path.display()
        );
        say!(
            "    second kernel's code at {at:#x}, {} the reserved {MESSY_RESERVED:#x?}",
            if inside { "INSIDE" } else { "clear of" }
        );
    }
    if mode.starts_with("high:") {
        // It was handed the 4 GiB above 4 GiB (and 636 KiB below 1 MiB), not the machine's 6.
        let kb = r.memtotal_kb.unwrap_or(0);
        ensure!(
            (3 << 20..=4 << 20).contains(&kb),
            "the second kernel has MemTotal {kb} kB, not the 3-4 GiB above 4 GiB it was given (log {})",
            out.log_path.display()
        );
    }
    say!(
        "    second kernel ({second:?}) reported: release {:?}, MemTotal {:?} kB",
        r.release,
        r.memtotal_kb
    );
    Ok(())
}

/// The first line of `log` holding `prefix`, from `prefix` on.
fn line_from<'a>(log: &'a str, prefix: &str) -> Option<&'a str> {
    log.lines()
        .find_map(|l| l.find(prefix).map(|i| l[i..].trim_end()))
}

/// A lie: the stub's error line names it, no kernel ran after it, and the machine halted.
fn lying(ctx: &Ctx, row: &On, lie: &str, want: &str) -> Result<()> {
    let out = boot(ctx, row, Second::Zboot, lie)?;
    let after = after_kexec(&out)?;
    let tail = || format!("(log {}):\n{}", out.log_path.display(), out.log_tail(20));
    let err = line_from(after, STUB_ERROR)
        .ok_or_else(|| anyhow!("no {STUB_ERROR:?} line after the kexec {}", tail()))?;
    ensure!(
        err.contains(want),
        "the stub said {err:?}, want {want:?} {}",
        tail()
    );
    ensure!(
        !after.contains("Linux version") && !after.contains("ZBOOT-INIT release="),
        "a kernel ran after the lie {}",
        tail()
    );
    ensure!(
        out.stopped_on.is_some() && out.exit_code.is_none() && !out.timed_out,
        "the machine did not stay halted after the error (QEMU exit {:?}) {}",
        out.exit_code,
        tail()
    );
    say!("    stub: {err}");
    Ok(())
}

/// The lies `hostile-handover` tells and the words of the stub's error line for each.
const HANDOVER_LIES: &[(&str, &str)] = &[
    (
        "cmdline-outside-ram",
        "loader's command line at 0xfed00000 is not memory it allocated",
    ),
    ("cmdline-unterminated", "kernel command line refused: "),
    (
        "initrd-outside-ram",
        "loader's initrd 0xfed00000+0x100000 is not memory it allocated",
    ),
    (
        "initrd-wraps",
        "loader's initrd 0xfffffffffffff000+0x2000 is not memory it allocated",
    ),
    ("initrd-over-image", "+0x100000 overlaps our image 0x"),
    (
        "hdr-magic",
        "loader's boot_params: setup header not copied from this image (header 0x21646142, this image's 0x53726448)",
    ),
    (
        "boot-params-first-page",
        "loader's boot_params at 0x800 is not memory it allocated",
    ),
];

/// What `hostile-handover` prints when the entry returns.
const HANDOVER_RETURNED: &str = "hostile-handover: the entry returned ";

/// `hostile-handover.efi`, built once per run.
fn hostile_handover() -> Result<PathBuf> {
    static BIN: Built = OnceLock::new();
    built_once(&BIN, build_hostile_handover)
}

fn build_hostile_handover() -> Result<PathBuf> {
    let release = crate::fixtures::build_target_crate(
        &crate::workspace_root(),
        "hostile-handover",
        "x86_64-unknown-uefi",
        &qemu::target_dir().join("hostile-handover"),
    )?;
    Ok(release.join("hostile-handover.efi"))
}

/// Boots `hostile-handover` through systemd-boot on `row.fw`, loading `second` with `lie`.
fn handover_boot(ctx: &Ctx, row: &On, second: Second, lie: &str) -> Result<BootOutcome> {
    let fx = ctx.fixtures()?;
    let image = second.image(ctx)?;
    let options = format!(
        "image=\\hostile\\image.efi initrd=\\hostile\\initrd.img lie={lie} -- {} {MARKER2}",
        baseline_options()
    );
    let mut spec = BootSpec::systemd_boot(row.name(), row.fw, &hostile_handover()?, None, options);
    spec.extra_files.push(("hostile/image.efi".into(), image));
    spec.extra_files
        .push(("hostile/initrd.img".into(), fx.initramfs.clone()));
    spec.stop_on.push(HANDOVER_RETURNED.into());
    spec.timeout = spec.timeout.min(std::time::Duration::from_secs(120));
    ctx.boot(&spec)
}

/// The honest handover: the kernel boots to init with the app's command line.
fn handover_honest(ctx: &Ctx, row: &On, second: Second) -> Result<()> {
    let out = handover_boot(ctx, row, second, "honest")?;
    let r = out.report.as_ref().ok_or_else(|| {
        anyhow!(
            "no report (log {}):\n{}",
            out.log_path.display(),
            out.log_tail(30)
        )
    })?;
    ensure!(
        r.end && r.cmdline_has(MARKER2) && !out.log.contains(STUB_ERROR),
        "incomplete report, or not the command line the app passed (cmdline {:?}, log {})",
        r.cmdline,
        out.log_path.display()
    );
    say!(
        "    {second:?} reported through the handover entry: release {:?}",
        r.release
    );
    Ok(())
}

/// A handover lie: the stub's error line names it, an error status came back to the app, and
/// no kernel ran.
fn handover_lying(ctx: &Ctx, row: &On, lie: &str, want: &str) -> Result<()> {
    let out = handover_boot(ctx, row, Second::Zboot, lie)?;
    let tail = || format!("(log {}):\n{}", out.log_path.display(), out.log_tail(20));
    let err = line_from(&out.log, STUB_ERROR)
        .ok_or_else(|| anyhow!("no {STUB_ERROR:?} line {}", tail()))?;
    ensure!(
        err.contains(want),
        "the stub said {err:?}, want {want:?} {}",
        tail()
    );
    let status = line_from(&out.log, HANDOVER_RETURNED)
        .ok_or_else(|| anyhow!("the handover entry never returned to the app {}", tail()))?;
    ensure!(
        status.contains("INVALID_PARAMETER"),
        "the entry returned {status:?}, want INVALID_PARAMETER {}",
        tail()
    );
    ensure!(
        !out.log.contains("Linux version") && out.report.is_none(),
        "a kernel ran after the lie {}",
        tail()
    );
    say!("    stub: {err}");
    say!("    app: {status}");
    Ok(())
}

pub fn tests() -> Vec<BootTest> {
    let fw = Firmware::Ovmf2025StrictNx;
    let mut rows = Vec::new();
    for &(label, mode) in HONEST {
        for (second, name) in Second::BOTH {
            rows.push(on(
                format!("hostile-kexec-{label}-{name}"),
                fw,
                move |ctx, row| honest(ctx, row, second, mode),
            ));
        }
    }
    rows.extend(LIES.iter().map(|&(lie, want)| {
        on(
            format!("hostile-kexec-{}", lie.replace(':', "-")),
            fw,
            move |ctx, row| lying(ctx, row, lie, want),
        )
    }));
    for (second, name) in Second::BOTH {
        rows.push(on(
            format!("hostile-handover-honest-{name}"),
            fw,
            move |ctx, row| handover_honest(ctx, row, second),
        ));
    }
    rows.extend(HANDOVER_LIES.iter().map(|&(lie, want)| {
        on(format!("hostile-handover-{lie}"), fw, move |ctx, row| {
            handover_lying(ctx, row, lie, want)
        })
    }));
    rows
}

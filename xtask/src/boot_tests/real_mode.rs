//! The real-mode setup's work in the stub's 16-bit entry (stub/src/arch/x86_64/real_mode.rs),
//! each row next to Debian's bzImage of the same kernel in the same run:
//!
//! * `cpu-check-*`: QEMU `-kernel` on SeaBIOS with a CPU an x86-64 kernel cannot run on
//!   (`-cpu pentium3`: no long mode; a 64-bit CPU without CMOV and FXSR): both images print the
//!   kernel's own lines (arch/x86/boot/cpu.c), the same, then halt (QEMU still running: no
//!   reset, no kernel). Through GRUB i386-pc `linux` (the 32-bit entry) on a pentium3 the stub
//!   prints its one line and halts (Linux's own 32-bit entry halts silently there).
//! * `isolinux-vga788-edd-seabios`: Debian's ISOLINUX from a CD image built with xorriso, as
//!   Debian's installer menu boots it (`vga=788`), with a hard disk carrying an MBR signature:
//!   the init of both kernels sees the same VESA framebuffer (`/proc/fb`, 800x600x16) and the
//!   same BIOS disks in `/sys/firmware/edd` (the disk's signature).
//! * `vga-ask-qemu-kernel-seabios`: `vga=ask`, the menu driven from the serial console (the
//!   keys typed there reach SeaBIOS's keyboard): both kernels end in the mode typed.

use super::*;
use std::process::Stdio;
use std::time::Duration;

/// The kernel's lines on a CPU without long mode (cpu.c `validate_cpu`, main.c).
const NEEDS_X86_64: &str = "This kernel requires an x86-64 CPU, but only detected an i686 CPU.";
const MISSING_FEATURES: &str =
    "This kernel requires the following features not present on the CPU:";
const UNABLE: &str = "Unable to boot - please use a kernel appropriate for your CPU.";
/// The stub's line from its 32-bit entry (stub/src/arch/x86_64/legacy.rs).
const STUB_CPU_32: &str = "zboot: error: this kernel requires an x86-64 CPU with fpu msr pae cx8 cmov fxsr sse sse2 lm; unable to boot";

/// The lines from the kernel's first CPU message through "Unable to boot", CRs dropped.
fn cpu_lines(log: &str) -> Vec<String> {
    let lines: Vec<String> = log
        .split('\n')
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    let Some(first) = lines
        .iter()
        .position(|l| l.contains("This kernel requires"))
    else {
        return Vec::new();
    };
    let last = lines[first..]
        .iter()
        .position(|l| l.contains(UNABLE))
        .map_or(lines.len(), |n| first + n + 1);
    lines[first..last]
        .iter()
        .map(|l| l[l.find("This kernel").unwrap_or(0)..].to_string())
        .collect()
}

/// The boot stopped on `marker` with QEMU still running (halted: not reset, which
/// `-no-reboot` turns into an exit), and no kernel ran.
fn check_halted(out: &BootOutcome, marker: &str) -> Result<()> {
    ensure!(
        out.stopped_on.as_deref() == Some(marker) && out.exit_code.is_none() && !out.timed_out,
        "{}: want a halt after {marker:?}, got stopped_on {:?}, exit {:?}, timed out {} (log {})",
        out.name,
        out.stopped_on,
        out.exit_code,
        out.timed_out,
        out.log_path.display()
    );
    ensure!(
        !out.log.contains("Linux version") && out.report.is_none(),
        "{}: the kernel ran (log {})",
        out.name,
        out.log_path.display()
    );
    Ok(())
}

/// Debian's bzImage of the 6.1 kernel and our image of it, each with its tag in the boot's
/// name: every row here boots both in the same run.
fn both_kernels(ctx: &Ctx) -> Result<[(&'static str, PathBuf); 2]> {
    let fx = ctx.fixtures()?;
    let ours = ctx.pack("packed-bzimage", &fx.kernel.vmlinuz, &[])?;
    Ok([("bzimage", fx.kernel.vmlinuz.clone()), ("zboot", ours)])
}

/// QEMU `-kernel image` on SeaBIOS with the test initramfs and `append`, named `name-tag`.
fn seabios_direct(
    fx: &Fixtures,
    name: &str,
    tag: &str,
    image: PathBuf,
    append: String,
) -> BootSpec {
    let mode = BootMode::Direct {
        kernel: image,
        initrd: Some(fx.initramfs.clone()),
        append,
    };
    BootSpec::new(format!("{name}-{tag}"), Firmware::Seabios, mode)
}

/// QEMU `-kernel` on SeaBIOS with `-cpu cpu`, Debian's bzImage and our image: both print
/// `want` (the kernel's lines), identically, and halt.
fn cpu_check(ctx: &Ctx, name: &str, cpu: &str, want: &[&str]) -> Result<()> {
    let fx = ctx.fixtures()?;
    let mut seen = Vec::new();
    for (tag, image) in both_kernels(ctx)? {
        let mut spec = seabios_direct(fx, name, tag, image, baseline_options());
        spec.cpu = cpu.into();
        spec.timeout = Duration::from_secs(60);
        spec.stop_on = vec![UNABLE.into()];
        let out = ctx.boot(&spec)?;
        check_halted(&out, UNABLE)?;
        let lines = cpu_lines(&out.log);
        for w in want {
            ensure!(
                lines.iter().any(|l| l.contains(w)),
                "{}: no line {w:?} in {lines:?} (log {})",
                out.name,
                out.log_path.display()
            );
        }
        say!("    {tag}: {lines:?}, halted");
        seen.push(lines);
    }
    ensure!(
        seen[0] == seen[1],
        "the stub's lines differ from the kernel's: {:?} vs {:?}",
        seen[1],
        seen[0]
    );
    Ok(())
}

/// GRUB 2.06 i386-pc `linux` (the 32-bit protocol: no real-mode setup runs) of our image on a
/// pentium3: the stub's 32-bit entry prints its line on COM1 and halts.
fn cpu_check_32(ctx: &Ctx, name: &str) -> Result<()> {
    let fx = ctx.fixtures()?;
    let set = fx.grub_pc()?;
    let image = ctx.pack("packed-bzimage", &fx.kernel.vmlinuz, &[])?;
    let cfg = super::loaders::grub_bios_cfg(&baseline_options());
    let grub = super::loaders::grub_bios_image(set, name, &cfg)?;
    let mode = BootMode::Direct {
        kernel: grub,
        initrd: None,
        append: String::new(),
    };
    let mut spec = BootSpec::new(name, Firmware::Seabios, mode);
    spec.cpu = "pentium3".into();
    spec.timeout = Duration::from_secs(90);
    spec.extra_files = vec![
        ("zboot/linux.efi".into(), image),
        ("zboot/initrd.img".into(), fx.initramfs.clone()),
    ];
    spec.stop_on = vec![STUB_CPU_32.into()];
    let out = ctx.boot(&spec)?;
    ensure!(
        out.log.contains("zboot test: linux"),
        "GRUB's config did not run (log {})",
        out.log_path.display()
    );
    check_halted(&out, STUB_CPU_32)?;
    say!("    {STUB_CPU_32:?}, halted");
    Ok(())
}

/// The MBR signature the EDD row's hard disk carries (at 0x1b8, with 0xaa55 at 510).
const DISK_SIGNATURE: u32 = 0x5a8e_4d21;
/// VESA mode 0x114 (`vga=788`): what Debian's installer ISOLINUX menu passes.
const VGA_788: &str = "vga=788";
/// What the kernel's init sees of that mode: vesafb, 800x600 at 16 bits per pixel.
const VESA_FB: &str = "0 VESA VGA";
const VESA_MODE: &str = "800,600,16";

/// A CD image with ISOLINUX booting `kernel` with the test initramfs and `append` (cached by
/// content under `name`).
fn isolinux_iso(
    set: &crate::tools::ToolRoot,
    name: &str,
    kernel: &std::path::Path,
    initrd: &std::path::Path,
    append: &str,
) -> Result<std::path::PathBuf> {
    let dir = super::scratch().join("isolinux");
    let tree = dir.join(name);
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    std::fs::create_dir_all(tree.join("isolinux"))?;
    std::fs::create_dir_all(tree.join("zboot"))?;
    std::fs::copy(
        set.path("usr/lib/ISOLINUX/isolinux.bin"),
        tree.join("isolinux/isolinux.bin"),
    )?;
    std::fs::copy(
        set.path("usr/lib/syslinux/modules/bios/ldlinux.c32"),
        tree.join("isolinux/ldlinux.c32"),
    )?;
    std::fs::copy(kernel, tree.join("zboot/linux.efi"))?;
    std::fs::copy(initrd, tree.join("zboot/initrd.img"))?;
    std::fs::write(
        tree.join("isolinux/isolinux.cfg"),
        format!(
            "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT zboot\nLABEL zboot\n  \
             LINUX /zboot/linux.efi\n  APPEND initrd=/zboot/initrd.img {append}\n"
        ),
    )?;
    let iso = dir.join(format!("{name}.iso"));
    let o = set
        .command("usr/bin/xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-J"])
        .args(["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
        .arg("-o")
        .arg(&iso)
        .arg(&tree)
        .stdin(Stdio::null())
        .output()?;
    ensure!(
        o.status.success(),
        "xorriso {}: {}",
        set.version,
        String::from_utf8_lossy(&o.stderr).trim()
    );
    Ok(iso)
}

/// A 1 MiB raw disk whose MBR carries [`DISK_SIGNATURE`].
fn signed_disk() -> Result<std::path::PathBuf> {
    let path = super::scratch().join("isolinux/edd-disk.img");
    let mut disk = vec![0u8; 1 << 20];
    disk[0x1b8..0x1bc].copy_from_slice(&DISK_SIGNATURE.to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xaa;
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, disk)?;
    Ok(path)
}

/// The zero-page areas a real-mode setup fills, as the init reports them from
/// `/sys/kernel/boot_params/data` (the kernel's copy of what it was handed).
const REAL_MODE_AREAS: [&str; 6] = [
    "bp_screen_info",
    "bp_ist_info",
    "bp_edid_info",
    "bp_bios",
    "bp_edd_mbr_sig",
    "bp_eddbuf",
];

/// The areas of [`REAL_MODE_AREAS`] where `ours` differs from `theirs`, each with the first
/// differing byte offsets inside it.
fn zero_page_differences(
    theirs: &crate::report::InitReport,
    ours: &crate::report::InitReport,
) -> Vec<String> {
    REAL_MODE_AREAS
        .iter()
        .filter_map(|k| {
            let (a, b) = (theirs.raw.get(*k)?, ours.raw.get(*k)?);
            let bytes = |h: &str| {
                (0..h.len() / 2)
                    .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap_or(0))
                    .collect::<Vec<u8>>()
            };
            let (a, b) = (bytes(a), bytes(b));
            let at: Vec<String> = (0..a.len().max(b.len()))
                .filter(|&i| a.get(i) != b.get(i))
                .take(8)
                .map(|i| format!("+{i:#x}: {:02x?} vs {:02x?}", a.get(i), b.get(i)))
                .collect();
            (!at.is_empty()).then(|| format!("{k} {}", at.join(", ")))
        })
        .collect()
}

/// ISOLINUX with `vga=788` and a signed hard disk, Debian's bzImage then our image: both
/// inits report the VESA framebuffer and the disk in `/sys/firmware/edd`, the same, and every
/// zero-page area the real-mode setup fills ([`REAL_MODE_AREAS`]) holds the same bytes.
fn isolinux_vga_edd(ctx: &Ctx, name: &str) -> Result<()> {
    let fx = ctx.fixtures()?;
    let set = fx.isolinux()?;
    say!("    ISOLINUX {} (xorriso from the same set)", set.version);
    let disk = signed_disk()?;
    let signature = format!("{DISK_SIGNATURE:#010x}");
    let mut seen = Vec::new();
    for (tag, image) in both_kernels(ctx)? {
        let append = format!("{VGA_788} {}", baseline_options());
        let iso = isolinux_iso(
            set,
            &format!("{name}-{tag}"),
            &image,
            &fx.initramfs,
            &append,
        )?;
        let mut spec = BootSpec::new(
            format!("{name}-{tag}"),
            Firmware::Seabios,
            BootMode::Cdrom { iso },
        );
        spec.timeout = Duration::from_secs(120);
        spec.qemu_args = vec![
            "-drive".into(),
            format!("file={},format=raw,if=ide,index=0", disk.display()),
        ];
        let out = ctx.boot(&spec)?;
        let r = super::legacy::check_bios_report(ctx, &out)?;
        let get = |k: &str| r.raw.get(k).cloned().unwrap_or_default();
        let (fb, mode, edd) = (get("fb"), get("fb_mode"), get("edd"));
        say!("    {tag}: /proc/fb {fb:?}, fb0 {mode:?}, edd {edd:?}");
        ensure!(
            fb == VESA_FB && mode == VESA_MODE,
            "{}: want the VESA framebuffer {VESA_FB:?} at {VESA_MODE:?}, got {fb:?} at {mode:?} (log {})",
            out.name,
            out.log_path.display()
        );
        ensure!(
            edd.split(',')
                .any(|d| d.starts_with("int13_dev80:") && d.contains(&signature)),
            "{}: want int13_dev80 with MBR signature {signature} in /sys/firmware/edd, got {edd:?} (log {})",
            out.name,
            out.log_path.display()
        );
        ensure!(
            REAL_MODE_AREAS
                .iter()
                .all(|k| r.raw.get(*k).is_some_and(|v| !v.is_empty())),
            "{}: the init reported no zero page (log {})",
            out.name,
            out.log_path.display()
        );
        seen.push(((fb, mode, edd), r.clone()));
    }
    ensure!(
        seen[0].0 == seen[1].0,
        "our image's framebuffer and EDD {:?} differ from the bzImage's {:?}",
        seen[1].0,
        seen[0].0
    );
    let differences = zero_page_differences(&seen[0].1, &seen[1].1);
    ensure!(
        differences.is_empty(),
        "the zero page our 16-bit entry filled differs from the kernel's setup's (theirs vs ours): {}",
        differences.join("; ")
    );
    say!(
        "    the zero page's real-mode areas ({}) are byte for byte the bzImage's",
        REAL_MODE_AREAS.join(", ")
    );
    Ok(())
}

/// The kernel's `vga=ask` prompt (video.c) and the start of its mode-number prompt.
const ASK_PROMPT: &str =
    "Press <ENTER> to see video modes available, <SPACE> to continue, or wait 30 sec";
const ASK_ENTER: &str = "Enter a video mode";

/// QEMU `-kernel` on SeaBIOS with `vga=ask`, Debian's bzImage then our image: at the prompt
/// `<ENTER>`, at the mode prompt `314` `<ENTER>` (typed on the serial console, which SeaBIOS reads
/// as its keyboard): both inits report the VESA framebuffer of mode 0x114; ours listed it as
/// `314 800x600x16`.
fn vga_ask(ctx: &Ctx, name: &str) -> Result<()> {
    let fx = ctx.fixtures()?;
    let mut seen = Vec::new();
    for (tag, image) in both_kernels(ctx)? {
        let append = format!("vga=ask {}", baseline_options());
        let mut spec = seabios_direct(fx, name, tag, image, append);
        spec.timeout = Duration::from_secs(120);
        spec.serial_input = vec![
            (ASK_PROMPT.into(), "\r".into()),
            (ASK_ENTER.into(), "314\r".into()),
        ];
        let out = ctx.boot(&spec)?;
        let r = super::legacy::check_bios_report(ctx, &out)?;
        let get = |k: &str| r.raw.get(k).cloned().unwrap_or_default();
        let (fb, mode) = (get("fb"), get("fb_mode"));
        say!("    {tag}: /proc/fb {fb:?}, fb0 {mode:?}");
        ensure!(
            out.log.contains(ASK_PROMPT) && fb == VESA_FB && mode == VESA_MODE,
            "{}: want the prompt, then the VESA framebuffer {VESA_FB:?} at {VESA_MODE:?} of the mode typed; got {fb:?} at {mode:?} (log {})",
            out.name,
            out.log_path.display()
        );
        if tag == "zboot" {
            ensure!(
                out.log.contains("314 800x600x16"),
                "{}: the mode list lacks `314 800x600x16` (log {})",
                out.name,
                out.log_path.display()
            );
        }
        seen.push((fb, mode));
    }
    ensure!(
        seen[0] == seen[1],
        "{:?} differs from the bzImage's {:?}",
        seen[1],
        seen[0]
    );
    Ok(())
}

/// A row on SeaBIOS (the real-mode setup runs only there), named `<label>-seabios`; its
/// function gets the name.
fn row(label: &str, run: impl Fn(&Ctx, &str) -> Result<()> + Send + Sync + 'static) -> BootTest {
    super::on(label, Firmware::Seabios, move |ctx, r| run(ctx, &r.name()))
}

pub fn tests() -> Vec<BootTest> {
    vec![
        row("cpu-check-pentium3-qemu-kernel", |ctx, name| {
            cpu_check(ctx, name, "pentium3", &[NEEDS_X86_64, UNABLE])
        }),
        row("cpu-check-no-cmov-fxsr-qemu-kernel", |ctx, name| {
            cpu_check(
                ctx,
                name,
                "Nehalem,-cmov,-fxsr",
                &[MISSING_FEATURES, "cmov fxsr ", UNABLE],
            )
        }),
        row("cpu-check-pentium3-grub-bios-zboot", cpu_check_32),
        row("isolinux-vga788-edd", isolinux_vga_edd),
        // It types at the kernel's 30-second prompt: alone, so the guest is not slowed.
        row("vga-ask-qemu-kernel", vga_ask).alone(),
    ]
}

//! Other loaders' boot paths: our image inside a UKI (systemd-stub loads it as `.linux`), and
//! GRUB's `linux` command.
//!
//! systemd-stub 252 (Debian 12) and 257 (Debian 13) start the inner kernel with
//! LoadImage/StartImage only when its PE MajorImageVersion is at least 1 (Linux's EFI stub
//! version), hand it the `.initrd` through LoadFile2 and the `.cmdline` as LoadOptions. The 252
//! UKI is assembled with objcopy as systemd 252's documentation does it; the 257 one by Debian
//! 13's own `ukify` ([`crate::tools`]). GRUB 2.12 (Debian 13, `grub-mkstandalone`) starts a PE
//! kernel of stub version >= 1 with LoadImage too, and serves the initrd through LoadFile2 on a
//! vendor-media device path (the stub must pass LoadFile2 the *remaining* device path).

use super::legacy::{Entry, check_bios_report, check_entry, check_five_level};
use super::*;
use crate::tools::ToolRoot;
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
    args.extend(section(
        zboot_format::CMDLINE_SECTION_NAME,
        &cmdline_file,
        0x30000,
    ));
    args.extend(section(".linux", linux, 0x200_0000));
    args.extend(section(
        zboot_format::INITRD_SECTION_NAME,
        initrd,
        0x300_0000,
    ));
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

/// The `.linux` of the UKI rows: Debian's 6.1 kernel packed with the default codec, signed where
/// `fw` enforces Secure Boot (the inner image is verified by LoadImage), and the directory the
/// UKIs go to.
fn uki_linux(ctx: &Ctx, fw: Firmware) -> Result<(PathBuf, PathBuf)> {
    let fx = ctx.fixtures()?;
    let image = ctx.pack("packed-bzimage", &fx.kernel.vmlinuz, &[])?;
    let dir = super::scratch().join("uki");
    std::fs::create_dir_all(&dir)?;
    let linux = if fw.enforcing() {
        let signed = dir.join(format!("linux-signed-{fw}.efi"));
        qemu::sign(fx, fw, &image, &signed)?;
        signed
    } else {
        image
    };
    Ok((linux, dir))
}

/// Boot a UKI as `\EFI\BOOT\BOOTX64.EFI`: the kernel's init reports the `.cmdline` and runs
/// from the `.initrd`; under Secure Boot it sees Secure Boot enabled.
fn boot_uki(ctx: &Ctx, name: String, fw: Firmware, uki: PathBuf) -> Result<()> {
    let spec = BootSpec::new(name, fw, BootMode::Bare { image: uki });
    let out = ctx.boot(&spec)?;
    let r = check_linux_report(ctx, &out)?;
    if fw.enforcing() {
        ensure!(r.secure_boot == Some(true), "Secure Boot not seen enabled");
    }
    Ok(())
}

/// Debian's 6.1 kernel packed with the default codec, inside a systemd-stub 252 UKI with the
/// test initramfs and the marker command line, booted as `\EFI\BOOT\BOOTX64.EFI` on `fw`
/// (signed, inner image first, where Secure Boot enforces): the kernel's own init reports the
/// command line, and the initrd arrived (the init runs from it).
fn uki_252(ctx: &Ctx, fw: Firmware) -> Result<()> {
    let fx = ctx.fixtures()?;
    let (linux, dir) = uki_linux(ctx, fw)?;
    let uki = dir.join(format!("uki-252-{fw}.efi"));
    build_uki_252(
        &fx.systemd_stub,
        &linux,
        &fx.initramfs,
        &baseline_options(),
        &uki,
    )?;
    boot_uki(ctx, format!("uki-252-{fw}"), fw, uki)
}

/// Debian's 6.1 kernel packed (signed where Secure Boot enforces) inside a UKI built by `set`'s
/// own `ukify` with its `linuxx64.efi.stub`, the test initramfs and the marker command line.
fn uki_ukify(ctx: &Ctx, set: &crate::tools::ToolRoot, tag: &str, fw: Firmware) -> Result<()> {
    let fx = ctx.fixtures()?;
    let (linux, dir) = uki_linux(ctx, fw)?;
    let uki = dir.join(format!("uki-{tag}-{fw}.efi"));
    let o = set
        .ukify()
        .arg("build")
        .arg("--linux")
        .arg(&linux)
        .arg("--initrd")
        .arg(&fx.initramfs)
        .arg("--cmdline")
        .arg(baseline_options())
        .arg("--stub")
        .arg(set.path("usr/lib/systemd/boot/efi/linuxx64.efi.stub"))
        .arg("--os-release")
        .arg("ID=zboot-test\nPRETTY_NAME=\"zboot-pack UKI test\"\n")
        .arg("--uname")
        .arg(&fx.kernel.release)
        .arg("--output")
        .arg(&uki)
        .stdin(Stdio::null())
        .output()?;
    ensure!(
        o.status.success(),
        "ukify {} build: {}",
        set.version,
        String::from_utf8_lossy(&o.stderr).trim()
    );
    boot_uki(ctx, format!("uki-{tag}-{fw}"), fw, uki)
}

/// A `grub-mkstandalone` image of `set` whose embedded `grub.cfg` is `cfg`, cached by content.
pub(super) fn grub_standalone(
    set: &crate::tools::ToolRoot,
    tag: &str,
    cfg: &str,
) -> Result<PathBuf> {
    grub_standalone_for(set, "x86_64-efi", tag, cfg)
}

/// [`grub_standalone`] for GRUB platform `platform` (`x86_64-efi`, `i386-efi`).
fn grub_standalone_for(
    set: &crate::tools::ToolRoot,
    platform: &str,
    tag: &str,
    cfg: &str,
) -> Result<PathBuf> {
    let dir = super::scratch().join("grub");
    std::fs::create_dir_all(&dir)?;
    let cfg_path = dir.join(format!("{tag}.cfg"));
    let out = dir.join(format!("{tag}.efi"));
    if std::fs::read_to_string(&cfg_path).ok().as_deref() == Some(cfg) && out.is_file() {
        return Ok(out);
    }
    std::fs::write(&cfg_path, cfg)?;
    let o = set
        .command("usr/bin/grub-mkstandalone")
        .args(["-O", platform, "--locales=", "--fonts=", "--themes="])
        .arg("-d")
        .arg(set.path(&format!("usr/lib/grub/{platform}")))
        .arg("-o")
        .arg(&out)
        .arg(format!("boot/grub/grub.cfg={}", cfg_path.display()))
        .stdin(Stdio::null())
        .output()?;
    ensure!(
        o.status.success(),
        "grub-mkstandalone {}: {}",
        set.version,
        String::from_utf8_lossy(&o.stderr).trim()
    );
    Ok(out)
}

/// GRUB's `linux` + `initrd` (command names `linux`/`initrd`, or `linuxefi`/`initrdefi`) on our
/// image of Debian's 6.1 kernel and the test initramfs, from the ESP, booted as
/// `\EFI\BOOT\BOOTX64.EFI`: `check_linux_report`, and the stub's `efi=debug` lines show the
/// entry GRUB used (`want`): GRUB 2.12's `linux` = LoadImage (PE entry), Debian 12's 2.06
/// `linuxefi` = EFI handover, its `linux` without Secure Boot = the bzImage 32-bit protocol
/// (GRUB exits boot services and jumps to `code32_start`; the stub's own page tables, then
/// 5-level paging as on the EFI path).
/// `efi_gop` is loaded so that GRUB's own bzImage path can fill `screen_info` (without a video
/// driver it says `error: no suitable video mode found.` and boots blind: no EFI framebuffer).
fn grub(
    ctx: &Ctx,
    set: &crate::tools::ToolRoot,
    name: &str,
    cmds: (&str, &str),
    fw: Firmware,
    want: Entry,
) -> Result<()> {
    let fx = ctx.fixtures()?;
    let image = ctx.pack("packed-bzimage", &fx.kernel.vmlinuz, &[])?;
    let (linux, initrd) = cmds;
    let options = format!("{} efi=debug", baseline_options());
    let cfg = format!(
        "set timeout=0\ninsmod part_gpt\ninsmod part_msdos\ninsmod fat\ninsmod efi_gop\n\
         search --no-floppy --file --set=root /zboot/linux.efi\n\
         echo \"zboot test: {linux} $root\"\n\
         {linux} /zboot/linux.efi {options}\n{initrd} /zboot/initrd.img\nboot\n"
    );
    let grub = grub_standalone(set, name, &cfg)?;
    let mut spec = BootSpec::new(name, fw, BootMode::Bare { image: grub });
    spec.extra_files = vec![
        ("zboot/linux.efi".into(), image),
        ("zboot/initrd.img".into(), fx.initramfs.clone()),
    ];
    spec.stop_on.push("error: ".into());
    let out = ctx.boot(&spec)?;
    let r = check_linux_report(ctx, &out)?;
    check_entry(&out.log, want)?;
    if want == Entry::Bzimage32 {
        check_five_level(r)?;
    }
    Ok(())
}

/// Which of the fixtures' tool sets a row uses.
type ToolSet = fn(&Fixtures) -> &ToolRoot;

/// A GRUB EFI row of the tool set `set`: the name is written once.
fn grub_efi_row(
    label: &str,
    set: ToolSet,
    cmds: (&'static str, &'static str),
    fw: Firmware,
    want: Entry,
) -> BootTest {
    on(label, fw, move |ctx, row| {
        grub(ctx, set(ctx.fixtures()?), &row.name(), cmds, fw, want)
    })
}

/// Debian 12's GRUB 2.06 for BIOS as an image QEMU's `-kernel` starts: `lnxboot.img` (a
/// bzImage-style real-mode header that jumps into GRUB) followed by a `core.img` of
/// `grub-mkimage -O i386-pc` whose embedded config is `cfg`; cached by content.
pub(super) fn grub_bios_image(
    set: &crate::tools::ToolRoot,
    name: &str,
    cfg: &str,
) -> Result<PathBuf> {
    let dir = super::scratch().join("grub");
    std::fs::create_dir_all(&dir)?;
    let cfg_path = dir.join(format!("{name}.cfg"));
    let out = dir.join(format!("{name}.bin"));
    if std::fs::read_to_string(&cfg_path).ok().as_deref() == Some(cfg) && out.is_file() {
        return Ok(out);
    }
    std::fs::write(&cfg_path, cfg)?;
    let core = dir.join(format!("{name}-core.img"));
    let modules = "biosdisk part_msdos fat linux search search_fs_file echo serial terminal \
                   normal configfile";
    let o = set
        .command("usr/bin/grub-mkimage")
        .args(["-O", "i386-pc", "-p", "/boot/grub"])
        .arg("-d")
        .arg(set.path("usr/lib/grub/i386-pc"))
        .arg("-c")
        .arg(&cfg_path)
        .arg("-o")
        .arg(&core)
        .args(modules.split_whitespace())
        .stdin(Stdio::null())
        .output()?;
    ensure!(
        o.status.success(),
        "grub-mkimage -O i386-pc {}: {}",
        set.version,
        String::from_utf8_lossy(&o.stderr).trim()
    );
    let mut bin = std::fs::read(set.path("usr/lib/grub/i386-pc/lnxboot.img"))?;
    bin.extend(std::fs::read(&core)?);
    std::fs::write(&out, bin)?;
    Ok(out)
}

/// The GRUB BIOS rows' config: GRUB's own messages (and errors) on the serial log too; find the
/// FAT disk, `linux /zboot/linux.efi options`, `initrd /zboot/initrd.img`, `boot`.
pub(super) fn grub_bios_cfg(options: &str) -> String {
    format!(
        "serial --unit=0 --speed=115200\nterminal_output serial console\n\
         insmod biosdisk\ninsmod part_msdos\ninsmod fat\n\
         search --no-floppy --file --set=root /zboot/linux.efi\n\
         echo \"zboot test: linux $root\"\n\
         linux /zboot/linux.efi {options}\ninitrd /zboot/initrd.img\nboot\n"
    )
}

/// GRUB 2.06 for BIOS on SeaBIOS: QEMU `-kernel` starts [`grub_bios_image`], whose config finds
/// a FAT disk (QEMU's `fat:` drive, MBR-partitioned) and runs `linux /zboot/linux.efi` (our
/// image, or Debian's bzImage with `zboot == false`) and `initrd`. GRUB's `linux` on BIOS is
/// the 32-bit protocol: for our image the stub's efi=debug lines show the 32-bit entry, and the
/// kernel runs 5-level paging (as Debian's bzImage does there).
fn grub_bios(ctx: &Ctx, name: &str, zboot: bool) -> Result<()> {
    let fx = ctx.fixtures()?;
    let set = fx.grub_pc()?;
    let (bios, version) = fx.seabios()?;
    say!(
        "    SeaBIOS {version} ({}), GRUB {}",
        bios.display(),
        set.version
    );
    let image = if zboot {
        ctx.pack("packed-bzimage", &fx.kernel.vmlinuz, &[])?
    } else {
        fx.kernel.vmlinuz.clone()
    };
    let mut options = baseline_options();
    if zboot {
        options.push_str(" efi=debug");
    }
    let grub = grub_bios_image(set, name, &grub_bios_cfg(&options))?;
    let mode = BootMode::Direct {
        kernel: grub,
        initrd: None,
        append: String::new(),
    };
    let mut spec = BootSpec::new(name, Firmware::Seabios, mode);
    spec.timeout = spec.timeout.min(std::time::Duration::from_secs(90));
    spec.extra_files = vec![
        ("zboot/linux.efi".into(), image),
        ("zboot/initrd.img".into(), fx.initramfs.clone()),
    ];
    spec.stop_on.push("error: ".into());
    let out = ctx.boot(&spec)?;
    ensure!(
        out.log.contains("zboot test: linux"),
        "GRUB's config did not run (log {})",
        out.log_path.display()
    );
    let r = check_bios_report(ctx, &out)?;
    say!(
        "    VmallocTotal {} kB",
        r.vmalloc_total_kb.unwrap_or_default()
    );
    if zboot {
        check_entry(&out.log, Entry::Bzimage32)?;
        check_five_level(r)?;
    }
    Ok(())
}

/// What GRUB prints after `boot` returned to its script (the loader got an error back).
const BACK_IN_GRUB: &str = "zboot test: back in GRUB";
/// The line of the stub's 32-bit EFI handover entry (stub/src/arch/x86_64/efi_handover.rs).
const NO_MIXED_MODE: &str =
    "zboot: error: 32-bit UEFI firmware: this image boots on 64-bit UEFI only";

/// Debian 12's GRUB 2.06 for 32-bit UEFI on 32-bit OVMF: `linuxefi` + `initrdefi` + `boot` on
/// Debian's bzImage of the 6.1 kernel (`zboot == false`: Linux's `efi32_stub_entry` at
/// `handover_offset`, EFI mixed mode, boots to init: the reference that GRUB really enters
/// there) or on our image (`zboot == true`): GRUB calls the same offset in 32-bit mode, where
/// the stub's 32-bit handover entry prints its one error line and returns `EFI_UNSUPPORTED`,
/// and GRUB's script goes on after `boot` within seconds, no hang and no kernel output.
fn grub_ia32(ctx: &Ctx, name: &str, zboot: bool) -> Result<()> {
    let fx = ctx.fixtures()?;
    let (grub_set, ovmf) = fx.ia32()?;
    say!(
        "    GRUB {} (i386-efi), OVMF ia32 {}",
        grub_set.version,
        ovmf.version
    );
    let image = if zboot {
        ctx.pack("packed-bzimage", &fx.kernel.vmlinuz, &[])?
    } else {
        fx.kernel.vmlinuz.clone()
    };
    let cfg = format!(
        "set timeout=0\ninsmod part_gpt\ninsmod part_msdos\ninsmod fat\n\
         search --no-floppy --file --set=root /zboot/linux.efi\n\
         echo \"zboot test: linuxefi $root\"\n\
         linuxefi /zboot/linux.efi {}\ninitrdefi /zboot/initrd.img\nboot\n\
         echo \"{BACK_IN_GRUB}\"\n",
        baseline_options()
    );
    let grub = grub_standalone_for(grub_set, "i386-efi", name, &cfg)?;
    let mut spec = BootSpec::new(name, Firmware::Ovmf2022Ia32, BootMode::Bare { image: grub });
    spec.extra_files = vec![
        ("zboot/linux.efi".into(), image),
        ("zboot/initrd.img".into(), fx.initramfs.clone()),
    ];
    if zboot {
        spec.stop_on.push(BACK_IN_GRUB.into());
        spec.timeout = spec.timeout.min(std::time::Duration::from_secs(90));
    }
    let out = ctx.boot(&spec)?;
    ensure!(
        out.log.contains("zboot test: linuxefi"),
        "GRUB's config did not run (log {})",
        out.log_path.display()
    );
    if !zboot {
        let r = check_linux_report(ctx, &out)?;
        say!(
            "    Debian's bzImage booted in EFI mixed mode: efi_runtime {:?}",
            r.efi_runtime
        );
        return Ok(());
    }
    let (Some(error), Some(back)) = (out.log.find(NO_MIXED_MODE), out.log.find(BACK_IN_GRUB))
    else {
        bail!(
            "want the stub's line {NO_MIXED_MODE:?} and then GRUB's {BACK_IN_GRUB:?} (log {})",
            out.log_path.display()
        );
    };
    ensure!(
        error < back && out.report.is_none() && !out.log.contains("Linux version"),
        "the stub's error must come before GRUB's script goes on, with no kernel output (log {})",
        out.log_path.display()
    );
    say!(
        "    {} then {BACK_IN_GRUB:?} after {:.1} s",
        NO_MIXED_MODE,
        out.duration.as_secs_f64()
    );
    Ok(())
}

/// A GRUB ia32 row: the name is written once.
fn grub_ia32_row(label: &str, zboot: bool) -> BootTest {
    on(label, Firmware::Ovmf2022Ia32, move |ctx, row| {
        grub_ia32(ctx, &row.name(), zboot)
    })
}

/// A GRUB-for-BIOS row (on SeaBIOS), named `<label>-seabios`.
fn grub_bios_row(label: &str, zboot: bool) -> BootTest {
    on(label, Firmware::Seabios, move |ctx, row| {
        grub_bios(ctx, &row.name(), zboot)
    })
}

/// The firmware the UKI rows run on.
const UKI_FIRMWARE: [Firmware; 3] = [
    Firmware::Ovmf2022,
    Firmware::Ovmf2025StrictNx,
    Firmware::Ovmf2025StrictNxSecureBoot,
];

/// systemd-stub 252's UKI and ukify's of systemd 257 and unstable, on every UKI firmware.
fn uki_rows() -> impl Iterator<Item = BootTest> {
    let ukify: [(&str, ToolSet); 2] = [("257", |f| &f.uki257), ("unstable", |f| &f.ukisid)];
    UKI_FIRMWARE
        .into_iter()
        .map(|fw| on("uki-systemd-stub-252", fw, move |ctx, _| uki_252(ctx, fw)))
        .chain(ukify.into_iter().flat_map(|(tag, set)| {
            UKI_FIRMWARE.into_iter().map(move |fw| {
                on(format!("uki-ukify-{tag}"), fw, move |ctx, _| {
                    uki_ukify(ctx, set(ctx.fixtures()?), tag, fw)
                })
            })
        }))
}

pub fn tests() -> Vec<BootTest> {
    let mut rows: Vec<BootTest> = uki_rows().collect();
    rows.extend([
        grub_efi_row(
            "grub-2.06-linuxefi",
            |f| &f.grub206,
            ("linuxefi", "initrdefi"),
            Firmware::Ovmf2022,
            Entry::Handover,
        ),
        grub_efi_row(
            "grub-2.06-linuxefi",
            |f| &f.grub206,
            ("linuxefi", "initrdefi"),
            Firmware::Ovmf2025StrictNx,
            Entry::Handover,
        ),
        // Debian 12's GRUB 2.06 `linux` without Secure Boot: the bzImage 32-bit protocol.
        grub_efi_row(
            "grub-2.06-linux-zboot",
            |f| &f.grub206,
            ("linux", "initrd"),
            Firmware::Ovmf2022,
            Entry::Bzimage32,
        ),
        grub_efi_row(
            "grub-2.06-linux-zboot",
            |f| &f.grub206,
            ("linux", "initrd"),
            Firmware::Ovmf2025StrictNx,
            Entry::Bzimage32,
        ),
        grub_efi_row(
            "grub-2.12-linux",
            |f| &f.grub212,
            ("linux", "initrd"),
            Firmware::Ovmf2022,
            Entry::Pe,
        ),
        grub_efi_row(
            "grub-2.12-linux",
            |f| &f.grub212,
            ("linux", "initrd"),
            Firmware::Ovmf2025StrictNx,
            Entry::Pe,
        ),
        // GRUB 2.06 for BIOS on SeaBIOS (`lnxboot.img` + `core.img` as QEMU's -kernel).
        grub_bios_row("grub-bios-zboot", true),
        grub_bios_row("grub-bios-bzimage", false),
        // GRUB 2.06 for 32-bit UEFI (`linuxefi`: the 32-bit EFI handover entry).
        grub_ia32_row("grub-ia32-linuxefi-zboot", true),
        grub_ia32_row("grub-ia32-linuxefi-bzimage", false),
    ]);
    rows
}

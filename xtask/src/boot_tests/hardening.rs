//! Hardening (issue 5): KASLR, 5-level paging, W^X, Secure Boot.
//!
//! * `hardening-probe-*`: the probe kernel (packed with `--relocs`, bare `BOOTX64.EFI`, embedded
//!   command line) on strict-NX OVMF 2025.02 (memory attribute protocol) with `-cpu max` (LA57):
//!   every boot must pass all of the probe's checks, including `relocs` (every table location
//!   holds link value ± the delta the stub chose) and `kaslr_flag`; several boots must show
//!   different virtual deltas and load bases; `nokaslr` must give delta 0 and flag 0 at
//!   0x1000000 (or the documented fallback message); CR4.LA57 must be 1 exactly when the payload
//!   has the LA57 flag and `no5lvl` is absent.
//! * `hardening-linux-*`: Debian's kernel repacked, through systemd-boot on strict-NX OVMF
//!   2025.02: two boots give different `_text` and "Kernel code"; `nokaslr` gives `_text` =
//!   ffffffff81000000; VmallocTotal shows 5-level paging by default and 4-level with `no5lvl`.
//! * `hardening-bare-vmlinux-5level-*`: the ELF inside Debian's 6.1 and 6.12 bzImages, packed
//!   with no option, is found 5-level capable from its exported symbols and boots 5-level.
//! * `hardening-secure-boot-*`: the signed probe image boots under enforcing Secure Boot (the probe
//!   sees `secure_boot` = 3, enabled); the same signed image with one payload byte changed is
//!   refused by the firmware (the kernel never runs); an embedded command line stands alone
//!   under Secure Boot (systemd-boot's entry options are ignored, the stub says so) and gets the
//!   loader's options appended without it.

use super::*;
use crate::fixtures::DebianKernel;
use crate::report::ProbeReport;
use std::collections::BTreeSet;
use zboot_format::header::{HEADER_SIZE, PayloadHeader};

use super::probe::MIB2;
/// LOAD_PHYSICAL_ADDR of both the probe and Debian's kernel.
const PREFERRED: u64 = 0x100_0000;
/// `_text` of an x86_64 kernel that was not moved virtually.
const TEXT_UNRANDOMIZED: u64 = 0xffff_ffff_8100_0000;
/// VmallocTotal with 4-level paging (32 TiB - 1 kB) and with 5-level paging.
pub(crate) const VMALLOC_4LEVEL_KB: u64 = 34_359_738_367;
pub(crate) const VMALLOC_5LEVEL_KB: u64 = 13_743_895_347_199;

/// The probe with relocations and the LA57 flag, reporting under `efi=debug`.
fn la57_probe(ctx: &Ctx) -> Result<PathBuf> {
    probe::pack_with_cmdline(
        ctx,
        "hardening-probe-la57",
        "console=ttyS0 efi=debug",
        &["--la57"],
    )
}

/// KASLR with relocations: three boots, each passing every check (relocations applied
/// correctly for the delta chosen, KASLR_FLAG set, 2 MiB aligned base at or above 16 MiB,
/// the RNG seed node handed over); the deltas and bases differ between boots; and CR4.LA57 is
/// on (the image has the LA57 flag, `-cpu max` has LA57), through a RO+X trampoline.
fn probe_kaslr(ctx: &Ctx, row: &On) -> Result<()> {
    let image = la57_probe(ctx)?;
    let mut deltas = BTreeSet::new();
    let mut bases = BTreeSet::new();
    for i in 0..3 {
        let (p, out) = probe::passing_bare(ctx, row.fw, &row.part(i), image.clone())?;
        for c in ["relocs", "kaslr_flag", "virt_delta", "load_base", "la57"] {
            p.check_ok(c)?;
        }
        ensure!(
            p.hex("kaslr_flag")? == 1,
            "KASLR_FLAG not set: {:?}",
            p.get("kaslr_flag")
        );
        let delta = p.hex("virt_delta")?;
        let base = p.hex("load_base")?;
        ensure!(delta % MIB2 == 0 && base % MIB2 == 0 && base >= PREFERRED);
        for k in ["relocs_rel64", "relocs_inv32", "relocs_rel32"] {
            let n: u64 = p.get(k).unwrap_or("0").parse().unwrap_or(0);
            ensure!(n > 0, "{k}={:?}: no relocation verified", p.get(k));
        }
        ensure!(
            p.get("la57") == Some("1") && p.get("cpu_la57") == Some("1"),
            "la57={:?} cpu_la57={:?}, want 1/1",
            p.get("la57"),
            p.get("cpu_la57")
        );
        ensure!(
            out.log.contains("(RO+X)"),
            "no RO+X trampoline line under efi=debug:\n{}",
            out.log_tail(30)
        );
        let seeded_weakly = out.log.contains("KASLR seed from TSC");
        let types = p.get("setup_data").unwrap_or("");
        ensure!(
            seeded_weakly
                || types
                    .split(',')
                    .any(|t| t.trim().trim_start_matches("0x") == "9"),
            "no SETUP_RNG_SEED (9) node: setup_data={types:?}"
        );
        say!("    boot {i}: load_base {base:#x}, virt_delta {delta:#x}");
        deltas.insert(delta);
        bases.insert(base);
    }
    ensure!(
        deltas.len() >= 2,
        "virtual delta never changed: {deltas:x?}"
    );
    ensure!(bases.len() >= 2, "load base never changed: {bases:x?}");
    Ok(())
}

/// OVMF 2022.11 (no memory attribute protocol, no strict NX): KASLR and the LA57 switch work
/// there too (the trampoline page is LOADER_CODE, executable by default); which seed source the
/// firmware offers is printed.
fn probe_kaslr_ovmf2022(ctx: &Ctx, row: &On) -> Result<()> {
    let image = la57_probe(ctx)?;
    let (p, out) = probe::passing_bare(ctx, row.fw, &row.name(), image)?;
    for c in ["relocs", "kaslr_flag", "la57"] {
        p.check_ok(c)?;
    }
    ensure!(p.hex("kaslr_flag")? == 1, "KASLR_FLAG not set");
    ensure!(p.get("la57") == Some("1"), "la57={:?}", p.get("la57"));
    ensure!(
        out.log.contains("5-level paging: Enable via trampoline"),
        "no trampoline line:\n{}",
        out.log_tail(30)
    );
    let source = out
        .log
        .lines()
        .find(|l| l.contains("KASLR seed from"))
        .unwrap_or("seed from EFI_RNG_PROTOCOL");
    say!(
        "    ovmf2022: load_base {:?}, virt_delta {:?}, {}",
        p.get("load_base"),
        p.get("virt_delta"),
        source.trim()
    );
    Ok(())
}

/// `nokaslr`: no virtual delta, KASLR_FLAG clear, at 16 MiB when free (else the documented
/// fallback, announced under `efi=debug`). `mem=`: the same physical placement, virtual KASLR on.
fn probe_nokaslr(ctx: &Ctx, row: &On) -> Result<()> {
    let image = probe::pack_with_cmdline(
        ctx,
        "hardening-probe-nokaslr",
        "console=ttyS0 efi=debug nokaslr",
        &["--la57"],
    )?;
    let (p, out) = probe::passing_bare(ctx, row.fw, &row.name(), image)?;
    p.check_ok("relocs")?;
    ensure!(p.hex("kaslr_flag")? == 0, "KASLR_FLAG set under nokaslr");
    ensure!(p.hex("virt_delta")? == 0, "virtual delta under nokaslr");
    let base = p.hex("load_base")?;
    if base != PREFERRED {
        ensure!(
            out.log
                .contains(&format!("preferred address {PREFERRED:#x} busy")),
            "nokaslr: base {base:#x} without the fallback message"
        );
    }
    say!("    nokaslr: load_base {base:#x}");

    // `mem=` disables only the physical part: the same deterministic placement as `nokaslr`,
    // but KASLR_FLAG set (the virtual delta is still random, relocations still verified).
    let image = probe::pack_with_cmdline(
        ctx,
        "hardening-probe-mem",
        "console=ttyS0 efi=debug mem=1G",
        &["--la57"],
    )?;
    let (p, _) = probe::passing_bare(ctx, row.fw, &row.part("mem"), image)?;
    p.check_ok("relocs")?;
    ensure!(p.hex("kaslr_flag")? == 1, "KASLR_FLAG clear under mem=");
    let mem_base = p.hex("load_base")?;
    ensure!(
        mem_base == base,
        "mem=: load_base {mem_base:#x}, want the non-random placement {base:#x}"
    );
    Ok(())
}

/// CR4.LA57 off with `no5lvl`, and off for a payload without the LA57 flag.
fn probe_4level(ctx: &Ctx, row: &On) -> Result<()> {
    let image = probe::pack_with_cmdline(
        ctx,
        "hardening-probe-no5lvl",
        "console=ttyS0 no5lvl",
        &["--la57"],
    )?;
    let (p, _) = probe::passing_bare(ctx, row.fw, &row.part("no5lvl"), image)?;
    ensure!(
        p.get("la57") == Some("0") && p.get("cpu_la57") == Some("1"),
        "no5lvl: la57={:?} cpu_la57={:?}",
        p.get("la57"),
        p.get("cpu_la57")
    );
    let image = probe::pack_with_cmdline(ctx, "hardening-probe-nola57", "console=ttyS0", &[])?;
    let (p, _) = probe::passing_bare(ctx, row.fw, &row.part("no-la57-flag"), image)?;
    ensure!(
        p.get("la57") == Some("0"),
        "payload without LA57: la57={:?}",
        p.get("la57")
    );
    p.check_ok("relocs")?;
    Ok(())
}

fn linux_boot(
    ctx: &Ctx,
    fw: Firmware,
    name: &str,
    extra: &str,
) -> Result<crate::report::InitReport> {
    let fx = ctx.fixtures()?;
    let image = ctx.pack("packed-bzimage", &fx.kernel.vmlinuz, &[])?;
    let spec = BootSpec::systemd_boot(
        name,
        fw,
        image,
        Some(fx.initramfs.clone()),
        format!("{} {extra}", baseline_options()),
    );
    let out = ctx.boot(&spec)?;
    let r = check_linux_report(ctx, &out)?.clone();
    say!(
        "    {name}: _text {:x?}, Kernel code {:x?}, VmallocTotal {:?} kB",
        r.kallsyms_text,
        r.iomem_kernel_code,
        r.vmalloc_total_kb
    );
    Ok(r)
}

/// Two boots of the repacked Debian kernel land at different virtual (`_text`) and physical
/// ("Kernel code") addresses; all run with 5-level paging on `-cpu max`. A third boot is made
/// only when the first two collided by chance (~1/470 per address), so a broken randomization
/// still fails and a lucky collision does not.
fn linux_kaslr(ctx: &Ctx, row: &On) -> Result<()> {
    let mut texts = BTreeSet::new();
    let mut codes = BTreeSet::new();
    for i in 0..3 {
        let r = linux_boot(ctx, row.fw, &row.part(i), "")?;
        ensure!(
            r.vmalloc_total_kb == Some(VMALLOC_5LEVEL_KB),
            "VmallocTotal {:?} kB, want {VMALLOC_5LEVEL_KB} (5-level)",
            r.vmalloc_total_kb
        );
        texts.insert(r.kallsyms_text.context("no _text")?);
        codes.insert(r.iomem_kernel_code.context("no Kernel code")?);
        if i >= 1 && texts.len() >= 2 && codes.len() >= 2 {
            return Ok(());
        }
    }
    bail!("_text {texts:x?} / Kernel code {codes:x?}: not randomized across 3 boots")
}

/// `nokaslr`: `_text` at the link address.
fn linux_nokaslr(ctx: &Ctx, row: &On) -> Result<()> {
    let r = linux_boot(ctx, row.fw, &row.name(), "nokaslr")?;
    ensure!(
        r.kallsyms_text == Some(TEXT_UNRANDOMIZED),
        "_text {:x?} under nokaslr, want {TEXT_UNRANDOMIZED:x}",
        r.kallsyms_text
    );
    Ok(())
}

/// `no5lvl`: 4-level paging.
fn linux_no5lvl(ctx: &Ctx, row: &On) -> Result<()> {
    let r = linux_boot(ctx, row.fw, &row.name(), "no5lvl")?;
    ensure!(
        r.vmalloc_total_kb == Some(VMALLOC_4LEVEL_KB),
        "VmallocTotal {:?} kB under no5lvl, want {VMALLOC_4LEVEL_KB} (4-level)",
        r.vmalloc_total_kb
    );
    Ok(())
}

/// W^X at entry, seen by the probe walking the loader's page tables at its first instructions:
/// packed with `--protect-text`, its text is read-only + executable and its read-only data and
/// data non-executable on strict-NX OVMF 2025.02; packed without (a kernel not known to take
/// it), the region stays writable and executable. On OVMF 2022.11 (no memory attribute
/// protocol) both stay as the firmware maps LOADER_CODE: `rwx` (documented, asserted).
fn probe_wx(ctx: &Ctx, row: &On) -> Result<()> {
    let fw = row.fw;
    let image = probe::pack_with_cmdline(
        ctx,
        "hardening-probe-wx",
        "console=ttyS0",
        &["--protect-text"],
    )?;
    let (p, _) = probe::passing_bare(ctx, fw, &row.name(), image)?;
    let attrs = |p: &ProbeReport| {
        ["text_attr", "rodata_attr", "data_attr"].map(|k| p.get(k).unwrap_or("?").to_string())
    };
    let want: [&str; 3] = if fw == Firmware::Ovmf2022 {
        ["rwx", "rwx", "rwx"]
    } else {
        ["r-x", "rw-", "rw-"]
    };
    ensure!(
        attrs(&p) == want,
        "{fw}, --protect-text: text/rodata/data {:?}, want {want:?}",
        attrs(&p)
    );
    if fw != Firmware::Ovmf2022 {
        let image = probe::pack_with_cmdline(ctx, "hardening-probe-nowx", "console=ttyS0", &[])?;
        let (p, _) = probe::passing_bare(ctx, fw, &row.part("nowx"), image)?;
        ensure!(
            attrs(&p) == ["rwx", "rwx", "rwx"],
            "{fw}, not known to take read-only text: text/rodata/data {:?}, want rwx",
            attrs(&p)
        );
    }
    Ok(())
}

/// Debian's own bzImage repacked: the packer finds the kernel takes read-only text (6.1.y with
/// the backport: NX_COMPAT; 6.12: its release), the stub applies it (its `efi=debug` line), and
/// the kernel boots to its init on strict-NX OVMF.
fn linux_wx(ctx: &Ctx, row: &On, kernel: &DebianKernel, tag: &str) -> Result<()> {
    let fx = ctx.fixtures()?;
    let image = ctx.pack(&format!("{tag}-bzimage"), &kernel.vmlinuz, &[])?;
    let flags = inspect_json(ctx, &image)?["payload"]["flags"].clone();
    ensure!(
        flags
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "TEXT_RO")),
        "{tag}: packed without TEXT_RO: {flags}"
    );
    let spec = BootSpec::systemd_boot(
        row.name(),
        row.fw,
        image,
        Some(fx.initramfs.clone()),
        format!("{} efi=debug", baseline_options()),
    );
    let out = ctx.boot(&spec)?;
    let line = out
        .log
        .lines()
        .find(|l| l.contains("zboot: kernel text"))
        .unwrap_or("");
    ensure!(
        line.contains("RO+X") && line.contains("NX"),
        "{tag}: no protection line (log {}):\n{}",
        out.log_path.display(),
        out.log_tail(15)
    );
    let r = out.complete_report()?;
    let problems = r.problems();
    ensure!(problems.is_empty(), "{tag}: {}", problems.join("; "));
    ensure!(
        r.release.as_deref() == Some(kernel.release.as_str()),
        "{tag}: booted {:?}",
        r.release
    );
    say!("    {tag}: {}", line.trim());
    Ok(())
}

/// `zboot-pack inspect --json FILE`.
pub(crate) fn inspect_json(ctx: &Ctx, file: &std::path::Path) -> Result<serde_json::Value> {
    let o = std::process::Command::new(ctx.packer()?)
        .args(["inspect", "--json"])
        .arg(file)
        .output()?;
    ensure!(
        o.status.success(),
        "zboot-pack inspect {}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr).trim()
    );
    Ok(serde_json::from_slice(&o.stdout)?)
}

/// The mission's own command on a bare vmlinux: the ELF inside Debian's bzImage (recovered by
/// `zboot-pack extract`, which adds nothing to a bzImage's ELF), packed with no option. 5-level
/// support must be decided from the kernel's exported symbols (no setup header, no flag), and
/// the kernel must boot 5-level on `-cpu max` through systemd-boot on strict-NX OVMF.
fn bare_vmlinux_5level(ctx: &Ctx, row: &On, kernel: &DebianKernel, tag: &str) -> Result<()> {
    let fx = ctx.fixtures()?;
    let dir = super::scratch();
    std::fs::create_dir_all(&dir)?;
    let elf = dir.join(format!("{tag}-vmlinux"));
    let o = std::process::Command::new(ctx.packer()?)
        .arg("extract")
        .arg(&kernel.vmlinuz)
        .arg("-o")
        .arg(&elf)
        .output()?;
    ensure!(
        o.status.success(),
        "zboot-pack extract: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
    let v = inspect_json(ctx, &elf)?;
    let source = v["vmlinux"]["la57_source"].as_str().unwrap_or("");
    ensure!(
        v["vmlinux"]["la57"] == true && source.starts_with("exported symbols"),
        "{}: 5-level support not decided from the exports: {}",
        elf.display(),
        v["vmlinux"]
    );
    let image = ctx.pack(&format!("{tag}-bare-vmlinux"), &elf, &[])?;
    let flags = inspect_json(ctx, &image)?["payload"]["flags"].clone();
    ensure!(
        flags
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "LA57")),
        "packed without the LA57 flag: {flags}"
    );
    let spec = BootSpec::systemd_boot(
        row.name(),
        row.fw,
        image,
        Some(fx.initramfs.clone()),
        baseline_options(),
    );
    let out = ctx.boot(&spec)?;
    let r = out.complete_report()?;
    let problems = r.problems();
    ensure!(problems.is_empty(), "{}", problems.join("; "));
    ensure!(
        r.release.as_deref() == Some(kernel.release.as_str()),
        "booted {:?}, want {}",
        r.release,
        kernel.release
    );
    ensure!(
        r.vmalloc_total_kb == Some(VMALLOC_5LEVEL_KB),
        "VmallocTotal {:?} kB, want {VMALLOC_5LEVEL_KB} (5-level; log {})",
        r.vmalloc_total_kb,
        out.log_path.display()
    );
    say!("    {tag}: 5-level from \"{source}\"");
    Ok(())
}

/// File offset of the `.zpayld` section's raw data in a PE image.
fn payload_offset(pe: &[u8]) -> Result<usize> {
    let secs = zboot_format::pe::SectionTable::parse(pe).map_err(|e| anyhow!("{e}"))?;
    let s = secs
        .find(zboot_format::PAYLOAD_SECTION_NAME)
        .context("no .zpayld section")?;
    Ok(s.pointer_to_raw_data as usize)
}

/// Secure Boot enforcing: the signed probe boots and sees Secure Boot enabled; the same signed
/// image with one byte of the compressed kernel changed is refused by the firmware.
fn secure_boot_tamper(ctx: &Ctx, row: &On) -> Result<()> {
    let fx = ctx.fixtures()?;
    let fw = row.fw;
    let image =
        probe::pack_with_cmdline(ctx, "hardening-probe-secure", "console=ttyS0", &["--la57"])?;
    let dir = super::scratch();
    let signed = dir.join("hardening-probe-signed.efi");
    qemu::sign(fx, fw, &image, &signed)?;
    let bytes = std::fs::read(&signed)?;
    let mut tampered = bytes.clone();
    let at = payload_offset(&bytes)? + 4096; // inside the compressed kernel
    tampered[at] ^= 0x01;
    let tampered_path = dir.join("hardening-probe-signed-tampered.efi");
    std::fs::write(&tampered_path, &tampered)?;

    let mut spec = BootSpec::new(
        "hardening-secure-boot-signed-probe",
        fw,
        BootMode::Bare {
            image: signed.clone(),
        },
    );
    spec.sign = false; // already signed
    spec.timeout = spec.timeout.min(std::time::Duration::from_secs(90));
    let out = ctx.boot(&spec)?;
    let p = out.probe.clone().with_context(|| {
        format!(
            "signed probe did not run under Secure Boot:\n{}",
            out.log_tail(20)
        )
    })?;
    ensure!(p.passed(), "signed probe failed: {:?}", p.result);
    ensure!(
        p.get("secure_boot").map(|v| v.trim_start_matches("0x")) == Some("3"),
        "probe secure_boot={:?}, want 3 (enabled)",
        p.get("secure_boot")
    );

    let spec = refused_image_spec("hardening-secure-boot-tampered-probe", fw, tampered_path);
    let out = ctx.boot(&spec)?;
    ensure!(
        out.probe.is_none() && !out.log.contains("zboot:"),
        "the tampered image ran under enforcing Secure Boot:\n{}",
        out.log_tail(20)
    );
    ensure!(
        out.log.contains("Access Denied"),
        "the firmware did not deny the tampered image (log {}):\n{}",
        out.log_path.display(),
        out.log_tail(10)
    );
    Ok(())
}

/// An embedded command line is part of the signed image; systemd-boot's entry options (which
/// anyone at the boot menu could edit) are not. Under enforcing Secure Boot the stub must ignore
/// them; without Secure Boot the same image gets them appended.
fn embedded_cmdline_vs_loader_options(ctx: &Ctx, row: &On, secure: bool) -> Result<()> {
    let fw = row.fw;
    // efi=debug: the stub says when it drops the loader's options, which proves they arrived.
    let embedded = "console=ttyS0 efi=debug zboot.signed=1";
    let injected = "zboot.injected=1";
    let image = probe::pack_with_cmdline(ctx, "hardening-probe-embedded-cmdline", embedded, &[])?;
    let spec = BootSpec::systemd_boot(row.name(), fw, image, None, injected);
    let out = ctx.boot(&spec)?;
    let p = out
        .probe
        .clone()
        .with_context(|| format!("the probe did not report:\n{}", out.log_tail(20)))?;
    ensure!(p.passed(), "probe failed: {:?}", p.result);
    let want = if secure {
        embedded.to_string()
    } else {
        format!("{embedded} {injected}")
    };
    let got = p.get("cmdline").unwrap_or_default();
    ensure!(got == want, "kernel command line {got:?}, want {want:?}");
    let dropped = out.log.contains("loader options ignored");
    ensure!(
        dropped == secure,
        "stub's 'loader options ignored' line present: {dropped}, want {secure}"
    );
    Ok(())
}

/// A signed image whose own `.cmdline` is not UTF-8 (made by patching a packed image and fixing
/// its embedded-section hash: the packer refuses such a line) is refused by the stub under
/// Secure Boot: one error line, an error back to systemd-boot, the probe kernel never runs, and
/// the loader's options never reach a kernel (before, the stub took a bad line as "no embedded
/// line" and let them in).
fn malformed_embedded_cmdline(ctx: &Ctx, row: &On) -> Result<()> {
    let fw = row.fw;
    let embedded = "console=ttyS0 zboot.bad=XXXX";
    let image = probe::pack_with_cmdline(ctx, "hardening-probe-cmdline-to-corrupt", embedded, &[])?;
    let mut pe = std::fs::read(&image)?;
    let at = pe
        .windows(embedded.len())
        .position(|w| w == embedded.as_bytes())
        .context("embedded command line not found in the image")?;
    let end = at + embedded.len();
    pe[end - 4..end].copy_from_slice(&[0xff, 0xfe, 0xc0, 0x80]);
    let pay = payload_offset(&pe)?;
    let section = pe.get(pay..).context("payload section")?;
    let mut h = PayloadHeader::parse(section).map_err(|e| anyhow!("payload header: {e:?}"))?;
    h.cmdline_check = zboot_format::checksum::of(&pe[at..end]);
    let mut buf = [0u8; HEADER_SIZE];
    h.write(&mut buf);
    pe[pay..pay + HEADER_SIZE].copy_from_slice(&buf);
    let bad = super::scratch().join("hardening-cmdline-not-utf8.efi");
    std::fs::write(&bad, &pe)?;

    let mut spec =
        BootSpec::systemd_boot(row.name(), fw, bad, None, "console=ttyS0 zboot.injected=1");
    ensure!(spec.sign, "the image must be signed for {fw}");
    spec.stop_on.push("embedded command line refused".into());
    spec.timeout = spec.timeout.min(std::time::Duration::from_secs(90));
    let out = ctx.boot(&spec)?;
    ensure!(
        out.log
            .contains("embedded command line refused: not valid UTF-8"),
        "no refusal line (log {}):\n{}",
        out.log_path.display(),
        out.log_tail(15)
    );
    ensure!(
        out.probe.is_none(),
        "the probe kernel ran with a malformed embedded command line"
    );
    Ok(())
}

/// Loader options that make the composed line longer than the kernel keeps (2047 bytes) are an
/// error line and an error return, not a silently truncated command line.
fn overlong_cmdline(ctx: &Ctx, row: &On) -> Result<()> {
    let fw = row.fw;
    let image = probe::pack_with_cmdline(
        ctx,
        "hardening-probe-embedded-cmdline",
        "console=ttyS0 efi=debug zboot.signed=1",
        &[],
    )?;
    let filler = format!("zboot.pad={}", "p".repeat(zboot_format::cmdline::MAX_LEN));
    let mut spec = BootSpec::systemd_boot(row.name(), fw, image, None, filler);
    spec.stop_on.push("kernel command line refused".into());
    spec.timeout = spec.timeout.min(std::time::Duration::from_secs(90));
    let out = ctx.boot(&spec)?;
    ensure!(
        out.log.contains("kernel command line refused:")
            && out.log.contains("longer than the 2047 the kernel keeps"),
        "no refusal line (log {}):\n{}",
        out.log_path.display(),
        out.log_tail(15)
    );
    ensure!(
        out.probe.is_none(),
        "the probe kernel ran with an over-long command line"
    );
    Ok(())
}

/// Which of Debian's kernels (a [`Fixtures`] field) a row boots.
type KernelOf = fn(&Fixtures) -> &DebianKernel;

pub fn tests() -> Vec<BootTest> {
    use Firmware::{Ovmf2022, Ovmf2025StrictNx as StrictNx, Ovmf2025StrictNxSecureBoot as Secure};
    let mut rows = vec![
        on(
            "hardening-secure-boot-cmdline-not-utf8",
            Secure,
            malformed_embedded_cmdline,
        ),
        on("hardening-cmdline-too-long", StrictNx, overlong_cmdline),
        on("hardening-probe-kaslr-la57", StrictNx, probe_kaslr),
        on("hardening-probe-kaslr-la57", Ovmf2022, probe_kaslr_ovmf2022),
        on("hardening-probe-nokaslr", StrictNx, probe_nokaslr),
        on("hardening-probe-4level", StrictNx, probe_4level),
        on("hardening-secure-boot-tampered", Secure, secure_boot_tamper),
        on(
            "hardening-secure-boot-embedded-cmdline",
            Secure,
            |ctx, row| embedded_cmdline_vs_loader_options(ctx, row, true),
        ),
        on(
            "hardening-embedded-cmdline-loader-options",
            StrictNx,
            |ctx, row| embedded_cmdline_vs_loader_options(ctx, row, false),
        ),
        on("hardening-linux-kaslr-5level", StrictNx, linux_kaslr),
        on("hardening-linux-nokaslr", StrictNx, linux_nokaslr),
        on("hardening-linux-no5lvl", StrictNx, linux_no5lvl),
    ];
    rows.extend(BOTH_OVMF.map(|fw| on("hardening-probe-wx", fw, probe_wx)));
    // Debian's two kernels, named by their tag.
    let kernels: [(&str, KernelOf); 2] =
        [("debian61", |f| &f.kernel), ("debian612", |f| &f.kernel612)];
    for (tag, kernel) in kernels {
        rows.push(on(
            format!("hardening-linux-wx-{tag}"),
            StrictNx,
            move |ctx, row| linux_wx(ctx, row, kernel(ctx.fixtures()?), tag),
        ));
    }
    for (tag, kernel) in kernels {
        rows.push(on(
            format!("hardening-bare-vmlinux-5level-{tag}"),
            StrictNx,
            move |ctx, row| bare_vmlinux_5level(ctx, row, kernel(ctx.fixtures()?), tag),
        ));
    }
    rows
}

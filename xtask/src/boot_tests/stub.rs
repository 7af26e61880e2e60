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

use super::*;
use crate::report::ProbeReport;
use std::path::Path;
use std::sync::OnceLock;
use zboot_format::Codec;
use zboot_format::testdata::XorShift64;

const MIB2: u64 = 2 << 20;

// ---------------------------------------------------------------------------------------------
// Shared inputs (built once per run)

/// Deterministic pseudo-random test data, `len` bytes.
fn test_bytes(seed: u64, len: usize) -> Vec<u8> {
    XorShift64::new(seed).bytes().take(len).collect()
}

/// A small initrd file for the probe: `<target>/boot-tests/<name>` holding [`test_bytes`].
/// Sizes are deliberately not page multiples, so concatenation offsets are exercised.
struct TestFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

fn test_file(name: &str, seed: u64, len: usize) -> Result<TestFile> {
    let bytes = test_bytes(seed, len);
    let path = qemu::target_dir().join("boot-tests").join(name);
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(TestFile { path, bytes })
}

/// Initrd A (used via LoadFile2, embedded, or `initrd=`).
fn initrd_a() -> Result<TestFile> {
    test_file("probe-initrd-a.img", 0x5eeda, 300_001)
}

/// Initrd B (a decoy, an override, or the second of two files).
fn initrd_b() -> Result<TestFile> {
    test_file("probe-initrd-b.img", 0x5eedb, 70_013)
}

/// Embedded command line of the `--cmdline` probe images.
fn probe_embedded_cmdline() -> String {
    format!("console=ttyS0 {MARKER} probe.embedded=1")
}

/// The probe packed with its relocation table (and `extra` packer arguments).
pub(super) fn pack_probe(ctx: &Ctx, name: &str, extra: &[&str]) -> Result<PathBuf> {
    let p = ctx.probe()?;
    let relocs = p.relocs.display().to_string();
    let mut args = vec!["--relocs", relocs.as_str()];
    args.extend_from_slice(extra);
    ctx.pack(name, &p.vmlinux, &args)
}

/// The probe packed with `--cmdline` [`probe_embedded_cmdline`] and `--initrd` A.
fn pack_probe_embedded(ctx: &Ctx) -> Result<PathBuf> {
    let a = initrd_a()?;
    let cmdline = probe_embedded_cmdline();
    let initrd = a.path.display().to_string();
    pack_probe(
        ctx,
        "probe-embedded",
        &["--cmdline", &cmdline, "--initrd", &initrd],
    )
}

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
// Probe checks

/// What the host expects the probe to report.
pub(super) struct ProbeExpect<'a> {
    /// The command line, exactly.
    pub cmdline_exact: Option<String>,
    /// Words the command line must contain (in this order, not necessarily adjacent).
    pub cmdline_words: Vec<String>,
    /// The initrd the kernel must get (`None`: no initrd, `initrd_size=0`).
    pub initrd: Option<&'a [u8]>,
}

impl<'a> ProbeExpect<'a> {
    /// The command line holds `line`'s words in order; the kernel gets `initrd`.
    pub fn words(line: &str, initrd: Option<&'a [u8]>) -> ProbeExpect<'a> {
        ProbeExpect {
            cmdline_exact: None,
            cmdline_words: words(line),
            initrd,
        }
    }
}

/// `spec`, stopped 2 s after the firmware reports a CPU exception (instead of the timeout).
fn fail_fast(spec: &BootSpec) -> BootSpec {
    let mut spec = spec.clone();
    spec.stop_on.push("!!!! X64 Exception Type".into());
    spec
}

fn hex(v: &str) -> Option<u64> {
    u64::from_str_radix(v.trim().strip_prefix("0x")?, 16).ok()
}

fn probe_get<'a>(p: &'a ProbeReport, key: &str) -> Result<&'a str> {
    p.get(key)
        .ok_or_else(|| anyhow!("the probe report has no `{key}`"))
}

/// Runs `spec` and checks the probe outcome against `want`.
fn boot_probe(ctx: &Ctx, spec: &BootSpec, want: &ProbeExpect) -> Result<ProbeReport> {
    let out = ctx.boot(&fail_fast(spec))?;
    check_probe(ctx, &out, want)
}

/// Checks the probe's report in `out` against `want` (every entry check passed, the exit code,
/// where it landed, every relocation applied, its command line and initrd).
pub(super) fn check_probe(ctx: &Ctx, out: &BootOutcome, want: &ProbeExpect) -> Result<ProbeReport> {
    let arts = ctx.probe()?;
    let ctx_msg = || format!("{} (log {})", out.name, out.log_path.display());
    let Some(p) = out.probe.clone() else {
        bail!(
            "{}: no probe report (exit {:?}, timed out {}):\n{}",
            ctx_msg(),
            out.exit_code,
            out.timed_out,
            out.log_tail(25)
        );
    };
    let failed: Vec<String> = p
        .values
        .iter()
        .filter(|(k, v)| k.starts_with("check_") && *v != "ok")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    ensure!(
        p.passed() && failed.is_empty(),
        "{}: probe result {:?}, failed checks: {}\n{}",
        ctx_msg(),
        p.result,
        failed.join(" "),
        out.log_tail(15)
    );
    ensure!(
        out.debug_exit_value() == Some(16) && out.exit_code == Some(33),
        "{}: QEMU exit code {:?}, want 33 (isa-debug-exit pass)",
        ctx_msg(),
        out.exit_code
    );

    // Where the kernel landed.
    let base = hex(probe_get(&p, "load_base")?).context("load_base")?;
    ensure!(
        base != 0 && base.is_multiple_of(MIB2),
        "{}: load_base {base:#x} is not 2 MiB aligned",
        ctx_msg()
    );
    let delta = hex(probe_get(&p, "virt_delta")?).context("virt_delta")?;
    match probe_get(&p, "kaslr_flag")? {
        "0" => ensure!(
            delta == 0,
            "{}: kaslr_flag=0 but virt_delta={delta:#x}",
            ctx_msg()
        ),
        "1" => ensure!(
            delta.is_multiple_of(MIB2),
            "{}: virt_delta {delta:#x} not 2 MiB aligned",
            ctx_msg()
        ),
        other => bail!("{}: kaslr_flag={other}", ctx_msg()),
    }
    // Every relocation entry of the table was applied (the probe verifies each location).
    let (n64, ninv, n32) = arts.counts;
    for (key, n) in [
        ("relocs_rel64", n64),
        ("relocs_inv32", ninv),
        ("relocs_rel32", n32),
    ] {
        let got: u64 = probe_get(&p, key)?.parse().context(key)?;
        ensure!(
            got == n as u64,
            "{}: {key}={got}, the table has {n}",
            ctx_msg()
        );
    }
    // A BIOS boot (`probe.firmware=bios`) has no EFI memory map: the probe checked that no
    // EFI information is there at all.
    if !want
        .cmdline_words
        .iter()
        .any(|w| w == "probe.firmware=bios")
    {
        ensure!(
            probe_get(&p, "efi_memmap_entries")?.parse::<u64>()? > 0,
            "{}: empty EFI memory map",
            ctx_msg()
        );
    }

    // Command line.
    let cmdline = probe_get(&p, "cmdline")?;
    if let Some(exact) = &want.cmdline_exact {
        ensure!(
            cmdline == exact.as_str(),
            "{}: cmdline {cmdline:?}, want {exact:?}",
            ctx_msg()
        );
    }
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    let mut at = 0;
    for w in &want.cmdline_words {
        match words[at..].iter().position(|x| x == w) {
            Some(i) => at += i + 1,
            None => bail!(
                "{}: cmdline {cmdline:?} lacks {w:?} (in order {:?})",
                ctx_msg(),
                want.cmdline_words
            ),
        }
    }

    // Initrd: which source won, byte-exact.
    let size: u64 = probe_get(&p, "initrd_size")?
        .parse()
        .context("initrd_size")?;
    match want.initrd {
        None => ensure!(
            size == 0,
            "{}: initrd_size={size}, want 0 (no initrd)",
            ctx_msg()
        ),
        Some(bytes) => {
            let crc = format!("0x{:08x}", probe_kernel::crc32::crc32(bytes));
            let got_crc = probe_get(&p, "initrd_crc32")?;
            ensure!(
                size == bytes.len() as u64 && got_crc == crc,
                "{}: initrd {size} bytes crc {got_crc}, want {} bytes crc {crc}",
                ctx_msg(),
                bytes.len()
            );
        }
    }
    println!(
        "    probe: load_base {base:#x} virt_delta {delta:#x} kaslr_flag {} initrd {size} bytes, cmdline {cmdline:?}",
        probe_get(&p, "kaslr_flag")?
    );
    Ok(p)
}

pub(super) fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// systemd-boot (LoadFile2 initrd A, options) on `fw`. The options also carry
/// `initrd=\decoy.img` (file B on the ESP): the stub must take LoadFile2's initrd and ignore
/// every `initrd=` (systemd-boot adds its own `initrd=\zboot\initrd.img` too).
fn probe_sdboot(ctx: &Ctx, fw: Firmware) -> Result<()> {
    let image = pack_probe(ctx, "probe", &[])?;
    let (a, b) = (initrd_a()?, initrd_b()?);
    let options = format!("console=ttyS0 {MARKER} initrd=\\decoy.img");
    let mut spec = BootSpec::systemd_boot(
        format!("probe-sdboot-{fw}"),
        fw,
        image,
        Some(a.path.clone()),
        &options,
    );
    spec.extra_files.push(("decoy.img".into(), b.path.clone()));
    boot_probe(ctx, &spec, &ProbeExpect::words(&options, Some(&a.bytes)))?;
    Ok(())
}

/// `noinitrd` beats LoadFile2: systemd-boot offers initrd A, the kernel gets none.
fn probe_sdboot_noinitrd(ctx: &Ctx, fw: Firmware) -> Result<()> {
    let image = pack_probe(ctx, "probe", &[])?;
    let a = initrd_a()?;
    let options = format!("console=ttyS0 noinitrd {MARKER}");
    let spec = BootSpec::systemd_boot(
        format!("probe-sdboot-noinitrd-{fw}"),
        fw,
        image,
        Some(a.path.clone()),
        &options,
    );
    boot_probe(ctx, &spec, &ProbeExpect::words(&options, None))?;
    Ok(())
}

/// systemd-boot entry without an `initrd` line (no LoadFile2) whose options name
/// `initrd=/zboot/b.img`: the stub reads the file from the volume it was loaded from (the path
/// written with `/`). The strict-NX firmware has no shell: this is its `initrd=` row.
fn probe_sdboot_initrd_option(ctx: &Ctx, fw: Firmware) -> Result<()> {
    let image = pack_probe(ctx, "probe", &[])?;
    let b = initrd_b()?;
    let options = format!("console=ttyS0 initrd=/zboot/b.img {MARKER} efi=debug");
    let mut spec = BootSpec::systemd_boot(
        format!("probe-sdboot-initrd-option-{fw}"),
        fw,
        image,
        None,
        &options,
    );
    spec.extra_files
        .push(("zboot/b.img".into(), b.path.clone()));
    boot_probe(ctx, &spec, &ProbeExpect::words(&options, Some(&b.bytes)))?;
    Ok(())
}

/// Bare `\EFI\BOOT\BOOTX64.EFI` with embedded `--cmdline` and `--initrd`: the kernel gets
/// exactly the embedded command line (no load options) and initrd A.
fn probe_bare_embedded(ctx: &Ctx, fw: Firmware) -> Result<()> {
    let image = pack_probe_embedded(ctx)?;
    let a = initrd_a()?;
    let spec = BootSpec::new(
        format!("probe-embedded-bare-{fw}"),
        fw,
        BootMode::Bare { image },
    );
    boot_probe(
        ctx,
        &spec,
        &ProbeExpect {
            cmdline_exact: Some(probe_embedded_cmdline()),
            cmdline_words: vec![],
            initrd: Some(&a.bytes),
        },
    )?;
    Ok(())
}

/// The probe packed with `codec` (zboot-pack embeds one stub variant per codec), bare on
/// strict NX 2025.02 with an embedded command line: every stub variant reaches the kernel.
fn probe_codec_bare(ctx: &Ctx, codec: &str) -> Result<()> {
    let fw = Firmware::Ovmf2025StrictNx;
    let cmdline = format!("console=ttyS0 {MARKER} probe.codec={codec}");
    let image = pack_probe(
        ctx,
        &format!("probe-codec-{codec}"),
        &["--codec", codec, "--cmdline", &cmdline],
    )?;
    let spec = BootSpec::new(
        format!("probe-codec-{codec}-bare-{fw}"),
        fw,
        BootMode::Bare { image },
    );
    boot_probe(
        ctx,
        &spec,
        &ProbeExpect {
            cmdline_exact: Some(cmdline),
            cmdline_words: vec![],
            initrd: None,
        },
    )?;
    Ok(())
}

/// UEFI shell (no LoadFile2): `initrd=` files from the volume the image came from.
/// `files`: (path on the ESP, contents); `initrd_args`: the `initrd=` words; `want`: expected
/// initrd bytes.
fn probe_shell(
    ctx: &Ctx,
    name: &str,
    image: PathBuf,
    files: &[(&str, &Path)],
    args: &str,
    want: ProbeExpect,
) -> Result<()> {
    let fw = Firmware::Ovmf2022;
    let mut spec = BootSpec::new(
        format!("{name}-{fw}"),
        fw,
        BootMode::Shell {
            image,
            args: args.to_string(),
        },
    );
    for (rel, src) in files {
        spec.extra_files.push((rel.to_string(), src.to_path_buf()));
    }
    boot_probe(ctx, &spec, &want)?;
    Ok(())
}

fn probe_shell_one_file(ctx: &Ctx) -> Result<()> {
    let image = pack_probe(ctx, "probe", &[])?;
    let a = initrd_a()?;
    let args = format!("initrd=\\initrd.img console=ttyS0 {MARKER}");
    probe_shell(
        ctx,
        "probe-shell-initrd",
        image,
        &[("initrd.img", &a.path)],
        &args,
        ProbeExpect::words(&args, Some(&a.bytes)),
    )
}

/// Two `initrd=` files (one in a subdirectory, written with `/`) are concatenated in order.
fn probe_shell_two_files(ctx: &Ctx) -> Result<()> {
    let image = pack_probe(ctx, "probe", &[])?;
    let (a, b) = (initrd_a()?, initrd_b()?);
    let args = format!("initrd=\\b.img console=ttyS0 initrd=/sub/a.img {MARKER}");
    let mut both = b.bytes.clone();
    both.extend_from_slice(&a.bytes);
    probe_shell(
        ctx,
        "probe-shell-two-initrds",
        image,
        &[("b.img", &b.path), ("sub/a.img", &a.path)],
        &args,
        ProbeExpect::words(&args, Some(&both)),
    )
}

/// A shell row over the embedded command line and initrd (A): the embedded line first, the
/// shell's `args` appended; `initrd=` file B on the volume. `want_b`: the kernel gets B (an
/// `initrd=` file beats the embedded initrd), else none (`noinitrd` beats both).
fn shell_over_embedded_row(name: &'static str, args: &'static str, want_b: bool) -> BootTest {
    BootTest::new(format!("{name}-{}", Firmware::Ovmf2022), move |ctx| {
        let image = pack_probe_embedded(ctx)?;
        let b = initrd_b()?;
        let mut want_words = words(&probe_embedded_cmdline());
        want_words.extend(words(args));
        probe_shell(
            ctx,
            name,
            image,
            &[("b.img", &b.path)],
            args,
            ProbeExpect {
                cmdline_exact: None,
                cmdline_words: want_words,
                initrd: want_b.then_some(&b.bytes[..]),
            },
        )
    })
}

/// A missing `initrd=` file: the stub prints an error naming it and returns to the firmware;
/// the kernel never starts.
fn probe_shell_missing_initrd(ctx: &Ctx) -> Result<()> {
    let image = pack_probe(ctx, "probe", &[])?;
    let fw = Firmware::Ovmf2022;
    let mut spec = BootSpec::new(
        format!("probe-shell-missing-initrd-{fw}"),
        fw,
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
    println!("    stub said: {}", line.trim());
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
    let out = ctx.boot(&fail_fast(&spec))?;
    let r = check_linux_report(ctx, &out)?;
    check_memtotal_parity(ctx, fw, r)?;
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
fn linux_vmlinux_shell(ctx: &Ctx) -> Result<()> {
    let fw = Firmware::Ovmf2022;
    let image = debian_vmlinux_zstd(ctx)?;
    let spec = BootSpec::new(
        format!("linux-vmlinux-zstd-shell-initrd-{fw}"),
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
fn linux_vmlinux_sdboot_initrd_option(ctx: &Ctx, fw: Firmware) -> Result<()> {
    let image = debian_vmlinux_zstd(ctx)?;
    let spec = BootSpec::systemd_boot(
        format!("linux-vmlinux-zstd-sdboot-initrd-option-{fw}"),
        fw,
        image,
        None,
        format!("initrd=\\initrd.img {}", baseline_options()),
    );
    boot_with_initrd_file(ctx, spec, fw)
}

/// The EFI handover protocol seen by the probe: GRUB 2.06 `linuxefi` + `initrdefi` with initrd
/// A; the probe checks the entry contract and reports the command line and initrd the stub took
/// from GRUB's boot_params.
fn probe_grub_linuxefi(ctx: &Ctx, fw: Firmware) -> Result<()> {
    let fx = ctx.fixtures()?;
    let image = pack_probe(ctx, "probe-plain", &[])?;
    let a = initrd_a()?;
    let cfg = "set timeout=0\ninsmod part_gpt\ninsmod part_msdos\ninsmod fat\n\
               search --no-floppy --file --set=root /zboot/linux.efi\n\
               linuxefi /zboot/linux.efi console=ttyS0 probe.grub=linuxefi\n\
               initrdefi /zboot/initrd.img\nboot\n";
    let grub = super::loaders::grub_standalone(&fx.grub206, "grub-2.06-probe", cfg)?;
    let mut spec = BootSpec::new(
        format!("probe-grub-2.06-linuxefi-{fw}"),
        fw,
        BootMode::Bare { image: grub },
    );
    spec.extra_files = vec![
        ("zboot/linux.efi".into(), image),
        ("zboot/initrd.img".into(), a.path.clone()),
    ];
    boot_probe(
        ctx,
        &spec,
        &ProbeExpect::words(
            "BOOT_IMAGE=/zboot/linux.efi console=ttyS0 probe.grub=linuxefi",
            Some(&a.bytes),
        ),
    )?;
    Ok(())
}

/// The bzImage entries' contract, seen by the probe: QEMU `-kernel` on SeaBIOS enters the 16-bit
/// entry, which goes through the 32-bit one (its own page tables) into the firmware-less
/// pipeline. The probe checks every entry fact as on the EFI paths (no EFI information at all
/// here, a VGA text `screen_info`, the BIOS e820 map), plus W^X in the stub's own page tables —
/// the probe packed with
/// `--protect-text` finds its text read-only + executable and its read-only data and data
/// writable + non-executable.
fn probe_qemu_kernel_seabios(ctx: &Ctx) -> Result<()> {
    let image = pack_probe(ctx, "probe-wx", &["--protect-text"])?;
    let a = initrd_a()?;
    let append = format!("console=ttyS0 {MARKER} probe.firmware=bios");
    let spec = BootSpec::new(
        "probe-qemu-kernel-seabios",
        Firmware::Seabios,
        BootMode::Direct {
            kernel: image,
            initrd: Some(a.path.clone()),
            append: append.clone(),
        },
    );
    let p = boot_probe(ctx, &spec, &ProbeExpect::words(&append, Some(&a.bytes)))?;
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
    const STRICT: [Firmware; 1] = [Firmware::Ovmf2025StrictNx];
    let mut rows = vec![BootTest::new(
        "probe-qemu-kernel-seabios",
        probe_qemu_kernel_seabios,
    )];
    rows.extend(on_each(
        "probe-grub-2.06-linuxefi",
        &BOTH_OVMF,
        probe_grub_linuxefi,
    ));
    // The probe kernel.
    rows.extend(on_each("probe-sdboot", &BOTH_OVMF, probe_sdboot));
    rows.extend(on_each(
        "probe-embedded-bare",
        &BOTH_OVMF,
        probe_bare_embedded,
    ));
    rows.extend(on_each(
        "probe-sdboot-noinitrd",
        &STRICT,
        probe_sdboot_noinitrd,
    ));
    rows.extend(on_each(
        "probe-sdboot-initrd-option",
        &STRICT,
        probe_sdboot_initrd_option,
    ));
    rows.extend(Codec::ALL.map(|codec| {
        BootTest::new(
            format!("probe-codec-{}-bare-ovmf2025-strict-nx", codec.name()),
            move |ctx| probe_codec_bare(ctx, codec.name()),
        )
    }));
    rows.extend([
        BootTest::new("probe-shell-initrd-ovmf2022", probe_shell_one_file),
        BootTest::new("probe-shell-two-initrds-ovmf2022", probe_shell_two_files),
        shell_over_embedded_row(
            "probe-shell-embedded-override",
            "initrd=\\b.img probe.loader=1",
            true,
        ),
        shell_over_embedded_row("probe-shell-noinitrd", "initrd=\\b.img noinitrd", false),
        BootTest::new(
            "probe-shell-missing-initrd-ovmf2022",
            probe_shell_missing_initrd,
        ),
    ]);
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
        BootTest::new(
            "linux-vmlinux-zstd-shell-initrd-ovmf2022",
            linux_vmlinux_shell,
        ),
        BootTest::new(
            "linux-vmlinux-zstd-sdboot-initrd-option-ovmf2025-strict-nx",
            |ctx| linux_vmlinux_sdboot_initrd_option(ctx, Firmware::Ovmf2025StrictNx),
        ),
        BootTest::new("packed-embedded-cmdline-initrd-bare-ovmf2022", |ctx| {
            super::foundation::packed_embedded_bare(ctx, Firmware::Ovmf2022)
        }),
    ]);
    rows
}

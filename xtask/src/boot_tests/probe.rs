//! The probe kernel's vocabulary, one for every row that boots it (stub.rs, hardening.rs,
//! legacy.rs): its test initrds, its packing, what a row expects it to report and the check of
//! that report, and [`Row`], a probe boot written as data.

use super::*;
use crate::report::ProbeReport;
use zboot_format::testdata::XorShift64;

pub(super) const MIB2: u64 = 2 << 20;

// ---------------------------------------------------------------------------------------------
// Inputs (the initrd files are rewritten by each row that uses them; the same bytes each time)

/// Deterministic pseudo-random test data, `len` bytes.
fn test_bytes(seed: u64, len: usize) -> Vec<u8> {
    XorShift64::new(seed).bytes().take(len).collect()
}

/// A small initrd file for the probe: `<name>` in the worker's [`super::scratch`] holding [`test_bytes`].
/// Sizes are deliberately not page multiples, so concatenation offsets are exercised.
pub(super) struct TestFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

fn test_file(name: &str, seed: u64, len: usize) -> Result<TestFile> {
    let bytes = test_bytes(seed, len);
    let path = super::scratch().join(name);
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(TestFile { path, bytes })
}

/// Initrd A (used via LoadFile2, embedded, or `initrd=`).
pub(super) fn initrd_a() -> Result<TestFile> {
    test_file("probe-initrd-a.img", 0x5eeda, 300_001)
}

/// Initrd B (a decoy, an override, or the second of two files).
pub(super) fn initrd_b() -> Result<TestFile> {
    test_file("probe-initrd-b.img", 0x5eedb, 70_013)
}

/// Embedded command line of the `--cmdline` probe images.
pub(super) fn embedded_cmdline() -> String {
    format!("console=ttyS0 {MARKER} probe.embedded=1")
}

/// The probe packed with its relocation table (and `extra` packer arguments).
pub(super) fn pack(ctx: &Ctx, name: &str, extra: &[&str]) -> Result<PathBuf> {
    let p = ctx.probe()?;
    let relocs = p.relocs.display().to_string();
    let mut args = vec!["--relocs", relocs.as_str()];
    args.extend_from_slice(extra);
    ctx.pack(name, &p.vmlinux, &args)
}

/// The probe packed with `--cmdline` [`embedded_cmdline`] and `--initrd` A.
pub(super) fn pack_embedded(ctx: &Ctx) -> Result<PathBuf> {
    let a = initrd_a()?;
    let cmdline = embedded_cmdline();
    let initrd = a.path.display().to_string();
    pack(
        ctx,
        "probe-embedded",
        &["--cmdline", &cmdline, "--initrd", &initrd],
    )
}

/// The probe packed with its relocation table, the embedded command line `cmdline` and `extra`.
pub(super) fn pack_with_cmdline(
    ctx: &Ctx,
    name: &str,
    cmdline: &str,
    extra: &[&str],
) -> Result<PathBuf> {
    let mut args = vec!["--cmdline", cmdline];
    args.extend_from_slice(extra);
    pack(ctx, name, &args)
}

// ---------------------------------------------------------------------------------------------
// Checks

/// What the host expects the probe to report.
pub(super) struct Expect<'a> {
    /// The command line, exactly.
    pub cmdline_exact: Option<String>,
    /// Words the command line must contain (in this order, not necessarily adjacent).
    pub cmdline_words: Vec<String>,
    /// The initrd the kernel must get (`None`: no initrd, `initrd_size=0`).
    pub initrd: Option<&'a [u8]>,
}

impl<'a> Expect<'a> {
    /// The command line holds `line`'s words in order; the kernel gets `initrd`.
    pub fn words(line: &str, initrd: Option<&'a [u8]>) -> Expect<'a> {
        Expect {
            cmdline_exact: None,
            cmdline_words: words(line),
            initrd,
        }
    }
}

/// `spec`, stopped 2 s after the firmware reports a CPU exception (instead of the timeout).
pub(super) fn fail_fast(spec: &BootSpec) -> BootSpec {
    let mut spec = spec.clone();
    spec.stop_on.push("!!!! X64 Exception Type".into());
    spec
}

/// Runs `spec` and checks the probe outcome against `want`.
pub(super) fn boot(ctx: &Ctx, spec: &BootSpec, want: &Expect) -> Result<ProbeReport> {
    let out = ctx.boot(&fail_fast(spec))?;
    check(ctx, &out, want)
}

/// Checks the probe's report in `out` against `want` (every entry check passed, the exit code,
/// where it landed, every relocation applied, its command line and initrd).
pub(super) fn check(ctx: &Ctx, out: &BootOutcome, want: &Expect) -> Result<ProbeReport> {
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
    let base = p.hex("load_base")?;
    ensure!(
        base != 0 && base.is_multiple_of(MIB2),
        "{}: load_base {base:#x} is not 2 MiB aligned",
        ctx_msg()
    );
    let delta = p.hex("virt_delta")?;
    match p.value("kaslr_flag")? {
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
        let got: u64 = p.number(key)?;
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
            p.number("efi_memmap_entries")? > 0,
            "{}: empty EFI memory map",
            ctx_msg()
        );
    }

    // Command line.
    let cmdline = p.value("cmdline")?;
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
    let size: u64 = p.number("initrd_size")?;
    match want.initrd {
        None => ensure!(
            size == 0,
            "{}: initrd_size={size}, want 0 (no initrd)",
            ctx_msg()
        ),
        Some(bytes) => {
            let crc = format!("0x{:08x}", probe_kernel::crc32::crc32(bytes));
            let got_crc = p.value("initrd_crc32")?;
            ensure!(
                size == bytes.len() as u64 && got_crc == crc,
                "{}: initrd {size} bytes crc {got_crc}, want {} bytes crc {crc}",
                ctx_msg(),
                bytes.len()
            );
        }
    }
    say!(
        "    probe: load_base {base:#x} virt_delta {delta:#x} kaslr_flag {} initrd {size} bytes, cmdline {cmdline:?}",
        p.value("kaslr_flag")?
    );
    Ok(p)
}

/// The words of `s`.
pub(super) fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// Boots `image` as `\EFI\BOOT\BOOTX64.EFI` on `fw` (at most 90 s) and returns its report,
/// which must say `result=pass`, with the outcome.
pub(super) fn passing_bare(
    ctx: &Ctx,
    fw: Firmware,
    name: &str,
    image: PathBuf,
) -> Result<(ProbeReport, BootOutcome)> {
    let mut spec = BootSpec::new(name, fw, BootMode::Bare { image });
    spec.timeout = spec.timeout.min(std::time::Duration::from_secs(90));
    let out = ctx.boot(&spec)?;
    let Some(p) = out.probe.clone() else {
        bail!(
            "{name}: no probe report (log {}):\n{}",
            out.log_path.display(),
            out.log_tail(20)
        );
    };
    ensure!(
        p.passed(),
        "{name}: probe failed: {:?} (log {}):\n{}",
        p.result,
        out.log_path.display(),
        out.log_tail(40)
    );
    Ok((p, out))
}

// ---------------------------------------------------------------------------------------------
// A probe boot as data

/// One of the two test initrds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Initrd {
    A,
    B,
}

impl Initrd {
    fn file(self) -> Result<TestFile> {
        match self {
            Initrd::A => initrd_a(),
            Initrd::B => initrd_b(),
        }
    }
}

/// The probe image a row boots.
#[derive(Clone, Debug)]
pub(super) enum Image {
    /// Packed with `--relocs` only.
    Plain,
    /// With `--cmdline` [`embedded_cmdline`] and `--initrd` A.
    Embedded,
    /// With `--relocs` and these packer arguments, written to `<label>.efi`.
    Packed {
        label: &'static str,
        args: Vec<String>,
    },
}

impl Image {
    fn pack(&self, ctx: &Ctx) -> Result<PathBuf> {
        match self {
            Image::Plain => pack(ctx, "probe", &[]),
            Image::Embedded => pack_embedded(ctx),
            Image::Packed { label, args } => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                pack(ctx, label, &args)
            }
        }
    }
}

/// How a row starts its image.
#[derive(Clone, Debug)]
pub(super) enum Start {
    /// systemd-boot: the entry's `initrd` line (served by LoadFile2) and its options.
    SystemdBoot {
        initrd: Option<Initrd>,
        options: String,
    },
    /// The image as `\EFI\BOOT\BOOTX64.EFI`, no load options.
    Bare,
    /// The UEFI shell: `fs0:\image.efi <args>`.
    Shell { args: String },
    /// A standalone GRUB 2.06 `linuxefi /zboot/linux.efi <args>` + `initrdefi` (the EFI
    /// handover protocol).
    GrubLinuxefi { args: String, initrd: Initrd },
    /// QEMU `-kernel`, `-initrd`, `-append` (on SeaBIOS: the bzImage entries).
    QemuKernel {
        initrd: Option<Initrd>,
        append: String,
    },
}

/// The command line the probe must report.
#[derive(Clone, Debug)]
pub(super) enum Cmdline {
    Exact(String),
    /// These words, in this order, not necessarily adjacent.
    Words(Vec<String>),
}

/// A check of a probe report beyond [`check`].
pub(super) type ReportCheck = fn(&ProbeReport) -> Result<()>;

/// A probe boot: what is booted, how, on which firmware, what the probe must report. Its name
/// is `<label>-<firmware>`.
#[derive(Clone, Debug)]
pub(super) struct Row {
    pub label: &'static str,
    pub image: Image,
    pub start: Start,
    pub firmware: Firmware,
    /// Extra files on the ESP: (path, initrd).
    pub files: Vec<(&'static str, Initrd)>,
    pub cmdline: Cmdline,
    /// The initrd the kernel must get: these concatenated (none when empty).
    pub initrd: Vec<Initrd>,
    /// A further check of the report, named for `--list`.
    pub also: Option<(&'static str, ReportCheck)>,
}

impl Row {
    /// A row expecting `cmdline`'s words and `initrd`, with no ESP files and no further check.
    pub fn new(
        label: &'static str,
        image: Image,
        start: Start,
        firmware: Firmware,
        cmdline: Cmdline,
        initrd: &[Initrd],
    ) -> Row {
        Row {
            label,
            image,
            start,
            firmware,
            files: Vec::new(),
            cmdline,
            initrd: initrd.to_vec(),
            also: None,
        }
    }

    pub fn name(&self) -> String {
        On {
            label: self.label.into(),
            fw: self.firmware,
        }
        .name()
    }

    /// What `cargo xtask test --list` prints for the row.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "image {:?}; start {:?}; firmware {}",
            self.image, self.start, self.firmware
        );
        if !self.files.is_empty() {
            s += &format!("; ESP files {:?}", self.files);
        }
        s += &format!(
            "; expects cmdline {:?}, initrd {:?}",
            self.cmdline, self.initrd
        );
        if let Some((what, _)) = self.also {
            s += &format!(", {what}");
        }
        s
    }

    /// Packs, boots and checks the row.
    pub fn run(&self, ctx: &Ctx) -> Result<()> {
        let image = self.image.pack(ctx)?;
        let path = |i: Option<Initrd>| -> Result<Option<PathBuf>> {
            i.map(|i| Ok(i.file()?.path)).transpose()
        };
        let (name, fw) = (self.name(), self.firmware);
        let mut spec = match &self.start {
            Start::SystemdBoot { initrd, options } => {
                BootSpec::systemd_boot(name, fw, image, path(*initrd)?, options)
            }
            Start::Bare => BootSpec::new(name, fw, BootMode::Bare { image }),
            Start::Shell { args } => BootSpec::new(
                name,
                fw,
                BootMode::Shell {
                    image,
                    args: args.clone(),
                },
            ),
            Start::GrubLinuxefi { args, initrd } => {
                let cfg = format!(
                    "set timeout=0\ninsmod part_gpt\ninsmod part_msdos\ninsmod fat\n\
                     search --no-floppy --file --set=root /zboot/linux.efi\n\
                     linuxefi /zboot/linux.efi {args}\ninitrdefi /zboot/initrd.img\nboot\n"
                );
                let fx = ctx.fixtures()?;
                let grub = super::loaders::grub_standalone(&fx.grub206, "grub-2.06-probe", &cfg)?;
                let mut spec = BootSpec::new(name, fw, BootMode::Bare { image: grub });
                spec.extra_files = vec![
                    ("zboot/linux.efi".into(), image),
                    ("zboot/initrd.img".into(), initrd.file()?.path),
                ];
                spec
            }
            Start::QemuKernel { initrd, append } => BootSpec::new(
                name,
                fw,
                BootMode::Direct {
                    kernel: image,
                    initrd: path(*initrd)?,
                    append: append.clone(),
                },
            ),
        };
        for (at, file) in &self.files {
            spec.extra_files.push((at.to_string(), file.file()?.path));
        }
        let mut bytes = Vec::new();
        for i in &self.initrd {
            bytes.extend(i.file()?.bytes);
        }
        let (cmdline_exact, cmdline_words) = match &self.cmdline {
            Cmdline::Exact(line) => (Some(line.clone()), Vec::new()),
            Cmdline::Words(words) => (None, words.clone()),
        };
        let want = Expect {
            cmdline_exact,
            cmdline_words,
            initrd: (!self.initrd.is_empty()).then_some(&bytes[..]),
        };
        let report = boot(ctx, &spec, &want)?;
        match self.also {
            Some((_, check)) => check(&report),
            None => Ok(()),
        }
    }

    pub fn test(self) -> BootTest {
        let (name, about) = (self.name(), self.describe());
        BootTest::new(name, move |ctx| self.run(ctx)).about(about)
    }
}

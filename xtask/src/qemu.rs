//! The one QEMU runner. A [`BootSpec`] says what to put on the ESP and which firmware to use;
//! [`run`] boots it under TCG and returns a [`BootOutcome`] with the serial log and the parsed
//! reports.
//!
//! At most [`SLOTS`] QEMUs run at a time on the machine, one per lock file
//! `$TMPDIR/zboot-pack-qemu.<n>.lock`, shared by every process. A run takes one slot while the
//! boot tests run side by side ([`share_slots`]), and every slot otherwise: a bench, a demo, a
//! `cargo xtask boot` and a test that types at its guest run alone on the machine. The time
//! spent waiting does not count against the timeout.

use anyhow::{Context, Result, bail, ensure};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixtures::{Fixtures, missing};
use crate::report::{InitReport, ProbeReport};

/// Which firmware build and variables store to boot with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Firmware {
    /// Debian 12 OVMF 2022.11, `OVMF_CODE_4M.fd` + `OVMF_VARS_4M.fd` (has the UEFI shell).
    Ovmf2022,
    /// Debian 12 OVMF 2022.11 Secure Boot code with the snakeoil keys enrolled (enforcing).
    Ovmf2022SecureBoot,
    /// Debian 13 OVMF 2025.02 `OVMF_CODE_4M.fd` + `OVMF_VARS_4M.fd` (memory attribute protocol).
    Ovmf2025,
    /// Debian 13 OVMF 2025.02 `OVMF_CODE_4M.secboot.strictnx.fd` with plain vars (no keys
    /// enrolled: Secure Boot not enforcing), strict NX for loaded images' data.
    Ovmf2025StrictNx,
    /// `OVMF_CODE_4M.secboot.strictnx.fd` + `OVMF_VARS_4M.snakeoil.fd`: Secure Boot enforcing
    /// with the snakeoil keys; every image must be signed (see [`BootSpec::sign`]).
    Ovmf2025StrictNxSecureBoot,
    /// Debian 12's 32-bit OVMF 2022.11 (`ovmf-ia32`): `OVMF32_CODE_4M.secboot.fd` with plain
    /// vars (Secure Boot not enforcing), an IA32 UEFI on the same x86_64 CPU: it starts only
    /// IA32 EFI applications (`\EFI\BOOT\BOOTIA32.EFI`).
    Ovmf2022Ia32,
    /// SeaBIOS `bios-256k.bin` (Debian's `seabios`, QEMU's default BIOS): no UEFI, so only
    /// [`BootMode::Direct`] (QEMU's `-kernel`, the 16-bit boot protocol) boots on it.
    Seabios,
}

impl Firmware {
    /// Whether this is a UEFI firmware (OVMF): pflash code + vars, an ESP, EFI images.
    pub fn is_uefi(self) -> bool {
        self != Firmware::Seabios
    }

    /// (code, vars) of this firmware in the fixtures (OVMF only).
    pub fn files(self, fx: &Fixtures) -> Result<(PathBuf, PathBuf)> {
        let (ovmf, code, vars) = match self {
            Firmware::Seabios => bail!("SeaBIOS has no pflash code and vars"),
            Firmware::Ovmf2022Ia32 => {
                let (_, ovmf) = fx.ia32()?;
                return Ok((
                    ovmf.path("usr/share/OVMF/OVMF32_CODE_4M.secboot.fd"),
                    ovmf.path("usr/share/OVMF/OVMF32_VARS_4M.fd"),
                ));
            }
            Firmware::Ovmf2022 => (&fx.ovmf2022, "OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
            Firmware::Ovmf2022SecureBoot => (
                &fx.ovmf2022,
                "OVMF_CODE_4M.secboot.fd",
                "OVMF_VARS_4M.snakeoil.fd",
            ),
            Firmware::Ovmf2025 => (&fx.ovmf2025, "OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
            Firmware::Ovmf2025StrictNx => (
                &fx.ovmf2025,
                "OVMF_CODE_4M.secboot.strictnx.fd",
                "OVMF_VARS_4M.fd",
            ),
            Firmware::Ovmf2025StrictNxSecureBoot => (
                &fx.ovmf2025,
                "OVMF_CODE_4M.secboot.strictnx.fd",
                "OVMF_VARS_4M.snakeoil.fd",
            ),
        };
        Ok((ovmf.file(code)?, ovmf.file(vars)?))
    }

    /// The OVMF build this firmware comes from (SeaBIOS verifies nothing: it never needs one,
    /// and gets 2022.11's).
    pub fn ovmf(self, fx: &Fixtures) -> &crate::fixtures::Ovmf {
        match self {
            Firmware::Ovmf2022
            | Firmware::Ovmf2022SecureBoot
            | Firmware::Ovmf2022Ia32
            | Firmware::Seabios => &fx.ovmf2022,
            _ => &fx.ovmf2025,
        }
    }

    /// Secure-Boot-capable code: needs SMM and a secure pflash.
    pub fn needs_smm(self) -> bool {
        !matches!(
            self,
            Firmware::Ovmf2022 | Firmware::Ovmf2025 | Firmware::Seabios
        )
    }

    /// Secure Boot is enforced: images must be signed with the snakeoil key.
    pub fn enforcing(self) -> bool {
        matches!(
            self,
            Firmware::Ovmf2022SecureBoot | Firmware::Ovmf2025StrictNxSecureBoot
        )
    }

    /// Whether the build includes the UEFI shell (the secboot builds do not).
    pub fn has_shell(self) -> bool {
        matches!(self, Firmware::Ovmf2022 | Firmware::Ovmf2025)
    }

    pub fn name(self) -> &'static str {
        match self {
            Firmware::Ovmf2022 => "ovmf2022",
            Firmware::Ovmf2022SecureBoot => "ovmf2022-secure-boot",
            Firmware::Ovmf2025 => "ovmf2025",
            Firmware::Ovmf2025StrictNx => "ovmf2025-strict-nx",
            Firmware::Ovmf2025StrictNxSecureBoot => "ovmf2025-strict-nx-secure-boot",
            Firmware::Ovmf2022Ia32 => "ovmf2022-ia32",
            Firmware::Seabios => "seabios",
        }
    }

    /// The removable-media path the firmware starts (UEFI spec 3.5.1.1).
    pub fn default_boot_path(self) -> &'static str {
        if self == Firmware::Ovmf2022Ia32 {
            "EFI/BOOT/BOOTIA32.EFI"
        } else {
            "EFI/BOOT/BOOTX64.EFI"
        }
    }
}

impl fmt::Display for Firmware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the image under test is started.
#[derive(Debug, Clone)]
pub enum BootMode {
    /// `\EFI\BOOT\BOOTX64.EFI` = systemd-boot, with `loader/entries/zboot.conf` booting `linux`
    /// (copied to `\zboot\linux.efi`) with `initrd` (copied to `\zboot\initrd.img`) and `options`.
    SystemdBoot {
        linux: PathBuf,
        initrd: Option<PathBuf>,
        options: String,
    },
    /// `\EFI\BOOT\BOOTX64.EFI` = the image itself (no load options).
    Bare { image: PathBuf },
    /// The UEFI shell runs `startup.nsh`: `fs0:\image.efi <args>` (firmware with a shell only).
    Shell { image: PathBuf, args: String },
    /// QEMU's direct kernel boot: `-kernel kernel [-initrd initrd] -append append`, and a FAT
    /// disk only when [`BootSpec::extra_files`] has files (e.g. for GRUB's `lnxboot.img` image
    /// as the "kernel", reading the real kernel from that disk). On SeaBIOS QEMU's option ROM
    /// runs the image's 16-bit setup entry; on OVMF the firmware gets the files through fw_cfg
    /// and starts the kernel itself (LoadImage of the PE first, else its legacy bzImage loader),
    /// with the initrd through LoadFile2.
    Direct {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        append: String,
    },
    /// A bootable CD image (`-cdrom`, booted first; SeaBIOS: El Torito), and a FAT disk only when
    /// [`BootSpec::extra_files`] has files.
    Cdrom { iso: PathBuf },
}

/// Everything one boot needs.
#[derive(Debug, Clone)]
pub struct BootSpec {
    /// Names the serial log kept in `<target>/boot-logs/<name>.log`.
    pub name: String,
    pub firmware: Firmware,
    pub mode: BootMode,
    /// Extra files on the ESP: (path on the ESP with `/` separators, source file).
    pub extra_files: Vec<(String, PathBuf)>,
    /// Sign every EFI binary put on the ESP with the snakeoil key (needed when the firmware
    /// enforces Secure Boot). Defaults to `firmware.enforcing()` via [`BootSpec::new`].
    pub sign: bool,
    pub memory_mb: u32,
    pub cpu: String,
    pub timeout: Duration,
    /// Extra QEMU arguments.
    pub qemu_args: Vec<String>,
    /// Stop QEMU shortly after one of these strings shows up in the serial log.
    pub stop_on: Vec<String>,
    /// Attach a software TPM 2.0 (a fresh swtpm per run, see `swtpm.rs`).
    pub tpm: bool,
    /// Keys typed on the serial console: once the log shows `.0` (after the previous entry's
    /// keys), `.1` is sent a character at a time (the serial port is then a socket QEMU also
    /// logs to the usual file; the BIOS or loader reads it as its keyboard).
    pub serial_input: Vec<(String, String)>,
}

/// Default per-boot timeout (override with `ZBOOT_BOOT_TIMEOUT=<seconds>`).
pub fn default_timeout() -> Duration {
    let secs = std::env::var("ZBOOT_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

impl BootSpec {
    pub fn new(name: impl Into<String>, firmware: Firmware, mode: BootMode) -> BootSpec {
        BootSpec {
            name: name.into(),
            firmware,
            mode,
            extra_files: Vec::new(),
            sign: firmware.enforcing(),
            memory_mb: 2048,
            cpu: "max".into(),
            timeout: default_timeout(),
            qemu_args: Vec::new(),
            stop_on: vec!["Kernel panic - not syncing".into()],
            tpm: false,
            serial_input: Vec::new(),
        }
    }

    /// systemd-boot entry booting `linux` with `initrd` and `options`.
    pub fn systemd_boot(
        name: impl Into<String>,
        firmware: Firmware,
        linux: impl Into<PathBuf>,
        initrd: Option<PathBuf>,
        options: impl Into<String>,
    ) -> BootSpec {
        let mode = BootMode::SystemdBoot {
            linux: linux.into(),
            initrd,
            options: options.into(),
        };
        BootSpec::new(name, firmware, mode)
    }
}

/// What happened.
#[derive(Debug, Clone)]
pub struct BootOutcome {
    pub name: String,
    /// The serial console log.
    pub log: String,
    /// Where the log was kept.
    pub log_path: PathBuf,
    /// QEMU's exit code (`None` if killed). isa-debug-exit writes `v` -> exit code `(v<<1)|1`.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Stopped early because a `stop_on` string appeared.
    pub stopped_on: Option<String>,
    /// Wall time from QEMU start to its exit.
    pub duration: Duration,
    /// Wall time from QEMU start until `ZBOOT-INIT end=1` was seen (polled every 50 ms).
    pub time_to_report: Option<Duration>,
    pub report: Option<InitReport>,
    pub probe: Option<ProbeReport>,
    /// QEMU's own stderr (warnings, errors).
    pub qemu_stderr: String,
}

impl BootOutcome {
    /// The init report, requiring it to be complete.
    pub fn complete_report(&self) -> Result<&InitReport> {
        match &self.report {
            Some(r) if r.end => Ok(r),
            _ => bail!(
                "{}: no complete ZBOOT-INIT report (exit {:?}, timed out {}, log {}):\n{}",
                self.name,
                self.exit_code,
                self.timed_out,
                self.log_path.display(),
                self.log_tail(25)
            ),
        }
    }

    /// The last `n` lines of the serial log (for error messages).
    pub fn log_tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| format!("    | {}", l.trim_end_matches('\r')))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The exit value `v` written to isa-debug-exit (port 0xf4), if QEMU exited through it.
    pub fn debug_exit_value(&self) -> Option<i32> {
        self.exit_code.filter(|c| c & 1 == 1).map(|c| c >> 1)
    }
}

/// `<target dir>`: `$CARGO_TARGET_DIR` or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"))
}

fn qemu_binary() -> Result<PathBuf> {
    crate::setup::qemu_binary().ok_or_else(|| {
        missing("qemu-system-x86_64 (apt package qemu-system-x86; `cargo xtask setup` installs it)")
    })
}

/// Signs an EFI binary with the snakeoil key that `firmware`'s snakeoil vars enrol (sbsign).
pub fn sign(fx: &Fixtures, firmware: Firmware, input: &Path, output: &Path) -> Result<()> {
    let (key, cert) = firmware.ovmf(fx).snakeoil()?;
    let out = Command::new("sbsign")
        .arg("--key")
        .arg(&key)
        .arg("--cert")
        .arg(&cert)
        .arg("--output")
        .arg(output)
        .arg(input)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing(format!("sbsign (apt package sbsigntool): {e}")))?;
    ensure!(
        out.status.success(),
        "sbsign {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Puts `src` at `esp/rel` (signed for `sign_for` if given).
fn place(
    fx: &Fixtures,
    esp: &Path,
    rel: &str,
    src: &Path,
    sign_for: Option<Firmware>,
) -> Result<()> {
    let dst = esp.join(rel.trim_start_matches(['/', '\\']).replace('\\', "/"));
    fs::create_dir_all(dst.parent().unwrap())?;
    ensure!(src.is_file(), "{} does not exist", src.display());
    if let Some(fw) = sign_for {
        sign(fx, fw, src, &dst)
    } else {
        fs::copy(src, &dst)
            .with_context(|| format!("copying {} to the ESP", src.display()))
            .map(|_| ())
    }
}

fn populate_esp(fx: &Fixtures, spec: &BootSpec, esp: &Path) -> Result<()> {
    let sign = spec.sign.then_some(spec.firmware);
    match &spec.mode {
        BootMode::SystemdBoot {
            linux,
            initrd,
            options,
        } => {
            place(fx, esp, "EFI/BOOT/BOOTX64.EFI", &fx.systemd_boot, sign)?;
            place(fx, esp, "zboot/linux.efi", linux, sign)?;
            let mut entry = String::from("title zboot-pack test\nlinux /zboot/linux.efi\n");
            if let Some(initrd) = initrd {
                place(fx, esp, "zboot/initrd.img", initrd, None)?;
                entry.push_str("initrd /zboot/initrd.img\n");
            }
            entry.push_str(&format!("options {options}\n"));
            fs::create_dir_all(esp.join("loader/entries"))?;
            fs::write(
                esp.join("loader/loader.conf"),
                "timeout 0\ndefault zboot.conf\nconsole-mode keep\neditor no\n",
            )?;
            fs::write(esp.join("loader/entries/zboot.conf"), entry)?;
        }
        BootMode::Bare { image } => {
            place(fx, esp, spec.firmware.default_boot_path(), image, sign)?;
        }
        BootMode::Direct { .. } | BootMode::Cdrom { .. } => {}
        BootMode::Shell { image, args } => {
            ensure!(
                spec.firmware.has_shell(),
                "{} has no UEFI shell",
                spec.firmware
            );
            place(fx, esp, "image.efi", image, sign)?;
            // The shell runs startup.nsh from the first file system after a 5 s countdown.
            fs::write(
                esp.join("startup.nsh"),
                format!("@echo -off\r\nfs0:\r\n\\image.efi {args}\r\n"),
            )?;
        }
    }
    for (rel, src) in &spec.extra_files {
        place(fx, esp, rel, src, None)?;
    }
    Ok(())
}

/// How many QEMUs may run at once: one per core of the machines this runs on.
pub const SLOTS: usize = 2;

static SHARING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process's runs take one slot (the boot tests, two at a time) or all of them.
pub fn share_slots(on: bool) {
    SHARING.store(on, std::sync::atomic::Ordering::SeqCst);
}

fn slot_file(n: usize) -> Result<fs::File> {
    let path = std::env::temp_dir().join(format!("zboot-pack-qemu.{n}.lock"));
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

/// The slots `spec` runs in, locked (released when dropped).
fn lock_slots(spec: &BootSpec) -> Result<Vec<fs::File>> {
    let files = (0..SLOTS).map(slot_file).collect::<Result<Vec<_>>>()?;
    let alone = !SHARING.load(std::sync::atomic::Ordering::SeqCst) || !spec.serial_input.is_empty();
    if alone {
        // In slot order, so two runs that each want every slot cannot hold one each.
        for (n, f) in files.iter().enumerate() {
            if f.try_lock().is_err() {
                say!(
                    "qemu: {}: waiting for QEMU slot {n} (another run holds it)",
                    spec.name
                );
                f.lock()?;
            }
        }
        return Ok(files);
    }
    let mut said = false;
    loop {
        if let Some(n) = (0..SLOTS).find(|&n| files[n].try_lock().is_ok()) {
            return Ok(vec![files.into_iter().nth(n).expect("n < SLOTS")]);
        }
        if !said {
            say!("qemu: {}: waiting for a QEMU slot", spec.name);
            said = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Boots `spec` and returns what happened. Errors only for harness problems (missing
/// prerequisites, I/O); a guest that fails to boot is a successful run with a bad outcome.
pub fn run(fx: &Fixtures, spec: &BootSpec) -> Result<BootOutcome> {
    let qemu = qemu_binary()?;
    let direct = matches!(spec.mode, BootMode::Direct { .. } | BootMode::Cdrom { .. });
    ensure!(
        spec.firmware.is_uefi() || direct,
        "{}: {} boots only BootMode::Direct or ::Cdrom (no UEFI)",
        spec.name,
        spec.firmware
    );
    let tmp = tempfile::Builder::new().prefix("zboot-qemu-").tempdir()?;
    let esp = tmp.path().join("esp");
    let disk = !direct || !spec.extra_files.is_empty();
    if disk {
        fs::create_dir_all(&esp)?;
        populate_esp(fx, spec, &esp)?;
    }
    let serial = tmp.path().join("serial.log");

    let mut machine = String::from("q35");
    if spec.firmware.needs_smm() {
        machine.push_str(",smm=on");
    }
    let mut cmd = Command::new(&qemu);
    cmd.args(["-accel", "tcg", "-cpu", &spec.cpu, "-machine", &machine])
        .args(["-m", &format!("{}M", spec.memory_mb)]);
    if spec.firmware.needs_smm() {
        cmd.args(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
    }
    if spec.firmware.is_uefi() {
        let (code, vars) = spec.firmware.files(fx)?;
        let vars_copy = tmp.path().join("vars.fd");
        fs::copy(&vars, &vars_copy)?;
        cmd.arg("-drive").arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            code.display()
        ));
        cmd.arg("-drive").arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars_copy.display()
        ));
    } else {
        cmd.arg("-bios").arg(fx.seabios()?.0);
    }
    if let BootMode::Direct {
        kernel,
        initrd,
        append,
    } = &spec.mode
    {
        ensure!(kernel.is_file(), "{} does not exist", kernel.display());
        cmd.arg("-kernel").arg(kernel);
        if let Some(initrd) = initrd {
            cmd.arg("-initrd").arg(initrd);
        }
        cmd.arg("-append").arg(append);
    }
    if let BootMode::Cdrom { iso } = &spec.mode {
        ensure!(iso.is_file(), "{} does not exist", iso.display());
        cmd.arg("-cdrom").arg(iso).args(["-boot", "d"]);
    }
    if disk {
        cmd.arg("-drive")
            .arg(format!("format=raw,file=fat:rw:{}", esp.display()));
    }
    cmd.args([
        "-nographic",
        "-monitor",
        "none",
        "-nic",
        "none",
        "-no-reboot",
    ])
    .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
    .args(&spec.qemu_args);
    // For measurements by hand, e.g. `-icount shift=3,sleep=off` (guest time from instruction
    // counts: figures that do not move with the host's load).
    if let Ok(extra) = std::env::var("ZBOOT_QEMU_EXTRA") {
        cmd.args(extra.split_whitespace());
    }
    let console = tmp.path().join("serial.sock");
    if spec.serial_input.is_empty() {
        cmd.arg("-serial").arg(format!("file:{}", serial.display()));
    } else {
        cmd.arg("-chardev")
            .arg(format!(
                "socket,id=ser0,path={},server=on,wait=off,logfile={}",
                console.display(),
                serial.display()
            ))
            .args(["-serial", "chardev:ser0"]);
    }
    let stderr_path = tmp.path().join("qemu.stderr");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr_path)?);

    let _lock = lock_slots(spec)?;
    let _tpm = match spec.tpm {
        true => {
            let t = crate::swtpm::Swtpm::start(tmp.path())?;
            cmd.args(t.qemu_args());
            Some(t)
        }
        false => None,
    };
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let mut timed_out = false;
    let mut stopped_on = None;
    let mut time_to_report = None;
    let mut stop_deadline: Option<Instant> = None;
    let mut typing = crate::typist::Typist::new(&spec.serial_input);
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        typing.step(&console, &serial)?;
        let now = Instant::now();
        if now - start > spec.timeout {
            timed_out = true;
            break None;
        }
        if stop_deadline.is_some_and(|d| now > d) {
            break None;
        }
        if time_to_report.is_none() || (stopped_on.is_none() && !spec.stop_on.is_empty()) {
            let log = fs::read(&serial).unwrap_or_default();
            let log = String::from_utf8_lossy(&log);
            if time_to_report.is_none() && log.contains("ZBOOT-INIT end=1") {
                time_to_report = Some(now - start);
            }
            if stopped_on.is_none()
                && let Some(s) = spec.stop_on.iter().find(|s| log.contains(s.as_str()))
            {
                stopped_on = Some(s.clone());
                // Give the guest a moment to print the rest (panic backtrace).
                stop_deadline = Some(now + Duration::from_secs(2));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let duration = start.elapsed();
    drop(_tpm);
    drop(_lock);

    let log_bytes = fs::read(&serial).unwrap_or_default();
    let log = String::from_utf8_lossy(&log_bytes).into_owned();
    let log_dir = target_dir().join("boot-logs");
    fs::create_dir_all(&log_dir)?;
    let log_path = log_dir.join(format!("{}.log", sanitize(&spec.name)));
    fs::write(&log_path, &log_bytes)?;
    let qemu_stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    Ok(BootOutcome {
        name: spec.name.clone(),
        report: InitReport::parse(&log),
        probe: ProbeReport::parse(&log),
        log,
        log_path,
        exit_code: status.and_then(|s| s.code()),
        timed_out,
        stopped_on,
        duration,
        time_to_report,
        qemu_stderr,
    })
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

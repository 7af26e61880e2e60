//! Measured boot (docs/measured-boot.md): a software TPM (swtpm) on OVMF; the init reports PCR 9
//! and the firmware's event log; the host replays the log, finds the stub's events and checks
//! PCR 9 against Debian's own bzImage booted the same way in the same row and against
//! `zboot-pack pcr`'s prediction.

use super::*;
use crate::tpm_log::{self, EventLog, TPM_ALG_SHA256};
use std::path::Path;
use zboot_format::measure::{self, Tag};

/// The test initramfs with this tree's `/init` laid over it (the shared fixture cache may hold
/// an older init without the TPM report): the bytes handed over, so the bytes predicted.
fn initrd(ctx: &Ctx) -> Result<PathBuf> {
    let fx = ctx.fixtures()?;
    let mut bytes = std::fs::read(&fx.initramfs)?;
    bytes.resize(bytes.len().next_multiple_of(512), 0);
    bytes.extend(crate::initramfs::overlay(&[(
        "init".into(),
        0o755,
        crate::initramfs::INIT_SCRIPT.as_bytes().to_vec(),
    )]));
    let out = super::scratch().join("measured/initrd.img");
    std::fs::create_dir_all(out.parent().unwrap())?;
    std::fs::write(&out, bytes)?;
    Ok(out)
}

/// What a TPM boot reported: PCR 9 as the TPM has it, and the event log (already replayed and
/// checked against it).
struct Measured {
    pcr9: Vec<u8>,
    log: EventLog,
}

impl Measured {
    /// The tagged events in PCR 9: (tag, description, sha256 digest).
    fn tagged(&self) -> Vec<(Tag, Vec<u8>, Vec<u8>)> {
        self.log
            .extended(measure::PCR)
            .filter(|e| e.typ == measure::EV_EVENT_TAG)
            .filter_map(|e| {
                let (tag, text) = measure::parse_tagged(&e.data)?;
                Some((tag, text.to_vec(), e.digest(TPM_ALG_SHA256)?.to_vec()))
            })
            .collect()
    }
}

fn measured(out: &BootOutcome) -> Result<Measured> {
    let r = out.complete_report()?;
    let pcr = r
        .raw
        .get("tpm_pcr9_sha256")
        .with_context(|| format!("{}: no tpm_pcr9_sha256 line (no TPM seen?)", out.name))?;
    let pcr9 = tpm_log::unhex(pcr).with_context(|| format!("{}: PCR 9 {pcr:?}", out.name))?;
    let hex: String = crate::report::marker_lines(&out.log, crate::report::INIT_MARKER)
        .into_iter()
        .filter(|(k, _)| *k == "tpm_log")
        .map(|(_, v)| v.trim())
        .collect();
    ensure!(
        r.raw.contains_key("tpm_log_end") && !hex.is_empty(),
        "{}: no event log in the report",
        out.name
    );
    let log = tpm_log::parse(&tpm_log::unhex(&hex)?)
        .with_context(|| format!("{}: event log", out.name))?;
    let replayed = log.replay(measure::PCR, TPM_ALG_SHA256)?;
    ensure!(
        replayed == pcr9,
        "{}: the event log replays PCR 9 to {} but the TPM has {}",
        out.name,
        tpm_log::hex(&replayed),
        tpm_log::hex(&pcr9)
    );
    Ok(Measured { pcr9, log })
}

fn boot_measured(ctx: &Ctx, mut spec: BootSpec) -> Result<(InitReport, Measured)> {
    spec.tpm = true;
    let out = ctx.boot(&spec)?;
    let r = check_linux_report(ctx, &out)?.clone();
    let m = measured(&out)?;
    say!(
        "    {}: PCR 9 sha256 {} ({} events in PCR 9, replay matches; banks {:x?})",
        spec.name,
        tpm_log::hex(&m.pcr9),
        m.log.extended(measure::PCR).count(),
        m.log.banks.iter().map(|b| b.0).collect::<Vec<_>>()
    );
    Ok((r, m))
}

/// `zboot-pack pcr IMAGE ARGS --json`: the predicted sha256 PCR 9.
fn predicted(ctx: &Ctx, image: &Path, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>> {
    let out = std::process::Command::new(ctx.packer()?)
        .arg("pcr")
        .arg(image)
        .args(args)
        .arg("--json")
        .output()?;
    ensure!(
        out.status.success(),
        "zboot-pack pcr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let s = v["values"]["sha256"]
        .as_str()
        .context("zboot-pack pcr --json: no values.sha256")?;
    tpm_log::unhex(s)
}

/// The options systemd-boot (252) passes for an entry with `initrd /zboot/initrd.img` and
/// `options OPTS`: its `initrd=` word (path with backslashes) in front.
fn sdboot_options(opts: &str) -> String {
    format!("initrd=\\zboot\\initrd.img {opts}")
}

/// (a) Through systemd-boot with an initrd and options: the bzImage first, then the packed
/// image, the same initrd and options, each on a fresh TPM.
fn sdboot(ctx: &Ctx, fw: Firmware) -> Result<()> {
    let fx = ctx.fixtures()?;
    let rd = initrd(ctx)?;
    let opts = baseline_options();
    let bz = BootSpec::systemd_boot(
        format!("measured-bzimage-sdboot-{fw}"),
        fw,
        &fx.kernel.vmlinuz,
        Some(rd.clone()),
        &opts,
    );
    let (r_bz, m_bz) = boot_measured(ctx, bz)?;
    let loader = sdboot_options(&opts);
    ensure!(
        r_bz.cmdline.as_deref() == Some(loader.as_str()),
        "systemd-boot passed {:?}, the test derives {loader:?}",
        r_bz.cmdline
    );
    let image = ctx.pack("packed-bzimage", &fx.kernel.vmlinuz, &[])?;
    let spec = BootSpec::systemd_boot(
        format!("measured-packed-sdboot-{fw}"),
        fw,
        &image,
        Some(rd.clone()),
        &opts,
    );
    let (_, m) = boot_measured(ctx, spec)?;
    let ours = m.tagged();
    let tags: Vec<Tag> = ours.iter().map(|t| t.0).collect();
    ensure!(
        tags == [Tag::LoadOptions, Tag::Initrd],
        "our PCR 9 tagged events are {tags:?}, want [LoadOptions, Initrd]"
    );
    ensure!(
        ours == m_bz.tagged(),
        "our PCR 9 events differ from the bzImage's:\n  ours {ours:x?}\n  bzImage {:x?}",
        m_bz.tagged()
    );
    let pred = predicted(
        ctx,
        &image,
        &[
            "--initrd".as_ref(),
            rd.as_os_str(),
            "--options".as_ref(),
            loader.as_ref(),
        ],
    )?;
    say!(
        "    PCR 9 sha256: ours {}, bzImage {}, predicted {}",
        tpm_log::hex(&m.pcr9),
        tpm_log::hex(&m_bz.pcr9),
        tpm_log::hex(&pred)
    );
    ensure!(m.pcr9 == m_bz.pcr9, "PCR 9 differs from the bzImage's");
    ensure!(
        m.pcr9 == pred,
        "PCR 9 differs from zboot-pack pcr's prediction"
    );
    Ok(())
}

/// (b) The image's embedded initrd and command line, started by the firmware as BOOTX64.EFI.
fn embedded_bare(ctx: &Ctx, fw: Firmware) -> Result<()> {
    let fx = ctx.fixtures()?;
    let rd = initrd(ctx)?;
    let cmdline = baseline_options();
    let rd_arg = rd.display().to_string();
    let image = ctx.pack(
        "measured-embedded",
        &fx.kernel.vmlinuz,
        &["--cmdline", &cmdline, "--initrd", &rd_arg],
    )?;
    let spec = BootSpec::new(
        format!("measured-embedded-bare-{fw}"),
        fw,
        BootMode::Bare {
            image: image.clone(),
        },
    );
    let (_, m) = boot_measured(ctx, spec)?;
    let ours = m.tagged();
    let tags: Vec<Tag> = ours.iter().map(|t| t.0).collect();
    // OVMF starts the removable-media BOOTX64.EFI with no LoadOptions (LoadOptionsSize 0):
    // no LoadOptions event, as Linux's stub would measure none.
    ensure!(
        tags == [Tag::EmbeddedCmdline, Tag::Initrd],
        "our PCR 9 tagged events are {tags:?}, want [EmbeddedCmdline, Initrd]"
    );
    let mut line = cmdline.as_bytes().to_vec();
    line.push(0);
    ensure!(
        ours[0].1 == line,
        "the embedded command line event says {:?}",
        String::from_utf8_lossy(&ours[0].1)
    );
    let pred = predicted(ctx, &image, &[])?;
    say!(
        "    PCR 9 sha256: ours {}, predicted {}",
        tpm_log::hex(&m.pcr9),
        tpm_log::hex(&pred)
    );
    ensure!(
        m.pcr9 == pred,
        "PCR 9 differs from zboot-pack pcr's prediction"
    );
    Ok(())
}

pub fn tests() -> Vec<BootTest> {
    on_each(
        "measured-sdboot",
        &[Firmware::Ovmf2022, Firmware::Ovmf2025StrictNx],
        sdboot,
    )
    .chain(on_each(
        "measured-embedded-bare",
        &[Firmware::Ovmf2025StrictNx],
        embedded_bare,
    ))
    .collect()
}

//! Signing tools nobody here wrote (issue 26): sbsign, pesign and osslsigncode compute the same
//! Authenticode digest of every codec's image (its raw data has no gaps), `sbverify --list`
//! prints no warning, an image signed by each of the three boots under enforcing Secure Boot,
//! and one changed byte in any section, or in the bytes at a section's end that were a gap before,
//! breaks each tool's signature.

use super::*;
use std::path::Path;
use std::process::{Command, Stdio};

use zboot_format::Codec;
use zboot_format::pe::SectionTable;

/// The three signing tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Signer {
    Sbsign,
    Pesign,
    Osslsigncode,
}

const SIGNERS: [Signer; 3] = [Signer::Sbsign, Signer::Pesign, Signer::Osslsigncode];
/// The tools other than the harness's own (`qemu::sign`, sbsign).
pub(super) const OTHER_SIGNERS: [Signer; 2] = [Signer::Pesign, Signer::Osslsigncode];

impl Signer {
    pub(super) fn name(self) -> &'static str {
        match self {
            Signer::Sbsign => "sbsign",
            Signer::Pesign => "pesign",
            Signer::Osslsigncode => "osslsigncode",
        }
    }

    /// Where the kexec rows put an image this tool signed in the first kernel's initramfs
    /// (the init loads each `/kexec/image-by-<tool>` with `kexec -s`).
    pub(super) fn kexec_path(self) -> &'static str {
        match self {
            Signer::Sbsign => "kexec/image-by-sbsign",
            Signer::Pesign => "kexec/image-by-pesign",
            Signer::Osslsigncode => "kexec/image-by-osslsigncode",
        }
    }
}

/// Signs `input` into `output` with `signer` and the snakeoil key of OVMF 2025.02's Secure
/// Boot variables.
pub(super) fn sign_snakeoil(ctx: &Ctx, signer: Signer, input: &Path, output: &Path) -> Result<()> {
    sign(signer, &keys(ctx)?, input, output)
}

/// Runs `cmd`; stdout and stderr together, or an error naming the command.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| {
        missing(format!(
            "{cmd:?}: {e} (cargo xtask setup installs the tools)"
        ))
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "{cmd:?}: {}\n{text}", out.status);
    Ok(text)
}

/// The snakeoil key OVMF 2025.02's Secure Boot variables enrol, and a pesign (NSS) database
/// holding it as `zboot-snakeoil`.
struct Keys {
    key: PathBuf,
    cert: PathBuf,
    nss: PathBuf,
    _dir: tempfile::TempDir,
}

const NSS_NICKNAME: &str = "zboot-snakeoil";

fn keys(ctx: &Ctx) -> Result<Keys> {
    let fx = ctx.fixtures()?;
    let (key, cert) = Firmware::Ovmf2025StrictNxSecureBoot.ovmf(fx).snakeoil()?;
    let dir = tempfile::tempdir()?;
    let nss = dir.path().join("nss");
    std::fs::create_dir_all(&nss)?;
    run(Command::new("certutil")
        .args(["-N", "--empty-password", "-d"])
        .arg(&nss))?;
    let p12 = dir.path().join("key.p12");
    run(Command::new("openssl")
        .args([
            "pkcs12",
            "-export",
            "-passout",
            "pass:",
            "-name",
            NSS_NICKNAME,
        ])
        .arg("-inkey")
        .arg(&key)
        .arg("-in")
        .arg(&cert)
        .arg("-out")
        .arg(&p12))?;
    run(Command::new("pk12util")
        .args(["-W", "", "-d"])
        .arg(&nss)
        .arg("-i")
        .arg(&p12))?;
    Ok(Keys {
        key,
        cert,
        nss,
        _dir: dir,
    })
}

/// Signs `input` into `output` with `signer`.
fn sign(signer: Signer, keys: &Keys, input: &Path, output: &Path) -> Result<()> {
    let _ = std::fs::remove_file(output);
    let mut cmd = match signer {
        Signer::Sbsign => {
            let mut c = Command::new("sbsign");
            c.arg("--key")
                .arg(&keys.key)
                .arg("--cert")
                .arg(&keys.cert)
                .arg("--output")
                .arg(output)
                .arg(input);
            c
        }
        Signer::Pesign => {
            let mut c = Command::new("pesign");
            c.arg("-n")
                .arg(&keys.nss)
                .args(["-c", NSS_NICKNAME, "-s", "-i"])
                .arg(input)
                .arg("-o")
                .arg(output);
            c
        }
        Signer::Osslsigncode => {
            let mut c = Command::new("osslsigncode");
            c.args(["sign", "-h", "sha256", "-certs"])
                .arg(&keys.cert)
                .arg("-key")
                .arg(&keys.key)
                .arg("-in")
                .arg(input)
                .arg("-out")
                .arg(output);
            c
        }
    };
    run(&mut cmd)?;
    ensure!(
        output.is_file(),
        "{} wrote no {}",
        signer.name(),
        output.display()
    );
    Ok(())
}

/// The value after `label` on a line of `text` (first word, lower case).
fn field(text: &str, label: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|r| r.trim_start_matches([' ', ':']).split_whitespace().next())
        .map(str::to_ascii_lowercase)
}

/// osslsigncode's view of a signed file: (the digest in its signature, the digest osslsigncode
/// computes of the file).
fn osslsigncode_digests(signed: &Path) -> Result<(String, String)> {
    let out = Command::new("osslsigncode")
        .args(["verify", "-in"])
        .arg(signed)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing(format!("osslsigncode: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let current = field(&text, "Current message digest").with_context(|| {
        format!(
            "osslsigncode verify {}: no digest:\n{text}",
            signed.display()
        )
    })?;
    let calculated = field(&text, "Calculated message digest").with_context(|| {
        format!(
            "osslsigncode verify {}: no digest:\n{text}",
            signed.display()
        )
    })?;
    Ok((current, calculated))
}

/// Whether `signed` verifies: sbverify against the certificate, and osslsigncode's computed
/// digest equal to the signed one.
fn signature_holds(keys: &Keys, signed: &Path) -> Result<bool> {
    let sb = Command::new("sbverify")
        .arg("--cert")
        .arg(&keys.cert)
        .arg(signed)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing(format!("sbverify: {e}")))?
        .status
        .success();
    let (current, calculated) = osslsigncode_digests(signed)?;
    Ok(sb && current == calculated)
}

/// Every codec's image of Debian's vmlinux: `sbverify --list` warns of nothing; pesign's
/// digest of the unsigned file, the digest sbsign signed and osslsigncode's digest of that
/// signed file are one value; and an image signed by each tool stops verifying when one byte in
/// the middle of any section, or at its end (where the gap before the next section was), is
/// changed.
fn signing_tools_agree(ctx: &Ctx) -> Result<()> {
    let keys = keys(ctx)?;
    let vmlinux = super::stub::debian_vmlinux(ctx)?;
    let dir = super::scratch().join("signing");
    std::fs::create_dir_all(&dir)?;
    for codec in Codec::ALL.map(|c| c.name()) {
        let image = ctx.pack(
            &format!("debian-vmlinux-{codec}"),
            &vmlinux,
            &["--codec", codec],
        )?;
        let list = run(Command::new("sbverify").arg("--list").arg(&image))?;
        ensure!(
            !list.to_lowercase().contains("warning"),
            "sbverify --list {}:\n{list}",
            image.display()
        );
        let pesign = field(
            &run(Command::new("pesign").arg("-h").arg("-i").arg(&image))?,
            "hash",
        )
        .context("pesign -h printed no hash")?;
        let sbsigned = dir.join(format!("{codec}-sbsign.efi"));
        sign(Signer::Sbsign, &keys, &image, &sbsigned)?;
        let (sbsign, ossl) = osslsigncode_digests(&sbsigned)?;
        ensure!(
            pesign == sbsign && sbsign == ossl,
            "{codec}: the tools disagree on the digest: pesign {pesign}, sbsign {sbsign}, \
             osslsigncode {ossl}"
        );
        say!(
            "    {codec:<5} digest {} (pesign = sbsign = osslsigncode)",
            &pesign[..16]
        );
    }

    // One image, signed by each tool, damaged one byte at a time.
    let image = ctx.pack("debian-vmlinux-zstd", &vmlinux, &["--codec", "zstd"])?;
    let bytes = std::fs::read(&image)?;
    let table = SectionTable::parse(&bytes).map_err(|e| anyhow!("{}: {e}", image.display()))?;
    let mut spots = Vec::new();
    for s in table.iter() {
        let (ptr, size) = (s.pointer_to_raw_data as usize, s.size_of_raw_data as usize);
        spots.push((format!("{} middle", s.name()), ptr + size / 2));
        spots.push((format!("{} last byte", s.name()), ptr + size - 1));
    }
    for signer in SIGNERS {
        let signed = dir.join(format!("zstd-{}.efi", signer.name()));
        sign(signer, &keys, &image, &signed)?;
        ensure!(
            signature_holds(&keys, &signed)?,
            "the {} signature of {} does not verify",
            signer.name(),
            image.display()
        );
        let good = std::fs::read(&signed)?;
        let damaged = dir.join(format!("zstd-{}-damaged.efi", signer.name()));
        for (what, at) in &spots {
            let mut d = good.clone();
            d[*at] ^= 0x01;
            std::fs::write(&damaged, &d)?;
            ensure!(
                !signature_holds(&keys, &damaged)?,
                "the {} signature still verifies with one byte changed at {at:#x} ({what})",
                signer.name()
            );
        }
        say!(
            "    {}: verifies; fails with one byte changed at each of {} places",
            signer.name(),
            spots.len()
        );
    }
    Ok(())
}

/// The packed kernel with embedded command line and initrd, signed by `signer`, started by the
/// firmware itself under enforcing Secure Boot (OVMF 2025.02 strict-NX, snakeoil db): it boots
/// to the reporting init, which sees Secure Boot enabled.
fn signed_by_boots(ctx: &Ctx, signer: Signer) -> Result<()> {
    let keys = keys(ctx)?;
    let image = super::foundation::packed_embedded(ctx)?;
    let signed = super::scratch()
        .join("signing")
        .join(format!("embedded-{}.efi", signer.name()));
    std::fs::create_dir_all(signed.parent().unwrap())?;
    sign(signer, &keys, &image, &signed)?;
    let fw = Firmware::Ovmf2025StrictNxSecureBoot;
    let mut spec = BootSpec::new(
        format!("signed-by-{}-{fw}", signer.name()),
        fw,
        BootMode::Bare { image: signed },
    );
    spec.sign = false; // signed by the tool under test
    let out = ctx.boot(&spec)?;
    check_secure_boot_report(ctx, &out)?;
    Ok(())
}

pub fn tests() -> Vec<BootTest> {
    let mut rows = vec![BootTest::new("signing-tools-agree", signing_tools_agree)];
    rows.extend(SIGNERS.map(|s| {
        BootTest::new(
            format!(
                "signed-by-{}-{}",
                s.name(),
                Firmware::Ovmf2025StrictNxSecureBoot
            ),
            move |ctx| signed_by_boots(ctx, s),
        )
    }));
    rows
}

//! Header readers nobody here wrote (issue 26): `file(1)`, Arch's mkinitcpio (`kver_x86`) and
//! systemd's ukify (`Uname.scrape_x86`, Debian 13's 257) read the kernel's release from our
//! setup header as from Debian's own bzImage of the same kernel; every setup header field that is
//! not about the image's own layout ([`zboot_format::image::LAYOUT_FIELDS`]) equals the kernel's;
//! the kernel_info block is there with the kernel's `setup_type_max`.

use super::*;
use std::path::Path;
use std::process::{Command, Stdio};

use zboot_format::bootparam::{KernelInfo, SETUP_HEADER_FIELDS, SetupHeader};
use zboot_format::image::LAYOUT_FIELDS;

/// `file -b FILE`'s "version ..." (up to the next ", ").
fn file_version(path: &Path) -> Result<String> {
    let out = Command::new("file")
        .arg("-b")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing(format!("file (Debian package file): {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = text
        .split_once("version ")
        .map(|(_, r)| r.split(", ").next().unwrap_or(r).trim().to_string())
        .with_context(|| format!("file(1) names no version in {}: {text}", path.display()))?;
    Ok(v)
}

/// mkinitcpio's `kver_x86`: the u16 at 0x20e plus 0x200 is the offset of the version string,
/// whose first word is the release.
fn mkinitcpio_kver(data: &[u8]) -> Option<String> {
    let off = usize::from(u16::from_le_bytes(data.get(0x20e..0x210)?.try_into().ok()?)) + 0x200;
    let text = data.get(off..)?;
    let end = text.iter().position(|&b| b == 0)?;
    let s = std::str::from_utf8(&text[..end]).ok()?;
    s.split_whitespace().next().map(str::to_string)
}

/// Debian 13's ukify (257): `Uname.scrape_x86(FILE)`, the header path only (it raises where the
/// header holds no version, and `scrape` would then fall back to decompressing).
fn ukify_scrape_x86(ctx: &Ctx, path: &Path) -> Result<String> {
    let ukify = ctx.fixtures()?.uki257.path("usr/bin/ukify");
    let script = "import sys, types, pathlib\n\
                  m = types.ModuleType('ukify')\n\
                  exec(compile(open(sys.argv[1]).read(), sys.argv[1], 'exec'), m.__dict__)\n\
                  print(m.Uname.scrape_x86(pathlib.Path(sys.argv[2])))\n";
    let out = crate::fixtures::run_capture(
        Command::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(&ukify)
            .arg(path),
    )
    .with_context(|| format!("ukify's Uname.scrape_x86 on {}", path.display()))?;
    Ok(out.trim().to_string())
}

/// The kernel_info block a header names, from the file.
fn kernel_info(data: &[u8]) -> Option<KernelInfo> {
    SetupHeader::read(data)?.kernel_info(data)
}

/// `file`, mkinitcpio and ukify read the same release from the packed bzImage and the packed
/// vmlinux as from Debian's bzImage; the fields outside LAYOUT_FIELDS are the bzImage's; the
/// kernel_info blocks agree.
fn header_readers(ctx: &Ctx) -> Result<()> {
    let fx = ctx.fixtures()?;
    let b = &fx.kernel.vmlinuz;
    let ours = [
        ctx.pack("packed-bzimage", b, &[])?,
        ctx.pack(
            "debian-vmlinux-zstd",
            &super::stub::debian_vmlinux(ctx)?,
            &["--codec", "zstd"],
        )?,
    ];
    let want_file = file_version(b)?;
    let bz = std::fs::read(b)?;
    ensure!(
        mkinitcpio_kver(&bz).as_deref() == Some(fx.kernel.release.as_str()),
        "the bzImage itself: mkinitcpio reads {:?}",
        mkinitcpio_kver(&bz)
    );
    let want_ukify = ukify_scrape_x86(ctx, b)?;
    for image in &ours {
        let data = std::fs::read(image)?;
        let got = file_version(image)?;
        ensure!(
            got == want_file,
            "file(1) reads version {got:?} from {}, {want_file:?} from the bzImage",
            image.display()
        );
        ensure!(
            mkinitcpio_kver(&data).as_deref() == Some(fx.kernel.release.as_str()),
            "mkinitcpio's kver_x86 reads {:?} from {}, want {}",
            mkinitcpio_kver(&data),
            image.display(),
            fx.kernel.release
        );
        let got = ukify_scrape_x86(ctx, image)?;
        ensure!(
            got == want_ukify,
            "ukify's scrape_x86 reads {got:?} from {}, {want_ukify:?} from the bzImage",
            image.display()
        );
        ensure!(
            kernel_info(&data).is_some() && kernel_info(&data) == kernel_info(&bz),
            "kernel_info {:?} in {}, the bzImage's {:?}",
            kernel_info(&data),
            image.display(),
            kernel_info(&bz)
        );
    }
    say!(
        "    file(1), mkinitcpio and ukify 257 read {want_ukify:?} from both images and the bzImage"
    );

    // Field by field against the bzImage: only the layout's own fields differ.
    let data = std::fs::read(&ours[0])?;
    for (name, off, size) in SETUP_HEADER_FIELDS {
        let (a, b) = (&data[off..off + size], &bz[off..off + size]);
        let why = LAYOUT_FIELDS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, w)| *w);
        match (a == b, why) {
            (true, _) => {}
            (false, Some(why)) => say!("    {name:<20} differs: {why}"),
            (false, None) => bail!(
                "setup header field {name} is {a:02x?} in {}, {b:02x?} in the bzImage, and is \
                 not one of the image's layout fields",
                ours[0].display()
            ),
        }
    }
    Ok(())
}

pub fn tests() -> Vec<BootTest> {
    vec![BootTest::new("setup-header-readers", header_readers)]
}

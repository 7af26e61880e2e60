//! Reliability: damaged images and boot-time resource failures.
//!
//! * `damaged-*`: the probe kernel packed with `--relocs`, an embedded command line and an
//!   embedded initrd, with one byte flipped at one place (payload header, start / middle / end /
//!   last byte of the compressed stream, embedded initrd, embedded command line), started bare as
//!   `\EFI\BOOT\BOOTX64.EFI` (unsigned). The stub must print its one error line
//!   (`zboot: error: ...`), the kernel must never run (no `ZBOOT-PROBE`, `ZBOOT-INIT` or
//!   `Linux version` line), and the firmware must report the failed start
//!   (`BdsDxe: failed to start Boot0001 ...`), i.e. the stub returned an error status and the
//!   boot manager moved on. Offsets come from the PE section table and the payload header.
//!   Seven boots, split between OVMF 2022.11 and 2025.02 strict NX.
//! * `resource-small-memory`: the packed Debian kernel with `-m 96M`: the 60 MiB kernel
//!   allocation fails, the stub says so and returns (no kernel output, failed start).
//! * `resource-no-gop`: `-vga none`: no Graphics Output Protocol, so no `screen_info`; the
//!   kernel still boots to the initramfs `init` (no EFI framebuffer there).
//! * Missing RNG: QEMU's default machine has no virtio-rng and OVMF offers no `EFI_RNG_PROTOCOL`
//!   without one, which is what every other boot test runs with (the stub does not need it).

use super::*;
use zboot_format::header::{HEADER_SIZE, PayloadHeader};
use zboot_format::testdata::XorShift64;

/// The stub's error line prefix (stub/src/console.rs: `zboot: ` + `error: `).
const STUB_ERROR: &str = "zboot: error: ";
/// OVMF BdsDxe's line when an image returns an error from its entry point.
const BDS_FAILED: &str = "BdsDxe: failed to start";
/// Lines that only a running kernel prints.
const KERNEL_LINES: [&str; 3] = ["Linux version", "ZBOOT-INIT", "ZBOOT-PROBE"];

/// The packed probe with embedded command line and initrd, and where its parts lie in the file.
struct Subject {
    image: PathBuf,
    /// File offsets: the `.zpayld` raw data, the compressed stream and its length, the
    /// embedded command line and initrd.
    payload_at: usize,
    stream_at: usize,
    stream_len: usize,
    cmdline_at: usize,
    initrd_at: usize,
    initrd_len: usize,
}

fn subject(ctx: &Ctx) -> Result<Subject> {
    let probe = ctx.probe()?;
    let initrd = super::scratch().join("reliability-initrd.img");
    std::fs::create_dir_all(initrd.parent().unwrap())?;
    // 64 KiB of not-very-compressible bytes: flipping one of them must be noticed.
    let bytes: Vec<u8> = XorShift64::new(0x9e37_79b9_7f4a_7c15)
        .bytes()
        .take(65_537)
        .collect();
    std::fs::write(&initrd, bytes)?;
    let image = ctx.pack(
        "reliability-probe",
        &probe.vmlinux,
        &[
            "--relocs",
            &probe.relocs.display().to_string(),
            "--cmdline",
            "console=ttyS0 zboot.reliability=1",
            "--initrd",
            &initrd.display().to_string(),
        ],
    )?;
    let pe = std::fs::read(&image)?;
    let secs = zboot_format::pe::SectionTable::parse(&pe).map_err(|e| anyhow!("{e}"))?;
    let zpayld = secs
        .find(zboot_format::PAYLOAD_SECTION_NAME)
        .context("no .zpayld section")?;
    let payload_at = zpayld.pointer_to_raw_data as usize;
    let h = PayloadHeader::parse(secs.contents(&zpayld))
        .map_err(|e| anyhow!("payload header of {}: {e}", image.display()))?;
    ensure!(h.cmdline_size > 0 && h.initrd_size > 0, "no embedded parts");
    Ok(Subject {
        payload_at,
        stream_at: payload_at + HEADER_SIZE,
        stream_len: h.compressed_size as usize,
        cmdline_at: secs
            .rva_to_file(h.cmdline_rva)
            .context("embedded command line in no section")?,
        initrd_at: secs
            .rva_to_file(h.initrd_rva)
            .context("embedded initrd in no section")?,
        initrd_len: h.initrd_size as usize,
        image,
    })
}

/// Where a damage case flips its byte.
#[derive(Clone, Copy)]
enum Spot {
    /// A field in the middle of the payload header (the header checksum breaks).
    Header,
    StreamStart,
    StreamMiddle,
    /// 64 bytes before the end of the stream (inside its last block).
    StreamEnd,
    /// The very last byte of the stream (the codec's trailer: checksum / footer).
    StreamLastByte,
    Initrd,
    Cmdline,
    /// The stub descriptor's magic: the stub cannot relocate itself and must say so without
    /// formatting (its vtables are not relocated yet).
    Descriptor,
}

impl Spot {
    /// Its name in the row's name and image file.
    fn tag(self) -> &'static str {
        match self {
            Spot::Header => "header",
            Spot::StreamStart => "stream-start",
            Spot::StreamMiddle => "stream-middle",
            Spot::StreamEnd => "stream-end",
            Spot::StreamLastByte => "stream-last-byte",
            Spot::Initrd => "initrd",
            Spot::Cmdline => "cmdline",
            Spot::Descriptor => "descriptor",
        }
    }
}

/// Boots the subject with one byte flipped at `spot` on `fw` and checks that the stub refused
/// it (error line, no kernel output, failed start reported by the firmware).
fn damaged(ctx: &Ctx, spot: Spot, fw: Firmware) -> Result<()> {
    let s = subject(ctx)?;
    let tag = spot.tag();
    let (off, want) = match spot {
        Spot::Header => (s.payload_at + 0x30, "payload header"),
        Spot::StreamStart => (s.stream_at + 1, ""),
        Spot::StreamMiddle => (s.stream_at + s.stream_len / 2, ""),
        Spot::StreamEnd => (s.stream_at + s.stream_len - 64, ""),
        Spot::StreamLastByte => (s.stream_at + s.stream_len - 1, ""),
        Spot::Initrd => (
            s.initrd_at + s.initrd_len / 2,
            "embedded command line/initrd",
        ),
        Spot::Cmdline => (s.cmdline_at + 3, "embedded command line/initrd"),
        Spot::Descriptor => {
            let bytes = std::fs::read(&s.image)?;
            let at = bytes
                .windows(zboot_format::descriptor::MAGIC.len())
                .position(|w| w == zboot_format::descriptor::MAGIC)
                .context("no stub descriptor in the image")?;
            (at + 1, "stub descriptor missing or invalid")
        }
    };
    let mut bytes = std::fs::read(&s.image)?;
    bytes[off] ^= 0x10;
    let name = format!("damaged-{tag}-{fw}");
    let image = super::scratch().join(format!("{name}.efi"));
    std::fs::write(&image, &bytes)?;
    say!(
        "    flipped bit 4 of byte {off:#x} ({tag}) of {}",
        s.image.display()
    );
    let mut spec = BootSpec::new(&name, fw, BootMode::Bare { image });
    spec.sign = false;
    spec.timeout = spec.timeout.min(std::time::Duration::from_secs(90));
    spec.stop_on.extend([
        BDS_FAILED.to_string(),
        "BdsDxe: No bootable option".to_string(),
    ]);
    spec.stop_on
        .extend(KERNEL_LINES.iter().map(|s| s.to_string()));
    let out = ctx.boot(&spec)?;
    check_refused(&out, want)
}

/// The stub printed one error line (containing `want`), no kernel ran, and the firmware reported
/// the failed start.
fn check_refused(out: &BootOutcome, want: &str) -> Result<()> {
    let ctx_log = || format!("(log {}):\n{}", out.log_path.display(), out.log_tail(15));
    for k in KERNEL_LINES {
        ensure!(
            !out.log.contains(k),
            "the kernel ran: {k:?} in the log {}",
            ctx_log()
        );
    }
    let errors: Vec<&str> = out
        .log
        .lines()
        .filter_map(|l| l.find(STUB_ERROR).map(|i| l[i..].trim_end()))
        .collect();
    // One line per start of the image. OVMF 2025.02 starts it a second time (its platform
    // recovery retries the removable-media path), so the same line may appear twice.
    ensure!(
        !errors.is_empty() && errors.iter().all(|e| *e == errors[0]),
        "want one {STUB_ERROR:?} line (per start), got {errors:?} {}",
        ctx_log()
    );
    ensure!(
        errors[0].contains(want),
        "stub error {:?} does not mention {want:?}",
        errors[0]
    );
    say!("    stub: {}", errors[0]);
    let bds = out
        .log
        .lines()
        .find(|l| l.contains(BDS_FAILED))
        .ok_or_else(|| anyhow!("the firmware did not report a failed start {}", ctx_log()))?;
    say!("    firmware: {}", bds.trim_end());
    Ok(())
}

/// `-m 96M`: the packed Debian kernel needs 60 MiB in one 2 MiB aligned piece; after OVMF and
/// the loaded 10.7 MB image there is no such piece. (With `-m 64M` OVMF 2022.11 cannot even load
/// the image: `BdsDxe: failed to load ... Not Found`, the stub never runs.)
fn small_memory(ctx: &Ctx, row: &On) -> Result<()> {
    let image = super::foundation::packed_embedded(ctx)?;
    let mut spec = BootSpec::new(row.name(), row.fw, BootMode::Bare { image });
    spec.memory_mb = 96;
    spec.timeout = spec.timeout.min(std::time::Duration::from_secs(90));
    spec.stop_on.extend([
        BDS_FAILED.to_string(),
        "BdsDxe: No bootable option".to_string(),
    ]);
    let out = ctx.boot(&spec)?;
    check_refused(&out, "allocate kernel memory")
}

/// `-vga none`: no GOP. The stub leaves screen_info empty and the kernel boots to init.
fn no_gop(ctx: &Ctx, row: &On) -> Result<()> {
    let fx = ctx.fixtures()?;
    let fw = row.fw;
    let image = super::foundation::packed_embedded(ctx)?;
    let mut spec = BootSpec::new(row.name(), fw, BootMode::Bare { image });
    spec.qemu_args
        .extend(["-vga".to_string(), "none".to_string()]);
    let out = ctx.boot(&spec)?;
    ensure!(
        !out.log.contains(STUB_ERROR),
        "the stub failed without GOP (log {})",
        out.log_path.display()
    );
    let r = out.complete_report()?;
    ensure!(
        r.release.as_deref() == Some(fx.kernel.release.as_str()),
        "release {:?}, want {}",
        r.release,
        fx.kernel.release
    );
    ensure!(
        r.cmdline_has(MARKER),
        "cmdline {:?} lacks {MARKER}",
        r.cmdline
    );
    ensure!(
        r.efi_runtime == Some(true),
        "efi_runtime {:?}",
        r.efi_runtime
    );
    ensure!(
        !r.has_fb("EFI VGA"),
        "an EFI framebuffer without a display device: fb={:?}",
        r.fb
    );
    Ok(())
}

pub fn tests() -> Vec<BootTest> {
    use Firmware::{Ovmf2022, Ovmf2025StrictNx};
    let cases = [
        (Spot::Header, Ovmf2025StrictNx),
        (Spot::StreamStart, Ovmf2025StrictNx),
        (Spot::StreamMiddle, Ovmf2022),
        (Spot::StreamEnd, Ovmf2025StrictNx),
        (Spot::StreamLastByte, Ovmf2022),
        (Spot::Initrd, Ovmf2025StrictNx),
        (Spot::Cmdline, Ovmf2022),
        (Spot::Descriptor, Ovmf2025StrictNx),
    ];
    let mut rows: Vec<BootTest> = cases
        .into_iter()
        .map(|(spot, fw)| {
            on(format!("damaged-{}", spot.tag()), fw, move |ctx, _| {
                damaged(ctx, spot, fw)
            })
        })
        .collect();
    rows.extend([
        on("resource-small-memory", Firmware::Ovmf2022, small_memory),
        on("resource-no-gop", Firmware::Ovmf2025StrictNx, no_gop),
    ]);
    rows
}

//! What a loader hands over through the EFI handover protocol: a `boot_params` whose setup header
//! points at its command line (`cmd_line_ptr` + `ext_cmd_line_ptr`) and initrd (`ramdisk_image`
//! / `ramdisk_size` + their `ext_` halves). A loader may lie: every address must lie in memory
//! the firmware says a loader or boot service allocated, and no length may wrap, before the stub
//! reads a byte of it.

use crate::placement::FreeRange;
use zboot_format::bootparam::{BootParams, HDRS_MAGIC, SetupHeader};
use zboot_format::cmdline::COMMAND_LINE_SIZE;
use zboot_format::image::SETUP_SECTS;

/// Why the loader's boot_params cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamsError {
    /// boot_params itself is not in allocated memory.
    BootParams(u64),
    /// The command line pointer is not in allocated memory.
    Cmdline(u64),
    /// The initrd range wraps or is not in allocated memory.
    Initrd(u64, u64),
    /// What the loader handed over (`what` at `at`, `len` bytes) overlaps `with`, which it
    /// must leave alone: our image, or boot_params.
    Overlap {
        what: &'static str,
        at: u64,
        len: u64,
        with: &'static str,
        start: u64,
        end: u64,
    },
    /// The setup header in boot_params was not copied from this image (boot.rst: a loader
    /// fills it from the kernel's own): this field holds `found`, ours `want`.
    Header {
        field: &'static str,
        found: u32,
        want: u32,
    },
}

impl core::fmt::Display for ParamsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ParamsError::BootParams(a) => {
                write!(
                    f,
                    "loader's boot_params at {a:#x} is not memory it allocated"
                )
            }
            ParamsError::Cmdline(a) => {
                write!(
                    f,
                    "loader's command line at {a:#x} is not memory it allocated"
                )
            }
            ParamsError::Initrd(a, n) => write!(
                f,
                "loader's initrd {a:#x}+{n:#x} is not memory it allocated"
            ),
            ParamsError::Overlap {
                what,
                at,
                len,
                with,
                start,
                end,
            } => write!(
                f,
                "loader's {what} {at:#x}+{len:#x} overlaps {with} {start:#x}..{end:#x}"
            ),
            ParamsError::Header { field, found, want } => write!(
                f,
                "loader's boot_params: setup header not copied from this image ({field} {found:#x}, this image's {want:#x})"
            ),
        }
    }
}

/// Where the loader's command line and initrd are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoaderParams {
    /// Address of the NUL-terminated command line and how many bytes may be read there (up to
    /// `COMMAND_LINE_SIZE`, never past the allocated range).
    pub cmdline: Option<(u64, u64)>,
    /// Address and size of the initrd.
    pub initrd: Option<(u64, u64)>,
}

/// The allocated range holding `[start, start + len)`, as the bytes from `start` to its end.
fn room(ranges: &[FreeRange], start: u64, len: u64) -> Option<u64> {
    let end = start.checked_add(len)?;
    ranges
        .iter()
        .find(|r| r.start <= start && end <= r.end && start != 0)
        .map(|r| r.end - start)
}

/// Check that `len` bytes at `addr` lie in `ranges` (for boot_params itself).
pub fn check_boot_params(ranges: &[FreeRange], addr: u64) -> Result<(), ParamsError> {
    room(ranges, addr, size_of::<BootParams>() as u64)
        .map(|_| ())
        .ok_or(ParamsError::BootParams(addr))
}

/// Check that the loader copied its setup header from this image, as every loader of the
/// boot protocol does (boot.rst: "the setup header ... from the kernel image"): the fields no
/// loader writes, `setup_sects` and `header`, are ours. Anything else there is not a header of
/// ours, and nothing it says (pointers, sizes, flags) is to be believed. Not `boot_flag`: GRUB's
/// `linux` zeroes it (its `padding10` and `ps_mouse`) and kexec-tools its upper byte (the old
/// zero page's `aux_device_info`): their boot_params carry 0x0000 and 0x0055 there.
pub fn check_header(hdr: &SetupHeader) -> Result<(), ParamsError> {
    let fields = [
        (
            "setup_sects",
            u32::from(hdr.setup_sects),
            u32::from(SETUP_SECTS),
        ),
        ("header", hdr.header, HDRS_MAGIC),
    ];
    match fields.into_iter().find(|&(_, found, want)| found != want) {
        None => Ok(()),
        Some((field, found, want)) => Err(ParamsError::Header { field, found, want }),
    }
}

/// Whether `[at, at + len)` and `[r.0, r.1)` share a byte.
fn overlaps(at: u64, len: u64, r: (u64, u64)) -> bool {
    len != 0 && at < r.1 && r.0 < at.saturating_add(len)
}

/// `what` (`len` bytes at `at`) must not overlap `with` (`[r.0, r.1)`).
fn apart(
    what: &'static str,
    at: u64,
    len: u64,
    with: &'static str,
    r: (u64, u64),
) -> Result<(), ParamsError> {
    if overlaps(at, len, r) {
        return Err(ParamsError::Overlap {
            what,
            at,
            len,
            with,
            start: r.0,
            end: r.1,
        });
    }
    Ok(())
}

/// boot_params at `bp` must not lie in our image `ours` (`[start, end)`): checked before a byte
/// of it is read.
pub fn check_boot_params_apart(bp: u64, ours: (u64, u64)) -> Result<(), ParamsError> {
    apart(
        "boot_params",
        bp,
        size_of::<BootParams>() as u64,
        "our image",
        ours,
    )
}

/// What [`read`] found must leave our image `ours` and boot_params at `bp` alone: a command
/// line starting in our image, an initrd over our image or over boot_params is refused (the
/// kernel would get our bytes as its initrd, or we would overwrite it).
pub fn check_apart(found: &LoaderParams, bp: u64, ours: (u64, u64)) -> Result<(), ParamsError> {
    if let Some((at, _)) = found.cmdline {
        apart("command line", at, 1, "our image", ours)?;
    }
    if let Some((at, n)) = found.initrd {
        apart("initrd", at, n, "our image", ours)?;
        let params = (bp, bp + size_of::<BootParams>() as u64);
        apart("initrd", at, n, "its boot_params", params)?;
    }
    Ok(())
}

/// The command line and initrd `bp` names, each checked against `ranges` (allocated memory).
pub fn read(bp: &BootParams, ranges: &[FreeRange]) -> Result<LoaderParams, ParamsError> {
    let hdr = bp.hdr;
    let cmd = u64::from(hdr.cmd_line_ptr) | u64::from(bp.ext_cmd_line_ptr) << 32;
    let cmdline = match cmd {
        0 => None,
        a => {
            let n = room(ranges, a, 1).ok_or(ParamsError::Cmdline(a))?;
            Some((a, n.min(COMMAND_LINE_SIZE as u64)))
        }
    };
    let rd = u64::from(hdr.ramdisk_image) | u64::from(bp.ext_ramdisk_image) << 32;
    let rd_size = u64::from(hdr.ramdisk_size) | u64::from(bp.ext_ramdisk_size) << 32;
    let initrd = match rd_size {
        0 => None,
        n => {
            room(ranges, rd, n).ok_or(ParamsError::Initrd(rd, n))?;
            Some((rd, n))
        }
    };
    Ok(LoaderParams { cmdline, initrd })
}

/// The command line in `bytes` (read from [`LoaderParams::cmdline`]): up to the first NUL, as
/// ASCII (any other byte, control characters included, becomes a space, as Linux's handover
/// path and systemd-stub treat it), `None` when no NUL ends
/// it within the bytes (an unterminated or over-long line).
pub fn cmdline_text(bytes: &[u8]) -> Option<alloc::string::String> {
    let end = bytes.iter().position(|&b| b == 0)?;
    Some(
        bytes[..end]
            .iter()
            .map(|&b| if b.is_ascii_graphic() { b as char } else { ' ' })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zero page with our setup header's fixed fields, as a loader copies them.
    fn bp() -> BootParams {
        let mut p = BootParams::zeroed();
        p.hdr.setup_sects = SETUP_SECTS;
        p.hdr.header = HDRS_MAGIC;
        p
    }

    const RAM: [FreeRange; 2] = [
        FreeRange {
            start: 0x10_0000,
            end: 0x20_0000,
        },
        FreeRange {
            start: 0x1_0000_0000,
            end: 0x1_1000_0000,
        },
    ];

    #[test]
    fn honest_loader() {
        let mut p = bp();
        p.hdr.cmd_line_ptr = 0x1f_fff0;
        p.hdr.ramdisk_image = 0;
        p.ext_ramdisk_image = 1;
        p.hdr.ramdisk_size = 0x1000;
        let got = read(&p, &RAM).unwrap();
        assert_eq!(got.cmdline, Some((0x1f_fff0, 0x10)));
        assert_eq!(got.initrd, Some((0x1_0000_0000, 0x1000)));
        assert_eq!(
            read(&bp(), &RAM).unwrap(),
            LoaderParams {
                cmdline: None,
                initrd: None
            }
        );
        assert_eq!(check_boot_params(&RAM, 0x10_0000), Ok(()));
    }

    #[test]
    fn lying_loader() {
        assert_eq!(
            check_boot_params(&RAM, 0x1f_f800),
            Err(ParamsError::BootParams(0x1f_f800))
        );
        assert_eq!(check_boot_params(&RAM, 0), Err(ParamsError::BootParams(0)));
        let mut p = bp();
        p.hdr.cmd_line_ptr = 0x3000;
        assert_eq!(read(&p, &RAM), Err(ParamsError::Cmdline(0x3000)));
        let mut p = bp();
        p.hdr.ramdisk_image = 0x1f_f000;
        p.hdr.ramdisk_size = 0x2000;
        assert_eq!(read(&p, &RAM), Err(ParamsError::Initrd(0x1f_f000, 0x2000)));
        let mut p = bp();
        p.hdr.ramdisk_image = 0xffff_f000;
        p.ext_ramdisk_image = 0xffff_ffff;
        p.hdr.ramdisk_size = 0x2000;
        assert!(read(&p, &RAM).is_err());
    }

    #[test]
    fn a_header_not_copied_from_ours_is_refused() {
        assert_eq!(check_header(&bp().hdr), Ok(()));
        // boot_flag as GRUB and kexec-tools leave it: not looked at.
        let mut p = bp();
        p.hdr.boot_flag = 0x55;
        assert_eq!(check_header(&p.hdr), Ok(()));
        p.hdr.header = 0;
        assert_eq!(
            check_header(&p.hdr),
            Err(ParamsError::Header {
                field: "header",
                found: 0,
                want: HDRS_MAGIC
            })
        );
        let mut p = bp();
        p.hdr.header = 0x1234_5678;
        assert!(matches!(
            check_header(&p.hdr),
            Err(ParamsError::Header {
                field: "header",
                ..
            })
        ));
        let mut p = bp();
        p.hdr.setup_sects = 0xff;
        let e = check_header(&p.hdr).unwrap_err();
        assert_eq!(
            alloc::format!("{e}"),
            "loader's boot_params: setup header not copied from this image (setup_sects 0xff, this image's 0x7)"
        );
        // A zeroed header (a loader that built boot_params from nothing).
        assert!(check_header(&BootParams::zeroed().hdr).is_err());
    }

    #[test]
    fn nothing_handed_over_may_overlap_us_or_boot_params() {
        let ours = (0x10_0000, 0x18_0000);
        let found = |cmdline, initrd| LoaderParams { cmdline, initrd };
        assert_eq!(check_boot_params_apart(0x18_0000, ours), Ok(()));
        assert!(matches!(
            check_boot_params_apart(0x17_f800, ours),
            Err(ParamsError::Overlap {
                what: "boot_params",
                ..
            })
        ));
        let bp = 0x1f_0000;
        assert_eq!(
            check_apart(
                &found(Some((0x18_0000, 0x10)), Some((0x1f_1000, 0x1000))),
                bp,
                ours
            ),
            Ok(())
        );
        assert!(check_apart(&found(Some((0x17_ffff, 1)), None), bp, ours).is_err());
        let e = check_apart(&found(None, Some((0x1e_f000, 0x2000))), bp, ours).unwrap_err();
        assert_eq!(
            alloc::format!("{e}"),
            "loader's initrd 0x1ef000+0x2000 overlaps its boot_params 0x1f0000..0x1f1000"
        );
        assert!(check_apart(&found(None, Some((0x8_0000, 0x8_0001))), bp, ours).is_err());
        assert_eq!(
            check_apart(&found(None, Some((0x8_0000, 0x8_0000))), bp, ours),
            Ok(())
        );
    }

    #[test]
    fn command_line_bytes() {
        assert_eq!(
            cmdline_text(b"console=ttyS0\0junk").as_deref(),
            Some("console=ttyS0")
        );
        assert_eq!(cmdline_text(b"a\tb\0").as_deref(), Some("a b"));
        assert_eq!(cmdline_text(b"no terminator"), None);
    }
}

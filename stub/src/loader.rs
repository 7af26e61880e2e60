//! What the loader hands over, and the command line the kernel gets from it: LoadOptions (PE
//! entry) or a handover loader's boot_params (its command line and initrd, each checked to lie
//! in allocated memory before a byte of it is read), measured into PCR 9 before use.

use crate::error::{Context, Error};
use crate::{measure, memory};
use alloc::string::String;
use uefi::proto::loaded_image::LoadedImage;
use zboot_format::bootparam::BootParams;
use zboot_stub::arch::x86_64::boot_params::secure_boot as sb;
use zboot_stub::cmdline;
use zboot_stub::loader_params as lp;

/// How we were started.
#[derive(Clone, Copy)]
pub enum Entry {
    /// As a PE image (LoadImage/StartImage, or systemd-stub's own loader): options from
    /// LoadedImage, initrd through LoadFile2 / `initrd=` / embedded.
    Pe,
    /// Through the EFI handover protocol (GRUB `linuxefi`): command line and initrd from the
    /// loader's boot_params at this address.
    Handover(u64),
}

/// The loader's part of the boot, and the kernel's command line made with it.
pub struct FromLoader {
    /// The kernel's command line ([`command_line`]).
    pub line: String,
    /// Whether the loader passed options that Secure Boot made us ignore.
    pub options_ignored: bool,
    /// The initrd a handover loader placed (address, size).
    pub initrd: Option<(u64, u64)>,
}

/// What the loader of `entry` handed over, measured with the `embedded` line first
/// (LoadOptions on the PE entry only, as Linux), and the kernel's command line from both;
/// `secure_boot` is the firmware's mode (`boot_params.secure_boot`).
pub fn take(entry: Entry, embedded: &[u8], secure_boot: u8) -> Result<FromLoader, Error> {
    let (options, initrd) = match entry {
        Entry::Handover(bp) => {
            let found = handover_params(bp)?;
            measure::command_line(embedded, None);
            found
        }
        Entry::Pe => {
            let li = memory::get_protocol::<LoadedImage>(uefi::boot::image_handle())
                .efi("LoadedImage")?;
            let raw = li.load_options_as_bytes().unwrap_or_default();
            measure::command_line(embedded, Some(raw));
            (cmdline::utf16le_to_utf8(raw), None)
        }
    };
    let locked = matches!(secure_boot, sb::ENABLED | sb::UNKNOWN);
    let (line, use_loader) = command_line(embedded, &options, locked)?;
    Ok(FromLoader {
        line,
        options_ignored: !use_loader && !options.trim().is_empty(),
        initrd,
    })
}

/// The kernel's command line: embedded first, the loader's appended; under Secure Boot
/// (`locked`) an embedded (signed) line stands alone. A malformed embedded line is refused,
/// never taken as "none" (that would let the loader's options in under Secure Boot).
/// Returns the line and whether the loader's part was used.
pub fn command_line(embedded: &[u8], loader: &str, locked: bool) -> Result<(String, bool), Error> {
    let embedded = match embedded {
        [] => "",
        bytes => zboot_format::cmdline::check_embedded(bytes).map_err(Error::EmbeddedCmdline)?,
    };
    let use_loader = cmdline::loader_options_allowed(embedded, locked);
    let line = cmdline::compose(embedded, if use_loader { loader } else { "" });
    zboot_format::cmdline::check_len(line.len()).map_err(Error::CmdlineTooLong)?;
    Ok((line, use_loader))
}

/// The loader's NUL-terminated command line at `at` (`max` readable bytes, checked).
pub fn loader_cmdline(at: u64, max: u64) -> Result<String, Error> {
    // SAFETY: the caller checked that `max` bytes at `at` lie in memory the loader owns.
    let bytes = unsafe { core::slice::from_raw_parts(at as *const u8, max as usize) };
    lp::cmdline_text(bytes).ok_or(Error::CmdlineTooLong(
        zboot_format::cmdline::CmdlineError::TooLong {
            len: max as usize,
            max: zboot_format::cmdline::MAX_LEN,
        },
    ))
}

/// The command line and initrd a handover loader put in the boot_params at `bp`, each
/// checked to lie in memory that was allocated before a byte of it is read.
fn handover_params(bp: u64) -> Result<(String, Option<(u64, u64)>), Error> {
    let ranges = memory::allocated_ranges().efi("GetMemoryMap")?;
    lp::check_boot_params(&ranges, bp).map_err(Error::LoaderParams)?;
    // SAFETY: 4096 bytes at `bp` lie in allocated memory (checked); BootParams is plain data.
    let params = unsafe { core::ptr::read_unaligned(bp as *const BootParams) };
    let found = lp::read(&params, &ranges).map_err(Error::LoaderParams)?;
    let cmdline = match found.cmdline {
        None => String::new(),
        // `read` checked the bytes lie in allocated memory.
        Some((at, max)) => loader_cmdline(at, max)?,
    };
    Ok((cmdline, found.initrd))
}

//! What an EFI loader hands over: LoadOptions (PE entry) or a handover loader's boot_params
//! (its command line and initrd, each checked to lie in allocated memory before a byte of it is
//! read).

use super::memory;
use crate::error::{Context, Error};
use crate::platform::{LoaderInput, loader_line};
use alloc::string::String;
use uefi::proto::loaded_image::LoadedImage;
use zboot_format::bootparam::BootParams;
use zboot_stub::arch::current::loader_params as lp;
use zboot_stub::cmdline;

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

/// What the loader of `entry` handed over; `secure_boot` is the firmware's mode.
pub fn input(entry: Entry, secure_boot: u8) -> Result<LoaderInput, Error> {
    Ok(match entry {
        Entry::Handover(bp) => {
            let (options, initrd) = handover_params(bp)?;
            LoaderInput {
                options,
                // Linux measures no LoadOptions on the handover entry.
                measured_options: None,
                initrd,
                secure_boot,
            }
        }
        Entry::Pe => {
            let li = memory::get_protocol::<LoadedImage>(uefi::boot::image_handle())
                .efi("LoadedImage")?;
            let raw = li.load_options_as_bytes().unwrap_or_default();
            LoaderInput {
                options: cmdline::utf16le_to_utf8(raw),
                measured_options: Some(raw.to_vec()),
                initrd: None,
                secure_boot,
            }
        }
    })
}

/// The command line and initrd a handover loader put in the boot_params at `bp`, each
/// checked to lie in memory that was allocated before a byte of it is read.
fn handover_params(bp: u64) -> Result<(String, Option<(u64, u64)>), Error> {
    let ranges = memory::allocated_ranges().efi("GetMemoryMap")?;
    lp::check_boot_params(&ranges, bp).map_err(Error::LoaderParams)?;
    let own = crate::image::own()
        .map_err(|e| Error::Payload(zboot_stub::payload::PayloadError::Descriptor(e)))?;
    // From the stub's first section on: a handover loader copies the file from there (the
    // page of headers before it is not necessarily ours).
    let ours = (
        own.base + u64::from(zboot_format::image::HEADERS_SIZE),
        own.base + u64::from(own.descriptor.image_size),
    );
    lp::check_boot_params_apart(bp, ours).map_err(Error::LoaderParams)?;
    // SAFETY: 4096 bytes at `bp` lie in allocated memory (checked); BootParams is plain data.
    let params = unsafe { core::ptr::read_unaligned(bp as *const BootParams) };
    lp::check_header(&{ params.hdr }).map_err(Error::LoaderParams)?;
    let found = lp::read(&params, &ranges).map_err(Error::LoaderParams)?;
    lp::check_apart(&found, bp, ours).map_err(Error::LoaderParams)?;
    let cmdline = match found.cmdline {
        None => String::new(),
        // `read` checked the bytes lie in allocated memory.
        Some((at, max)) => loader_line::read(at, max)?,
    };
    Ok((cmdline, found.initrd))
}

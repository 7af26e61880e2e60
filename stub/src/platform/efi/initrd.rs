//! The initrd under EFI. In order of preference: the one a handover loader put in boot_params,
//! LoadFile2 on the LINUX_EFI_INITRD_MEDIA_GUID
//! vendor media device path (systemd-boot, GRUB), else `initrd=` files from the volume we were
//! loaded from, else the embedded initrd. `noinitrd` disables all three. Never LoadFile2 and
//! `initrd=` together (systemd-boot also writes `initrd=` into the options).

use super::memory::{self, Pages};
use crate::platform::{InitrdSource as Source, LoadedInitrd};
use alloc::vec::Vec;
use uefi::boot::{self, MemoryType};
use uefi::proto::device_path::build::{self, DevicePathBuilder};
use uefi::proto::loaded_image::LoadedImage;
use uefi::proto::media::file::{File, FileAttribute, FileInfo, FileMode};
use uefi::proto::media::load_file::LoadFile2;
use uefi::{CString16, Guid, Status, guid};
use zboot_stub::cmdline::Options;

pub const LINUX_EFI_INITRD_MEDIA_GUID: Guid = guid!("5568e427-68fc-4f3d-ac74-ca555231cc68");

/// A loaded initrd: page memory we own, or the embedded bytes inside our image.
pub struct Initrd {
    pub source: Source,
    pub addr: u64,
    pub size: u64,
    _pages: Option<Pages>,
    /// The embedded initrd's bytes (inside our image).
    embedded: Option<&'static [u8]>,
}

impl LoadedInitrd for Initrd {
    fn source(&self) -> Source {
        self.source
    }

    fn bytes(&self) -> Option<&[u8]> {
        match (&self._pages, self.embedded) {
            (Some(p), _) => p.bytes().get(..self.size as usize),
            (None, e) => e,
        }
    }

    fn span(&self) -> (u64, u64) {
        (self.addr, self.size)
    }

    fn leak(self) {
        if let Some(p) = self._pages {
            p.leak();
        }
    }
}

/// Why the initrd could not be loaded (a present but unreadable initrd is an error).
#[derive(Debug)]
pub struct InitrdError(pub &'static str, pub Status);

pub fn load(
    opts: &Options,
    from_loader: Option<(u64, u64)>,
    embedded: Option<&'static [u8]>,
) -> Result<Option<Initrd>, InitrdError> {
    if let Some((addr, size)) = from_loader {
        return Ok(Some(Initrd {
            source: Source::Loader,
            addr,
            size,
            _pages: None,
            embedded: None,
        }));
    }
    if let Some(i) = load_file2()? {
        return Ok(Some(i));
    }
    if !opts.initrd.is_empty() {
        return files(&opts.initrd, !opts.efi_nochunk).map(Some);
    }
    Ok(embedded.map(|b| Initrd {
        source: Source::Embedded,
        addr: b.as_ptr() as u64,
        size: b.len() as u64,
        _pages: None,
        embedded: Some(b),
    }))
}

fn load_file2() -> Result<Option<Initrd>, InitrdError> {
    let mut buf = Vec::new();
    let path = DevicePathBuilder::with_vec(&mut buf)
        .push(&build::media::Vendor {
            vendor_guid: LINUX_EFI_INITRD_MEDIA_GUID,
            vendor_defined_data: &[],
        })
        .and_then(|b| b.finalize())
        .map_err(|_| InitrdError("initrd device path", Status::ABORTED))?;
    let mut remaining = path;
    let Ok(handle) = boot::locate_device_path::<LoadFile2>(&mut remaining) else {
        return Ok(None);
    };
    // LoadFile2.LoadFile takes the path *remaining* after LocateDevicePath (here the end node),
    // as Linux's stub passes it; GRUB 2.12 refuses the whole path with NOT_FOUND.
    // Straight into pages (no pool copy: memory.rs), so the kernel can free it page-wise.
    let (pages, size) = memory::load_file2_pages(handle, remaining, MemoryType::LOADER_DATA)
        .map_err(|e| InitrdError("LoadFile2 initrd", e.status()))?;
    Ok(Some(Initrd {
        source: Source::LoadFile2,
        addr: pages.addr(),
        size: size as u64,
        _pages: Some(pages),
        embedded: None,
    }))
}

/// Largest single Read() of an `initrd=` file unless `efi=nochunk` (Linux's
/// `EFI_READ_CHUNK_SIZE`: some firmware file systems fail on large reads).
const READ_CHUNK: usize = 1 << 20;

/// `initrd=` files from the volume we were loaded from, concatenated in command-line order into
/// one allocation (what Linux's `handle_cmdline_files` does).
fn files(paths: &[alloc::string::String], chunked: bool) -> Result<Initrd, InitrdError> {
    let device = memory::get_protocol::<LoadedImage>(boot::image_handle())
        .ok()
        .and_then(|li| li.device())
        .ok_or(InitrdError("initrd=: no loader device", Status::NOT_FOUND))?;
    let mut fs = memory::get_protocol::<uefi::proto::media::fs::SimpleFileSystem>(device)
        .map_err(|e| InitrdError("initrd=: no file system", e.status()))?;
    let mut root = fs
        .open_volume()
        .map_err(|e| InitrdError("initrd=: open volume", e.status()))?;
    let mut handles = Vec::new();
    let mut total = 0u64;
    for p in paths {
        // Name the file on the console; the returned error only names the step.
        let fail = |what: &'static str, status: Status| {
            error!("initrd={}: {} ({:?})", p, what, status);
            InitrdError(what, status)
        };
        let name = CString16::try_from(p.as_str())
            .map_err(|_| fail("initrd=: bad path", Status::INVALID_PARAMETER))?;
        let mut f = root
            .open(&name, FileMode::Read, FileAttribute::empty())
            .map_err(|e| fail("initrd=: open file", e.status()))?
            .into_regular_file()
            .ok_or_else(|| fail("initrd=: not a file", Status::INVALID_PARAMETER))?;
        let size = f
            .get_boxed_info::<FileInfo>()
            .map_err(|e| fail("initrd=: file info", e.status()))?
            .file_size();
        total = total
            .checked_add(size)
            .filter(|&t| t <= usize::MAX as u64)
            .ok_or_else(|| fail("initrd=: files too large", Status::BAD_BUFFER_SIZE))?;
        handles.push((f, size));
    }
    // Every byte is read into below (a short file is an error).
    let mut pages = Pages::low_for_overwrite(total, MemoryType::LOADER_DATA)
        .map_err(|e| InitrdError("allocate initrd", e.status()))?;
    let buf = pages.bytes_mut();
    let mut at = 0usize;
    for (mut f, size) in handles {
        let end = at + size as usize;
        while at < end {
            let stop = if chunked {
                end.min(at + READ_CHUNK)
            } else {
                end
            };
            let n = f
                .read(&mut buf[at..stop])
                .map_err(|e| InitrdError("initrd=: read", e.status()))?;
            if n == 0 {
                return Err(InitrdError(
                    "initrd=: file shorter than its size",
                    Status::END_OF_FILE,
                ));
            }
            at += n;
        }
    }
    Ok(Initrd {
        source: Source::Files,
        addr: pages.addr(),
        size: total,
        _pages: Some(pages),
        embedded: None,
    })
}

//! zboot-stub: the EFI application that unpacks and boots the kernel carried in `.zpayld`.
//!
//! `efi_main` reads as the boot pipeline; each step is one function in its own module. The pure
//! modules (payload, cmdline, decode, arch::x86_64::{boot_params, e820, kaslr}) are the library
//! (`lib.rs`), built and tested on the host; the EFI glue here only builds for the UEFI target.
#![cfg_attr(target_os = "uefi", no_std, no_main)]

#[cfg(target_os = "uefi")]
extern crate alloc;

#[cfg(target_os = "uefi")]
use zboot_stub::{arch, cmdline, decode, payload};

#[cfg(target_os = "uefi")]
mod error;
#[cfg(target_os = "uefi")]
#[macro_use]
mod console;
#[cfg(target_os = "uefi")]
mod gop;
#[cfg(target_os = "uefi")]
mod initrd;
#[cfg(target_os = "uefi")]
mod memory;
#[cfg(target_os = "uefi")]
mod secureboot;

#[cfg(target_os = "uefi")]
mod pipeline {
    use crate::arch::x86_64::{boot_params as bp, e820, handoff, kaslr};
    use crate::console;
    use crate::error::{Context, Error};
    use crate::memory::{self, Pages};
    use crate::{cmdline, decode, gop, initrd, payload, secureboot};
    use alloc::vec::Vec;
    use core::convert::Infallible;
    use uefi::boot::MemoryType;
    use uefi::mem::memory_map::MemoryMap;
    use uefi::proto::loaded_image::LoadedImage;
    use zboot_format::bootparam::{BootParams, E820Entry, SETUP_E820_EXT, SetupData};
    use zboot_format::header::{self, PayloadHeader};
    use zboot_format::relocs::RelocTable;

    #[uefi::entry]
    fn efi_main() -> uefi::Status {
        let _ = uefi::helpers::init();
        match boot() {
            Ok(never) => match never {},
            Err(e) => {
                error!("{}", e);
                e.status()
            }
        }
    }

    /// The boot pipeline. Every allocation is owned until the hand-off, so an early return
    /// frees it; nothing jumps into bytes that failed the SHA-256 check.
    fn boot() -> Result<Infallible, Error> {
        // 1. Find and validate the payload in our own image.
        let image = memory::own_image().efi("LoadedImage")?;
        let payload = payload::locate(image).map_err(Error::Payload)?;
        let h = payload.header;

        // 2. Command line: embedded first, loader options appended.
        let line = cmdline::compose(
            core::str::from_utf8(payload.cmdline).unwrap_or(""),
            &load_options()?,
        );
        let opts = cmdline::Options::parse(&line);
        console::set_debug(opts.efi_debug);
        progress!(
            "payload {} {} -> {} bytes, mem {:#x}",
            h.codec.name(),
            h.compressed_size,
            h.uncompressed_size,
            h.mem_size
        );
        progress!("cmdline: {}", line);

        // 3. The kernel's memory, once, aligned, executable.
        let mut kernel = allocate_kernel(&h)?;
        progress!("kernel region {:#x}+{:#x}", kernel.addr(), h.mem_size);

        // 4. Decompress in place, verify, relocate, clear the rest.
        unpack(&h, payload.compressed, &mut kernel)?;

        // 5. Initrd.
        let initrd = initrd::load(&opts, payload.initrd).map_err(|e| Error::Efi(e.0, e.1))?;
        if let Some(i) = &initrd {
            progress!("initrd {:?} {:#x}+{:#x}", i.source, i.addr, i.size);
        }

        // 6. boot_params and everything it points to, allocated before ExitBootServices.
        let mut zero_page =
            Pages::low(4096, MemoryType::LOADER_DATA).efi("allocate boot_params")?;
        let mut params = BootParams::zeroed();
        let params = &mut params;
        bp::set_header(
            params,
            &bp::KernelPlacement {
                base: kernel.addr(),
                mem_size: h.mem_size,
                alignment: h.alignment,
                preferred_address: h.preferred_address,
                xloadflags: h.xloadflags,
                randomized: false,
            },
        );
        let mut cmdline_pages = Pages::low(line.len() as u64 + 1, MemoryType::LOADER_DATA)
            .efi("allocate command line")?;
        cmdline_pages.bytes_mut()[..line.len()].copy_from_slice(line.as_bytes());
        bp::set_cmdline(params, cmdline_pages.addr());
        if let Some(si) = gop::current_mode().as_ref().and_then(bp::screen_info) {
            params.screen_info = si;
            progress!(
                "efifb {}x{} at {:#x}",
                { si.lfb_width },
                { si.lfb_height },
                { si.lfb_base }
            );
        }
        params.secure_boot = secureboot::mode();
        let (e820_scratch, e820_ext) = e820_buffers()?;
        let entry = kernel.addr() + h.entry_offset;
        progress!("entering kernel at {:#x}", entry);

        // 7. Exit boot services; from here on: no allocation, no console, no failure.
        let (rd_addr, rd_size) = initrd.map(|i| i.leak()).unwrap_or((0, 0));
        bp::set_initrd(params, rd_addr, rd_size);
        let systab = uefi::table::system_table_raw()
            .map(|p| p.as_ptr() as u64)
            .unwrap_or(0);
        kernel.leak();
        cmdline_pages.leak();
        // SAFETY: no boot-service object is used after this point.
        let map = unsafe { uefi::boot::exit_boot_services(Some(MemoryType::LOADER_DATA)) };
        finish_boot_params(params, &map, e820_scratch, e820_ext);
        let meta = map.meta();
        bp::set_efi_info(
            params,
            systab,
            &bp::EfiMemmap {
                addr: map.buffer().as_ptr() as u64,
                size: meta.map_size as u64,
                desc_size: meta.desc_size as u32,
                desc_version: meta.desc_version,
            },
        );
        core::mem::forget(map); // the kernel reuses the final map: keep it allocated
        zero_page.write(0, params);
        let params_addr = zero_page.leak();
        // SAFETY: boot services are gone; the kernel at `entry` passed its SHA-256 check and
        // lies in identity-mapped, executable memory; the zero page is complete.
        unsafe { handoff::jump(entry, params_addr) }
    }

    fn load_options() -> Result<alloc::string::String, Error> {
        let li = uefi::boot::open_protocol_exclusive::<LoadedImage>(uefi::boot::image_handle())
            .efi("LoadedImage")?;
        Ok(li
            .load_options_as_bytes()
            .map(cmdline::utf16le_to_utf8)
            .unwrap_or_default())
    }

    fn allocate_kernel(h: &PayloadHeader) -> Result<Pages, Error> {
        // No seed yet: the preferred address when free, else any aligned address.
        let at = match kaslr::choose(None, 0) {
            kaslr::Placement::Preferred => Some(h.preferred_address),
            _ => None,
        };
        // LOADER_CODE: executable on firmware that maps data NX.
        let kernel = Pages::aligned(h.mem_size, h.alignment, at, MemoryType::LOADER_CODE)
            .efi("allocate kernel memory")?;
        if memory::allow_execute(kernel.addr(), h.mem_size).efi("clear XP on the kernel")? {
            progress!("memory attribute protocol: XP cleared on the kernel region");
        }
        Ok(kernel)
    }

    fn unpack(h: &PayloadHeader, compressed: &[u8], kernel: &mut Pages) -> Result<(), Error> {
        let region = &mut kernel.bytes_mut()[..h.mem_size as usize];
        let decoded_len = h.uncompressed_size as usize;
        if h.flags.has(zboot_format::Flags::BCJ_X86) {
            // Not produced by zboot-pack; refuse rather than boot filtered bytes.
            return Err(Error::Unsupported("BCJ_X86 pre-filter outside xz"));
        }
        let t = console::now();
        decode::decode(h.codec, compressed, &mut region[..decoded_len]).map_err(Error::Decode)?;
        progress!(
            "decoded {} bytes in {} ms",
            decoded_len,
            console::elapsed_ms(t)
        );
        let t = console::now();
        if header::sha256(&[&region[..decoded_len]]) != h.image_sha256 {
            return Err(Error::ImageChecksum);
        }
        progress!("sha256 ok in {} ms", console::elapsed_ms(t));
        if h.flags.has(zboot_format::Flags::RELOCS) {
            let (image, rest) = region.split_at_mut(h.image_size as usize);
            let table_at = (h.relocs_offset - h.image_size) as usize;
            let table = RelocTable::parse(&rest[table_at..decoded_len - h.image_size as usize])
                .map_err(Error::Relocs)?;
            table
                .check_counts(h.relocs_count64, h.relocs_count_inv32, h.relocs_count32)
                .map_err(Error::Relocs)?;
            let delta = kaslr::virt_delta(0);
            table
                .apply(image, h.link_virt_base, delta)
                .map_err(Error::Relocs)?;
        }
        region[h.image_size as usize..].fill(0);
        Ok(())
    }

    /// Room for the e820 table built after ExitBootServices: a scratch table and a
    /// SETUP_E820_EXT node for entries beyond the zero page's 128.
    fn e820_buffers() -> Result<(Vec<E820Entry>, Pages), Error> {
        let cap = memory::map_entries().efi("GetMemoryMap")? * 2 + 64;
        let scratch = alloc::vec![E820Entry { addr: 0, size: 0, typ: 0 }; cap];
        let ext = Pages::low(
            (size_of::<SetupData>() + cap * size_of::<E820Entry>()) as u64,
            MemoryType::LOADER_DATA,
        )
        .efi("allocate e820 extension")?;
        Ok((scratch, ext))
    }

    fn finish_boot_params(
        params: &mut BootParams,
        map: &uefi::mem::memory_map::MemoryMapOwned,
        mut scratch: Vec<E820Entry>,
        mut ext: Pages,
    ) {
        let regions = map.entries().map(|d| e820::EfiRegion {
            ty: d.ty.0,
            phys_start: d.phys_start,
            pages: d.page_count,
            attribute: d.att.bits(),
        });
        let n = e820::convert(regions, &mut scratch);
        let in_zero_page = e820::fill_zero_page(params, &scratch[..n]);
        let rest = &scratch[in_zero_page..n];
        if !rest.is_empty() {
            let mut node = SetupData {
                next: 0,
                typ: SETUP_E820_EXT,
                len: size_of_val(rest) as u32,
            };
            bp::link_setup_data(params, &mut node, ext.addr());
            ext.write(0, &node);
            for (i, e) in rest.iter().enumerate() {
                ext.write(size_of::<SetupData>() + i * size_of::<E820Entry>(), e);
            }
            ext.leak();
        } else {
            core::mem::forget(ext); // cannot free after ExitBootServices
        }
        core::mem::forget(scratch);
    }
}

#[cfg(not(target_os = "uefi"))]
fn main() {
    eprintln!("zboot-stub is an EFI application; build it with --target x86_64-unknown-uefi");
}

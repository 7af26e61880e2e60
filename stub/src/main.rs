//! zboot-stub: the EFI application that unpacks and boots the kernel carried in `.zpayld`.
//!
//! `efi_main` reads as the boot pipeline; each step is one function in its own module. The pure
//! modules (payload, cmdline, decode, arch::x86_64::{boot_params, e820, kaslr}) are the library
//! (`lib.rs`), built and tested on the host; the EFI glue here only builds for the UEFI target.
#![cfg_attr(target_os = "uefi", no_std, no_main)]

#[cfg(target_os = "uefi")]
extern crate alloc;

#[cfg(target_os = "uefi")]
use zboot_stub::{arch, cmdline, decode, memstats, payload};

#[cfg(target_os = "uefi")]
mod error;
#[cfg(target_os = "uefi")]
#[macro_use]
mod console;
#[cfg(target_os = "uefi")]
mod bare;
#[cfg(target_os = "uefi")]
mod gop;
#[cfg(target_os = "uefi")]
mod image;
#[cfg(target_os = "uefi")]
mod initrd;
#[cfg(target_os = "uefi")]
mod measure;
#[cfg(target_os = "uefi")]
mod memory;
#[cfg(target_os = "uefi")]
mod rng;
#[cfg(target_os = "uefi")]
mod secureboot;
#[cfg(target_os = "uefi")]
mod serial;
#[cfg(target_os = "uefi")]
mod trampoline;
#[cfg(target_os = "uefi")]
mod unpack;

#[cfg(target_os = "uefi")]
pub(crate) mod pipeline {
    use crate::arch::x86_64::{boot_params as bp, e820, handoff, kaslr, paging};
    use crate::console;
    use crate::error::{Context, Error};
    use crate::memory::{self, Pages};
    use crate::trampoline::Trampoline;
    use crate::{cmdline, gop, initrd, measure, memstats, payload, rng, secureboot};
    use alloc::vec::Vec;
    use core::convert::Infallible;
    use uefi::boot::MemoryType;
    use uefi::mem::memory_map::MemoryMap;
    use uefi::proto::loaded_image::LoadedImage;
    use zboot_format::bootparam::{
        BootParams, E820Entry, SETUP_E820_EXT, SETUP_RNG_SEED, SetupData,
    };
    use zboot_format::header::PayloadHeader;

    /// How we were started.
    #[derive(Clone, Copy)]
    enum Entry {
        /// As a PE image (LoadImage/StartImage, or systemd-stub's own loader): options from
        /// LoadedImage, initrd through LoadFile2 / `initrd=` / embedded.
        Pe,
        /// Through the EFI handover protocol (GRUB `linuxefi`): command line and initrd from the
        /// loader's boot_params at this address.
        Handover(u64),
    }

    /// The PE entry point.
    #[unsafe(export_name = "efi_main")]
    extern "efiapi" fn efi_main(
        image_handle: uefi::Handle,
        system_table: *const core::ffi::c_void,
    ) -> uefi::Status {
        start(Some(image_handle), system_table, Entry::Pe)
    }

    /// The EFI handover entry (setup header `handover_offset`): a loader copied the file flat
    /// and calls us with the SysV ABI.
    #[unsafe(no_mangle)]
    extern "sysv64" fn zboot_handover_entry(
        image_handle: *mut core::ffi::c_void,
        system_table: *const core::ffi::c_void,
        boot_params: *mut core::ffi::c_void,
    ) -> uefi::Status {
        // SAFETY: a handle is an opaque pointer; `from_ptr` only checks it for null.
        let handle = unsafe { uefi::Handle::from_ptr(image_handle) };
        start(handle, system_table, Entry::Handover(boot_params as u64))
    }

    /// Both entries: first our own relocations (nothing before them may use a pointer from our
    /// data: no formatting), then what `#[uefi::entry]` would do, then the pipeline.
    fn start(
        image_handle: Option<uefi::Handle>,
        system_table: *const core::ffi::c_void,
        entry: Entry,
    ) -> uefi::Status {
        // SAFETY: the first statement at entry, single-threaded.
        let relocated = unsafe { crate::image::relocate() };
        let Some(image_handle) = image_handle.filter(|_| !system_table.is_null()) else {
            return uefi::Status::INVALID_PARAMETER;
        };
        // SAFETY: the handle and system table the loader passed us, as `#[uefi::entry]` sets them.
        unsafe {
            uefi::boot::set_image_handle(image_handle);
            uefi::table::set_system_table(system_table.cast());
        }
        if relocated.is_err() {
            // Unrelocated: no formatting (it calls through our vtables), a fixed string only.
            uefi::system::with_stdout(|out| {
                let _ = out.output_string(uefi::cstr16!(
                    "zboot: error: stub descriptor missing or invalid (not packed by zboot-pack?)\r\n"
                ));
            });
            return uefi::Status::LOAD_ERROR;
        }
        match boot(entry) {
            Ok(never) => match never {},
            Err(e) => {
                error!("{}", e);
                e.status()
            }
        }
    }

    /// The boot pipeline. Every allocation is owned until the hand-off, so an early return
    /// frees it; nothing jumps into bytes that failed the stream check.
    fn boot(entry: Entry) -> Result<Infallible, Error> {
        // 1. Find and validate the payload in our own image.
        let (image, descriptor) = crate::image::own()
            .map_err(|e| Error::Payload(payload::PayloadError::Descriptor(e)))?;
        let payload = payload::locate_with(image, &descriptor).map_err(Error::Payload)?;
        let h = payload.header;

        // 2. Command line: embedded first, loader options appended; under Secure Boot an
        //    embedded (signed) line stands alone. A malformed embedded line is refused, never
        //    taken as "none" (that would let the loader's options in under Secure Boot).
        let sb_mode = secureboot::mode();
        let handover = match entry {
            Entry::Pe => None,
            Entry::Handover(bp) => Some(handover_params(bp)?),
        };
        // The loader's part, measured with the embedded part (PCR 9) before either is used.
        let loader = loader_options(&handover, payload.cmdline)?;
        let locked = matches!(sb_mode, bp::secure_boot::ENABLED | bp::secure_boot::UNKNOWN);
        let (line, use_loader) = command_line(payload.cmdline, &loader, locked)?;
        let opts = cmdline::Options::parse(&line);
        console::set_debug(opts.efi_debug);
        if let Entry::Handover(bp) = entry {
            progress!("EFI handover: boot_params at {:#x}", bp);
        }
        if !use_loader && !loader.trim().is_empty() {
            progress!(
                "Secure Boot: loader options ignored, the embedded command line stands alone"
            );
        }
        progress!(
            "payload {} {} -> {} bytes, mem {:#x}",
            h.codec.name(),
            h.compressed_size,
            h.uncompressed_size,
            h.mem_size
        );
        progress!("cmdline: {}", line);

        // 3. KASLR decisions and the kernel's memory, once, aligned, executable.
        let mut random = [0u8; 64];
        let source = rng::fill(&mut random);
        let word = |i: usize| u64::from_le_bytes(random[i * 8..i * 8 + 8].try_into().unwrap());
        if source != rng::Source::EfiRng {
            progress!("KASLR seed from {}", source.name());
        }
        let (phys_policy, virt_random) = kaslr::policy(
            opts.nokaslr,
            opts.no_phys_kaslr,
            h.flags.has(zboot_format::Flags::RELOCS),
        );
        let (mut kernel, phys_random) =
            memstats::for_payload(|| allocate_kernel(&h, phys_policy, word(0)))?;
        let delta = kaslr::virt_delta(
            virt_random.then(|| word(1)),
            h.preferred_address,
            h.mem_size,
            h.alignment,
        );
        let randomized = phys_random || virt_random;
        progress!(
            "kernel region {:#x}+{:#x} (physical {}), virtual delta {:#x}",
            kernel.addr(),
            h.mem_size,
            if phys_random { "random" } else { "preferred" },
            delta
        );

        // 4. Decompress in place, verify, relocate, clear the rest.
        crate::unpack::unpack(&h, payload.compressed, kernel.bytes_mut(), delta)?;

        // 5. Initrd.
        let from_loader = handover.and_then(|(_, rd)| rd);
        let initrd = memstats::for_payload(|| initrd::load(&opts, from_loader, payload.initrd))
            .map_err(|e| Error::Efi(e.0, e.1))?;
        if let Some(i) = &initrd {
            progress!("initrd {:?} {:#x}+{:#x}", i.source, i.addr, i.size);
        }
        measure::initrd(initrd.as_ref());
        measure::hand_over_log();

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
                randomized,
            },
        );
        // The kernel's RNG seed (never from the weak TSC fallback).
        let rng_seed = if source != rng::Source::Tsc {
            Some(rng_seed_node(params, &random[32..64])?)
        } else {
            None
        };
        // 5-level paging: decide now, prepare the trampoline while EFI can still allocate.
        let (switch, cr3) = crate::trampoline::decide(&h, opts.no5lvl);
        let trampoline = match switch {
            paging::Switch::None => None,
            paging::Switch::Enable => match prepare_trampoline(paging::Switch::Enable) {
                Ok(t) => Some(t),
                // Staying in 4-level mode is always correct for the kernel: only say so.
                Err(e) => {
                    progress!("5-level paging not enabled: {}", e);
                    None
                }
            },
            // The kernel cannot run in 5-level mode: switching down is mandatory.
            paging::Switch::Disable => Some(prepare_trampoline(paging::Switch::Disable)?),
        };
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
        params.secure_boot = sb_mode;
        let (e820_scratch, e820_ext) = e820_buffers()?;
        let entry = kernel.addr() + h.entry_offset;
        if memstats::ENABLED {
            let used = memstats::usage();
            progress!(
                "memory: peak {} bytes beyond kernel+initrd ({} heap), kernel+initrd {} bytes",
                used.peak_beyond_payload,
                used.peak_heap,
                used.payload
            );
        }
        // W^X for the kernel where it allows it: last, after every step that can fail, so that
        // no read-only page is ever handed back to FreePages.
        protect_kernel(&h, kernel.addr())?;
        progress!("entering kernel at {:#x}", entry);

        // 7. Exit boot services; from here on: no allocation, no console, no failure.
        let (rd_addr, rd_size) = initrd.map(|i| i.leak()).unwrap_or((0, 0));
        bp::set_initrd(params, rd_addr, rd_size);
        let systab = uefi::table::system_table_raw()
            .map(|p| p.as_ptr() as u64)
            .unwrap_or(0);
        kernel.leak();
        cmdline_pages.leak();
        if let Some(p) = rng_seed {
            p.leak();
        }
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
        if let Some((t, data)) = trampoline {
            data.leak();
            // SAFETY: as below; the trampoline pages were prepared before ExitBootServices.
            unsafe { t.enter(cr3, entry, params_addr) }
        }
        // SAFETY: boot services are gone; the kernel at `entry` passed its stream check and
        // lies in identity-mapped, executable memory; the zero page is complete.
        unsafe { handoff::jump(entry, params_addr) }
    }

    /// A `SETUP_RNG_SEED` node with `seed`, linked into `params` (the kernel feeds it to its
    /// RNG and wipes it).
    fn rng_seed_node(params: &mut BootParams, seed: &[u8]) -> Result<Pages, Error> {
        let mut page = Pages::low(4096, MemoryType::LOADER_DATA).efi("allocate RNG seed")?;
        let mut node = SetupData {
            next: 0,
            typ: SETUP_RNG_SEED,
            len: seed.len() as u32,
        };
        bp::link_setup_data(params, &mut node, page.addr());
        page.write(0, &node);
        page.bytes_mut()[size_of::<SetupData>()..][..seed.len()].copy_from_slice(seed);
        Ok(page)
    }

    /// The LA57 trampoline in pages below 4 GiB (the code page read-only + executable), with
    /// the data pages to hand over (or free on an error).
    fn prepare_trampoline(switch: paging::Switch) -> Result<(Trampoline, Pages), Error> {
        let code = Pages::below_4g(4096, MemoryType::LOADER_CODE)
            .efi("allocate LA57 trampoline below 4 GiB")?;
        let data = Pages::below_4g(8192, MemoryType::LOADER_DATA)
            .efi("allocate LA57 page table below 4 GiB")?;
        // SAFETY: both allocations are ours, below 4 GiB, identity mapped, writable.
        let t = unsafe { Trampoline::new(switch, code.addr(), data.addr()) };
        // W^X: the code page becomes read-only, then executable.
        let attr = memory::protect_code(code.addr(), 4096).efi("protect LA57 trampoline")?;
        progress!(
            "5-level paging: {:?} via trampoline at {:#x}{}",
            switch,
            code.addr(),
            if attr { " (RO+X)" } else { "" }
        );
        code.leak();
        Ok((t, data))
    }

    /// The kernel's command line: embedded first, the loader's appended; under Secure Boot
    /// (`locked`) an embedded (signed) line stands alone. A malformed embedded line is refused,
    /// never taken as "none" (that would let the loader's options in under Secure Boot).
    /// Returns the line and whether the loader's part was used.
    pub(crate) fn command_line(
        embedded: &[u8],
        loader: &str,
        locked: bool,
    ) -> Result<(alloc::string::String, bool), Error> {
        let embedded = match embedded {
            [] => "",
            bytes => {
                zboot_format::cmdline::check_embedded(bytes).map_err(Error::EmbeddedCmdline)?
            }
        };
        let use_loader = cmdline::loader_options_allowed(embedded, locked);
        let line = cmdline::compose(embedded, if use_loader { loader } else { "" });
        zboot_format::cmdline::check_len(line.len()).map_err(Error::CmdlineTooLong)?;
        Ok((line, use_loader))
    }

    /// The loader's NUL-terminated command line at `at` (`max` readable bytes, checked).
    pub(crate) fn loader_cmdline(at: u64, max: u64) -> Result<alloc::string::String, Error> {
        use zboot_stub::loader_params as lp;
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
    fn handover_params(bp: u64) -> Result<(alloc::string::String, Option<(u64, u64)>), Error> {
        use zboot_stub::loader_params as lp;
        let ranges = memory::allocated_ranges().efi("GetMemoryMap")?;
        lp::check_boot_params(&ranges, bp).map_err(Error::LoaderParams)?;
        // SAFETY: 4096 bytes at `bp` lie in allocated memory (checked); BootParams is plain data.
        let params = unsafe { core::ptr::read_unaligned(bp as *const BootParams) };
        let found = lp::read(&params, &ranges).map_err(Error::LoaderParams)?;
        let cmdline = match found.cmdline {
            None => alloc::string::String::new(),
            // `read` checked the bytes lie in allocated memory.
            Some((at, max)) => loader_cmdline(at, max)?,
        };
        Ok((cmdline, found.initrd))
    }

    /// The loader's options as text: the handover loader's command line, or our LoadOptions;
    /// measured first, with the `embedded` line (LoadOptions on the PE entry only, as Linux).
    fn loader_options(
        handover: &Option<(alloc::string::String, Option<(u64, u64)>)>,
        embedded: &[u8],
    ) -> Result<alloc::string::String, Error> {
        if let Some((line, _)) = handover {
            measure::command_line(embedded, None);
            return Ok(line.clone());
        }
        let li =
            memory::get_protocol::<LoadedImage>(uefi::boot::image_handle()).efi("LoadedImage")?;
        let raw = li.load_options_as_bytes().unwrap_or_default();
        measure::command_line(embedded, Some(raw));
        Ok(cmdline::utf16le_to_utf8(raw))
    }

    /// The kernel's memory: a random slot (physical KASLR) or the preferred address, else any
    /// aligned address. Returns the pages and whether the address was randomized.
    fn allocate_kernel(
        h: &PayloadHeader,
        policy: kaslr::PhysPolicy,
        seed: u64,
    ) -> Result<(Pages, bool), Error> {
        // LOADER_CODE: executable on firmware that maps data NX.
        let ty = MemoryType::LOADER_CODE;
        let rules = kaslr::SlotRules {
            size: h.mem_size,
            align: h.alignment,
            min: h.preferred_address,
            max: kaslr::PHYS_MAX,
        };
        let ranges = memory::conventional_ranges().efi("GetMemoryMap")?;
        let mut kernel = None;
        if policy == kaslr::PhysPolicy::Random {
            match kaslr::random_phys(&ranges, &rules, seed) {
                Some(at) => match Pages::at(at, h.mem_size, ty) {
                    Ok(p) => kernel = Some(p),
                    Err(e) => progress!("KASLR slot {:#x} refused ({:?})", at, e.status()),
                },
                None => progress!("KASLR: no free slot, physical randomization off"),
            }
        }
        let randomized = kernel.is_some();
        let kernel = match kernel {
            Some(k) => k,
            None => {
                // The preferred address when free; else the lowest free aligned slot at or
                // above it (as the mainline stub's efi_random_alloc with seed 0); else any
                // aligned address.
                let lowest = kaslr::slot_address(&ranges, &rules, 0);
                let k = Pages::at(h.preferred_address, h.mem_size, ty)
                    .or_else(|e| match lowest {
                        Some(at) => Pages::at(at, h.mem_size, ty),
                        None => Err(e),
                    })
                    .or_else(|_| Pages::aligned(h.mem_size, h.alignment, None, ty))
                    .efi("allocate kernel memory")?;
                if k.addr() != h.preferred_address {
                    progress!(
                        "preferred address {:#x} busy: kernel at {:#x} instead",
                        h.preferred_address,
                        k.addr()
                    );
                }
                k
            }
        };
        // The kernel writes its data, bss and early page tables in place and runs its text from
        // the same region under the firmware's identity map: RWX at entry (see boot-flow.md).
        if memory::allow_execute(kernel.addr(), h.mem_size).efi("clear XP on the kernel")? {
            progress!("memory attribute protocol: XP cleared on the kernel region");
        }
        Ok((kernel, randomized))
    }

    /// The kernel's text `[0, text_size)` read-only + executable and `[text_size, nx_end)`
    /// non-executable (`Flags::TEXT_RO`: the kernel is known to run so, as Linux >= 6.8's own
    /// stub enters it); otherwise the region stays writable and executable. A failure restores
    /// the region's attributes before it is reported (EDK2 may fill freed pages).
    fn protect_kernel(h: &PayloadHeader, base: u64) -> Result<(), Error> {
        if !h.flags.has(zboot_format::Flags::TEXT_RO) {
            progress!("kernel region RWX: the kernel is not known to take read-only text");
            return Ok(());
        }
        let (text, nx_end) = (u64::from(h.text_size), u64::from(h.nx_end));
        let done = memory::protect_code(base, text).and_then(|on| {
            if on && nx_end > text {
                memory::forbid_execute(base + text, nx_end - text)?;
            }
            Ok(on)
        });
        match done {
            Ok(true) => {
                progress!(
                    "kernel text {:#x}+{:#x} RO+X, {:#x}+{:#x} NX",
                    base,
                    text,
                    base + text,
                    nx_end - text
                );
                Ok(())
            }
            Ok(false) => {
                progress!("no memory attribute protocol: kernel region as allocated");
                Ok(())
            }
            Err(e) => {
                let _ = memory::allow_execute(base, h.mem_size);
                Err(e).efi("protect the kernel text")
            }
        }
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

/// A panic says so on the console and halts, as uefi-rs's `panic_handler` feature does, but
/// without formatting the message or its location: letting LLVM drop every panic site's
/// location and message takes 16 KiB off the stub (docs/performance.md, stub size).
#[cfg(target_os = "uefi")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    error!("internal error (panic)");
    loop {
        core::hint::spin_loop();
    }
}

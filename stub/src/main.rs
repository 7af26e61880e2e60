//! zboot-stub: the EFI application that unpacks and boots the kernel carried in `.zpayld`.
//!
//! `pipeline::boot` reads as the boot pipeline; each step is one function in its own module. The
//! pure modules (payload, cmdline, decode, unpack, arch::x86_64::{boot_params, e820, kaslr}) are
//! the library (`lib.rs`), built and tested on the host; the EFI glue here only builds for the
//! UEFI target.
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
mod kernel_memory;
#[cfg(target_os = "uefi")]
mod loader;
#[cfg(target_os = "uefi")]
mod measure;
#[cfg(target_os = "uefi")]
mod memory;
#[cfg(target_os = "uefi")]
mod report;
#[cfg(target_os = "uefi")]
mod rng;
#[cfg(target_os = "uefi")]
mod secureboot;
#[cfg(target_os = "uefi")]
mod serial;
#[cfg(target_os = "uefi")]
mod trampoline;
#[cfg(target_os = "uefi")]
mod zero_page;

#[cfg(target_os = "uefi")]
pub(crate) mod pipeline {
    use crate::arch::x86_64::{boot_params as bp, handoff, kaslr};
    use crate::error::Error;
    use crate::loader::{self, Entry};
    use crate::{cmdline, console, initrd, kernel_memory, measure, memstats};
    use crate::{report, rng, secureboot, trampoline, zero_page};
    use core::convert::Infallible;
    use uefi::boot::MemoryType;
    use zboot_format::header::PayloadHeader;
    use zboot_stub::unpack::unpack;

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
        let payload = crate::image::payload()?;
        let h = payload.header;

        // 2. Command line: the loader's (measured into PCR 9 with the embedded one before
        //    either is used) appended to the embedded one; under Secure Boot an embedded
        //    (signed) line stands alone.
        let sb_mode = secureboot::mode();
        let from_loader = loader::take(entry, payload.cmdline, sb_mode)?;
        let (line, opts) = (
            &from_loader.line,
            cmdline::Options::parse(&from_loader.line),
        );
        console::set_debug(opts.efi_debug);
        report_start(entry, &h, &from_loader);

        // 3. KASLR decisions and the kernel's memory, once, aligned, executable.
        let random = rng::Random::take();
        let plan = kaslr::Plan::new(&opts, &h, random.kaslr_seeds());
        let (mut kernel, phys_random) =
            memstats::for_payload(|| kernel_memory::allocate(&h, &plan))?;
        report::placed(&h, kernel.addr(), phys_random, &plan, random.source);

        // 4. Check, decompress in place, undo the filters, relocate, clear the rest.
        let region = kernel.bytes_mut();
        let t = unpack(&h, payload.compressed, region, plan.delta, &console::Tsc)?;
        report::unpacked(&h, &t);

        // 5. Initrd, measured into PCR 9; the event log handed on.
        let initrd =
            memstats::for_payload(|| initrd::load(&opts, from_loader.initrd, payload.initrd))
                .map_err(|e| Error::Efi(e.0, e.1))?;
        measure::initrd(initrd.as_ref());
        measure::hand_over_log();

        // 6. boot_params and everything it points to, and the paging switch: allocated before
        //    ExitBootServices. Then W^X for the kernel, last of all that can fail.
        let placement =
            bp::KernelPlacement::new(&h, kernel.addr(), phys_random || plan.virt_random);
        let zero_page = zero_page::prepare(&placement, line, random.kernel_seed(), sb_mode)?;
        let trampoline = trampoline::prepare_efi(&h, opts.no5lvl)?;
        report::memory();
        kernel_memory::protect(&h, kernel.addr())?;

        // 7. Exit boot services and enter the kernel.
        let initrd = initrd.map(|i| i.leak()).unwrap_or((0, 0));
        enter(
            kernel.leak() + h.entry_offset,
            initrd,
            zero_page,
            trampoline,
        )
    }

    /// The last step: ExitBootServices, the zero page finished with the final memory map, the
    /// jump (through the trampoline when the paging mode changes). From here on: no
    /// allocation, no console, no failure.
    fn enter(
        entry: u64,
        initrd: (u64, u64),
        zero_page: zero_page::ZeroPage,
        trampoline: Option<trampoline::EfiTrampoline>,
    ) -> ! {
        progress!("entering kernel at {:#x}", entry);
        let systab = uefi::table::system_table_raw().map_or(0, |p| p.as_ptr() as u64);
        // SAFETY: no boot-service object is used after this point.
        let map = unsafe { uefi::boot::exit_boot_services(Some(MemoryType::LOADER_DATA)) };
        let params = zero_page.finish(map, initrd, systab);
        // SAFETY: boot services are gone; the kernel at `entry` passed its stream check and
        // lies in identity-mapped, executable memory; the zero page is complete; the
        // trampoline's pages were prepared before ExitBootServices.
        unsafe {
            match trampoline {
                Some(t) => t.enter(entry, params),
                None => handoff::jump(entry, params),
            }
        }
    }

    /// The `efi=debug` lines about how we were started and what we carry.
    fn report_start(entry: Entry, h: &PayloadHeader, from_loader: &loader::FromLoader) {
        if let Entry::Handover(bp) = entry {
            progress!("EFI handover: boot_params at {:#x}", bp);
        }
        if from_loader.options_ignored {
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
        progress!("cmdline: {}", from_loader.line);
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

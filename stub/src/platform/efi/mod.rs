//! The EFI platform: the PE entry and the 64-bit EFI handover entry build it and run the
//! pipeline; a failure is one line on ConOut and an EFI status back to the loader.

mod gop;
mod initrd;
mod kernel_memory;
mod loader;
mod measure;
pub mod memory;
mod secure_boot;
mod stage_baseline;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use crate::error::{Context, Error};
use crate::platform::{Handed, Kernel, LoaderInput, Offer, Platform};
use crate::{console, heap};
use alloc::vec::Vec;
use memory::Pages;
use zboot_format::header::PayloadHeader;
use zboot_format::measure::Event;
use zboot_stub::cmdline::Options;
use zboot_stub::placement::{FreeRange, PhysMemory};

pub use initrd::Initrd;
pub use loader::Entry;

/// The PE entry point.
#[unsafe(export_name = "efi_main")]
extern "efiapi" fn efi_main(
    image_handle: uefi::Handle,
    system_table: *const core::ffi::c_void,
) -> uefi::Status {
    start(Some(image_handle), system_table, Entry::Pe)
}

/// The EFI handover entry (setup header `handover_offset` + 0x200,
/// `arch/x86_64/efi_handover.rs` jumps here): a loader copied the file flat and calls us with
/// the SysV ABI.
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
    let entered_at = stage_baseline::counter();
    console::install(console::Sink::Firmware);
    heap::install(heap::Backend::FirmwarePool);
    // SAFETY: the first statement at entry that touches our data, single-threaded.
    let relocated = unsafe { crate::image::relocate() };
    let Some(image_handle) = image_handle.filter(|_| !system_table.is_null()) else {
        return uefi::Status::INVALID_PARAMETER;
    };
    // SAFETY: the handle and system table the loader passed us, as `#[uefi::entry]` sets them.
    unsafe {
        uefi::boot::set_image_handle(image_handle);
        uefi::table::set_system_table(system_table.cast());
    }
    if stage_baseline::ON {
        return stage_baseline::report_and_power_off(entered_at);
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
    match crate::pipeline::boot(Efi { entry }) {
        Ok(never) => match never {},
        Err(e) => {
            error!("{}", e);
            e.status()
        }
    }
}

/// UEFI firmware, entered through `entry`.
pub struct Efi {
    entry: Entry,
}

/// The kernel's region: pages from AllocatePages (LOADER_CODE), freed on an error.
pub struct Region(Pages);

impl crate::platform::KernelRegion for Region {
    fn addr(&self) -> u64 {
        self.0.addr()
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.0.bytes_mut()
    }
    fn leak(self) -> u64 {
        self.0.leak()
    }
}

impl PhysMemory for Efi {
    type Claim = Region;
    type Error = Error;

    fn free_ranges(&mut self) -> Result<Vec<FreeRange>, Error> {
        memory::conventional_ranges().efi("GetMemoryMap")
    }

    fn claim_at(&mut self, at: u64, size: u64) -> Option<Region> {
        kernel_memory::claim_at(at, size).map(Region)
    }

    fn claim_aligned(&mut self, size: u64, align: u64) -> Result<(Region, u64), Error> {
        let pages = kernel_memory::claim_aligned(size, align)?;
        let at = pages.addr();
        Ok((Region(pages), at))
    }
}

impl Platform for Efi {
    type Region = Region;
    type Initrd = Initrd;
    type Handoff = x86_64::Handoff;

    fn report_entry(&self) {
        if let Entry::Handover(bp) = self.entry {
            progress!("EFI handover: boot_params at {:#x}", bp);
        }
    }

    fn loader_input(&mut self) -> Result<LoaderInput, Error> {
        loader::input(self.entry, secure_boot::mode())
    }

    fn firmware_random(&mut self, out: &mut [u8]) -> bool {
        use uefi::proto::rng::Rng;
        let Ok(handle) = uefi::boot::get_handle_for_protocol::<Rng>() else {
            return false;
        };
        let Ok(mut rng) = memory::get_protocol::<Rng>(handle) else {
            return false;
        };
        rng.get_rng(None, out).is_ok()
    }

    fn measure(&mut self, event: &Event) {
        measure::measure(event);
    }

    fn finish_measurements(&mut self) {
        measure::hand_over_log();
    }

    fn open_kernel(&mut self, kernel: &Region, h: &PayloadHeader) -> Result<(), Error> {
        kernel_memory::open(kernel.0.addr(), h.mem_size)
    }

    fn load_initrd(&mut self, opts: &Options, offer: Offer) -> Result<Option<Initrd>, Error> {
        initrd::load(opts, offer.loader, offer.embedded).map_err(|e| Error::Efi(e.0, e.1))
    }

    fn prepare_handoff(&mut self, handed: &Handed<'_>) -> Result<x86_64::Handoff, Error> {
        x86_64::prepare(handed)
    }

    fn protect_kernel(&mut self, kernel: &Kernel<'_>, _: &x86_64::Handoff) -> Result<(), Error> {
        kernel_memory::protect(kernel.header, kernel.base)
    }

    fn enter(
        self,
        entry: u64,
        kernel: Region,
        initrd: Option<Initrd>,
        handoff: x86_64::Handoff,
    ) -> ! {
        use crate::platform::{KernelRegion, LoadedInitrd};
        kernel.leak();
        if let Some(i) = initrd {
            i.leak();
        }
        x86_64::enter(entry, handoff)
    }
}

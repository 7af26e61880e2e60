//! The EFI platform's x86_64 hand-off: boot_params built from scratch (the zero page, finished
//! with the final memory map after ExitBootServices) and the LA57 switch, then the jump.

mod trampoline;
mod zero_page;

use crate::error::Error;
use crate::platform::Handed;
use uefi::boot::MemoryType;
use zboot_stub::arch::x86_64::{boot_params as bp, handoff};

/// What the jump needs, prepared before ExitBootServices.
pub struct Handoff {
    zero_page: zero_page::ZeroPage,
    trampoline: Option<trampoline::EfiTrampoline>,
}

/// boot_params and everything it points to, and the paging switch: allocated now, while
/// boot services run.
pub fn prepare(h: &Handed<'_>) -> Result<Handoff, Error> {
    let k = &h.kernel;
    let placement = bp::KernelPlacement::new(k.header, k.base, k.randomized);
    let zero_page = zero_page::prepare(&placement, h.line, h.initrd, h.seed, h.secure_boot)?;
    let trampoline = trampoline::prepare_efi(k.header, h.no5lvl)?;
    Ok(Handoff {
        zero_page,
        trampoline,
    })
}

/// The last step: ExitBootServices, the zero page finished with the final memory map, the
/// jump (through the trampoline when the paging mode changes). From here on: no allocation,
/// no console, no failure.
pub fn enter(entry: u64, handoff: Handoff) -> ! {
    let systab = uefi::table::system_table_raw().map_or(0, |p| p.as_ptr() as u64);
    // SAFETY: no boot-service object is used after this point.
    let map = unsafe { uefi::boot::exit_boot_services(Some(MemoryType::LOADER_DATA)) };
    let params = handoff.zero_page.finish(map, systab);
    // SAFETY: boot services are gone; the kernel at `entry` passed its stream check and lies
    // in identity-mapped, executable memory; the zero page is complete; the trampoline's pages
    // were prepared before ExitBootServices.
    unsafe {
        match handoff.trampoline {
            Some(t) => t.enter(entry, params),
            None => handoff::jump(entry, params),
        }
    }
}

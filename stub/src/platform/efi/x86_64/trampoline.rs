//! The LA57 trampoline under EFI (x86_64): its pages from AllocatePages below 4 GiB, the code
//! page made read-only + executable, handed over at the jump.

use crate::error::{Context, Error};
use crate::platform::efi::memory::{self, Pages};
use uefi::boot::MemoryType;
use zboot_format::header::PayloadHeader;
use zboot_stub::arch::x86_64::paging;
use zboot_stub::arch::x86_64::trampoline::{Trampoline, decide};

/// Under EFI: a trampoline prepared while memory can still be allocated, with its data pages
/// (freed on an error, handed over at the jump) and the root table it starts from.
pub struct EfiTrampoline {
    trampoline: Trampoline,
    data: Pages,
    cr3: u64,
}

/// Under EFI: the paging-mode switch the kernel in `h` needs, prepared in pages below 4 GiB;
/// `None` when there is none to make. Enabling 5-level paging is optional (staying in 4-level
/// mode is always correct for the kernel: a failure is only reported); disabling it, when the
/// kernel cannot run in 5-level mode, is not.
pub fn prepare_efi(h: &PayloadHeader, no5lvl: bool) -> Result<Option<EfiTrampoline>, Error> {
    let (switch, cr3) = decide(h, no5lvl);
    let prepared = match switch {
        paging::Switch::None => return Ok(None),
        paging::Switch::Enable => match efi_pages(switch) {
            Ok(t) => t,
            Err(e) => {
                progress!("5-level paging not enabled: {}", e);
                return Ok(None);
            }
        },
        paging::Switch::Disable => efi_pages(switch)?,
    };
    let (trampoline, data) = prepared;
    Ok(Some(EfiTrampoline {
        trampoline,
        data,
        cr3,
    }))
}

/// The code page (read-only + executable once filled) and the data pages, below 4 GiB.
fn efi_pages(switch: paging::Switch) -> Result<(Trampoline, Pages), Error> {
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

impl EfiTrampoline {
    /// Switch the paging mode and enter the kernel.
    ///
    /// # Safety
    /// As [`Trampoline::enter`]: boot services are gone, nothing allocates any more.
    pub unsafe fn enter(self, entry: u64, params: u64) -> ! {
        self.data.leak();
        // SAFETY: the caller's contract; the pages were prepared before ExitBootServices.
        unsafe { self.trampoline.enter(self.cr3, entry, params) }
    }
}

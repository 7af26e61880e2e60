//! The kernel's memory under EFI: claimed where the pipeline's placement policy says
//! (AllocateAddress, or aligned anywhere as the last resort), made executable, and, last before
//! the jump, its text made read-only.

use super::memory::{self, Pages};
use crate::error::{Context, Error};
use uefi::boot::MemoryType;
use zboot_format::header::PayloadHeader;

// LOADER_CODE: executable on firmware that maps data NX.
const KERNEL_TYPE: MemoryType = MemoryType::LOADER_CODE;

/// Exactly `[at, at + size)` (AllocateAddress), when the firmware grants it.
pub fn claim_at(at: u64, size: u64) -> Option<Pages> {
    Pages::at(at, size, KERNEL_TYPE)
        .inspect_err(|e| progress!("kernel memory at {:#x} refused ({:?})", at, e.status()))
        .ok()
}

/// Any `align`-aligned `size` bytes (below 4 GiB when there is room).
pub fn claim_aligned(size: u64, align: u64) -> Result<Pages, Error> {
    Pages::aligned(size, align, None, KERNEL_TYPE).efi("allocate kernel memory")
}

/// The kernel writes its data, bss and early page tables in place and runs its text from the
/// same region under the firmware's identity map: RWX at entry (see boot-flow.md).
pub fn open(addr: u64, size: u64) -> Result<(), Error> {
    if memory::allow_execute(addr, size).efi("clear XP on the kernel")? {
        progress!("memory attribute protocol: XP cleared on the kernel region");
    }
    Ok(())
}

/// The kernel's text `[0, text_size)` read-only + executable and `[text_size, nx_end)`
/// non-executable (`Flags::TEXT_RO`: the kernel is known to run so, as Linux >= 6.8's own
/// stub enters it); otherwise the region stays writable and executable. A failure restores
/// the region's attributes before it is reported (EDK2 may fill freed pages). Called last,
/// after every step that can fail, so that no read-only page is ever handed back to
/// FreePages.
pub fn protect(h: &PayloadHeader, base: u64) -> Result<(), Error> {
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

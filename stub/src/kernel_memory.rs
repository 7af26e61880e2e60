//! The kernel's memory under EFI: a random slot (physical KASLR) or the preferred address,
//! allocated once, aligned and executable; and, last before the jump, its text made read-only.

use crate::error::{Context, Error};
use crate::memory::{self, Pages};
use uefi::boot::MemoryType;
use zboot_format::header::PayloadHeader;
use zboot_stub::arch::x86_64::kaslr;

/// The kernel's region by `plan`: a random slot, else the preferred address when free, else
/// the lowest free aligned slot at or above it (as the mainline stub's efi_random_alloc with
/// seed 0), else any aligned address. Returns the pages and whether the address was
/// randomized.
pub fn allocate(h: &PayloadHeader, plan: &kaslr::Plan) -> Result<(Pages, bool), Error> {
    let rules = kaslr::SlotRules {
        size: h.mem_size,
        align: h.alignment,
        min: h.preferred_address,
        max: kaslr::PHYS_MAX,
    };
    let ranges = memory::conventional_ranges().efi("GetMemoryMap")?;
    let random = match plan.phys {
        kaslr::PhysPolicy::Random => random_slot(h, &ranges, &rules, plan.phys_seed),
        kaslr::PhysPolicy::Preferred => None,
    };
    let randomized = random.is_some();
    let kernel = match random {
        Some(k) => k,
        None => fixed_slot(h, &ranges, &rules)?,
    };
    // The kernel writes its data, bss and early page tables in place and runs its text from
    // the same region under the firmware's identity map: RWX at entry (see boot-flow.md).
    if memory::allow_execute(kernel.addr(), h.mem_size).efi("clear XP on the kernel")? {
        progress!("memory attribute protocol: XP cleared on the kernel region");
    }
    Ok((kernel, randomized))
}

// LOADER_CODE: executable on firmware that maps data NX.
const KERNEL_TYPE: MemoryType = MemoryType::LOADER_CODE;

fn random_slot(
    h: &PayloadHeader,
    ranges: &[kaslr::FreeRange],
    rules: &kaslr::SlotRules,
    seed: u64,
) -> Option<Pages> {
    let Some(at) = kaslr::random_phys(ranges, rules, seed) else {
        progress!("KASLR: no free slot, physical randomization off");
        return None;
    };
    Pages::at(at, h.mem_size, KERNEL_TYPE)
        .inspect_err(|e| progress!("KASLR slot {:#x} refused ({:?})", at, e.status()))
        .ok()
}

fn fixed_slot(
    h: &PayloadHeader,
    ranges: &[kaslr::FreeRange],
    rules: &kaslr::SlotRules,
) -> Result<Pages, Error> {
    let lowest = kaslr::slot_address(ranges, rules, 0);
    let k = Pages::at(h.preferred_address, h.mem_size, KERNEL_TYPE)
        .or_else(|e| match lowest {
            Some(at) => Pages::at(at, h.mem_size, KERNEL_TYPE),
            None => Err(e),
        })
        .or_else(|_| Pages::aligned(h.mem_size, h.alignment, None, KERNEL_TYPE))
        .efi("allocate kernel memory")?;
    if k.addr() != h.preferred_address {
        progress!(
            "preferred address {:#x} busy: kernel at {:#x} instead",
            h.preferred_address,
            k.addr()
        );
    }
    Ok(k)
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

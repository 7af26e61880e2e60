//! Our own page tables (the 32-bit entry built them: `arch/x86_64/own_map.rs`, 0..4 GiB,
//! writable and non-executable but for our code): the kernel's region made executable as it
//! needs, and the LA57 trampoline's code page read-only + executable. Raw page-table edits.

use zboot_format::header::PayloadHeader;
use zboot_stub::arch::x86_64::own_map::{self, KernelNeeds};
use zboot_stub::arch::x86_64::{handoff, paging};

/// The kernel's region executable as it needs it (the rest stays non-executable).
pub fn open_kernel(cr3: u64, kernel: u64, h: &PayloadHeader) {
    let needs = if h.flags.has(zboot_format::Flags::TEXT_RO) {
        KernelNeeds::TextRo {
            text: u64::from(h.text_size),
            nx_end: u64::from(h.nx_end),
        }
    } else {
        KernelNeeds::Rwx
    };
    own_map::kernel_attrs(directory(cr3), kernel, h.mem_size, needs);
    // SAFETY: reloading CR3 with its own value flushes the TLB after the edit.
    unsafe { handoff::reload_cr3(cr3) };
    progress!("kernel region executable as it needs ({:?})", needs);
}

/// The 4 KiB page at `code` read-only + executable, splitting its 2 MiB page into the page
/// table at `pt` when needed.
///
/// # Safety
/// `pt` is a free 4 KiB page below 4 GiB, ours, that nothing else uses.
pub unsafe fn map_code_page(cr3: u64, code: u64, pt: u64) {
    let pd = directory(cr3);
    // SAFETY: the caller's contract.
    let new_pt = unsafe { &mut *(pt as *mut [u64; 512]) };
    own_map::map_code_page(pd, code, new_pt, pt, |at| {
        // SAFETY: a page table of our own map (in our scratch area: one of the two holding our
        // code), identity mapped; nothing else uses it while we edit it.
        unsafe { &mut *(at as *mut [u64; 512]) }
    });
    // SAFETY: reloading CR3 with its own value flushes the TLB after the edit.
    unsafe { handoff::reload_cr3(cr3) };
}

/// The 2048 page directory entries of our own map (0..4 GiB).
fn directory(cr3: u64) -> &'static mut [u64] {
    let pd_at = (cr3 & paging::PTE_ADDR) - own_map::PML4 as u64 + own_map::PD as u64;
    // SAFETY: CR3 is our own PML4 (`own_map` layout, in our scratch area): the 2048 directory
    // entries follow at `PD`; nothing else uses them while we edit them.
    unsafe { core::slice::from_raw_parts_mut(pd_at as *mut u64, 2048) }
}

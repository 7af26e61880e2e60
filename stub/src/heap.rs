//! The global allocator. Its backend is the entry's choice ([`install`]), made once before
//! anything allocates: the firmware's pool (uefi-rs's allocator, counted by `memstats`), or,
//! without firmware, the free RAM of the loader's e820 map (`platform::bare::free_ram`), where
//! nothing is ever freed (the kernel gets it back as RAM).

use crate::platform::bare::free_ram;
use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU8, Ordering::Relaxed};
use zboot_stub::memstats;

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Backend {
    /// AllocatePool through uefi-rs.
    FirmwarePool = 0,
    /// The bare platform's free RAM.
    FreeRam = 1,
}

static BACKEND: AtomicU8 = AtomicU8::new(Backend::FirmwarePool as u8);

/// Choose the heap's backend: an entry does this before its first allocation.
pub fn install(backend: Backend) {
    BACKEND.store(backend as u8, Relaxed);
}

fn free_ram() -> bool {
    BACKEND.load(Relaxed) == Backend::FreeRam as u8
}

struct Heap;

// SAFETY: each call goes unchanged to one backend that upholds the GlobalAlloc contract:
// uefi-rs's allocator, or `free_ram::alloc`, which hands out disjoint blocks of RAM taken out
// of the free set (aligned as asked, never reused: `dealloc` does nothing there). The backend
// is fixed before the first allocation, so a block is always returned to the one that made
// it. The counters have no effect on the memory handed out.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if free_ram() {
            return free_ram::alloc(layout);
        }
        // SAFETY: the caller's contract is passed through.
        let p = unsafe { GlobalAlloc::alloc(&uefi::allocator::Allocator, layout) };
        if !p.is_null() {
            memstats::heap_allocated(layout.size() as u64);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if free_ram() {
            // Never returned: the kernel gets all of it back as free RAM.
            return;
        }
        memstats::heap_freed(layout.size() as u64);
        // SAFETY: the caller's contract is passed through.
        unsafe { GlobalAlloc::dealloc(&uefi::allocator::Allocator, p, layout) }
    }
}

#[global_allocator]
static HEAP: Heap = Heap;

//! The bare platform's memory: the loader's free RAM (worked out once by `Bare::new`), what the
//! heap and every allocation of the bare platform come from. Nothing taken is ever given back:
//! the kernel gets it all as RAM. The raw-pointer leaf of the bare platform.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use zboot_stub::arch::x86_64::bare_map::RangeSet;
use zboot_stub::placement::FreeRange;

/// The free RAM and the heap's current chunk `[next, end)`; `None` before [`install`].
struct State {
    free: RangeSet,
    chunk: (u64, u64),
}

struct Cell(UnsafeCell<Option<State>>);
// SAFETY: the stub runs on one CPU with interrupts off; [`with`] is the only access and is
// never re-entered (its closures never allocate).
unsafe impl Sync for Cell {}
static STATE: Cell = Cell(UnsafeCell::new(None));

const CHUNK_SIZE: u64 = 256 * 1024;

/// From now on, `free` is what there is to take.
pub fn install(free: RangeSet) {
    // SAFETY: see `Cell`; nothing holds a reference into the state across this call.
    unsafe {
        *STATE.0.get() = Some(State {
            free,
            chunk: (0, 0),
        })
    };
}

fn with<T>(f: impl FnOnce(&mut State) -> T) -> Option<T> {
    // SAFETY: see `Cell`: one CPU, not re-entered, so this is the only reference during `f`.
    unsafe { (*STATE.0.get()).as_mut() }.map(f)
}

/// The free ranges, sorted.
pub fn ranges() -> alloc::vec::Vec<FreeRange> {
    // Copied out before the Vec allocates (the heap comes from this state too).
    let copy = with(|s| s.free.clone());
    copy.map(|f| f.ranges().to_vec()).unwrap_or_default()
}

/// Exactly `[at, at + size)`, when it is free.
pub fn take_at(at: u64, size: u64) -> bool {
    with(|s| s.free.take_at(at, size)).unwrap_or(false)
}

/// The highest `align`-aligned `size` bytes ending at or below `max_end`.
pub fn take_top(size: u64, align: u64, max_end: u64) -> Option<u64> {
    with(|s| s.free.take_top(size, align, max_end)).flatten()
}

/// `size` bytes, below 4 GiB when there is room (older consumers read 32 bits).
pub fn take_low(size: u64) -> Option<u64> {
    take_top(size, 4096, 1 << 32).or_else(|| take_top(size, 4096, u64::MAX))
}

/// `size` bytes at `at` as ours to fill.
///
/// # Safety
/// `[at, at + size)` was handed out by this module ([`take_at`], [`take_top`], [`take_low`]) and
/// no other reference to it exists.
pub unsafe fn bytes_mut(at: u64, size: u64) -> &'static mut [u8] {
    // SAFETY: RAM the loader identity maps, taken out of the free set (the caller's contract),
    // so nothing else refers to it.
    unsafe { core::slice::from_raw_parts_mut(at as *mut u8, size as usize) }
}

/// The heap's allocation: small blocks from a chunk, large ones straight from the free RAM.
/// Null when nothing fits (or before [`install`]).
pub fn alloc(layout: Layout) -> *mut u8 {
    let (size, align) = (layout.size() as u64, layout.align() as u64);
    if size >= CHUNK_SIZE / 4 {
        return take_top(size, align, u64::MAX).map_or(core::ptr::null_mut(), |a| a as *mut u8);
    }
    with(|s| {
        let mut at = s.chunk.0.next_multiple_of(align);
        if s.chunk.0 == 0 || at + size > s.chunk.1 {
            let start = s.free.take_top(CHUNK_SIZE, 4096, u64::MAX)?;
            s.chunk = (start, start + CHUNK_SIZE);
            at = start.next_multiple_of(align);
        }
        s.chunk.0 = at + size;
        Some(at as *mut u8)
    })
    .flatten()
    .unwrap_or(core::ptr::null_mut())
}

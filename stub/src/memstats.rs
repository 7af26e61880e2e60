//! Boot-time memory accounting: what the stub holds besides the kernel region and the initrd
//! (its heap and every other page allocation), and the peak of that sum. The figure proves the
//! stub decodes in place: `cargo xtask bench` reads the `efi=debug` line that reports it.
//!
//! Counters only (no allocation, no unsafe); the EFI glue calls them from its page allocator
//! (`memory::Pages`) and its global allocator wrapper. A measurement, not part of booting: the
//! counters exist only with the `memstats` feature (which `cargo xtask bench` builds its debug
//! stubs with); without it every function here is empty and [`ENABLED`] is false, so the stubs
//! the packer embeds carry none of it.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

static PAYLOAD_PAGES: AtomicU64 = AtomicU64::new(0);
static OTHER_PAGES: AtomicU64 = AtomicU64::new(0);
static HEAP: AtomicU64 = AtomicU64::new(0);
static PEAK_OTHER: AtomicU64 = AtomicU64::new(0);
static PEAK_HEAP: AtomicU64 = AtomicU64::new(0);
static PAYLOAD_SCOPE: AtomicBool = AtomicBool::new(false);

/// Whether the counters exist (feature `memstats`).
pub const ENABLED: bool = cfg!(feature = "memstats");

/// Run `f` with page allocations counted as payload (kernel region, initrd).
pub fn for_payload<T>(f: impl FnOnce() -> T) -> T {
    if !ENABLED {
        return f();
    }
    let was = PAYLOAD_SCOPE.swap(true, Relaxed);
    let r = f();
    PAYLOAD_SCOPE.store(was, Relaxed);
    r
}

/// Whether a page allocation made now belongs to the payload.
pub fn in_payload_scope() -> bool {
    PAYLOAD_SCOPE.load(Relaxed)
}

fn note_peak() {
    let other = OTHER_PAGES.load(Relaxed) + HEAP.load(Relaxed);
    PEAK_OTHER.fetch_max(other, Relaxed);
    PEAK_HEAP.fetch_max(HEAP.load(Relaxed), Relaxed);
}

/// `bytes` of pages allocated (`payload`: kernel region or initrd).
pub fn pages_allocated(bytes: u64, payload: bool) {
    if !ENABLED {
        return;
    }
    if payload {
        PAYLOAD_PAGES.fetch_add(bytes, Relaxed);
    } else {
        OTHER_PAGES.fetch_add(bytes, Relaxed);
        note_peak();
    }
}

/// `bytes` of pages freed.
pub fn pages_freed(bytes: u64, payload: bool) {
    if !ENABLED {
        return;
    }
    let c = if payload {
        &PAYLOAD_PAGES
    } else {
        &OTHER_PAGES
    };
    // Saturating: a counter never wraps even if a caller double-reports.
    let _ = c.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(bytes)));
}

/// `bytes` of heap allocated.
pub fn heap_allocated(bytes: u64) {
    if !ENABLED {
        return;
    }
    HEAP.fetch_add(bytes, Relaxed);
    note_peak();
}

/// `bytes` of heap freed.
pub fn heap_freed(bytes: u64) {
    if !ENABLED {
        return;
    }
    let _ = HEAP.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(bytes)));
}

/// A snapshot of the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Peak of heap + non-payload pages held at once.
    pub peak_beyond_payload: u64,
    /// Peak heap alone.
    pub peak_heap: u64,
    /// Payload pages (kernel region + initrd) held now.
    pub payload: u64,
}

pub fn usage() -> Usage {
    Usage {
        peak_beyond_payload: PEAK_OTHER.load(Relaxed),
        peak_heap: PEAK_HEAP.load(Relaxed),
        payload: PAYLOAD_PAGES.load(Relaxed),
    }
}

#[cfg(all(test, feature = "memstats"))]
mod tests {
    use super::*;

    // One test: the counters are process-wide.
    #[test]
    fn peaks_exclude_the_payload_and_survive_frees() {
        let base = usage();
        for_payload(|| pages_allocated(64 << 20, in_payload_scope()));
        assert!(!in_payload_scope());
        heap_allocated(1000);
        pages_allocated(8192, in_payload_scope());
        heap_freed(1000);
        pages_freed(8192, false);
        heap_allocated(10);
        let u = usage();
        assert_eq!(u.payload - base.payload, 64 << 20);
        assert!(u.peak_beyond_payload >= 9192, "{u:?}");
        assert!(
            u.peak_beyond_payload < 1 << 20,
            "payload leaked into the peak: {u:?}"
        );
        assert!(u.peak_heap >= 1000);
        heap_freed(10);
        pages_freed(64 << 20, true);
    }
}

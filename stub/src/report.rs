//! The `efi=debug` progress lines both platforms print at the same steps (`cargo xtask bench`
//! and the boot tests read some of them: keep their words).

use crate::rng;
use zboot_format::header::PayloadHeader;
use zboot_stub::arch::current::kaslr;
use zboot_stub::unpack::Timings;

/// Step 3: where the kernel went and why.
pub fn placed(
    h: &PayloadHeader,
    base: u64,
    phys_random: bool,
    plan: &kaslr::Plan,
    source: rng::Source,
) {
    if source != rng::Source::EfiRng {
        progress!("KASLR seed from {}", source.name());
    }
    progress!(
        "kernel region {:#x}+{:#x} (physical {}), virtual delta {:#x}",
        base,
        h.mem_size,
        if phys_random { "random" } else { "preferred" },
        plan.delta
    );
}

/// Step 4: each stage's time.
pub fn unpacked(h: &PayloadHeader, t: &Timings) {
    progress!("stream checksum ok in {} ms", t.check_ms);
    progress!(
        "decoded {} bytes in {} ms",
        h.uncompressed_size,
        t.decode_ms
    );
    progress!("filters {:#x} undone in {} ms", h.flags.0, t.filters_ms);
}

/// Before the jump, in the bench's `memstats` stubs: the peak memory beyond the kernel and
/// initrd.
pub fn memory() {
    if zboot_stub::memstats::ENABLED {
        let used = zboot_stub::memstats::usage();
        progress!(
            "memory: peak {} bytes beyond kernel+initrd ({} heap), kernel+initrd {} bytes",
            used.peak_beyond_payload,
            used.peak_heap,
            used.payload
        );
    }
}

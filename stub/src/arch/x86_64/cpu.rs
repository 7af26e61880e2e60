//! The CPU's own sources of time and randomness: the TSC, RDRAND, and the PIT to calibrate
//! the TSC against where no firmware has a timer service.

/// The time-stamp counter (every x86_64 CPU has one).
pub fn counter() -> u64 {
    // SAFETY: RDTSC has no memory effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Whether `CPUID.1:ECX[30]` reports RDRAND.
pub fn has_random_instruction() -> bool {
    // CPUID leaf 1 exists on every x86_64 CPU.
    core::arch::x86_64::__cpuid(1).ecx & (1 << 30) != 0
}

/// One RDRAND word, retried as Intel recommends; `None` when it keeps failing. Only call when
/// [`has_random_instruction`].
pub fn random_word() -> Option<u64> {
    for _ in 0..10 {
        let mut v = 0u64;
        // SAFETY: only called when CPUID reports RDRAND (the intrinsic's target feature).
        if unsafe { core::arch::x86_64::_rdrand64_step(&mut v) } == 1 {
            return Some(v);
        }
    }
    None
}

/// TSC ticks per millisecond measured against 10 ms of the PIT's channel 2 (as Linux's
/// `pit_calibrate_tsc`: gate on through port 0x61, mode 0, wait for OUT2); `None` when OUT2
/// does not behave like a PIT's (high at once, or never within a bounded wait).
#[cfg(target_os = "uefi")]
pub fn counter_per_ms_from_pit() -> Option<u64> {
    use super::legacy::{inb, outb};
    const PIT_HZ: u64 = 1_193_182;
    const MS: u64 = 10;
    let latch = (PIT_HZ * MS / 1000) as u16;
    let port_b = inb(0x61);
    outb(0x61, (port_b & !0x02) | 0x01);
    outb(0x43, 0xb0);
    outb(0x42, latch as u8);
    outb(0x42, (latch >> 8) as u8);
    // In mode 0 OUT2 is low once the count is written; high already means no PIT answers
    // (an absent port reads all ones).
    if inb(0x61) & 0x20 != 0 {
        outb(0x61, port_b);
        return None;
    }
    let t0 = counter();
    let mut spins = 0u32;
    while inb(0x61) & 0x20 == 0 {
        spins += 1;
        if spins == 10_000_000 {
            outb(0x61, port_b);
            return None;
        }
    }
    let t1 = counter();
    outb(0x61, port_b);
    Some(((t1 - t0) / MS).max(1))
}

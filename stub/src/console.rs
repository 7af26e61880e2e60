//! Console output: one clear line per error, always; progress lines only with `efi=debug`.
//! Also a coarse TSC clock for the progress lines' timings.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);
static TSC_PER_MS: AtomicU64 = AtomicU64::new(0);

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
    if on {
        calibrate();
    }
}

pub fn debug() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Print a line on ConOut (and so on the serial console under OVMF), or, entered as a bzImage
/// without firmware, on COM1 and the VGA text screen.
pub fn line(args: core::fmt::Arguments<'_>) {
    if crate::bare::active() {
        crate::serial::line(args);
    } else {
        uefi::println!("zboot: {}", args);
    }
}

fn tsc() -> u64 {
    // SAFETY: RDTSC has no memory effects; every x86_64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn calibrate() {
    if crate::bare::active() {
        // No timer service without firmware: the PIT, where there is one (else timings stay 0).
        if let Some(per_ms) = pit_tsc_per_ms() {
            TSC_PER_MS.store(per_ms, Ordering::Relaxed);
        }
        return;
    }
    let t0 = tsc();
    uefi::boot::stall(core::time::Duration::from_millis(10));
    TSC_PER_MS.store(((tsc() - t0) / 10).max(1), Ordering::Relaxed);
}

/// TSC ticks per millisecond measured against 10 ms of the PIT's channel 2 (as Linux's
/// `pit_calibrate_tsc`: gate on through port 0x61, mode 0, wait for OUT2); `None` when OUT2
/// does not behave like a PIT's (high at once, or never within a bounded wait).
fn pit_tsc_per_ms() -> Option<u64> {
    use zboot_stub::arch::x86_64::legacy::{inb, outb};
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
    let t0 = tsc();
    let mut spins = 0u32;
    while inb(0x61) & 0x20 == 0 {
        spins += 1;
        if spins == 10_000_000 {
            outb(0x61, port_b);
            return None;
        }
    }
    let t1 = tsc();
    outb(0x61, port_b);
    Some(((t1 - t0) / MS).max(1))
}

/// A point in time for [`elapsed_ms`].
pub fn now() -> u64 {
    tsc()
}

/// Milliseconds since `start` (0 when not calibrated, i.e. without `efi=debug`).
pub fn elapsed_ms(start: u64) -> u64 {
    match TSC_PER_MS.load(Ordering::Relaxed) {
        0 => 0,
        per_ms => (tsc() - start) / per_ms,
    }
}

/// Progress line, only with `efi=debug`.
macro_rules! progress {
    ($($t:tt)*) => {
        if $crate::console::debug() {
            $crate::console::line(format_args!($($t)*));
        }
    };
}

/// Error line, always.
macro_rules! error {
    ($($t:tt)*) => {
        $crate::console::line(format_args!("error: {}", format_args!($($t)*)))
    };
}

/// The TSC as the unpack stages' clock.
pub struct Tsc;

impl zboot_stub::unpack::Clock for Tsc {
    fn now(&self) -> u64 {
        now()
    }
    fn ms_since(&self, start: u64) -> u64 {
        elapsed_ms(start)
    }
}

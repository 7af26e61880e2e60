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
        // No timer service without firmware: timings stay 0.
        return;
    }
    let t0 = tsc();
    uefi::boot::stall(core::time::Duration::from_millis(10));
    TSC_PER_MS.store(((tsc() - t0) / 10).max(1), Ordering::Relaxed);
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

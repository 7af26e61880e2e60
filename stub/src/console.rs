//! Console output: one clear line per error, always; progress lines only with `efi=debug`.
//! Also a coarse clock (the CPU's counter) for the progress lines' timings. The backend is the
//! entry's choice ([`install`]), made once before anything prints.

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use zboot_stub::arch::current::{cpu, serial};

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

/// Where the lines go, chosen once by the entry that started us.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Sink {
    /// The firmware's ConOut (and so the serial console under OVMF); its Stall service
    /// calibrates the progress lines' clock.
    Firmware = 0,
    /// No firmware (the bzImage entries): COM1 and the VGA text screen; the PIT calibrates.
    Serial = 1,
}

static SINK: AtomicU8 = AtomicU8::new(Sink::Firmware as u8);

/// Choose the console's backend: the first thing an entry does.
pub fn install(sink: Sink) {
    SINK.store(sink as u8, Ordering::Relaxed);
}

fn sink() -> Sink {
    if SINK.load(Ordering::Relaxed) == Sink::Serial as u8 {
        Sink::Serial
    } else {
        Sink::Firmware
    }
}

/// Print `zboot: <args>` on the installed sink.
pub fn line(args: core::fmt::Arguments<'_>) {
    match sink() {
        Sink::Serial => serial::line(args),
        Sink::Firmware => uefi::println!("zboot: {}", args),
    }
}

fn calibrate() {
    let per_ms = match sink() {
        // No timer service without firmware: the PIT, where there is one (else timings stay 0).
        Sink::Serial => cpu::counter_per_ms_from_pit(),
        Sink::Firmware => {
            let t0 = cpu::counter();
            uefi::boot::stall(core::time::Duration::from_millis(10));
            Some(((cpu::counter() - t0) / 10).max(1))
        }
    };
    if let Some(per_ms) = per_ms {
        TSC_PER_MS.store(per_ms, Ordering::Relaxed);
    }
}

/// A point in time for [`elapsed_ms`].
pub fn now() -> u64 {
    cpu::counter()
}

/// Milliseconds since `start` (0 when not calibrated, i.e. without `efi=debug`).
pub fn elapsed_ms(start: u64) -> u64 {
    match TSC_PER_MS.load(Ordering::Relaxed) {
        0 => 0,
        per_ms => (cpu::counter() - start) / per_ms,
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

/// The CPU's counter as the unpack stages' clock.
pub struct Counter;

impl zboot_stub::unpack::Clock for Counter {
    fn now(&self) -> u64 {
        now()
    }
    fn ms_since(&self, start: u64) -> u64 {
        elapsed_ms(start)
    }
}

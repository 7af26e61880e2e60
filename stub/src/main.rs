//! zboot-stub: the EFI application (and bzImage) that unpacks and boots the kernel carried in
//! `.zpayld`.
//!
//! - `pipeline`: the boot steps, once, generic over a `platform::Platform`;
//! - `platform::efi`, `platform::bare`: the two platforms, each built by its entries (the PE
//!   and EFI handover entries; the bzImage entries), which then call the pipeline;
//! - `console`, `heap`: output and the global allocator, whose backend the entry chooses once;
//! - `image`, `rng`, `report`, `error`: our own image, randomness, progress lines, the error.
//!
//! The pure modules (payload, cmdline, decode, unpack, placement, secure_boot, and
//! `arch::current`: boot_params, e820, KASLR, the hand-off and the entries' assembly) are the
//! library (`lib.rs`), built and tested on the host; everything here builds only for the UEFI
//! target.
#![cfg_attr(target_os = "uefi", no_std, no_main)]

#[cfg(target_os = "uefi")]
extern crate alloc;

#[cfg(target_os = "uefi")]
use zboot_stub::{decode, memstats, payload};

#[cfg(target_os = "uefi")]
mod error;
#[cfg(target_os = "uefi")]
#[macro_use]
mod console;
#[cfg(target_os = "uefi")]
mod heap;
#[cfg(target_os = "uefi")]
mod image;
#[cfg(target_os = "uefi")]
mod pipeline;
#[cfg(target_os = "uefi")]
mod platform;
#[cfg(target_os = "uefi")]
mod report;
#[cfg(target_os = "uefi")]
mod rng;

#[cfg(not(target_os = "uefi"))]
fn main() {
    eprintln!("zboot-stub is an EFI application; build it with --target x86_64-unknown-uefi");
}

/// A panic says so on the console and halts, as uefi-rs's `panic_handler` feature does, but
/// without formatting the message or its location: letting LLVM drop every panic site's
/// location and message takes 16 KiB off the stub (docs/performance.md, stub size).
#[cfg(target_os = "uefi")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    error!("internal error (panic)");
    loop {
        core::hint::spin_loop();
    }
}

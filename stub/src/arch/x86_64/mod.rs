//! x86_64: boot_params, e820, KASLR slot choice and the jump into the kernel.

pub mod boot_params;
pub mod e820;
#[cfg(target_os = "uefi")]
pub mod handoff;
pub mod kaslr;

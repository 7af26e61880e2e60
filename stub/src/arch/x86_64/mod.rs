//! x86_64: boot_params, e820, KASLR choices, the LA57 switch and the jump into the kernel.

pub mod bare_map;
pub mod boot_params;
pub mod e820;
#[cfg(target_os = "uefi")]
pub mod handoff;
pub mod kaslr;
#[cfg(target_os = "uefi")]
pub mod legacy;
// After `legacy`: module-level assembly is emitted in this order, and the bzImage entries must
// be the first bytes of `.text` (the packer refuses a stub where they are not).
#[cfg(target_os = "uefi")]
pub mod efi_handover;
pub mod own_map;
pub mod paging;
#[cfg(target_os = "uefi")]
pub mod real_mode;

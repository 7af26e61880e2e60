//! x86_64: the boot protocol's tables (boot_params, e820, setup_data, what a loader hands
//! over), the KASLR window, the LA57 switch and the jump into the kernel, the CPU's clock and
//! random source, COM1/VGA text output, and the entries (16-, 32- and 64-bit bzImage entries,
//! the EFI handover entries).

pub mod bare_map;
pub mod boot_params;
pub mod cpu;
pub mod e820;
#[cfg(target_os = "uefi")]
pub mod handoff;
pub mod kaslr;
#[cfg(target_os = "uefi")]
pub mod legacy;
pub mod loader_params;
// After `legacy`: module-level assembly is emitted in this order, and the bzImage entries must
// be the first bytes of `.text` (the packer refuses a stub where they are not).
#[cfg(target_os = "uefi")]
pub mod efi_handover;
pub mod own_map;
pub mod paging;
#[cfg(target_os = "uefi")]
pub mod real_mode;
#[cfg(target_os = "uefi")]
pub mod serial;
#[cfg(target_os = "uefi")]
pub mod trampoline;

//! zboot-stub: the EFI application that unpacks and boots the kernel carried in `.zpayld`.
#![cfg_attr(target_os = "uefi", no_std, no_main)]

#[cfg(target_os = "uefi")]
mod efi {
    use uefi::prelude::*;

    #[entry]
    fn efi_main() -> Status {
        let _ = uefi::helpers::init();
        uefi::println!("zboot-stub: not implemented yet");
        Status::LOAD_ERROR
    }
}

#[cfg(not(target_os = "uefi"))]
fn main() {}

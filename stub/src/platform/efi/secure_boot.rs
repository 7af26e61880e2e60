//! The firmware's Secure Boot state, read from its variables (the rule that turns them into a
//! mode is `zboot_stub::secure_boot::mode`).

use uefi::runtime::{self, VariableVendor};
use uefi::{CStr16, Guid, Status, cstr16, guid};
use zboot_stub::secure_boot;

const SHIM_LOCK_GUID: Guid = guid!("605dab50-e046-4300-abb6-3dd810dd8b23");

/// `None`: not found; `Some(None)`: present but unreadable; `Some(Some(b))`: first byte.
fn byte(name: &CStr16, vendor: &VariableVendor) -> Option<Option<u8>> {
    let mut buf = [0u8; 8];
    match runtime::get_variable(name, vendor, &mut buf) {
        Ok((data, _)) => Some(data.first().copied()),
        Err(e) if e.status() == Status::NOT_FOUND => None,
        Err(_) => Some(None),
    }
}

/// The firmware's mode (`zboot_stub::secure_boot` values).
pub fn mode() -> u8 {
    let g = VariableVendor::GLOBAL_VARIABLE;
    secure_boot::mode(
        byte(cstr16!("SecureBoot"), &g),
        byte(cstr16!("SetupMode"), &g).flatten(),
        byte(cstr16!("MokSBStateRT"), &VariableVendor(SHIM_LOCK_GUID)).flatten(),
    )
}

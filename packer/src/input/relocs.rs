//! The x86 relocation table, appended to a vmlinux (distro bzImage payloads) or given separately
//! (`--relocs`: a kernel build's `arch/x86/boot/compressed/vmlinux.relocs`, 6.1 included). Parsing and validation
//! are zboot-format's; this only turns them into errors.

use anyhow::{Result, anyhow};
use zboot_format::relocs::RelocTable;

/// Check that `table` is a well-formed relocation table whose every entry lies in an image of
/// `image_size` bytes linked at `link_virt_base`.
pub fn check(table: &[u8], link_virt_base: u64, image_size: u64) -> Result<()> {
    let parsed =
        RelocTable::parse(table).map_err(|e| anyhow!("malformed relocation table: {e}"))?;
    parsed
        .validate(link_virt_base, image_size)
        .map_err(|e| anyhow!("malformed relocation table: {e}"))?;
    Ok(())
}

/// Entry counts (64-bit, inverse 32-bit, 32-bit) of a table already checked.
pub fn counts(table: &[u8]) -> (u32, u32, u32) {
    RelocTable::parse(table)
        .map(|t| t.counts())
        .unwrap_or((0, 0, 0))
}

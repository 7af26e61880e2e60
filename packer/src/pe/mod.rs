//! PE/COFF: reading (stub, inspect, verify), writing (the output image) and the strict rules
//! shared by the writer's self-check and `verify`.

pub mod read;
pub mod rules;
pub mod write;

pub use object::pe;

/// Section and file alignment every output image uses (zboot_format::image owns them).
pub use zboot_format::image::{FILE_ALIGNMENT, SECTION_ALIGNMENT};

/// `x` rounded up to a multiple of the power of two `a` (u32 arithmetic, saturating).
pub const fn align32(x: u32, a: u32) -> u32 {
    match x.checked_add(a - 1) {
        Some(v) => v & !(a - 1),
        None => !(a - 1),
    }
}

/// The section name as text (NUL padding removed).
pub fn section_name(raw: &[u8; 8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(8);
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

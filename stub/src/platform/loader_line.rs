//! A loader's NUL-terminated command line, read where its boot_params say (both platforms).

use crate::error::Error;
use alloc::string::String;
use zboot_format::cmdline::{CmdlineError, MAX_LEN};
use zboot_stub::arch::current::loader_params as lp;

/// The line at `at`: `max` bytes the caller checked lie in memory the loader owns.
pub fn read(at: u64, max: u64) -> Result<String, Error> {
    // SAFETY: the caller checked that `max` bytes at `at` lie in memory the loader owns (its
    // allocated memory under EFI, its e820 RAM on bare), identity mapped.
    let bytes = unsafe { core::slice::from_raw_parts(at as *const u8, max as usize) };
    lp::cmdline_text(bytes).ok_or(Error::CmdlineTooLong(CmdlineError::TooLong {
        len: max as usize,
        max: MAX_LEN,
    }))
}

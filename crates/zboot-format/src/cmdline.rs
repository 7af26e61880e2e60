//! Kernel command-line rules, shared by the packer (what `--cmdline` may embed) and the stub
//! (what it accepts from its own `.cmdline` and what it hands to the kernel).
//!
//! - An embedded line is UTF-8, free of control characters (newlines and tabs included), not
//!   blank, and at most [`MAX_LEN`] bytes. The stub refuses an image whose embedded line breaks a
//!   rule instead of treating it as absent: under Secure Boot an absent embedded line lets the
//!   loader's (unsigned) options in, so a malformed one must never count as absent.
//! - The line the kernel receives (embedded + loader options) is at most [`MAX_LEN`] bytes: x86
//!   Linux keeps `COMMAND_LINE_SIZE - 1` bytes and silently drops the rest.

/// x86 `COMMAND_LINE_SIZE` (arch/x86/include/asm/setup.h): the kernel's buffer, NUL included.
pub const COMMAND_LINE_SIZE: usize = 2048;
/// Longest command line the kernel keeps whole, in bytes.
pub const MAX_LEN: usize = COMMAND_LINE_SIZE - 1;

/// Why a command line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError {
    /// Not valid UTF-8 (byte offset of the first bad sequence).
    NotUtf8 { at: usize },
    /// A control character (byte offset, character code).
    Control { at: usize, code: u32 },
    /// Empty or only whitespace.
    Blank,
    /// Longer than the kernel keeps.
    TooLong { len: usize, max: usize },
}

impl core::fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            CmdlineError::NotUtf8 { at } => write!(f, "not valid UTF-8 (at byte {at})"),
            CmdlineError::Control { at, code } => {
                write!(f, "control character {code:#04x} at byte {at}")
            }
            CmdlineError::Blank => f.write_str("empty or only whitespace"),
            CmdlineError::TooLong { len, max } => write!(
                f,
                "{len} bytes, longer than the {max} the kernel keeps (COMMAND_LINE_SIZE {COMMAND_LINE_SIZE})"
            ),
        }
    }
}

/// Checks an embedded command line; returns it as text.
pub fn check_embedded(bytes: &[u8]) -> Result<&str, CmdlineError> {
    let text = core::str::from_utf8(bytes).map_err(|e| CmdlineError::NotUtf8 {
        at: e.valid_up_to(),
    })?;
    if let Some((at, c)) = text.char_indices().find(|(_, c)| c.is_control()) {
        return Err(CmdlineError::Control { at, code: c as u32 });
    }
    if text.trim().is_empty() {
        return Err(CmdlineError::Blank);
    }
    check_len(text.len())?;
    Ok(text)
}

/// Checks the length of the line the kernel will receive.
pub fn check_len(len: usize) -> Result<(), CmdlineError> {
    if len > MAX_LEN {
        return Err(CmdlineError::TooLong { len, max: MAX_LEN });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_printable_text() {
        assert_eq!(
            check_embedded(b"console=ttyS0 quiet"),
            Ok("console=ttyS0 quiet")
        );
        assert_eq!(
            check_embedded("root=LABEL=système".as_bytes()),
            Ok("root=LABEL=système")
        );
        let max = [b'a'; MAX_LEN];
        assert!(check_embedded(&max).is_ok());
    }

    #[test]
    fn refuses_what_could_fail_open() {
        assert_eq!(
            check_embedded(b"console=ttyS0 \xff"),
            Err(CmdlineError::NotUtf8 { at: 14 })
        );
        assert_eq!(check_embedded(b""), Err(CmdlineError::Blank));
        assert_eq!(check_embedded(b"   "), Err(CmdlineError::Blank));
        assert_eq!(
            check_embedded(b"quiet\n"),
            Err(CmdlineError::Control { at: 5, code: 10 })
        );
        assert_eq!(
            check_embedded(b"a\0b"),
            Err(CmdlineError::Control { at: 1, code: 0 })
        );
        assert_eq!(
            check_embedded(&[b'a'; MAX_LEN + 1]),
            Err(CmdlineError::TooLong {
                len: MAX_LEN + 1,
                max: MAX_LEN
            })
        );
    }

    #[test]
    fn composed_length_limit() {
        assert!(check_len(MAX_LEN).is_ok());
        assert!(check_len(MAX_LEN + 1).is_err());
        assert_eq!(MAX_LEN, 2047);
    }
}

//! Step 2: the kernel command line.
//!
//! The embedded `--cmdline` comes first, the loader's LoadOptions (UTF-16LE) are appended, and
//! the whole line goes to the kernel. The options the Linux EFI stub itself honours
//! (drivers/firmware/efi/libstub/efi-stub-helper.c `efi_parse_options`, x86-stub.c) are parsed
//! into [`Options`].

use alloc::string::String;
use alloc::vec::Vec;
use zboot_format::cmdline::CmdlineError;

/// LoadOptions bytes (UTF-16LE, maybe without NUL, maybe empty or odd-sized) to UTF-8.
/// Stops at the first NUL; invalid code units become U+FFFD; control characters become spaces.
pub fn utf16le_to_utf8(bytes: &[u8]) -> String {
    let units = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0);
    char::decode_utf16(units)
        .map(|r| match r {
            Ok(c) if c.is_control() => ' ',
            Ok(c) => c,
            Err(_) => char::REPLACEMENT_CHARACTER,
        })
        .collect()
}

/// The kernel command line: embedded part first, loader options appended, single spaces between,
/// surrounding whitespace trimmed.
pub fn compose(embedded: &str, loader: &str) -> String {
    let parts = [embedded.trim(), loader.trim()];
    let mut out = String::new();
    for p in parts.into_iter().filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(p);
    }
    out
}

/// Whether the loader's options may be appended to the embedded command line. An embedded line
/// is part of the signed image and the loader's options are not, so under Secure Boot (or when
/// its state cannot be read: `secure_boot_locked`) they are ignored, as systemd-stub ignores them
/// for a UKI with a `.cmdline`. Without an embedded line the loader's options are the line.
pub fn loader_options_allowed(embedded: &str, secure_boot_locked: bool) -> bool {
    embedded.trim().is_empty() || !secure_boot_locked
}

/// Why the kernel's command line could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError {
    /// The image's own `.cmdline` breaks a rule of `zboot_format::cmdline` (never "absent").
    Embedded(CmdlineError),
    /// The composed line (embedded + loader options) is longer than the kernel keeps.
    TooLong(CmdlineError),
}

/// The kernel's command line, the same rule on every platform: the `embedded` line first, the
/// loader's appended, except that under Secure Boot (`locked`: [`crate::secure_boot::locked`])
/// an embedded (signed) line stands alone. A malformed embedded line is refused, never taken
/// as "none" (that would let the loader's options in under Secure Boot). Returns the line and
/// whether the loader's part was used.
pub fn kernel_line(
    embedded: &[u8],
    loader: &str,
    locked: bool,
) -> Result<(String, bool), LineError> {
    let embedded = match embedded {
        [] => "",
        bytes => zboot_format::cmdline::check_embedded(bytes).map_err(LineError::Embedded)?,
    };
    let use_loader = loader_options_allowed(embedded, locked);
    let line = compose(embedded, if use_loader { loader } else { "" });
    zboot_format::cmdline::check_len(line.len()).map_err(LineError::TooLong)?;
    Ok((line, use_loader))
}

/// Options the stub acts on. Everything stays in the line passed to the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `nokaslr`: load at the preferred address, no randomization.
    pub nokaslr: bool,
    /// `no5lvl`: never switch to 5-level paging.
    pub no5lvl: bool,
    /// `efi=debug`: progress lines on the console.
    pub efi_debug: bool,
    /// `efi=nochunk`: read each `initrd=` file in one call instead of 1 MiB chunks.
    pub efi_nochunk: bool,
    /// `noinitrd`: load no initrd at all.
    pub noinitrd: bool,
    /// `mem=`, `memmap=`, `hugepages=`: the stub must not choose a random physical address.
    pub no_phys_kaslr: bool,
    /// `initrd=` paths, `/` turned into `\`, in order.
    pub initrd: Vec<String>,
}

/// Split a command line into `param[=value]` words, honouring double quotes like the kernel's
/// `next_arg` (quotes group words and are dropped).
pub fn words(line: &str) -> impl Iterator<Item = String> + '_ {
    let mut chars = line.chars().peekable();
    core::iter::from_fn(move || {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        chars.peek()?;
        let mut word = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() && !quoted {
                break;
            }
            chars.next();
            if c == '"' {
                quoted = !quoted;
            } else {
                word.push(c);
            }
        }
        Some(word)
    })
}

impl Options {
    /// Parse the options the stub honours; unknown words are ignored (they are the kernel's).
    pub fn parse(line: &str) -> Options {
        let mut o = Options::default();
        for w in words(line) {
            let (key, val) = match w.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (w.as_str(), None),
            };
            match (key, val) {
                ("nokaslr", None) => o.nokaslr = true,
                ("no5lvl", None) => o.no5lvl = true,
                ("noinitrd", None) => o.noinitrd = true,
                ("efi", Some(v)) => {
                    for item in v.split(',') {
                        match item {
                            "debug" => o.efi_debug = true,
                            "nochunk" => o.efi_nochunk = true,
                            _ => {}
                        }
                    }
                }
                ("initrd", Some(v)) if !v.is_empty() => o.initrd.push(v.replace('/', "\\")),
                ("mem" | "memmap" | "hugepages", Some(_)) => o.no_phys_kaslr = true,
                _ => {}
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secure_boot_keeps_an_embedded_line_alone() {
        assert!(loader_options_allowed("", true));
        assert!(loader_options_allowed("  ", true));
        assert!(loader_options_allowed("console=ttyS0", false));
        assert!(!loader_options_allowed("console=ttyS0", true));
    }

    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
    }

    #[test]
    fn converts_load_options() {
        assert_eq!(
            utf16le_to_utf8(&utf16("console=ttyS0 quiet\0")),
            "console=ttyS0 quiet"
        );
        // No NUL, odd trailing byte.
        let mut b = utf16("root=/dev/sda1");
        b.push(0x41);
        assert_eq!(utf16le_to_utf8(&b), "root=/dev/sda1");
        assert_eq!(utf16le_to_utf8(&[]), "");
        assert_eq!(utf16le_to_utf8(&[0, 0, 0x41, 0]), "");
        assert_eq!(utf16le_to_utf8(&utf16("é ü")), "é ü");
        // Lone surrogate.
        assert_eq!(utf16le_to_utf8(&[0x00, 0xd8, 0x41, 0x00]), "\u{fffd}A");
        assert_eq!(utf16le_to_utf8(&utf16("a\tb\n")), "a b ");
    }

    #[test]
    fn the_kernel_line_under_each_secure_boot_state() {
        use crate::secure_boot::{self as sb, locked};
        let line = |emb: &str, ldr: &str, mode| kernel_line(emb.as_bytes(), ldr, locked(mode));
        // Unlocked: embedded first, loader appended.
        assert_eq!(
            line("console=ttyS0", "quiet", sb::DISABLED),
            Ok(("console=ttyS0 quiet".into(), true))
        );
        assert_eq!(
            line("console=ttyS0", "quiet", sb::UNSET),
            Ok(("console=ttyS0 quiet".into(), true))
        );
        // Locked (ENABLED, and UNKNOWN on both platforms now): the signed line alone.
        for mode in [sb::ENABLED, sb::UNKNOWN] {
            assert_eq!(
                line("console=ttyS0", "init=/bin/sh", mode),
                Ok(("console=ttyS0".into(), false))
            );
            // No embedded line: the loader's options are the line.
            assert_eq!(line("", "quiet", mode), Ok(("quiet".into(), true)));
        }
        // A malformed embedded line is refused whatever the state, never read as "none".
        for mode in [sb::DISABLED, sb::ENABLED] {
            assert!(matches!(
                kernel_line(b"a\x01b", "quiet", locked(mode)),
                Err(LineError::Embedded(_))
            ));
            assert!(matches!(
                kernel_line(&[0xff, 0xfe], "", locked(mode)),
                Err(LineError::Embedded(_))
            ));
        }
        // Too long once composed.
        let long = "x".repeat(zboot_format::cmdline::MAX_LEN);
        assert!(matches!(
            line("a", &long, sb::DISABLED),
            Err(LineError::TooLong(_))
        ));
        assert_eq!(line("a", &long, sb::ENABLED), Ok(("a".into(), false)));
    }

    #[test]
    fn embedded_first_then_loader() {
        assert_eq!(compose("console=ttyS0 ", "  quiet"), "console=ttyS0 quiet");
        assert_eq!(compose("", "quiet"), "quiet");
        assert_eq!(compose("a", ""), "a");
        assert_eq!(compose(" ", " "), "");
    }

    #[test]
    fn parses_stub_options() {
        let o = Options::parse(
            "BOOT_IMAGE=/vmlinuz nokaslr efi=foo,debug initrd=/boot/a.img initrd=\\b \
             mem=2G no5lvl",
        );
        assert!(o.nokaslr && o.no5lvl && o.efi_debug && o.no_phys_kaslr && !o.noinitrd);
        assert_eq!(o.initrd, ["\\boot\\a.img", "\\b"]);
        let o = Options::parse("noinitrd nokaslr=1 xefi=debug hugepages=4 initrd=");
        assert!(o.noinitrd && !o.nokaslr && !o.efi_debug && o.no_phys_kaslr);
        assert!(o.initrd.is_empty());
        assert_eq!(Options::parse(""), Options::default());
    }

    #[test]
    fn quotes_group_words() {
        let w: Vec<_> = words(r#"a  "b c"=d e="f g" "#).collect();
        assert_eq!(w, ["a", "b c=d", "e=f g"]);
        let o = Options::parse(r#"dyndbg="file x +p" efi=debug"#);
        assert!(o.efi_debug);
    }
}

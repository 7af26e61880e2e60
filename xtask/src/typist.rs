//! Typing at a guest's serial console ([`BootSpec::serial_input`](crate::qemu::BootSpec)):
//! wait for a text, then send keys, one character per poll.
//!
//! The awaited text is looked for in the log with its escape sequences removed, as a
//! subsequence spanning at most twice its length. SeaBIOS's serial console mirrors the VGA text
//! screen and, under TCG, sometimes writes a character twice and then moves the cursor, so a
//! line the guest printed once reaches the log as `EE\e[25;02Hnter a video mode:` or
//! `Enter a vvii\e[25;11Hdeo mode:` (two CI runs' `vga=ask` prompts), which no byte search
//! finds and which not even a terminal renders right.

use anyhow::Result;
use std::fs;
use std::path::Path;

/// Sends each `(awaited text, keys)` entry of a script once the text has appeared after the
/// previous entry's match: connects once QEMU made the socket, drains what QEMU writes there
/// (the log file has it too), and sends one character per step.
pub struct Typist<'a> {
    script: &'a [(String, String)],
    /// The entry being typed and the characters of it sent.
    entry: usize,
    sent: usize,
    /// Log offset before which nothing may match the next awaited text.
    seen: usize,
    socket: Option<std::os::unix::net::UnixStream>,
}

impl<'a> Typist<'a> {
    pub fn new(script: &'a [(String, String)]) -> Self {
        Typist {
            script,
            entry: 0,
            sent: 0,
            seen: 0,
            socket: None,
        }
    }

    /// One poll: `console` is the serial socket, `serial` the log QEMU writes beside it.
    pub fn step(&mut self, console: &Path, serial: &Path) -> Result<()> {
        use std::io::{Read, Write};
        if self.script.is_empty() {
            return Ok(());
        }
        if self.socket.is_none() {
            let Ok(s) = std::os::unix::net::UnixStream::connect(console) else {
                return Ok(());
            };
            s.set_nonblocking(true)?;
            self.socket = Some(s);
        }
        let socket = self.socket.as_mut().unwrap();
        let mut sink = [0u8; 4096];
        while matches!(socket.read(&mut sink), Ok(n) if n > 0) {}
        let Some((wait_for, keys)) = self.script.get(self.entry) else {
            return Ok(());
        };
        if self.sent == 0 {
            let log = fs::read(serial).unwrap_or_default();
            if !self.awaited(wait_for, &log) {
                return Ok(());
            }
        }
        let socket = self.socket.as_mut().unwrap();
        if let Some(&b) = keys.as_bytes().get(self.sent) {
            socket.write_all(&[b])?;
            self.sent += 1;
        }
        if self.sent == keys.len() {
            (self.entry, self.sent) = (self.entry + 1, 0);
        }
        Ok(())
    }

    /// Whether `want` appeared after the last match; consumes the log up to its end.
    fn awaited(&mut self, want: &str, log: &[u8]) -> bool {
        let text = printable(log.get(self.seen..).unwrap_or_default(), self.seen);
        match find_spread(&text, want.as_bytes()) {
            Some(end) => {
                self.seen = end;
                true
            }
            None => false,
        }
    }
}

/// The bytes of `log` outside escape sequences (`ESC [` … final byte, `ESC` + one byte), each
/// with its offset (`base` + index).
fn printable(log: &[u8], base: usize) -> Vec<(u8, usize)> {
    let mut out = Vec::with_capacity(log.len());
    let mut i = 0;
    while i < log.len() {
        if log[i] != 0x1b {
            out.push((log[i], base + i));
            i += 1;
        } else if log.get(i + 1) == Some(&b'[') {
            i += 2;
            while i < log.len() && !(0x40..=0x7e).contains(&log[i]) {
                i += 1;
            }
            i += 1;
        } else {
            i += 2;
        }
    }
    out
}

/// The log offset just past the first place where `want` occurs in `text` as a subsequence
/// no longer than twice `want`.
fn find_spread(text: &[(u8, usize)], want: &[u8]) -> Option<usize> {
    let (&first, rest) = want.split_first()?;
    (0..text.len())
        .filter(|&i| text[i].0 == first)
        .find_map(|start| {
            let window = &text[start + 1..text.len().min(start + 2 * want.len())];
            let mut cells = window.iter();
            let mut last = text[start].1;
            for &ch in rest {
                last = cells.find(|c| c.0 == ch)?.1;
            }
            Some(last + 1)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASK: &str = "Enter a video mode";

    fn seen(log: &[u8]) -> bool {
        let script = [(ASK.to_string(), "314\r".to_string())];
        Typist::new(&script).awaited(ASK, log)
    }

    #[test]
    fn prompts_written_in_pieces_are_seen() {
        // Two CI runs' logs of SeaBIOS's serial console at the vga=ask mode prompt.
        for log in [
            &b"213 320x200x8\r\n\r\nEE\x1b[25;02Hnter a video mode: "[..],
            b"213 320x200x8\r\nEnter a vvii\x1b[25;11Hdeo mode: \x1b[25;06H",
        ] {
            assert!(!log.windows(ASK.len()).any(|w| w == ASK.as_bytes()));
            assert!(seen(log), "{}", String::from_utf8_lossy(log));
        }
        assert!(seen(b"Enter a video mode: "));
    }

    #[test]
    fn letters_spread_wider_than_twice_the_text_are_not_a_match() {
        assert!(!seen(b"Enter a video\r\n 314 800x600x16\r\n mode"));
        assert!(!seen(b"Enter a vide mode"));
    }

    #[test]
    fn the_typist_waits_for_text_after_its_last_match() {
        let script = [(ASK.to_string(), "314\r".to_string())];
        let mut t = Typist::new(&script);
        let mut log = b"EE\x1b[1;2Hnter a video mode: ".to_vec();
        assert!(t.awaited(ASK, &log));
        assert!(!t.awaited(ASK, &log));
        log.extend_from_slice(b"\r\nEnter a video mode: ");
        assert!(t.awaited(ASK, &log));
    }
}

//! The console of the bzImage entries, where no firmware prints for us: the first serial port
//! (COM1, as the loader left it configured) and, when the loader says the screen is in VGA text
//! mode, the text buffer at 0xb8000.

use super::legacy::{inb, outb};
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering::Relaxed};
use zboot_format::bootparam::{ScreenInfo, VIDEO_IS_VGA_TEXT};

const COM1: u16 = 0x3f8;
/// Line status register: transmit holding register empty.
const LSR_THRE: u8 = 0x20;
/// The VGA text buffer.
const VGA_TEXT: u64 = 0xb8000;

/// The text screen as (columns << 16 | lines << 8), 0 when there is none; and the cursor as
/// (row << 8 | column).
static SCREEN: AtomicU32 = AtomicU32::new(0);
static CURSOR: AtomicU32 = AtomicU32::new(0);

/// Use the VGA text screen the loader describes in `si`, if it is one.
pub fn use_screen(si: &ScreenInfo) {
    let (cols, lines) = (
        u32::from(si.orig_video_cols),
        u32::from(si.orig_video_lines),
    );
    // Text modes 0-3 and 7 (a BIOS graphics mode on a VGA says VGA too).
    if si.orig_video_is_vga == VIDEO_IS_VGA_TEXT
        && matches!(si.orig_video_mode, 0..=3 | 7)
        && (40..=132).contains(&cols)
        && (25..=60).contains(&lines)
    {
        SCREEN.store(cols << 16 | lines << 8, Relaxed);
        CURSOR.store(u32::from(si.orig_y).min(lines - 1) << 8, Relaxed);
    }
}

/// Print `zboot: <args>` and a line end.
pub fn line(args: core::fmt::Arguments<'_>) {
    let _ = writeln!(Console, "zboot: {args}");
}

/// Print `s` as it is, without formatting (usable before our relocations are applied).
pub fn text(s: &str) {
    for b in s.bytes() {
        serial(b);
    }
}

struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                serial(b'\r');
            }
            serial(b);
            screen(b);
        }
        Ok(())
    }
}

/// One byte to COM1, waiting a bounded time for room (an absent port reads 0xff: never waits).
fn serial(b: u8) {
    for _ in 0..100_000 {
        if inb(COM1 + 5) & LSR_THRE != 0 {
            break;
        }
    }
    outb(COM1, b);
}

/// One byte on the text screen, scrolling at the bottom.
fn screen(b: u8) {
    let geometry = SCREEN.load(Relaxed);
    if geometry == 0 {
        return;
    }
    let (cols, lines) = ((geometry >> 16) as u64, ((geometry >> 8) & 0xff) as u64);
    let cursor = CURSOR.load(Relaxed);
    let (mut row, mut col) = (u64::from(cursor >> 8), u64::from(cursor & 0xff));
    let cell = |r: u64, c: u64| (VGA_TEXT + (r * cols + c) * 2) as *mut u16;
    match b {
        b'\r' => col = 0,
        b'\n' => {
            col = 0;
            row += 1;
        }
        _ => {
            // SAFETY: row < lines and col < cols: a cell of the text buffer the loader says
            // exists (VGA text mode); volatile, it is device memory.
            unsafe { cell(row, col).write_volatile(0x0700 | u16::from(b)) };
            col += 1;
            if col == cols {
                col = 0;
                row += 1;
            }
        }
    }
    if row == lines {
        for i in 0..(lines - 1) * cols {
            // SAFETY: both cells lie inside the text buffer (i + cols < lines * cols).
            unsafe {
                let from = (VGA_TEXT as *mut u16).add((i + cols) as usize);
                (VGA_TEXT as *mut u16)
                    .add(i as usize)
                    .write_volatile(from.read_volatile());
            }
        }
        for c in 0..cols {
            // SAFETY: the last row of the text buffer.
            unsafe { cell(lines - 1, c).write_volatile(0x0720) };
        }
        row = lines - 1;
    }
    CURSOR.store((row as u32) << 8 | col as u32, Relaxed);
}

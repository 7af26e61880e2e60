//! The x86 BCJ ("branch/call/jump") filter, as in the .xz format's x86 filter (filter id 0x04).
//!
//! x86 `call rel32` (E8) and `jmp rel32` (E9) hold targets relative to the next instruction, so
//! the same target called from many places is encoded as many different byte strings. The encoder
//! turns those relative displacements into absolute positions (position + 5 + rel), which repeat
//! and compress better; the decoder subtracts the position again. Only displacements whose top
//! byte is 0x00 or 0xff (near targets) are converted, and a small state machine skips E8/E9 bytes
//! that sit inside the four bytes just examined, exactly as liblzma does, so streams filtered here
//! and by `xz --x86` agree byte for byte (checked by the packer's tests against liblzma).
//!
//! The filter works in place and can run over a buffer in several steps ([`X86Bcj::run`]
//! returns how far it got; the last < 5 bytes of the whole stream stay as they are), which lets
//! the stub undo it chunk by chunk right behind its decoder.

/// Which way to run the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Relative to absolute (before compression).
    Encode,
    /// Absolute to relative (after decompression).
    Decode,
}

/// Filter state carried from one step to the next.
#[derive(Clone, Copy, Debug)]
pub struct X86Bcj {
    direction: Direction,
    /// Stream position of `buf[0]` in the next call to [`X86Bcj::run`].
    pos: u32,
    /// Position of the last E8/E9 byte seen.
    prev_pos: u32,
    /// Which of the bytes after `prev_pos` were E8/E9 (bit 0) or looked like an address's top
    /// byte (bit 4), shifted as the position moves on.
    prev_mask: u32,
}

/// Bit masks (prev_mask >> 1) after which a conversion is allowed.
const ALLOWED: [bool; 8] = [true, true, true, false, true, false, false, false];
/// For a prev_mask >> 1, which byte of the converted value must again look like a top byte.
const BIT_NUMBER: [u32; 8] = [0, 1, 2, 2, 3, 3, 3, 3];

/// The first index in `from..=limit` whose byte is E8 or E9, else `limit + 1`. Eight bytes per
/// step where none is (the stub runs this over ~60 MB under soft emulation in QEMU: the byte
/// loop was 4x slower there).
fn next_opcode(buf: &[u8], mut i: usize, limit: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    while i + 8 <= limit + 1 {
        let w = u64::from_le_bytes(buf[i..i + 8].try_into().unwrap_or([0; 8]));
        // Bytes equal to E8/E9 become zero; a zero byte makes the classic test non-zero.
        let x = (w & !ONES) ^ (0xe8 * ONES);
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            break;
        }
        i += 8;
    }
    while i <= limit && buf[i] & 0xfe != 0xe8 {
        i += 1;
    }
    i
}

fn is_top_byte(b: u8) -> bool {
    b == 0x00 || b == 0xff
}

impl X86Bcj {
    /// A filter for a stream that starts at position 0.
    pub const fn new(direction: Direction) -> Self {
        X86Bcj {
            direction,
            pos: 0,
            prev_pos: 0u32.wrapping_sub(5),
            prev_mask: 0,
        }
    }

    /// Filter `buf`, which holds the stream from the position after the last byte this filter
    /// consumed. Returns how many bytes were consumed (final); the caller passes the rest again,
    /// followed by more data, in the next call. At the end of the stream, unconsumed bytes
    /// (fewer than 5) are left as they are.
    pub fn run(&mut self, buf: &mut [u8]) -> usize {
        if buf.len() < 5 {
            return 0;
        }
        let now = self.pos;
        if now.wrapping_sub(self.prev_pos) > 5 {
            self.prev_pos = now.wrapping_sub(5);
        }
        let limit = buf.len() - 5;
        let mut i = 0usize;
        while i <= limit {
            i = next_opcode(buf, i, limit);
            if i > limit {
                break;
            }
            let here = now.wrapping_add(i as u32);
            let gap = here.wrapping_sub(self.prev_pos);
            self.prev_pos = here;
            if gap > 5 {
                self.prev_mask = 0;
            } else {
                for _ in 0..gap {
                    self.prev_mask = (self.prev_mask & 0x77) << 1;
                }
            }
            let top = buf[i + 4];
            let m = (self.prev_mask >> 1) as usize;
            if is_top_byte(top) && m < 8 && ALLOWED[m] {
                let src = u32::from_le_bytes([buf[i + 1], buf[i + 2], buf[i + 3], top]);
                let dest = self.convert(src, here.wrapping_add(5));
                buf[i + 1..i + 4].copy_from_slice(&dest.to_le_bytes()[..3]);
                // Bit 24 decides the sign: the top byte becomes 0x00 or 0xff again.
                buf[i + 4] = !(((dest >> 24) & 1).wrapping_sub(1)) as u8;
                i += 5;
                self.prev_mask = 0;
            } else {
                i += 1;
                self.prev_mask |= 1;
                if is_top_byte(top) {
                    self.prev_mask |= 0x10;
                }
            }
        }
        self.pos = now.wrapping_add(i as u32);
        i
    }

    /// The converted displacement of one E8/E9 whose next instruction is at `next`.
    fn convert(&self, mut src: u32, next: u32) -> u32 {
        loop {
            let dest = match self.direction {
                Direction::Encode => src.wrapping_add(next),
                Direction::Decode => src.wrapping_sub(next),
            };
            if self.prev_mask == 0 {
                return dest;
            }
            let bit = BIT_NUMBER[(self.prev_mask >> 1) as usize];
            let b = (dest >> (24 - bit * 8)) as u8;
            if !is_top_byte(b) {
                return dest;
            }
            src = dest ^ ((1u32 << (32 - bit * 8)) - 1);
        }
    }

    /// Filter a whole stream held in `buf` in one step.
    pub fn run_all(direction: Direction, buf: &mut [u8]) {
        X86Bcj::new(direction).run(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Code-like bytes: many E8/E9 with near displacements, and noise.
    fn sample(len: usize, seed: u32) -> [u8; 4096] {
        let mut v = [0u8; 4096];
        let mut g = crate::testdata::XorShift64::new(u64::from(seed));
        let mut i = 0;
        while i < len.min(v.len()) {
            let x = g.next_u32();
            let r = (x >> 16) as u8;
            if r.is_multiple_of(7) && i + 5 <= len {
                v[i] = 0xe8 + (r & 1);
                v[i + 1] = (x >> 3) as u8;
                v[i + 2] = (x >> 11) as u8;
                v[i + 3] = if r & 2 == 0 { 0 } else { 0xff };
                v[i + 4] = if r & 4 == 0 { 0 } else { 0xff };
                i += 5;
            } else {
                v[i] = r;
                i += 1;
            }
        }
        v
    }

    #[test]
    fn round_trips_in_one_step() {
        for seed in 0..50 {
            let orig = sample(4096, seed);
            let mut buf = orig;
            X86Bcj::run_all(Direction::Encode, &mut buf);
            assert_ne!(buf, orig, "seed {seed}: nothing converted");
            X86Bcj::run_all(Direction::Decode, &mut buf);
            assert_eq!(buf, orig, "seed {seed}");
        }
    }

    #[test]
    fn steps_of_any_size_give_the_same_bytes() {
        let orig = sample(4096, 7);
        let mut whole = orig;
        X86Bcj::run_all(Direction::Encode, &mut whole);
        for step in [1usize, 4, 5, 6, 13, 100, 4095] {
            // Feed the stream in `step`-byte increments, as the stub does behind its decoder.
            let mut buf = whole;
            let mut f = X86Bcj::new(Direction::Decode);
            let (mut done, mut avail) = (0usize, 0usize);
            while avail < buf.len() {
                avail = (avail + step).min(buf.len());
                done += f.run(&mut buf[done..avail]);
            }
            assert!(buf.len() - done < 5, "step {step}: {done} consumed");
            assert_eq!(buf, orig, "step {step}");
        }
    }

    #[test]
    fn the_word_scan_finds_every_opcode() {
        let mut buf = [0x12u8; 64];
        for at in 0..64 {
            for op in [0xe8, 0xe9] {
                buf[at] = op;
                for from in 0..=at {
                    assert_eq!(next_opcode(&buf, from, 63), at, "at {at} from {from}");
                    assert_eq!(next_opcode(&buf, from, at), at);
                }
                if at > 0 {
                    assert_eq!(next_opcode(&buf, 0, at - 1), at, "beyond the limit");
                }
                buf[at] = [0xe7, 0xea, 0x68, 0x69][at % 4];
            }
            assert_eq!(next_opcode(&buf, 0, 63), 64, "false positive near {at}");
            buf[at] = 0x12;
        }
    }

    #[test]
    fn short_buffers_are_left_alone() {
        let mut b = [0xe8, 1, 2, 0];
        assert_eq!(X86Bcj::new(Direction::Encode).run(&mut b), 0);
        assert_eq!(b, [0xe8, 1, 2, 0]);
    }
}

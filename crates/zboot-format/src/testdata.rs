//! Deterministic pseudo-random test data for the tests of every crate in the workspace: one
//! generator (xorshift64), so that a seed means the same bytes everywhere. Test-only (feature
//! `testdata`); the stub's boot-time randomness is its own (stub/src/rng.rs).

/// Marsaglia's xorshift64 (13, 7, 17). Not for anything but test inputs.
#[derive(Clone, Debug)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator from `seed` (0, which xorshift cannot leave, is replaced by a constant).
    pub const fn new(seed: u64) -> XorShift64 {
        XorShift64(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// The next 32 bits (the high half: xorshift's low bits are its weakest).
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// The next byte.
    pub fn next_u8(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }

    /// Fills `buf` with the next bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        buf.iter_mut().for_each(|b| *b = self.next_u8());
    }

    /// An endless stream of bytes (collect a `take(n)` for a buffer).
    pub fn bytes(mut self) -> impl Iterator<Item = u8> {
        core::iter::from_fn(move || Some(self.next_u8()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_not_constant() {
        let a: [u8; 64] = core::array::from_fn({
            let mut g = XorShift64::new(7);
            move |_| g.next_u8()
        });
        let mut b = [0u8; 64];
        XorShift64::new(7).fill(&mut b);
        assert_eq!(a, b);
        assert!(a.iter().any(|&x| x != a[0]));
        let mut z = XorShift64::new(0);
        assert_ne!(z.next_u64(), 0);
        assert_ne!(XorShift64::new(1).next_u64(), XorShift64::new(2).next_u64());
    }
}

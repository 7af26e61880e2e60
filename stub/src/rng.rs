//! Random bytes for KASLR and the kernel's RNG seed.
//!
//! Source order: the platform's (EFI_RNG_PROTOCOL, default algorithm; none without firmware), else RDRAND when `CPUID.1:ECX[30]` says the
//! CPU has it (retried, as Intel recommends), else a TSC-derived value. The TSC fallback is weak:
//! the time since reset is partly predictable (boot timing varies by milliseconds, a few bits to a
//! few tens of bits of entropy), so it only defeats fixed-address attacks, not an attacker who can
//! model the boot. With `efi=debug` the stub says which source it used. The kernel's
//! `SETUP_RNG_SEED` node is written only from EFI_RNG_PROTOCOL or RDRAND bytes, never from the
//! TSC fallback (the kernel may credit boot-loader randomness as entropy).

/// Where the bytes came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    EfiRng,
    Rdrand,
    Tsc,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::EfiRng => "EFI_RNG_PROTOCOL",
            Source::Rdrand => "RDRAND (no EFI_RNG_PROTOCOL)",
            Source::Tsc => "TSC (no EFI_RNG_PROTOCOL, no RDRAND: weak)",
        }
    }
}

use zboot_stub::arch::current::cpu;

/// The random bytes of one boot: two KASLR words and the kernel's 32-byte seed.
pub struct Random {
    bytes: [u8; 64],
    pub source: Source,
}

impl Random {
    /// 64 bytes from the best available source: `firmware` (the platform's random service,
    /// `false` when it has none or it failed), else the CPU's.
    pub fn take(firmware: impl FnOnce(&mut [u8]) -> bool) -> Random {
        let mut bytes = [0u8; 64];
        let source = if firmware(&mut bytes) {
            Source::EfiRng
        } else {
            fill_from_cpu(&mut bytes)
        };
        Random { bytes, source }
    }

    /// The KASLR words (physical slot, virtual displacement).
    pub fn kaslr_seeds(&self) -> [u64; 2] {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&self.bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        [word(0), word(1)]
    }

    /// The bytes for the kernel's `SETUP_RNG_SEED`: none from the weak TSC fallback.
    pub fn kernel_seed(&self) -> Option<&[u8]> {
        (self.source != Source::Tsc).then_some(&self.bytes[32..])
    }
}

/// Fill `out` from the CPU: its random instruction, else its counter (weak).
fn fill_from_cpu(out: &mut [u8]) -> Source {
    if cpu::has_random_instruction()
        && out
            .chunks_mut(8)
            .all(|c| cpu::random_word().map(|v| put(c, v)).is_some())
    {
        return Source::Rdrand;
    }
    let mut state = cpu::counter();
    for c in out.chunks_mut(8) {
        // splitmix64 over counter readings taken at different times: spreads the bits, adds
        // none.
        state = state
            .wrapping_add(cpu::counter())
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        put(c, z ^ (z >> 31));
    }
    Source::Tsc
}

fn put(c: &mut [u8], v: u64) {
    let n = c.len();
    c.copy_from_slice(&v.to_le_bytes()[..n]);
}

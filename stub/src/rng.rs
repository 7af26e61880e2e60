//! Random bytes for KASLR and the kernel's RNG seed.
//!
//! Source order: EFI_RNG_PROTOCOL (default algorithm; not without firmware), else RDRAND when CPUID.1:ECX[30] says the
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

/// The random bytes of one boot: two KASLR words and the kernel's 32-byte seed.
pub struct Random {
    bytes: [u8; 64],
    pub source: Source,
}

impl Random {
    /// 64 bytes from the best available source.
    pub fn take() -> Random {
        let mut bytes = [0u8; 64];
        let source = fill(&mut bytes);
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

/// Fill `out` from the best available source.
fn fill(out: &mut [u8]) -> Source {
    if !crate::bare::active() && efi_rng(out) {
        return Source::EfiRng;
    }
    if has_rdrand()
        && out
            .chunks_mut(8)
            .all(|c| rdrand64().map(|v| put(c, v)).is_some())
    {
        return Source::Rdrand;
    }
    let mut state = tsc();
    for c in out.chunks_mut(8) {
        // splitmix64 over TSC readings taken at different times: spreads the bits, adds none.
        state = state
            .wrapping_add(tsc())
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

fn efi_rng(out: &mut [u8]) -> bool {
    use uefi::proto::rng::Rng;
    let Ok(handle) = uefi::boot::get_handle_for_protocol::<Rng>() else {
        return false;
    };
    let Ok(mut rng) = crate::memory::get_protocol::<Rng>(handle) else {
        return false;
    };
    rng.get_rng(None, out).is_ok()
}

fn has_rdrand() -> bool {
    // CPUID leaf 1 exists on every x86_64 CPU.
    core::arch::x86_64::__cpuid(1).ecx & (1 << 30) != 0
}

fn rdrand64() -> Option<u64> {
    for _ in 0..10 {
        let mut v = 0u64;
        // SAFETY: only called when CPUID reports RDRAND (the intrinsic's target feature).
        if unsafe { core::arch::x86_64::_rdrand64_step(&mut v) } == 1 {
            return Some(v);
        }
    }
    None
}

fn tsc() -> u64 {
    // SAFETY: RDTSC has no memory effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

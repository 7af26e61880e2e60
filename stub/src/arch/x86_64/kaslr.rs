//! KASLR: where the kernel goes, as pure functions of a seed and the free memory.
//!
//! Physical: like drivers/firmware/efi/libstub/randomalloc.c `efi_random_alloc`, every
//! `align`-aligned slot of `mem_size` bytes that lies entirely inside one free range (EFI
//! conventional memory) between `min` (LOAD_PHYSICAL_ADDR) and `max` is counted, and the seed
//! picks one uniformly. Virtual: like arch/x86/boot/compressed/kaslr.c `find_random_virt_addr`,
//! a virtual address in `[LOAD_PHYSICAL_ADDR, KERNEL_IMAGE_SIZE - mem_size]` (multiple of the
//! alignment) is chosen; the relocation delta is `virt - LOAD_PHYSICAL_ADDR`. The pipelines
//! only gather the inputs ([`Plan`]) and take the chosen slot (AllocateAddress, or the e820 map).

/// `KERNEL_IMAGE_SIZE` with KASLR (arch/x86/include/asm/page_64_types.h): the kernel text
/// mapping window is 1 GiB.
pub use zboot_format::X86_KERNEL_IMAGE_SIZE as KERNEL_IMAGE_SIZE;

/// Highest physical end the stub places a randomized kernel below: the 4-level paging limit
/// (`MAXMEM_X86_64_4LEVEL`, 64 TiB), so that a kernel that stays in 4-level mode reaches it.
pub const PHYS_MAX: u64 = 1 << 46;

/// Where to put the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Exactly the preferred (link-time) physical address.
    Preferred,
    /// The `index`-th of the `count` free aligned slots (randomized).
    Slot { index: u64 },
}

/// Choose a placement. `seed` is `None` when randomization is off (`nokaslr`,
/// `mem=`/`memmap=`/`hugepages=`); `slots` is the number of free aligned slots.
pub fn choose(seed: Option<u64>, slots: u64) -> Placement {
    match seed {
        Some(s) if slots > 0 => Placement::Slot {
            index: pick(s, slots),
        },
        _ => Placement::Preferred,
    }
}

/// Uniform index in `0..n` from a 64-bit random value (multiply-shift, no modulo bias worth
/// mentioning for n << 2^64). `n` must be > 0.
pub const fn pick(seed: u64, n: u64) -> u64 {
    ((seed as u128 * n as u128) >> 64) as u64
}

/// A free physical range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeRange {
    pub start: u64,
    pub end: u64,
}

/// Constraints on a physical slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRules {
    /// Bytes the kernel needs.
    pub size: u64,
    /// Alignment of the base (power of two).
    pub align: u64,
    /// Lowest base (LOAD_PHYSICAL_ADDR).
    pub min: u64,
    /// Highest end (exclusive).
    pub max: u64,
}

/// Number of aligned slots inside `r` that obey `rules`.
fn slots_in(r: FreeRange, rules: &SlotRules) -> u64 {
    if rules.size == 0 || !rules.align.is_power_of_two() {
        return 0;
    }
    let Some(first) = r.start.max(rules.min).checked_next_multiple_of(rules.align) else {
        return 0;
    };
    let end = r.end.min(rules.max);
    match first.checked_add(rules.size) {
        Some(last_end) if last_end <= end => (end - last_end) / rules.align + 1,
        _ => 0,
    }
}

/// Total number of slots over `ranges`.
pub fn count_slots(ranges: &[FreeRange], rules: &SlotRules) -> u64 {
    ranges.iter().map(|&r| slots_in(r, rules)).sum()
}

/// Base address of slot `index` (in the order of `ranges`), `None` if out of range.
pub fn slot_address(ranges: &[FreeRange], rules: &SlotRules, mut index: u64) -> Option<u64> {
    for &r in ranges {
        let n = slots_in(r, rules);
        if index < n {
            let first = r.start.max(rules.min).next_multiple_of(rules.align);
            return Some(first + index * rules.align);
        }
        index -= n;
    }
    None
}

/// A random physical base for the kernel, `None` when no slot exists.
pub fn random_phys(ranges: &[FreeRange], rules: &SlotRules, seed: u64) -> Option<u64> {
    match choose(Some(seed), count_slots(ranges, rules)) {
        Placement::Slot { index } => slot_address(ranges, rules, index),
        Placement::Preferred => None,
    }
}

/// Number of virtual positions for a kernel of `mem_size` bytes linked at `link_phys`
/// (LOAD_PHYSICAL_ADDR) with alignment `align` inside the 1 GiB window (0 if it does not fit).
pub fn virt_slots(link_phys: u64, mem_size: u64, align: u64) -> u64 {
    if !align.is_power_of_two() {
        return 0;
    }
    match KERNEL_IMAGE_SIZE.checked_sub(link_phys.saturating_add(mem_size)) {
        Some(room) => room / align + 1,
        None => 0,
    }
}

/// The virtual relocation delta (`virt_addr - LOAD_PHYSICAL_ADDR`): a multiple of `align` in
/// `[0, KERNEL_IMAGE_SIZE - link_phys - mem_size]`, chosen by `seed`. 0 without a seed or
/// when the kernel does not fit the window with room to move.
pub fn virt_delta(seed: Option<u64>, link_phys: u64, mem_size: u64, align: u64) -> u64 {
    let n = virt_slots(link_phys, mem_size, align);
    match seed {
        Some(s) if n > 0 => pick(s, n) * align,
        _ => 0,
    }
}

/// Why the physical placement is what it is (for `efi=debug` and the docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhysPolicy {
    /// Random slot.
    Random,
    /// `nokaslr`, or `mem=`/`memmap=`/`hugepages=`: the preferred address when free.
    Preferred,
}

/// The KASLR decisions from the command line and the payload: (physical policy, whether the
/// virtual address is randomized). `nokaslr` turns both off; `mem=`/`memmap=`/`hugepages=`
/// only the physical part (the kernel's view of memory may differ from the firmware's); no
/// relocation table means physical only.
pub fn policy(nokaslr: bool, no_phys: bool, has_relocs: bool) -> (PhysPolicy, bool) {
    if nokaslr {
        return (PhysPolicy::Preferred, false);
    }
    let phys = if no_phys {
        PhysPolicy::Preferred
    } else {
        PhysPolicy::Random
    };
    (phys, has_relocs)
}

/// Both KASLR decisions for one boot, made once from the command line, the payload and two
/// random words; both pipelines place and relocate the kernel by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// How the physical slot is chosen.
    pub phys: PhysPolicy,
    /// The seed that picks the physical slot (with [`PhysPolicy::Random`]).
    pub phys_seed: u64,
    /// Whether the virtual address is randomized.
    pub virt_random: bool,
    /// The relocation displacement (0 unless `virt_random`).
    pub delta: u64,
}

impl Plan {
    /// The plan for `h` under the command line's `opts`, from the random words `seeds`
    /// (physical, virtual).
    pub fn new(
        opts: &crate::cmdline::Options,
        h: &zboot_format::header::PayloadHeader,
        seeds: [u64; 2],
    ) -> Plan {
        let has_relocs = h.flags.has(zboot_format::Flags::RELOCS);
        let (phys, virt_random) = policy(opts.nokaslr, opts.no_phys_kaslr, has_relocs);
        let delta = virt_delta(
            virt_random.then_some(seeds[1]),
            h.preferred_address,
            h.mem_size,
            h.alignment,
        );
        Plan {
            phys,
            phys_seed: seeds[0],
            virt_random,
            delta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn rules(size: u64) -> SlotRules {
        SlotRules {
            size,
            align: 2 * MIB,
            min: 16 * MIB,
            max: PHYS_MAX,
        }
    }

    #[test]
    fn choice_is_bounded_and_deterministic() {
        assert_eq!(choose(None, 10), Placement::Preferred);
        assert_eq!(choose(Some(7), 0), Placement::Preferred);
        for seed in [0, 1, u64::MAX / 3, u64::MAX] {
            let Placement::Slot { index } = choose(Some(seed), 10) else {
                panic!()
            };
            assert!(index < 10);
            assert_eq!(choose(Some(seed), 10), Placement::Slot { index });
        }
        assert_eq!(choose(Some(u64::MAX), 10), Placement::Slot { index: 9 });
        assert_eq!(choose(Some(0), 10), Placement::Slot { index: 0 });
    }

    #[test]
    fn slots_respect_min_alignment_and_range_ends() {
        let r = rules(6 * MIB);
        // Below min: nothing. Unaligned start rounds up. Exactly fitting ranges count once.
        let ranges = [
            FreeRange {
                start: 0,
                end: 15 * MIB,
            },
            FreeRange {
                start: 15 * MIB,
                end: 24 * MIB,
            }, // slots at 16, 18 (end 22, 24)
            FreeRange {
                start: 33 * MIB,
                end: 41 * MIB,
            }, // 34 (end 40)
            FreeRange {
                start: 50 * MIB,
                end: 55 * MIB,
            }, // too small
        ];
        assert_eq!(count_slots(&ranges, &r), 3);
        assert_eq!(slot_address(&ranges, &r, 0), Some(16 * MIB));
        assert_eq!(slot_address(&ranges, &r, 1), Some(18 * MIB));
        assert_eq!(slot_address(&ranges, &r, 2), Some(34 * MIB));
        assert_eq!(slot_address(&ranges, &r, 3), None);
        // The max cap cuts the last slot.
        let capped = SlotRules { max: 23 * MIB, ..r };
        assert_eq!(count_slots(&ranges, &capped), 1);
        // Degenerate inputs never panic.
        let huge = FreeRange {
            start: u64::MAX - MIB,
            end: u64::MAX,
        };
        assert_eq!(count_slots(&[huge], &r), 0);
        assert_eq!(count_slots(&ranges, &SlotRules { size: 0, ..r }), 0);
        assert_eq!(count_slots(&ranges, &SlotRules { align: 3, ..r }), 0);
    }

    #[test]
    fn every_random_slot_is_valid_and_all_are_reachable() {
        let r = rules(64 * MIB);
        let ranges = [
            FreeRange {
                start: 0x100000,
                end: 0x7f00_0000,
            },
            FreeRange {
                start: 0x1_0000_0000,
                end: 0x1_8000_0000,
            },
        ];
        let n = count_slots(&ranges, &r);
        assert!(n > 1000);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..20_000u64 {
            let seed = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let base = random_phys(&ranges, &r, seed).unwrap();
            assert_eq!(base % r.align, 0);
            assert!(base >= r.min);
            assert!(
                ranges
                    .iter()
                    .any(|f| base >= f.start && base + r.size <= f.end)
            );
            seen.insert(base);
        }
        // Uniform-ish: a large share of the slots is hit.
        assert!(seen.len() as u64 > n / 2, "{} of {n}", seen.len());
        // First and last slot are reachable.
        assert_eq!(random_phys(&ranges, &r, 0), slot_address(&ranges, &r, 0));
        assert_eq!(
            random_phys(&ranges, &r, u64::MAX),
            slot_address(&ranges, &r, n - 1)
        );
    }

    #[test]
    fn virt_delta_stays_in_the_window() {
        let link = 16 * MIB;
        let size = 64 * MIB;
        let n = virt_slots(link, size, 2 * MIB);
        assert_eq!(n, (KERNEL_IMAGE_SIZE - link - size) / (2 * MIB) + 1);
        assert_eq!(virt_delta(None, link, size, 2 * MIB), 0);
        assert_eq!(virt_delta(Some(0), link, size, 2 * MIB), 0);
        let top = virt_delta(Some(u64::MAX), link, size, 2 * MIB);
        assert_eq!(top, KERNEL_IMAGE_SIZE - link - size);
        for i in 0..5000u64 {
            let d = virt_delta(
                Some(i.wrapping_mul(0x2545_f491_4f6c_dd1d)),
                link,
                size,
                2 * MIB,
            );
            assert_eq!(d % (2 * MIB), 0);
            assert!(link + d + size <= KERNEL_IMAGE_SIZE);
        }
        // Too big for the window: no virtual randomization.
        assert_eq!(virt_slots(link, KERNEL_IMAGE_SIZE, 2 * MIB), 0);
        assert_eq!(virt_delta(Some(12345), link, KERNEL_IMAGE_SIZE, 2 * MIB), 0);
    }

    #[test]
    fn policy_from_options() {
        assert_eq!(policy(false, false, true), (PhysPolicy::Random, true));
        assert_eq!(policy(false, false, false), (PhysPolicy::Random, false));
        assert_eq!(policy(false, true, true), (PhysPolicy::Preferred, true));
        assert_eq!(policy(true, false, true), (PhysPolicy::Preferred, false));
        assert_eq!(policy(true, true, false), (PhysPolicy::Preferred, false));
    }
}

//! Where the kernel goes in physical memory: one policy over any platform's memory.
//!
//! The slot arithmetic follows drivers/firmware/efi/libstub/randomalloc.c `efi_random_alloc`:
//! every `align`-aligned slot of `size` bytes that lies entirely inside one free range between
//! `min` (LOAD_PHYSICAL_ADDR) and `max` is counted, and a random word picks one uniformly.
//! [`place`] is the order both platforms follow (EFI: AllocatePages; bare: the loader's e820
//! map): a random slot, else the preferred address, else the lowest free aligned slot above it
//! (the mainline stub's `efi_random_alloc` with seed 0), else whatever aligned room the
//! platform has left.

use alloc::vec::Vec;

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

/// Physical memory the kernel can be placed in: a platform's view of what is free.
pub trait PhysMemory {
    /// A claimed range, the platform's to free or hand over.
    type Claim;
    /// Why the memory could not be read or claimed at all.
    type Error;
    /// The free ranges, sorted by address.
    fn free_ranges(&mut self) -> Result<Vec<FreeRange>, Self::Error>;
    /// Exactly `[at, at + size)`, when it is free.
    fn claim_at(&mut self, at: u64, size: u64) -> Option<Self::Claim>;
    /// Any `align`-aligned `size` bytes the platform still has (the last resort): the claim
    /// and its address.
    fn claim_aligned(&mut self, size: u64, align: u64) -> Result<(Self::Claim, u64), Self::Error>;
}

/// How the kernel's address was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// A random slot (physical KASLR).
    Random,
    /// The preferred (link-time) address.
    Preferred,
    /// The lowest free aligned slot above the preferred address.
    LowestSlot,
    /// The platform's last resort ([`PhysMemory::claim_aligned`]).
    Anywhere,
}

/// A placed kernel.
pub struct Placed<C> {
    pub claim: C,
    pub at: u64,
    pub how: How,
}

/// Place `rules.size` bytes by the one policy: a random slot when `seed` is given (physical
/// KASLR), else, or when that slot cannot be claimed, the `preferred` address, else the lowest
/// free aligned slot (`rules.min` is the preferred address), else the platform's last resort.
pub fn place<M: PhysMemory>(
    mem: &mut M,
    rules: &SlotRules,
    preferred: u64,
    seed: Option<u64>,
) -> Result<Placed<M::Claim>, M::Error> {
    let ranges = mem.free_ranges()?;
    let take = |mem: &mut M, at: u64, how: How| {
        mem.claim_at(at, rules.size)
            .map(|claim| Placed { claim, at, how })
    };
    if let Some(seed) = seed
        && let Some(at) = random_phys(&ranges, rules, seed)
        && let Some(p) = take(mem, at, How::Random)
    {
        return Ok(p);
    }
    if let Some(p) = take(mem, preferred, How::Preferred) {
        return Ok(p);
    }
    if let Some(at) = slot_address(&ranges, rules, 0)
        && let Some(p) = take(mem, at, How::LowestSlot)
    {
        return Ok(p);
    }
    let (claim, at) = mem.claim_aligned(rules.size, rules.align)?;
    Ok(Placed {
        claim,
        at,
        how: How::Anywhere,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const PHYS_MAX: u64 = 1 << 46;

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

    /// A platform's memory as both platforms behave: claims only inside free ranges, and a
    /// set of addresses whose claim fails anyway (EDK2 refusing an AllocateAddress).
    struct Fake {
        free: Vec<FreeRange>,
        refuse: Vec<u64>,
        claimed: Vec<(u64, u64)>,
        last_resort: Option<u64>,
        map_fails: bool,
    }

    impl Fake {
        fn new(free: &[(u64, u64)]) -> Fake {
            Fake {
                free: free
                    .iter()
                    .map(|&(start, end)| FreeRange { start, end })
                    .collect(),
                refuse: Vec::new(),
                claimed: Vec::new(),
                last_resort: None,
                map_fails: false,
            }
        }
    }

    impl PhysMemory for Fake {
        type Claim = u64;
        type Error = &'static str;
        fn free_ranges(&mut self) -> Result<Vec<FreeRange>, &'static str> {
            if self.map_fails {
                return Err("no map");
            }
            Ok(self.free.clone())
        }
        fn claim_at(&mut self, at: u64, size: u64) -> Option<u64> {
            let free = self
                .free
                .iter()
                .any(|r| at >= r.start && at + size <= r.end);
            let taken = self
                .claimed
                .iter()
                .any(|&(a, s)| at < a + s && a < at + size);
            (free && !taken && !self.refuse.contains(&at)).then(|| {
                self.claimed.push((at, size));
                at
            })
        }
        fn claim_aligned(&mut self, _size: u64, align: u64) -> Result<(u64, u64), &'static str> {
            let at = self.last_resort.ok_or("no memory")?;
            assert_eq!(at % align, 0);
            Ok((at, at))
        }
    }

    #[test]
    fn a_random_slot_when_seeded_the_preferred_address_when_not() {
        let r = rules(8 * MIB);
        let mut m = Fake::new(&[(0, 512 * MIB)]);
        let p = place(&mut m, &r, 16 * MIB, Some(u64::MAX)).unwrap();
        assert_eq!(p.how, How::Random);
        assert_eq!(
            p.at,
            slot_address(&m.free, &r, count_slots(&m.free, &r) - 1).unwrap()
        );
        let p = place(&mut m, &r, 16 * MIB, None).unwrap();
        assert_eq!((p.how, p.at), (How::Preferred, 16 * MIB));
    }

    #[test]
    fn a_refused_random_slot_falls_back_to_the_preferred_address() {
        // EFI: AllocateAddress can refuse a slot the map calls free; bare: never. Both then
        // take the preferred address, as the mainline stub does.
        let r = rules(8 * MIB);
        let mut m = Fake::new(&[(0, 512 * MIB)]);
        let want = random_phys(&m.free.clone(), &r, u64::MAX / 2).unwrap();
        assert_ne!(want, 16 * MIB);
        m.refuse.push(want);
        let p = place(&mut m, &r, 16 * MIB, Some(u64::MAX / 2)).unwrap();
        assert_eq!((p.how, p.at), (How::Preferred, 16 * MIB));
    }

    #[test]
    fn a_busy_preferred_address_gives_the_lowest_aligned_slot_above_it() {
        let r = rules(8 * MIB);
        // 16..20 MiB taken by something else: the first slot that fits is at 20 MiB... in a
        // range that starts at 19 MiB, so the lowest aligned one is 20 MiB.
        let mut m = Fake::new(&[(0, 16 * MIB), (19 * MIB, 64 * MIB)]);
        let p = place(&mut m, &r, 16 * MIB, None).unwrap();
        assert_eq!((p.how, p.at), (How::LowestSlot, 20 * MIB));
        // Nothing aligned fits above min: the platform's last resort.
        let mut m = Fake::new(&[(0, 16 * MIB)]);
        m.last_resort = Some(4 * MIB);
        let p = place(&mut m, &r, 16 * MIB, Some(7)).unwrap();
        assert_eq!((p.how, p.at), (How::Anywhere, 4 * MIB));
    }

    #[test]
    fn no_room_and_no_map_are_errors() {
        let r = rules(8 * MIB);
        let mut m = Fake::new(&[(0, 16 * MIB)]);
        assert_eq!(
            place(&mut m, &r, 16 * MIB, Some(1)).err(),
            Some("no memory")
        );
        m.map_fails = true;
        assert_eq!(place(&mut m, &r, 16 * MIB, None).err(), Some("no map"));
    }
}

//! Placement choice as a pure function of a seed (physical KASLR is designed in, not yet on:
//! the pipeline calls [`choose`] with `seed = None` and loads at the preferred address when it
//! can, anywhere 2 MiB aligned otherwise).

/// Where to put the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Exactly the preferred (link-time) physical address.
    Preferred,
    /// The `index`-th of the `count` free aligned slots (randomized).
    Slot { index: u64 },
}

/// Choose a placement. `seed` is `None` without an RNG or when randomization is off
/// (`nokaslr`, `mem=`/`memmap=`/`hugepages=`); `slots` is the number of free aligned slots.
pub fn choose(seed: Option<u64>, slots: u64) -> Placement {
    match seed {
        Some(s) if slots > 0 => Placement::Slot {
            // Multiply-shift keeps the distribution uniform for any slot count.
            index: ((s as u128 * slots as u128) >> 64) as u64,
        },
        _ => Placement::Preferred,
    }
}

/// The virtual relocation delta for a kernel linked at `link_phys` and placed at virtual
/// offset `virt_offset` (0 = no virtual randomization). Relocations are applied with it.
pub const fn virt_delta(virt_offset: u64) -> u64 {
    virt_offset
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(virt_delta(0), 0);
    }
}

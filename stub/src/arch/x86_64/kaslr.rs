//! x86_64 KASLR decisions: the physical policy from the command line and the virtual
//! displacement, as pure functions of a seed ([`Plan`]). The physical slot itself is chosen by
//! the architecture-neutral [`crate::placement`] (the pipeline's `place_kernel`, over either
//! platform's memory).
//!
//! Virtual: like arch/x86/boot/compressed/kaslr.c `find_random_virt_addr`, a virtual address in
//! `[LOAD_PHYSICAL_ADDR, KERNEL_IMAGE_SIZE - mem_size]` (multiple of the alignment) is chosen;
//! the relocation delta is `virt - LOAD_PHYSICAL_ADDR`.

use crate::placement::pick;

/// `KERNEL_IMAGE_SIZE` with KASLR (arch/x86/include/asm/page_64_types.h): the kernel text
/// mapping window is 1 GiB.
pub use zboot_format::X86_KERNEL_IMAGE_SIZE as KERNEL_IMAGE_SIZE;

/// Highest physical end the stub places a randomized kernel below: the 4-level paging limit
/// (`MAXMEM_X86_64_4LEVEL`, 64 TiB), so that a kernel that stays in 4-level mode reaches it.
pub const PHYS_MAX: u64 = 1 << 46;

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

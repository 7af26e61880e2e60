//! 5-level paging (LA57): whether to switch, and the data the switch trampoline reads.
//!
//! Toggling CR4.LA57 is only possible with paging off, which on x86_64 means leaving long mode
//! for 32-bit protected mode: the code doing it and the new root table must sit below 4 GiB
//! (Linux: drivers/firmware/efi/libstub/x86-5lvl.c, arch/x86/boot/compressed/head_64.S
//! `trampoline_32bit_src`; this is our own sequence, in `handoff.rs`). The stub allocates, before
//! ExitBootServices and through EFI, one code page (`LOADER_CODE`, below 4 GiB, then made
//! read-only + executable with the memory attribute protocol) and two data pages (`LOADER_DATA`,
//! below 4 GiB: the variables + GDT page, and the new root table page). After ExitBootServices
//! the data pages are filled by [`fill_vars`]/[`pml5_entry`] and the trampoline switches and
//! jumps into the kernel; it never returns.
//!
//! Enabling: the new root is a PML5 whose entry 0 points at the firmware's PML4, so the identity
//! map (everything below 256 TiB) is unchanged. Disabling (firmware already in 5-level mode and
//! the kernel without LA57 support, or `no5lvl`): the new root is the PML4 that PML5 entry 0
//! points at, copied below 4 GiB when it is not there already.

/// CR4.LA57.
pub const CR4_LA57: u64 = 1 << 12;
/// Present | writable: the flags of the one PML5 entry.
pub const PTE_TABLE: u64 = 0x3;
/// Physical address bits of a paging-structure entry (bits 12..51).
pub const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Segment selectors in the trampoline GDT. 0x10/0x18 are the Linux boot protocol's
/// `__BOOT_CS`/`__BOOT_DS`, so the kernel is entered with the flat segments it documents.
pub const SEL_CODE32: u16 = 0x08;
pub const SEL_CODE64: u16 = 0x10;
pub const SEL_DATA: u16 = 0x18;

/// The trampoline GDT: null, 32-bit code, 64-bit code, data; flat 4 GiB, DPL 0, accessed bits
/// preset so that the CPU never writes the table.
pub const GDT: [u64; 4] = [
    0,
    0x00cf_9b00_0000_ffff, // code, D=1 (32-bit)
    0x00af_9b00_0000_ffff, // code, L=1 (64-bit)
    0x00cf_9300_0000_ffff, // data
];

/// Byte offsets in the variables page (shared with the assembly in `handoff.rs`).
pub mod vars {
    /// The GDT (32 bytes).
    pub const GDT: usize = 0x00;
    /// GDTR: u16 limit, u64 base.
    pub const GDTR: usize = 0x20;
    /// u32: new CR3 (below 4 GiB).
    pub const NEW_CR3: usize = 0x30;
    /// u32: CR4.LA57 value to set (0 or 0x1000).
    pub const LA57: usize = 0x38;
    /// m16:32 far pointer back to 64-bit code: u32 offset, u16 selector.
    pub const FAR64: usize = 0x40;
    /// u64: kernel entry.
    pub const ENTRY: usize = 0x48;
    /// u64: boot_params.
    pub const BOOT_PARAMS: usize = 0x50;
    /// Bytes used.
    pub const SIZE: usize = 0x58;
}

/// What to do with the paging mode before entering the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// Keep the firmware's mode.
    None,
    /// 4-level -> 5-level.
    Enable,
    /// 5-level -> 4-level.
    Disable,
}

/// The inputs of the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// CPUID.(EAX=7,ECX=0):ECX\[16\].
    pub cpu_la57: bool,
    /// CR4.LA57 now (the firmware's mode).
    pub cr4_la57: bool,
    /// The payload says the kernel can run with 5-level paging (`Flags::LA57`).
    pub kernel_la57: bool,
    /// `no5lvl` on the command line.
    pub no5lvl: bool,
}

/// Want 5-level exactly when the CPU and the kernel support it and `no5lvl` is absent; switch
/// when that differs from the current mode.
pub fn decide(f: Facts) -> Switch {
    let want = f.cpu_la57 && f.kernel_la57 && !f.no5lvl;
    match (want, f.cr4_la57) {
        (true, false) => Switch::Enable,
        (false, true) => Switch::Disable,
        _ => Switch::None,
    }
}

/// Entry 0 of the new PML5 when enabling: the current root (CR3 without its flag bits).
pub const fn pml5_entry(cr3: u64) -> u64 {
    (cr3 & PTE_ADDR) | PTE_TABLE
}

/// Fill the variables page (`page.len() >= vars::SIZE`, at physical `page_addr`).
pub fn fill_vars(
    page: &mut [u8],
    page_addr: u64,
    new_cr3: u32,
    switch: Switch,
    ret64: u32,
    entry: u64,
    boot_params: u64,
) {
    for (i, d) in GDT.iter().enumerate() {
        page[vars::GDT + 8 * i..][..8].copy_from_slice(&d.to_le_bytes());
    }
    let limit = (size_of_val(&GDT) - 1) as u16;
    page[vars::GDTR..][..2].copy_from_slice(&limit.to_le_bytes());
    page[vars::GDTR + 2..][..8].copy_from_slice(&(page_addr + vars::GDT as u64).to_le_bytes());
    page[vars::NEW_CR3..][..4].copy_from_slice(&new_cr3.to_le_bytes());
    let la57 = if switch == Switch::Enable {
        CR4_LA57 as u32
    } else {
        0
    };
    page[vars::LA57..][..4].copy_from_slice(&la57.to_le_bytes());
    page[vars::FAR64..][..4].copy_from_slice(&ret64.to_le_bytes());
    page[vars::FAR64 + 4..][..2].copy_from_slice(&SEL_CODE64.to_le_bytes());
    page[vars::ENTRY..][..8].copy_from_slice(&entry.to_le_bytes());
    page[vars::BOOT_PARAMS..][..8].copy_from_slice(&boot_params.to_le_bytes());
}

/// Whether the page tables at `cr3` (`levels` 4 or 5) map the virtual page of `addr` to the
/// same physical page, present: what a bzImage entry checks before it reads an address the
/// loader gave it (reading an unmapped one faults, and with no IDT the machine resets). `read`
/// returns the 8-byte entry at a physical address; it is called only for entries of tables the
/// walk reached, at most `levels` times. Upper-half (and non-canonical) addresses are not.
pub fn maps_identity(cr3: u64, levels: u32, addr: u64, read: impl Fn(u64) -> u64) -> bool {
    const PRESENT: u64 = 1;
    const LARGE: u64 = 1 << 7;
    if !(4..=5).contains(&levels) || addr >> (12 + 9 * levels - 1) != 0 {
        return false;
    }
    let mut table = cr3 & PTE_ADDR;
    for level in (1..=levels).rev() {
        let shift = 12 + 9 * (level - 1);
        let e = read(table + ((addr >> shift) & 511) * 8);
        if e & PRESENT == 0 {
            return false;
        }
        if level == 1 || (level <= 3 && e & LARGE != 0) {
            // A 4 KiB page, or a 2 MiB / 1 GiB one (its address bits below `shift` are flags).
            let page = 1u64 << shift;
            return e & PTE_ADDR & !(page - 1) == addr & !(page - 1);
        }
        table = e & PTE_ADDR;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::maps_identity;

    /// Tables at 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD), 0x4000 (PT): 0..2 MiB in 4 KiB
    /// pages but page 0x5000 absent, 2..4 MiB one 2 MiB page, 1..2 GiB one 1 GiB page, and
    /// 4..6 MiB mapped somewhere else.
    fn entry(at: u64) -> u64 {
        match at {
            0x1000 => 0x2000 | 3,
            0x2000 => 0x3000 | 3,
            0x2008 => 0x4000_0000 | 0x83,
            0x3000 => 0x4000 | 3,
            0x3008 => 0x20_0000 | 0x83,
            0x3010 => 0x80_0000 | 0x83,
            a if (0x4000..0x5000).contains(&a) && a != 0x4028 => ((a - 0x4000) / 8 * 4096) | 3,
            _ => 0,
        }
    }

    #[test]
    fn identity_mapped_pages_only() {
        assert!(maps_identity(0x1000, 4, 0x1234, entry));
        assert!(
            !maps_identity(0x1000, 4, 0x5000, entry),
            "absent 4 KiB page"
        );
        assert!(maps_identity(0x1000, 4, 0x3f_f000, entry), "2 MiB page");
        assert!(
            !maps_identity(0x1000, 4, 0x40_0000, entry),
            "mapped elsewhere"
        );
        assert!(maps_identity(0x1000, 4, 0x7fff_f000, entry), "1 GiB page");
        assert!(
            !maps_identity(0x1000, 4, 0xfed0_0000, entry),
            "not mapped at all"
        );
        assert!(
            !maps_identity(0x1000, 4, 1 << 47, entry),
            "beyond 4-level's lower half"
        );
        assert!(
            !maps_identity(0x1000, 3, 0x1234, entry),
            "no such paging mode"
        );
    }

    use super::*;

    #[test]
    fn decision_table() {
        let f = |cpu, cr4, kernel, no5| Facts {
            cpu_la57: cpu,
            cr4_la57: cr4,
            kernel_la57: kernel,
            no5lvl: no5,
        };
        assert_eq!(decide(f(true, false, true, false)), Switch::Enable);
        assert_eq!(decide(f(true, false, true, true)), Switch::None);
        assert_eq!(decide(f(true, false, false, false)), Switch::None);
        assert_eq!(decide(f(false, false, true, false)), Switch::None);
        assert_eq!(decide(f(true, true, true, false)), Switch::None);
        assert_eq!(decide(f(true, true, false, false)), Switch::Disable);
        assert_eq!(decide(f(true, true, true, true)), Switch::Disable);
    }

    #[test]
    fn root_entry_and_vars() {
        assert_eq!(pml5_entry(0x7fc0_1018), 0x7fc0_1003);
        let mut page = [0u8; 4096];
        fill_vars(
            &mut page,
            0x7000_0000,
            0x7000_1000,
            Switch::Enable,
            0x6000_0040,
            0x1234_5678_9000,
            0x7100_0000,
        );
        let u64_at = |o: usize| u64::from_le_bytes(page[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(page[o..o + 4].try_into().unwrap());
        assert_eq!(u64_at(8 * (SEL_CODE32 as usize / 8)) >> 53 & 3, 0b10); // D=1, L=0
        assert_eq!(u64_at(8 * (SEL_CODE64 as usize / 8)) >> 53 & 3, 0b01); // D=0, L=1
        assert_eq!(u16::from_le_bytes([page[0x20], page[0x21]]), 31);
        assert_eq!(u64_at(vars::GDTR + 2), 0x7000_0000);
        assert_eq!(u32_at(vars::NEW_CR3), 0x7000_1000);
        assert_eq!(u32_at(vars::LA57), 0x1000);
        assert_eq!(u32_at(vars::FAR64), 0x6000_0040);
        assert_eq!(u16::from_le_bytes([page[0x44], page[0x45]]), SEL_CODE64);
        assert_eq!(u64_at(vars::ENTRY), 0x1234_5678_9000);
        assert_eq!(u64_at(vars::BOOT_PARAMS), 0x7100_0000);
        fill_vars(
            &mut page,
            0x7000_0000,
            0x7000_1000,
            Switch::Disable,
            0,
            0,
            0,
        );
        assert_eq!(page[vars::LA57..vars::LA57 + 4], [0; 4]);
    }
}

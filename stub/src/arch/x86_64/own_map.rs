//! The page tables the 32-bit entry builds for itself (`legacy.rs`), in the
//! `zboot_format::image::BARE_TABLES_SIZE` bytes after its stack: the first 4 GiB identity
//! mapped, writable and non-executable in 2 MiB pages, except the stub's own code, mapped
//! read-only + executable in 4 KiB pages. Nothing is ever mapped writable and executable by the
//! entry; before the jump the pipeline makes the kernel's region executable as the kernel needs
//! it ([`kernel_attrs`]).

/// Byte offsets of the tables in the area.
pub const PML4: usize = 0x0000;
pub const PDPT: usize = 0x1000;
/// Four page directories, 2048 contiguous entries for 0..4 GiB.
pub const PD: usize = 0x2000;
/// Two page tables for the 2 MiB pages holding the stub's code.
pub const PT: usize = 0x6000;
/// Bytes of the area.
pub const SIZE: usize = 0x8000;
const _: () = assert!(SIZE == zboot_format::image::BARE_TABLES_SIZE as usize);

/// The highest address + 1 the tables map.
pub const MAPPED: u64 = 1 << 32;

pub const PRESENT: u64 = 1;
pub const WRITABLE: u64 = 1 << 1;
pub const LARGE: u64 = 1 << 7;
pub const NX: u64 = 1 << 63;
const TWO_MIB: u64 = 2 << 20;

/// What the kernel needs of its region, as the payload header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelNeeds {
    /// Writable and executable throughout (a kernel not known to take read-only text).
    Rwx,
    /// `[0, text)` read-only + executable, `[text, nx_end)` writable + non-executable, the rest
    /// writable + executable (`Flags::TEXT_RO`).
    TextRo { text: u64, nx_end: u64 },
}

/// Set the 2 MiB entries of `pd` (the 2048 entries for 0..4 GiB) that cover the kernel's
/// region `[base, base + size)` to what it needs. A 2 MiB page only partly inside a range gets
/// the more permissive attributes (executable wins over non-executable, writable over
/// read-only); entries that point at a page table (the stub's own code) are left alone.
pub fn kernel_attrs(pd: &mut [u64], base: u64, size: u64, needs: KernelNeeds) {
    let first = base / TWO_MIB;
    let last = (base + size).div_ceil(TWO_MIB).min(pd.len() as u64);
    for i in first..last {
        let e = &mut pd[i as usize];
        if *e & LARGE == 0 {
            continue;
        }
        let (lo, hi) = (
            (i * TWO_MIB).saturating_sub(base),
            ((i + 1) * TWO_MIB).saturating_sub(base),
        );
        let (writable, exec) = match needs {
            KernelNeeds::Rwx => (true, true),
            KernelNeeds::TextRo { text, nx_end } => {
                if hi <= text {
                    (false, true)
                } else if lo >= text && hi <= nx_end {
                    (true, false)
                } else {
                    (true, true)
                }
            }
        };
        let addr = *e & super::paging::PTE_ADDR;
        *e = addr
            | PRESENT
            | LARGE
            | if writable { WRITABLE } else { 0 }
            | if exec { 0 } else { NX };
    }
}

/// Make the 4 KiB page at `page` (below 4 GiB) read-only + executable, leaving the rest of its
/// 2 MiB page as it was: a 2 MiB entry of `pd` is first split into the page table `new_pt`
/// (at physical `new_pt_addr`); an entry that already points at a page table has that table
/// (`existing(address)`) edited. Returns whether `new_pt` was used.
pub fn map_code_page(
    pd: &mut [u64],
    page: u64,
    new_pt: &mut [u64; 512],
    new_pt_addr: u64,
    existing: impl FnOnce(u64) -> &'static mut [u64; 512],
) -> bool {
    let i = (page / TWO_MIB) as usize;
    let e = pd[i];
    let addr = super::paging::PTE_ADDR;
    let (pt, used) = if e & LARGE != 0 {
        let base = e & addr & !(TWO_MIB - 1);
        let flags = e & (PRESENT | WRITABLE | NX);
        for (k, slot) in new_pt.iter_mut().enumerate() {
            *slot = (base + k as u64 * 4096) | flags;
        }
        pd[i] = new_pt_addr | PRESENT | WRITABLE;
        (new_pt, true)
    } else {
        (existing(e & addr), false)
    };
    let k = ((page % TWO_MIB) / 4096) as usize;
    pt[k] = (page & !0xfff) | PRESENT;
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> alloc::vec::Vec<u64> {
        (0..2048u64)
            .map(|i| (i * TWO_MIB) | PRESENT | WRITABLE | LARGE | NX)
            .collect()
    }

    #[test]
    fn rwx_kernel_region_becomes_executable_and_nothing_else() {
        let mut pd = fresh();
        pd[3] = 0x1234_5000 | PRESENT | WRITABLE; // a page table: left alone
        kernel_attrs(&mut pd, 0x100_0000, 0x30_0001, KernelNeeds::Rwx);
        assert_eq!(pd[7] & NX, NX);
        for (i, e) in pd.iter().enumerate().take(10).skip(8) {
            assert_eq!(e & (NX | WRITABLE), WRITABLE, "entry {i}");
        }
        assert_eq!(pd[10] & NX, NX);
        assert_eq!(pd[3], 0x1234_5000 | PRESENT | WRITABLE);
    }

    #[test]
    fn text_ro_kernel_gets_read_only_text_and_nx_data() {
        let mut pd = fresh();
        // text 4 MiB, NX up to 7 MiB (the last 2 MiB page straddles 7 MiB: executable), the
        // rest to 10 MiB executable.
        kernel_attrs(
            &mut pd,
            0x100_0000,
            0xa0_0000,
            KernelNeeds::TextRo {
                text: 0x40_0000,
                nx_end: 0x70_0000,
            },
        );
        let attrs = |i: usize| (pd[i] & WRITABLE != 0, pd[i] & NX == 0);
        assert_eq!(attrs(8), (false, true));
        assert_eq!(attrs(9), (false, true));
        assert_eq!(attrs(10), (true, false));
        assert_eq!(attrs(11), (true, true));
        assert_eq!(attrs(12), (true, true));
        assert_eq!(attrs(13), (true, false), "outside the region: untouched");
        assert_eq!(pd[8] & crate::arch::x86_64::paging::PTE_ADDR, 8 * TWO_MIB);
    }

    #[test]
    fn one_code_page_in_a_split_2mib_page() {
        let mut pd = fresh();
        let mut pt = [0u64; 512];
        let used = map_code_page(&mut pd, 0x60_3000, &mut pt, 0x9000, |_| unreachable!());
        assert!(used);
        assert_eq!(pd[3], 0x9000 | PRESENT | WRITABLE);
        assert_eq!(pt[3], 0x60_3000 | PRESENT, "read-only, executable");
        assert_eq!(pt[2], 0x60_2000 | PRESENT | WRITABLE | NX);
        assert_eq!(pt[511], 0x7f_f000 | PRESENT | WRITABLE | NX);
    }
}

//! Memory of a boot without firmware (the bzImage entries): what the loader's e820 map calls RAM,
//! and what is free in it once everything the loader handed over and we ourselves occupy is
//! taken out. Fixed capacity, no heap: the stub's heap is carved out of this map.
//!
//! The e820 map is trusted only as far as it agrees with itself: a range is RAM when an entry
//! says so and no other entry says it is anything else (overlapping entries are taken at their
//! most restrictive), clipped to whole pages.

use crate::placement::FreeRange;
use zboot_format::bootparam::{
    BootParams, E820_MAX_ENTRIES_ZEROPAGE, E820_TYPE_RAM, E820Entry, EFI_LOADER_SIGNATURE_64,
    SETUP_E820_EXT, SETUP_INDIRECT, SetupData,
};
use zboot_format::image::KERNEL_ALIGNMENT;

/// Ranges a map holds; a split that would exceed it drops the smaller piece (less free memory,
/// never memory that is not free).
pub const CAPACITY: usize = 192;
/// The lowest address handed out: the first MiB holds the BIOS data area, the real-mode IVT,
/// EBDA and the loaders' low-memory structures.
pub const LOW_LIMIT: u64 = 0x10_0000;
const PAGE: u64 = 4096;

/// A set of disjoint page-aligned ranges, sorted by address.
#[derive(Clone)]
pub struct RangeSet {
    ranges: [FreeRange; CAPACITY],
    len: usize,
}

impl Default for RangeSet {
    fn default() -> Self {
        RangeSet {
            ranges: [FreeRange { start: 0, end: 0 }; CAPACITY],
            len: 0,
        }
    }
}

impl RangeSet {
    /// The RAM of an e820 map: every `E820_TYPE_RAM` range minus every range of another type.
    pub fn ram(entries: &[E820Entry]) -> RangeSet {
        let mut set = RangeSet::default();
        for e in entries.iter().filter(|e| e.typ == E820_TYPE_RAM) {
            let start = e.addr.next_multiple_of(PAGE);
            let end = e.addr.saturating_add(e.size) & !(PAGE - 1);
            set.add(start, end);
        }
        for e in entries.iter().filter(|e| e.typ != E820_TYPE_RAM) {
            let end = e.addr.saturating_add(e.size);
            set.remove(e.addr, end);
        }
        set
    }

    /// The ranges, sorted and disjoint.
    pub fn ranges(&self) -> &[FreeRange] {
        &self.ranges[..self.len]
    }

    /// Whether `[start, start + len)` lies inside one range (`len` 0 counts as 1 byte).
    pub fn contains(&self, start: u64, len: u64) -> bool {
        let Some(end) = start.checked_add(len.max(1)) else {
            return false;
        };
        self.ranges()
            .iter()
            .any(|r| r.start <= start && end <= r.end)
    }

    /// Bytes from `start` to the end of the range holding it (0 when none does).
    pub fn room_at(&self, start: u64) -> u64 {
        self.ranges()
            .iter()
            .find(|r| r.start <= start && start < r.end)
            .map_or(0, |r| r.end - start)
    }

    /// Add `[start, end)`, merging with neighbours.
    fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut start, mut end) = (start, end);
        // Absorb every range that touches [start, end).
        let mut i = 0;
        while i < self.len {
            let r = self.ranges[i];
            if r.end >= start && r.start <= end {
                start = start.min(r.start);
                end = end.max(r.end);
                self.delete(i);
            } else {
                i += 1;
            }
        }
        let at = self.ranges().partition_point(|r| r.start < start);
        self.insert(at, FreeRange { start, end });
    }

    /// Take `[start, end)` out (rounded outwards to pages).
    pub fn remove(&mut self, start: u64, end: u64) {
        let start = start & !(PAGE - 1);
        let end = end.saturating_add(PAGE - 1) & !(PAGE - 1);
        if start >= end {
            return;
        }
        // One intersecting range at a time, rescanning: an insert into a full set may drop a
        // range elsewhere and shift the indices.
        while let Some(i) = self
            .ranges()
            .iter()
            .position(|r| r.start < end && start < r.end)
        {
            let r = self.ranges[i];
            self.delete(i);
            for piece in [
                FreeRange {
                    start: end.min(r.end),
                    end: r.end,
                },
                FreeRange {
                    start: r.start,
                    end: start.max(r.start),
                },
            ] {
                if piece.start < piece.end {
                    let at = self.ranges().partition_point(|x| x.start < piece.start);
                    self.insert(at, piece);
                }
            }
        }
    }

    /// The highest `align`-aligned `size` bytes that end at or below `max_end` and start at or
    /// above [`LOW_LIMIT`], taken out of the set.
    pub fn take_top(&mut self, size: u64, align: u64, max_end: u64) -> Option<u64> {
        let align = align.max(PAGE);
        let size = size.checked_next_multiple_of(PAGE)?;
        let at = self.ranges().iter().rev().find_map(|r| {
            let end = r.end.min(max_end);
            let start = end.checked_sub(size)? & !(align - 1);
            (start >= r.start.max(LOW_LIMIT)).then_some(start)
        })?;
        self.remove(at, at + size);
        Some(at)
    }

    /// Take exactly `[at, at + size)` when it is free.
    pub fn take_at(&mut self, at: u64, size: u64) -> bool {
        if at < LOW_LIMIT || !self.contains(at, size) {
            return false;
        }
        self.remove(at, at.saturating_add(size));
        true
    }

    fn delete(&mut self, i: usize) {
        self.ranges.copy_within(i + 1..self.len, i);
        self.len -= 1;
    }

    /// Insert at `i`; when full, keep the larger of the new range and the smallest one held.
    fn insert(&mut self, i: usize, r: FreeRange) {
        if self.len == CAPACITY {
            let (small, size) = self
                .ranges()
                .iter()
                .enumerate()
                .map(|(j, x)| (j, x.end - x.start))
                .min_by_key(|&(_, s)| s)
                .unwrap_or((0, 0));
            if size >= r.end - r.start {
                return;
            }
            self.delete(small);
            let i = self.ranges().partition_point(|x| x.start < r.start);
            return self.insert(i, r);
        }
        self.ranges.copy_within(i..self.len, i + 1);
        self.ranges[i] = r;
        self.len += 1;
    }
}

/// Most setup_data nodes followed (a loop in a lying loader's list ends here).
pub const MAX_SETUP_DATA: usize = 64;

/// Why a loader's setup_data list cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupDataError {
    /// A node (header or payload) outside RAM.
    OutsideRam(u64),
    /// More than [`MAX_SETUP_DATA`] nodes (or a loop).
    TooMany,
    /// A SETUP_INDIRECT node (at the first address) whose data `[addr, addr + len)` is not RAM.
    IndirectOutsideRam(u64, u64, u64),
}

impl core::fmt::Display for SetupDataError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SetupDataError::OutsideRam(a) => {
                write!(f, "loader's setup_data node at {a:#x} is not in RAM")
            }
            SetupDataError::TooMany => write!(
                f,
                "loader's setup_data list has more than {MAX_SETUP_DATA} nodes (a loop?)"
            ),
            SetupDataError::IndirectOutsideRam(node, addr, len) => write!(
                f,
                "loader's SETUP_INDIRECT node at {node:#x} names {addr:#x}+{len:#x}, which is not RAM"
            ),
        }
    }
}

/// Walk a setup_data list from `first`, checking each node lies in `ram` before `read` reads its
/// header; calls `visit(address, header)` for each.
pub fn walk_setup_data(
    first: u64,
    ram: &RangeSet,
    read: impl Fn(u64) -> SetupData,
    mut visit: impl FnMut(u64, &SetupData),
) -> Result<(), SetupDataError> {
    let mut at = first;
    for _ in 0..MAX_SETUP_DATA {
        if at == 0 {
            return Ok(());
        }
        if !ram.contains(at, size_of::<SetupData>() as u64) {
            return Err(SetupDataError::OutsideRam(at));
        }
        let node = read(at);
        let total = size_of::<SetupData>() as u64 + u64::from(node.len);
        if !ram.contains(at, total) {
            return Err(SetupDataError::OutsideRam(at));
        }
        visit(at, &node);
        at = node.next;
    }
    if at == 0 {
        Ok(())
    } else {
        Err(SetupDataError::TooMany)
    }
}

/// Most page-table pages [`walk_page_tables`] visits.
pub const MAX_TABLE_PAGES: usize = 1 << 14;

/// Every page-table page that translates the lower half of the address space (where the
/// identity map lives) from `cr3` (4- or 5-level), by calling `table(address)` for each;
/// `read(address)` reads one entry, and only tables inside `ram` are read. The upper half is
/// left out: a kexec'ing kernel's transition tables there may already have been overwritten
/// by the image it copied (they lie in ordinary pages), and nothing we do goes through them.
/// `None` when there are more than [`MAX_TABLE_PAGES`].
pub fn walk_page_tables(
    cr3: u64,
    levels: u32,
    ram: &RangeSet,
    read: &impl Fn(u64) -> u64,
    table: &mut impl FnMut(u64),
) -> Option<()> {
    let mut budget = MAX_TABLE_PAGES;
    let walk = Walk { ram, read };
    walk.level(
        cr3 & super::paging::PTE_ADDR,
        levels,
        256,
        table,
        &mut budget,
    )
}

struct Walk<'a, R> {
    ram: &'a RangeSet,
    read: &'a R,
}

impl<R: Fn(u64) -> u64> Walk<'_, R> {
    /// Visit the table at `at` (a table of `level`) and the tables its first `entries`
    /// entries point to.
    fn level(
        &self,
        at: u64,
        level: u32,
        entries: u64,
        table: &mut impl FnMut(u64),
        budget: &mut usize,
    ) -> Option<()> {
        *budget = budget.checked_sub(1)?;
        table(at);
        if level == 1 || !self.ram.contains(at, PAGE) {
            return Some(());
        }
        for i in 0..entries {
            let e = (self.read)(at + i * 8);
            const PRESENT: u64 = 1;
            const LARGE: u64 = 1 << 7;
            // A large page (PS) maps memory at levels 2 and 3; at 4 and 5 the bit is reserved.
            if e & PRESENT == 0 || (level <= 3 && e & LARGE != 0) {
                continue;
            }
            self.level(e & super::paging::PTE_ADDR, level - 1, 512, table, budget)?;
        }
        Some(())
    }
}

/// Reads the loader's memory: raw pointers in the stub, a fake in tests and the fuzzer. Called
/// only for bytes inside the e820 RAM.
pub trait LoaderMemory {
    fn read(&self, at: u64, out: &mut [u8]);
}

fn read_node(mem: &impl LoaderMemory, at: u64) -> SetupData {
    let mut b = [0u8; 16];
    mem.read(at, &mut b);
    SetupData {
        next: u64::from_le_bytes(b[..8].try_into().unwrap()),
        typ: u32::from_le_bytes(b[8..12].try_into().unwrap()),
        len: u32::from_le_bytes(b[12..].try_into().unwrap()),
    }
}

fn read_u64(mem: &impl LoaderMemory, at: u64) -> u64 {
    let mut b = [0u8; 8];
    mem.read(at, &mut b);
    u64::from_le_bytes(b)
}

/// Most e820 entries read (zero page + SETUP_E820_EXT nodes).
pub const MAX_E820: usize = 512;

/// Why what a loader handed over (64-bit/32-bit/16-bit protocols) cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoverError {
    /// boot_params, command line or initrd outside the e820 RAM.
    Params(crate::arch::x86_64::loader_params::ParamsError),
    /// No e820 entries, or more than the stub reads.
    E820(&'static str),
    /// More entries than the zero page's table holds (`e820_entries` > 128).
    E820Count(u8),
    SetupData(SetupDataError),
    /// Our image (with its stack and tables) is not in the e820 RAM.
    ImageNotRam(u64),
    /// Our image is not at a multiple of the header's `kernel_alignment`.
    ImageMisaligned(u64),
}

impl core::fmt::Display for HandoverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HandoverError::Params(e) => write!(f, "{e}"),
            HandoverError::E820(what) => write!(f, "loader's e820 map: {what}"),
            HandoverError::E820Count(n) => write!(
                f,
                "loader's e820 map: {n} entries in the zero page, which holds {E820_MAX_ENTRIES_ZEROPAGE}"
            ),
            HandoverError::SetupData(e) => write!(f, "{e}"),
            HandoverError::ImageNotRam(at) => write!(
                f,
                "loader put our image at {at:#x}: not RAM in its e820 map"
            ),
            HandoverError::ImageMisaligned(at) => write!(
                f,
                "loader put our image at {at:#x}: not a multiple of kernel_alignment {KERNEL_ALIGNMENT:#x}"
            ),
        }
    }
}

/// What a loader handed over, checked against its own e820 map.
#[derive(Clone)]
pub struct Handover {
    /// RAM (below `limit`).
    pub ram: RangeSet,
    /// RAM nobody uses: less the first MiB, us, boot_params, the command line, the initrd,
    /// every setup_data node (and what SETUP_INDIRECT names), the EFI memory map.
    pub free: RangeSet,
    pub params: crate::arch::x86_64::loader_params::LoaderParams,
}

/// Check a loader's `boot_params` (read from `bp_addr`) and work out the free RAM. `ours`: our
/// image, stack and tables `[start, end)`; `limit`: the end of what is mapped.
pub fn survey(
    bp_addr: u64,
    bp: &BootParams,
    ours: (u64, u64),
    limit: u64,
    mem: &impl LoaderMemory,
) -> Result<Handover, HandoverError> {
    use crate::arch::x86_64::loader_params::{self as lp, ParamsError};
    lp::check_boot_params_apart(bp_addr, ours).map_err(HandoverError::Params)?;
    lp::check_header(&{ bp.hdr }).map_err(HandoverError::Params)?;
    let mut ram = loader_ram(bp, mem)?;
    ram.remove(limit, u64::MAX);
    if !ram.contains(bp_addr, size_of::<BootParams>() as u64) {
        return Err(HandoverError::Params(ParamsError::BootParams(bp_addr)));
    }
    if !ours.0.is_multiple_of(u64::from(KERNEL_ALIGNMENT)) {
        return Err(HandoverError::ImageMisaligned(ours.0));
    }
    if ours.1 <= ours.0 || !ram.contains(ours.0, ours.1 - ours.0) {
        return Err(HandoverError::ImageNotRam(ours.0));
    }
    let params = lp::read(bp, ram.ranges()).map_err(HandoverError::Params)?;
    lp::check_apart(&params, bp_addr, ours).map_err(HandoverError::Params)?;
    let mut free = ram.clone();
    free.remove(0, LOW_LIMIT);
    free.remove(ours.0, ours.1);
    free.remove(bp_addr, bp_addr + size_of::<BootParams>() as u64);
    if let Some((at, max)) = params.cmdline {
        free.remove(at, at + max);
    }
    if let Some((at, size)) = params.initrd {
        free.remove(at, at + size);
    }
    let mut indirect = None;
    walk_setup_data(
        bp.hdr.setup_data,
        &ram,
        |a| read_node(mem, a),
        |at, node| {
            free.remove(at, at + size_of::<SetupData>() as u64 + u64::from(node.len));
            if node.typ == SETUP_INDIRECT && node.len >= 24 {
                let data = at + size_of::<SetupData>() as u64;
                let (len, addr) = (read_u64(mem, data + 8), read_u64(mem, data + 16));
                // The kernel reads what it names as data (and reserves it): it must be RAM.
                if len != 0 && !ram.contains(addr, len) {
                    indirect.get_or_insert(SetupDataError::IndirectOutsideRam(at, addr, len));
                }
                free.remove(addr, addr.saturating_add(len));
            }
        },
    )
    .map_err(HandoverError::SetupData)?;
    if let Some(e) = indirect {
        return Err(HandoverError::SetupData(e));
    }
    let e = bp.efi_info;
    if e.efi_loader_signature == EFI_LOADER_SIGNATURE_64 {
        let at = u64::from(e.efi_memmap) | u64::from(e.efi_memmap_hi) << 32;
        free.remove(at, at.saturating_add(u64::from(e.efi_memmap_size)));
    }
    Ok(Handover { ram, free, params })
}

/// The RAM of the loader's e820 map: the zero page's entries and those of SETUP_E820_EXT nodes
/// (read only where the zero page's own map says RAM is).
fn loader_ram(bp: &BootParams, mem: &impl LoaderMemory) -> Result<RangeSet, HandoverError> {
    if usize::from(bp.e820_entries) > E820_MAX_ENTRIES_ZEROPAGE {
        return Err(HandoverError::E820Count(bp.e820_entries));
    }
    let zero_page = bp.e820();
    if zero_page.is_empty() {
        return Err(HandoverError::E820("no entries in the zero page"));
    }
    let mut entries = [E820Entry::default(); MAX_E820];
    entries[..zero_page.len()].copy_from_slice(zero_page);
    let mut n = zero_page.len();
    let first = RangeSet::ram(zero_page);
    let mut overflow = false;
    walk_setup_data(
        bp.hdr.setup_data,
        &first,
        |a| read_node(mem, a),
        |at, node| {
            if node.typ != SETUP_E820_EXT {
                return;
            }
            let size = size_of::<E820Entry>();
            for i in 0..node.len as usize / size {
                if n == MAX_E820 {
                    overflow = true;
                    return;
                }
                let mut b = [0u8; 20];
                mem.read(at + (size_of::<SetupData>() + i * size) as u64, &mut b);
                entries[n] = E820Entry {
                    addr: u64::from_le_bytes(b[..8].try_into().unwrap()),
                    size: u64::from_le_bytes(b[8..16].try_into().unwrap()),
                    typ: u32::from_le_bytes(b[16..].try_into().unwrap()),
                };
                n += 1;
            }
        },
    )
    .map_err(HandoverError::SetupData)?;
    if overflow {
        return Err(HandoverError::E820("more entries than the stub reads"));
    }
    Ok(RangeSet::ram(&entries[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zboot_format::bootparam::E820_TYPE_RESERVED;

    fn e(addr: u64, size: u64, typ: u32) -> E820Entry {
        E820Entry { addr, size, typ }
    }

    fn r(start: u64, end: u64) -> FreeRange {
        FreeRange { start, end }
    }

    #[test]
    fn ram_is_ram_minus_everything_else() {
        let map = [
            e(0, 0x9fc00, E820_TYPE_RAM),
            e(0x10_0000, 0x7ff0_0000, E820_TYPE_RAM),
            // A lying/overlapping entry: reserved inside RAM wins.
            e(0x200_0000, 0x1000, E820_TYPE_RESERVED),
            e(0x1_0000_0000, 0x4000_0800, E820_TYPE_RAM),
        ];
        let ram = RangeSet::ram(&map);
        assert_eq!(
            ram.ranges(),
            &[
                r(0, 0x9f000),
                r(0x10_0000, 0x200_0000),
                r(0x200_1000, 0x8000_0000),
                r(0x1_0000_0000, 0x1_4000_0000),
            ]
        );
        assert!(ram.contains(0x10_0000, 0x1000));
        assert!(!ram.contains(0x1ff_f000, 0x2000));
        assert!(!ram.contains(u64::MAX - 1, 4));
        assert_eq!(ram.room_at(0x7fff_f000), 0x1000);
        assert_eq!(ram.room_at(0x9f000), 0);
    }

    #[test]
    fn take_from_the_top_and_at() {
        let mut s = RangeSet::ram(&[e(0, 0x1000_0000, E820_TYPE_RAM)]);
        assert_eq!(s.take_top(0x1800, 0x1000, u64::MAX), Some(0xfff_e000));
        assert_eq!(s.take_top(0x1000, 0x20_0000, u64::MAX), Some(0xfe0_0000));
        assert!(s.take_at(0x100_0000, 0x40_0000));
        assert!(!s.take_at(0x100_0000, 0x1000));
        // Nothing below LOW_LIMIT is handed out.
        assert!(!s.take_at(0x8000, 0x1000));
        assert_eq!(s.take_top(0x1000, 0x1000, 0x10_1000), Some(0x10_0000));
        assert_eq!(s.take_top(0x1000, 0x1000, 0x10_1000), None);
        assert_eq!(
            s.ranges(),
            &[
                r(0, 0x10_0000),
                r(0x10_1000, 0x100_0000),
                r(0x140_0000, 0xfe0_0000),
                r(0xfe0_1000, 0xfff_e000),
            ]
        );
    }

    #[test]
    fn a_full_set_drops_the_smallest_piece_never_a_used_one() {
        let mut s = RangeSet::ram(&[e(0, 0x1_0000_0000, E820_TYPE_RAM)]);
        for i in 0..(CAPACITY as u64 + 10) {
            s.remove(0x10_0000 + i * 0x2000, 0x10_0000 + i * 0x2000 + 0x1000);
        }
        assert_eq!(s.ranges().len(), CAPACITY);
        for i in 0..(CAPACITY as u64 + 10) {
            assert!(!s.contains(0x10_0000 + i * 0x2000, 0x1000));
        }
    }

    #[test]
    fn setup_data_walk_is_bounded_and_checked() {
        let ram = RangeSet::ram(&[e(0x10_0000, 0x10_0000, E820_TYPE_RAM)]);
        let node = |next| SetupData {
            next,
            typ: 1,
            len: 8,
        };
        let mut seen = alloc::vec::Vec::new();
        let chain = |a: u64| match a {
            0x10_0000 => node(0x10_1000),
            _ => node(0),
        };
        walk_setup_data(0x10_0000, &ram, chain, |a, _| seen.push(a)).unwrap();
        assert_eq!(seen, [0x10_0000, 0x10_1000]);
        let looping = |a: u64| node(a);
        assert_eq!(
            walk_setup_data(0x10_0000, &ram, looping, |_, _| {}),
            Err(SetupDataError::TooMany)
        );
        let outside = |_| node(0x9000);
        assert_eq!(
            walk_setup_data(0x10_0000, &ram, outside, |_, _| {}),
            Err(SetupDataError::OutsideRam(0x9000))
        );
        let long = |_| SetupData {
            next: 0,
            typ: 1,
            len: 0x20_0000,
        };
        assert_eq!(
            walk_setup_data(0x10_0000, &ram, long, |_, _| {}),
            Err(SetupDataError::OutsideRam(0x10_0000))
        );
    }

    #[test]
    fn page_table_walk_finds_every_table_and_skips_large_pages() {
        use alloc::collections::BTreeMap;
        // PML4 at 0x1000 -> PDPT 0x2000 -> (1 GiB page) and PD 0x3000 -> PT 0x4000 + 2 MiB page.
        let mut mem = BTreeMap::new();
        mem.insert(0x1000, 0x2000 | 3);
        mem.insert(0x2000, 0x4000_0000 | 0x83);
        mem.insert(0x2008, 0x3000 | 3);
        mem.insert(0x3000, 0x4000 | 3);
        mem.insert(0x3008, 0x20_0000 | 0x83);
        // The upper half (entry 256 and up) is not followed.
        mem.insert(0x1000 + 300 * 8, 0x5000 | 3);
        mem.insert(0x5000, 0x6000 | 3);
        let ram = RangeSet::ram(&[e(0, 0x10_0000, E820_TYPE_RAM)]);
        let read = |a: u64| *mem.get(&a).unwrap_or(&0);
        let mut found = alloc::vec::Vec::new();
        walk_page_tables(0x1000 | 0x18, 4, &ram, &read, &mut |t| found.push(t)).unwrap();
        found.sort();
        assert_eq!(found, [0x1000, 0x2000, 0x3000, 0x4000]);
        // A table outside RAM is noted but not read.
        mem.insert(0x2010, 0x7_0000_0000 | 3);
        let read = |a: u64| {
            assert!(a < 0x10_0000, "read outside RAM at {a:#x}");
            *mem.get(&a).unwrap_or(&0)
        };
        let mut found = alloc::vec::Vec::new();
        walk_page_tables(0x1000, 4, &ram, &read, &mut |t| found.push(t)).unwrap();
        assert!(found.contains(&0x7_0000_0000));
        // A table pointing at itself is cut off by the budget, not followed forever.
        let mut selfref = BTreeMap::new();
        selfref.insert(0x1000u64, 0x1000u64 | 3);
        let read = |a: u64| *selfref.get(&a).unwrap_or(&0);
        let mut n = 0;
        assert!(walk_page_tables(0x1000, 4, &ram, &read, &mut |_| n += 1).is_some());
        assert_eq!(n, 4);
    }

    /// A loader's memory as bytes at `base`.
    struct Fake {
        base: u64,
        bytes: alloc::vec::Vec<u8>,
    }

    impl LoaderMemory for Fake {
        fn read(&self, at: u64, out: &mut [u8]) {
            let o = (at - self.base) as usize;
            out.copy_from_slice(&self.bytes[o..o + out.len()]);
        }
    }

    fn loader() -> (BootParams, Fake) {
        let mut bp = BootParams::zeroed();
        bp.hdr.setup_sects = zboot_format::image::SETUP_SECTS;
        bp.hdr.header = zboot_format::bootparam::HDRS_MAGIC;
        bp.e820_entries = 2;
        bp.e820_table[0] = e(0, 0x9f000, E820_TYPE_RAM);
        bp.e820_table[1] = e(0x10_0000, 0x3ff0_0000, E820_TYPE_RAM);
        bp.hdr.cmd_line_ptr = 0x2_0000;
        bp.hdr.ramdisk_image = 0x3000_0000;
        bp.hdr.ramdisk_size = 0x10_0000;
        // One SETUP_E820_EXT node at 0x50_0000 adding RAM at 4 GiB.
        bp.hdr.setup_data = 0x50_0000;
        let mut bytes = alloc::vec![0u8; 0x1000];
        bytes[8..12].copy_from_slice(&SETUP_E820_EXT.to_le_bytes());
        bytes[12..16].copy_from_slice(&20u32.to_le_bytes());
        bytes[16..24].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
        bytes[24..32].copy_from_slice(&0x1000_0000u64.to_le_bytes());
        bytes[32..36].copy_from_slice(&E820_TYPE_RAM.to_le_bytes());
        (
            bp,
            Fake {
                base: 0x50_0000,
                bytes,
            },
        )
    }

    #[test]
    fn honest_loader_survey() {
        let (bp, mem) = loader();
        let h = survey(0x1_0000, &bp, (0x100_0000, 0x200_0000), u64::MAX, &mem).unwrap();
        assert!(h.ram.contains(0x1_0000_0000, 0x1000_0000));
        for (at, len) in [
            (0x8000, 0x1000),         // first MiB
            (0x100_0000, 0x100_0000), // us
            (0x3000_0000, 0x10_0000), // initrd
            (0x50_0000, 0x24),        // setup_data
        ] {
            assert!(!h.free.contains(at, len), "{at:#x} should be in use");
        }
        assert!(h.free.contains(0x200_0000, 0x1000));
        assert_eq!(h.params.initrd, Some((0x3000_0000, 0x10_0000)));
        // Limited to what the 32-bit entry maps: the extension RAM is gone.
        let h = survey(0x1_0000, &bp, (0x100_0000, 0x200_0000), 1 << 32, &mem).unwrap();
        assert!(!h.ram.contains(0x1_0000_0000, 1));
    }

    #[test]
    fn lying_loaders_are_refused() {
        use crate::arch::x86_64::loader_params::ParamsError;
        let (bp, mem) = loader();
        let ours = (0x100_0000, 0x200_0000);
        // boot_params in a hole of the map.
        assert_eq!(
            survey(0xa0000, &bp, ours, u64::MAX, &mem).err(),
            Some(HandoverError::Params(ParamsError::BootParams(0xa0000)))
        );
        // Our image where the map has no RAM, or unaligned.
        assert_eq!(
            survey(0x1_0000, &bp, (0x4000_0000, 0x4100_0000), u64::MAX, &mem).err(),
            Some(HandoverError::ImageNotRam(0x4000_0000))
        );
        assert_eq!(
            survey(0x1_0000, &bp, (0x100_0800, 0x200_0000), u64::MAX, &mem).err(),
            Some(HandoverError::ImageMisaligned(0x100_0800))
        );
        // An initrd past the end of RAM.
        let mut b = bp;
        b.hdr.ramdisk_image = 0x3ff8_0000;
        assert!(matches!(
            survey(0x1_0000, &b, ours, u64::MAX, &mem),
            Err(HandoverError::Params(ParamsError::Initrd(..)))
        ));
        // A command line pointer into nowhere.
        let mut b = bp;
        b.hdr.cmd_line_ptr = 0xf_0000;
        assert_eq!(
            survey(0x1_0000, &b, ours, u64::MAX, &mem).err(),
            Some(HandoverError::Params(ParamsError::Cmdline(0xf_0000)))
        );
        // A reserved entry over our image.
        let mut b = bp;
        b.e820_entries = 3;
        b.e820_table[2] = e(
            0x180_0000,
            0x1000,
            zboot_format::bootparam::E820_TYPE_RESERVED,
        );
        assert_eq!(
            survey(0x1_0000, &b, ours, u64::MAX, &mem).err(),
            Some(HandoverError::ImageNotRam(0x100_0000))
        );
        // No map at all.
        let mut b = bp;
        b.e820_entries = 0;
        assert!(matches!(
            survey(0x1_0000, &b, ours, u64::MAX, &mem),
            Err(HandoverError::E820(_))
        ));
        // More entries than the zero page holds: refused, not read as its first 128.
        let mut b = bp;
        b.e820_entries = 200;
        assert_eq!(
            survey(0x1_0000, &b, ours, u64::MAX, &mem).err(),
            Some(HandoverError::E820Count(200))
        );
        // A header not copied from ours: refused before anything it points at is read.
        let mut b = bp;
        b.hdr.header = 0;
        b.e820_entries = 0;
        assert!(matches!(
            survey(0x1_0000, &b, ours, u64::MAX, &mem),
            Err(HandoverError::Params(ParamsError::Header {
                field: "header",
                ..
            }))
        ));
    }

    /// A SETUP_INDIRECT node after the E820 extension, naming `[addr, addr + len)`.
    fn with_indirect(addr: u64, len: u64) -> (BootParams, Fake) {
        let (bp, mut mem) = loader();
        mem.bytes[..8].copy_from_slice(&0x50_0100u64.to_le_bytes());
        let n = &mut mem.bytes[0x100..0x100 + 40];
        n[8..12].copy_from_slice(&SETUP_INDIRECT.to_le_bytes());
        n[12..16].copy_from_slice(&24u32.to_le_bytes());
        n[16..20].copy_from_slice(&zboot_format::bootparam::SETUP_PCI.to_le_bytes());
        n[24..32].copy_from_slice(&len.to_le_bytes());
        n[32..40].copy_from_slice(&addr.to_le_bytes());
        (bp, mem)
    }

    #[test]
    fn setup_indirect_must_name_ram() {
        let ours = (0x100_0000, 0x200_0000);
        let (bp, mem) = with_indirect(0x600_0000, 0x1000);
        let h = survey(0x1_0000, &bp, ours, u64::MAX, &mem).unwrap();
        assert!(!h.free.contains(0x600_0000, 0x1000));
        for (addr, len) in [
            (0xfed0_0000, 0x1000),      // a hole of the map
            (0x3fff_f000, 0x2000),      // running past RAM
            (u64::MAX - 0xfff, 0x2000), // wrapping
        ] {
            let (bp, mem) = with_indirect(addr, len);
            assert_eq!(
                survey(0x1_0000, &bp, ours, u64::MAX, &mem).err(),
                Some(HandoverError::SetupData(
                    SetupDataError::IndirectOutsideRam(0x50_0100, addr, len)
                )),
                "{addr:#x}+{len:#x}"
            );
        }
    }
}

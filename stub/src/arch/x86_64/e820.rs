//! The e820 table from the final EFI memory map, as drivers/firmware/efi/libstub/x86-stub.c
//! `setup_e820` does: EFI type -> e820 type, unknown types skipped, adjacent entries of one type
//! merged. No allocation: runs after ExitBootServices into a buffer sized before it.

use zboot_format::bootparam::*;

/// EFI memory types (UEFI spec 7.2, `EFI_MEMORY_TYPE`).
pub mod efi_type {
    pub const RESERVED: u32 = 0;
    pub const LOADER_CODE: u32 = 1;
    pub const LOADER_DATA: u32 = 2;
    pub const BOOT_SERVICES_CODE: u32 = 3;
    pub const BOOT_SERVICES_DATA: u32 = 4;
    pub const RUNTIME_SERVICES_CODE: u32 = 5;
    pub const RUNTIME_SERVICES_DATA: u32 = 6;
    pub const CONVENTIONAL: u32 = 7;
    pub const UNUSABLE: u32 = 8;
    pub const ACPI_RECLAIM: u32 = 9;
    pub const ACPI_NVS: u32 = 10;
    pub const MMIO: u32 = 11;
    pub const MMIO_PORT_SPACE: u32 = 12;
    pub const PAL_CODE: u32 = 13;
    pub const PERSISTENT: u32 = 14;
}

/// `EFI_MEMORY_SP`: specific-purpose memory (soft reserved).
pub const EFI_MEMORY_SP: u64 = 0x40000;

/// One EFI memory descriptor, reduced to what the conversion needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EfiRegion {
    pub ty: u32,
    pub phys_start: u64,
    pub pages: u64,
    pub attribute: u64,
}

/// The e820 type of an EFI memory type, `None` for types the kernel's stub skips.
pub fn e820_type(ty: u32, attribute: u64) -> Option<u32> {
    use efi_type::*;
    Some(match ty {
        RESERVED
        | RUNTIME_SERVICES_CODE
        | RUNTIME_SERVICES_DATA
        | MMIO
        | MMIO_PORT_SPACE
        | PAL_CODE => E820_TYPE_RESERVED,
        UNUSABLE => E820_TYPE_UNUSABLE,
        ACPI_RECLAIM => E820_TYPE_ACPI,
        LOADER_CODE | LOADER_DATA | BOOT_SERVICES_CODE | BOOT_SERVICES_DATA | CONVENTIONAL => {
            if attribute & EFI_MEMORY_SP != 0 {
                E820_TYPE_SOFT_RESERVED
            } else {
                E820_TYPE_RAM
            }
        }
        ACPI_NVS => E820_TYPE_NVS,
        PERSISTENT => E820_TYPE_PMEM,
        _ => return None,
    })
}

/// Convert `regions` into `out`, sorted by address with adjacent same-type entries merged.
/// Returns the number of entries written; entries beyond `out.len()` are dropped (size `out`
/// from the map before ExitBootServices with slack so that this does not happen).
pub fn convert(regions: impl Iterator<Item = EfiRegion>, out: &mut [E820Entry]) -> usize {
    let mut n = 0;
    for r in regions {
        let Some(typ) = e820_type(r.ty, r.attribute) else {
            continue;
        };
        if r.pages == 0 || n == out.len() {
            continue;
        }
        out[n] = E820Entry {
            addr: r.phys_start,
            size: r.pages.saturating_mul(4096),
            typ,
        };
        n += 1;
    }
    let table = &mut out[..n];
    table.sort_unstable_by_key(|e| e.addr);
    // Merge in place.
    let mut w = 0;
    for i in 0..n {
        let e = table[i];
        if w > 0 {
            let prev = &mut table[w - 1];
            let (pa, ps, pt) = (prev.addr, prev.size, prev.typ);
            if pt == e.typ && pa.wrapping_add(ps) == e.addr {
                prev.size = ps + e.size;
                continue;
            }
        }
        table[w] = e;
        w += 1;
    }
    w
}

/// Split a converted table between the zero page (first 128) and the rest, which goes into a
/// `SETUP_E820_EXT` node. Returns how many entries the zero page got.
pub fn fill_zero_page(bp: &mut BootParams, table: &[E820Entry]) -> usize {
    let n = table.len().min(E820_MAX_ENTRIES_ZEROPAGE);
    let mut zp = bp.e820_table;
    zp[..n].copy_from_slice(&table[..n]);
    bp.e820_table = zp;
    bp.e820_entries = n as u8;
    n
}

#[cfg(test)]
mod tests {
    use super::efi_type::*;
    use super::*;

    fn r(ty: u32, start: u64, pages: u64) -> EfiRegion {
        EfiRegion {
            ty,
            phys_start: start,
            pages,
            attribute: 0,
        }
    }

    #[test]
    fn maps_types_like_the_linux_stub() {
        assert_eq!(e820_type(CONVENTIONAL, 0), Some(E820_TYPE_RAM));
        assert_eq!(
            e820_type(LOADER_DATA, EFI_MEMORY_SP),
            Some(E820_TYPE_SOFT_RESERVED)
        );
        assert_eq!(e820_type(BOOT_SERVICES_CODE, 0), Some(E820_TYPE_RAM));
        assert_eq!(
            e820_type(RUNTIME_SERVICES_DATA, 0),
            Some(E820_TYPE_RESERVED)
        );
        assert_eq!(e820_type(MMIO, 0), Some(E820_TYPE_RESERVED));
        assert_eq!(e820_type(ACPI_RECLAIM, 0), Some(E820_TYPE_ACPI));
        assert_eq!(e820_type(ACPI_NVS, 0), Some(E820_TYPE_NVS));
        assert_eq!(e820_type(UNUSABLE, 0), Some(E820_TYPE_UNUSABLE));
        assert_eq!(e820_type(PERSISTENT, 0), Some(E820_TYPE_PMEM));
        assert_eq!(e820_type(15, 0), None);
    }

    #[test]
    fn sorts_and_merges() {
        let map = [
            r(CONVENTIONAL, 0x100000, 0x10),
            r(BOOT_SERVICES_DATA, 0x0, 0xa0),
            r(LOADER_CODE, 0x110000, 0x10),
            r(RUNTIME_SERVICES_CODE, 0x120000, 1),
            r(RUNTIME_SERVICES_DATA, 0x121000, 1),
            r(ACPI_NVS, 0x200000, 2),
            r(CONVENTIONAL, 0x300000, 0),
            r(99, 0x400000, 1),
        ];
        let mut out = [E820Entry {
            addr: 0,
            size: 0,
            typ: 0,
        }; 16];
        let n = convert(map.into_iter(), &mut out);
        let got: Vec<(u64, u64, u32)> = out[..n].iter().map(|e| (e.addr, e.size, e.typ)).collect();
        assert_eq!(
            got,
            [
                (0, 0xa0000, E820_TYPE_RAM),
                (0x100000, 0x20000, E820_TYPE_RAM),
                (0x120000, 0x2000, E820_TYPE_RESERVED),
                (0x200000, 0x2000, E820_TYPE_NVS),
            ]
        );
    }

    #[test]
    fn overflow_drops_and_zero_page_takes_128() {
        let map =
            (0..300u64).map(|i| r(if i % 2 == 0 { CONVENTIONAL } else { ACPI_NVS }, i << 12, 1));
        let mut out = [E820Entry {
            addr: 0,
            size: 0,
            typ: 0,
        }; 200];
        let n = convert(map, &mut out);
        assert_eq!(n, 200);
        let mut bp = BootParams::zeroed();
        assert_eq!(fill_zero_page(&mut bp, &out[..n]), 128);
        assert_eq!(bp.e820().len(), 128);
        assert_eq!({ bp.e820()[127].addr }, 127 << 12);
    }
}

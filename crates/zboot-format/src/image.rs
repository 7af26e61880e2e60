//! How the parts of an image are laid out so that every kind of loader finds what it needs:
//! the file is its own memory image (each section's file offset equals its RVA), the first
//! 4 KiB hold the zimg/MZ header, the PE headers and, at 0x1f1, an x86 setup header as Linux's
//! arch/x86/boot/header.S lays them out. A PE loader maps sections; a loader that copies the file
//! flat (GRUB's `linuxefi`, the EFI handover protocol) sees the same bytes at the same offsets.
//!
//! The EFI handover protocol (Documentation/arch/x86/boot.rst): the loader copies the file from
//! `(setup_sects + 1) * 512` (here: [`HEADERS_SIZE`], so memory = file = RVA) and calls the
//! 64-bit entry at `copy + handover_offset + 512` with (image handle, system table, boot_params)
//! in the SysV ABI.

use crate::bootparam::{
    HDRS_MAGIC, LOADED_HIGH, SetupHeader, XLF_CAN_BE_LOADED_ABOVE_4G, XLF_EFI_HANDOVER_64,
    XLF_KERNEL_64,
};

/// Bytes before the first section: headers, in file and in memory.
pub const HEADERS_SIZE: u32 = 0x1000;
/// `setup_sects`: the "real-mode setup" is the headers page, `(7 + 1) * 512` bytes.
pub const SETUP_SECTS: u8 = (HEADERS_SIZE / 512 - 1) as u8;
/// The PE headers and section table must end before the setup header at 0x1f1: with
/// [`PE_DATA_DIRECTORIES`] directories there is room for this many sections.
pub const MAX_SECTIONS: usize = 6;
/// Data directories (export .. base relocation; the certificate table is #4).
pub const PE_DATA_DIRECTORIES: usize = 6;
/// The handover entry is `handover_offset + 512` bytes into the copy (64-bit protocol).
pub const HANDOVER_ENTRY_BIAS: u32 = 0x200;
/// Boot protocol version declared: 2.15, the version of Linux 6.1's header (`handover_offset`
/// since 2.11, `xloadflags` 2.12, `kernel_info_offset` 2.15).
pub const BOOT_PROTOCOL: u16 = 0x020f;
/// `boot_flag` at 0x1fe.
pub const BOOT_FLAG: u16 = 0xaa55;
/// `type_of_loader`/`cmdline_size`: the most the kernel keeps, less its NUL.
pub const CMDLINE_SIZE: u32 = crate::cmdline::MAX_LEN as u32;

/// What the setup header describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupFacts {
    /// SizeOfImage.
    pub image_size: u32,
    /// RVA of the stub's 64-bit handover entry.
    pub handover_rva: u32,
    /// File offset and size of the compressed stream (as the zimg header says).
    pub payload_offset: u32,
    pub payload_size: u32,
}

/// The setup header an image carries at 0x1f1 (for the EFI handover protocol; the legacy
/// entries are not there yet, so `code32_start` is 0 and no 16-bit code exists).
pub fn setup_header(f: &SetupFacts) -> SetupHeader {
    SetupHeader {
        setup_sects: SETUP_SECTS,
        syssize: (f.image_size - HEADERS_SIZE).div_ceil(16),
        boot_flag: BOOT_FLAG,
        header: HDRS_MAGIC,
        version: BOOT_PROTOCOL,
        type_of_loader: 0,
        loadflags: LOADED_HIGH,
        initrd_addr_max: 0x7fff_ffff,
        kernel_alignment: 0x1000,
        relocatable_kernel: 1,
        min_alignment: 12,
        xloadflags: XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G | XLF_EFI_HANDOVER_64,
        cmdline_size: CMDLINE_SIZE,
        payload_offset: f
            .payload_offset
            .saturating_sub(u32::from(SETUP_SECTS) * 512 + 512),
        payload_length: f.payload_size,
        init_size: f.image_size - HEADERS_SIZE,
        handover_offset: handover_offset(f.handover_rva),
        ..SetupHeader::default()
    }
}

/// `handover_offset` for an entry at `rva`.
pub const fn handover_offset(rva: u32) -> u32 {
    rva.saturating_sub(HEADERS_SIZE + HANDOVER_ENTRY_BIAS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handover_entry_is_where_grub_calls() {
        let h = setup_header(&SetupFacts {
            image_size: 0x80_0000,
            handover_rva: 0x4560,
            payload_offset: 0x1_8100,
            payload_size: 0x7000,
        });
        // GRUB linuxefi: copy = file + (setup_sects + 1) * 512; call copy + handover_offset + 512.
        let copy_at = (u32::from(h.setup_sects) + 1) * 512;
        assert_eq!(copy_at, HEADERS_SIZE);
        assert_eq!(copy_at + { h.handover_offset } + 512, 0x4560);
        assert_eq!({ h.init_size }, 0x80_0000 - 0x1000);
        assert_eq!({ h.boot_flag }, 0xaa55);
        // payload_offset counts from the end of the setup sectors, as in a bzImage.
        assert_eq!({ h.payload_offset } + copy_at, 0x1_8100);
    }
}

//! Linux x86 boot protocol structures (arch/x86/include/uapi/asm/bootparam.h, screen_info.h,
//! e820/types.h), as `#[repr(C, packed)]` structs whose offsets are pinned by tests below.
//!
//! The stub fills a [`BootParams`] ("zero page"), the probe kernel checks one, and the packer reads
//! a bzImage's [`SetupHeader`]. All fields are plain integers, so every bit pattern is valid.

use core::mem::size_of;

/// `hdr.header` magic "HdrS".
pub const HDRS_MAGIC: u32 = 0x5372_6448;
/// Offset of [`SetupHeader`] inside a bzImage file and inside [`BootParams`].
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// Where "HdrS" (`setup_header.header`) sits in a bzImage or zero page.
pub const HDRS_OFFSET: usize = SETUP_HEADER_OFFSET + core::mem::offset_of!(SetupHeader, header);
/// `efi_loader_signature` for a 64-bit EFI loader.
pub const EFI_LOADER_SIGNATURE_64: u32 = u32::from_le_bytes(*b"EL64");
/// `orig_video_isVGA` value for an EFI framebuffer.
pub const VIDEO_TYPE_EFI: u8 = 0x70;
/// `screen_info.capabilities`: `ext_lfb_base` is valid.
pub const VIDEO_CAPABILITY_64BIT_BASE: u32 = 1 << 1;
/// `screen_info.capabilities`: skip the quirks (set by the EFI stub).
pub const VIDEO_CAPABILITY_SKIP_QUIRKS: u32 = 1 << 0;

/// `hdr.loadflags` bits.
pub const LOADED_HIGH: u8 = 1 << 0;
pub const KASLR_FLAG: u8 = 1 << 1;
pub const QUIET_FLAG: u8 = 1 << 5;

/// What an x86-64 kernel requires of the CPU before it can run (the kernel's
/// `arch/x86/include/asm/required-features.h` for a 64-bit distribution kernel, as its
/// real-mode `validate_cpu` and its 32-bit entry's `verify_cpu` check them): CPUID leaf 1 EDX
/// must have FPU, MSR, PAE, CX8, CMOV, FXSR, SSE and SSE2 ...
pub const REQUIRED_CPUID1_EDX: u32 = 0x0700_8161;
/// ... and leaf 0x8000_0001 EDX long mode (LM).
pub const REQUIRED_CPUID_EXT1_EDX: u32 = 1 << 29;
/// The names the kernel prints for the bits of [`REQUIRED_CPUID1_EDX`] it misses, in bit
/// order (x86_cap_flags).
pub const REQUIRED_CPUID1_EDX_NAMES: [(u8, &str); 8] = [
    (0, "fpu"),
    (5, "msr"),
    (6, "pae"),
    (8, "cx8"),
    (15, "cmov"),
    (24, "fxsr"),
    (25, "sse"),
    (26, "sse2"),
];

/// `hdr.vid_mode` values (the loader stores `vga=` there; Linux's uapi/asm/boot.h, video.h).
pub mod vid_mode {
    /// `vga=normal`: the 80x25 text mode the loader left.
    pub const NORMAL_VGA: u16 = 0xffff;
    /// `vga=ext`: 80x50 text (the 8x8 font).
    pub const EXTENDED_VGA: u16 = 0xfffe;
    /// `vga=ask`: the kernel's mode menu.
    pub const ASK_VGA: u16 = 0xfffd;
    /// 80x25, 80x50 and "leave the mode as it is" by the kernel's special numbers.
    pub const SPECIAL_80X25: u16 = 0x0f00;
    pub const SPECIAL_8POINT: u16 = 0x0f01;
    pub const CURRENT: u16 = 0x0f04;
    /// `0x100 + n`: BIOS mode n (0..0x7f).
    pub const BIOS_FIRST: u16 = 0x0100;
    pub const BIOS_LAST: u16 = 0x017f;
    /// `0x200 + n`: VESA mode n (0..0x1ff), e.g. `vga=788` = 0x314 = VESA 0x114 (800x600x16).
    pub const VESA_FIRST: u16 = 0x0200;
    pub const VESA_LAST: u16 = 0x03ff;
}

/// `screen_info.orig_video_isVGA` as the real-mode setup writes it: 1 for a VGA text screen,
/// `VIDEO_TYPE_VLFB` for a VESA linear framebuffer.
pub const VIDEO_IS_VGA_TEXT: u8 = 1;
pub const VIDEO_TYPE_VLFB: u8 = 0x23;

/// The boot_params EDD area (Linux's uapi/linux/edd.h): up to [`EDD_MAX_INFO`] `struct
/// edd_info` of [`EDD_INFO_SIZE`] bytes in `eddbuf`, the MBR signatures of BIOS drives
/// 0x80.. 0x80 + [`EDD_MBR_SIG_MAX`] - 1 in `edd_mbr_sig_buffer`.
pub const EDD_MAX_INFO: usize = 6;
pub const EDD_INFO_SIZE: usize = 82;
pub const EDD_MBR_SIG_MAX: usize = 16;
/// `edd_device_params.length` asked of INT 13h AH=48h, and where the MBR signature lies.
pub const EDD_PARAMS_SIZE: u16 = 74;
pub const EDD_MBR_SIG_OFFSET: usize = 0x1b8;
pub const KEEP_SEGMENTS: u8 = 1 << 6;
pub const CAN_USE_HEAP: u8 = 1 << 7;

/// `hdr.xloadflags` bits.
pub const XLF_KERNEL_64: u16 = 1 << 0;
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
pub const XLF_EFI_HANDOVER_32: u16 = 1 << 2;
pub const XLF_EFI_HANDOVER_64: u16 = 1 << 3;
pub const XLF_EFI_KEXEC: u16 = 1 << 4;
pub const XLF_5LEVEL: u16 = 1 << 5;
pub const XLF_5LEVEL_ENABLED: u16 = 1 << 6;

/// setup_data types.
pub const SETUP_E820_EXT: u32 = 1;
pub const SETUP_DTB: u32 = 2;
pub const SETUP_PCI: u32 = 3;
pub const SETUP_EFI: u32 = 4;
pub const SETUP_RNG_SEED: u32 = 9;
/// A node whose data is a `struct setup_indirect` (type u32, reserved u32, len u64, addr u64)
/// naming data elsewhere.
pub const SETUP_INDIRECT: u32 = 1 << 31;

/// `setup_type_max` of the kernel_info an image carries when the kernel's own is not known (a
/// vmlinux input): what Linux 6.1 declares, the newest type the stub knows, with indirect nodes.
pub const SETUP_TYPE_MAX_DEFAULT: u32 = SETUP_INDIRECT | SETUP_RNG_SEED;

/// `kernel_info` (boot protocol 2.15, Documentation/arch/x86/boot.rst): the "LToP" header, its
/// fixed size, its size with variable data (none here) and `setup_type_max`.
pub const KERNEL_INFO_MAGIC: [u8; 4] = *b"LToP";
pub const KERNEL_INFO_SIZE: usize = 16;

/// The kernel_info block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelInfo {
    /// The largest setup_data type the kernel accepts, with [`SETUP_INDIRECT`] when it takes
    /// indirect nodes.
    pub setup_type_max: u32,
}

impl KernelInfo {
    pub const fn to_bytes(&self) -> [u8; KERNEL_INFO_SIZE] {
        let size = (KERNEL_INFO_SIZE as u32).to_le_bytes();
        let max = self.setup_type_max.to_le_bytes();
        let m = KERNEL_INFO_MAGIC;
        [
            m[0], m[1], m[2], m[3], size[0], size[1], size[2], size[3], size[0], size[1], size[2],
            size[3], max[0], max[1], max[2], max[3],
        ]
    }

    /// A kernel_info block at the start of `b`: the magic, a fixed size of at least 16 bytes
    /// and a total size not below it.
    pub fn parse(b: &[u8]) -> Option<KernelInfo> {
        let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
        if b.get(..4)? != KERNEL_INFO_MAGIC {
            return None;
        }
        let (size, total) = (u32_at(4)?, u32_at(8)?);
        if (size as usize) < KERNEL_INFO_SIZE || total < size {
            return None;
        }
        Some(KernelInfo {
            setup_type_max: u32_at(12)?,
        })
    }
}

/// Number of e820 entries that fit in the zero page.
pub const E820_MAX_ENTRIES_ZEROPAGE: usize = 128;

/// e820 entry types.
pub const E820_TYPE_RAM: u32 = 1;
pub const E820_TYPE_RESERVED: u32 = 2;
pub const E820_TYPE_ACPI: u32 = 3;
pub const E820_TYPE_NVS: u32 = 4;
pub const E820_TYPE_UNUSABLE: u32 = 5;
pub const E820_TYPE_PMEM: u32 = 7;
pub const E820_TYPE_SOFT_RESERVED: u32 = 0xefff_ffff;

/// Boot loader id for `type_of_loader`: 0xff is "undefined"; the EFI stub convention.
pub const LOADER_TYPE_UNDEFINED: u8 = 0xff;

/// `struct screen_info` (64 bytes).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
pub struct ScreenInfo {
    pub orig_x: u8,
    pub orig_y: u8,
    pub ext_mem_k: u16,
    pub orig_video_page: u16,
    pub orig_video_mode: u8,
    pub orig_video_cols: u8,
    pub flags: u8,
    pub unused2: u8,
    pub orig_video_ega_bx: u16,
    pub unused3: u16,
    pub orig_video_lines: u8,
    pub orig_video_is_vga: u8,
    pub orig_video_points: u16,
    pub lfb_width: u16,
    pub lfb_height: u16,
    pub lfb_depth: u16,
    pub lfb_base: u32,
    pub lfb_size: u32,
    pub cl_magic: u16,
    pub cl_offset: u16,
    pub lfb_linelength: u16,
    pub red_size: u8,
    pub red_pos: u8,
    pub green_size: u8,
    pub green_pos: u8,
    pub blue_size: u8,
    pub blue_pos: u8,
    pub rsvd_size: u8,
    pub rsvd_pos: u8,
    pub vesapm_seg: u16,
    pub vesapm_off: u16,
    pub pages: u16,
    pub vesa_attributes: u16,
    pub capabilities: u32,
    pub ext_lfb_base: u32,
    pub reserved: [u8; 2],
}

/// `struct efi_info` (32 bytes at boot_params 0x1c0).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
pub struct EfiInfo {
    pub efi_loader_signature: u32,
    pub efi_systab: u32,
    pub efi_memdesc_size: u32,
    pub efi_memdesc_version: u32,
    pub efi_memmap: u32,
    pub efi_memmap_size: u32,
    pub efi_systab_hi: u32,
    pub efi_memmap_hi: u32,
}

/// `struct setup_header` (at 0x1f1 in boot_params and in a bzImage).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
pub struct SetupHeader {
    pub setup_sects: u8,
    pub root_flags: u16,
    pub syssize: u32,
    pub ram_size: u16,
    pub vid_mode: u16,
    pub root_dev: u16,
    pub boot_flag: u16,
    pub jump: u16,
    pub header: u32,
    pub version: u16,
    pub realmode_swtch: u32,
    pub start_sys_seg: u16,
    pub kernel_version: u16,
    pub type_of_loader: u8,
    pub loadflags: u8,
    pub setup_move_size: u16,
    pub code32_start: u32,
    pub ramdisk_image: u32,
    pub ramdisk_size: u32,
    pub bootsect_kludge: u32,
    pub heap_end_ptr: u16,
    pub ext_loader_ver: u8,
    pub ext_loader_type: u8,
    pub cmd_line_ptr: u32,
    pub initrd_addr_max: u32,
    pub kernel_alignment: u32,
    pub relocatable_kernel: u8,
    pub min_alignment: u8,
    pub xloadflags: u16,
    pub cmdline_size: u32,
    pub hardware_subarch: u32,
    pub hardware_subarch_data: u64,
    pub payload_offset: u32,
    pub payload_length: u32,
    pub setup_data: u64,
    pub pref_address: u64,
    pub init_size: u32,
    pub handover_offset: u32,
    pub kernel_info_offset: u32,
}

/// Every field of [`SetupHeader`] as (name, offset in the file, size), in order: for tools and
/// tests that compare two headers field by field.
pub const SETUP_HEADER_FIELDS: [(&str, usize, usize); 39] = setup_fields!(
    setup_sects: u8,
    root_flags: u16,
    syssize: u32,
    ram_size: u16,
    vid_mode: u16,
    root_dev: u16,
    boot_flag: u16,
    jump: u16,
    header: u32,
    version: u16,
    realmode_swtch: u32,
    start_sys_seg: u16,
    kernel_version: u16,
    type_of_loader: u8,
    loadflags: u8,
    setup_move_size: u16,
    code32_start: u32,
    ramdisk_image: u32,
    ramdisk_size: u32,
    bootsect_kludge: u32,
    heap_end_ptr: u16,
    ext_loader_ver: u8,
    ext_loader_type: u8,
    cmd_line_ptr: u32,
    initrd_addr_max: u32,
    kernel_alignment: u32,
    relocatable_kernel: u8,
    min_alignment: u8,
    xloadflags: u16,
    cmdline_size: u32,
    hardware_subarch: u32,
    hardware_subarch_data: u64,
    payload_offset: u32,
    payload_length: u32,
    setup_data: u64,
    pref_address: u64,
    init_size: u32,
    handover_offset: u32,
    kernel_info_offset: u32
);

macro_rules! setup_fields {
    ($($f:ident: $t:ty),* $(,)?) => {
        [$((
            stringify!($f),
            SETUP_HEADER_OFFSET + core::mem::offset_of!(SetupHeader, $f),
            core::mem::size_of::<$t>(),
        )),*]
    };
}
use setup_fields;

/// `struct boot_e820_entry` (20 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, packed)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub typ: u32,
}

/// `struct setup_data` header; `len` bytes of data follow it.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
pub struct SetupData {
    pub next: u64,
    pub typ: u32,
    pub len: u32,
}

impl SetupData {
    /// Its 16 bytes as they sit at the head of a node.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&{ self.next }.to_le_bytes());
        b[8..12].copy_from_slice(&{ self.typ }.to_le_bytes());
        b[12..].copy_from_slice(&{ self.len }.to_le_bytes());
        b
    }
}

const _: () = assert!(size_of::<SetupData>() == 16);

/// `struct boot_params`, the 4 KiB "zero page".
#[derive(Clone, Copy)]
#[repr(C, packed)]
pub struct BootParams {
    pub screen_info: ScreenInfo,
    pub apm_bios_info: [u8; 0x14],
    pub pad2: [u8; 4],
    pub tboot_addr: u64,
    pub ist_info: [u8; 0x10],
    pub acpi_rsdp_addr: u64,
    pub pad3: [u8; 8],
    pub hd0_info: [u8; 16],
    pub hd1_info: [u8; 16],
    pub sys_desc_table: [u8; 0x10],
    pub olpc_ofw_header: [u8; 0x10],
    pub ext_ramdisk_image: u32,
    pub ext_ramdisk_size: u32,
    pub ext_cmd_line_ptr: u32,
    pub pad4: [u8; 112],
    pub cc_blob_address: u32,
    pub edid_info: [u8; 0x80],
    pub efi_info: EfiInfo,
    pub alt_mem_k: u32,
    pub scratch: u32,
    pub e820_entries: u8,
    pub eddbuf_entries: u8,
    pub edd_mbr_sig_buf_entries: u8,
    pub kbd_status: u8,
    pub secure_boot: u8,
    pub pad5: [u8; 2],
    pub sentinel: u8,
    pub pad6: [u8; 1],
    pub hdr: SetupHeader,
    pub pad7: [u8; 0x290 - 0x1f1 - size_of::<SetupHeader>()],
    pub edd_mbr_sig_buffer: [u32; 16],
    pub e820_table: [E820Entry; E820_MAX_ENTRIES_ZEROPAGE],
    pub pad8: [u8; 48],
    pub eddbuf: [u8; 6 * 82],
    pub pad9: [u8; 276],
}

const _: () = assert!(size_of::<ScreenInfo>() == 0x40);
const _: () = assert!(size_of::<EfiInfo>() == 0x20);
const _: () = assert!(size_of::<SetupHeader>() == 0x26c - 0x1f1);
const _: () = assert!(size_of::<E820Entry>() == 20);
const _: () = assert!(size_of::<SetupData>() == 16);
const _: () = assert!(size_of::<BootParams>() == 4096);

impl BootParams {
    /// An all-zero zero page.
    pub const fn zeroed() -> Self {
        // SAFETY: BootParams is plain integers and arrays of them; all-zero is a valid value.
        unsafe { core::mem::zeroed() }
    }

    /// The raw 4 KiB.
    pub fn as_bytes(&self) -> &[u8; 4096] {
        // SAFETY: BootParams is repr(C, packed) of integers, exactly 4096 bytes (asserted above),
        // alignment 1, no padding: every byte is initialised.
        unsafe { &*(self as *const Self as *const [u8; 4096]) }
    }

    /// Read a zero page from raw bytes.
    pub fn from_bytes(bytes: &[u8; 4096]) -> Self {
        // SAFETY: size matches (asserted above) and every bit pattern is a valid BootParams.
        unsafe { core::ptr::read_unaligned(bytes.as_ptr() as *const Self) }
    }

    /// The e820 entries stored in the zero page (clamped to the array).
    pub fn e820(&self) -> &[E820Entry] {
        let n = (self.e820_entries as usize).min(E820_MAX_ENTRIES_ZEROPAGE);
        // SAFETY: E820Entry has alignment 1 (packed), so a reference into the packed struct is aligned.
        let table = unsafe { &*core::ptr::addr_of!(self.e820_table) };
        &table[..n]
    }
}

/// Where a loader puts the protected-mode part of a bzImage (boot.rst: "load the protected-mode
/// kernel at 0x100000"), the base `code32_start` is given against.
pub const PROTECTED_MODE_LOAD_ADDR: u32 = 0x10_0000;
/// The 64-bit entry's (and the 64-bit EFI handover entry's) distance from the 32-bit one.
pub const LONG_MODE_ENTRY_OFFSET: u64 = 0x200;

impl SetupHeader {
    /// File offset of the protected-mode part: `(setup_sects + 1) * 512`, where a
    /// `setup_sects` of 0 means 4 (boot.rst).
    pub fn protected_mode_offset(&self) -> usize {
        let sects = match self.setup_sects {
            0 => 4,
            n => usize::from(n),
        };
        (sects + 1) * 512
    }

    /// File offset of the 32-bit entry: the protected-mode part's offset plus how far
    /// `code32_start` lies above where a loader puts that part (1 MiB, boot.rst).
    pub fn entry32_offset(&self) -> u64 {
        self.protected_mode_offset() as u64
            + u64::from({ self.code32_start }.wrapping_sub(PROTECTED_MODE_LOAD_ADDR))
    }

    /// File offset of the 64-bit entry ([`LONG_MODE_ENTRY_OFFSET`] into the protected-mode
    /// part, boot.rst "64-bit boot protocol").
    pub fn entry64_offset(&self) -> u64 {
        self.protected_mode_offset() as u64 + LONG_MODE_ENTRY_OFFSET
    }

    /// File offset of the 32-bit EFI handover entry (`handover_offset` into the protected-mode
    /// part).
    pub fn efi_handover32_offset(&self) -> u64 {
        self.protected_mode_offset() as u64 + u64::from(self.handover_offset)
    }

    /// File offset of the 64-bit EFI handover entry, [`LONG_MODE_ENTRY_OFFSET`] after the
    /// 32-bit one (as Linux's `efi64_stub_entry` after `efi32_stub_entry`).
    pub fn efi_handover64_offset(&self) -> u64 {
        self.efi_handover32_offset() + LONG_MODE_ENTRY_OFFSET
    }

    /// The version string `kernel_version` names in `file` (at `kernel_version + 0x200`), without
    /// its NUL; `None` when the field is 0 or no NUL ends it within
    /// [`crate::image::KERNEL_VERSION_MAX`] bytes.
    pub fn kernel_version_bytes<'a>(&self, file: &'a [u8]) -> Option<&'a [u8]> {
        let at = match self.kernel_version {
            0 => return None,
            off => usize::from(off) + 0x200,
        };
        let rest = file.get(at..)?;
        let len = rest
            .iter()
            .take(crate::image::KERNEL_VERSION_MAX + 1)
            .position(|&b| b == 0)?;
        Some(&rest[..len])
    }

    /// The kernel_info block `kernel_info_offset` names in `file` (boot protocol >= 2.15,
    /// counted from the protected-mode part).
    pub fn kernel_info(&self, file: &[u8]) -> Option<KernelInfo> {
        if self.version < 0x020f || self.kernel_info_offset == 0 {
            return None;
        }
        let at = self.protected_mode_offset() + self.kernel_info_offset as usize;
        KernelInfo::parse(file.get(at..)?)
    }

    /// Its bytes, as they sit at [`SETUP_HEADER_OFFSET`].
    pub fn to_bytes(&self) -> [u8; size_of::<SetupHeader>()] {
        let mut b = [0u8; size_of::<SetupHeader>()];
        // SAFETY: a packed struct of plain integers: every byte is initialized; length matches.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (self as *const Self).cast::<u8>(),
                b.as_mut_ptr(),
                b.len(),
            )
        };
        b
    }

    /// Read the setup header from a bzImage (or a zero page); `None` if too short.
    pub fn read(image: &[u8]) -> Option<Self> {
        let bytes = image.get(SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + size_of::<Self>())?;
        // SAFETY: length checked; every bit pattern is a valid SetupHeader (plain integers).
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr() as *const Self) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn boot_params_offsets_match_bootparam_h() {
        assert_eq!(offset_of!(BootParams, acpi_rsdp_addr), 0x070);
        assert_eq!(offset_of!(BootParams, ext_ramdisk_image), 0x0c0);
        assert_eq!(offset_of!(BootParams, ext_ramdisk_size), 0x0c4);
        assert_eq!(offset_of!(BootParams, ext_cmd_line_ptr), 0x0c8);
        assert_eq!(offset_of!(BootParams, cc_blob_address), 0x13c);
        assert_eq!(offset_of!(BootParams, edid_info), 0x140);
        assert_eq!(offset_of!(BootParams, efi_info), 0x1c0);
        assert_eq!(offset_of!(BootParams, alt_mem_k), 0x1e0);
        assert_eq!(offset_of!(BootParams, e820_entries), 0x1e8);
        assert_eq!(offset_of!(BootParams, secure_boot), 0x1ec);
        assert_eq!(offset_of!(BootParams, sentinel), 0x1ef);
        assert_eq!(offset_of!(BootParams, hdr), 0x1f1);
        assert_eq!(HDRS_OFFSET, 0x202);
        assert_eq!(offset_of!(BootParams, edd_mbr_sig_buffer), 0x290);
        assert_eq!(offset_of!(BootParams, e820_table), 0x2d0);
        assert_eq!(offset_of!(BootParams, eddbuf), 0xd00);
    }

    #[test]
    fn setup_header_offsets_match_boot_rst() {
        let at = |o: usize| o - SETUP_HEADER_OFFSET;
        assert_eq!(offset_of!(SetupHeader, root_flags), at(0x1f2));
        assert_eq!(offset_of!(SetupHeader, vid_mode), at(0x1fa));
        assert_eq!(offset_of!(SetupHeader, header), at(0x202));
        assert_eq!(offset_of!(SetupHeader, version), at(0x206));
        assert_eq!(offset_of!(SetupHeader, type_of_loader), at(0x210));
        assert_eq!(offset_of!(SetupHeader, loadflags), at(0x211));
        assert_eq!(offset_of!(SetupHeader, code32_start), at(0x214));
        assert_eq!(offset_of!(SetupHeader, ramdisk_image), at(0x218));
        assert_eq!(offset_of!(SetupHeader, cmd_line_ptr), at(0x228));
        assert_eq!(offset_of!(SetupHeader, initrd_addr_max), at(0x22c));
        assert_eq!(offset_of!(SetupHeader, kernel_alignment), at(0x230));
        assert_eq!(offset_of!(SetupHeader, xloadflags), at(0x236));
        assert_eq!(offset_of!(SetupHeader, cmdline_size), at(0x238));
        assert_eq!(offset_of!(SetupHeader, payload_offset), at(0x248));
        assert_eq!(offset_of!(SetupHeader, setup_data), at(0x250));
        assert_eq!(offset_of!(SetupHeader, pref_address), at(0x258));
        assert_eq!(offset_of!(SetupHeader, init_size), at(0x260));
        assert_eq!(offset_of!(SetupHeader, kernel_info_offset), at(0x268));
    }

    #[test]
    fn screen_info_offsets_match_screen_info_h() {
        assert_eq!(offset_of!(ScreenInfo, orig_video_is_vga), 0x0f);
        assert_eq!(offset_of!(ScreenInfo, lfb_width), 0x12);
        assert_eq!(offset_of!(ScreenInfo, lfb_base), 0x18);
        assert_eq!(offset_of!(ScreenInfo, lfb_size), 0x1c);
        assert_eq!(offset_of!(ScreenInfo, lfb_linelength), 0x24);
        assert_eq!(offset_of!(ScreenInfo, red_size), 0x26);
        assert_eq!(offset_of!(ScreenInfo, capabilities), 0x36);
        assert_eq!(offset_of!(ScreenInfo, ext_lfb_base), 0x3a);
    }

    #[test]
    fn zero_page_round_trips_through_bytes() {
        let mut bp = BootParams::zeroed();
        bp.hdr.header = HDRS_MAGIC;
        bp.e820_entries = 1;
        bp.e820_table[0] = E820Entry {
            addr: 0x1000,
            size: 0x2000,
            typ: E820_TYPE_RAM,
        };
        let back = BootParams::from_bytes(bp.as_bytes());
        assert_eq!({ back.hdr.header }, HDRS_MAGIC);
        assert_eq!(
            back.e820(),
            &[E820Entry {
                addr: 0x1000,
                size: 0x2000,
                typ: E820_TYPE_RAM
            }]
        );
        assert_eq!(&bp.as_bytes()[0x202..0x206], b"HdrS");
    }

    #[test]
    fn kernel_info_round_trip() {
        let k = KernelInfo {
            setup_type_max: SETUP_TYPE_MAX_DEFAULT,
        };
        let b = k.to_bytes();
        // Linux 6.1's bzImage: "LToP", 0x10, 0x10, 0x80000009.
        assert_eq!(
            b,
            [
                0x4c, 0x54, 0x6f, 0x50, 0x10, 0, 0, 0, 0x10, 0, 0, 0, 9, 0, 0, 0x80
            ]
        );
        assert_eq!(KernelInfo::parse(&b), Some(k));
        assert_eq!(KernelInfo::parse(&b[..15]), None);
        let mut bad = b;
        bad[4] = 8;
        assert_eq!(KernelInfo::parse(&bad), None);
    }

    #[test]
    fn setup_header_fields_tile_the_header() {
        let mut at = SETUP_HEADER_OFFSET;
        for (name, off, size) in SETUP_HEADER_FIELDS {
            assert_eq!(off, at, "{name}");
            at += size;
        }
        assert_eq!(at, SETUP_HEADER_OFFSET + size_of::<SetupHeader>());
        assert!(SETUP_HEADER_FIELDS.contains(&("kernel_version", 0x20e, 2)));
    }

    #[test]
    fn header_names_its_version_string_and_kernel_info() {
        let mut file = [0u8; 0x2000];
        let h = SetupHeader {
            setup_sects: 7,
            version: 0x020f,
            kernel_version: 0xd00,
            kernel_info_offset: 0x40,
            ..SetupHeader::default()
        };
        file[0xf00..0xf05].copy_from_slice(b"6.1 x");
        assert_eq!(h.kernel_version_bytes(&file), Some(&b"6.1 x"[..]));
        let info = KernelInfo { setup_type_max: 7 };
        file[0x1040..0x1050].copy_from_slice(&info.to_bytes());
        assert_eq!(h.kernel_info(&file), Some(info));
        // No NUL within the limit, no field, an older protocol: nothing.
        file[0xf00..0x1000].fill(b'x');
        assert_eq!(h.kernel_version_bytes(&file), None);
        let none = SetupHeader {
            kernel_version: 0,
            version: 0x020e,
            ..h
        };
        assert_eq!(none.kernel_version_bytes(&file), None);
        assert_eq!(none.kernel_info(&file), None);
    }

    #[test]
    fn entries_where_boot_rst_puts_them() {
        // Debian's bzImage: 0x1e setup sectors (protected mode at 0x3e00), handover_offset 0x190.
        let h = SetupHeader {
            setup_sects: 0x1e,
            code32_start: 0x10_0000,
            handover_offset: 0x190,
            ..SetupHeader::default()
        };
        assert_eq!(h.entry32_offset(), 0x3e00);
        assert_eq!(h.entry64_offset(), 0x4000);
        assert_eq!(h.efi_handover32_offset(), 0x3f90);
        assert_eq!(h.efi_handover64_offset(), 0x4190);
        // setup_sects 0 means 4; a code32_start above 1 MiB moves the 32-bit entry with it.
        let old = SetupHeader {
            setup_sects: 0,
            code32_start: 0x10_0200,
            ..h
        };
        assert_eq!(old.protected_mode_offset(), 0xa00);
        assert_eq!(old.entry32_offset(), 0xc00);
    }
}

//! Step 6: the zero page (`struct boot_params`) from plain inputs.
//!
//! Mirrors what Linux's own EFI stub fills in (drivers/firmware/efi/libstub/x86-stub.c
//! `efi_pe_entry`, `setup_graphics`/gop.c `setup_screen_info`, `exit_boot_func`,
//! `efi_stub_entry`), for a kernel proper entered at `startup_64`. Field layout comes from
//! `zboot_format::bootparam` (arch/x86/include/uapi/asm/bootparam.h); nothing here knows offsets.

use zboot_format::bootparam::*;

/// `hdr.version` we claim: boot protocol 2.15.
pub const BOOT_PROTOCOL: u16 = 0x020f;
/// `hdr.cmdline_size`: the longest line the kernel keeps (x86 `COMMAND_LINE_SIZE` − 1), from
/// the one owner of the command-line rules.
pub const CMDLINE_SIZE: u32 = zboot_format::cmdline::MAX_LEN as u32;
/// The kernel is 64-bit and every buffer may live above 4 GiB when we did not get memory below.
pub const DEFAULT_XLOADFLAGS: u16 = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;

/// Split a 64-bit address into the (low, high) halves the zero page stores.
pub const fn split(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

/// Where and how the kernel was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelPlacement {
    /// Physical base of the loaded image (2 MiB aligned).
    pub base: u64,
    /// Bytes reserved for the kernel (`mem_size`).
    pub mem_size: u64,
    /// Physical alignment the kernel needs.
    pub alignment: u64,
    /// Physical address the kernel was linked for.
    pub preferred_address: u64,
    /// `xloadflags` from the payload (0 for a bare vmlinux: defaults are used).
    pub xloadflags: u16,
    /// Whether the stub randomized the kernel's placement (sets `KASLR_FLAG`).
    pub randomized: bool,
}

impl KernelPlacement {
    /// The kernel of `h` at `base`; `randomized` when either KASLR half moved it.
    pub fn new(h: &zboot_format::header::PayloadHeader, base: u64, randomized: bool) -> Self {
        KernelPlacement {
            base,
            mem_size: h.mem_size,
            alignment: h.alignment,
            preferred_address: h.preferred_address,
            xloadflags: h.xloadflags,
            randomized,
        }
    }
}

/// The setup header fields a boot loader fills (Documentation/arch/x86/boot.rst), as the
/// mainline EFI stub does.
pub fn set_header(bp: &mut BootParams, k: &KernelPlacement) {
    let h = &mut bp.hdr;
    h.header = HDRS_MAGIC;
    h.version = BOOT_PROTOCOL;
    h.boot_flag = 0xaa55;
    h.root_flags = 1;
    h.vid_mode = 0xffff;
    h.type_of_loader = LOADER_TYPE_UNDEFINED;
    h.loadflags = LOADED_HIGH | if k.randomized { KASLR_FLAG } else { 0 };
    h.code32_start = k.base as u32;
    h.kernel_alignment = k.alignment as u32;
    h.relocatable_kernel = 1;
    h.min_alignment = k.alignment.trailing_zeros() as u8;
    h.xloadflags = if k.xloadflags == 0 {
        DEFAULT_XLOADFLAGS
    } else {
        k.xloadflags
    };
    h.cmdline_size = CMDLINE_SIZE;
    h.initrd_addr_max = 0x7fff_ffff;
    h.pref_address = k.preferred_address;
    h.init_size = k.mem_size as u32;
}

/// Command line at `addr` (NUL-terminated).
pub fn set_cmdline(bp: &mut BootParams, addr: u64) {
    let (lo, hi) = split(addr);
    bp.hdr.cmd_line_ptr = lo;
    bp.ext_cmd_line_ptr = hi;
}

/// Initrd at `addr`, `size` bytes (0, 0 for none).
pub fn set_initrd(bp: &mut BootParams, addr: u64, size: u64) {
    let (lo, hi) = split(addr);
    bp.hdr.ramdisk_image = lo;
    bp.ext_ramdisk_image = hi;
    let (lo, hi) = split(size);
    bp.hdr.ramdisk_size = lo;
    bp.ext_ramdisk_size = hi;
}

/// The EFI memory map handed over (the one ExitBootServices accepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EfiMemmap {
    pub addr: u64,
    pub size: u64,
    pub desc_size: u32,
    pub desc_version: u32,
}

/// `efi_info`: loader signature "EL64", system table, final memory map.
pub fn set_efi_info(bp: &mut BootParams, systab: u64, map: &EfiMemmap) {
    let (st_lo, st_hi) = split(systab);
    let (mm_lo, mm_hi) = split(map.addr);
    bp.efi_info = EfiInfo {
        efi_loader_signature: EFI_LOADER_SIGNATURE_64,
        efi_systab: st_lo,
        efi_memdesc_size: map.desc_size,
        efi_memdesc_version: map.desc_version,
        efi_memmap: mm_lo,
        efi_memmap_size: map.size as u32,
        efi_systab_hi: st_hi,
        efi_memmap_hi: mm_hi,
    };
}

/// Push a setup_data node (already filled, at physical `addr`) at the head of the list.
/// `node` is the node's header, updated with the current head.
pub fn link_setup_data(bp: &mut BootParams, node: &mut SetupData, addr: u64) {
    node.next = bp.hdr.setup_data;
    bp.hdr.setup_data = addr;
}

/// Writes a `setup_data` node of type `typ` carrying `data` into `dst` (the bytes at physical
/// `at`: the header, then `data`) and links it first into `bp`. `None` when `dst` cannot hold
/// it (nothing is written or linked then).
pub fn push_setup_node(
    bp: &mut BootParams,
    at: u64,
    dst: &mut [u8],
    typ: u32,
    data: &[u8],
) -> Option<()> {
    let head = size_of::<SetupData>();
    let dst = dst.get_mut(..head.checked_add(data.len())?)?;
    let mut node = SetupData {
        next: 0,
        typ,
        len: u32::try_from(data.len()).ok()?,
    };
    link_setup_data(bp, &mut node, at);
    dst[..head].copy_from_slice(&node.to_bytes());
    dst[head..].copy_from_slice(data);
    Some(())
}

/// GOP pixel layouts (`EFI_GRAPHICS_PIXEL_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelLayout {
    Rgb,
    Bgr,
    /// Red, green, blue, reserved masks.
    Bitmask([u32; 4]),
    BltOnly,
}

/// The current GOP mode, reduced to what `screen_info` needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GopMode {
    pub fb_base: u64,
    pub fb_size: u64,
    pub width: u32,
    pub height: u32,
    pub pixels_per_scan_line: u32,
    pub layout: PixelLayout,
}

/// (position, size) of the contiguous bit run in `mask`.
fn mask_bits(mask: u32) -> (u8, u8) {
    if mask == 0 {
        return (0, 0);
    }
    let pos = mask.trailing_zeros();
    let size = (mask >> pos).trailing_ones();
    (pos as u8, size as u8)
}

/// `screen_info` for efifb (VIDEO_TYPE_EFI), like libstub gop.c `setup_screen_info`;
/// `None` when the mode has no linear framebuffer.
pub fn screen_info(mode: &GopMode) -> Option<ScreenInfo> {
    let masks = match mode.layout {
        PixelLayout::Rgb => [0x0000_00ff, 0x0000_ff00, 0x00ff_0000, 0xff00_0000],
        PixelLayout::Bgr => [0x00ff_0000, 0x0000_ff00, 0x0000_00ff, 0xff00_0000],
        PixelLayout::Bitmask(m) => m,
        PixelLayout::BltOnly => return None,
    };
    if mode.fb_base == 0 {
        return None;
    }
    let [r, g, b, x] = masks.map(mask_bits);
    let depth: u16 = match mode.layout {
        PixelLayout::Bitmask(_) => (r.1 + g.1 + b.1 + x.1) as u16,
        _ => 32,
    };
    // SAFETY-free: ScreenInfo is plain integers; start from all zeroes.
    let mut si = BootParams::zeroed().screen_info;
    let (lo, hi) = split(mode.fb_base);
    si.orig_video_is_vga = VIDEO_TYPE_EFI;
    si.lfb_base = lo;
    si.ext_lfb_base = hi;
    si.capabilities = VIDEO_CAPABILITY_SKIP_QUIRKS
        | if hi != 0 {
            VIDEO_CAPABILITY_64BIT_BASE
        } else {
            0
        };
    si.lfb_width = mode.width as u16;
    si.lfb_height = mode.height as u16;
    si.lfb_depth = depth;
    si.lfb_linelength = (mode.pixels_per_scan_line as u64 * depth as u64 / 8) as u16;
    // As gop.c: the visible part, not the whole GOP buffer.
    si.lfb_size = si.lfb_linelength as u32 * si.lfb_height as u32;
    (si.red_pos, si.red_size) = r;
    (si.green_pos, si.green_size) = g;
    (si.blue_pos, si.blue_size) = b;
    (si.rsvd_pos, si.rsvd_size) = x;
    si.pages = 1;
    Some(si)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields() {
        let mut bp = BootParams::zeroed();
        let k = KernelPlacement {
            base: 0x1_0000_0000,
            mem_size: 64 << 20,
            alignment: 2 << 20,
            preferred_address: 16 << 20,
            xloadflags: 0,
            randomized: false,
        };
        set_header(&mut bp, &k);
        set_cmdline(&mut bp, 0x1_2345_6000);
        set_initrd(&mut bp, 0x7000_0000, 0x1_0000_0001);
        let h = bp.hdr;
        assert_eq!({ h.header }, HDRS_MAGIC);
        assert_eq!({ h.version }, 0x020f);
        assert_eq!({ h.boot_flag }, 0xaa55);
        assert_eq!({ h.vid_mode }, 0xffff);
        assert_eq!(h.type_of_loader, 0xff);
        assert_eq!(h.loadflags, LOADED_HIGH);
        assert_eq!({ h.kernel_alignment }, 2 << 20);
        assert_eq!(h.min_alignment, 21);
        assert_eq!({ h.xloadflags }, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G);
        assert_eq!({ h.cmd_line_ptr }, 0x2345_6000);
        assert_eq!({ bp.ext_cmd_line_ptr }, 1);
        assert_eq!(
            ({ h.ramdisk_image }, { bp.ext_ramdisk_image }),
            (0x7000_0000, 0)
        );
        assert_eq!(({ h.ramdisk_size }, { bp.ext_ramdisk_size }), (1, 1));

        set_header(
            &mut bp,
            &KernelPlacement {
                randomized: true,
                xloadflags: 0x7f,
                ..k
            },
        );
        assert_eq!(bp.hdr.loadflags, LOADED_HIGH | KASLR_FLAG);
        assert_eq!({ bp.hdr.xloadflags }, 0x7f);
    }

    #[test]
    fn efi_info_and_setup_data() {
        let mut bp = BootParams::zeroed();
        let map = EfiMemmap {
            addr: 0x1_8000_0000,
            size: 48 * 100,
            desc_size: 48,
            desc_version: 1,
        };
        set_efi_info(&mut bp, 0x7fe0_0018, &map);
        let e = bp.efi_info;
        assert_eq!({ e.efi_loader_signature }, u32::from_le_bytes(*b"EL64"));
        assert_eq!(({ e.efi_systab }, { e.efi_systab_hi }), (0x7fe0_0018, 0));
        assert_eq!(({ e.efi_memmap }, { e.efi_memmap_hi }), (0x8000_0000, 1));
        assert_eq!(
            ({ e.efi_memmap_size }, { e.efi_memdesc_size }, {
                e.efi_memdesc_version
            }),
            (4800, 48, 1)
        );

        let mut a = SetupData {
            next: 0,
            typ: SETUP_E820_EXT,
            len: 0,
        };
        let mut b = SetupData {
            next: 0,
            typ: SETUP_RNG_SEED,
            len: 0,
        };
        link_setup_data(&mut bp, &mut a, 0x1000);
        link_setup_data(&mut bp, &mut b, 0x2000);
        assert_eq!({ bp.hdr.setup_data }, 0x2000);
        assert_eq!(({ b.next }, { a.next }), (0x1000, 0));

        // A node with data, written and linked first; one that does not fit, neither.
        let mut page = [0u8; 64];
        assert_eq!(
            push_setup_node(&mut bp, 0x3000, &mut page, SETUP_RNG_SEED, &[7; 32]),
            Some(())
        );
        assert_eq!({ bp.hdr.setup_data }, 0x3000);
        assert_eq!(page[..8], 0x2000u64.to_le_bytes());
        assert_eq!(page[8..12], SETUP_RNG_SEED.to_le_bytes());
        assert_eq!(page[12..16], 32u32.to_le_bytes());
        assert_eq!(page[16..48], [7; 32]);
        assert_eq!(page[48..], [0; 16]);
        let mut small = [0u8; 40];
        assert_eq!(
            push_setup_node(&mut bp, 0x4000, &mut small, SETUP_RNG_SEED, &[7; 32]),
            None
        );
        assert_eq!({ bp.hdr.setup_data }, 0x3000);
        assert_eq!(small, [0; 40]);
    }

    #[test]
    fn screen_info_formats() {
        let mut m = GopMode {
            fb_base: 0x80_0000_0000,
            fb_size: 1280 * 800 * 4,
            width: 1280,
            height: 800,
            pixels_per_scan_line: 1280,
            layout: PixelLayout::Bgr,
        };
        let si = screen_info(&m).unwrap();
        assert_eq!(si.orig_video_is_vga, 0x70);
        assert_eq!(({ si.lfb_base }, { si.ext_lfb_base }), (0, 0x80));
        assert_ne!({ si.capabilities } & VIDEO_CAPABILITY_64BIT_BASE, 0);
        assert_eq!(
            ({ si.lfb_width }, { si.lfb_height }, { si.lfb_depth }),
            (1280, 800, 32)
        );
        assert_eq!({ si.lfb_linelength }, 5120);
        assert_eq!({ si.lfb_size }, 1280 * 800 * 4);
        assert_eq!(
            (
                si.red_pos,
                si.red_size,
                si.green_pos,
                si.blue_pos,
                si.rsvd_pos
            ),
            (16, 8, 8, 0, 24)
        );

        m.layout = PixelLayout::Rgb;
        m.fb_base = 0x8000_0000;
        let si = screen_info(&m).unwrap();
        assert_eq!((si.red_pos, si.blue_pos), (0, 16));
        assert_eq!({ si.capabilities } & VIDEO_CAPABILITY_64BIT_BASE, 0);

        m.layout = PixelLayout::Bitmask([0xf800, 0x07e0, 0x001f, 0]);
        let si = screen_info(&m).unwrap();
        assert_eq!({ si.lfb_depth }, 16);
        assert_eq!({ si.lfb_linelength }, 2560);
        assert_eq!(
            (
                si.red_pos,
                si.red_size,
                si.green_pos,
                si.green_size,
                si.blue_size
            ),
            (11, 5, 5, 6, 5)
        );

        m.layout = PixelLayout::BltOnly;
        assert!(screen_info(&m).is_none());
    }
}

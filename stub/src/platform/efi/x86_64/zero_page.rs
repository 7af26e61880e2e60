//! boot_params under EFI ("the zero page") and everything it points to: allocated and filled
//! while boot services run ([`prepare`]), finished with the final memory map after
//! ExitBootServices ([`ZeroPage::finish`]), where nothing may allocate or fail any more.

use crate::error::{Context, Error};
use crate::platform::efi::gop;
use crate::platform::efi::memory::{self, Pages};
use alloc::vec::Vec;
use uefi::boot::MemoryType;
use uefi::mem::memory_map::{MemoryMap, MemoryMapOwned};
use zboot_format::bootparam::{BootParams, E820Entry, SETUP_E820_EXT, SETUP_RNG_SEED, SetupData};
use zboot_stub::arch::x86_64::{boot_params as bp, e820};

/// The zero page and its parts, owned (freed on an error) until [`ZeroPage::finish`].
pub struct ZeroPage {
    page: Pages,
    params: BootParams,
    cmdline: Pages,
    rng_seed: Option<Pages>,
    /// Room for the e820 table built after ExitBootServices: a scratch table and a
    /// SETUP_E820_EXT node for entries beyond the zero page's 128.
    e820_scratch: Vec<E820Entry>,
    e820_ext: Pages,
}

/// A zero page for the kernel at `kernel`: its placement, the command line `line`, the
/// initrd, the RNG seed (when there is one worth handing on), the framebuffer, the Secure Boot
/// mode, and room for the e820 table.
pub fn prepare(
    kernel: &bp::KernelPlacement,
    line: &str,
    initrd: Option<(u64, u64)>,
    seed: Option<&[u8]>,
    secure_boot: u8,
) -> Result<ZeroPage, Error> {
    let page = Pages::low(4096, MemoryType::LOADER_DATA).efi("allocate boot_params")?;
    let mut params = BootParams::zeroed();
    bp::set_header(&mut params, kernel);
    let (rd_addr, rd_size) = initrd.unwrap_or((0, 0));
    bp::set_initrd(&mut params, rd_addr, rd_size);
    let rng_seed = seed.map(|s| rng_seed_node(&mut params, s)).transpose()?;
    let mut cmdline =
        Pages::low(line.len() as u64 + 1, MemoryType::LOADER_DATA).efi("allocate command line")?;
    cmdline.bytes_mut()[..line.len()].copy_from_slice(line.as_bytes());
    bp::set_cmdline(&mut params, cmdline.addr());
    if let Some(si) = gop::current_mode().as_ref().and_then(bp::screen_info) {
        params.screen_info = si;
        progress!(
            "efifb {}x{} at {:#x}",
            { si.lfb_width },
            { si.lfb_height },
            { si.lfb_base }
        );
    }
    params.secure_boot = secure_boot;
    let cap = memory::map_entries().efi("GetMemoryMap")? * 2 + 64;
    let e820_scratch = alloc::vec![E820Entry { addr: 0, size: 0, typ: 0 }; cap];
    let e820_ext = Pages::low(
        (size_of::<SetupData>() + cap * size_of::<E820Entry>()) as u64,
        MemoryType::LOADER_DATA,
    )
    .efi("allocate e820 extension")?;
    Ok(ZeroPage {
        page,
        params,
        cmdline,
        rng_seed,
        e820_scratch,
        e820_ext,
    })
}

impl ZeroPage {
    /// After ExitBootServices: the e820 table and the EFI memory map from the final `map`
    /// (kept allocated: the kernel reuses it), the system table `systab`; every part handed
    /// over. Returns the zero page's address.
    pub fn finish(mut self, map: MemoryMapOwned, systab: u64) -> u64 {
        let params = &mut self.params;
        e820_from(params, &map, self.e820_scratch, self.e820_ext);
        let meta = map.meta();
        bp::set_efi_info(
            params,
            systab,
            &bp::EfiMemmap {
                addr: map.buffer().as_ptr() as u64,
                size: meta.map_size as u64,
                desc_size: meta.desc_size as u32,
                desc_version: meta.desc_version,
            },
        );
        core::mem::forget(map);
        self.cmdline.leak();
        if let Some(p) = self.rng_seed {
            p.leak();
        }
        self.page.write(0, &self.params);
        self.page.leak()
    }
}

/// A `SETUP_RNG_SEED` node with `seed`, linked into `params` (the kernel feeds it to its
/// RNG and wipes it).
fn rng_seed_node(params: &mut BootParams, seed: &[u8]) -> Result<Pages, Error> {
    let mut page = Pages::low(4096, MemoryType::LOADER_DATA).efi("allocate RNG seed")?;
    let at = page.addr();
    bp::push_setup_node(params, at, page.bytes_mut(), SETUP_RNG_SEED, seed).ok_or(Error::Efi(
        "allocate RNG seed",
        uefi::Status::BUFFER_TOO_SMALL,
    ))?;
    Ok(page)
}

/// The e820 table from the final memory map: the first 128 entries in the zero page, the rest
/// in the SETUP_E820_EXT node `ext`. Nothing is freed (boot services are gone).
fn e820_from(
    params: &mut BootParams,
    map: &MemoryMapOwned,
    mut scratch: Vec<E820Entry>,
    mut ext: Pages,
) {
    let regions = map.entries().map(|d| e820::EfiRegion {
        ty: d.ty.0,
        phys_start: d.phys_start,
        pages: d.page_count,
        attribute: d.att.bits(),
    });
    let n = e820::convert(regions, &mut scratch);
    let in_zero_page = e820::fill_zero_page(params, &scratch[..n]);
    let rest = &scratch[in_zero_page..n];
    if !rest.is_empty() {
        let mut node = SetupData {
            next: 0,
            typ: SETUP_E820_EXT,
            len: size_of_val(rest) as u32,
        };
        bp::link_setup_data(params, &mut node, ext.addr());
        ext.write(0, &node);
        for (i, e) in rest.iter().enumerate() {
            ext.write(size_of::<SetupData>() + i * size_of::<E820Entry>(), e);
        }
    }
    ext.leak();
    core::mem::forget(scratch);
}

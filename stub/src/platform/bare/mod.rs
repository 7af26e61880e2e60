//! The bare platform: entered through the 64-bit or 32-bit boot protocol
//! (`arch/x86_64/legacy.rs`: kexec, VMMs, BIOS loaders after the 16-bit entry) with a loader's
//! boot_params and no firmware. Memory comes from the loader's e820 map, and every address the
//! loader handed over is checked against that map before a byte of it is read ([`Bare::new`]).
//! The kernel gets the loader's boot_params with our placement, line, initrd and seed. A
//! failure prints one line on COM1 (and a VGA text screen) and halts: there is nothing to
//! return to, and nothing unverified is run.

pub mod free_ram;
mod own_tables;

use crate::error::Error;
use crate::platform::{
    Handed, InitrdSource, Kernel, KernelRegion, LoadedInitrd, LoaderInput, Offer, Platform,
    loader_line,
};
use crate::{console, heap};
use alloc::vec::Vec;
use zboot_format::bootparam::{BootParams, QUIET_FLAG, SETUP_RNG_SEED, SetupData};
use zboot_format::header::PayloadHeader;
use zboot_format::image::{BARE_SCRATCH_SIZE, HEADERS_SIZE};
use zboot_format::measure::Event;
use zboot_stub::arch::x86_64::bare_map::{self, RangeSet};
use zboot_stub::arch::x86_64::loader_params as lp;
use zboot_stub::arch::x86_64::trampoline::{Trampoline, decide};
use zboot_stub::arch::x86_64::{
    boot_params as bp, handoff, kaslr, legacy, own_map, paging, serial,
};
use zboot_stub::cmdline::Options;
use zboot_stub::payload;
use zboot_stub::placement::{FreeRange, PhysMemory};

/// The bzImage entries' Rust half (`legacy.rs` switched to our stack). `own_map`: 1 when the
/// 32-bit entry built our own page tables (`own_map.rs`: 0..4 GiB), 0 when the loader's
/// identity map (64-bit protocol) is in use.
#[unsafe(no_mangle)]
extern "sysv64" fn zboot_bare_main(boot_params: u64, own_map: u64) -> ! {
    console::install(console::Sink::Serial);
    heap::install(heap::Backend::FreeRam);
    // SAFETY: the first statement at entry that touches our data, single-threaded.
    let relocated = unsafe { crate::image::relocate() };
    if relocated.is_err() {
        // Unrelocated: no formatting (it calls through our vtables).
        serial::text(
            "zboot: error: stub descriptor missing or invalid (not packed by zboot-pack?)\r\n",
        );
        legacy::halt();
    }
    match Bare::new(boot_params, own_map != 0).and_then(crate::pipeline::boot) {
        Ok(never) => match never {},
        Err(e) => {
            error!("{}", e);
            legacy::halt()
        }
    }
}

/// No firmware: a loader's boot_params, checked, and its RAM.
pub struct Bare {
    bp_addr: u64,
    image_base: u64,
    /// The loader's boot_params, copied once.
    loader: BootParams,
    found: lp::LoaderParams,
    /// Whether the 32-bit entry's own page tables are in use.
    own_map: bool,
}

impl Bare {
    /// The loader's boot_params at `bp_addr` and its RAM, less everything in use: every
    /// address it hands over must lie in that RAM. Our tables map the first 4 GiB only; the
    /// loader's, all its RAM. From here on the heap takes from that free RAM.
    fn new(bp_addr: u64, own_map: bool) -> Result<Bare, Error> {
        let limit = if own_map { own_map::MAPPED } else { 1 << 52 };
        if bp_addr < 0x1000 || bp_addr > limit - size_of::<BootParams>() as u64 {
            return Err(Error::LoaderParams(lp::ParamsError::BootParams(bp_addr)));
        }
        if !own_map && !loader_maps(bp_addr, size_of::<BootParams>() as u64) {
            return Err(Error::LoaderParams(lp::ParamsError::BootParams(bp_addr)));
        }
        let own = crate::image::own()
            .map_err(|e| Error::Payload(payload::PayloadError::Descriptor(e)))?;
        let ours = (
            own.base + u64::from(HEADERS_SIZE),
            own.base + u64::from(own.descriptor.image_size) + u64::from(BARE_SCRATCH_SIZE),
        );
        lp::check_boot_params_apart(bp_addr, ours).map_err(Error::LoaderParams)?;
        // SAFETY: the one address the protocol gives us (RSI), mapped (our own tables map
        // 0..4 GiB; the loader's were just walked), not our own bytes. It is checked against
        // the e820 map it carries right below, before anything it points at is read.
        let loader: BootParams = unsafe { core::ptr::read_unaligned(bp_addr as *const BootParams) };
        serial::use_screen(&{ loader.screen_info });
        let handover =
            bare_map::survey(bp_addr, &loader, ours, limit, &RawMemory).map_err(Error::Handover)?;
        let mut free = handover.free;
        if !own_map {
            // The loader's page tables, GDT and IDT (ours lie in our scratch area, already out).
            avoid_cpu_tables(&handover.ram, &mut free)?;
        }
        free_ram::install(free);
        Ok(Bare {
            bp_addr,
            image_base: own.base,
            loader,
            found: handover.params,
            own_map,
        })
    }
}

/// Whether the loader's page tables (the 64-bit protocol's identity map) map `[at, at + len)`
/// to itself: before we know its e820 map, the one check that keeps a boot_params address
/// outside memory from faulting (no IDT: a reset, not an error line).
fn loader_maps(at: u64, len: u64) -> bool {
    let (cr3, cr4) = handoff::control_registers();
    let levels = if cr4 & paging::CR4_LA57 != 0 { 5 } else { 4 };
    // SAFETY: each address read is an entry of a table reachable from CR3, the tables the CPU
    // runs on, which the loader identity maps as the 64-bit protocol requires.
    let read = |a: u64| unsafe { core::ptr::read_volatile(a as *const u64) };
    let Some(end) = at.checked_add(len) else {
        return false;
    };
    (at & !0xfff..end)
        .step_by(4096)
        .all(|page| paging::maps_identity(cr3, levels, page, read))
}

/// The kernel's region: taken out of the free RAM.
pub struct Region {
    at: u64,
    size: u64,
}

impl KernelRegion for Region {
    fn addr(&self) -> u64 {
        self.at
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `claim_at`/`claim_aligned` took these bytes out of the free RAM for this
        // region alone, and the &mut self borrow makes this the only view.
        unsafe { free_ram::bytes_mut(self.at, self.size) }
    }
    fn leak(self) -> u64 {
        self.at
    }
}

/// The loader's initrd or the embedded one (in our image, which the kernel leaves alone until
/// it has reserved the initrd); nothing of it is ours to free.
pub struct Initrd {
    source: InitrdSource,
    at: u64,
    size: u64,
    embedded: Option<&'static [u8]>,
}

impl LoadedInitrd for Initrd {
    fn source(&self) -> InitrdSource {
        self.source
    }
    fn bytes(&self) -> Option<&[u8]> {
        self.embedded
    }
    fn span(&self) -> (u64, u64) {
        (self.at, self.size)
    }
    fn leak(self) {}
}

/// What the jump needs: the finished boot_params, and the trampoline when the paging mode
/// changes.
pub struct Handoff {
    params_at: u64,
    cr3: u64,
    trampoline: Option<BareTrampoline>,
}

struct BareTrampoline {
    trampoline: Trampoline,
    code: u64,
    /// A page table for the code page (our own tables only).
    pt: Option<u64>,
}

impl PhysMemory for Bare {
    type Claim = Region;
    type Error = Error;

    fn free_ranges(&mut self) -> Result<Vec<FreeRange>, Error> {
        Ok(free_ram::ranges())
    }

    fn claim_at(&mut self, at: u64, size: u64) -> Option<Region> {
        free_ram::take_at(at, size).then_some(Region { at, size })
    }

    fn claim_aligned(&mut self, size: u64, align: u64) -> Result<(Region, u64), Error> {
        // Our own tables (the 32-bit entry) map the first 4 GiB: the survey left out the rest.
        let what = if self.own_map {
            "the kernel below 4 GiB (the 32-bit entry maps no more)"
        } else {
            "the kernel"
        };
        let at = free_ram::take_top(size, align, kaslr::PHYS_MAX).ok_or(Error::NoMemory(what))?;
        Ok((Region { at, size }, at))
    }
}

impl Platform for Bare {
    type Region = Region;
    type Initrd = Initrd;
    type Handoff = Handoff;

    fn report_entry(&self) {
        progress!(
            "bzImage entry: boot_params at {:#x}, image at {:#x}",
            self.bp_addr,
            self.image_base
        );
    }

    fn loader_input(&mut self) -> Result<LoaderInput, Error> {
        let options = match self.found.cmdline {
            None => alloc::string::String::new(),
            Some((at, max)) => loader_line::read(at, max)?,
        };
        Ok(LoaderInput {
            options,
            measured_options: None,
            initrd: self.found.initrd,
            secure_boot: self.loader.secure_boot,
        })
    }

    fn firmware_random(&mut self, _: &mut [u8]) -> bool {
        false
    }

    /// No firmware, no TPM protocol: nothing to extend.
    fn measure(&mut self, _: &Event) {}

    fn finish_measurements(&mut self) {}

    /// The loader's identity map is writable and executable; our own tables are made so for
    /// the kernel at [`Platform::protect_kernel`], once it is written.
    fn open_kernel(&mut self, _: &Region, _: &PayloadHeader) -> Result<(), Error> {
        Ok(())
    }

    fn load_initrd(&mut self, _: &Options, offer: Offer) -> Result<Option<Initrd>, Error> {
        let initrd = match (offer.loader, offer.embedded) {
            (Some((at, size)), _) => Initrd {
                source: InitrdSource::Loader,
                at,
                size,
                embedded: None,
            },
            (None, Some(b)) => Initrd {
                source: InitrdSource::Embedded,
                at: b.as_ptr() as u64,
                size: b.len() as u64,
                embedded: Some(b),
            },
            (None, None) => return Ok(None),
        };
        progress!("initrd {:#x}+{:#x}", initrd.at, initrd.size);
        Ok(Some(initrd))
    }

    /// The loader's boot_params keep its `secure_boot` (the state it reported, which the
    /// pipeline's lock rule read).
    fn prepare_handoff(&mut self, handed: &Handed<'_>) -> Result<Handoff, Error> {
        let params_at = self.boot_params(handed)?;
        let (switch, cr3) = decide(handed.kernel.header, handed.no5lvl);
        let trampoline = if switch == paging::Switch::None {
            None
        } else {
            let code = take_below_4g(4096, "the LA57 trampoline")?;
            let data = take_below_4g(8192, "the LA57 page table")?;
            let pt = if self.own_map {
                Some(take_below_4g(4096, "a page table for the LA57 trampoline")?)
            } else {
                None
            };
            // SAFETY: both just taken from free RAM below 4 GiB, identity mapped, ours.
            let trampoline = unsafe { Trampoline::new(switch, code, data) };
            progress!("5-level paging: {:?} via trampoline at {:#x}", switch, code);
            Some(BareTrampoline {
                trampoline,
                code,
                pt,
            })
        };
        Ok(Handoff {
            params_at,
            cr3,
            trampoline,
        })
    }

    /// Our own tables (32-bit entry): the kernel's region executable as it needs it, then the
    /// trampoline's code page read-only + executable (after its copy). The loader's tables
    /// (64-bit protocol) are the loader's: left as they are.
    fn protect_kernel(&mut self, kernel: &Kernel<'_>, handoff: &Handoff) -> Result<(), Error> {
        if self.own_map {
            own_tables::open_kernel(handoff.cr3, kernel.base, kernel.header);
        }
        if let Some(BareTrampoline {
            code, pt: Some(pt), ..
        }) = handoff.trampoline
        {
            // SAFETY: `pt` is a free page taken for this in `prepare_handoff`.
            unsafe { own_tables::map_code_page(handoff.cr3, code, pt) };
        }
        Ok(())
    }

    fn enter(self, entry: u64, _: Region, _: Option<Initrd>, handoff: Handoff) -> ! {
        match handoff.trampoline {
            // SAFETY: the kernel passed its stream check and is relocated; the boot_params
            // are complete; the trampoline's pages were taken for it.
            Some(t) => unsafe { t.trampoline.enter(handoff.cr3, entry, handoff.params_at) },
            // SAFETY: the kernel at `entry` passed its stream check, lies in RAM the loader
            // identity maps (as the 64-bit protocol requires of all RAM we use) or our own
            // tables map executable; the boot_params are complete.
            None => unsafe { handoff::jump(entry, handoff.params_at) },
        }
    }
}

impl Bare {
    /// The loader's boot_params with the kernel's placement, our line, initrd and seed,
    /// written to free RAM. Returns their address.
    fn boot_params(&self, handed: &Handed<'_>) -> Result<u64, Error> {
        let Handed {
            kernel,
            line,
            initrd,
            seed,
            ..
        } = handed;
        let mut params = self.loader;
        let placement = bp::KernelPlacement::new(kernel.header, kernel.base, kernel.randomized);
        bp::set_header(&mut params, &placement);
        let lh = self.loader.hdr;
        params.hdr.type_of_loader = lh.type_of_loader;
        params.hdr.ext_loader_ver = lh.ext_loader_ver;
        params.hdr.ext_loader_type = lh.ext_loader_type;
        params.hdr.hardware_subarch = lh.hardware_subarch;
        params.hdr.hardware_subarch_data = lh.hardware_subarch_data;
        params.hdr.loadflags |= lh.loadflags & QUIET_FLAG;
        let cmdline_at = take_low(line.len() as u64 + 1, "the command line")?;
        // SAFETY: just taken from the free RAM, `len + 1` bytes, nothing else refers to them.
        let dst = unsafe { free_ram::bytes_mut(cmdline_at, line.len() as u64 + 1) };
        dst[..line.len()].copy_from_slice(line.as_bytes());
        dst[line.len()] = 0;
        bp::set_cmdline(&mut params, cmdline_at);
        let (rd_addr, rd_size) = initrd.unwrap_or((0, 0));
        bp::set_initrd(&mut params, rd_addr, rd_size);
        if let Some(seed) = *seed {
            rng_seed_node(&mut params, seed)?;
        }
        let size = size_of::<BootParams>() as u64;
        let params_at = take_low(size, "boot_params")?;
        // SAFETY: 4 KiB just taken from the free RAM, nothing else refers to them.
        let dst = unsafe { free_ram::bytes_mut(params_at, size) };
        dst.copy_from_slice(params.as_bytes());
        Ok(params_at)
    }
}

/// The loader's page tables, GDT and IDT: in use until the kernel installs its own.
fn avoid_cpu_tables(ram: &RangeSet, free: &mut RangeSet) -> Result<(), Error> {
    let (cr3, cr4) = handoff::control_registers();
    let levels = if cr4 & paging::CR4_LA57 != 0 { 5 } else { 4 };
    // SAFETY: each address read is an entry of a page table in RAM reachable from CR3, which
    // the loader identity maps (the 64-bit protocol's requirement for what it set up).
    let read = |a: u64| unsafe { core::ptr::read_volatile(a as *const u64) };
    bare_map::walk_page_tables(cr3, levels, ram, &read, &mut |t| free.remove(t, t + 4096)).ok_or(
        Error::NoMemory("keeping clear of the loader's page tables (too many)"),
    )?;
    for (at, size) in legacy::descriptor_tables() {
        free.remove(at, at.saturating_add(size));
    }
    Ok(())
}

/// A `SETUP_RNG_SEED` node with `seed`, linked first into `params`.
fn rng_seed_node(params: &mut BootParams, seed: &[u8]) -> Result<(), Error> {
    let len = size_of::<SetupData>() + seed.len();
    let at = take_low(len as u64, "the RNG seed")?;
    // SAFETY: `len` bytes just taken from the free RAM, nothing else refers to them.
    let dst = unsafe { free_ram::bytes_mut(at, len as u64) };
    bp::push_setup_node(params, at, dst, SETUP_RNG_SEED, seed)
        .ok_or(Error::NoMemory("the RNG seed"))
}

fn take_low(size: u64, what: &'static str) -> Result<u64, Error> {
    free_ram::take_low(size).ok_or(Error::NoMemory(what))
}

fn take_below_4g(size: u64, what: &'static str) -> Result<u64, Error> {
    free_ram::take_top(size, 4096, 1 << 32).ok_or(Error::NoMemory(what))
}

/// The loader's memory, read in place (only where its e820 map says RAM is).
struct RawMemory;

impl bare_map::LoaderMemory for RawMemory {
    fn read(&self, at: u64, out: &mut [u8]) {
        // SAFETY: `survey` reads only inside the e820 RAM, which the loader identity maps (or
        // our own tables do, below `limit`).
        unsafe { core::ptr::copy_nonoverlapping(at as *const u8, out.as_mut_ptr(), out.len()) };
    }
}

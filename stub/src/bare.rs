//! The bzImage pipeline: entered through the 64-bit boot protocol (`legacy.rs`: kexec, VMMs)
//! with a loader's boot_params and no firmware. The same steps as the EFI pipeline — payload,
//! command line, KASLR, unpack, initrd, boot_params, paging mode, jump — with memory taken from
//! the loader's e820 map instead of AllocatePages, and every address the loader handed over
//! checked against that map before a byte of it is read. A failure prints one line on COM1 (and
//! a VGA text screen) and halts: there is nothing to return to, and nothing unverified is run.

use crate::arch::x86_64::bare_map::{self, RangeSet};
use crate::arch::x86_64::own_map::{self, KernelNeeds};
use crate::arch::x86_64::{boot_params as bp, handoff, kaslr, legacy, paging};
use crate::error::Error;
use crate::loader::{command_line, loader_cmdline};
use crate::trampoline::Trampoline;
use crate::{cmdline, console, payload, report, rng, serial};
use core::cell::UnsafeCell;
use core::convert::Infallible;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering::Relaxed};
use zboot_format::bootparam::{BootParams, QUIET_FLAG, SETUP_RNG_SEED, SetupData};
use zboot_format::image::{BARE_SCRATCH_SIZE, HEADERS_SIZE};
use zboot_stub::loader_params as lp;
use zboot_stub::unpack::unpack;

static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether we were entered as a bzImage (no firmware: console and heap are ours).
pub fn active() -> bool {
    ACTIVE.load(Relaxed)
}

/// The bzImage entries' Rust half (`legacy.rs` switched to our stack). `own_map`: 1 when the
/// 32-bit entry built our own page tables (`own_map.rs`: 0..4 GiB), 0 when the loader's
/// identity map (64-bit protocol) is in use.
#[unsafe(no_mangle)]
extern "sysv64" fn zboot_bare_main(boot_params: u64, own_map: u64) -> ! {
    // SAFETY: the first statement at entry, single-threaded.
    let relocated = unsafe { crate::image::relocate() };
    ACTIVE.store(true, Relaxed);
    if relocated.is_err() {
        // Unrelocated: no formatting (it calls through our vtables).
        serial::text(
            "zboot: error: stub descriptor missing or invalid (not packed by zboot-pack?)\r\n",
        );
        legacy::halt();
    }
    match boot(boot_params, own_map != 0) {
        Ok(never) => match never {},
        Err(e) => {
            error!("{}", e);
            legacy::halt()
        }
    }
}

fn boot(bp_addr: u64, own_map: bool) -> Result<Infallible, Error> {
    // 1. The loader's boot_params and its RAM, less everything in use: every address it
    //    hands over must lie in that RAM. Our tables map the first 4 GiB only; the loader's,
    //    all its RAM.
    let limit = if own_map { own_map::MAPPED } else { 1 << 52 };
    if bp_addr < 0x1000 || bp_addr > limit - size_of::<BootParams>() as u64 {
        return Err(Error::LoaderParams(lp::ParamsError::BootParams(bp_addr)));
    }
    // SAFETY: the one address the protocol gives us (RSI); in identity-mapped memory by the
    // protocol. It is checked against the e820 map it carries right below, before anything it
    // points at is read.
    let loader: BootParams = unsafe { core::ptr::read_unaligned(bp_addr as *const BootParams) };
    serial::use_screen(&{ loader.screen_info });
    let own =
        crate::image::own().map_err(|e| Error::Payload(payload::PayloadError::Descriptor(e)))?;
    let (base, descriptor) = (own.base, own.descriptor);
    let ours = (
        base + u64::from(HEADERS_SIZE),
        base + u64::from(descriptor.image_size) + u64::from(BARE_SCRATCH_SIZE),
    );
    let handover =
        bare_map::survey(bp_addr, &loader, ours, limit, &RawMemory).map_err(Error::Handover)?;
    let (ram, mut free, found) = (handover.ram, handover.free, handover.params);
    if !own_map {
        // The loader's page tables, GDT and IDT (ours lie in our scratch area, already out).
        avoid_cpu_tables(&ram, &mut free)?;
    }
    // From here the heap and every allocation of this pipeline take from `free` (on our stack:
    // this function never returns but with an error, and the guard unhooks it then).
    FREE.store(&raw mut free, Relaxed);
    let _unhook = FreeGuard;

    // 2. Payload and command line (the loader's appended to the embedded one; under Secure
    //    Boot, as the loader reports it, an embedded line stands alone).
    let payload = payload::locate_in_parts(own.parts, &descriptor).map_err(Error::Payload)?;
    let h = payload.header;
    let loader_line = match found.cmdline {
        None => alloc::string::String::new(),
        Some((at, max)) => loader_cmdline(at, max)?,
    };
    let locked = loader.secure_boot == bp::secure_boot::ENABLED;
    let (line, _) = command_line(payload.cmdline, &loader_line, locked)?;
    let opts = cmdline::Options::parse(&line);
    console::set_debug(opts.efi_debug);
    progress!(
        "bzImage entry: boot_params at {:#x}, image at {:#x}",
        bp_addr,
        base
    );
    progress!("cmdline: {}", line);

    // 3. KASLR and the kernel's memory.
    let random = rng::Random::take();
    let plan = kaslr::Plan::new(&opts, &h, random.kaslr_seeds());
    let (kernel, phys_random) = place_kernel(&h, &plan)?;
    report::placed(&h, kernel, phys_random, &plan, random.source);

    // 4. Check, decompress in place, undo the filters, relocate, clear the rest.
    // SAFETY: `place_kernel` took these `mem_size` bytes out of the free RAM: ours alone.
    let region = unsafe { core::slice::from_raw_parts_mut(kernel as *mut u8, h.mem_size as usize) };
    let t = unpack(&h, payload.compressed, region, plan.delta, &console::Tsc)?;
    report::unpacked(&h, &t);

    // 5. Initrd: the loader's, else the embedded one (in our image, which the kernel leaves
    //    alone until it has reserved the initrd).
    let initrd = if opts.noinitrd {
        None
    } else {
        found
            .initrd
            .or(payload.initrd.map(|b| (b.as_ptr() as u64, b.len() as u64)))
    };

    // 6. boot_params: the loader's, with the kernel's placement, our line, initrd and seed.
    let mut params = loader;
    let placement = bp::KernelPlacement::new(&h, kernel, phys_random || plan.virt_random);
    bp::set_header(&mut params, &placement);
    let lh = loader.hdr;
    params.hdr.type_of_loader = lh.type_of_loader;
    params.hdr.ext_loader_ver = lh.ext_loader_ver;
    params.hdr.ext_loader_type = lh.ext_loader_type;
    params.hdr.hardware_subarch = lh.hardware_subarch;
    params.hdr.hardware_subarch_data = lh.hardware_subarch_data;
    params.hdr.loadflags |= lh.loadflags & QUIET_FLAG;
    let cmdline_at = take_low(line.len() as u64 + 1, "the command line")?;
    // SAFETY: just taken from the free RAM, `len + 1` bytes.
    let dst = unsafe { core::slice::from_raw_parts_mut(cmdline_at as *mut u8, line.len() + 1) };
    dst[..line.len()].copy_from_slice(line.as_bytes());
    dst[line.len()] = 0;
    bp::set_cmdline(&mut params, cmdline_at);
    let (rd_addr, rd_size) = initrd.unwrap_or((0, 0));
    bp::set_initrd(&mut params, rd_addr, rd_size);
    if let Some((at, size)) = initrd {
        progress!("initrd {:#x}+{:#x}", at, size);
    }
    if let Some(seed) = random.kernel_seed() {
        rng_seed_node(&mut params, seed)?;
    }
    let params_at = take_low(size_of::<BootParams>() as u64, "boot_params")?;
    // SAFETY: 4 KiB just taken from the free RAM; BootParams is plain data (alignment 1).
    unsafe { core::ptr::write_unaligned(params_at as *mut BootParams, params) };

    // 7. The paging mode the kernel takes, and the jump.
    let (switch, cr3) = crate::trampoline::decide(&h, opts.no5lvl);
    if own_map {
        open_kernel(cr3, kernel, &h);
    }
    let entry = kernel + h.entry_offset;
    if switch != paging::Switch::None {
        let code = take_below_4g(4096, "the LA57 trampoline")?;
        let data = take_below_4g(8192, "the LA57 page table")?;
        // SAFETY: both just taken from free RAM below 4 GiB, identity mapped.
        let t = unsafe { Trampoline::new(switch, code, data) };
        if own_map {
            // Our tables map it writable + NX: now read-only + executable (after the copy).
            let pt = take_below_4g(4096, "a page table for the LA57 trampoline")?;
            map_code_page(cr3, code, pt);
        }
        progress!(
            "5-level paging: {:?} via trampoline at {:#x}",
            t.switch(),
            code
        );
        progress!("entering kernel at {:#x}", entry);
        // SAFETY: the kernel passed its stream check and is relocated; params is complete.
        unsafe { t.enter(cr3, entry, params_at) }
    }
    progress!("entering kernel at {:#x}", entry);
    // SAFETY: the kernel at `entry` passed its stream check, lies in RAM the loader identity
    // maps (as the 64-bit protocol requires of all RAM we use); the zero page is complete.
    unsafe { handoff::jump(entry, params_at) }
}

/// Our own tables (32-bit entry): the kernel's region executable as it needs it (the rest
/// stays non-executable).
fn open_kernel(cr3: u64, kernel: u64, h: &zboot_format::header::PayloadHeader) {
    let needs = if h.flags.has(zboot_format::Flags::TEXT_RO) {
        KernelNeeds::TextRo {
            text: u64::from(h.text_size),
            nx_end: u64::from(h.nx_end),
        }
    } else {
        KernelNeeds::Rwx
    };
    own_map::kernel_attrs(own_directory(cr3), kernel, h.mem_size, needs);
    // SAFETY: reloading CR3 with its own value flushes the TLB after the edit.
    unsafe { handoff::reload_cr3(cr3) };
    progress!("kernel region executable as it needs ({:?})", needs);
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

/// The kernel's region: a random slot (physical KASLR), else the preferred address, else the
/// lowest free aligned slot above it, else the highest aligned free range.
fn place_kernel(
    h: &zboot_format::header::PayloadHeader,
    plan: &kaslr::Plan,
) -> Result<(u64, bool), Error> {
    with_free(|free| {
        let rules = kaslr::SlotRules {
            size: h.mem_size,
            align: h.alignment,
            min: h.preferred_address,
            max: kaslr::PHYS_MAX,
        };
        if plan.phys == kaslr::PhysPolicy::Random
            && let Some(at) = kaslr::random_phys(free.ranges(), &rules, plan.phys_seed)
            && free.take_at(at, h.mem_size)
        {
            return Some((at, true));
        }
        if free.take_at(h.preferred_address, h.mem_size) {
            return Some((h.preferred_address, false));
        }
        if let Some(at) = kaslr::slot_address(free.ranges(), &rules, 0)
            && free.take_at(at, h.mem_size)
        {
            return Some((at, false));
        }
        free.take_top(h.mem_size, h.alignment, kaslr::PHYS_MAX)
            .map(|at| (at, false))
    })
    .flatten()
    .ok_or(Error::NoMemory("the kernel"))
}

/// A `SETUP_RNG_SEED` node with `seed`, linked first into `params`.
fn rng_seed_node(params: &mut BootParams, seed: &[u8]) -> Result<(), Error> {
    let len = size_of::<SetupData>() + seed.len();
    let at = take_low(len as u64, "the RNG seed")?;
    // SAFETY: `len` bytes just taken from the free RAM.
    let dst = unsafe { core::slice::from_raw_parts_mut(at as *mut u8, len) };
    bp::push_setup_node(params, at, dst, SETUP_RNG_SEED, seed)
        .ok_or(Error::NoMemory("the RNG seed"))
}

/// `size` bytes of free RAM, below 4 GiB when there is room (older consumers read 32 bits).
fn take_low(size: u64, what: &'static str) -> Result<u64, Error> {
    with_free(|f| {
        f.take_top(size, 4096, 1 << 32)
            .or_else(|| f.take_top(size, 4096, u64::MAX))
    })
    .flatten()
    .ok_or(Error::NoMemory(what))
}

fn take_below_4g(size: u64, what: &'static str) -> Result<u64, Error> {
    with_free(|f| f.take_top(size, 4096, 1 << 32))
        .flatten()
        .ok_or(Error::NoMemory(what))
}

/// Our own tables (32-bit entry): the 4 KiB page at `code` read-only + executable, splitting
/// its 2 MiB page into the page table at `pt` when needed.
fn map_code_page(cr3: u64, code: u64, pt: u64) {
    let pd = own_directory(cr3);
    // SAFETY: `pt` is a free page just taken (below 4 GiB, identity mapped, ours).
    let new_pt = unsafe { &mut *(pt as *mut [u64; 512]) };
    own_map::map_code_page(pd, code, new_pt, pt, |at| {
        // SAFETY: a page table of our own map (in our scratch area: one of the two holding our
        // code), identity mapped; nothing else uses it while we edit it.
        unsafe { &mut *(at as *mut [u64; 512]) }
    });
    // SAFETY: reloading CR3 with its own value flushes the TLB after the edit.
    unsafe { handoff::reload_cr3(cr3) };
}

/// The 2048 page directory entries of our own map (0..4 GiB).
fn own_directory(cr3: u64) -> &'static mut [u64] {
    let pd_at = (cr3 & paging::PTE_ADDR) - own_map::PML4 as u64 + own_map::PD as u64;
    // SAFETY: CR3 is our own PML4 (`own_map` layout, in our scratch area): the 2048 directory
    // entries follow at `PD`; nothing else uses them while we edit them.
    unsafe { core::slice::from_raw_parts_mut(pd_at as *mut u64, 2048) }
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

/// The free RAM, once the pipeline has worked it out (a local of `boot`, which outlives every
/// use): what the heap and every allocation of this pipeline come from. Null before and after.
static FREE: AtomicPtr<RangeSet> = AtomicPtr::new(core::ptr::null_mut());

/// Unhooks [`FREE`] when `boot` returns (with an error).
struct FreeGuard;

impl Drop for FreeGuard {
    fn drop(&mut self) {
        FREE.store(core::ptr::null_mut(), Relaxed);
    }
}

fn with_free<T>(f: impl FnOnce(&mut RangeSet) -> T) -> Option<T> {
    let p = FREE.load(Relaxed);
    // SAFETY: non-null only while `boot`'s `free` is alive (the guard); one CPU, interrupts off,
    // and `with_free` is never re-entered (its closures never allocate): no other reference to
    // it exists during `f`.
    (!p.is_null()).then(|| f(unsafe { &mut *p }))
}

/// The heap's current chunk `[next, end)`.
struct Chunk(UnsafeCell<(u64, u64)>);
// SAFETY: as `FreeRam`.
unsafe impl Sync for Chunk {}
static CHUNK: Chunk = Chunk(UnsafeCell::new((0, 0)));
const CHUNK_SIZE: u64 = 256 * 1024;

/// The global allocator without firmware: small blocks from a chunk, large ones straight from
/// the free RAM; nothing is ever freed (the kernel gets it back as RAM). Null when nothing
/// fits (or before the free RAM is known).
pub fn heap_alloc(layout: core::alloc::Layout) -> *mut u8 {
    let (size, align) = (layout.size() as u64, layout.align() as u64);
    if size >= CHUNK_SIZE / 4 {
        return with_free(|f| f.take_top(size, align, u64::MAX))
            .flatten()
            .map_or(core::ptr::null_mut(), |a| a as *mut u8);
    }
    // SAFETY: as `FreeRam` (single-threaded, not re-entered).
    let chunk = unsafe { &mut *CHUNK.0.get() };
    let mut at = chunk.0.next_multiple_of(align);
    if chunk.0 == 0 || at + size > chunk.1 {
        let Some(start) = with_free(|f| f.take_top(CHUNK_SIZE, 4096, u64::MAX)).flatten() else {
            return core::ptr::null_mut();
        };
        *chunk = (start, start + CHUNK_SIZE);
        at = start.next_multiple_of(align);
    }
    chunk.0 = at + size;
    at as *mut u8
}

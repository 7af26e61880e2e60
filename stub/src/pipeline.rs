//! The boot pipeline, once, over any [`Platform`]: every entry builds its platform and calls
//! [`boot`]. The rules it applies (which command line, which Secure Boot state locks it, where
//! the kernel goes, what is measured) live in the host-tested library; the platform only
//! answers. Every allocation is owned until the hand-off, so an early return frees what the
//! platform can free; nothing jumps into bytes that failed the stream check.

use crate::error::Error;
use crate::platform::{Handed, InitrdSource, Kernel, KernelRegion, LoadedInitrd, Offer, Platform};
use crate::{console, image, memstats, report, rng};
use core::convert::Infallible;
use zboot_format::header::PayloadHeader;
use zboot_format::measure::{Event, Tag};
use zboot_stub::arch::current::kaslr;
use zboot_stub::placement::{self, How, SlotRules};
use zboot_stub::{cmdline, secure_boot};

pub fn boot<P: Platform>(mut p: P) -> Result<Infallible, Error> {
    // 1. Find and validate the payload in our own image.
    let payload = image::payload()?;
    let h = payload.header;

    // 2. Command line: what the loader passed is measured into PCR 9 with the embedded line
    //    before either is used; the loader's is appended to the embedded one, except that under
    //    Secure Boot an embedded (signed) line stands alone.
    let input = p.loader_input()?;
    measure_command_line(&mut p, payload.cmdline, input.measured_options.as_deref());
    let (line, loader_used) = cmdline::kernel_line(
        payload.cmdline,
        &input.options,
        secure_boot::locked(input.secure_boot),
    )?;
    let opts = cmdline::Options::parse(&line);
    console::set_debug(opts.efi_debug);
    p.report_entry();
    report_start(&h, &line, !loader_used && !input.options.trim().is_empty());

    // 3. KASLR decisions and the kernel's memory, once, aligned, executable.
    let random = rng::Random::take(|out| p.firmware_random(out));
    let plan = kaslr::Plan::new(&opts, &h, random.kaslr_seeds());
    let (mut region, phys_random) = memstats::for_payload(|| place_kernel(&mut p, &h, &plan))?;
    p.open_kernel(&region, &h)?;
    report::placed(&h, region.addr(), phys_random, &plan, random.source);

    // 4. Check, decompress in place, undo the filters, relocate, clear the rest.
    let t = zboot_stub::unpack::unpack(
        &h,
        payload.compressed,
        region.bytes_mut(),
        plan.delta,
        &console::Counter,
    )?;
    report::unpacked(&h, &t);

    // 5. Initrd (none with `noinitrd`), measured into PCR 9 unless the loader placed it; the
    //    event log handed on.
    let offer = Offer {
        loader: input.initrd,
        embedded: payload.initrd,
    };
    let initrd = if opts.noinitrd {
        None
    } else {
        memstats::for_payload(|| p.load_initrd(&opts, offer))?
    };
    if let Some(i) = &initrd {
        measure_initrd(&mut p, i);
    }
    p.finish_measurements();

    // 6. What the kernel is handed and the paging switch, prepared while memory can be had;
    //    then W^X for the kernel, last of all that can fail.
    let handed = Handed {
        kernel: Kernel {
            header: &h,
            base: region.addr(),
            randomized: phys_random || plan.virt_random,
        },
        line: &line,
        initrd: initrd.as_ref().map(|i| i.span()),
        seed: random.kernel_seed(),
        no5lvl: opts.no5lvl,
        secure_boot: input.secure_boot,
    };
    let handoff = p.prepare_handoff(&handed)?;
    report::memory();
    p.protect_kernel(&handed.kernel, &handoff)?;

    // 7. Leave the platform and enter the kernel.
    let entry = handed.kernel.base + h.entry_offset;
    progress!("entering kernel at {:#x}", entry);
    p.enter(entry, region, initrd, handoff)
}

/// The command line's parts into PCR 9, as Linux's stub measures them: the embedded line, and
/// the loader's options where the platform measures them (`options`).
fn measure_command_line<P: Platform>(p: &mut P, embedded: &[u8], options: Option<&[u8]>) {
    if !embedded.is_empty() {
        p.measure(&Event {
            tag: Tag::EmbeddedCmdline,
            data: embedded,
        });
    }
    if let Some(raw) = options.filter(|o| !o.is_empty()) {
        p.measure(&Event {
            tag: Tag::LoadOptions,
            data: raw,
        });
    }
}

/// The initrd the kernel gets into PCR 9, unless the loader placed it (the loader read it and
/// measures what it reads; Linux's stub measures only what it loads itself).
fn measure_initrd<P: Platform>(p: &mut P, initrd: &P::Initrd) {
    if initrd.source() == InitrdSource::Loader {
        return;
    }
    if let Some(data) = initrd.bytes().filter(|d| !d.is_empty()) {
        p.measure(&Event {
            tag: Tag::Initrd,
            data,
        });
    }
}

/// The kernel's region by `plan` and the one placement policy (`zboot_stub::placement`), over
/// the platform's memory. Returns the region and whether its address was randomized.
fn place_kernel<P: Platform>(
    p: &mut P,
    h: &PayloadHeader,
    plan: &kaslr::Plan,
) -> Result<(P::Region, bool), Error> {
    let rules = SlotRules {
        size: h.mem_size,
        align: h.alignment,
        min: h.preferred_address,
        max: kaslr::PHYS_MAX,
    };
    let seed = (plan.phys == kaslr::PhysPolicy::Random).then_some(plan.phys_seed);
    let placed = placement::place(p, &rules, h.preferred_address, seed)?;
    if seed.is_some() && placed.how != How::Random {
        progress!("KASLR: no free slot taken, physical randomization off");
    }
    if matches!(placed.how, How::LowestSlot | How::Anywhere) {
        progress!(
            "preferred address {:#x} busy: kernel at {:#x} instead",
            h.preferred_address,
            placed.at
        );
    }
    Ok((placed.claim, placed.how == How::Random))
}

/// The `efi=debug` lines about what we carry and the line the kernel gets.
fn report_start(h: &PayloadHeader, line: &str, options_ignored: bool) {
    if options_ignored {
        progress!("Secure Boot: loader options ignored, the embedded command line stands alone");
    }
    progress!(
        "payload {} {} -> {} bytes, mem {:#x}",
        h.codec.name(),
        h.compressed_size,
        h.uncompressed_size,
        h.mem_size
    );
    progress!("cmdline: {}", line);
}

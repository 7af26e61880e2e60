//! What a bzImage loader hands the stub's firmware-less pipeline (`bare_map::survey`): an
//! arbitrary zero page (its e820 map, command line, initrd and setup_data pointers) over an
//! arbitrary 64 KiB of "loader memory" at 0x10_0000 (setup_data nodes, e820 extensions), and
//! our image anywhere. Invariants: no panic; what it reports free is RAM and never overlaps
//! what is in use (the first MiB, our image, boot_params, command line, initrd).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zboot_format::bootparam::BootParams;
use zboot_stub::arch::x86_64::bare_map::{self, LoaderMemory};

const MEM_AT: u64 = 0x10_0000;
const MEM_LEN: usize = 0x1_0000;

struct Fake<'a>(&'a [u8]);

impl LoaderMemory for Fake<'_> {
    fn read(&self, at: u64, out: &mut [u8]) {
        // Memory outside the fake window reads as zeros.
        for (i, b) in out.iter_mut().enumerate() {
            let a = at + i as u64;
            *b = if (MEM_AT..MEM_AT + MEM_LEN as u64).contains(&a) {
                self.0.get((a - MEM_AT) as usize).copied().unwrap_or(0)
            } else {
                0
            };
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4096 + 24 {
        return;
    }
    let (head, rest) = data.split_at(24);
    let (page, mem) = rest.split_at(4096);
    let mut bp = BootParams::from_bytes(page.try_into().unwrap());
    // The header check (a unit test's) would refuse nearly every input before the rest runs:
    // the two fields it reads are ours unless the first byte says otherwise.
    if head[0] & 1 == 0 {
        bp.hdr.setup_sects = zboot_format::image::SETUP_SECTS;
        bp.hdr.header = zboot_format::bootparam::HDRS_MAGIC;
    }
    let word = |i: usize| u64::from_le_bytes(head[i * 8..i * 8 + 8].try_into().unwrap());
    let bp_addr = word(0) & 0xffff_ffff_f000;
    let ours_start = word(1) & 0xffff_ffff_f000;
    let ours = (ours_start, ours_start.saturating_add(word(2) & 0xfff_ffff));
    let Ok(h) = bare_map::survey(bp_addr, &bp, ours, u64::MAX, &Fake(mem)) else {
        return;
    };
    let busy = |at: u64, len: u64| !h.free.contains(at, len);
    assert!(busy(0, 0x10_0000));
    assert!(ours.1 <= ours.0 || busy(ours.0, ours.1 - ours.0));
    assert!(busy(bp_addr, 4096));
    if let Some((at, n)) = h.params.initrd {
        assert!(h.ram.contains(at, n) && busy(at, n));
    }
    if let Some((at, n)) = h.params.cmdline {
        assert!(h.ram.contains(at, n) && busy(at, n));
    }
    for r in h.free.ranges() {
        assert!(r.start < r.end && h.ram.contains(r.start, r.end - r.start));
    }
});

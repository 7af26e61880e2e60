//! The packer's ELF reader (`input::elf::parse`): no panic on any input; an accepted kernel
//! has sane segments.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = zboot_pack::input::elf::parse(data);
});

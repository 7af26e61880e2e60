//! The packer's bzImage reader: `bzimage::info` (setup header) and `bzimage::parse` (payload
//! location, decompression, inner ELF). Byte 0 bit 0 set: the input gets a plausible setup
//! header signature (`HdrS`, version, setup_sects) so that the code behind it is reached.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut d = rest.to_vec();
    if mode & 1 == 1 && d.len() >= 0x260 {
        d[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        d[0x202..0x206].copy_from_slice(b"HdrS");
    }
    let _ = zboot_pack::input::bzimage::info(&d);
    let _ = zboot_pack::input::parse_kernel(&d);
});

//! `zboot-pack verify`'s rule checks (`commands::verify::violations`) on any input: no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = zboot_pack::commands::verify::violations(data);
});

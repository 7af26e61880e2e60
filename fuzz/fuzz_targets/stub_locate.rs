//! The stub's first step, `payload::locate`, on an arbitrary "loaded image": the stub descriptor
//! (found by its magic), the payload range it names, the payload header, the embedded command
//! line/initrd references and their checksum. Invariant: no panic; what it returns lies inside the image.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|image: &[u8]| {
    if let Ok(p) = zboot_stub::payload::locate(image) {
        let inside = |s: &[u8]| {
            let lo = image.as_ptr() as usize;
            let p = s.as_ptr() as usize;
            s.is_empty() || (p >= lo && p + s.len() <= lo + image.len())
        };
        assert!(inside(p.compressed));
        assert!(inside(p.cmdline));
        assert!(p.initrd.is_none_or(inside));
        assert_eq!(p.compressed.len() as u64, p.header.compressed_size);
    }
});

//! The packer's PE reader (`pe::read::PeFile::parse`) and everything `inspect`/`extract` do
//! with it: sections, data directories, RVA lookups, the checksum, the payload section and
//! its decoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zboot_pack::pe::read::{PeFile, pe_checksum};

fuzz_target!(|data: &[u8]| {
    let Ok(pe) = PeFile::parse(data) else {
        return;
    };
    for i in 0..16 {
        let (rva, size) = pe.dir(i);
        let _ = pe.rva_bytes(rva, size);
        let _ = pe.rva_to_offset(rva);
    }
    for s in &pe.sections {
        let _ = (s.name(), pe.raw(s), pe.contents(s), s.va_end());
    }
    let _ = pe_checksum(data, pe.checksum_offset());
    if let Ok(Some(p)) = zboot_pack::payload::find(&pe) {
        // Keep decoding bounded: the fuzzer's inputs are small, but a declared size is not.
        if p.header.uncompressed_size <= 1 << 22 {
            let _ = zboot_pack::payload::decode(&p);
        }
    }
});

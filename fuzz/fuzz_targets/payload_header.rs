//! The payload-header parser (`PayloadHeader::parse`) and the relocation table
//! (`RelocTable::parse` / `check_counts` / `apply`), driven the way the stub's `unpack` drives
//! them. Byte 0 bit 0 set: the header's own checksum is recomputed so that the field checks
//! behind the checksum are reached. Invariants: no panic; a header that parses has its
//! compressed stream inside the section, decoded stream <= mem_size, entry inside the image,
//! and the stub's relocation-table slicing stays in bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zboot_format::Flags;
use zboot_format::checksum;
use zboot_format::header::{HEADER_SIZE, PayloadHeader, layout};
use zboot_format::relocs::RelocTable;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut section = rest.to_vec();
    if mode & 1 == 1 && section.len() >= HEADER_SIZE {
        let check = checksum::of(&section[..layout::HEADER_CHECK]);
        section[layout::HEADER_CHECK..HEADER_SIZE].copy_from_slice(&check.to_le_bytes());
    }
    let Ok(h) = PayloadHeader::parse(&section) else {
        return;
    };
    let compressed = h
        .compressed(&section)
        .expect("compressed stream inside the section");
    assert_eq!(compressed.len() as u64, h.compressed_size);
    assert!(h.uncompressed_size <= h.mem_size);
    assert!(h.image_size <= h.uncompressed_size);
    assert!(h.entry_offset < h.image_size);
    // Re-serialising gives back the same header.
    let mut out = [0u8; HEADER_SIZE];
    h.write(&mut out);
    assert_eq!(
        PayloadHeader::parse(&[&out[..], compressed].concat()).ok(),
        Some(h)
    );

    // The stub's relocation step on a region of mem_size bytes (at most 4 MiB here): the table
    // is the decoded stream after the image; fill it from the fuzz input.
    if h.mem_size > 4 << 20 || !h.flags.has(Flags::RELOCS) {
        return;
    }
    let mut region = vec![0u8; h.mem_size as usize];
    let decoded_len = h.uncompressed_size as usize;
    let tail = &section[HEADER_SIZE..];
    for (d, s) in region[..decoded_len]
        .iter_mut()
        .rev()
        .zip(tail.iter().rev())
    {
        *d = *s;
    }
    let (image, rest) = region.split_at_mut(h.image_size as usize);
    let table_at = (h.relocs_offset - h.image_size) as usize;
    let Ok(table) = RelocTable::parse(&rest[table_at..decoded_len - h.image_size as usize]) else {
        return;
    };
    if table
        .check_counts(h.relocs_count64, h.relocs_count_inv32, h.relocs_count32)
        .is_err()
    {
        return;
    }
    let before = image.to_vec();
    if table.apply(image, h.link_virt_base, 0x20_0000).is_err() {
        assert_eq!(
            before, image,
            "a rejected table must leave the image untouched"
        );
    }
});

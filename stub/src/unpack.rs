//! Step 4, shared by the EFI and the bzImage pipelines: the compressed kernel, verified, decoded
//! straight into its region, its filters undone, relocated, the rest of the region cleared.

use crate::console;
use crate::error::Error;
use zboot_format::filters;
use zboot_format::header::PayloadHeader;
use zboot_format::relocs::RelocTable;
use zboot_stub::decode;

/// Unpack into `region` (at least `h.mem_size` bytes) with virtual KASLR `delta`.
pub fn unpack(
    h: &PayloadHeader,
    compressed: &[u8],
    region: &mut [u8],
    delta: u64,
) -> Result<(), Error> {
    let region = &mut region[..h.mem_size as usize];
    let decoded_len = h.uncompressed_size as usize;
    // Integrity first: no decoder ever sees bytes that fail the stream's checksum. The
    // decoded stream is then fixed by verified input, exact-size filling and the codec's own
    // checksum (zstd, xz); checking 60+ MB again here would cost seconds (docs/format.md).
    let t = console::now();
    if !h.stream_intact(compressed) {
        return Err(Error::StreamChecksum);
    }
    progress!("stream checksum ok in {} ms", console::elapsed_ms(t));
    let t = console::now();
    decode::decode(h.codec, compressed, &mut region[..decoded_len]).map_err(Error::Decode)?;
    progress!(
        "decoded {} bytes in {} ms",
        decoded_len,
        console::elapsed_ms(t)
    );
    let t = console::now();
    filters::undo(h.flags, h.image_size, &mut region[..decoded_len]);
    progress!(
        "filters {:#x} undone in {} ms",
        h.flags.0,
        console::elapsed_ms(t)
    );
    if h.flags.has(zboot_format::Flags::RELOCS) {
        let (image, rest) = region.split_at_mut(h.image_size as usize);
        let table_at = (h.relocs_offset - h.image_size) as usize;
        let table = RelocTable::parse(&rest[table_at..decoded_len - h.image_size as usize])
            .map_err(Error::Relocs)?;
        table
            .check_counts(h.relocs_count64, h.relocs_count_inv32, h.relocs_count32)
            .map_err(Error::Relocs)?;
        table
            .apply(image, h.link_virt_base, delta)
            .map_err(Error::Relocs)?;
    }
    region[h.image_size as usize..].fill(0);
    Ok(())
}

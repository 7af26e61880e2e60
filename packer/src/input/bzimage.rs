//! bzImage / vmlinuz reader: finds the compressed payload through the setup header, decodes it
//! (codec detected by magic) and reads the ELF + appended relocation table inside.

use anyhow::{Context, Result, bail};
use zboot_format::bootparam::{HDRS_MAGIC, SetupHeader, XLF_5LEVEL};

use super::{KernelImage, SourceKind, elf};
use crate::compress;

/// Offset of the "HdrS" magic in a bzImage.
const HDRS_OFFSET: usize = 0x202;

/// Whether `data` has a Linux x86 boot-protocol setup header.
pub fn is_bzimage(data: &[u8]) -> bool {
    data.get(HDRS_OFFSET..HDRS_OFFSET + 4) == Some(&HDRS_MAGIC.to_le_bytes()[..])
}

/// Setup-header facts and the location of the compressed payload.
#[derive(Clone, Copy, Debug)]
pub struct BzInfo {
    pub hdr: SetupHeader,
    /// File offset of the compressed payload.
    pub payload_offset: usize,
    pub payload_length: usize,
}

/// Locate the payload. Fails for old boot protocols without `payload_offset` (< 2.08).
pub fn info(data: &[u8]) -> Result<BzInfo> {
    let hdr = SetupHeader::read(data).context("truncated bzImage setup header")?;
    let version = hdr.version;
    if version < 0x0208 {
        bail!("bzImage boot protocol {version:#06x} too old (payload location needs >= 2.08)");
    }
    let setup_sects = if hdr.setup_sects == 0 {
        4
    } else {
        usize::from(hdr.setup_sects)
    };
    let payload_offset = (setup_sects + 1) * 512 + hdr.payload_offset as usize;
    let payload_length = hdr.payload_length as usize;
    if payload_length == 0
        || payload_offset
            .checked_add(payload_length)
            .is_none_or(|e| e > data.len())
    {
        bail!(
            "bzImage payload {payload_offset:#x}+{payload_length:#x} beyond the end of the file ({:#x} bytes)",
            data.len()
        );
    }
    Ok(BzInfo {
        hdr,
        payload_offset,
        payload_length,
    })
}

/// Decode the bzImage payload: the kernel ELF followed by its relocation table.
pub fn decode_payload(data: &[u8]) -> Result<(BzInfo, &'static str, Vec<u8>)> {
    let info = info(data)?;
    let payload = &data[info.payload_offset..info.payload_offset + info.payload_length];
    let (name, decoded) = compress::decode_any(payload).context("bzImage payload")?;
    Ok((info, name, decoded))
}

/// Read a bzImage.
pub fn parse(data: &[u8]) -> Result<KernelImage> {
    let (info, codec, decoded) = decode_payload(data)?;
    if !decoded.starts_with(b"\x7fELF") {
        bail!("bzImage payload ({codec}) does not decode to an ELF");
    }
    let mut k = elf::parse(&decoded).context("embedded ELF")?;
    let hdr = info.hdr;
    k.facts.source = SourceKind::BzImage;
    k.facts.xloadflags = hdr.xloadflags;
    k.facts.boot_protocol = hdr.version;
    k.facts.la57 = hdr.xloadflags & XLF_5LEVEL != 0;
    k.facts.la57_source = Some("bzImage setup header (xloadflags XLF_5LEVEL)".into());
    let align = u64::from(hdr.kernel_alignment);
    if align.is_power_of_two() && align >= 4096 {
        k.facts.alignment = Some(align.max(zboot_format::X86_KERNEL_ALIGN));
    }
    k.facts.init_size = Some(hdr.init_size);
    k.facts.bz_codec = Some(codec);
    Ok(k)
}

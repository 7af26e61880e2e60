//! bzImage / vmlinuz reader: finds the compressed payload through the setup header, decodes it
//! (codec detected by magic) and reads the ELF + appended relocation table inside.

use anyhow::{Context, Result, bail};
use zboot_format::bootparam::{HDRS_MAGIC, HDRS_OFFSET, SetupHeader, XLF_5LEVEL};

use super::{KernelImage, SourceKind, elf};
use crate::compress;

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
    let payload_offset = hdr.protected_mode_offset() + hdr.payload_offset as usize;
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

/// `IMAGE_DLLCHARACTERISTICS_NX_COMPAT` in the bzImage's own PE header.
fn nx_compat(data: &[u8]) -> bool {
    // DllCharacteristics at optional-header + 70.
    let Ok(t) = zboot_format::pe::SectionTable::parse(data) else {
        return false;
    };
    let (opt, size) = t.optional_header;
    size >= 72
        && data
            .get(opt + 70..opt + 72)
            .is_some_and(|d| u16::from_le_bytes([d[0], d[1]]) & NX_COMPAT != 0)
}

const NX_COMPAT: u16 = 0x0100;

/// Whether the kernel tolerates entry with read-only text: its own EFI stub does it. Linux's
/// bzImage declares NX_COMPAT from the series that made its stub protect the kernel's text
/// (6.8, backported to 6.6.y and 6.1.y); an NX_COMPAT bzImage of another release is not taken
/// as proof.
fn text_ro_from_pe(data: &[u8], decoded: &[u8]) -> Option<String> {
    let banner = crate::payload::kernel_version(decoded)?;
    if let Some(why) = super::detect::text_ro_from_version(&banner) {
        return Some(why);
    }
    let backported = ["Linux version 6.1.", "Linux version 6.6."]
        .iter()
        .any(|p| banner.starts_with(p));
    (backported && nx_compat(data)).then(|| {
        "bzImage PE header NX_COMPAT (6.1.y/6.6.y with the stub's read-only text backport)".into()
    })
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
    k.facts.text_ro_source = text_ro_from_pe(data, &decoded);
    let align = u64::from(hdr.kernel_alignment);
    if align.is_power_of_two() && align >= 4096 {
        k.facts.alignment = Some(align.max(zboot_format::X86_KERNEL_ALIGN));
    }
    k.facts.init_size = Some(hdr.init_size);
    k.facts.bz_codec = Some(codec);
    if let Some(v) = header_version(data, &hdr) {
        k.facts.kernel_version = Some(v);
    }
    k.facts.setup_type_max = hdr.kernel_info(data).map(|i| i.setup_type_max);
    Ok(k)
}

/// The version string the header names, if the headers of an image can carry it.
fn header_version(data: &[u8], hdr: &SetupHeader) -> Option<String> {
    let v = hdr.kernel_version_bytes(data)?;
    zboot_format::image::check_kernel_version(v).ok()?;
    Some(String::from_utf8_lossy(v).into_owned())
}

//! Reading the payload back out of an image: the `.zpayld` section, its header and the decoded
//! stream (stream checksum, size and the decoded stream's SHA-256 checked).

use anyhow::{Result, anyhow, bail};
use zboot_format::filters;
use zboot_format::header::{HEADER_SIZE, PayloadHeader, sha256};

use crate::compress;
use crate::pe::read::PeFile;

/// Name of the payload section as text.
pub const SECTION: &str = zboot_format::PAYLOAD_SECTION_NAME;

/// A located payload.
#[derive(Clone, Copy, Debug)]
pub struct Payload<'a> {
    pub header: PayloadHeader,
    pub compressed: &'a [u8],
    /// RVA and file offset of the section.
    pub rva: u32,
    pub file_offset: u32,
}

/// The payload of a zboot-pack image, `None` when there is no `.zpayld` section.
pub fn find<'a>(pe: &PeFile<'a>) -> Result<Option<Payload<'a>>> {
    let Some(s) = pe.section(SECTION) else {
        return Ok(None);
    };
    let bytes = pe.contents(s);
    let header = PayloadHeader::parse(bytes).map_err(|e| anyhow!("payload header: {e}"))?;
    let compressed = header
        .compressed(bytes)
        .ok_or_else(|| anyhow!("payload truncated"))?;
    Ok(Some(Payload {
        header,
        compressed,
        rva: s.va(),
        file_offset: s.raw_ptr(),
    }))
}

/// Decode the payload's stream and check its size and hash.
pub fn decode(p: &Payload) -> Result<Vec<u8>> {
    if !p.header.stream_intact(p.compressed) {
        bail!("compressed stream checksum mismatch");
    }
    let mut decoded = compress::decompress(p.header.codec, p.compressed)?;
    if decoded.len() as u64 != p.header.uncompressed_size {
        bail!(
            "payload decodes to {} bytes, header says {}",
            decoded.len(),
            p.header.uncompressed_size
        );
    }
    filters::undo(p.header.flags, filters::Span::of(&p.header), &mut decoded);
    if sha256(&[&decoded]) != p.header.image_sha256 {
        bail!("payload SHA-256 mismatch");
    }
    Ok(decoded)
}

/// The embedded command line and initrd named by the header, checked against their checksums.
pub fn embedded<'a>(pe: &PeFile<'a>, h: &PayloadHeader) -> Result<(&'a [u8], &'a [u8])> {
    let get = |rva: u32, size: u32, what: &str| -> Result<&'a [u8]> {
        if size == 0 {
            return Ok(&[]);
        }
        pe.rva_bytes(rva, size)
            .ok_or_else(|| anyhow!("embedded {what} at {rva:#x}+{size:#x} not in the file"))
    };
    let cmdline = get(h.cmdline_rva, h.cmdline_size, "command line")?;
    let initrd = get(h.initrd_rva, h.initrd_size, "initrd")?;
    if !h.embedded_intact(cmdline, initrd) {
        bail!("embedded command line/initrd checksum mismatch");
    }
    Ok((cmdline, initrd))
}

/// Size of the header in front of the compressed stream.
pub const HEADER_LEN: usize = HEADER_SIZE;

/// The "Linux version ..." banner inside a decoded kernel, if any: the first one whose version
/// carries a build number ("... #1 SMP ..."), as `linux_banner` does (a kernel may hold an
/// earlier copy without it, e.g. "# SMP" in Debian's 6.1), else the first.
pub fn kernel_version(image: &[u8]) -> Option<String> {
    let needle = b"Linux version ";
    let mut from = 0;
    let mut first = None;
    while let Some(pos) = image[from..]
        .windows(needle.len())
        .position(|w| w == needle)
    {
        let start = from + pos;
        let rest = &image[start..image.len().min(start + 512)];
        let end = rest
            .iter()
            .position(|&b| b == 0 || b == b'\n')
            .unwrap_or(rest.len());
        let text = &rest[..end];
        // Skip format strings such as "Linux version %s".
        if !text.contains(&b'%') && text.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            let banner = String::from_utf8_lossy(text).into_owned();
            let numbered = banner
                .split_once(" #")
                .is_some_and(|(_, v)| v.starts_with(|c: char| c.is_ascii_digit()));
            if numbered {
                return Some(banner);
            }
            first.get_or_insert(banner);
        }
        from = start + 1;
    }
    first
}

/// The version string for the setup header (`RELEASE (USER@HOST) #N ...`, as a bzImage
/// carries it) from a kernel's banner ([`kernel_version`]); `None` if it does not fit.
pub fn header_version(banner: &str) -> Option<String> {
    let v = zboot_format::image::KernelVersion::from_banner(banner)?.to_string();
    zboot_format::image::check_kernel_version(v.as_bytes())
        .ok()
        .map(|()| v)
}

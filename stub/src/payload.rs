//! Step 1: find the `.zpayld` section in our own loaded image and validate its header, and find
//! the embedded command line / initrd it references.
//!
//! Pure: works on the in-memory image as a byte slice (`ImageBase .. ImageBase + ImageSize`), so
//! every offset is bounded by that slice and the logic is tested on the host.

use zboot_format::header::{self, PayloadHeader};
use zboot_format::{Arch, HeaderError, PAYLOAD_SECTION};

/// Why the payload could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// The PE headers of our own image are malformed (`what` names the broken field).
    BadPe(&'static str),
    /// No `.zpayld` section.
    NoPayloadSection,
    Header(HeaderError),
    WrongArch,
    /// The embedded command line / initrd RVAs leave the image.
    EmbeddedOutOfImage,
    /// `embedded_sha256` does not match the embedded command line and initrd.
    EmbeddedChecksum,
}

impl core::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PayloadError::BadPe(what) => write!(f, "malformed PE header of the stub ({what})"),
            PayloadError::NoPayloadSection => f.write_str("no .zpayld section in the image"),
            PayloadError::Header(e) => write!(f, "payload header: {e}"),
            PayloadError::WrongArch => f.write_str("payload is not an x86_64 kernel"),
            PayloadError::EmbeddedOutOfImage => {
                f.write_str("embedded command line/initrd outside the image")
            }
            PayloadError::EmbeddedChecksum => {
                f.write_str("embedded command line/initrd checksum mismatch")
            }
        }
    }
}

/// The validated payload.
#[derive(Clone, Copy, Debug)]
pub struct Payload<'a> {
    pub header: PayloadHeader,
    /// Exactly `header.compressed_size` bytes.
    pub compressed: &'a [u8],
    /// Embedded command line (`--cmdline`), checksum verified; empty when none.
    pub cmdline: &'a [u8],
    /// Embedded initrd (`--initrd`), checksum verified; `None` when none.
    pub initrd: Option<&'a [u8]>,
}

fn le16(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

/// The bytes of the section called `name` in a PE image *as loaded* (sections at their RVAs).
/// The section spans its VirtualSize, bounded by the image.
pub fn find_section<'a>(image: &'a [u8], name: &[u8; 8]) -> Result<Option<&'a [u8]>, PayloadError> {
    let bad = PayloadError::BadPe;
    if image.get(..2) != Some(b"MZ") {
        return Err(bad("MZ signature"));
    }
    let pe = le32(image, 0x3c).ok_or(bad("e_lfanew"))? as usize;
    if image.get(pe..pe.checked_add(4).ok_or(bad("e_lfanew"))?) != Some(b"PE\0\0") {
        return Err(bad("PE signature"));
    }
    let coff = pe + 4;
    let nsections = le16(image, coff + 2).ok_or(bad("NumberOfSections"))? as usize;
    let opt_size = le16(image, coff + 16).ok_or(bad("SizeOfOptionalHeader"))? as usize;
    let table = coff + 20 + opt_size;
    for i in 0..nsections {
        let s = table + i * 40;
        let entry = image.get(s..s + 40).ok_or(bad("section table"))?;
        if &entry[..8] != name {
            continue;
        }
        let vsize = le32(entry, 8).ok_or(bad("VirtualSize"))? as usize;
        let rva = le32(entry, 12).ok_or(bad("VirtualAddress"))? as usize;
        let end = rva.checked_add(vsize).ok_or(bad("section bounds"))?;
        return image
            .get(rva..end)
            .map(Some)
            .ok_or(bad("section beyond image"));
    }
    Ok(None)
}

/// Find and validate the payload in our own loaded `image`.
pub fn locate(image: &[u8]) -> Result<Payload<'_>, PayloadError> {
    let section = find_section(image, PAYLOAD_SECTION)?.ok_or(PayloadError::NoPayloadSection)?;
    let header = PayloadHeader::parse(section).map_err(PayloadError::Header)?;
    if header.arch != Arch::X86_64 {
        return Err(PayloadError::WrongArch);
    }
    let compressed = header
        .compressed(section)
        .ok_or(PayloadError::Header(HeaderError::CompressedBeyondSection))?;

    let slice = |rva: u32, size: u32| -> Result<&[u8], PayloadError> {
        let start = rva as usize;
        let end = start
            .checked_add(size as usize)
            .ok_or(PayloadError::EmbeddedOutOfImage)?;
        image
            .get(start..end)
            .ok_or(PayloadError::EmbeddedOutOfImage)
    };
    let cmdline = slice(header.cmdline_rva, header.cmdline_size)?;
    let initrd = slice(header.initrd_rva, header.initrd_size)?;
    if (!cmdline.is_empty() || !initrd.is_empty())
        && header::sha256(&[cmdline, initrd]) != header.embedded_sha256
    {
        return Err(PayloadError::EmbeddedChecksum);
    }
    Ok(Payload {
        header,
        compressed,
        cmdline,
        initrd: (!initrd.is_empty()).then_some(initrd),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use zboot_format::{Codec, Flags};

    /// A minimal in-memory PE image with the given sections (name, rva, bytes).
    pub(crate) fn pe_image(sections: &[(&[u8; 8], usize, &[u8])]) -> Vec<u8> {
        let size = sections
            .iter()
            .map(|(_, rva, b)| rva + b.len())
            .max()
            .unwrap_or(0x1000)
            .max(0x1000);
        let mut img = vec![0u8; size];
        img[..2].copy_from_slice(b"MZ");
        let pe = 0x80;
        img[0x3c..0x40].copy_from_slice(&(pe as u32).to_le_bytes());
        img[pe..pe + 4].copy_from_slice(b"PE\0\0");
        let coff = pe + 4;
        img[coff + 2..coff + 4].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        let opt = 112 + 16 * 8;
        img[coff + 16..coff + 18].copy_from_slice(&(opt as u16).to_le_bytes());
        let table = coff + 20 + opt;
        for (i, (name, rva, bytes)) in sections.iter().enumerate() {
            let s = table + i * 40;
            img[s..s + 8].copy_from_slice(*name);
            img[s + 8..s + 12].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
            img[s + 12..s + 16].copy_from_slice(&(*rva as u32).to_le_bytes());
            img[*rva..*rva + bytes.len()].copy_from_slice(bytes);
        }
        img
    }

    pub(crate) fn header_for(decoded: &[u8], compressed_len: usize) -> PayloadHeader {
        PayloadHeader {
            arch: Arch::X86_64,
            codec: Codec::None,
            flags: Flags(0),
            compressed_size: compressed_len as u64,
            uncompressed_size: decoded.len() as u64,
            image_size: decoded.len() as u64,
            mem_size: 2 << 20,
            alignment: 2 << 20,
            preferred_address: 16 << 20,
            entry_offset: 0,
            link_virt_base: zboot_format::X86_START_KERNEL_MAP + (16 << 20),
            relocs_offset: 0,
            relocs_count64: 0,
            relocs_count_inv32: 0,
            relocs_count32: 0,
            xloadflags: 0,
            boot_protocol: 0,
            cmdline_rva: 0,
            cmdline_size: 0,
            initrd_rva: 0,
            initrd_size: 0,
            text_size: 0,
            nx_end: 0,
            image_sha256: header::sha256(&[decoded]),
            stream_sha256: [0; 32],
            embedded_sha256: [0; 32],
        }
    }

    pub(crate) fn payload_section(h: &PayloadHeader, stream: &[u8]) -> Vec<u8> {
        let mut hdr = [0u8; header::HEADER_SIZE];
        h.write(&mut hdr);
        let mut v = hdr.to_vec();
        v.extend_from_slice(stream);
        v
    }

    #[test]
    fn finds_and_validates_payload() {
        let kernel = b"kernel bytes".to_vec();
        let h = header_for(&kernel, kernel.len());
        let sec = payload_section(&h, &kernel);
        let img = pe_image(&[
            (b".text\0\0\0", 0x1000, &[0xc3; 16]),
            (PAYLOAD_SECTION, 0x2000, &sec),
        ]);
        let p = locate(&img).unwrap();
        assert_eq!(p.compressed, &kernel[..]);
        assert_eq!(p.header, h);
        assert!(p.cmdline.is_empty());
        assert!(p.initrd.is_none());
    }

    #[test]
    fn embedded_sections_are_checksummed() {
        let kernel = b"k".to_vec();
        let cmd = b"console=ttyS0";
        let rd = b"070701cpio";
        let mut h = header_for(&kernel, 1);
        h.cmdline_rva = 0x3000;
        h.cmdline_size = cmd.len() as u32;
        h.initrd_rva = 0x4000;
        h.initrd_size = rd.len() as u32;
        h.embedded_sha256 = header::sha256(&[cmd, rd]);
        let sec = payload_section(&h, &kernel);
        let sections: [(&[u8; 8], usize, &[u8]); 3] = [
            (PAYLOAD_SECTION, 0x1000, &sec),
            (zboot_format::CMDLINE_SECTION, 0x3000, cmd),
            (zboot_format::INITRD_SECTION, 0x4000, rd),
        ];
        let img = pe_image(&sections);
        let p = locate(&img).unwrap();
        assert_eq!(p.cmdline, cmd);
        assert_eq!(p.initrd, Some(&rd[..]));

        let mut bad = img.clone();
        bad[0x3000] ^= 1;
        assert_eq!(locate(&bad).unwrap_err(), PayloadError::EmbeddedChecksum);

        h.initrd_rva = 0xffff_fff0;
        let sec = payload_section(&h, &kernel);
        let img = pe_image(&[(PAYLOAD_SECTION, 0x1000, &sec)]);
        assert_eq!(locate(&img).unwrap_err(), PayloadError::EmbeddedOutOfImage);
    }

    #[test]
    fn rejects_broken_images() {
        assert!(matches!(locate(b"MZ"), Err(PayloadError::BadPe(_))));
        assert!(matches!(locate(&[0u8; 64]), Err(PayloadError::BadPe(_))));
        let img = pe_image(&[(b".text\0\0\0", 0x1000, &[1; 8])]);
        assert_eq!(locate(&img).unwrap_err(), PayloadError::NoPayloadSection);
        // Section pointing beyond the image.
        let mut img = pe_image(&[(PAYLOAD_SECTION, 0x1000, &[1; 8])]);
        img.truncate(0x1004);
        assert!(matches!(locate(&img), Err(PayloadError::BadPe(_))));
        // Corrupt header.
        let kernel = b"kernel".to_vec();
        let mut sec = payload_section(&header_for(&kernel, kernel.len()), &kernel);
        sec[0x20] ^= 1;
        let img = pe_image(&[(PAYLOAD_SECTION, 0x1000, &sec)]);
        assert!(matches!(locate(&img), Err(PayloadError::Header(_))));
    }
}

//! Step 1: find the payload in our own loaded image through the stub descriptor (never through
//! PE headers, which a loader may not have copied), validate its header, and find the embedded
//! command line / initrd it references.
//!
//! Pure: works on the in-memory image as a byte slice (`__ImageBase .. + image_size`), so every
//! offset is bounded by that slice and the logic is tested on the host.

use zboot_format::descriptor::{self, DescriptorError, StubDescriptor};
use zboot_format::header::PayloadHeader;
use zboot_format::{Arch, HeaderError};

/// Why the payload could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// The stub descriptor is missing, unfilled or points outside the image.
    Descriptor(DescriptorError),
    Header(HeaderError),
    WrongArch,
    /// The embedded command line / initrd RVAs leave the image.
    EmbeddedOutOfImage,
    /// The embedded command line or initrd does not match its checksum.
    EmbeddedChecksum,
}

impl core::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PayloadError::Descriptor(e) => write!(f, "{e}"),
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

/// The descriptor inside a loaded `image` found by its magic (host tools and fuzzing; the stub
/// reads its own through a symbol).
pub fn find_descriptor(image: &[u8]) -> Result<StubDescriptor, PayloadError> {
    let at = image
        .windows(descriptor::MAGIC.len())
        .position(|w| w == descriptor::MAGIC)
        .ok_or(PayloadError::Descriptor(DescriptorError::BadMagic))?;
    let bytes = image
        .get(at..at + descriptor::SIZE)
        .and_then(|b| b.try_into().ok())
        .ok_or(PayloadError::Descriptor(DescriptorError::OutOfImage))?;
    Ok(StubDescriptor::from_bytes(bytes))
}

/// Find and validate the payload of a loaded `image` whose descriptor is found by its magic.
pub fn locate(image: &[u8]) -> Result<Payload<'_>, PayloadError> {
    locate_with(image, &find_descriptor(image)?)
}

/// Find and validate the payload in our own loaded `image` (at most `d.image_size` bytes) as
/// descriptor `d` says.
pub fn locate_with<'a>(image: &'a [u8], d: &StubDescriptor) -> Result<Payload<'a>, PayloadError> {
    d.validate().map_err(PayloadError::Descriptor)?;
    let parts = image
        .get(d.payload_rva as usize..d.image_size as usize)
        .ok_or(PayloadError::Descriptor(DescriptorError::OutOfImage))?;
    locate_in_parts(parts, d)
}

/// [`locate_with`] given only the image's appended parts: `parts` holds the bytes from
/// `d.payload_rva` (the payload section, the first part) to the end of the image, which is all
/// the stub reads of its image (`zboot_format::image::Part`: every part lies there, read-only).
pub fn locate_in_parts<'a>(
    parts: &'a [u8],
    d: &StubDescriptor,
) -> Result<Payload<'a>, PayloadError> {
    d.validate().map_err(PayloadError::Descriptor)?;
    let section = parts
        .get(..d.payload_size as usize)
        .ok_or(PayloadError::Descriptor(DescriptorError::OutOfImage))?;
    let header = PayloadHeader::parse(section).map_err(PayloadError::Header)?;
    if header.arch != Arch::X86_64 {
        return Err(PayloadError::WrongArch);
    }
    let compressed = header
        .compressed(section)
        .ok_or(PayloadError::Header(HeaderError::CompressedBeyondSection))?;

    // An embedded part: its RVA made relative to the parts; an absent one is empty.
    let slice = |rva: u32, size: u32| -> Result<&[u8], PayloadError> {
        if size == 0 {
            return Ok(&[]);
        }
        let start = rva
            .checked_sub(d.payload_rva)
            .ok_or(PayloadError::EmbeddedOutOfImage)? as usize;
        let end = start
            .checked_add(size as usize)
            .ok_or(PayloadError::EmbeddedOutOfImage)?;
        parts
            .get(start..end)
            .ok_or(PayloadError::EmbeddedOutOfImage)
    };
    let cmdline = slice(header.cmdline_rva, header.cmdline_size)?;
    let initrd = slice(header.initrd_rva, header.initrd_size)?;
    if !header.embedded_intact(cmdline, initrd) {
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
    use zboot_format::PAYLOAD_SECTION;
    use zboot_format::header;

    /// A minimal loaded image with the given sections (name, rva, bytes) at their RVAs and, when
    /// one of them is `.zpayld`, a filled stub descriptor at 0x100 pointing at it.
    pub(crate) fn pe_image(sections: &[(&[u8; 8], usize, &[u8])]) -> Vec<u8> {
        let size = sections
            .iter()
            .map(|(_, rva, b)| rva + b.len())
            .max()
            .unwrap_or(0x1000)
            .max(0x1000);
        let mut img = vec![0u8; size];
        for (name, rva, bytes) in sections {
            img[*rva..*rva + bytes.len()].copy_from_slice(bytes);
            if *name == zboot_format::PAYLOAD_SECTION {
                let mut d = StubDescriptor::EMPTY;
                d.link_base = 0x1_4000_0000;
                d.image_size = size as u32;
                d.payload_rva = *rva as u32;
                d.payload_size = bytes.len() as u32;
                img[0x100..0x100 + descriptor::SIZE].copy_from_slice(&d.to_bytes());
            }
        }
        img
    }

    pub(crate) fn header_for(decoded: &[u8], compressed_len: usize) -> PayloadHeader {
        PayloadHeader {
            compressed_size: compressed_len as u64,
            mem_size: 2 << 20,
            ..zboot_format::testdata::stored_header(decoded)
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
        h.cmdline_check = zboot_format::checksum::of(cmd);
        h.initrd_check = zboot_format::checksum::of(rd);
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

        // A part before the payload section would lie in the stub's own sections (its .data,
        // which it writes): only the appended parts are read.
        h.initrd_rva = 0x800;
        let sec = payload_section(&h, &kernel);
        let sections: [(&[u8; 8], usize, &[u8]); 3] = [
            (zboot_format::INITRD_SECTION, 0x800, rd),
            (PAYLOAD_SECTION, 0x1000, &sec),
            (zboot_format::CMDLINE_SECTION, 0x3000, cmd),
        ];
        assert_eq!(
            locate(&pe_image(&sections)).unwrap_err(),
            PayloadError::EmbeddedOutOfImage
        );
    }

    #[test]
    fn rejects_broken_images() {
        let no_desc = PayloadError::Descriptor(DescriptorError::BadMagic);
        assert_eq!(locate(b"MZ").unwrap_err(), no_desc);
        assert_eq!(locate(&[0u8; 64]).unwrap_err(), no_desc);
        let img = pe_image(&[(b".text\0\0\0", 0x1000, &[1; 8])]);
        assert_eq!(locate(&img).unwrap_err(), no_desc);
        // A descriptor whose image is larger than what is there.
        let mut img = pe_image(&[(PAYLOAD_SECTION, 0x1000, &[1; 8])]);
        img.truncate(0x1004);
        assert_eq!(
            locate(&img).unwrap_err(),
            PayloadError::Descriptor(DescriptorError::OutOfImage)
        );
        // Corrupt header.
        let kernel = b"kernel".to_vec();
        let mut sec = payload_section(&header_for(&kernel, kernel.len()), &kernel);
        sec[0x20] ^= 1;
        let img = pe_image(&[(PAYLOAD_SECTION, 0x1000, &sec)]);
        assert!(matches!(locate(&img), Err(PayloadError::Header(_))));
    }
}

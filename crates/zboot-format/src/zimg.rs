//! The Linux generic EFI zboot header ("zimg"), drivers/firmware/efi/libstub/zboot-header.S.
//!
//! It lives in the first 0x40 bytes of the image (the MZ/DOS header), so tools such as QEMU,
//! kexec-tools and systemd's ukify can find and identify the compressed payload without parsing PE.

/// `MZ` followed by two zero bytes.
pub const MZ_MAGIC: [u8; 4] = *b"MZ\0\0";
/// Offset of the `zimg` magic.
pub const OFF_ZIMG_MAGIC: usize = 0x04;
/// The magic itself.
pub const ZIMG_MAGIC: [u8; 4] = *b"zimg";
/// le32: file offset of the compressed payload.
pub const OFF_PAYLOAD_OFFSET: usize = 0x08;
/// le32: size of the compressed payload.
pub const OFF_PAYLOAD_SIZE: usize = 0x0c;
/// Two reserved le32 words.
pub const OFF_RESERVED: usize = 0x10;
/// NUL-terminated compression type string.
pub const OFF_COMP_TYPE: usize = 0x18;
/// Room for the compression type string including its NUL.
pub const COMP_TYPE_LEN: usize = 0x20;
/// le32 `LINUX_PE_MAGIC`.
pub const OFF_LINUX_PE_MAGIC: usize = 0x38;
/// Value of `LINUX_PE_MAGIC`.
pub const LINUX_PE_MAGIC: u32 = 0x818223cd;
/// le32 `e_lfanew`: file offset of the PE header.
pub const OFF_PE_HEADER: usize = 0x3c;
/// Size of the header (the DOS header proper).
pub const HEADER_LEN: usize = 0x40;

/// PE `MajorImageVersion` of a Linux EFI stub (include/linux/pe.h `LINUX_EFISTUB_MAJOR_VERSION`):
/// since v3.0 a bit mask of the stub's initrd features. Loaders start a PE kernel with
/// LoadImage/StartImage only when it is at least 1 (systemd-stub, GRUB 2.12); below 1 they
/// fall back to the bzImage EFI handover protocol.
pub const EFISTUB_MAJOR_VERSION: u16 = EFISTUB_INITRD_LOADFILE2;
/// `MinorImageVersion`: Linux requires 0.
pub const EFISTUB_MINOR_VERSION: u16 = 0;
/// Major-version bit: the initrd comes from LoadFile2 on the LINUX_EFI_INITRD_MEDIA_GUID device
/// path (our stub does this).
pub const EFISTUB_INITRD_LOADFILE2: u16 = 0x1;
/// Major-version bit: `initrd=` accepts device paths on any volume. Not set: our stub reads
/// `initrd=` files from the volume it was loaded from only.
pub const EFISTUB_INITRD_ANY_VOLUME: u16 = 0x2;

/// The fields of a zimg header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZimgHeader<'a> {
    pub payload_offset: u32,
    pub payload_size: u32,
    pub comp_type: &'a str,
    pub pe_offset: u32,
}

/// Why a zimg header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZimgError {
    TooShort,
    NotMz,
    NoZimgMagic,
    BadCompType,
    BadLinuxPeMagic,
}

impl<'a> ZimgHeader<'a> {
    /// Read the header from the start of an image.
    pub fn parse(image: &'a [u8]) -> Result<Self, ZimgError> {
        let h = image.get(..HEADER_LEN).ok_or(ZimgError::TooShort)?;
        if h[..2] != MZ_MAGIC[..2] {
            return Err(ZimgError::NotMz);
        }
        if h[OFF_ZIMG_MAGIC..OFF_ZIMG_MAGIC + 4] != ZIMG_MAGIC {
            return Err(ZimgError::NoZimgMagic);
        }
        let le32 = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let raw = &h[OFF_COMP_TYPE..OFF_COMP_TYPE + COMP_TYPE_LEN];
        let len = raw
            .iter()
            .position(|&b| b == 0)
            .ok_or(ZimgError::BadCompType)?;
        let comp_type = core::str::from_utf8(&raw[..len]).map_err(|_| ZimgError::BadCompType)?;
        if le32(OFF_LINUX_PE_MAGIC) != LINUX_PE_MAGIC {
            return Err(ZimgError::BadLinuxPeMagic);
        }
        Ok(ZimgHeader {
            payload_offset: le32(OFF_PAYLOAD_OFFSET),
            payload_size: le32(OFF_PAYLOAD_SIZE),
            comp_type,
            pe_offset: le32(OFF_PE_HEADER),
        })
    }

    /// Write the header over the first [`HEADER_LEN`] bytes of `out`.
    /// Panics if `comp_type` does not fit (a programming error: the types are constants).
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out.fill(0);
        out[..4].copy_from_slice(&MZ_MAGIC);
        out[OFF_ZIMG_MAGIC..OFF_ZIMG_MAGIC + 4].copy_from_slice(&ZIMG_MAGIC);
        out[OFF_PAYLOAD_OFFSET..][..4].copy_from_slice(&self.payload_offset.to_le_bytes());
        out[OFF_PAYLOAD_SIZE..][..4].copy_from_slice(&self.payload_size.to_le_bytes());
        let t = self.comp_type.as_bytes();
        assert!(t.len() < COMP_TYPE_LEN, "zimg compression type too long");
        out[OFF_COMP_TYPE..OFF_COMP_TYPE + t.len()].copy_from_slice(t);
        out[OFF_LINUX_PE_MAGIC..][..4].copy_from_slice(&LINUX_PE_MAGIC.to_le_bytes());
        out[OFF_PE_HEADER..][..4].copy_from_slice(&self.pe_offset.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse() {
        let h = ZimgHeader {
            payload_offset: 0x3000,
            payload_size: 1234,
            comp_type: "zstd22",
            pe_offset: 0x40,
        };
        let mut buf = [0u8; HEADER_LEN];
        h.write(&mut buf);
        assert_eq!(&buf[..2], b"MZ");
        assert_eq!(&buf[4..8], b"zimg");
        assert_eq!(ZimgHeader::parse(&buf), Ok(h));
    }

    #[test]
    fn rejects_plain_mz() {
        let mut buf = [0u8; HEADER_LEN];
        buf[..2].copy_from_slice(b"MZ");
        assert_eq!(ZimgHeader::parse(&buf), Err(ZimgError::NoZimgMagic));
        assert_eq!(ZimgHeader::parse(&buf[..10]), Err(ZimgError::TooShort));
    }
}

//! The payload header: the first [`HEADER_SIZE`] bytes of the `.zpayld` PE section, followed
//! directly by the compressed stream.
//!
//! The compressed stream decodes to `image || relocs`: the kernel's load image flattened by
//! physical address (first PT_LOAD at offset 0, gaps zero-filled, bss not stored), then, when
//! present, the x86 relocation table. Both fit inside `mem_size`, so the stub decodes straight
//! into the kernel's final memory; the relocation table lands in what becomes the kernel's bss and
//! is cleared after it has been applied.
//!
//! Integrity: `stream_check` ([`crate::checksum`], XXH3-64) covers every compressed byte and is
//! checked at boot *before* any decoder sees the stream, so damage anywhere in the stream
//! (including codec trailers) is caught without trusting a decoder with damaged bytes; the header
//! and the embedded command line and initrd have checksums of their own. These guard against
//! accidental damage only: an unkeyed value stored next to the data authenticates nothing,
//! whatever the algorithm, which is why a fast checksum replaced SHA-256 here (the Authenticode
//! signature, checked by the firmware, is what authenticates; docs/format.md has the threat
//! model). `image_sha256` records the decoded stream for host-side `verify`/`extract`.
//!
//! Every field is little-endian at a fixed offset; the table in [`layout`] is the only place those
//! offsets are written, and both [`PayloadHeader::parse`] and [`PayloadHeader::write`] use it.

use crate::codec::Codec;
use crate::{checksum, relocs};
use sha2::{Digest, Sha256};

/// Magic at offset 0.
pub const MAGIC: [u8; 8] = *b"ZBOOTPLD";
/// Current format version. Readers reject other versions. Version 2: XXH3-64 checksums instead
/// of SHA-256 for the stream, the embedded parts and the header.
pub const VERSION: u16 = 2;
/// Size of the header in bytes (the compressed stream starts right after it).
pub const HEADER_SIZE: usize = 256;

/// Target architecture of the payload's kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Arch {
    X86_64 = 1,
    Aarch64 = 2,
}

impl Arch {
    pub const fn from_id(id: u8) -> Option<Arch> {
        match id {
            1 => Some(Arch::X86_64),
            2 => Some(Arch::Aarch64),
            _ => None,
        }
    }
    pub const fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

/// Header flag bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(pub u16);

impl Flags {
    /// The decoded stream carries an x86 relocation table (virtual KASLR possible).
    pub const RELOCS: u16 = 1 << 0;
    /// The kernel can be entered with 5-level paging (bzImage XLF_5LEVEL or `--la57`).
    pub const LA57: u16 = 1 << 1;
    /// The image bytes (`0..image_size` of the decoded stream, not the relocation table) went
    /// through the x86 BCJ filter ([`crate::bcj`]) before compression; the stub undoes it.
    pub const BCJ_X86: u16 = 1 << 2;
    /// The relocation table is stored delta-coded ([`crate::relocs::delta_decode`]): each u32
    /// word is the wrapping difference to the word before it. Sorted addresses become small
    /// numbers that compress to less than half (docs/performance.md).
    pub const RELOCS_DELTA: u16 = 1 << 3;
    /// The kernel may be entered with its text read-only + executable (as Linux >= 6.8's own
    /// EFI stub enters it): `text_size` and `nx_end` are valid and the stub applies them through
    /// the memory attribute protocol.
    pub const TEXT_RO: u16 = 1 << 4;
    /// With [`Flags::BCJ_X86`] and [`Flags::TEXT_RO`]: the BCJ filter covered the kernel's text
    /// only (`0..text_size`), not the whole image. Its rodata and data hold few E8/E9 branches:
    /// filtering them buys nothing (Debian 6.12's zstd stream is 17 KB *smaller* without) and
    /// the stub's undo pass over them is saved (docs/performance.md).
    pub const BCJ_TEXT: u16 = 1 << 5;
    /// All bits this version knows.
    pub const KNOWN: u16 = Self::RELOCS
        | Self::LA57
        | Self::BCJ_X86
        | Self::RELOCS_DELTA
        | Self::TEXT_RO
        | Self::BCJ_TEXT;

    pub const fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

/// The decoded payload header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadHeader {
    pub arch: Arch,
    pub codec: Codec,
    pub flags: Flags,
    /// Bytes of compressed stream following the header.
    pub compressed_size: u64,
    /// Bytes the compressed stream decodes to (`image_size`, or `relocs_offset + relocs_size`).
    pub uncompressed_size: u64,
    /// Bytes of the flattened load image (file-backed part of the kernel).
    pub image_size: u64,
    /// Bytes to allocate for the kernel (covers bss/brk and the decoded stream), alignment multiple.
    pub mem_size: u64,
    /// Required physical alignment of the load address (power of two, >= 4 KiB).
    pub alignment: u64,
    /// Physical address the kernel was linked for (LOAD_PHYSICAL_ADDR, first PT_LOAD `p_paddr`).
    pub preferred_address: u64,
    /// Offset of the entry point from the start of the image.
    pub entry_offset: u64,
    /// Virtual address of image offset 0 as linked (x86_64: `__START_KERNEL_map + preferred`).
    pub link_virt_base: u64,
    /// Offset of the relocation table in the decoded stream (0 when none).
    pub relocs_offset: u64,
    /// Number of 64-bit, inverse 32-bit and 32-bit relocation entries.
    pub relocs_count64: u32,
    pub relocs_count_inv32: u32,
    pub relocs_count32: u32,
    /// bzImage `xloadflags` of the source kernel (0 for a bare vmlinux).
    pub xloadflags: u16,
    /// bzImage boot-protocol version of the source kernel (0 for a bare vmlinux).
    pub boot_protocol: u16,
    /// RVA and size of the embedded command line (0, 0 when none).
    pub cmdline_rva: u32,
    pub cmdline_size: u32,
    /// RVA and size of the embedded initrd (0, 0 when none).
    pub initrd_rva: u32,
    pub initrd_size: u32,
    /// With [`Flags::TEXT_RO`]: image bytes `0..text_size` are the kernel's text (`[_text,
    /// __start_rodata)`), made read-only + executable before the jump. 4 KiB multiple; 0 without
    /// the flag.
    pub text_size: u32,
    /// With [`Flags::TEXT_RO`]: bytes `text_size..nx_end` of the kernel region hold no code the
    /// kernel runs before it loads its own page tables (its ELF marks them non-executable):
    /// made non-executable. 4 KiB multiple, `text_size..=mem_size`; `text_size` for no such
    /// range; 0 without the flag.
    pub nx_end: u32,
    /// SHA-256 of the whole decoded stream (host-side `verify`/`extract`).
    pub image_sha256: [u8; 32],
    /// Checksum of the compressed stream (the `compressed_size` bytes after the header).
    pub stream_check: u64,
    /// Checksum of the embedded command line's bytes (0 without one).
    pub cmdline_check: u64,
    /// Checksum of the embedded initrd's bytes (0 without one).
    pub initrd_check: u64,
}

/// Why a payload header was rejected. Each variant names one broken rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    TooShort,
    BadMagic,
    UnsupportedVersion(u16),
    BadHeaderSize(u16),
    HeaderChecksum,
    UnknownArch(u8),
    UnknownCodec(u8),
    UnknownFlags(u16),
    CompressedBeyondSection,
    BadAlignment,
    MisalignedPreferredAddress,
    MemSizeTooLarge,
    DecodedLargerThanMemory,
    ImageLargerThanDecoded,
    EntryOutsideImage,
    BadRelocTable,
    BadEmbedded,
    BadTextRange,
    BadFilters,
}

impl HeaderError {
    /// One-line description for consoles and CLIs.
    pub const fn message(self) -> &'static str {
        match self {
            HeaderError::TooShort => "payload shorter than its header",
            HeaderError::BadMagic => "bad payload magic",
            HeaderError::UnsupportedVersion(_) => "unsupported payload format version",
            HeaderError::BadHeaderSize(_) => "bad payload header size",
            HeaderError::HeaderChecksum => "payload header checksum mismatch",
            HeaderError::UnknownArch(_) => "unknown architecture id",
            HeaderError::UnknownCodec(_) => "unknown codec id",
            HeaderError::UnknownFlags(_) => "unknown flag bits",
            HeaderError::CompressedBeyondSection => "compressed size exceeds the payload section",
            HeaderError::BadAlignment => "alignment is not a power of two >= 4 KiB",
            HeaderError::MisalignedPreferredAddress => "preferred address not aligned",
            HeaderError::MemSizeTooLarge => "memory size zero, too large or not aligned",
            HeaderError::DecodedLargerThanMemory => "decoded size exceeds memory size",
            HeaderError::ImageLargerThanDecoded => "image size inconsistent with decoded size",
            HeaderError::EntryOutsideImage => "entry point outside the image",
            HeaderError::BadRelocTable => "relocation table location or counts inconsistent",
            HeaderError::BadEmbedded => "embedded command line/initrd reference inconsistent",
            HeaderError::BadTextRange => "kernel text / non-executable range inconsistent",
            HeaderError::BadFilters => "BCJ over the text only, without BCJ or a text range",
        }
    }
}

impl core::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            HeaderError::UnsupportedVersion(v) => write!(f, "{} ({v})", self.message()),
            HeaderError::BadHeaderSize(v) => write!(f, "{} ({v})", self.message()),
            HeaderError::UnknownArch(v) | HeaderError::UnknownCodec(v) => {
                write!(f, "{} ({v})", self.message())
            }
            HeaderError::UnknownFlags(v) => write!(f, "{} ({v:#x})", self.message()),
            _ => f.write_str(self.message()),
        }
    }
}

/// Byte offsets of every field: the single definition of the layout.
pub mod layout {
    pub const MAGIC: usize = 0x00; // [u8; 8]
    pub const VERSION: usize = 0x08; // u16
    pub const HEADER_SIZE: usize = 0x0a; // u16
    pub const ARCH: usize = 0x0c; // u8
    pub const CODEC: usize = 0x0d; // u8
    pub const FLAGS: usize = 0x0e; // u16
    pub const COMPRESSED_SIZE: usize = 0x10; // u64
    pub const UNCOMPRESSED_SIZE: usize = 0x18; // u64
    pub const IMAGE_SIZE: usize = 0x20; // u64
    pub const MEM_SIZE: usize = 0x28; // u64
    pub const ALIGNMENT: usize = 0x30; // u64
    pub const PREFERRED_ADDRESS: usize = 0x38; // u64
    pub const ENTRY_OFFSET: usize = 0x40; // u64
    pub const LINK_VIRT_BASE: usize = 0x48; // u64
    pub const RELOCS_OFFSET: usize = 0x50; // u64
    pub const RELOCS_COUNT64: usize = 0x58; // u32
    pub const RELOCS_COUNT_INV32: usize = 0x5c; // u32
    pub const RELOCS_COUNT32: usize = 0x60; // u32
    pub const XLOADFLAGS: usize = 0x64; // u16
    pub const BOOT_PROTOCOL: usize = 0x66; // u16
    pub const TEXT_SIZE: usize = 0x68; // u32
    pub const CMDLINE_RVA: usize = 0x6c; // u32
    pub const CMDLINE_SIZE: usize = 0x70; // u32
    pub const INITRD_RVA: usize = 0x74; // u32
    pub const INITRD_SIZE: usize = 0x78; // u32
    pub const NX_END: usize = 0x7c; // u32
    pub const IMAGE_SHA256: usize = 0x80; // [u8; 32]
    pub const STREAM_CHECK: usize = 0xa0; // u64
    pub const CMDLINE_CHECK: usize = 0xa8; // u64
    pub const INITRD_CHECK: usize = 0xb0; // u64
    /// `0xb8..HEADER_CHECK`: reserved, written as zeros (covered by the header checksum).
    pub const RESERVED: usize = 0xb8;
    /// Checksum of bytes `0..HEADER_CHECK` of the header.
    pub const HEADER_CHECK: usize = 0xf8; // u64
}

struct Reader<'a>(&'a [u8; HEADER_SIZE]);

impl Reader<'_> {
    fn u8(&self, o: usize) -> u8 {
        self.0[o]
    }
    fn u16(&self, o: usize) -> u16 {
        u16::from_le_bytes([self.0[o], self.0[o + 1]])
    }
    fn u32(&self, o: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[o..o + 4]);
        u32::from_le_bytes(b)
    }
    fn u64(&self, o: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[o..o + 8]);
        u64::from_le_bytes(b)
    }
    fn hash(&self, o: usize) -> [u8; 32] {
        let mut b = [0u8; 32];
        b.copy_from_slice(&self.0[o..o + 32]);
        b
    }
}

struct Writer<'a>(&'a mut [u8; HEADER_SIZE]);

impl Writer<'_> {
    fn put(&mut self, o: usize, bytes: &[u8]) {
        self.0[o..o + bytes.len()].copy_from_slice(bytes);
    }
}

fn header_check(bytes: &[u8; HEADER_SIZE]) -> u64 {
    checksum::of(&bytes[..layout::HEADER_CHECK])
}

impl PayloadHeader {
    /// Size in bytes of the relocation table described by the counts (0 without relocations).
    pub fn relocs_size(&self) -> u64 {
        if !self.flags.has(Flags::RELOCS) {
            return 0;
        }
        relocs::table_size(
            self.relocs_count64,
            self.relocs_count_inv32,
            self.relocs_count32,
        )
    }

    /// Parse and validate the header at the start of `section` (the whole payload section).
    ///
    /// Checks the header's own checksum and every size/offset relation, so that afterwards
    /// `compressed()` is in bounds, the decoded stream fits `mem_size`, the entry lies in the
    /// image and the relocation table lies in the decoded stream after the image.
    pub fn parse(section: &[u8]) -> Result<Self, HeaderError> {
        let raw: &[u8; HEADER_SIZE] = section
            .get(..HEADER_SIZE)
            .and_then(|s| s.try_into().ok())
            .ok_or(HeaderError::TooShort)?;
        let r = Reader(raw);
        if raw[..8] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = r.u16(layout::VERSION);
        if version != VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let header_size = r.u16(layout::HEADER_SIZE);
        if header_size as usize != HEADER_SIZE {
            return Err(HeaderError::BadHeaderSize(header_size));
        }
        if header_check(raw) != r.u64(layout::HEADER_CHECK) {
            return Err(HeaderError::HeaderChecksum);
        }
        let arch = Arch::from_id(r.u8(layout::ARCH))
            .ok_or(HeaderError::UnknownArch(r.u8(layout::ARCH)))?;
        let codec = Codec::from_id(r.u8(layout::CODEC))
            .ok_or(HeaderError::UnknownCodec(r.u8(layout::CODEC)))?;
        let flags = r.u16(layout::FLAGS);
        if flags & !Flags::KNOWN != 0 {
            return Err(HeaderError::UnknownFlags(flags));
        }
        let h = PayloadHeader {
            arch,
            codec,
            flags: Flags(flags),
            compressed_size: r.u64(layout::COMPRESSED_SIZE),
            uncompressed_size: r.u64(layout::UNCOMPRESSED_SIZE),
            image_size: r.u64(layout::IMAGE_SIZE),
            mem_size: r.u64(layout::MEM_SIZE),
            alignment: r.u64(layout::ALIGNMENT),
            preferred_address: r.u64(layout::PREFERRED_ADDRESS),
            entry_offset: r.u64(layout::ENTRY_OFFSET),
            link_virt_base: r.u64(layout::LINK_VIRT_BASE),
            relocs_offset: r.u64(layout::RELOCS_OFFSET),
            relocs_count64: r.u32(layout::RELOCS_COUNT64),
            relocs_count_inv32: r.u32(layout::RELOCS_COUNT_INV32),
            relocs_count32: r.u32(layout::RELOCS_COUNT32),
            xloadflags: r.u16(layout::XLOADFLAGS),
            boot_protocol: r.u16(layout::BOOT_PROTOCOL),
            cmdline_rva: r.u32(layout::CMDLINE_RVA),
            cmdline_size: r.u32(layout::CMDLINE_SIZE),
            initrd_rva: r.u32(layout::INITRD_RVA),
            initrd_size: r.u32(layout::INITRD_SIZE),
            text_size: r.u32(layout::TEXT_SIZE),
            nx_end: r.u32(layout::NX_END),
            image_sha256: r.hash(layout::IMAGE_SHA256),
            stream_check: r.u64(layout::STREAM_CHECK),
            cmdline_check: r.u64(layout::CMDLINE_CHECK),
            initrd_check: r.u64(layout::INITRD_CHECK),
        };
        h.validate((section.len() - HEADER_SIZE) as u64)?;
        Ok(h)
    }

    /// Check the relations between fields. `available` is the number of bytes after the header.
    pub fn validate(&self, available: u64) -> Result<(), HeaderError> {
        if self.compressed_size > available {
            return Err(HeaderError::CompressedBeyondSection);
        }
        if !self.alignment.is_power_of_two() || self.alignment < 4096 {
            return Err(HeaderError::BadAlignment);
        }
        if !self.preferred_address.is_multiple_of(self.alignment) {
            return Err(HeaderError::MisalignedPreferredAddress);
        }
        if self.mem_size == 0
            || self.mem_size > crate::MAX_KERNEL_MEM
            || !self.mem_size.is_multiple_of(self.alignment)
        {
            return Err(HeaderError::MemSizeTooLarge);
        }
        if self.uncompressed_size > self.mem_size {
            return Err(HeaderError::DecodedLargerThanMemory);
        }
        if self.image_size == 0 || self.image_size > self.uncompressed_size {
            return Err(HeaderError::ImageLargerThanDecoded);
        }
        if self.entry_offset >= self.image_size {
            return Err(HeaderError::EntryOutsideImage);
        }
        self.validate_relocs()?;
        self.validate_embedded()?;
        self.validate_protection()?;
        self.validate_filters()
    }

    fn validate_filters(&self) -> Result<(), HeaderError> {
        let f = self.flags;
        if f.has(Flags::BCJ_TEXT) && !(f.has(Flags::BCJ_X86) && f.has(Flags::TEXT_RO)) {
            return Err(HeaderError::BadFilters);
        }
        Ok(())
    }

    fn validate_protection(&self) -> Result<(), HeaderError> {
        let (text, nx) = (u64::from(self.text_size), u64::from(self.nx_end));
        let ok = if self.flags.has(Flags::TEXT_RO) {
            text.is_multiple_of(4096)
                && nx.is_multiple_of(4096)
                && self.entry_offset < text
                && text <= self.image_size
                && (text..=self.mem_size).contains(&nx)
        } else {
            text == 0 && nx == 0
        };
        if ok {
            Ok(())
        } else {
            Err(HeaderError::BadTextRange)
        }
    }

    fn validate_relocs(&self) -> Result<(), HeaderError> {
        if !self.flags.has(Flags::RELOCS) {
            let empty = self.relocs_offset == 0
                && self.relocs_count64 == 0
                && self.relocs_count_inv32 == 0
                && self.relocs_count32 == 0;
            let exact = self.uncompressed_size == self.image_size;
            return if empty && exact {
                Ok(())
            } else {
                Err(HeaderError::BadRelocTable)
            };
        }
        let ok = self.relocs_offset >= self.image_size
            && self.relocs_offset.is_multiple_of(4)
            && self.relocs_offset.checked_add(self.relocs_size()) == Some(self.uncompressed_size);
        if ok {
            Ok(())
        } else {
            Err(HeaderError::BadRelocTable)
        }
    }

    fn validate_embedded(&self) -> Result<(), HeaderError> {
        let ok = |rva: u32, size: u32| (rva == 0) == (size == 0) && rva.checked_add(size).is_some();
        if ok(self.cmdline_rva, self.cmdline_size) && ok(self.initrd_rva, self.initrd_size) {
            Ok(())
        } else {
            Err(HeaderError::BadEmbedded)
        }
    }

    /// Serialize into `out`, computing the header checksum.
    pub fn write(&self, out: &mut [u8; HEADER_SIZE]) {
        out.fill(0);
        let mut w = Writer(out);
        w.put(layout::MAGIC, &MAGIC);
        w.put(layout::VERSION, &VERSION.to_le_bytes());
        w.put(layout::HEADER_SIZE, &(HEADER_SIZE as u16).to_le_bytes());
        w.put(layout::ARCH, &[self.arch as u8]);
        w.put(layout::CODEC, &[self.codec.id()]);
        w.put(layout::FLAGS, &self.flags.0.to_le_bytes());
        w.put(layout::COMPRESSED_SIZE, &self.compressed_size.to_le_bytes());
        w.put(
            layout::UNCOMPRESSED_SIZE,
            &self.uncompressed_size.to_le_bytes(),
        );
        w.put(layout::IMAGE_SIZE, &self.image_size.to_le_bytes());
        w.put(layout::MEM_SIZE, &self.mem_size.to_le_bytes());
        w.put(layout::ALIGNMENT, &self.alignment.to_le_bytes());
        w.put(
            layout::PREFERRED_ADDRESS,
            &self.preferred_address.to_le_bytes(),
        );
        w.put(layout::ENTRY_OFFSET, &self.entry_offset.to_le_bytes());
        w.put(layout::LINK_VIRT_BASE, &self.link_virt_base.to_le_bytes());
        w.put(layout::RELOCS_OFFSET, &self.relocs_offset.to_le_bytes());
        w.put(layout::RELOCS_COUNT64, &self.relocs_count64.to_le_bytes());
        w.put(
            layout::RELOCS_COUNT_INV32,
            &self.relocs_count_inv32.to_le_bytes(),
        );
        w.put(layout::RELOCS_COUNT32, &self.relocs_count32.to_le_bytes());
        w.put(layout::XLOADFLAGS, &self.xloadflags.to_le_bytes());
        w.put(layout::BOOT_PROTOCOL, &self.boot_protocol.to_le_bytes());
        w.put(layout::CMDLINE_RVA, &self.cmdline_rva.to_le_bytes());
        w.put(layout::CMDLINE_SIZE, &self.cmdline_size.to_le_bytes());
        w.put(layout::INITRD_RVA, &self.initrd_rva.to_le_bytes());
        w.put(layout::INITRD_SIZE, &self.initrd_size.to_le_bytes());
        w.put(layout::TEXT_SIZE, &self.text_size.to_le_bytes());
        w.put(layout::NX_END, &self.nx_end.to_le_bytes());
        w.put(layout::IMAGE_SHA256, &self.image_sha256);
        w.put(layout::STREAM_CHECK, &self.stream_check.to_le_bytes());
        w.put(layout::CMDLINE_CHECK, &self.cmdline_check.to_le_bytes());
        w.put(layout::INITRD_CHECK, &self.initrd_check.to_le_bytes());
        let check = header_check(out);
        out[layout::HEADER_CHECK..].copy_from_slice(&check.to_le_bytes());
    }

    /// Whether `compressed` (the stream returned by [`Self::compressed`]) matches `stream_check`.
    pub fn stream_intact(&self, compressed: &[u8]) -> bool {
        checksum::of(compressed) == self.stream_check
    }

    /// Whether the embedded command line and initrd (the bytes the header's RVAs name) match
    /// their checksums.
    pub fn embedded_intact(&self, cmdline: &[u8], initrd: &[u8]) -> bool {
        checksum::of(cmdline) == self.cmdline_check && checksum::of(initrd) == self.initrd_check
    }

    /// The compressed stream inside `section` (call only on a header parsed from that section).
    pub fn compressed<'a>(&self, section: &'a [u8]) -> Option<&'a [u8]> {
        let end = HEADER_SIZE.checked_add(usize::try_from(self.compressed_size).ok()?)?;
        section.get(HEADER_SIZE..end)
    }
}

/// SHA-256 over `parts`, as `image_sha256` records the decoded stream (host side).
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> PayloadHeader {
        PayloadHeader {
            arch: Arch::X86_64,
            codec: Codec::Zstd,
            flags: Flags(Flags::RELOCS | Flags::LA57 | Flags::TEXT_RO),
            compressed_size: 100,
            uncompressed_size: 0x20_0000 + relocs::table_size(2, 1, 3),
            image_size: 0x20_0000,
            mem_size: 0x60_0000,
            alignment: 0x20_0000,
            preferred_address: 0x100_0000,
            entry_offset: 0,
            link_virt_base: 0xffff_ffff_8100_0000,
            relocs_offset: 0x20_0000,
            relocs_count64: 2,
            relocs_count_inv32: 1,
            relocs_count32: 3,
            xloadflags: 0x7f,
            boot_protocol: 0x020f,
            cmdline_rva: 0x5000,
            cmdline_size: 12,
            initrd_rva: 0,
            initrd_size: 0,
            text_size: 0x10_0000,
            nx_end: 0x40_0000,
            image_sha256: [7; 32],
            stream_check: 8,
            cmdline_check: 9,
            initrd_check: 10,
        }
    }

    fn section(h: &PayloadHeader) -> [u8; HEADER_SIZE + 100] {
        let mut s = [0u8; HEADER_SIZE + 100];
        h.write((&mut s[..HEADER_SIZE]).try_into().unwrap());
        s
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let s = section(&h);
        assert_eq!(PayloadHeader::parse(&s), Ok(h));
        assert_eq!(h.compressed(&s).unwrap().len(), 100);
    }

    #[test]
    fn any_flipped_byte_is_rejected() {
        let s = section(&sample());
        for i in 0..HEADER_SIZE {
            let mut d = s;
            d[i] ^= 0x40;
            assert!(PayloadHeader::parse(&d).is_err(), "flip at {i:#x} accepted");
        }
    }

    /// A mutation of a valid header and the error it must produce.
    type Case = (fn(&mut PayloadHeader), HeaderError);

    #[test]
    fn inconsistent_fields_are_rejected() {
        let cases: [Case; 13] = [
            (
                |h| h.compressed_size = 101,
                HeaderError::CompressedBeyondSection,
            ),
            (|h| h.alignment = 0x3000, HeaderError::BadAlignment),
            (
                |h| h.preferred_address = 0x100_1000,
                HeaderError::MisalignedPreferredAddress,
            ),
            (|h| h.mem_size = 2 << 30, HeaderError::MemSizeTooLarge),
            (
                |h| h.mem_size = 0x20_0000,
                HeaderError::DecodedLargerThanMemory,
            ),
            (
                |h| h.entry_offset = 0x20_0000,
                HeaderError::EntryOutsideImage,
            ),
            (|h| h.relocs_count32 = 4, HeaderError::BadRelocTable),
            (|h| h.cmdline_rva = 0, HeaderError::BadEmbedded),
            (|h| h.text_size = 0x10_0800, HeaderError::BadTextRange),
            (|h| h.text_size = 0x30_0000, HeaderError::BadTextRange),
            (|h| h.nx_end = 0x70_0000, HeaderError::BadTextRange),
            (|h| h.flags.0 &= !Flags::TEXT_RO, HeaderError::BadTextRange),
            (|h| h.flags.0 |= Flags::BCJ_TEXT, HeaderError::BadFilters),
        ];
        for (mutate, want) in cases {
            let mut h = sample();
            mutate(&mut h);
            assert_eq!(PayloadHeader::parse(&section(&h)), Err(want));
        }
    }

    #[test]
    fn bcj_over_the_text_needs_bcj_and_a_text_range() {
        let mut h = sample();
        h.flags.0 |= Flags::BCJ_X86 | Flags::BCJ_TEXT;
        assert_eq!(PayloadHeader::parse(&section(&h)), Ok(h));
        h.flags.0 &= !Flags::BCJ_X86;
        assert_eq!(
            PayloadHeader::parse(&section(&h)),
            Err(HeaderError::BadFilters)
        );
    }

    #[test]
    fn stream_check_covers_every_compressed_byte() {
        let stream = [0x5au8; 100];
        let mut h = sample();
        h.stream_check = checksum::of(&stream);
        assert!(h.stream_intact(&stream));
        for i in [0, 50, 99] {
            let mut d = stream;
            d[i] ^= 1;
            assert!(!h.stream_intact(&d), "flip at {i} not detected");
        }
        assert!(!h.stream_intact(&stream[..99]));
    }

    #[test]
    fn short_input() {
        assert_eq!(PayloadHeader::parse(&[0u8; 10]), Err(HeaderError::TooShort));
    }
}

//! The stub descriptor: a record in the stub's own writable data that the packer fills in, so
//! that the stub finds everything it needs relative to its own code, without reading PE headers
//! (a loader such as systemd-stub >= 258 copies only the sections) and without PE base
//! relocations (which that loader, lanzaboote and a flat-copy loader refuse or ignore).
//!
//! - `link_base`: the ImageBase the stub was linked for. The stub compares it with where its
//!   image actually starts (`__ImageBase`, addressed RIP-relative) and applies the delta itself,
//!   first thing at entry, to the `relocs` list: the RVAs of its 64-bit absolute addresses
//!   (what its `.reloc` section listed as `IMAGE_REL_BASED_DIR64`). The packer moves them here
//!   and writes the image with no base relocation directory and no `.reloc` section.
//! - `image_size`: the bytes from the image start the stub may treat as its own.
//! - `payload_rva`/`payload_size`: the `.zpayld` section.
//! - `code_end`: where the stub's code (its first section) ends.
//!
//! Layout (little-endian, [`SIZE`] bytes): magic, version, reloc count, link base, image size,
//! payload RVA and size, then [`MAX_RELOCS`] u32 RVAs; then ([`HANDOVER_AT`]) the address of
//! the stub's EFI handover entry.

/// Marks the descriptor in the stub's data; the packer looks for it there.
pub const MAGIC: [u8; 16] = *b"ZBOOT-STUB-DESC\0";
/// Layout version.
pub const VERSION: u32 = 1;
/// Room for 64-bit absolute addresses in the stub (it has a handful: vtables and unwind data).
pub const MAX_RELOCS: usize = 128;

/// Byte offsets of the fields.
pub mod layout {
    pub const MAGIC: usize = 0x00; // [u8; 16]
    pub const VERSION: usize = 0x10; // u32
    pub const RELOC_COUNT: usize = 0x14; // u32
    pub const LINK_BASE: usize = 0x18; // u64
    pub const IMAGE_SIZE: usize = 0x20; // u32
    pub const PAYLOAD_RVA: usize = 0x24; // u32
    pub const PAYLOAD_SIZE: usize = 0x28; // u32
    pub const CODE_END: usize = 0x2c; // u32
    pub const RELOCS: usize = 0x30; // [u32; MAX_RELOCS]
}

/// Size of the descriptor in bytes.
pub const SIZE: usize = layout::RELOCS + 4 * MAX_RELOCS;

/// Right after the descriptor the stub keeps the link-time address (a u64, one of its
/// relocations) of its EFI handover entry: `extern "sysv64" fn(image handle, system table,
/// boot_params)`. The packer turns it into the setup header's `handover_offset`.
pub const HANDOVER_AT: usize = SIZE;
/// Then the link-time addresses of the stub's bzImage entries (64-bit, 32-bit), which the
/// packer checks sit at `image::ENTRY64_RVA` and `image::ENTRY32_RVA`.
pub const ENTRY64_AT: usize = SIZE + 8;
pub const ENTRY32_AT: usize = SIZE + 16;
/// Then the link-time addresses of the start and end of the stub's 16-bit entry code, which
/// the packer copies into the headers at `image::REAL_MODE_AT`.
pub const REAL_MODE_AT: usize = SIZE + 24;
/// Then the link-time address of the stub's 32-bit EFI handover entry, which the packer checks
/// lies `image::HANDOVER_ENTRY_BIAS` bytes before the 64-bit one (where `handover_offset`
/// points: a 32-bit loader calls it there).
pub const HANDOVER32_AT: usize = SIZE + 40;
/// Then the image's `kernel_info` block ([`crate::bootparam::KernelInfo`], 16 bytes), which
/// the setup header's `kernel_info_offset` names (it must lie in the protected-mode part) and
/// whose `setup_type_max` the packer writes.
pub const KERNEL_INFO_AT: usize = SIZE + 48;
/// Bytes of descriptor + entry addresses + kernel_info.
pub const RECORD_SIZE: usize = KERNEL_INFO_AT + crate::bootparam::KERNEL_INFO_SIZE;

/// The descriptor as the stub declares it (`#[repr(C)]`, matching [`layout`]).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StubDescriptor {
    pub magic: [u8; 16],
    pub version: u32,
    pub reloc_count: u32,
    pub link_base: u64,
    pub image_size: u32,
    pub payload_rva: u32,
    pub payload_size: u32,
    /// RVA where the stub's code ends (page-rounded): the bzImage entries map
    /// `[image::ENTRY32_RVA, code_end)` read-only + executable, and nothing else executable.
    pub code_end: u32,
    pub relocs: [u32; MAX_RELOCS],
}

const _: () = assert!(core::mem::size_of::<StubDescriptor>() == SIZE);

/// Why a descriptor cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorError {
    BadMagic,
    UnsupportedVersion(u32),
    /// More relocations than [`MAX_RELOCS`].
    TooManyRelocs(u32),
    /// The payload, or a relocation target, leaves the image.
    OutOfImage,
    /// Never filled in by the packer (image size 0).
    Empty,
}

impl core::fmt::Display for DescriptorError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DescriptorError::BadMagic => f.write_str("stub descriptor magic missing"),
            DescriptorError::UnsupportedVersion(v) => {
                write!(f, "stub descriptor version {v} unsupported")
            }
            DescriptorError::TooManyRelocs(n) => write!(
                f,
                "{n} base relocations in the stub (the descriptor holds {MAX_RELOCS})"
            ),
            DescriptorError::OutOfImage => f.write_str("stub descriptor points outside the image"),
            DescriptorError::Empty => f.write_str("stub descriptor not filled in by zboot-pack"),
        }
    }
}

impl StubDescriptor {
    /// What the stub is built with: the magic and nothing else.
    pub const EMPTY: StubDescriptor = StubDescriptor {
        magic: MAGIC,
        version: VERSION,
        reloc_count: 0,
        link_base: 0,
        image_size: 0,
        payload_rva: 0,
        payload_size: 0,
        code_end: 0,
        relocs: [0; MAX_RELOCS],
    };

    /// Read a descriptor from its bytes.
    pub fn from_bytes(b: &[u8; SIZE]) -> StubDescriptor {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut d = StubDescriptor::EMPTY;
        d.magic.copy_from_slice(&b[..16]);
        d.version = u32_at(layout::VERSION);
        d.reloc_count = u32_at(layout::RELOC_COUNT);
        d.link_base =
            u32_at(layout::LINK_BASE) as u64 | (u32_at(layout::LINK_BASE + 4) as u64) << 32;
        d.image_size = u32_at(layout::IMAGE_SIZE);
        d.payload_rva = u32_at(layout::PAYLOAD_RVA);
        d.payload_size = u32_at(layout::PAYLOAD_SIZE);
        d.code_end = u32_at(layout::CODE_END);
        for (i, r) in d.relocs.iter_mut().enumerate() {
            *r = u32_at(layout::RELOCS + 4 * i);
        }
        d
    }

    /// Its bytes.
    pub fn to_bytes(&self) -> [u8; SIZE] {
        let mut b = [0u8; SIZE];
        let mut put = |o: usize, v: &[u8]| b[o..o + v.len()].copy_from_slice(v);
        put(layout::MAGIC, &self.magic);
        put(layout::VERSION, &self.version.to_le_bytes());
        put(layout::RELOC_COUNT, &self.reloc_count.to_le_bytes());
        put(layout::LINK_BASE, &self.link_base.to_le_bytes());
        put(layout::IMAGE_SIZE, &self.image_size.to_le_bytes());
        put(layout::PAYLOAD_RVA, &self.payload_rva.to_le_bytes());
        put(layout::PAYLOAD_SIZE, &self.payload_size.to_le_bytes());
        put(layout::CODE_END, &self.code_end.to_le_bytes());
        for (i, r) in self.relocs.iter().enumerate() {
            put(layout::RELOCS + 4 * i, &r.to_le_bytes());
        }
        b
    }

    /// Check magic, version, counts and that every RVA (payload, relocation targets) lies inside
    /// `image_size`.
    pub fn validate(&self) -> Result<(), DescriptorError> {
        if self.magic != MAGIC {
            return Err(DescriptorError::BadMagic);
        }
        if self.version != VERSION {
            return Err(DescriptorError::UnsupportedVersion(self.version));
        }
        if self.image_size == 0 {
            return Err(DescriptorError::Empty);
        }
        if self.reloc_count as usize > MAX_RELOCS {
            return Err(DescriptorError::TooManyRelocs(self.reloc_count));
        }
        let size = u64::from(self.image_size);
        let inside = |rva: u32, len: u64| u64::from(rva) + len <= size;
        if !inside(self.payload_rva, u64::from(self.payload_size)) {
            return Err(DescriptorError::OutOfImage);
        }
        if u64::from(self.code_end) > size {
            return Err(DescriptorError::OutOfImage);
        }
        if !self.relocs().iter().all(|&r| inside(r, 8)) {
            return Err(DescriptorError::OutOfImage);
        }
        Ok(())
    }

    /// The relocation RVAs in use.
    pub fn relocs(&self) -> &[u32] {
        &self.relocs[..(self.reloc_count as usize).min(MAX_RELOCS)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled() -> StubDescriptor {
        let mut d = StubDescriptor::EMPTY;
        d.link_base = 0x1_4000_0000;
        d.image_size = 0x2_0000;
        d.payload_rva = 0x1_0000;
        d.payload_size = 0x1000;
        d.reloc_count = 2;
        d.relocs[..2].copy_from_slice(&[0x9000, 0x9008]);
        d
    }

    #[test]
    fn round_trip_and_layout() {
        let d = filled();
        let b = d.to_bytes();
        assert_eq!(StubDescriptor::from_bytes(&b), d);
        assert_eq!(&b[..16], &MAGIC);
        assert_eq!(
            b[layout::LINK_BASE..layout::LINK_BASE + 8],
            0x1_4000_0000u64.to_le_bytes()
        );
        assert_eq!(d.validate(), Ok(()));
        assert_eq!(d.relocs(), &[0x9000, 0x9008]);
    }

    #[test]
    fn bad_descriptors_are_refused() {
        assert_eq!(
            StubDescriptor::EMPTY.validate(),
            Err(DescriptorError::Empty)
        );
        let mut d = filled();
        d.relocs[1] = 0x1_fff9;
        assert_eq!(d.validate(), Err(DescriptorError::OutOfImage));
        let mut d = filled();
        d.payload_size = 0x1_0001;
        assert_eq!(d.validate(), Err(DescriptorError::OutOfImage));
        let mut d = filled();
        d.reloc_count = MAX_RELOCS as u32 + 1;
        assert_eq!(
            d.validate(),
            Err(DescriptorError::TooManyRelocs(MAX_RELOCS as u32 + 1))
        );
        let mut d = filled();
        d.magic[0] = b'X';
        assert_eq!(d.validate(), Err(DescriptorError::BadMagic));
    }
}

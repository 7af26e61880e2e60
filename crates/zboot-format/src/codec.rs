//! Compression codecs a payload can use.

/// Compression of the payload stream. The numeric values are part of the on-disk format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    /// Stored uncompressed.
    None = 0,
    /// RFC 1952 gzip member (deflate).
    Gzip = 1,
    /// One zstd frame (RFC 8878), content size recorded in the frame header.
    Zstd = 2,
    /// One .xz stream (LZMA2, optionally behind the x86 BCJ filter).
    Xz = 3,
    /// LZ4 "legacy" frame format as used by the Linux kernel (magic 0x184C2102, 8 MiB blocks).
    Lz4 = 4,
}

impl Codec {
    /// Every codec, in the order the tools list them (`--codec`'s help): the default first.
    pub const ALL: [Codec; 5] = [Codec::Zstd, Codec::Xz, Codec::Gzip, Codec::Lz4, Codec::None];

    /// Decode an on-disk id.
    pub const fn from_id(id: u8) -> Option<Codec> {
        match id {
            0 => Some(Codec::None),
            1 => Some(Codec::Gzip),
            2 => Some(Codec::Zstd),
            3 => Some(Codec::Xz),
            4 => Some(Codec::Lz4),
            _ => None,
        }
    }

    /// The on-disk id.
    pub const fn id(self) -> u8 {
        self as u8
    }

    /// The name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
            Codec::Xz => "xz",
            Codec::Lz4 => "lz4",
        }
    }

    /// Parse a command-line name.
    pub fn from_name(name: &str) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The compression-type string Linux's zboot header uses for this codec
    /// (drivers/firmware/efi/libstub/Makefile.zboot `comp-type-y`).
    pub const fn zimg_type(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd22",
            Codec::Xz => "xzkern",
            Codec::Lz4 => "lz4",
        }
    }

    /// Reverse of [`Codec::zimg_type`].
    pub fn from_zimg_type(name: &str) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.zimg_type() == name)
    }
}

/// Linux's lz4 "legacy" framing (lib/decompress_unlz4.c), what the lz4 codec stores: this magic
/// (little-endian u32), then blocks of `u32 LE compressed size` + raw LZ4 block.
pub const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;
/// Decoded size of each lz4 legacy block but the last.
pub const LZ4_LEGACY_BLOCK: usize = 8 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip() {
        for c in Codec::ALL {
            assert_eq!(Codec::from_id(c.id()), Some(c));
            assert_eq!(Codec::from_name(c.name()), Some(c));
            assert_eq!(Codec::from_zimg_type(c.zimg_type()), Some(c));
        }
        assert_eq!(Codec::from_id(5), None);
        assert_eq!(Codec::from_name("brotli"), None);
    }
}

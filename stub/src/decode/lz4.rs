//! LZ4 "legacy" frames as the Linux kernel writes them (lib/decompress_unlz4.c): magic
//! 0x184C2102 (LE), then blocks of `u32 LE compressed size` + raw LZ4 block, each decoding to
//! 8 MiB except the last. A chunk size equal to the magic starts another frame; a zero size or
//! the end of input ends the stream.

use super::DecodeError;

use zboot_format::codec::{LZ4_LEGACY_BLOCK as BLOCK_MAX, LZ4_LEGACY_MAGIC as MAGIC};

fn le32(src: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(src.get(at..at + 4)?.try_into().ok()?))
}

/// Decode with liblz4's block decoder (feature `lz4`), else lz4_flex's (`lz4-rust`).
pub fn decode(src: &[u8], dst: &mut [u8]) -> Result<usize, DecodeError> {
    #[cfg(feature = "lz4")]
    return frames(src, dst, super::lz4_c::decode_block);
    #[cfg(not(feature = "lz4"))]
    return frames(src, dst, flex_block);
}

/// Decode with lz4_flex (the pure-Rust alternative, for `cargo xtask bench`).
#[cfg(feature = "lz4-rust")]
pub fn decode_rust(src: &[u8], dst: &mut [u8]) -> Result<usize, DecodeError> {
    frames(src, dst, flex_block)
}

#[cfg(feature = "lz4-rust")]
fn flex_block(src: &[u8], dst: &mut [u8]) -> Result<usize, DecodeError> {
    lz4_flex::block::decompress_into(src, dst).map_err(|e| match e {
        lz4_flex::block::DecompressError::OutputTooSmall { .. } => DecodeError::TooLong,
        _ => DecodeError::Corrupt("lz4 block"),
    })
}

/// The legacy framing around `block`, which decodes one raw LZ4 block into (at most) its `dst`.
fn frames(
    src: &[u8],
    dst: &mut [u8],
    block: fn(&[u8], &mut [u8]) -> Result<usize, DecodeError>,
) -> Result<usize, DecodeError> {
    if le32(src, 0) != Some(MAGIC) {
        return Err(DecodeError::Corrupt("lz4 legacy magic"));
    }
    let mut pos = 4;
    let mut out = 0;
    while let Some(size) = le32(src, pos) {
        pos += 4;
        if size == MAGIC {
            continue;
        }
        if size == 0 {
            break;
        }
        let end = pos
            .checked_add(size as usize)
            .filter(|&e| e <= src.len())
            .ok_or(DecodeError::Corrupt("lz4 block beyond input"))?;
        if out == dst.len() {
            return Err(DecodeError::TooLong);
        }
        let limit = (out + BLOCK_MAX).min(dst.len());
        out += block(&src[pos..end], &mut dst[out..limit])?;
        pos = end;
    }
    if pos < src.len() && src[pos..].iter().any(|&b| b != 0) && pos + 4 > src.len() {
        return Err(DecodeError::Corrupt("lz4 trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tests::*;
    use zboot_format::Codec;

    pub(crate) fn legacy(data: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_le_bytes().to_vec();
        for chunk in data.chunks(BLOCK_MAX) {
            let c = lz4_flex::block::compress(chunk);
            v.extend_from_slice(&(c.len() as u32).to_le_bytes());
            v.extend_from_slice(&c);
        }
        v
    }

    #[test]
    fn roundtrips_multi_block() {
        let data = sample(BLOCK_MAX * 2 + 12345);
        let c = legacy(&data);
        roundtrip(Codec::Lz4, &c, &data);
        corruption_never_panics(Codec::Lz4, &c, data.len());
    }

    #[cfg(feature = "lz4-rust")]
    #[test]
    fn lz4_flex_decodes_the_same() {
        let data = sample(BLOCK_MAX + 999);
        let c = legacy(&data);
        let mut out = vec![0u8; data.len()];
        assert_eq!(decode_rust(&c, &mut out), Ok(data.len()));
        assert!(out == data);
    }

    #[test]
    fn rejects_bad_magic() {
        let mut out = [0u8; 4];
        assert!(decode(b"\x02\x21\x4c\x19xxxx", &mut out).is_err());
        assert!(decode(b"", &mut out).is_err());
    }
}

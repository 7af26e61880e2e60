//! gzip (RFC 1952): one member, header parsed here, raw deflate through miniz_oxide inflating
//! straight into `dst` (non-wrapping output buffer), ISIZE trailer checked. (CRC32 is left to
//! the stream checksum, checked before decoding over the same bytes.)

use super::DecodeError;
use alloc::boxed::Box;
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

const FHCRC: u8 = 1 << 1;
const FEXTRA: u8 = 1 << 2;
const FNAME: u8 = 1 << 3;
const FCOMMENT: u8 = 1 << 4;

/// Length of the member header at the start of `src`.
fn header_len(src: &[u8]) -> Result<usize, DecodeError> {
    let bad = DecodeError::Corrupt("gzip header");
    if src.len() < 10 || src[0] != 0x1f || src[1] != 0x8b || src[2] != 8 {
        return Err(bad);
    }
    let flags = src[3];
    let mut pos = 10;
    if flags & FEXTRA != 0 {
        let xlen = src.get(pos..pos + 2).ok_or(bad)?;
        pos += 2 + u16::from_le_bytes([xlen[0], xlen[1]]) as usize;
    }
    for bit in [FNAME, FCOMMENT] {
        if flags & bit != 0 {
            let nul = src
                .get(pos..)
                .ok_or(bad)?
                .iter()
                .position(|&b| b == 0)
                .ok_or(bad)?;
            pos += nul + 1;
        }
    }
    if flags & FHCRC != 0 {
        pos += 2;
    }
    if pos > src.len() {
        return Err(bad);
    }
    Ok(pos)
}

pub fn decode(src: &[u8], dst: &mut [u8]) -> Result<usize, DecodeError> {
    let start = header_len(src)?;
    let mut inflater = Box::<DecompressorOxide>::default();
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, read, written) = decompress(&mut inflater, &src[start..], dst, 0, flags);
    match status {
        TINFLStatus::Done => {}
        TINFLStatus::HasMoreOutput => return Err(DecodeError::TooLong),
        TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
            return Err(DecodeError::TooShort(written));
        }
        _ => return Err(DecodeError::Corrupt("deflate data")),
    }
    let trailer = src
        .get(start + read..start + read + 8)
        .ok_or(DecodeError::Corrupt("gzip trailer missing"))?;
    let isize = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    if isize != written as u32 {
        return Err(DecodeError::Corrupt("gzip ISIZE mismatch"));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tests::*;
    use zboot_format::Codec;

    fn gzip(data: &[u8], name: bool) -> Vec<u8> {
        let mut v = vec![
            0x1f,
            0x8b,
            8,
            if name { FNAME } else { 0 },
            0,
            0,
            0,
            0,
            2,
            3,
        ];
        if name {
            v.extend_from_slice(b"vmlinux\0");
        }
        v.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
        v.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // CRC32 (not checked here)
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v
    }

    #[test]
    fn roundtrips_and_rejects() {
        let data = sample(2 << 20);
        for name in [false, true] {
            let c = gzip(&data, name);
            roundtrip(Codec::Gzip, &c, &data);
            corruption_never_panics(Codec::Gzip, &c, data.len());
        }
    }

    #[test]
    fn bad_headers() {
        let mut out = [0u8; 8];
        assert!(decode(&[0x1f, 0x8b, 8, FNAME, 0, 0, 0, 0, 0, 0, b'x'], &mut out).is_err());
        assert!(
            decode(
                &[0x1f, 0x8b, 8, FEXTRA, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
                &mut out
            )
            .is_err()
        );
        assert!(decode(&[0x1f, 0x8c, 8, 0, 0, 0, 0, 0, 0, 0], &mut out).is_err());
    }
}

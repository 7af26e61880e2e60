//! zstd (RFC 8878) through ruzstd (cargo feature `zstd-rust`): the pure-Rust alternative to
//! libzstd's C decoder (`zstd.rs`), kept so `cargo xtask bench` can compare the two. Its decode
//! buffer is window-sized and heap allocated; the output goes straight into `dst`.

use super::DecodeError;
use alloc::boxed::Box;
use ruzstd::decoding::FrameDecoder;
use ruzstd::decoding::errors::FrameDecoderError;

pub fn decode(src: &[u8], dst: &mut [u8]) -> Result<usize, DecodeError> {
    let mut decoder = Box::new(FrameDecoder::new());
    let n = decoder.decode_all(src, dst).map_err(|e| match e {
        FrameDecoderError::TargetTooSmall => DecodeError::TooLong,
        _ => DecodeError::Corrupt("zstd frame"),
    })?;
    // The content checksum (zboot-pack always writes one; the last 4 bytes of the frame), as
    // libzstd checks it in the C decoder.
    if let Some(want) = decoder.get_checksum_from_data()
        && decoder.get_calculated_checksum() != Some(want)
    {
        return Err(DecodeError::Corrupt("zstd content checksum"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use crate::decode::tests::*;

    #[test]
    fn decodes_what_ruzstd_encodes() {
        let data = sample(3 << 20);
        let c = ruzstd::encoding::compress_to_vec(
            &data[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let mut out = vec![0u8; data.len()];
        assert_eq!(super::decode(&c, &mut out), Ok(data.len()));
        assert!(out == data);
        let mut short = vec![0u8; data.len() - 1];
        assert!(super::decode(&c, &mut short).is_err());
    }
}

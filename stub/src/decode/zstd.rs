//! zstd (RFC 8878) through ruzstd. Its decode buffer is window-sized and heap allocated; the
//! output goes straight into `dst`.

use super::DecodeError;
use alloc::boxed::Box;
use ruzstd::decoding::FrameDecoder;
use ruzstd::decoding::errors::FrameDecoderError;

pub fn decode(src: &[u8], dst: &mut [u8]) -> Result<usize, DecodeError> {
    let mut decoder = Box::new(FrameDecoder::new());
    decoder.decode_all(src, dst).map_err(|e| match e {
        FrameDecoderError::TargetTooSmall => DecodeError::TooLong,
        _ => DecodeError::Corrupt("zstd frame"),
    })
}

#[cfg(test)]
mod tests {
    use crate::decode::tests::*;
    use zboot_format::Codec;

    #[test]
    fn roundtrips_and_rejects() {
        let data = sample(3 << 20);
        let c = ruzstd::encoding::compress_to_vec(
            &data[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        roundtrip(Codec::Zstd, &c, &data);
        corruption_never_panics(Codec::Zstd, &c, data.len());
    }
}

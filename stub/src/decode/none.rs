//! Stored payloads: a plain copy.

use super::DecodeError;

pub fn decode(src: &[u8], dst: &mut [u8]) -> Result<usize, DecodeError> {
    if src.len() > dst.len() {
        return Err(DecodeError::TooLong);
    }
    dst[..src.len()].copy_from_slice(src);
    Ok(src.len())
}

#[cfg(test)]
mod tests {
    use crate::decode::tests::*;
    use zboot_format::Codec;

    #[test]
    fn copies() {
        let data = sample(10_000);
        roundtrip(Codec::None, &data, &data);
    }
}

//! .xz (LZMA2, optionally behind the x86 BCJ filter, which the container's filter chain names)
//! through xz4rust, a port of xz-embedded (the kernel's own decoder). It decodes through a
//! heap dictionary whose size the stream header sets (bounded below).

use super::DecodeError;
use xz4rust::{XzDecoder, XzError};

/// Largest dictionary accepted (xz -9 uses 64 MiB; zboot-pack writes at most 32 MiB).
const DICT_MAX: usize = 128 << 20;

pub fn decode(src: &[u8], dst: &mut [u8]) -> Result<usize, DecodeError> {
    let mut decoder = XzDecoder::in_heap_with_alloc_dict_size(1 << 20, DICT_MAX);
    let (mut inp, mut out) = (0, 0);
    loop {
        let r = decoder
            .decode(&src[inp..], &mut dst[out..])
            .map_err(|e| match e {
                XzError::NeedsLargerInputBuffer => DecodeError::TooShort(out),
                _ => DecodeError::Corrupt("xz stream"),
            })?;
        inp += r.input_consumed();
        out += r.output_produced();
        if r.is_end_of_stream() {
            break;
        }
        if !r.made_progress() {
            return Err(if out == dst.len() {
                DecodeError::TooLong
            } else {
                DecodeError::TooShort(out)
            });
        }
    }
    if src[inp..].iter().any(|&b| b != 0) {
        return Err(DecodeError::Corrupt("data after the xz stream"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::decode::tests::*;
    use lzma_rust2::{CheckType, XzOptions, XzWriter};
    use std::io::Write;
    use zboot_format::Codec;

    fn xz(data: &[u8], bcj: bool) -> Vec<u8> {
        let mut o = XzOptions::with_preset(6);
        o.set_check_sum_type(CheckType::Crc32);
        if bcj {
            o.prepend_pre_filter(lzma_rust2::FilterType::BcjX86, 0);
        }
        let mut w = XzWriter::new(Vec::new(), o).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn roundtrips_with_and_without_bcj() {
        let data = sample(1 << 20);
        for bcj in [false, true] {
            let c = xz(&data, bcj);
            roundtrip(Codec::Xz, &c, &data);
            corruption_never_panics(Codec::Xz, &c, data.len());
        }
    }
}

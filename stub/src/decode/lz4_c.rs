//! liblz4's block decoder (`LZ4_decompress_safe`), compiled freestanding by `stub/build.rs`:
//! bounds-checked against both buffers by design ("safe" decoder; hostile-input tests in
//! stub/tests/decode_hostile.rs). One of the stub's few `unsafe` modules: the FFI call.

use super::DecodeError;
use core::ffi::{c_char, c_int};

unsafe extern "C" {
    fn LZ4_decompress_safe(
        src: *const c_char,
        dst: *mut c_char,
        compressed_size: c_int,
        dst_capacity: c_int,
    ) -> c_int;
}

/// Decode one raw LZ4 block into `dst`; returns the bytes written.
pub fn decode_block(src: &[u8], dst: &mut [u8]) -> Result<usize, DecodeError> {
    let (Ok(n_in), Ok(cap)) = (c_int::try_from(src.len()), c_int::try_from(dst.len())) else {
        return Err(DecodeError::Corrupt("lz4 block larger than 2 GiB"));
    };
    // SAFETY: liblz4 reads at most `n_in` bytes from `src` and writes at most `cap` bytes to
    // `dst` (both the lengths of the slices passed), and keeps no pointer to either.
    let n = unsafe { LZ4_decompress_safe(src.as_ptr().cast(), dst.as_mut_ptr().cast(), n_in, cap) };
    // Negative: malformed input or output that would not fit (liblz4 does not tell which).
    usize::try_from(n).map_err(|_| DecodeError::Corrupt("lz4 block"))
}

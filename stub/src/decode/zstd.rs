//! zstd (RFC 8878) through libzstd's own C decoder, compiled freestanding by `stub/build.rs`:
//! one-shot `ZSTD_decompressDCtx` straight into `dst` (no window buffer, no copy), with the
//! decoder context in a workspace this module allocates (`ZSTD_initStaticDCtx`: libzstd never
//! calls malloc). The frame's content checksum is verified by libzstd.
//!
//! This is one of the stub's few `unsafe` modules: the FFI calls and, on the UEFI target, the
//! allocator symbols the C objects reference.

use super::DecodeError;
use alloc::vec::Vec;
use core::ffi::c_void;

#[allow(non_camel_case_types)]
type ZSTD_DCtx = c_void;

unsafe extern "C" {
    fn ZSTD_estimateDCtxSize() -> usize;
    fn ZSTD_initStaticDCtx(workspace: *mut c_void, size: usize) -> *mut ZSTD_DCtx;
    fn ZSTD_decompressDCtx(
        dctx: *mut ZSTD_DCtx,
        dst: *mut c_void,
        dst_capacity: usize,
        src: *const c_void,
        src_size: usize,
    ) -> usize;
    fn ZSTD_getErrorCode(code: usize) -> u32;
}

/// `ZSTD_error_dstSize_tooSmall` (zstd_errors.h, stable).
const ERROR_DST_SIZE_TOO_SMALL: u32 = 70;
/// `ZSTD_error_checksum_wrong`.
const ERROR_CHECKSUM_WRONG: u32 = 22;

/// libzstd's error codes are the top of the `size_t` range (`ZSTD_isError`).
fn is_error(code: usize) -> bool {
    code > usize::MAX - 120
}

pub fn decode(src: &[u8], dst: &mut [u8]) -> Result<usize, DecodeError> {
    // SAFETY: a pure function of compile-time parameters.
    let size = unsafe { ZSTD_estimateDCtxSize() };
    // u64 elements: libzstd requires an 8-byte aligned workspace.
    let mut workspace: Vec<u64> = Vec::new();
    workspace
        .try_reserve_exact(size.div_ceil(8))
        .map_err(|_| DecodeError::Corrupt("no memory for the zstd decoder"))?;
    workspace.resize(size.div_ceil(8), 0);
    // SAFETY: `workspace` is writable, 8-byte aligned, at least `size` bytes and outlives `dctx`
    // (dropped at the end of this function, after the last use).
    let dctx = unsafe { ZSTD_initStaticDCtx(workspace.as_mut_ptr().cast(), size) };
    if dctx.is_null() {
        return Err(DecodeError::Corrupt("zstd decoder workspace rejected"));
    }
    // SAFETY: libzstd reads only `src[..src.len()]` and writes only `dst[..dst.len()]` (its
    // bounds are checked against the capacities passed; the hostile-input tests in
    // stub/tests/decode_hostile.rs check this with guard bytes), and keeps no pointer to either.
    let n = unsafe {
        ZSTD_decompressDCtx(
            dctx,
            dst.as_mut_ptr().cast(),
            dst.len(),
            src.as_ptr().cast(),
            src.len(),
        )
    };
    if !is_error(n) {
        return Ok(n);
    }
    // SAFETY: a pure function of the error code.
    Err(match unsafe { ZSTD_getErrorCode(n) } {
        ERROR_DST_SIZE_TOO_SMALL => DecodeError::TooLong,
        ERROR_CHECKSUM_WRONG => DecodeError::Corrupt("zstd content checksum"),
        _ => DecodeError::Corrupt("zstd frame"),
    })
}

/// The C objects reference the C allocator through libzstd's default `customMem`, which a
/// static context never uses; on the UEFI target there is no libc, so these satisfy the linker
/// and refuse to allocate.
#[cfg(target_os = "uefi")]
mod no_heap {
    use core::ffi::c_void;
    use core::ptr;

    // SAFETY: no other object in the stub defines these C symbols (there is no libc here).
    #[unsafe(no_mangle)]
    extern "C" fn malloc(_size: usize) -> *mut c_void {
        ptr::null_mut()
    }

    // SAFETY: as for `malloc`.
    #[unsafe(no_mangle)]
    extern "C" fn calloc(_n: usize, _size: usize) -> *mut c_void {
        ptr::null_mut()
    }

    // SAFETY: as for `malloc`; only ever called with pointers `malloc`/`calloc` returned (null).
    #[unsafe(no_mangle)]
    extern "C" fn free(_p: *mut c_void) {}
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

    #[test]
    fn a_damaged_content_checksum_is_refused() {
        let data = sample(1 << 20);
        let mut c = ruzstd::encoding::compress_to_vec(
            &data[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        // Frame header descriptor bit 2: ruzstd (feature "hash") writes the content checksum.
        assert!(c[4] & 0x04 != 0, "test frame without a content checksum");
        let last = c.len() - 1;
        c[last] ^= 1;
        let mut out = vec![0u8; data.len()];
        assert_eq!(
            super::decode(&c, &mut out),
            Err(crate::decode::DecodeError::Corrupt("zstd content checksum"))
        );
    }
}

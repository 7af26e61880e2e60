//! Step 0: our own image, without PE headers or PE base relocations.
//!
//! The packer fills [`ZBOOT_STUB_DESCRIPTOR`] (zboot_format::descriptor): the ImageBase we were
//! linked for, the RVAs of our 64-bit absolute addresses (vtables, unwind data), our image size
//! and where the payload is. Our image starts at `__ImageBase` (the linker's symbol, addressed
//! RIP-relative, so it is right wherever a loader put us: the firmware, systemd-stub >= 258
//! which copies only the sections, or a loader that copied the file flat).
//!
//! [`relocate`] must run first at entry: until it has, every pointer stored in our data (a
//! vtable's function pointers, so any formatting) is the link-time value.

use zboot_format::descriptor::{DescriptorError, StubDescriptor};

/// Filled in by zboot-pack; its magic lets the packer find it. In writable data: [`relocate`]
/// records the applied base in it.
#[used]
#[unsafe(no_mangle)]
static mut ZBOOT_STUB_DESCRIPTOR: StubDescriptor = StubDescriptor::EMPTY;

unsafe extern "C" {
    /// The first byte of our image (lld-link's symbol).
    static __ImageBase: u8;
}

/// Where our image starts in memory.
fn base() -> u64 {
    &raw const __ImageBase as u64
}

/// The descriptor as the packer left it (read once per call; the packer wrote it after the
/// compiler saw it, hence volatile).
fn descriptor() -> StubDescriptor {
    // SAFETY: a plain static of integers, written only by `relocate` (single-threaded).
    unsafe { core::ptr::read_volatile(&raw const ZBOOT_STUB_DESCRIPTOR) }
}

/// Apply the difference between where we are and where we were linked to every 64-bit address
/// the descriptor lists, once.
///
/// # Safety
/// Call at entry before anything reads a pointer from our data; single-threaded.
pub unsafe fn relocate() -> Result<(), DescriptorError> {
    let d = descriptor();
    d.validate()?;
    let base = base();
    let delta = base.wrapping_sub(d.link_base);
    if delta != 0 {
        for &rva in d.relocs() {
            let at = (base + u64::from(rva)) as *mut u64;
            // SAFETY: `validate` checked that the 8 bytes lie inside our image; the packer
            // listed them from our `.reloc` (all in writable data: the stub is linked with its
            // read-only data merged into `.data`).
            unsafe { at.write_unaligned(at.read_unaligned().wrapping_add(delta)) };
        }
        // SAFETY: as above; later calls see the addresses as current.
        unsafe { (&raw mut ZBOOT_STUB_DESCRIPTOR.link_base).write_volatile(base) };
    }
    Ok(())
}

/// Our image (`image_size` bytes from `__ImageBase`) and its descriptor.
pub fn own() -> Result<(&'static [u8], StubDescriptor), DescriptorError> {
    let d = descriptor();
    d.validate()?;
    // SAFETY: the loader put `image_size` bytes of our image at `__ImageBase` and they stay
    // mapped until we exit (the kernel takes over after we are done with them).
    let image = unsafe { core::slice::from_raw_parts(base() as *const u8, d.image_size as usize) };
    Ok((image, d))
}

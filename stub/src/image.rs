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

use core::ffi::c_void;
use zboot_format::bootparam::{KERNEL_INFO_SIZE, KernelInfo, SETUP_TYPE_MAX_DEFAULT};
use zboot_format::descriptor::{DescriptorError, StubDescriptor};

/// The descriptor and, right after it (`descriptor::HANDOVER_AT`), the address of our 64-bit
/// EFI handover entry, which the packer turns into the setup header's `handover_offset`; then
/// (`ENTRY64_AT`, `ENTRY32_AT`) those of the bzImage entries, which the packer checks, and
/// (`REAL_MODE_AT`) the bounds of the 16-bit entry's code, which it copies into the headers;
/// then (`HANDOVER32_AT`) the 32-bit EFI handover entry, which the packer checks lies where
/// `handover_offset` points; then (`KERNEL_INFO_AT`) the image's kernel_info block, which the setup header names and
/// whose `setup_type_max` the packer writes (boot loaders read it; the stub never does).
#[repr(C)]
struct StubRecord {
    descriptor: StubDescriptor,
    handover: HandoverEntry,
    entry64: unsafe extern "C" fn(),
    entry32: unsafe extern "C" fn(),
    real_mode: [&'static u8; 2],
    handover32: unsafe extern "C" fn(),
    kernel_info: [u8; KERNEL_INFO_SIZE],
}

/// `extern "sysv64" fn(image handle, system table, boot_params) -> EFI status`
/// (arch/x86_64/efi_handover.rs, which jumps to platform/efi/mod.rs).
type HandoverEntry = unsafe extern "sysv64" fn(*mut c_void, *const c_void, *mut c_void) -> usize;

// The packer finds the fields after the descriptor at zboot-format's offsets.
const _: () = assert!(
    core::mem::offset_of!(StubRecord, kernel_info) == zboot_format::descriptor::KERNEL_INFO_AT
        && core::mem::size_of::<StubRecord>() == zboot_format::descriptor::RECORD_SIZE
);

/// Filled in by zboot-pack; its magic lets the packer find it. In writable data: [`relocate`]
/// records the applied base in it.
#[used]
#[unsafe(no_mangle)]
static mut ZBOOT_STUB_DESCRIPTOR: StubRecord = StubRecord {
    descriptor: StubDescriptor::EMPTY,
    handover: zboot_handover64,
    entry64: zboot_entry64,
    entry32: zboot_entry32,
    // SAFETY: only the labels' addresses are taken.
    real_mode: unsafe { [&zboot_real_start, &zboot_real_end] },
    handover32: zboot_handover32,
    kernel_info: KernelInfo {
        setup_type_max: SETUP_TYPE_MAX_DEFAULT,
    }
    .to_bytes(),
};

unsafe extern "C" {
    /// The first byte of our image (lld-link's symbol).
    static __ImageBase: u8;
}

unsafe extern "C" {
    /// The bzImage entries (arch/x86_64/legacy.rs); never called from Rust.
    fn zboot_entry64();
    fn zboot_entry32();
    /// The 16-bit entry's code (legacy.rs), copied into the headers by the packer.
    static zboot_real_start: u8;
    static zboot_real_end: u8;
}

unsafe extern "sysv64" {
    /// The 64-bit EFI handover entry (arch/x86_64/efi_handover.rs; platform/efi/mod.rs's
    /// `zboot_handover_entry` behind a jump).
    fn zboot_handover64(handle: *mut c_void, st: *const c_void, bp: *mut c_void) -> usize;
}

unsafe extern "C" {
    /// The 32-bit EFI handover entry (efi_handover.rs), `HANDOVER_ENTRY_BIAS` bytes before the
    /// 64-bit one; never called from Rust.
    fn zboot_handover32();
}

/// Where our image starts in memory.
fn base() -> u64 {
    &raw const __ImageBase as u64
}

/// The descriptor as the packer left it (read once per call; the packer wrote it after the
/// compiler saw it, hence volatile).
fn descriptor() -> StubDescriptor {
    // SAFETY: a plain static of integers, written only by `relocate` (single-threaded).
    unsafe { core::ptr::read_volatile(&raw const ZBOOT_STUB_DESCRIPTOR.descriptor) }
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
        unsafe { (&raw mut ZBOOT_STUB_DESCRIPTOR.descriptor.link_base).write_volatile(base) };
    }
    Ok(())
}

/// What the stub reads of its own image.
pub struct OwnImage {
    /// `__ImageBase`: where the loader put us.
    pub base: u64,
    pub descriptor: StubDescriptor,
    /// The appended parts: `[payload_rva, image_size)` of the image (the payload section
    /// first, then the embedded command line, initrd and SBAT; `zboot_format::image::Part`).
    pub parts: &'static [u8],
}

/// Our descriptor and our image's appended parts. Only the parts are handed out as bytes: the
/// stub's own sections before them hold the `.data` it writes while it runs.
pub fn own() -> Result<OwnImage, DescriptorError> {
    let d = descriptor();
    d.validate()?;
    let start = base() + u64::from(d.payload_rva);
    let len = (d.image_size - d.payload_rva) as usize;
    // SAFETY: the loader put `image_size` bytes of our image at `__ImageBase` and they stay
    // mapped until we exit; `validate` put `payload_rva` inside them. From there on lie only
    // the appended parts, read-only initialized data the packer writes after the stub's own
    // sections: nothing in the stub writes to them, so a shared slice of them holds.
    let parts = unsafe { core::slice::from_raw_parts(start as *const u8, len) };
    Ok(OwnImage {
        base: base(),
        descriptor: d,
        parts,
    })
}

/// The payload our image carries, found and validated through our descriptor.
pub fn payload() -> Result<zboot_stub::payload::Payload<'static>, crate::error::Error> {
    use crate::error::Error;
    use zboot_stub::payload::{self, PayloadError};
    let own = own().map_err(|e| Error::Payload(PayloadError::Descriptor(e)))?;
    payload::locate_in_parts(own.parts, &own.descriptor).map_err(Error::Payload)
}

//! Page allocations under EFI (freed on drop unless handed to the kernel), memory attributes
//! (strict-NX firmware), the memory map's ranges, protocols opened without claiming them, and
//! LoadFile2 straight into pages. The EFI platform's raw-pointer leaf.

use uefi::boot::{self, AllocateType, MemoryType};
use uefi::mem::memory_map::MemoryMap;
use uefi::proto::security::MemoryProtection;
use uefi::{Result, Status};
use zboot_stub::memstats;

pub const PAGE: u64 = 4096;

const fn pages(bytes: u64) -> usize {
    bytes.div_ceil(PAGE) as usize
}

/// Pages from AllocatePages, freed on drop; counted by `memstats` (as payload when allocated
/// inside `memstats::for_payload`).
pub struct Pages {
    addr: u64,
    count: usize,
    payload: bool,
}

impl Pages {
    fn raw(kind: AllocateType, ty: MemoryType, count: usize) -> Result<Pages> {
        let count = count.max(1);
        let p = boot::allocate_pages(kind, ty, count)?;
        let payload = memstats::in_payload_scope();
        memstats::pages_allocated(count as u64 * PAGE, payload);
        Ok(Pages {
            addr: p.as_ptr() as u64,
            count,
            payload,
        })
    }

    /// `bytes` of `ty` memory, below 4 GiB when possible, zeroed.
    pub fn low(bytes: u64, ty: MemoryType) -> Result<Pages> {
        let mut p = Self::low_for_overwrite(bytes, ty)?;
        p.bytes_mut().fill(0);
        Ok(p)
    }

    /// As [`Pages::low`] but not zeroed, for a buffer the caller fills completely before use
    /// (the initrd: zeroing it first would be a second pass over tens of MB).
    pub fn low_for_overwrite(bytes: u64, ty: MemoryType) -> Result<Pages> {
        Self::raw(AllocateType::MaxAddress(0xffff_ffff), ty, pages(bytes))
            .or_else(|_| Self::raw(AllocateType::AnyPages, ty, pages(bytes)))
    }

    /// `bytes` of `ty` memory strictly below 4 GiB (for code and tables used with paging off),
    /// zeroed.
    pub fn below_4g(bytes: u64, ty: MemoryType) -> Result<Pages> {
        let mut p = Self::raw(AllocateType::MaxAddress(0xffff_ffff), ty, pages(bytes))?;
        p.bytes_mut().fill(0);
        Ok(p)
    }

    /// `size` bytes exactly at `addr` (AllocateAddress), not zeroed.
    pub fn at(addr: u64, size: u64, ty: MemoryType) -> Result<Pages> {
        Self::raw(AllocateType::Address(addr), ty, pages(size))
    }

    /// `size` bytes aligned to `align`: at `preferred` if free, else over-allocate and trim.
    pub fn aligned(size: u64, align: u64, preferred: Option<u64>, ty: MemoryType) -> Result<Pages> {
        if let Some(at) = preferred
            && let Ok(p) = Self::raw(AllocateType::Address(at), ty, pages(size))
        {
            return Ok(p);
        }
        let extra = pages(align) - 1;
        let total = pages(size) + extra;
        let whole = Self::raw(AllocateType::MaxAddress(0xffff_ffff), ty, total)
            .or_else(|_| Self::raw(AllocateType::AnyPages, ty, total))?;
        let (start, count, payload) = (whole.addr, whole.count, whole.payload);
        core::mem::forget(whole);
        let base = start.next_multiple_of(align);
        let head = ((base - start) / PAGE) as usize;
        let tail = total - head - pages(size);
        // SAFETY: both ranges lie inside the allocation just made and are no longer used.
        unsafe {
            if head > 0 {
                let _ = boot::free_pages(ptr(start), head);
            }
            if tail > 0 {
                let _ = boot::free_pages(ptr(base + size.next_multiple_of(PAGE)), tail);
            }
        }
        debug_assert_eq!(head + tail + pages(size), count);
        memstats::pages_freed((head + tail) as u64 * PAGE, payload);
        Ok(Pages {
            addr: base,
            count: pages(size),
            payload,
        })
    }

    pub fn addr(&self) -> u64 {
        self.addr
    }

    pub fn len(&self) -> u64 {
        self.count as u64 * PAGE
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: we own these pages (AllocatePages), they are identity mapped, and the &self
        // borrow excludes every mutable view.
        unsafe { core::slice::from_raw_parts(self.addr as *const u8, self.len() as usize) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: we own these pages exclusively (AllocatePages), they are identity mapped,
        // and the &mut self borrow makes this the only view.
        unsafe { core::slice::from_raw_parts_mut(self.addr as *mut u8, self.len() as usize) }
    }

    /// Store a plain-data value (a zero-page struct) at byte `offset`.
    pub fn write<T: Plain>(&mut self, offset: usize, value: &T) {
        let end = offset + size_of::<T>();
        assert!(end as u64 <= self.len(), "write beyond allocation");
        // SAFETY: in bounds (checked above) of pages we own; unaligned store of a Copy value.
        unsafe { core::ptr::write_unaligned((self.addr as usize + offset) as *mut T, *value) }
    }

    /// Hand the pages over (to the kernel): they are never freed.
    pub fn leak(self) -> u64 {
        let a = self.addr;
        core::mem::forget(self);
        a
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: allocated by us with this count, not handed out.
        let _ = unsafe { boot::free_pages(ptr(self.addr), self.count) };
        memstats::pages_freed(self.count as u64 * PAGE, self.payload);
    }
}

fn ptr(addr: u64) -> core::ptr::NonNull<u8> {
    core::ptr::NonNull::new(addr as *mut u8).expect("page address 0")
}

/// Make `[addr, addr+len)` executable and writable where the firmware supports the
/// EFI_MEMORY_ATTRIBUTE_PROTOCOL (strict NX). Returns whether the protocol was there.
pub fn allow_execute(addr: u64, len: u64) -> Result<bool> {
    let Ok(handle) = boot::get_handle_for_protocol::<MemoryProtection>() else {
        return Ok(false);
    };
    let mp = get_protocol::<MemoryProtection>(handle)?;
    use uefi::mem::memory_map::MemoryAttribute as A;
    mp.clear_memory_attributes(addr..addr + len, A::EXECUTE_PROTECT | A::READ_ONLY)?;
    Ok(true)
}

/// Make `[addr, addr+len)` read-only and executable (W^X for code the stub wrote, e.g. the
/// LA57 trampoline) where the EFI_MEMORY_ATTRIBUTE_PROTOCOL exists; RO is set before XP is
/// cleared so that the range is never writable and executable at once. Returns whether the
/// protocol was there (without it the firmware maps LOADER_CODE executable).
pub fn protect_code(addr: u64, len: u64) -> Result<bool> {
    let Ok(handle) = boot::get_handle_for_protocol::<MemoryProtection>() else {
        return Ok(false);
    };
    let mp = get_protocol::<MemoryProtection>(handle)?;
    use uefi::mem::memory_map::MemoryAttribute as A;
    mp.set_memory_attributes(addr..addr + len, A::READ_ONLY)?;
    mp.clear_memory_attributes(addr..addr + len, A::EXECUTE_PROTECT)?;
    Ok(true)
}

/// Make `[addr, addr+len)` non-executable (and leave it writable) where the
/// EFI_MEMORY_ATTRIBUTE_PROTOCOL exists. Returns whether the protocol was there.
pub fn forbid_execute(addr: u64, len: u64) -> Result<bool> {
    let Ok(handle) = boot::get_handle_for_protocol::<MemoryProtection>() else {
        return Ok(false);
    };
    let mp = get_protocol::<MemoryProtection>(handle)?;
    use uefi::mem::memory_map::MemoryAttribute as A;
    mp.set_memory_attributes(addr..addr + len, A::EXECUTE_PROTECT)?;
    Ok(true)
}

/// The ranges of the current memory map whose descriptors pass `keep`, sorted by address.
fn map_ranges(
    keep: impl Fn(&uefi::mem::memory_map::MemoryDescriptor) -> bool,
) -> Result<alloc::vec::Vec<zboot_stub::placement::FreeRange>> {
    use zboot_stub::placement::FreeRange;
    let map = boot::memory_map(MemoryType::LOADER_DATA)?;
    let mut v: alloc::vec::Vec<FreeRange> = map
        .entries()
        .filter(|d| keep(d))
        .map(|d| FreeRange {
            start: d.phys_start,
            end: d
                .phys_start
                .saturating_add(d.page_count.saturating_mul(PAGE)),
        })
        .collect();
    v.sort_unstable_by_key(|r| r.start);
    Ok(v)
}

/// The free physical ranges KASLR may choose from: EfiConventionalMemory, not
/// specific-purpose (`EFI_MEMORY_SP`), sorted by address.
pub fn conventional_ranges() -> Result<alloc::vec::Vec<zboot_stub::placement::FreeRange>> {
    use zboot_stub::arch::current::e820::EFI_MEMORY_SP;
    map_ranges(|d| d.ty == MemoryType::CONVENTIONAL && d.att.bits() & EFI_MEMORY_SP == 0)
}

/// Memory a loader or boot service allocated (loader/boot-services code and data), adjacent
/// ranges merged, for checking what a handover loader points us at.
pub fn allocated_ranges() -> Result<alloc::vec::Vec<zboot_stub::placement::FreeRange>> {
    let v = map_ranges(|d| {
        matches!(
            d.ty,
            MemoryType::LOADER_CODE
                | MemoryType::LOADER_DATA
                | MemoryType::BOOT_SERVICES_CODE
                | MemoryType::BOOT_SERVICES_DATA
        )
    })?;
    let mut merged: alloc::vec::Vec<zboot_stub::placement::FreeRange> =
        alloc::vec::Vec::with_capacity(v.len());
    for r in v {
        match merged.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => merged.push(r),
        }
    }
    Ok(merged)
}

/// Open protocol `P` on `handle` without claiming it (GET_PROTOCOL, as Linux's stub does with
/// HandleProtocol): a parent loader (systemd-stub >= 258 enters us with its own image handle)
/// or a driver may hold it, and an exclusive open would disconnect them or fail. Never closed:
/// GET_PROTOCOL opens need no CloseProtocol, and EDK2 keeps one record per (agent, controller)
/// for them, so closing one of two overlapping opens (ours, or a loader's made with our handle
/// as agent, as systemd-boot does) makes the other's close fail.
pub fn get_protocol<P: uefi::proto::ProtocolPointer + ?Sized>(
    handle: uefi::Handle,
) -> Result<Got<P>> {
    let params = boot::OpenProtocolParams {
        handle,
        agent: boot::image_handle(),
        controller: None,
    };
    // SAFETY: a non-exclusive open is only unsafe in that the protocol could be uninstalled
    // while we hold it; nothing runs between our open and our last use but our own code
    // (boot services are single-threaded).
    let p = unsafe { boot::open_protocol::<P>(params, boot::OpenProtocolAttributes::GetProtocol) }?;
    Ok(Got(core::mem::ManuallyDrop::new(p)))
}

/// A protocol opened by [`get_protocol`].
pub struct Got<P: uefi::proto::ProtocolPointer + ?Sized>(
    core::mem::ManuallyDrop<boot::ScopedProtocol<P>>,
);

impl<P: uefi::proto::ProtocolPointer + ?Sized> core::ops::Deref for Got<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.0
    }
}

impl<P: uefi::proto::ProtocolPointer + ?Sized> core::ops::DerefMut for Got<P> {
    fn deref_mut(&mut self) -> &mut P {
        &mut self.0
    }
}

/// Number of descriptors in the current memory map (to size post-exit buffers).
pub fn map_entries() -> Result<usize> {
    Ok(boot::memory_map(MemoryType::LOADER_DATA)?.len())
}

/// Plain old data: `repr(C, packed)` integer structs whose every byte pattern is valid.
pub trait Plain: Copy {}
impl Plain for zboot_format::bootparam::BootParams {}
impl Plain for zboot_format::bootparam::SetupData {}
impl Plain for zboot_format::bootparam::E820Entry {}

/// LoadFile2 with its raw function (uefi-rs's `load_file` returns a pool copy).
#[repr(transparent)]
#[uefi::proto::unsafe_protocol(uefi_raw::protocol::media::LoadFile2Protocol::GUID)]
struct RawLoadFile2(uefi_raw::protocol::media::LoadFile2Protocol);

/// Load the file the LoadFile2 protocol on `handle` serves for `path` straight into pages of
/// `ty` (the protocol's two calls: size, then data), so no second copy of it ever exists.
/// Returns the pages and the file's size.
pub fn load_file2_pages(
    handle: uefi::Handle,
    path: &uefi::proto::device_path::DevicePath,
    ty: MemoryType,
) -> Result<(Pages, usize)> {
    let mut lf = get_protocol::<RawLoadFile2>(handle)?;
    let load_file = (*lf).0.load_file;
    let this: *mut uefi_raw::protocol::media::LoadFile2Protocol = &mut (*lf).0;
    let call = |size: &mut usize, buf: *mut u8| {
        // SAFETY: `this` is the protocol instance opened above (alive for this function), `path`
        // a valid device path, `size` a valid in/out pointer, and `buf` null (size query) or
        // `*size` writable bytes; the firmware keeps no pointer to any of them.
        unsafe {
            load_file(
                this,
                path.as_ffi_ptr().cast(),
                uefi_raw::Boolean::FALSE,
                size,
                buf.cast(),
            )
        }
    };
    let mut size = 0usize;
    match call(&mut size, core::ptr::null_mut()) {
        Status::BUFFER_TOO_SMALL => {}
        // An empty file.
        Status::SUCCESS => size = 0,
        st => return Err(st.into()),
    }
    // Filled by the firmware below; only the first `got` bytes are handed on.
    let mut pages = Pages::low_for_overwrite(size as u64, ty)?;
    if size == 0 {
        return Ok((pages, 0));
    }
    let mut got = size;
    let st = call(&mut got, pages.bytes_mut().as_mut_ptr());
    if st != Status::SUCCESS {
        return Err(st.into());
    }
    if got > size {
        return Err(Status::BAD_BUFFER_SIZE.into());
    }
    Ok((pages, got))
}

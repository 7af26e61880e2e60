//! The firmware's two measurement protocols, called raw: `EFI_TCG2_PROTOCOL` and, where TCG2 is
//! absent (confidential-computing guests), `EFI_CC_MEASUREMENT_PROTOCOL`. The request bytes come
//! from `zboot_format::measure`; this leaf only hands them over. It depends on nothing but the
//! protocols' tables, so a host test drives it with a firmware-shaped fake (no CC firmware runs
//! here). The EFI pipeline's `measure` step finds the protocols and decides what a failure means.

use uefi_raw::protocol::tcg::v2::{Tcg2HashLogExtendEventFlags, Tcg2Protocol};
use uefi_raw::{Guid, Status, guid};
use zboot_format::measure::{Event, MAX_REQUEST, MeasureError, PCR};

/// `EFI_CC_MEASUREMENT_PROTOCOL_GUID` (UEFI 2.10, "Confidential Computing").
pub const CC_MEASUREMENT_PROTOCOL_GUID: Guid = guid!("96751a3d-72f4-41a6-a794-ed5d0e67ae6b");

/// `EFI_CC_MEASUREMENT_PROTOCOL`: TCG2's shape with PCRs mapped to the platform's measurement
/// registers. Only the last two members are called.
#[repr(C)]
pub struct CcMeasurementProtocol {
    pub get_capability: unsafe extern "efiapi" fn(*mut Self, *mut u8) -> Status,
    pub get_event_log:
        unsafe extern "efiapi" fn(*mut Self, u32, *mut u64, *mut u64, *mut u8) -> Status,
    pub hash_log_extend_event:
        unsafe extern "efiapi" fn(*mut Self, u64, u64, u64, *const u8) -> Status,
    pub map_pcr_to_mr_index: unsafe extern "efiapi" fn(*mut Self, u32, *mut u32) -> Status,
}

/// Why a measurement failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Build(MeasureError),
    /// `MapPcrToMrIndex(9)` failed.
    MapPcr(Status),
    /// `HashLogExtendEvent` failed.
    Extend(Status),
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Build(e) => write!(f, "{e}"),
            Failure::MapPcr(s) => write!(f, "MapPcrToMrIndex({PCR}) failed: {s:?}"),
            Failure::Extend(s) => write!(f, "HashLogExtendEvent failed: {s:?}"),
        }
    }
}

fn request(ev: &Event, index: u32, buf: &mut [u8; MAX_REQUEST]) -> Result<usize, Failure> {
    ev.write_request(index, buf).map_err(Failure::Build)
}

fn status(st: Status) -> Result<(), Failure> {
    if st == Status::SUCCESS {
        Ok(())
    } else {
        Err(Failure::Extend(st))
    }
}

/// Measures `ev` into PCR 9 through TCG2 (flags 0, as Linux).
///
/// # Safety
/// `p` points to a live `EFI_TCG2_PROTOCOL` instance, valid for the duration of the call.
pub unsafe fn tcg2(p: *mut Tcg2Protocol, ev: &Event) -> Result<(), Failure> {
    let mut buf = [0u8; MAX_REQUEST];
    request(ev, PCR, &mut buf)?;
    // SAFETY: `p` is live (caller); the data and the request outlive the call and the firmware
    // keeps no pointer to either.
    let st = unsafe {
        ((*p).hash_log_extend_event)(
            p,
            Tcg2HashLogExtendEventFlags::empty(),
            ev.data.as_ptr() as u64,
            ev.data.len() as u64,
            buf.as_ptr().cast(),
        )
    };
    status(st)
}

/// Measures `ev` into the register that `MapPcrToMrIndex(9)` names, through the CC protocol;
/// returns that MR index.
///
/// # Safety
/// `p` points to a live `EFI_CC_MEASUREMENT_PROTOCOL` instance, valid for the duration of the
/// call.
pub unsafe fn cc(p: *mut CcMeasurementProtocol, ev: &Event) -> Result<u32, Failure> {
    let mut mr = 0u32;
    // SAFETY: `p` is live (caller); `mr` is a valid out pointer for the call.
    let st = unsafe { ((*p).map_pcr_to_mr_index)(p, PCR, &mut mr) };
    if st != Status::SUCCESS {
        return Err(Failure::MapPcr(st));
    }
    let mut buf = [0u8; MAX_REQUEST];
    request(ev, mr, &mut buf)?;
    // SAFETY: as in `tcg2`.
    let st = unsafe {
        ((*p).hash_log_extend_event)(
            p,
            0,
            ev.data.as_ptr() as u64,
            ev.data.len() as u64,
            buf.as_ptr(),
        )
    };
    status(st).map(|()| mr)
}

/// `GetEventLog(TCG_2)`: the log's first and last entry addresses (`None` when the firmware has
/// no crypto-agile log).
///
/// # Safety
/// `p` points to a live `EFI_TCG2_PROTOCOL` instance, valid for the duration of the call.
pub unsafe fn tcg2_event_log(p: *mut Tcg2Protocol) -> Option<(u64, u64)> {
    let (mut first, mut last, mut truncated) = (0u64, 0u64, 0u8);
    // SAFETY: `p` is live (caller); the three out pointers are valid for the call.
    let st = unsafe {
        ((*p).get_event_log)(
            p,
            uefi_raw::protocol::tcg::v2::Tcg2EventLogFormat::TCG_2,
            &mut first,
            &mut last,
            &mut truncated,
        )
    };
    (st == Status::SUCCESS && first != 0).then_some((first, last))
}

/// A little-endian field of `width` (2 or 4) bytes at `base + at` of firmware memory.
///
/// # Safety
/// The bytes lie in memory the firmware keeps for the log it described (its own records).
pub unsafe fn firmware_field(base: u64, at: usize, width: usize) -> Option<u32> {
    let addr = base.checked_add(at as u64)?;
    // SAFETY: caller's contract; unaligned reads of plain integers.
    unsafe {
        Some(match width {
            2 => u32::from(core::ptr::read_unaligned(addr as *const u16)),
            _ => core::ptr::read_unaligned(addr as *const u32),
        })
    }
}

#[cfg(test)]
mod tests {
    //! A firmware-shaped fake of the CC protocol (TDX maps PCR 9 to RTMR[2], MR index 3): it
    //! records what the stub hands it, the way a firmware would read it (raw pointers, sizes
    //! from the request itself).
    use super::*;
    use std::cell::RefCell;
    use zboot_format::measure::{EV_EVENT_TAG, INITRD_EVENT_ID, Tag};

    #[derive(Default)]
    struct Seen {
        mapped: Vec<u32>,
        extends: Vec<(u64, Vec<u8>, Vec<u8>)>,
    }

    thread_local! {
        static SEEN: RefCell<Seen> = RefCell::new(Seen::default());
        static EXTEND_STATUS: RefCell<Status> = const { RefCell::new(Status::SUCCESS) };
    }

    unsafe extern "efiapi" fn get_capability(_: *mut CcMeasurementProtocol, _: *mut u8) -> Status {
        Status::UNSUPPORTED
    }

    unsafe extern "efiapi" fn get_event_log(
        _: *mut CcMeasurementProtocol,
        _: u32,
        _: *mut u64,
        _: *mut u64,
        _: *mut u8,
    ) -> Status {
        Status::UNSUPPORTED
    }

    unsafe extern "efiapi" fn map(_: *mut CcMeasurementProtocol, pcr: u32, mr: *mut u32) -> Status {
        SEEN.with(|s| s.borrow_mut().mapped.push(pcr));
        if pcr != 9 {
            return Status::INVALID_PARAMETER;
        }
        // SAFETY: the caller passes a valid out pointer.
        unsafe { *mr = 3 };
        Status::SUCCESS
    }

    unsafe extern "efiapi" fn extend(
        _: *mut CcMeasurementProtocol,
        flags: u64,
        data: u64,
        len: u64,
        event: *const u8,
    ) -> Status {
        // SAFETY: as a firmware reads them: `len` bytes at `data`, and the request's own size.
        let (data, event) = unsafe {
            let data = std::slice::from_raw_parts(data as *const u8, len as usize);
            let size = u32::from_le_bytes(*(event as *const [u8; 4])) as usize;
            (
                data.to_vec(),
                std::slice::from_raw_parts(event, size).to_vec(),
            )
        };
        SEEN.with(|s| s.borrow_mut().extends.push((flags, data, event)));
        EXTEND_STATUS.with(|s| *s.borrow())
    }

    fn fake() -> CcMeasurementProtocol {
        SEEN.with(|s| *s.borrow_mut() = Seen::default());
        CcMeasurementProtocol {
            get_capability,
            get_event_log,
            hash_log_extend_event: extend,
            map_pcr_to_mr_index: map,
        }
    }

    #[test]
    fn cc_fallback_maps_pcr_9_and_sends_linux_shaped_event() {
        let mut p = fake();
        let ev = Event {
            tag: Tag::Initrd,
            data: b"070701 cpio",
        };
        // SAFETY: `p` lives across the call.
        let mr = unsafe { cc(&mut p, &ev) }.unwrap();
        assert_eq!(mr, 3);
        SEEN.with(|s| {
            let s = s.borrow();
            assert_eq!(s.mapped, [9]);
            let (flags, data, event) = &s.extends[0];
            assert_eq!(*flags, 0);
            assert_eq!(data, b"070701 cpio");
            assert_eq!(event.len(), 18 + 8 + 13);
            assert_eq!(&event[4..8], &14u32.to_le_bytes());
            assert_eq!(&event[8..10], &1u16.to_le_bytes());
            assert_eq!(&event[10..14], &3u32.to_le_bytes(), "MR index, not PCR 9");
            assert_eq!(&event[14..18], &EV_EVENT_TAG.to_le_bytes());
            assert_eq!(&event[18..22], &INITRD_EVENT_ID.to_le_bytes());
            assert_eq!(&event[26..], b"Linux initrd\0");
        });
    }

    #[test]
    fn cc_failure_is_reported() {
        let mut p = fake();
        EXTEND_STATUS.with(|s| *s.borrow_mut() = Status::DEVICE_ERROR);
        let ev = Event {
            tag: Tag::LoadOptions,
            data: &[b'x', 0],
        };
        // SAFETY: `p` lives across the call.
        let r = unsafe { cc(&mut p, &ev) };
        EXTEND_STATUS.with(|s| *s.borrow_mut() = Status::SUCCESS);
        assert_eq!(r, Err(Failure::Extend(Status::DEVICE_ERROR)));
    }
}

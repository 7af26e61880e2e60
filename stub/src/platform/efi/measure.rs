//! Measured boot under EFI (docs/measured-boot.md): the pipeline's events into PCR 9 (what is
//! measured, and when, is the pipeline's rule). Through EFI_TCG2_PROTOCOL; where
//! it is absent, EFI_CC_MEASUREMENT_PROTOCOL (PCR 9 mapped by MapPcrToMrIndex); where neither
//! exists, nothing. A failed measurement is a warning line and the boot goes on, as in Linux
//! (`efi_measure_tagged_event` warns and its callers carry on): PCR 9 then matches no sealed
//! value, so what is sealed to it stays sealed, and the machine still boots to recover.

use super::memory;
use crate::console;
use uefi::boot;
use uefi_raw::protocol::tcg::v2::Tcg2Protocol;
use zboot_format::measure::Event;
use zboot_stub::tpm::{self, CC_MEASUREMENT_PROTOCOL_GUID, CcMeasurementProtocol};

#[repr(transparent)]
#[uefi::proto::unsafe_protocol(Tcg2Protocol::GUID)]
struct RawTcg2(Tcg2Protocol);

#[repr(transparent)]
#[uefi::proto::unsafe_protocol(CC_MEASUREMENT_PROTOCOL_GUID)]
struct RawCc(CcMeasurementProtocol);

/// Largest event log handed on (EDK2 keeps 64 KiB by default; this bounds a bad `last` entry).
const MAX_LOG: u64 = 16 << 20;

/// The firmware's event log, our events included, for the kernel: a copy in a
/// `LINUX_EFI_TPM_EVENT_LOG` configuration table, as Linux's stub installs it
/// (`efi_retrieve_tpm2_eventlog`). Without it the kernel has no `binary_bios_measurements`.
/// Crypto-agile (TPM 2.0) logs only. Last of the measurement steps: after the initrd's.
pub fn hand_over_log() {
    let Ok(h) = boot::get_handle_for_protocol::<RawTcg2>() else {
        return;
    };
    let Ok(mut g) = memory::get_protocol::<RawTcg2>(h) else {
        return;
    };
    let p: *mut Tcg2Protocol = &mut (*g).0;
    // SAFETY: the protocol instance was just opened and stays installed.
    let Some((first, last)) = (unsafe { tpm::tcg2_event_log(p) }) else {
        return;
    };
    match copy_log(first, last) {
        Ok((size, preboot)) => progress!(
            "TPM event log ({} bytes, {} in the final events table) handed to the kernel",
            size,
            preboot
        ),
        Err(what) => console::line(format_args!(
            "warning: TPM event log not handed to the kernel: {}",
            what
        )),
    }
}

/// Copies the log `[first, last + its size)` and the final events table's pre-boot size into a
/// new `LINUX_EFI_TPM_EVENT_LOG` table; returns (log size, pre-boot final events size).
fn copy_log(first: u64, last: u64) -> Result<(usize, usize), &'static str> {
    use zboot_format::tcg_log;
    // SAFETY: the firmware's own first record, which it keeps while boot services run.
    let spec_len = unsafe { tpm::firmware_field(first, 28, 4) }.ok_or("no log header")? as usize;
    let spec_len = spec_len + 32;
    let last = if last == 0 { first } else { last }; // no entry yet: the header alone
    if spec_len > 4096 || last < first || last - first > MAX_LOG {
        return Err("implausible log bounds");
    }
    // SAFETY: `[first, first + spec_len)` is the log's first record (its size field says so).
    let head = unsafe { core::slice::from_raw_parts(first as *const u8, spec_len) };
    let (_, banks) = tcg_log::header(head).ok_or("not a crypto-agile log")?;
    let last_len = if last == first {
        0
    } else {
        // SAFETY: the firmware's last record, read field by field, never past its end.
        tcg_log::event2_len(|at, w| unsafe { tpm::firmware_field(last, at, w) }, &banks)
            .ok_or("last record unreadable")?
    };
    let size = if last == first {
        spec_len
    } else {
        (last - first) as usize + last_len
    };
    let preboot = final_events_preboot(&banks).unwrap_or(0);
    let total = tcg_log::LINUX_TABLE_HEADER + size;
    let table = boot::allocate_pool(boot::MemoryType::LOADER_DATA, total)
        .map_err(|_| "no memory for the table")?;
    // SAFETY: `table` is `total` fresh bytes; `size` bytes at `first` are the firmware's log
    // (bounded above).
    unsafe {
        let out = core::slice::from_raw_parts_mut(table.as_ptr(), total);
        out[..tcg_log::LINUX_TABLE_HEADER]
            .copy_from_slice(&tcg_log::linux_table_header(size as u32, preboot as u32));
        core::ptr::copy_nonoverlapping(
            first as *const u8,
            out[tcg_log::LINUX_TABLE_HEADER..].as_mut_ptr(),
            size,
        );
    }
    static GUID: uefi::Guid = uefi::Guid::from_bytes(zboot_format::tcg_log::LINUX_EVENT_LOG_GUID);
    // SAFETY: the table lives in LOADER_DATA pool memory that is never freed (the kernel reads
    // it after ExitBootServices).
    unsafe { boot::install_configuration_table(&GUID, table.as_ptr().cast()) }
        .map_err(|_| "InstallConfigurationTable failed")?;
    Ok((size, preboot))
}

/// Bytes of the final events table's events logged so far (the kernel appends only the later
/// ones to the log it exports).
fn final_events_preboot(banks: &zboot_format::tcg_log::Banks) -> Option<usize> {
    use zboot_format::tcg_log;
    let guid = uefi::Guid::from_bytes(tcg_log::FINAL_EVENTS_GUID);
    let addr = uefi::system::with_config_table(|t| {
        t.iter().find(|e| e.guid == guid).map(|e| e.address as u64)
    })?;
    // SAFETY: the firmware's final events table (u64 version, u64 count, records).
    let count = unsafe { core::ptr::read_unaligned((addr + 8) as *const u64) };
    let events = addr + tcg_log::FINAL_TABLE_HEADER as u64;
    // SAFETY: as in `copy_log`.
    tcg_log::records_len(
        |at, w| unsafe { tpm::firmware_field(events, at, w) },
        banks,
        count,
    )
}

/// `ev` into PCR 9: through the TPM, else the confidential-computing register, else nothing.
pub fn measure(ev: &Event) {
    let t = console::now();
    let done = if let Ok(h) = boot::get_handle_for_protocol::<RawTcg2>() {
        memory::get_protocol::<RawTcg2>(h)
            .map_err(|e| tpm::Failure::Extend(e.status()))
            .and_then(|mut g| {
                let p: *mut Tcg2Protocol = &mut (*g).0;
                // SAFETY: the protocol instance was just opened and stays installed (boot
                // services are single-threaded; nothing of ours uninstalls it).
                unsafe { tpm::tcg2(p, ev) }.map(|()| "TPM")
            })
    } else if let Ok(h) = boot::get_handle_for_protocol::<RawCc>() {
        memory::get_protocol::<RawCc>(h)
            .map_err(|e| tpm::Failure::Extend(e.status()))
            .and_then(|mut g| {
                let p: *mut CcMeasurementProtocol = &mut (*g).0;
                // SAFETY: as above.
                unsafe { tpm::cc(p, ev) }.map(|_| "CC measurement register")
            })
    } else {
        return;
    };
    match done {
        Ok(via) => progress!(
            "measured {} ({} bytes) into PCR 9 ({}) in {} ms",
            ev.tag.name(),
            ev.data.len(),
            via,
            console::elapsed_ms(t)
        ),
        Err(e) => console::line(format_args!(
            "warning: measuring the {} into PCR 9 failed: {}; booting on (PCR 9 will not match)",
            ev.tag.name(),
            e
        )),
    }
}

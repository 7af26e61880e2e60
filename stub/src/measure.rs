//! Measured boot (docs/measured-boot.md): the command line and the initrd into PCR 9, the way
//! Linux's EFI stub measures them, before anything acts on them. Through EFI_TCG2_PROTOCOL; where
//! it is absent, EFI_CC_MEASUREMENT_PROTOCOL (PCR 9 mapped by MapPcrToMrIndex); where neither
//! exists, nothing. A failed measurement is a warning line and the boot goes on, as in Linux
//! (`efi_measure_tagged_event` warns and its callers carry on): PCR 9 then matches no sealed
//! value, so what is sealed to it stays sealed, and the machine still boots to recover.

use crate::console;
use crate::initrd::{Initrd, Source};
use crate::memory;
use uefi::boot;
use uefi_raw::protocol::tcg::v2::Tcg2Protocol;
use zboot_format::measure::{Event, Tag};
use zboot_stub::tpm::{self, CC_MEASUREMENT_PROTOCOL_GUID, CcMeasurementProtocol};

#[repr(transparent)]
#[uefi::proto::unsafe_protocol(Tcg2Protocol::GUID)]
struct RawTcg2(Tcg2Protocol);

#[repr(transparent)]
#[uefi::proto::unsafe_protocol(CC_MEASUREMENT_PROTOCOL_GUID)]
struct RawCc(CcMeasurementProtocol);

/// The command line's parts, on the PE entry (`load_options`: the raw LoadOptions bytes), or
/// the embedded part only (handover entry: `None`, Linux measures no LoadOptions there).
pub fn command_line(embedded: &[u8], load_options: Option<&[u8]>) {
    if !embedded.is_empty() {
        measure(&Event {
            tag: Tag::EmbeddedCmdline,
            data: embedded,
        });
    }
    if let Some(raw) = load_options.filter(|o| !o.is_empty()) {
        measure(&Event {
            tag: Tag::LoadOptions,
            data: raw,
        });
    }
}

/// The initrd the kernel gets, unless a handover loader placed it (the loader read it and
/// measures what it reads; Linux's stub measures only what it loads itself).
pub fn initrd(initrd: Option<&Initrd>) {
    let Some(i) = initrd.filter(|i| i.source != Source::Loader) else {
        return;
    };
    if let Some(data) = i.bytes().filter(|d| !d.is_empty()) {
        measure(&Event {
            tag: Tag::Initrd,
            data,
        });
    }
}

fn measure(ev: &Event) {
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

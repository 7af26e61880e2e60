//! Measured boot: the TPM events the stub extends into PCR 9, and the order it measures them in.
//! One definition for the stub (which hands the request bytes to the firmware), the packer
//! (`zboot-pack pcr` predicts the PCR from the same events) and the tests (which find the events
//! in the firmware's event log).
//!
//! Linux's EFI stub (drivers/firmware/efi/libstub/efi-stub-helper.c, `efi_measure_tagged_event`)
//! measures through `EFI_TCG2_PROTOCOL.HashLogExtendEvent(flags 0, data, len, event)`: the
//! firmware hashes `data` with every active PCR bank, extends PCR 9 and logs `event`. The
//! request is an `EFI_TCG2_EVENT`, little-endian and packed:
//!
//! ```text
//! u32 size            whole request: 4 + 14 + 8 + description length
//! u32 header_size     14 (EFI_TCG2_EVENT_HEADER)
//! u16 header_version  1
//! u32 pcr_index       9 (the CC protocol's EFI_CC_EVENT: the MR index MapPcrToMrIndex(9) gave)
//! u32 event_type      6 (EV_EVENT_TAG)
//! TCG_PCClientTaggedEvent (TCG PC Client Platform Firmware Profile):
//!   u32 tagged_event_id
//!   u32 tagged_event_data_size   description length, NUL included
//!   u8  tagged_event_data[]      the description, NUL-terminated
//! ```
//!
//! The event log records the `TCG_PCClientTaggedEvent` part as the event data. The digest is over
//! the measured data only (never over the event), so PCR 9 depends on the data and the order.
//!
//! What is measured, in this order (see [`events`]):
//! 1. [`Tag::EmbeddedCmdline`] — zboot-pack's own event, only for an image with a `.cmdline`:
//!    the digest is over the embedded line's bytes and the description *is* that line, so a
//!    verifier reads it from the log. (The firmware already measured it into PCR 4 as part of
//!    the image; this makes it readable without the image.)
//! 2. [`Tag::LoadOptions`] — Linux's, on the PE entry when `LoadOptionsSize > 0`: the raw
//!    UTF-16 LoadOptions bytes, exactly `LoadOptionsSize` of them, whether or not the stub
//!    appends them (Linux measures them even when `CONFIG_CMDLINE_FORCE` ignores them).
//! 3. [`Tag::Initrd`] — Linux's, for a non-empty initrd the stub hands over (LoadFile2,
//!    `initrd=` files, the embedded one); not for one a handover loader already placed.

use crate::cmdline;

/// The PCR Linux's stub measures into.
pub const PCR: u32 = 9;
/// `EV_EVENT_TAG` (TCG PC Client PFP: a tagged event whose data is a `TCG_PCClientTaggedEvent`).
pub const EV_EVENT_TAG: u32 = 6;
/// `EFI_TCG2_EVENT_HEADER` / `EFI_CC_EVENT_HEADER` size.
pub const EVENT_HEADER_SIZE: u32 = 14;
/// `EFI_TCG2_EVENT_HEADER_VERSION` / `EFI_CC_EVENT_HEADER_VERSION`.
pub const EVENT_HEADER_VERSION: u16 = 1;
/// Bytes of an `EFI_TCG2_EVENT` before its event data (the `size` field and the header).
pub const REQUEST_PREFIX: usize = 4 + EVENT_HEADER_SIZE as usize;
/// Bytes of a `TCG_PCClientTaggedEvent` before its data.
pub const TAGGED_PREFIX: usize = 8;

/// Linux's `INITRD_EVENT_TAG_ID`.
pub const INITRD_EVENT_ID: u32 = 0x8F3B_22EC;
/// Linux's `LOAD_OPTIONS_EVENT_TAG_ID`.
pub const LOAD_OPTIONS_EVENT_ID: u32 = 0x8F3B_22ED;
/// zboot-pack's tag for the embedded command line ("zbc" and a version byte).
pub const EMBEDDED_CMDLINE_EVENT_ID: u32 = 0x7A62_6301;

/// Linux's description of the initrd event, NUL included.
pub const INITRD_DESCRIPTION: &[u8] = b"Linux initrd\0";
/// Linux's description of the LoadOptions event, NUL included.
pub const LOAD_OPTIONS_DESCRIPTION: &[u8] = b"LOADED_IMAGE::LoadOptions\0";

/// Longest description (the embedded command line and its NUL).
pub const MAX_DESCRIPTION: usize = cmdline::MAX_LEN + 1;
/// Longest request [`Event::write_request`] builds.
pub const MAX_REQUEST: usize = REQUEST_PREFIX + TAGGED_PREFIX + MAX_DESCRIPTION;

/// Which event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    EmbeddedCmdline,
    LoadOptions,
    Initrd,
}

impl Tag {
    pub const fn id(self) -> u32 {
        match self {
            Tag::EmbeddedCmdline => EMBEDDED_CMDLINE_EVENT_ID,
            Tag::LoadOptions => LOAD_OPTIONS_EVENT_ID,
            Tag::Initrd => INITRD_EVENT_ID,
        }
    }

    /// A short name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Tag::EmbeddedCmdline => "embedded command line",
            Tag::LoadOptions => "LoadOptions",
            Tag::Initrd => "initrd",
        }
    }
}

/// One measurement: `data` is what gets hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub tag: Tag,
    pub data: &'a [u8],
}

/// Why an event cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeasureError {
    /// The embedded command line is longer than [`cmdline::MAX_LEN`].
    TooLong(usize),
    /// The output buffer is smaller than the event.
    BufferTooSmall { need: usize },
}

impl core::fmt::Display for MeasureError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            MeasureError::TooLong(n) => write!(
                f,
                "embedded command line of {n} bytes, longer than {}",
                cmdline::MAX_LEN
            ),
            MeasureError::BufferTooSmall { need } => {
                write!(f, "event buffer too small ({need} bytes needed)")
            }
        }
    }
}

impl core::error::Error for MeasureError {}

impl Event<'_> {
    /// The description without its NUL (for the embedded line: the line itself).
    fn description_text(&self) -> Result<&[u8], MeasureError> {
        match self.tag {
            Tag::Initrd => Ok(&INITRD_DESCRIPTION[..INITRD_DESCRIPTION.len() - 1]),
            Tag::LoadOptions => Ok(&LOAD_OPTIONS_DESCRIPTION[..LOAD_OPTIONS_DESCRIPTION.len() - 1]),
            Tag::EmbeddedCmdline if self.data.len() > cmdline::MAX_LEN => {
                Err(MeasureError::TooLong(self.data.len()))
            }
            Tag::EmbeddedCmdline => Ok(self.data),
        }
    }

    /// Length of the `TCG_PCClientTaggedEvent` (what the log records as the event data).
    pub fn tagged_len(&self) -> Result<usize, MeasureError> {
        Ok(TAGGED_PREFIX + self.description_text()?.len() + 1)
    }

    /// Writes the `TCG_PCClientTaggedEvent` into `out`; returns its length.
    pub fn write_tagged(&self, out: &mut [u8]) -> Result<usize, MeasureError> {
        let text = self.description_text()?;
        let len = TAGGED_PREFIX + text.len() + 1;
        let out = out
            .get_mut(..len)
            .ok_or(MeasureError::BufferTooSmall { need: len })?;
        out[0..4].copy_from_slice(&self.tag.id().to_le_bytes());
        out[4..8].copy_from_slice(&((text.len() + 1) as u32).to_le_bytes());
        out[8..8 + text.len()].copy_from_slice(text);
        out[len - 1] = 0;
        Ok(len)
    }

    /// Writes the `EFI_TCG2_EVENT` (`index` = [`PCR`]) or `EFI_CC_EVENT` (`index` = the MR
    /// index) that asks the firmware to measure this event; returns its length.
    pub fn write_request(&self, index: u32, out: &mut [u8]) -> Result<usize, MeasureError> {
        let need = REQUEST_PREFIX + self.tagged_len()?;
        if out.len() < need {
            return Err(MeasureError::BufferTooSmall { need });
        }
        let tagged = self.write_tagged(&mut out[REQUEST_PREFIX..])?;
        let len = REQUEST_PREFIX + tagged;
        out[0..4].copy_from_slice(&(len as u32).to_le_bytes());
        out[4..8].copy_from_slice(&EVENT_HEADER_SIZE.to_le_bytes());
        out[8..10].copy_from_slice(&EVENT_HEADER_VERSION.to_le_bytes());
        out[10..14].copy_from_slice(&index.to_le_bytes());
        out[14..18].copy_from_slice(&EV_EVENT_TAG.to_le_bytes());
        Ok(len)
    }
}

/// What the stub has in hand when it measures (entered as a PE image).
#[derive(Clone, Copy, Debug, Default)]
pub struct Inputs<'a> {
    /// The image's `.cmdline` bytes (empty when none).
    pub embedded_cmdline: &'a [u8],
    /// The raw LoadOptions, `LoadOptionsSize` bytes (empty when none).
    pub load_options: &'a [u8],
    /// The initrd handed to the kernel, whatever its source (`None` when none).
    pub initrd: Option<&'a [u8]>,
}

/// The events the stub measures for `inputs`, in order (see the module documentation).
pub fn events<'a>(inputs: &Inputs<'a>) -> impl Iterator<Item = Event<'a>> + use<'a> {
    let embedded = (!inputs.embedded_cmdline.is_empty()).then_some(Event {
        tag: Tag::EmbeddedCmdline,
        data: inputs.embedded_cmdline,
    });
    let options = (!inputs.load_options.is_empty()).then_some(Event {
        tag: Tag::LoadOptions,
        data: inputs.load_options,
    });
    let initrd = inputs.initrd.filter(|d| !d.is_empty()).map(|data| Event {
        tag: Tag::Initrd,
        data,
    });
    [embedded, options, initrd].into_iter().flatten()
}

/// The event of a tagged-event log entry's data: its tag and description (`None` when the data
/// is no `TCG_PCClientTaggedEvent` of ours or Linux's).
pub fn parse_tagged(data: &[u8]) -> Option<(Tag, &[u8])> {
    let id = u32::from_le_bytes(data.get(0..4)?.try_into().ok()?);
    let size = u32::from_le_bytes(data.get(4..8)?.try_into().ok()?) as usize;
    let text = data.get(TAGGED_PREFIX..TAGGED_PREFIX.checked_add(size)?)?;
    if data.len() != TAGGED_PREFIX + size {
        return None;
    }
    let tag = [Tag::EmbeddedCmdline, Tag::LoadOptions, Tag::Initrd]
        .into_iter()
        .find(|t| t.id() == id)?;
    Some((tag, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ev: &Event, index: u32) -> ([u8; MAX_REQUEST], usize) {
        let mut buf = [0xAAu8; MAX_REQUEST];
        let n = ev.write_request(index, &mut buf).unwrap();
        (buf, n)
    }

    /// The initrd event, byte by byte against Linux's `struct efistub_measured_event` for
    /// `events[EFISTUB_EVT_INITRD]` (event_size = sizeof(efi_tcg2_event_t) 18 +
    /// sizeof(TCG_PCClientTaggedEvent) 8 + sizeof("Linux initrd") 13 = 39).
    #[test]
    fn initrd_request_matches_linux() {
        let ev = Event {
            tag: Tag::Initrd,
            data: b"cpio",
        };
        let (buf, n) = request(&ev, PCR);
        let want: [&[u8]; 8] = [
            &39u32.to_le_bytes(),
            &14u32.to_le_bytes(),
            &1u16.to_le_bytes(),
            &9u32.to_le_bytes(),
            &6u32.to_le_bytes(),
            &0x8F3B_22ECu32.to_le_bytes(),
            &13u32.to_le_bytes(),
            b"Linux initrd\0",
        ];
        let mut at = 0;
        for part in want {
            assert_eq!(&buf[at..at + part.len()], part, "at byte {at}");
            at += part.len();
        }
        assert_eq!(n, at);
        assert_eq!(buf[n], 0xAA, "nothing written past the event");
    }

    /// LoadOptions: event_size 18 + 8 + sizeof("LOADED_IMAGE::LoadOptions") 26 = 52.
    #[test]
    fn load_options_request_matches_linux() {
        let ev = Event {
            tag: Tag::LoadOptions,
            data: &[b'a', 0, 0, 0],
        };
        let (buf, n) = request(&ev, PCR);
        assert_eq!(n, 52);
        assert_eq!(&buf[0..4], &52u32.to_le_bytes());
        assert_eq!(&buf[18..22], &0x8F3B_22EDu32.to_le_bytes());
        assert_eq!(&buf[22..26], &26u32.to_le_bytes());
        assert_eq!(&buf[26..52], b"LOADED_IMAGE::LoadOptions\0");
    }

    /// The CC protocol's EFI_CC_EVENT has the same layout with the MR index in place of the PCR.
    #[test]
    fn cc_request_carries_the_mr_index() {
        let ev = Event {
            tag: Tag::Initrd,
            data: b"x",
        };
        let (tcg, n) = request(&ev, PCR);
        let (cc, m) = request(&ev, 3);
        assert_eq!(n, m);
        assert_eq!(&cc[10..14], &3u32.to_le_bytes());
        assert_eq!(&cc[..10], &tcg[..10]);
        assert_eq!(&cc[14..n], &tcg[14..n]);
    }

    #[test]
    fn embedded_cmdline_event_carries_the_line() {
        let ev = Event {
            tag: Tag::EmbeddedCmdline,
            data: b"console=ttyS0 quiet",
        };
        let mut t = [0u8; 64];
        let n = ev.write_tagged(&mut t).unwrap();
        assert_eq!(n, 8 + 19 + 1);
        assert_eq!(&t[0..4], &EMBEDDED_CMDLINE_EVENT_ID.to_le_bytes());
        assert_eq!(&t[4..8], &20u32.to_le_bytes());
        assert_eq!(&t[8..n], b"console=ttyS0 quiet\0");
        assert_eq!(
            parse_tagged(&t[..n]),
            Some((Tag::EmbeddedCmdline, &b"console=ttyS0 quiet\0"[..]))
        );
    }

    #[test]
    fn longest_embedded_line_fits_and_longer_is_refused() {
        let line = [b'a'; cmdline::MAX_LEN + 1];
        let mut buf = [0u8; MAX_REQUEST];
        let ok = Event {
            tag: Tag::EmbeddedCmdline,
            data: &line[..cmdline::MAX_LEN],
        };
        assert_eq!(ok.write_request(PCR, &mut buf), Ok(MAX_REQUEST));
        let long = Event {
            tag: Tag::EmbeddedCmdline,
            data: &line,
        };
        assert_eq!(
            long.write_request(PCR, &mut buf),
            Err(MeasureError::TooLong(cmdline::MAX_LEN + 1))
        );
        let mut small = [0u8; 20];
        assert_eq!(
            ok.write_request(PCR, &mut small),
            Err(MeasureError::BufferTooSmall { need: MAX_REQUEST })
        );
    }

    #[test]
    fn events_in_order_and_only_when_present() {
        let all = Inputs {
            embedded_cmdline: b"quiet",
            load_options: &[b'x', 0, 0, 0],
            initrd: Some(b"070701"),
        };
        let mut tags = events(&all).map(|e| e.tag);
        assert_eq!(tags.next(), Some(Tag::EmbeddedCmdline));
        assert_eq!(tags.next(), Some(Tag::LoadOptions));
        assert_eq!(tags.next(), Some(Tag::Initrd));
        assert_eq!(tags.next(), None);
        let none = Inputs {
            initrd: Some(b""),
            ..Inputs::default()
        };
        assert_eq!(events(&none).count(), 0);
    }

    #[test]
    fn parse_tagged_rejects_foreign_and_short_data() {
        assert_eq!(parse_tagged(b""), None);
        let mut t = [0u8; 32];
        let n = Event {
            tag: Tag::Initrd,
            data: b"",
        }
        .write_tagged(&mut t)
        .unwrap();
        assert_eq!(
            parse_tagged(&t[..n]),
            Some((Tag::Initrd, INITRD_DESCRIPTION))
        );
        assert_eq!(parse_tagged(&t[..n - 1]), None);
        t[3] ^= 0x10; // (bit 0 would turn Linux's initrd id into its LoadOptions id)
        assert_eq!(parse_tagged(&t[..n]), None);
    }
}

//! The TPM 2.0 event log in the crypto-agile format (TCG PC Client Platform Firmware Profile):
//! what the stub must walk to hand the firmware's log to Linux (the `LINUX_EFI_TPM_EVENT_LOG`
//! table Linux's stub installs, `efi_retrieve_tpm2_eventlog`), and what the tests replay.
//!
//! A log starts with a `TCG_PCR_EVENT` (SHA-1 layout: u32 pcr, u32 type, 20-byte digest, u32
//! size, data) whose data is the `Spec ID Event03` naming the banks and their digest sizes; then
//! `TCG_PCR_EVENT2` records: u32 pcr, u32 type, u32 digest count, per digest u16 algorithm and
//! the digest, u32 data size, data. Little-endian. No allocation: every length is checked against
//! the bytes at hand.

/// `LINUX_EFI_TPM_EVENT_LOG_GUID` b7799cb0-eca2-4943-9667-1fae07b747fa, as bytes in memory.
pub const LINUX_EVENT_LOG_GUID: [u8; 16] = [
    0xb0, 0x9c, 0x79, 0xb7, 0xa2, 0xec, 0x43, 0x49, 0x96, 0x67, 0x1f, 0xae, 0x07, 0xb7, 0x47, 0xfa,
];
/// `EFI_TCG2_FINAL_EVENTS_TABLE_GUID` 1e2ed096-30e2-4254-bd89-863bbef82325, as bytes in memory.
pub const FINAL_EVENTS_GUID: [u8; 16] = [
    0x96, 0xd0, 0x2e, 0x1e, 0xe2, 0x30, 0x54, 0x42, 0xbd, 0x89, 0x86, 0x3b, 0xbe, 0xf8, 0x23, 0x25,
];
/// `EFI_TCG2_EVENT_LOG_FORMAT_TCG_2`.
pub const FORMAT_TCG_2: u8 = 2;
/// Header of Linux's `struct linux_efi_tpm_eventlog` (u32 size, u32 final_events_preboot_size,
/// u8 version) in front of the copied log.
pub const LINUX_TABLE_HEADER: usize = 9;
/// Header of `EFI_TCG2_FINAL_EVENTS_TABLE` (u64 version, u64 number of events).
pub const FINAL_TABLE_HEADER: usize = 16;
/// `EV_NO_ACTION`: logged, never extended.
pub const EV_NO_ACTION: u32 = 3;
/// Most banks a log may name (TPMs have 1-5).
pub const MAX_BANKS: usize = 8;

/// The banks of a log: (TPM algorithm id, digest size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Banks {
    list: [(u16, u16); MAX_BANKS],
    n: usize,
}

impl Banks {
    pub fn iter(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        self.list[..self.n].iter().copied()
    }

    fn size_of(&self, alg: u16) -> Option<usize> {
        self.iter().find(|b| b.0 == alg).map(|b| b.1 as usize)
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The first event of `log`: its length and the banks its Spec ID event names (`None` for a log
/// that is not crypto-agile).
pub fn header(log: &[u8]) -> Option<(usize, Banks)> {
    let size = u32_at(log, 28)? as usize;
    let spec = log.get(32..32usize.checked_add(size)?)?;
    if u32_at(log, 4)? != EV_NO_ACTION || !spec.starts_with(b"Spec ID Event03\0") {
        return None;
    }
    let n = u32_at(spec, 24)? as usize;
    if n > MAX_BANKS {
        return None;
    }
    let mut banks = Banks {
        list: [(0, 0); MAX_BANKS],
        n,
    };
    for i in 0..n {
        banks.list[i] = (u16_at(spec, 28 + 4 * i)?, u16_at(spec, 30 + 4 * i)?);
    }
    Some((32 + size, banks))
}

/// One `TCG_PCR_EVENT2`.
#[derive(Clone, Copy, Debug)]
pub struct Event2<'a> {
    pub pcr: u32,
    pub typ: u32,
    digests: &'a [u8],
    count: u32,
    pub data: &'a [u8],
    /// Bytes the record takes in the log.
    pub len: usize,
}

impl<'a> Event2<'a> {
    /// The record at the start of `b`.
    pub fn parse(b: &'a [u8], banks: &Banks) -> Option<Event2<'a>> {
        let len = event2_len(|at, w| field(b, at, w), banks)?;
        let b = b.get(..len)?;
        let count = u32_at(b, 8)?;
        // The digests end where the data size field starts.
        let mut at = 12usize;
        for _ in 0..count {
            at += 2 + banks.size_of(u16_at(b, at)?)?;
        }
        Some(Event2 {
            pcr: u32_at(b, 0)?,
            typ: u32_at(b, 4)?,
            digests: b.get(12..at)?,
            count,
            data: b.get(at + 4..len)?,
            len,
        })
    }

    /// This event's digest in bank `alg`.
    pub fn digest(&self, alg: u16, banks: &Banks) -> Option<&'a [u8]> {
        let mut at = 0;
        for _ in 0..self.count {
            let a = u16_at(self.digests, at)?;
            let n = banks.size_of(a)?;
            if a == alg {
                return self.digests.get(at + 2..at + 2 + n);
            }
            at += 2 + n;
        }
        None
    }
}

/// A little-endian field of width 2 or 4 at `at` in `b`.
fn field(b: &[u8], at: usize, width: usize) -> Option<u32> {
    match width {
        2 => u16_at(b, at).map(u32::from),
        _ => u32_at(b, at),
    }
}

/// Largest event data a record may carry (sanity bound for memory read field by field).
pub const MAX_EVENT_DATA: usize = 1 << 20;

/// Length of a `TCG_PCR_EVENT2` whose fields `read(offset, width)` returns (width 2 or 4), so
/// that memory of unknown extent is read field by field and never beyond the record.
pub fn event2_len(read: impl Fn(usize, usize) -> Option<u32>, banks: &Banks) -> Option<usize> {
    let count = read(8, 4)? as usize;
    if count > MAX_BANKS {
        return None;
    }
    let mut at = 12usize;
    for _ in 0..count {
        at += 2 + banks.size_of(read(at, 2)? as u16)?;
    }
    let size = read(at, 4)? as usize;
    if size > MAX_EVENT_DATA {
        return None;
    }
    Some(at + 4 + size)
}

/// The `TCG_PCR_EVENT2` records of `bytes` (after the header), in order; stops at the first
/// that does not parse.
pub fn events<'a>(bytes: &'a [u8], banks: &'a Banks) -> impl Iterator<Item = Event2<'a>> + 'a {
    let mut rest = bytes;
    core::iter::from_fn(move || {
        let e = Event2::parse(rest, banks)?;
        rest = &rest[e.len..];
        Some(e)
    })
}

/// Bytes taken by the first `n` records of memory that `read(offset, width)` returns (`None`
/// when one does not parse): the final events table's events logged before the stub looked.
pub fn records_len(
    read: impl Fn(usize, usize) -> Option<u32>,
    banks: &Banks,
    n: u64,
) -> Option<usize> {
    let mut total = 0usize;
    for _ in 0..n {
        total += event2_len(|at, w| read(total.checked_add(at)?, w), banks)?;
    }
    Some(total)
}

/// [`records_len`] over a slice.
pub fn records_len_in(bytes: &[u8], banks: &Banks, n: u64) -> Option<usize> {
    records_len(|at, w| field(bytes, at, w), banks, n)
}

/// Linux's `linux_efi_tpm_eventlog` header for a copied log of `size` bytes.
pub fn linux_table_header(size: u32, final_preboot: u32) -> [u8; LINUX_TABLE_HEADER] {
    let mut h = [0u8; LINUX_TABLE_HEADER];
    h[0..4].copy_from_slice(&size.to_le_bytes());
    h[4..8].copy_from_slice(&final_preboot.to_le_bytes());
    h[8] = FORMAT_TCG_2;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256: u16 = 0x000b;
    const SHA1: u16 = 0x0004;

    /// A log with banks sha1+sha256 and two events, written field by field.
    fn log(buf: &mut [u8]) -> usize {
        let mut at = 0;
        let mut put = |b: &[u8]| {
            buf[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        };
        put(&0u32.to_le_bytes());
        put(&EV_NO_ACTION.to_le_bytes());
        put(&[0; 20]);
        put(&(24u32 + 4 + 8 + 1).to_le_bytes());
        put(b"Spec ID Event03\0");
        put(&[0; 8]);
        put(&2u32.to_le_bytes());
        put(&SHA1.to_le_bytes());
        put(&20u16.to_le_bytes());
        put(&SHA256.to_le_bytes());
        put(&32u16.to_le_bytes());
        put(&[0]);
        for (pcr, fill, data) in [(9u32, 0x11u8, &b"ab"[..]), (4, 0x22, b"")] {
            put(&pcr.to_le_bytes());
            put(&6u32.to_le_bytes());
            put(&2u32.to_le_bytes());
            put(&SHA1.to_le_bytes());
            put(&[fill; 20]);
            put(&SHA256.to_le_bytes());
            put(&[fill + 1; 32]);
            put(&(data.len() as u32).to_le_bytes());
            put(data);
        }
        at
    }

    #[test]
    fn walks_header_and_records() {
        let mut buf = [0u8; 512];
        let n = log(&mut buf);
        let (first, banks) = header(&buf[..n]).unwrap();
        assert_eq!(banks.iter().count(), 2);
        let mut ev = events(&buf[first..n], &banks);
        let a = ev.next().unwrap();
        assert_eq!((a.pcr, a.typ, a.data), (9, 6, &b"ab"[..]));
        assert_eq!(a.digest(SHA256, &banks), Some(&[0x12u8; 32][..]));
        assert_eq!(a.digest(SHA1, &banks), Some(&[0x11u8; 20][..]));
        assert_eq!(a.len, 12 + 22 + 34 + 4 + 2);
        let b = ev.next().unwrap();
        assert_eq!(b.pcr, 4);
        assert!(ev.next().is_none());
        assert_eq!(records_len_in(&buf[first..n], &banks, 2), Some(n - first));
        assert_eq!(records_len_in(&buf[first..n - 1], &banks, 2), None);
    }

    #[test]
    fn refuses_what_is_not_a_crypto_agile_log() {
        let mut buf = [0u8; 512];
        let n = log(&mut buf);
        assert!(header(&buf[..40]).is_none());
        buf[32] = b'X';
        assert!(header(&buf[..n]).is_none());
    }

    #[test]
    fn linux_table_header_layout() {
        assert_eq!(
            linux_table_header(0x1234, 7),
            [0x34, 0x12, 0, 0, 7, 0, 0, 0, 2]
        );
    }
}

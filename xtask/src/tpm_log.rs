//! The firmware's TPM 2.0 event log (TCG PC Client PFP, crypto-agile format) as Linux exports it
//! in `binary_bios_measurements`: parsed, and replayed into PCR values to check against the TPM.
//!
//! Layout: a first `TCG_PCR_EVENT` (SHA-1 format) whose data is the `Spec ID Event03` naming the
//! banks and digest sizes, then `TCG_PCR_EVENT2` records: u32 pcr, u32 type, u32 digest count,
//! per digest u16 algorithm + digest, u32 data size, data. All little-endian.

use anyhow::{Context, Result, bail, ensure};
use sha2::Digest;

/// `EV_NO_ACTION`: logged, never extended.
const EV_NO_ACTION: u32 = 3;
pub const TPM_ALG_SHA1: u16 = 0x0004;
pub const TPM_ALG_SHA256: u16 = 0x000b;
pub const TPM_ALG_SHA384: u16 = 0x000c;
pub const TPM_ALG_SHA512: u16 = 0x000d;

#[derive(Debug, Clone)]
pub struct LogEvent {
    pub pcr: u32,
    pub typ: u32,
    pub digests: Vec<(u16, Vec<u8>)>,
    pub data: Vec<u8>,
}

impl LogEvent {
    pub fn digest(&self, alg: u16) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, d)| &d[..])
    }
}

#[derive(Debug, Clone)]
pub struct EventLog {
    /// (algorithm, digest size) of the active banks, from the Spec ID event.
    pub banks: Vec<(u16, u16)>,
    pub events: Vec<LogEvent>,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .context("event log: length overflow")?;
        let s = self
            .b
            .get(self.at..end)
            .with_context(|| format!("event log truncated at byte {}", self.at))?;
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
}

pub fn parse(bytes: &[u8]) -> Result<EventLog> {
    let mut r = Reader { b: bytes, at: 0 };
    // TCG_PCR_EVENT: pcr, type, sha1 digest, size, Spec ID event.
    let (_pcr, typ) = (r.u32()?, r.u32()?);
    r.take(20)?;
    let size = r.u32()? as usize;
    let spec = r.take(size)?;
    ensure!(
        typ == EV_NO_ACTION && spec.starts_with(b"Spec ID Event03\0"),
        "event log: no crypto-agile Spec ID event first"
    );
    let mut s = Reader { b: spec, at: 24 };
    let n = s.u32()?;
    let mut banks = Vec::new();
    for _ in 0..n {
        banks.push((s.u16()?, s.u16()?));
    }
    let mut events = Vec::new();
    while r.at < bytes.len() {
        let (pcr, typ) = (r.u32()?, r.u32()?);
        let count = r.u32()?;
        let mut digests = Vec::new();
        for _ in 0..count {
            let alg = r.u16()?;
            let Some(&(_, len)) = banks.iter().find(|(a, _)| *a == alg) else {
                bail!("event log: digest of unknown algorithm {alg:#06x}");
            };
            digests.push((alg, r.take(len as usize)?.to_vec()));
        }
        let size = r.u32()? as usize;
        let data = r.take(size)?.to_vec();
        events.push(LogEvent {
            pcr,
            typ,
            digests,
            data,
        });
    }
    Ok(EventLog { banks, events })
}

/// H(parts...) with the bank's algorithm.
pub fn hash(alg: u16, parts: &[&[u8]]) -> Result<Vec<u8>> {
    fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut h = D::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().to_vec()
    }
    Ok(match alg {
        TPM_ALG_SHA1 => run::<sha1::Sha1>(parts),
        TPM_ALG_SHA256 => run::<sha2::Sha256>(parts),
        TPM_ALG_SHA384 => run::<sha2::Sha384>(parts),
        TPM_ALG_SHA512 => run::<sha2::Sha512>(parts),
        _ => bail!("no hash for TPM algorithm {alg:#06x}"),
    })
}

impl EventLog {
    /// The events extended into `pcr`, in log order.
    pub fn extended(&self, pcr: u32) -> impl Iterator<Item = &LogEvent> {
        self.events
            .iter()
            .filter(move |e| e.pcr == pcr && e.typ != EV_NO_ACTION)
    }

    /// PCR `pcr` in bank `alg` recomputed from the log (from zero).
    pub fn replay(&self, pcr: u32, alg: u16) -> Result<Vec<u8>> {
        let mut v = vec![0u8; hash(alg, &[])?.len()];
        for e in self.extended(pcr) {
            let d = e
                .digest(alg)
                .with_context(|| format!("a PCR {pcr} event without a {alg:#06x} digest"))?;
            v = hash(alg, &[&v, d])?;
        }
        Ok(v)
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Result<Vec<u8>> {
    let s = s.trim();
    ensure!(s.len().is_multiple_of(2), "odd-length hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).with_context(|| format!("bad hex {s:?}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_event(banks: &[(u16, u16)]) -> Vec<u8> {
        let mut spec = b"Spec ID Event03\0".to_vec();
        spec.extend([0u8; 8]); // platform class, versions, uintn size
        spec.extend((banks.len() as u32).to_le_bytes());
        for (a, s) in banks {
            spec.extend(a.to_le_bytes());
            spec.extend(s.to_le_bytes());
        }
        spec.push(0);
        let mut out = Vec::new();
        out.extend(0u32.to_le_bytes());
        out.extend(EV_NO_ACTION.to_le_bytes());
        out.extend([0u8; 20]);
        out.extend((spec.len() as u32).to_le_bytes());
        out.extend(spec);
        out
    }

    fn event2(pcr: u32, typ: u32, digest: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(pcr.to_le_bytes());
        out.extend(typ.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        out.extend(TPM_ALG_SHA256.to_le_bytes());
        out.extend(digest);
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn parses_and_replays() {
        let d1 = hash(TPM_ALG_SHA256, &[b"one"]).unwrap();
        let d2 = hash(TPM_ALG_SHA256, &[b"two"]).unwrap();
        let mut log = spec_event(&[(TPM_ALG_SHA256, 32)]);
        log.extend(event2(9, 6, &d1, b"ev1"));
        log.extend(event2(4, 13, &d2, b"other pcr"));
        log.extend(event2(9, EV_NO_ACTION, &d2, b"not extended"));
        log.extend(event2(9, 6, &d2, b"ev2"));
        let l = parse(&log).unwrap();
        assert_eq!(l.events.len(), 4);
        let want = hash(
            TPM_ALG_SHA256,
            &[&hash(TPM_ALG_SHA256, &[&[0u8; 32], &d1]).unwrap(), &d2],
        )
        .unwrap();
        assert_eq!(l.replay(9, TPM_ALG_SHA256).unwrap(), want);
        assert!(parse(&log[..log.len() - 1]).is_err());
    }
}

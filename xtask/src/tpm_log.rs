//! The firmware's TPM 2.0 event log (TCG PC Client PFP, crypto-agile format) as Linux exports it
//! in `binary_bios_measurements`: parsed, and replayed into PCR values to check against the TPM.
//!
//! The layout is `zboot_format::tcg_log`'s (the stub walks the same one to hand the log to
//! Linux); this side adds owned events, hashing and the replay.

use anyhow::{Context, Result, bail, ensure};
use sha2::Digest;

use zboot_format::tcg_log::EV_NO_ACTION;
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

/// Parses a whole log with the layout of `zboot_format::tcg_log` (the one the stub walks).
pub fn parse(bytes: &[u8]) -> Result<EventLog> {
    use zboot_format::tcg_log;
    let (first, banks) =
        tcg_log::header(bytes).context("event log: no crypto-agile Spec ID event first")?;
    let mut events = Vec::new();
    let mut at = first;
    for e in tcg_log::events(&bytes[first..], &banks) {
        let digests = banks
            .iter()
            .filter_map(|(alg, _)| Some((alg, e.digest(alg, &banks)?.to_vec())))
            .collect();
        events.push(LogEvent {
            pcr: e.pcr,
            typ: e.typ,
            digests,
            data: e.data.to_vec(),
        });
        at += e.len;
    }
    if at != bytes.len() {
        bail!(
            "event log: record at byte {at} of {} does not parse",
            bytes.len()
        );
    }
    Ok(EventLog {
        banks: banks.iter().collect(),
        events,
    })
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

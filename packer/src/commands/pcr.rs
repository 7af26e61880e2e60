//! `pcr IMAGE [--initrd FILE] [--options STR | --options-file FILE] [--json]`: the PCR 9 value
//! the stub of IMAGE produces, and its events, from the same event builder the stub uses
//! (`zboot_format::measure`). PCR 9 is assumed to start at zero with nothing but the stub
//! extending it (firmware and the usual loaders leave it alone); docs/measured-boot.md.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use zboot_format::measure::{self, Event, Inputs, PCR, Tag};

use super::Outcome;
use crate::pe::read::PeFile;
use crate::{input, payload};

/// What `pcr` predicts for.
#[derive(Debug)]
pub struct Options {
    pub image: PathBuf,
    /// The initrd a loader hands over (LoadFile2 or `initrd=`); default: the embedded one.
    pub initrd: Option<PathBuf>,
    /// LoadOptions as a loader writes them from text (UTF-16LE with a terminating NUL).
    pub options: Option<String>,
    /// LoadOptions as raw bytes (a firmware boot entry's optional data).
    pub options_file: Option<PathBuf>,
    pub json: bool,
}

/// The PCR banks predicted, with their TCG algorithm names.
const BANKS: [&str; 4] = ["sha1", "sha256", "sha384", "sha512"];

fn digest(bank: &str, parts: &[&[u8]]) -> Vec<u8> {
    fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut h = D::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().to_vec()
    }
    match bank {
        "sha1" => run::<Sha1>(parts),
        "sha256" => run::<Sha256>(parts),
        "sha384" => run::<Sha384>(parts),
        _ => run::<Sha512>(parts),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// LoadOptions from text, as loaders (systemd-boot, the UEFI shell's boot options) pass them:
/// UTF-16LE and a terminating NUL, all of it counted in LoadOptionsSize.
pub fn utf16_load_options(text: &str) -> Vec<u8> {
    text.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// The PCR value after extending `events` from zero in `bank`.
pub fn replay(bank: &str, events: &[Event]) -> Vec<u8> {
    let mut pcr = vec![0u8; digest(bank, &[]).len()];
    for e in events {
        pcr = digest(bank, &[&pcr, &digest(bank, &[e.data])]);
    }
    pcr
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{what} {}", path.display()))
}

fn event_json(e: &Event, source: &str) -> Result<Value> {
    let mut tagged = vec![0u8; e.tagged_len()?];
    e.write_tagged(&mut tagged)?;
    let (_, text) = measure::parse_tagged(&tagged).context("event builder")?;
    let digests: serde_json::Map<String, Value> = BANKS
        .iter()
        .map(|b| (b.to_string(), json!(hex(&digest(b, &[e.data])))))
        .collect();
    Ok(json!({
        "pcr": PCR,
        "event_type": measure::EV_EVENT_TAG,
        "tag": format!("{:#010x}", e.tag.id()),
        "description": String::from_utf8_lossy(&text[..text.len() - 1]),
        "what": e.tag.name(),
        "source": source,
        "size": e.data.len(),
        "event_data_hex": hex(&tagged),
        "digests": digests,
    }))
}

/// The prediction as JSON (schema in docs/measured-boot.md).
fn predict(o: &Options, data: &[u8]) -> Result<Value> {
    let pe = PeFile::parse(data)?;
    let Some(p) = payload::find(&pe)? else {
        bail!("not a zboot-pack image (no {} section)", payload::SECTION);
    };
    let (cmdline, embedded_initrd) = payload::embedded(&pe, &p.header)?;
    let options = match (&o.options, &o.options_file) {
        (Some(s), _) => utf16_load_options(s),
        (None, Some(f)) => read(f, "options file")?,
        (None, None) => Vec::new(),
    };
    let loader_initrd = o.initrd.as_deref().map(|f| read(f, "initrd")).transpose()?;
    let initrd = match &loader_initrd {
        Some(d) => Some(&d[..]),
        None => (!embedded_initrd.is_empty()).then_some(embedded_initrd),
    };
    let inputs = Inputs {
        embedded_cmdline: cmdline,
        load_options: &options,
        initrd,
    };
    let events: Vec<Event> = measure::events(&inputs).collect();
    let source = |t: Tag| match t {
        Tag::EmbeddedCmdline => "image .cmdline",
        Tag::LoadOptions if o.options.is_some() => "--options",
        Tag::LoadOptions => "--options-file",
        Tag::Initrd if loader_initrd.is_some() => "--initrd",
        Tag::Initrd => "image .initrd",
    };
    let values: serde_json::Map<String, Value> = BANKS
        .iter()
        .map(|b| (b.to_string(), json!(hex(&replay(b, &events)))))
        .collect();
    let records: Vec<Value> = events
        .iter()
        .map(|e| {
            let digests: Vec<Value> = BANKS
                .iter()
                .map(|b| json!({"hashAlg": b, "digest": hex(&digest(b, &[e.data]))}))
                .collect();
            json!({"pcr": PCR, "digests": digests})
        })
        .collect();
    Ok(json!({
        "image": o.image.display().to_string(),
        "pcr": PCR,
        "values": values,
        "events": events.iter().map(|e| event_json(e, source(e.tag))).collect::<Result<Vec<_>>>()?,
        "records": records,
    }))
}

pub fn run(o: &Options) -> Result<Outcome> {
    let data = input::read_file(&o.image)?;
    let v = predict(o, &data).with_context(|| o.image.display().to_string())?;
    if o.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(Outcome::Ok);
    }
    println!(
        "{}: PCR {PCR} after the zboot-pack stub (from zero, nothing else extending it):",
        o.image.display()
    );
    for b in BANKS {
        println!("  {b:<7} {}", v["values"][b].as_str().unwrap_or(""));
    }
    let events = v["events"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if events.is_empty() {
        println!("events: none (no embedded command line, options or initrd)");
    }
    for (i, e) in events.iter().enumerate() {
        println!(
            "event {}: EV_EVENT_TAG {} {:?}, {} bytes from {}",
            i + 1,
            e["tag"].as_str().unwrap_or(""),
            e["description"].as_str().unwrap_or(""),
            e["size"],
            e["source"].as_str().unwrap_or("")
        );
        println!("  sha256 {}", e["digests"]["sha256"].as_str().unwrap_or(""));
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_utf16_with_nul() {
        assert_eq!(utf16_load_options("a é"), [b'a', 0, b' ', 0, 0xe9, 0, 0, 0]);
        assert_eq!(utf16_load_options(""), [0, 0]);
    }

    /// PCR_new = H(PCR_old || H(data)), from zero, in event order.
    #[test]
    fn replay_extends_in_order() {
        let a = Event {
            tag: Tag::LoadOptions,
            data: b"a",
        };
        let b = Event {
            tag: Tag::Initrd,
            data: b"b",
        };
        let zero = [0u8; 32];
        let step1 = Sha256::new()
            .chain_update(zero)
            .chain_update(Sha256::digest(b"a"))
            .finalize();
        let step2 = Sha256::new()
            .chain_update(step1)
            .chain_update(Sha256::digest(b"b"))
            .finalize();
        assert_eq!(replay("sha256", &[a, b]), step2.to_vec());
        assert_ne!(replay("sha256", &[b, a]), step2.to_vec());
        assert_eq!(replay("sha1", &[]), vec![0u8; 20]);
        assert_eq!(replay("sha384", &[a]).len(), 48);
    }
}

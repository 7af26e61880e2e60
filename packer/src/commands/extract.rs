//! `extract IMAGE -o FILE`: a vmlinux ELF (+ relocations) from a zboot-pack image; the embedded
//! ELF + relocations from a bzImage; the decoded payload of a Linux zboot image.

use std::path::Path;

use anyhow::{Context, Result, bail};
use zboot_format::zimg::ZimgHeader;

use super::Outcome;
use crate::pe::read::PeFile;
use crate::{Verbosity, compress, elfout, input, output, payload};

/// The bytes `extract` writes for `data`.
pub fn extract(data: &[u8]) -> Result<Vec<u8>> {
    // A zboot-pack image also carries a setup header: the zimg header decides.
    if input::bzimage::is_bzimage(data) && ZimgHeader::parse(data).is_err() {
        let (_, _, decoded) = input::bzimage::decode_payload(data)?;
        return Ok(decoded);
    }
    let pe = PeFile::parse(data)?;
    if let Some(p) = payload::find(&pe)? {
        let stream = payload::decode(&p)?;
        return Ok(elfout::build(&p.header, &stream));
    }
    if let Ok(z) = ZimgHeader::parse(data) {
        let start = z.payload_offset as usize;
        let bytes = start
            .checked_add(z.payload_size as usize)
            .and_then(|end| data.get(start..end))
            .context("zimg payload beyond the end of the file")?;
        return Ok(compress::decode_any(bytes)?.1);
    }
    bail!("no kernel payload found (not a zboot-pack image, bzImage or zboot image)")
}

pub fn run(path: &Path, out: &Path, verbosity: Verbosity) -> Result<Outcome> {
    let data = input::read_file(path)?;
    let bytes = extract(&data).with_context(|| path.display().to_string())?;
    output::write_atomic(out, &bytes)?;
    if verbosity >= Verbosity::Normal {
        eprintln!(
            "zboot-pack: wrote {} ({} bytes)",
            out.display(),
            bytes.len()
        );
    }
    Ok(Outcome::Ok)
}

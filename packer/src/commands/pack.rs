//! `zboot-pack INPUT -o OUTPUT`: read, lay out, compress, wrap in the stub PE, write atomically.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use zboot_format::Codec;
use zboot_format::header::HEADER_SIZE;
use zboot_format::image::Part;

use super::Outcome;
use crate::compress::{self, Progress};
use crate::input::{self, SourceKind, detect};
use crate::layout::{self, Embedded};
use crate::pe::read::PeFile;
use crate::pe::write::{self, NewSection, ZimgSpec};
use crate::{Verbosity, embedded_stub, output, sbat};

#[derive(Clone, Debug)]
pub struct Options {
    pub input: PathBuf,
    pub output: PathBuf,
    pub codec: Codec,
    pub level: Option<u32>,
    pub cmdline: Option<String>,
    pub initrd: Option<PathBuf>,
    pub relocs: Option<PathBuf>,
    /// `--no-relocs`: no relocation table, not even one appended to the input or found beside it.
    pub no_relocs: bool,
    pub sbat: Option<PathBuf>,
    pub stub: Option<PathBuf>,
    pub la57: bool,
    /// `--protect-text` (`Some(true)`) / `--no-protect-text` (`Some(false)`); `None`: decided
    /// from the kernel.
    pub protect_text: Option<bool>,
    pub verbosity: Verbosity,
}

/// COFF TimeDateStamp: `SOURCE_DATE_EPOCH` or 0.
pub fn timestamp() -> u32 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(0, |t| t.min(u64::from(u32::MAX)) as u32)
}

fn with_path<T>(path: &Path, r: Result<T>) -> Result<T> {
    r.with_context(|| path.display().to_string())
}

/// Build the image bytes (everything but writing the output).
pub fn build(o: &Options) -> Result<(Vec<u8>, String)> {
    let started = Instant::now();
    let level = o.level.unwrap_or_else(|| compress::default_level(o.codec));
    let (lo, hi) = compress::level_range(o.codec);
    if o.level.is_some() && !(lo..=hi).contains(&level) {
        bail!(
            "--level {level} out of range for {} ({lo}..={hi})",
            o.codec.name()
        );
    }
    let data = input::read_file(&o.input)?;
    let mut kernel = input::read_kernel(&o.input, &data)?;
    drop(data);
    // Notes are said once, with the summary after a successful write, so a failure stays one
    // line.
    let mut notes = String::new();
    let mut note = |s: String| notes.push_str(&format!("zboot-pack: note: {s}\n"));
    if kernel.facts.la57_source.is_none()
        && let Some(d) = detect::la57_from_config(&o.input)
    {
        kernel.facts.la57 = d.la57 == Some(true);
        kernel.facts.la57_source = Some(d.source);
    }
    if kernel.facts.la57_source.is_none() && !o.la57 {
        note(format!(
            "{}: 5-level paging support not determined (no exported symbols, symbol table or .config say): packed for 4-level paging (--la57 if the kernel has CONFIG_X86_5LEVEL)",
            o.input.display()
        ));
    }
    if o.no_relocs {
        kernel.relocs = None;
    }
    if o.protect_text == Some(true) && kernel.facts.text.is_none() {
        bail!(
            "{}: --protect-text: where the kernel's text ends is unknown (no usable .rodata section header)",
            o.input.display()
        );
    }
    let relocs_path = match &o.relocs {
        Some(p) => Some(p.clone()),
        None if o.no_relocs || kernel.relocs.is_some() => None,
        None => match detect::relocs_beside(&o.input) {
            Some(Ok(p)) => Some(p),
            Some(Err(why)) => {
                note(why);
                None
            }
            None => None,
        },
    };
    let relocs = match &relocs_path {
        Some(p) => Some(input::read_file(p)?),
        None => None,
    };
    let lay = match (&relocs_path, &relocs) {
        (Some(p), Some(t)) => {
            with_path(p, layout::lay_out(&kernel, Some(t), o.la57, o.protect_text))?
        }
        _ => with_path(
            &o.input,
            layout::lay_out(&kernel, None, o.la57, o.protect_text),
        )?,
    };
    if lay.relocs_offset == 0 && !o.no_relocs {
        note(format!(
            "{}: no relocation table: physical KASLR only (--relocs FILE enables virtual KASLR)",
            o.input.display()
        ));
    }

    let mut cmdline = match &o.cmdline {
        Some(c) => match zboot_format::cmdline::check_embedded(c.as_bytes()) {
            Ok(c) => Some(c.as_bytes().to_vec()),
            Err(e) => bail!("--cmdline: {e}"),
        },
        None => None,
    };
    let mut initrd = match &o.initrd {
        Some(p) => {
            let d = input::read_file(p)?;
            if d.is_empty() {
                bail!("{}: empty initrd", p.display());
            }
            Some(d)
        }
        None => None,
    };
    let mut sbat_data = match &o.sbat {
        Some(p) => {
            let d = input::read_file(p)?;
            with_path(p, sbat::validate(&d).context("invalid SBAT"))?;
            Some(d)
        }
        None => None,
    };
    let stub_data;
    let (stub_bytes, stub_name): (&[u8], String) = match &o.stub {
        Some(p) => {
            stub_data = input::read_file(p)?;
            (&stub_data, p.display().to_string())
        }
        None => (
            embedded_stub(o.codec),
            format!("embedded {} stub", o.codec.name()),
        ),
    };
    let stub_pe = PeFile::parse(stub_bytes).with_context(|| stub_name.clone())?;

    let t = Instant::now();
    let mut progress = Progress::new(
        &format!("compressing ({})", o.codec.name()),
        lay.stream.len() as u64,
        o.verbosity >= Verbosity::Normal,
    );
    let flags = lay.payload_flags(compress::pre_filter(o.codec));
    let compressed = compress::compress(o.codec, level, &lay.stored_stream(flags), &mut progress)?;
    let compress_time = t.elapsed();

    // The parts after the stub's sections, in the order zboot_format::image::Part gives; plan
    // their RVAs, then fill the payload header (the payload's size is known: header + stream).
    let mut parts: Vec<(Part, Vec<u8>)> = Vec::new();
    for part in Part::APPENDED {
        let data = match part {
            Part::Payload => Some(vec![0u8; HEADER_SIZE + compressed.len()]),
            Part::Cmdline => cmdline.take(),
            Part::Initrd => initrd.take(),
            Part::Sbat => sbat_data.take(),
        };
        if let Some(data) = data {
            part.check_len(data.len() as u64)
                .map_err(|e| anyhow::anyhow!("{}: {e}", o.input.display()))?;
            parts.push((part, data));
        }
    }
    let sizes: Vec<u64> = parts.iter().map(|(_, d)| d.len() as u64).collect();
    let rvas = write::plan_rvas(&stub_pe, &sizes).with_context(|| stub_name.clone())?;
    let placed = |want: Part| {
        let i = parts.iter().position(|(p, _)| *p == want)?;
        Some((rvas[i], &parts[i].1[..]))
    };
    let embedded = Embedded {
        cmdline: placed(Part::Cmdline),
        initrd: placed(Part::Initrd),
    };
    let header = lay.header(o.codec, flags, &compressed, embedded);
    header
        .validate(compressed.len() as u64)
        .map_err(|e| anyhow::anyhow!("{}: payload header: {e}", o.input.display()))?;
    let payload = &mut parts[0].1;
    header.write(
        (&mut payload[..HEADER_SIZE])
            .try_into()
            .expect("header size"),
    );
    payload[HEADER_SIZE..].copy_from_slice(&compressed);
    let new: Vec<NewSection> = parts
        .into_iter()
        .map(|(part, data)| NewSection::part(part, data))
        .collect();
    let opts = write::Options {
        timestamp: timestamp(),
        zimg: Some(ZimgSpec {
            section: 0,
            offset: HEADER_SIZE as u32,
            size: u32::try_from(compressed.len()).context("payload too large")?,
            comp_type: o.codec.zimg_type(),
            kernel_xloadflags: header.xloadflags,
        }),
        kernel_version: kernel.facts.kernel_version.clone(),
        setup_type_max: kernel.facts.setup_type_max,
    };
    let image =
        write::write(stub_bytes, &new, &opts).with_context(|| o.output.display().to_string())?;

    if o.verbosity >= Verbosity::Verbose {
        let src = match kernel.facts.source {
            SourceKind::Elf => "vmlinux ELF".to_string(),
            SourceKind::BzImage => format!(
                "bzImage (boot protocol {:#06x}, {} payload)",
                kernel.facts.boot_protocol,
                kernel.facts.bz_codec.unwrap_or("?")
            ),
        };
        eprintln!(
            "zboot-pack: input {}: {src}, {} PT_LOAD segments",
            o.input.display(),
            kernel.segments.len()
        );
        eprintln!(
            "zboot-pack: 5-level paging: {} ({}); relocation table: {}",
            if lay.flags.has(zboot_format::Flags::LA57) {
                "yes"
            } else {
                "no"
            },
            if o.la57 {
                "--la57"
            } else {
                kernel
                    .facts
                    .la57_source
                    .as_deref()
                    .unwrap_or("not determined")
            },
            match (&relocs_path, kernel.relocs.is_some()) {
                (Some(p), _) => p.display().to_string(),
                (None, true) => "appended to the input".into(),
                (None, false) => "none".into(),
            }
        );
        eprintln!(
            "zboot-pack: read-only text at entry: {}",
            if lay.flags.has(zboot_format::Flags::TEXT_RO) {
                format!(
                    "[0, {:#x}) RO+X, [{:#x}, {:#x}) NX ({})",
                    lay.text_size,
                    lay.text_size,
                    lay.nx_end,
                    match o.protect_text {
                        Some(true) => "--protect-text",
                        _ => kernel.facts.text_ro_source.as_deref().unwrap_or("?"),
                    }
                )
            } else if o.protect_text == Some(false) {
                "no (--no-protect-text)".into()
            } else if kernel.facts.text_ro_source.is_none() {
                "no (the kernel is not known to tolerate it)".into()
            } else {
                "no (where its text ends is unknown)".into()
            }
        );
        eprintln!(
            "zboot-pack: image {:#x} bytes, memory {:#x}, alignment {:#x}, entry +{:#x}, relocs {:?}, flags {:#x}",
            lay.image_size,
            lay.mem_size,
            lay.alignment,
            lay.entry_offset,
            lay.relocs_counts,
            flags.0
        );
        eprintln!(
            "zboot-pack: {} level {level}: {} -> {} bytes in {:.2}s",
            o.codec.name(),
            lay.stream.len(),
            compressed.len(),
            compress_time.as_secs_f64()
        );
    }
    let summary = format!(
        "{}zboot-pack: wrote {} ({} bytes, {} {:.1}% of {} decoded) in {:.1}s",
        notes,
        o.output.display(),
        image.len(),
        o.codec.name(),
        compressed.len() as f64 * 100.0 / lay.stream.len().max(1) as f64,
        lay.stream.len(),
        started.elapsed().as_secs_f64()
    );
    Ok((image, summary))
}

pub fn run(o: &Options) -> Result<Outcome> {
    let (image, summary) = build(o)?;
    output::write_atomic(&o.output, &image)?;
    if o.verbosity >= Verbosity::Normal {
        eprintln!("{summary}");
    }
    Ok(Outcome::Ok)
}

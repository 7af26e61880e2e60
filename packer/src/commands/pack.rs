//! `zboot-pack INPUT -o OUTPUT`: read, lay out, compress, wrap in the stub PE, write atomically.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use zboot_format::Codec;
use zboot_format::header::{HEADER_SIZE, PayloadHeader};
use zboot_format::image::Part;

use super::Outcome;
use crate::cli::{CodecArg, VerbosityArgs};
use crate::compress::{self, Progress};
use crate::input::{self, KernelImage, SourceKind, detect};
use crate::layout::{self, Embedded, Layout};
use crate::pe::write::{self, NewSection, ZimgSpec};
use crate::{Verbosity, embedded_stub, output, sbat};

/// What to pack and how: the command line's arguments as clap parses them (the top-level
/// command's; every field is a flag of `zboot-pack INPUT -o OUTPUT`).
#[derive(Args, Clone, Debug, Default)]
pub struct Options {
    /// Kernel to pack: a vmlinux ELF (x86_64), or a bzImage/vmlinuz whose embedded ELF and
    /// relocation table are recovered.
    #[arg(value_name = "INPUT", required = true, value_hint = clap::ValueHint::FilePath)]
    pub input: Option<PathBuf>,
    /// Where to write the EFI application (written atomically: replaced only on success).
    #[arg(short, long, value_name = "OUTPUT", required = true, value_hint = clap::ValueHint::FilePath)]
    pub output: Option<PathBuf>,
    /// Compression of the kernel payload. Against Debian 12's 6.12 bzImage, size and guest
    /// instructions before the kernel: zstd 0.91 and 0.97 (the default: smaller and faster), lz4
    /// 1.41 and 0.28 (ESP space for boot time), xz 0.82 and 7.5 (the smallest image, the slowest
    /// start), gzip 1.08 and 1.17, none 4.4 and 0.11. When each pays: docs/usage.md.
    #[arg(long, value_enum, default_value_t = CodecArg(Codec::Zstd))]
    pub codec: CodecArg,
    /// Compression level (zstd 1-22, default 19; xz 0-9, default 9 extreme; gzip 1-9, default 9;
    /// lz4 HC 3-12, default 12; ignored for none).
    #[arg(long, value_name = "N")]
    pub level: Option<u32>,
    /// Kernel command line to embed in a `.cmdline` section: it comes first and the loader's
    /// options are appended, except under Secure Boot, where it stands alone and the loader's
    /// options are ignored. Printable text, not blank, at most 2047 bytes (what the kernel keeps).
    #[arg(long, value_name = "STR")]
    pub cmdline: Option<String>,
    /// Initrd to embed in an `.initrd` section (used when the loader provides none).
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub initrd: Option<PathBuf>,
    /// x86 relocation table enabling virtual KASLR for a bare vmlinux. Default: the one appended
    /// to the input (a bzImage's, an extracted kernel's), else the build tree's
    /// `arch/x86/boot/compressed/vmlinux.relocs` beside the vmlinux when it is not older.
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub relocs: Option<PathBuf>,
    /// No relocation table (physical KASLR only), even if the input has or sits beside one.
    #[arg(long, conflicts_with = "relocs")]
    pub no_relocs: bool,
    /// SBAT CSV to embed in a `.sbat` section (first row must be the `sbat,1,...` version line).
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub sbat: Option<PathBuf>,
    /// Use this EFI stub instead of the embedded one.
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub stub: Option<PathBuf>,
    /// The kernel may be entered with 5-level paging (LA57). Without it this is decided from the
    /// kernel: a bzImage's xloadflags (XLF_5LEVEL); a vmlinux's exported symbols or symbol table,
    /// else the build tree's `.config` beside it, else its release (>= 6.16 always can).
    #[arg(long)]
    pub la57: bool,
    /// The kernel may be entered with its text ([_text, __start_rodata)) read-only and the
    /// non-executable part of its image NX, as Linux >= 6.8's own stub enters it. Without it this
    /// is decided from the kernel: its release (>= 6.8), or a 6.1.y/6.6.y bzImage that declares
    /// NX_COMPAT (the backport of that stub).
    #[arg(long, conflicts_with = "no_protect_text")]
    pub protect_text: bool,
    /// Enter the kernel with its whole region writable and executable (the pre-6.8 way).
    #[arg(long)]
    pub no_protect_text: bool,
    #[command(flatten)]
    pub verbosity: VerbosityArgs,
}

impl Default for CodecArg {
    fn default() -> Self {
        CodecArg(Codec::Zstd)
    }
}

impl Options {
    fn paths(&self) -> Result<(&Path, &Path)> {
        match (&self.input, &self.output) {
            (Some(i), Some(o)) => Ok((i, o)),
            _ => bail!("INPUT and -o OUTPUT are required (see --help)"),
        }
    }

    pub fn codec(&self) -> Codec {
        self.codec.0
    }

    /// `--protect-text` (`Some(true)`) / `--no-protect-text` (`Some(false)`); `None`: decided
    /// from the kernel.
    pub fn protect_text(&self) -> Option<bool> {
        match (self.protect_text, self.no_protect_text) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }

    pub fn verbosity(&self) -> Verbosity {
        self.verbosity.level()
    }

    /// The compression level: `--level`, checked against the codec's range, else its default.
    fn level(&self) -> Result<u32> {
        let codec = self.codec();
        let (lo, hi) = compress::level_range(codec);
        match self.level {
            Some(l) if !(lo..=hi).contains(&l) => {
                bail!(
                    "--level {l} out of range for {} ({lo}..={hi})",
                    codec.name()
                )
            }
            Some(l) => Ok(l),
            None => Ok(compress::default_level(codec)),
        }
    }
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

/// Notes are said once, with the summary after a successful write, so a failure stays one line.
#[derive(Default)]
struct Notes(String);

impl Notes {
    fn add(&mut self, s: String) {
        self.0.push_str(&format!("zboot-pack: note: {s}\n"));
    }
}

/// The kernel read and laid out, with where its relocation table came from.
struct Kernel {
    image: KernelImage,
    relocs_path: Option<PathBuf>,
    lay: Layout,
}

/// The parts embedded after the payload, read and checked.
struct Embeds {
    cmdline: Option<Vec<u8>>,
    initrd: Option<Vec<u8>>,
    sbat: Option<Vec<u8>>,
}

/// The compressed stream and what the payload header says of how it was stored.
struct Compressed {
    flags: zboot_format::Flags,
    level: u32,
    bytes: Vec<u8>,
    took: Duration,
}

/// Build the image bytes (everything but writing the output): read, lay out, compress,
/// assemble in one pass.
pub fn build(o: &Options) -> Result<(Vec<u8>, String)> {
    let started = Instant::now();
    let (input, output) = o.paths()?;
    let level = o.level()?;
    let mut notes = Notes::default();
    let kernel = read_kernel(o, input, &mut notes)?;
    let embeds = read_embeds(o)?;
    let stub_file;
    let (stub, stub_name): (&[u8], String) = match &o.stub {
        Some(p) => {
            stub_file = input::read_file(p)?;
            (&stub_file, p.display().to_string())
        }
        None => (
            embedded_stub(o.codec()),
            format!("embedded {} stub", o.codec().name()),
        ),
    };
    let compressed = compress_stream(o, level, &kernel.lay)?;
    let (image, header) = assemble(o, input, (stub, &stub_name), &kernel, &compressed, embeds)
        .with_context(|| output.display().to_string())?;
    if o.verbosity() >= Verbosity::Verbose {
        describe(o, input, &kernel, &header, &compressed);
    }
    let summary = format!(
        "{}zboot-pack: wrote {} ({} bytes, {} {:.1}% of {} decoded) in {:.1}s",
        notes.0,
        output.display(),
        image.len(),
        o.codec().name(),
        compressed.bytes.len() as f64 * 100.0 / header.uncompressed_size.max(1) as f64,
        header.uncompressed_size,
        started.elapsed().as_secs_f64()
    );
    Ok((image, summary))
}

pub fn run(o: &Options) -> Result<Outcome> {
    let (image, summary) = build(o)?;
    output::write_atomic(o.paths()?.1, &image)?;
    if o.verbosity() >= Verbosity::Normal {
        eprintln!("{summary}");
    }
    Ok(Outcome::Ok)
}

/// The kernel, its facts settled (5-level paging, read-only text, the relocation table), laid
/// out as the decoded stream.
fn read_kernel(o: &Options, input: &Path, notes: &mut Notes) -> Result<Kernel> {
    let data = input::read_file(input)?;
    let mut kernel = input::read_kernel(input, &data)?;
    drop(data);
    if kernel.facts.la57_source.is_none()
        && let Some(d) = detect::la57_from_config(input)
    {
        kernel.facts.la57 = d.la57 == Some(true);
        kernel.facts.la57_source = Some(d.source);
    }
    if kernel.facts.la57_source.is_none() && !o.la57 {
        notes.add(format!(
            "{}: 5-level paging support not determined (no exported symbols, symbol table or .config say): packed for 4-level paging (--la57 if the kernel has CONFIG_X86_5LEVEL)",
            input.display()
        ));
    }
    if o.no_relocs {
        kernel.relocs = None;
    }
    if o.protect_text() == Some(true) && kernel.facts.text.is_none() {
        bail!(
            "{}: --protect-text: where the kernel's text ends is unknown (no usable .rodata section header)",
            input.display()
        );
    }
    let relocs_path = match &o.relocs {
        Some(p) => Some(p.clone()),
        None if o.no_relocs || kernel.relocs.is_some() => None,
        None => match detect::relocs_beside(input) {
            Some(Ok(p)) => Some(p),
            Some(Err(why)) => {
                notes.add(why);
                None
            }
            None => None,
        },
    };
    let lay = match &relocs_path {
        Some(p) => {
            let table = input::read_file(p)?;
            with_path(
                p,
                layout::lay_out(&kernel, Some(&table), o.la57, o.protect_text()),
            )?
        }
        None => with_path(
            input,
            layout::lay_out(&kernel, None, o.la57, o.protect_text()),
        )?,
    };
    if lay.header.relocs_offset == 0 && !o.no_relocs {
        notes.add(format!(
            "{}: no relocation table: physical KASLR only (--relocs FILE enables virtual KASLR)",
            input.display()
        ));
    }
    Ok(Kernel {
        image: kernel,
        relocs_path,
        lay,
    })
}

/// `--cmdline`, `--initrd`, `--sbat`, each checked.
fn read_embeds(o: &Options) -> Result<Embeds> {
    let cmdline = match &o.cmdline {
        Some(c) => match zboot_format::cmdline::check_embedded(c.as_bytes()) {
            Ok(c) => Some(c.as_bytes().to_vec()),
            Err(e) => bail!("--cmdline: {e}"),
        },
        None => None,
    };
    let initrd = match &o.initrd {
        Some(p) => {
            let d = input::read_file(p)?;
            if d.is_empty() {
                bail!("{}: empty initrd", p.display());
            }
            Some(d)
        }
        None => None,
    };
    let sbat = match &o.sbat {
        Some(p) => {
            let d = input::read_file(p)?;
            with_path(p, sbat::validate(&d).context("invalid SBAT"))?;
            Some(d)
        }
        None => None,
    };
    Ok(Embeds {
        cmdline,
        initrd,
        sbat,
    })
}

/// The stored stream (the layout's, with the codec's pre-filter), compressed.
fn compress_stream(o: &Options, level: u32, lay: &Layout) -> Result<Compressed> {
    let t = Instant::now();
    let mut progress = Progress::new(
        &format!("compressing ({})", o.codec().name()),
        lay.stream.len() as u64,
        o.verbosity() >= Verbosity::Normal,
    );
    let flags = lay.payload_flags(compress::pre_filter(o.codec()));
    let bytes = compress::compress(o.codec(), level, &lay.stored_stream(flags), &mut progress)?;
    Ok(Compressed {
        flags,
        level,
        bytes,
        took: t.elapsed(),
    })
}

/// The image in one pass: each part placed once after the stub's sections (payload first,
/// then the embedded parts, in `Part::APPENDED`'s order), the payload header written last with
/// the embedded parts' RVAs, then the PE written and checked. Returns the image and its
/// payload header.
fn assemble(
    o: &Options,
    input: &Path,
    (stub, stub_name): (&[u8], &str),
    kernel: &Kernel,
    compressed: &Compressed,
    embeds: Embeds,
) -> Result<(Vec<u8>, PayloadHeader)> {
    let mut b = write::Builder::new(stub).with_context(|| stub_name.to_string())?;
    let mut embeds = [
        (Part::Cmdline, embeds.cmdline),
        (Part::Initrd, embeds.initrd),
        (Part::Sbat, embeds.sbat),
    ];
    // (part, index in the builder, RVA)
    let mut at: Vec<(Part, usize, u32)> = Vec::new();
    for part in Part::APPENDED {
        let data = match part {
            Part::Payload => vec![0u8; HEADER_SIZE + compressed.bytes.len()],
            _ => match embeds
                .iter_mut()
                .find(|(p, _)| *p == part)
                .and_then(|e| e.1.take())
            {
                Some(d) => d,
                None => continue,
            },
        };
        part.check_len(data.len() as u64)
            .map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
        let rva = b
            .add(NewSection::part(part, data))
            .with_context(|| stub_name.to_string())?;
        at.push((part, at.len(), rva));
    }
    let index = |want: Part| {
        at.iter()
            .find(|(p, ..)| *p == want)
            .map(|&(_, i, rva)| (i, rva))
    };
    let (cmd, ird) = (index(Part::Cmdline), index(Part::Initrd));
    let header = kernel.lay.header(
        o.codec(),
        compressed.flags,
        &compressed.bytes,
        Embedded {
            cmdline: cmd.map(|(i, rva)| (rva, b.data(i))),
            initrd: ird.map(|(i, rva)| (rva, b.data(i))),
        },
    );
    header
        .validate(compressed.bytes.len() as u64)
        .map_err(|e| anyhow::anyhow!("{}: payload header: {e}", input.display()))?;
    debug_assert_eq!(at.first().map(|a| a.0), Some(Part::Payload));
    let payload = b.data_mut(0);
    header.write(
        (&mut payload[..HEADER_SIZE])
            .try_into()
            .expect("header size"),
    );
    payload[HEADER_SIZE..].copy_from_slice(&compressed.bytes);
    let image = b.finish(&write::Options {
        timestamp: timestamp(),
        zimg: Some(ZimgSpec {
            section: 0,
            offset: HEADER_SIZE as u32,
            size: u32::try_from(compressed.bytes.len()).context("payload too large")?,
            comp_type: o.codec().zimg_type(),
            kernel_xloadflags: header.xloadflags,
        }),
        kernel_version: kernel.image.facts.kernel_version.clone(),
        setup_type_max: kernel.image.facts.setup_type_max,
    })?;
    Ok((image, header))
}

/// `--verbose`: what was read and the image that was built (its payload header).
fn describe(o: &Options, input: &Path, k: &Kernel, h: &PayloadHeader, c: &Compressed) {
    let facts = &k.image.facts;
    let src = match facts.source {
        SourceKind::Elf => "vmlinux ELF".to_string(),
        SourceKind::BzImage => format!(
            "bzImage (boot protocol {:#06x}, {} payload)",
            facts.boot_protocol,
            facts.bz_codec.unwrap_or("?")
        ),
    };
    eprintln!(
        "zboot-pack: input {}: {src}, {} PT_LOAD segments",
        input.display(),
        k.image.segments.len()
    );
    eprintln!(
        "zboot-pack: 5-level paging: {} ({}); relocation table: {}",
        if h.flags.has(zboot_format::Flags::LA57) {
            "yes"
        } else {
            "no"
        },
        if o.la57 {
            "--la57"
        } else {
            facts.la57_source.as_deref().unwrap_or("not determined")
        },
        match (&k.relocs_path, k.image.relocs.is_some()) {
            (Some(p), _) => p.display().to_string(),
            (None, true) => "appended to the input".into(),
            (None, false) => "none".into(),
        }
    );
    eprintln!(
        "zboot-pack: read-only text at entry: {}",
        if h.flags.has(zboot_format::Flags::TEXT_RO) {
            format!(
                "[0, {:#x}) RO+X, [{:#x}, {:#x}) NX ({})",
                h.text_size,
                h.text_size,
                h.nx_end,
                match o.protect_text() {
                    Some(true) => "--protect-text",
                    _ => facts.text_ro_source.as_deref().unwrap_or("?"),
                }
            )
        } else if o.protect_text() == Some(false) {
            "no (--no-protect-text)".into()
        } else if facts.text_ro_source.is_none() {
            "no (the kernel is not known to tolerate it)".into()
        } else {
            "no (where its text ends is unknown)".into()
        }
    );
    eprintln!(
        "zboot-pack: image {:#x} bytes, memory {:#x}, alignment {:#x}, entry +{:#x}, relocs {:?}, flags {:#x}",
        h.image_size,
        h.mem_size,
        h.alignment,
        h.entry_offset,
        (h.relocs_count64, h.relocs_count_inv32, h.relocs_count32),
        h.flags.0
    );
    eprintln!(
        "zboot-pack: {} level {}: {} -> {} bytes in {:.2}s",
        o.codec().name(),
        c.level,
        h.uncompressed_size,
        c.bytes.len(),
        c.took.as_secs_f64()
    );
}

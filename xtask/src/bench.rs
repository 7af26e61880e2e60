//! `cargo xtask bench`: the performance figures of issue 7, each a ratio against a reference
//! measured in the same run (the machines are shared and noisy), printed as a table and written
//! to `<target>/bench/results.json`. Not a test: nothing here asserts on time.
//!
//! 0. the pre-kernel stage counted in guest instructions (stage.rs: QEMU `-icount`, the guest
//!    TSC against the kernel's clock, a baseline app of the same size subtracted) per stage codec
//!    / Debian's own bzImage, on both Debian kernels; the stub's own steps in the same count;
//! 1. image size per codec / Debian's bzImage of the same kernel;
//! 2. decode throughput of the stub's own decoders (the `zboot-stub` library built for the host
//!    with the stub's opt-level) / the C reference decoding the same stream in this process
//!    (libzstd, liblzma, liblz4; gzip: flate2's default zlib-rs backend), alternating, medians;
//!    the pure-Rust alternatives of the C decoders the stub carries (ruzstd, lz4_flex); and the
//!    stub's work around decoding (the compressed stream's checksum, undoing the filters);
//! 3. pack time / the reference CLI compressing the same stored stream with the same settings;
//! 4. whole boot time in QEMU (TCG, strict-NX OVMF 2025, systemd-boot, the test initramfs) of the
//!    default image / Debian's bzImage, alternating boots, median ratio; and per codec (plus the
//!    Rust-decoder stubs) the stub's in-firmware unpack time from its `efi=debug` lines;
//! 5. embedded stub size per codec / 128 KiB; packer peak RSS / input size; the stub's peak
//!    boot-time allocations beyond the kernel region and initrd (`efi=debug` "memory:" line).
//!
//! Runs optimized: a debug build of xtask re-runs itself with `cargo run --profile bench`
//! (`[profile.bench]` mirrors the stub's opt-level for the stub's decoders).

use anyhow::{Context, Result, ensure};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixtures::Fixtures;
use crate::qemu::{self, BootSpec, Firmware};
use crate::stage;
use zboot_format::{Codec, stub_build};

/// The codec the packer uses without `--codec`.
pub const DEFAULT_CODEC: &str = "zstd";
/// The per-codec stub size guideline: issue 7's 96 KiB, re-decided on figures in issue 18
/// (docs/performance.md: the bytes that would buy decode speed buy ~2 %, the image-size goals
/// are what users see).
pub const STUB_GOAL: u64 = 128 << 10;
/// The zstd stub's guideline: libzstd's BMI2 copy of its hot loops (19 KB) buys 10.5 % of the
/// decode's guest instructions, so bytes there buy boot time (docs/performance.md, 2026-12-04).
pub const STUB_GOAL_ZSTD: u64 = 152 << 10;

/// The size guideline of the stub named `name` (a [`stub_build::VARIANTS`] name).
fn stub_goal(name: &str) -> u64 {
    if name == "zstd" {
        STUB_GOAL_ZSTD
    } else {
        STUB_GOAL
    }
}
/// Whole boot / Debian 6.1's xz bzImage (issue 18).
const GOAL_BOOT_XZ: f64 = 0.60;
/// Whole boot / Debian 12's 6.12 zstd bzImage (issue 18).
const GOAL_BOOT_ZSTD: f64 = 0.90;
/// The default image's pre-kernel stage in guest instructions / Debian 12's 6.12 bzImage's
/// (issue 28; the floor that must hold is 1.00).
const GOAL_STAGE_612: f64 = 0.90;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Codecs to measure.
    #[arg(long, value_delimiter = ',', default_values_t = ["zstd".to_string(), "xz".into(), "gzip".into(), "lz4".into()])]
    codecs: Vec<String>,
    /// Repetitions of each host decode (alternating stub / C reference).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// QEMU boots of each of the default image and Debian's bzImage (alternating).
    #[arg(long, default_value_t = 3)]
    boots: usize,
    /// The codec of the image whose boot time is compared with Debian's bzImage (section 4).
    #[arg(long, default_value = DEFAULT_CODEC)]
    boot_codec: String,
    /// Skip every QEMU boot (sections 4 and the in-firmware costs).
    #[arg(long)]
    no_boot: bool,
    /// Skip the reference compressor CLIs (section 3).
    #[arg(long)]
    no_cli: bool,
    /// Codecs whose images' pre-kernel stage is counted in guest instructions (section 0), on
    /// both Debian kernels.
    #[arg(long, value_delimiter = ',', default_values_t = ["zstd".to_string(), "lz4".into()])]
    stage_codecs: Vec<String>,
    /// Skip the instruction-counted stage (section 0).
    #[arg(long)]
    no_stage: bool,
    /// Only the instruction-counted stage (section 0).
    #[arg(long, conflicts_with = "no_stage")]
    stage_only: bool,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub section: &'static str,
    pub name: String,
    pub value: f64,
    pub reference: f64,
    pub unit: &'static str,
    /// Ratio value / reference (or reference / value for throughput, see `name`).
    pub ratio: f64,
    /// `("<=", 1.0)` or `(">=", 0.8)`.
    pub goal: Option<(&'static str, f64)>,
    pub note: String,
}

impl Row {
    pub fn met(&self) -> Option<bool> {
        self.goal.map(|(op, g)| match op {
            "<=" => self.ratio <= g,
            _ => self.ratio >= g,
        })
    }
}

/// `a / b`, NaN when `b` is zero.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { f64::NAN } else { a / b }
}

/// Median (mean of the middle two for even counts); NaN for none.
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The results as JSON: `{"rows": [...], "commands": [...]}` (a ratio that is not a number
/// is `null`).
pub fn to_json(rows: &[Row], commands: &[String]) -> String {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "section": r.section,
                "name": r.name,
                "value": r.value,
                "reference": r.reference,
                "unit": r.unit,
                "ratio": r.ratio,
                "goal": r.goal.map(|(op, g)| format!("{op} {g}")),
                "met": r.met(),
                "note": r.note,
            })
        })
        .collect();
    let doc = serde_json::json!({ "rows": rows, "commands": commands });
    serde_json::to_string_pretty(&doc).expect("JSON of strings and numbers") + "\n"
}

/// The table for humans (also Markdown).
pub fn to_table(rows: &[Row]) -> String {
    let mut o = String::from(
        "| section | figure | value | reference | ratio | goal | met | note |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            o,
            "| {} | {} | {} {} | {} {} | {:.3} | {} | {} | {} |",
            r.section,
            r.name,
            fmt_val(r.value),
            r.unit,
            fmt_val(r.reference),
            r.unit,
            r.ratio,
            r.goal
                .map(|(op, g)| format!("{op} {g}"))
                .unwrap_or_default(),
            match r.met() {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            },
            r.note
        );
    }
    o
}

fn fmt_val(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.3}")
    }
}

/// What the stub reports under `efi=debug` (all optional: older stubs say less).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StubReport {
    /// `stream <check> ok in N ms`: the compressed stream's integrity check
    pub check_ms: Option<u64>,
    /// "decoded N bytes in M ms"
    pub decode_ms: Option<u64>,
    /// "filters 0x.. undone in N ms"
    pub filters_ms: Option<u64>,
    /// "memory: peak N bytes beyond kernel+initrd (H heap), kernel+initrd P bytes"
    pub peak_bytes: Option<u64>,
    pub peak_heap: Option<u64>,
    pub payload_bytes: Option<u64>,
}

impl StubReport {
    /// Stream hash + decode + filters, when all were reported.
    pub fn unpack_ms(&self) -> Option<u64> {
        Some(self.check_ms? + self.decode_ms? + self.filters_ms.unwrap_or(0))
    }
}

/// Parse the stub's `efi=debug` progress lines out of a boot log.
pub fn parse_stub_report(log: &str) -> StubReport {
    fn ms_after(line: &str, key: &str) -> Option<u64> {
        let at = line.find(key)?;
        let rest = &line[at + key.len()..];
        let i = rest.rfind(" in ")?;
        rest[i + 4..].trim().strip_suffix("ms")?.trim().parse().ok()
    }
    fn num_after(line: &str, key: &str) -> Option<u64> {
        let at = line.find(key)?;
        let rest = &line[at + key.len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    }
    let mut r = StubReport::default();
    for line in log.lines() {
        r.decode_ms = r.decode_ms.or_else(|| ms_after(line, "decoded "));
        r.check_ms = r.check_ms.or_else(|| ms_after(line, "zboot: stream "));
        r.filters_ms = r.filters_ms.or_else(|| ms_after(line, "filters "));
        if line.contains("memory: peak ") {
            r.peak_bytes = num_after(line, "memory: peak ");
            r.peak_heap = num_after(line, "beyond kernel+initrd (");
            r.payload_bytes = num_after(line, "), kernel+initrd ");
        }
    }
    r
}

fn codec_of(name: &str) -> Result<Codec> {
    Codec::from_name(name).with_context(|| format!("unknown codec {name}"))
}

/// Runs `cmd` (stdout to `stdout` when given) and returns (wall time, peak RSS in bytes).
fn run_measured(cmd: &mut Command, stdout: Option<&Path>) -> Result<(Duration, u64)> {
    cmd.stdin(Stdio::null());
    if let Some(p) = stdout {
        cmd.stdout(std::fs::File::create(p)?);
    }
    let t = Instant::now();
    let child = cmd.spawn().with_context(|| format!("running {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain integers; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: plain syscall on our own child; `status` and `ru` are ours, written by the kernel.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let elapsed = t.elapsed();
    ensure!(r == pid, "wait4 failed for {cmd:?}");
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed (status {status})"
    );
    std::mem::forget(child); // already reaped
    Ok((elapsed, ru.ru_maxrss as u64 * 1024))
}

/// Decodes with the C reference (same process).
fn c_decode(codec: Codec, src: &[u8], dst: &mut [u8]) -> Result<()> {
    match codec {
        Codec::Zstd => {
            let n = zstd::bulk::Decompressor::new()?.decompress_to_buffer(src, dst)?;
            ensure!(n == dst.len(), "libzstd: {n} bytes");
        }
        Codec::Xz => {
            let mut s = xz2::stream::Stream::new_stream_decoder(u64::MAX, 0)?;
            s.process(src, dst, xz2::stream::Action::Finish)?;
            ensure!(s.total_out() == dst.len() as u64, "liblzma: short");
        }
        Codec::Gzip => {
            flate2::read::GzDecoder::new(src).read_exact(dst)?;
        }
        Codec::Lz4 => {
            // Legacy frames: magic, then (u32 size, block) pairs of LZ4_LEGACY_BLOCK each.
            let (mut pos, mut out) = (4usize, 0usize);
            while pos + 4 <= src.len() && out < dst.len() {
                let size = u32::from_le_bytes(src[pos..pos + 4].try_into().unwrap()) as usize;
                pos += 4;
                let cap = (dst.len() - out).min(zboot_format::codec::LZ4_LEGACY_BLOCK);
                out += lz4::block::decompress_to_buffer(
                    &src[pos..pos + size],
                    Some(cap as i32),
                    &mut dst[out..out + cap],
                )?;
                pos += size;
            }
            ensure!(out == dst.len(), "liblz4: short");
        }
        Codec::None => dst.copy_from_slice(&src[..dst.len()]),
    }
    Ok(())
}

/// A PE file laid out as the firmware loads it (sections at their RVAs), for
/// `zboot_stub::payload::locate`.
pub fn load_pe(file: &[u8]) -> Result<Vec<u8>> {
    let secs = zboot_format::pe::SectionTable::parse(file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (size_of_image, size_of_headers) = secs
        .image_sizes()
        .map(|(i, h)| (i as usize, h as usize))
        .context("no SizeOfImage in the optional header")?;
    ensure!(size_of_image <= 1 << 30, "SizeOfImage too large");
    let mut img = vec![0u8; size_of_image];
    let h = size_of_headers.min(file.len()).min(img.len());
    img[..h].copy_from_slice(&file[..h]);
    for s in secs.iter() {
        let rva = s.virtual_address as usize;
        let src = secs.contents(&s);
        let n = src.len().min(img.len().saturating_sub(rva));
        img[rva..rva + n].copy_from_slice(&src[..n]);
    }
    Ok(img)
}

/// The embedded per-codec stubs of the newest packer build.
fn stub_files() -> Vec<(String, PathBuf)> {
    let build = qemu::target_dir().join("release/build");
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for e in std::fs::read_dir(&build).into_iter().flatten().flatten() {
        let out = e.path().join("out");
        let f = out.join("zboot-stub-zstd.efi");
        if let Ok(m) = std::fs::metadata(&f).and_then(|m| m.modified())
            && best.as_ref().is_none_or(|(t, _)| m > *t)
        {
            best = Some((m, out));
        }
    }
    let Some((_, out)) = best else {
        return Vec::new();
    };
    zboot_format::stub_build::VARIANTS
        .iter()
        .map(|(n, _)| (n.to_string(), out.join(format!("zboot-stub-{n}.efi"))))
        .filter(|(_, p)| p.is_file())
        .collect()
}

/// A decoder signature of `zboot_stub::decode`.
type DecodeFn = fn(&[u8], &mut [u8]) -> Result<usize, zboot_stub::decode::DecodeError>;

/// The pure-Rust decoder the stub can be built with instead of a C one (its `*-rust` feature).
fn rust_alternative(codec: Codec) -> Option<(&'static str, DecodeFn)> {
    match codec {
        Codec::Zstd => Some((
            "ruzstd (feature zstd-rust)",
            zboot_stub::decode::zstd_rust::decode,
        )),
        Codec::Lz4 => Some((
            "lz4_flex (feature lz4-rust)",
            zboot_stub::decode::lz4::decode_rust,
        )),
        _ => None,
    }
}

/// Build zboot-stub for the UEFI target with only `features` (a variant packer/build.rs does not
/// embed, e.g. `zstd-rust`); returns the .efi.
fn build_stub_variant(features: &str) -> Result<PathBuf> {
    let target_dir = qemu::target_dir().join("bench-stubs");
    let st = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(stub_build::CARGO_ARGS)
        .args(["--quiet", "--features", features])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("RUSTFLAGS")
        .current_dir(crate::workspace_root())
        .status()?;
    ensure!(st.success(), "building the {features} stub failed");
    Ok(stub_build::ARTIFACT
        .iter()
        .fold(target_dir, |p, c| p.join(c)))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Section 4's row for one kernel: `image` (packed from `reference`) against `reference`, both
/// through systemd-boot on `fw`, in `a.boots` alternating pairs; the median per-pair ratio.
fn boot_ratio(
    fx: &Fixtures,
    fw: Firmware,
    a: &BenchArgs,
    release: &str,
    reference: &Path,
    image: &Path,
    goal: f64,
) -> Result<Row> {
    let (mut tb, mut ti) = (Vec::new(), Vec::new());
    for i in 0..a.boots.max(1) {
        for (which, kernel) in [("bzimage", reference), ("packed", image)] {
            let spec = BootSpec::systemd_boot(
                format!("bench-{release}-{which}-{i}"),
                fw,
                kernel,
                Some(fx.initramfs.clone()),
                "console=ttyS0",
            );
            let out = qemu::run(fx, &spec)?;
            let t = out
                .time_to_report
                .filter(|_| out.report.as_ref().is_some_and(|r| r.end))
                .with_context(|| {
                    format!(
                        "{release} {which} boot {i}: no report ({})",
                        out.log_path.display()
                    )
                })?;
            eprintln!("bench: boot {release} {which} {i}: {:.2} s", secs(t));
            if which == "bzimage" { &mut tb } else { &mut ti }.push(secs(t));
        }
    }
    let ratios: Vec<f64> = ti.iter().zip(&tb).map(|(i, b)| ratio(*i, *b)).collect();
    let per_pair: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    Ok(Row {
        section: "4 boot time",
        name: format!(
            "{} image / Debian {release} bzImage (QEMU start -> init report)",
            a.boot_codec
        ),
        value: median(&ti),
        reference: median(&tb),
        unit: "s",
        ratio: median(&ratios),
        goal: Some(("<=", goal)),
        note: format!(
            "{fw}, systemd-boot, median of {} alternating pairs ({})",
            ratios.len(),
            per_pair.join(", ")
        ),
    })
}

pub fn run(a: &BenchArgs) -> Result<()> {
    if cfg!(debug_assertions) && std::env::var_os("ZBOOT_BENCH_CHILD").is_none() {
        return rerun_optimized();
    }
    let mut b = Bench::new(a)?;
    if a.stage_only {
        b.pre_kernel_stage(a)?;
        return b.write();
    }
    let (images, pack_times) = b.pack_every_codec(a)?;
    let (stored, stream) = b.stored_streams(&images)?;
    if !a.no_cli {
        b.pack_time(&pack_times, &stored)?;
    }
    b.decode_throughput(a, &images, &stored, &stream)?;
    b.stub_sizes()?;
    if !a.no_boot {
        b.boot_time(a, &images)?;
        b.in_firmware(a, &images)?;
        if !a.no_stage {
            b.pre_kernel_stage(a)?;
        }
    }
    b.write()
}

/// Timings of an unoptimized build mean nothing: re-runs the bench under `[profile.bench]`.
fn rerun_optimized() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    eprintln!(
        "bench: cargo run --profile bench -p xtask -- {}",
        args.join(" ")
    );
    let st = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["run", "--quiet", "--profile", "bench", "-p", "xtask", "--"])
        .args(&args)
        .env("ZBOOT_BENCH_CHILD", "1")
        .current_dir(crate::workspace_root())
        .status()?;
    ensure!(st.success(), "bench failed");
    Ok(())
}

/// One packed image: its codec's name, the codec, the file.
type Packed = (String, Codec, PathBuf);

/// How long packing one codec took: its name, the codec, the time.
type PackTime = (String, Codec, Duration);

/// One bench run: its inputs, and the rows and commands it has gathered.
struct Bench {
    fx: Fixtures,
    packer: PathBuf,
    /// `<target>/bench`: every image, stream and result file.
    dir: PathBuf,
    /// Debian's bzImage, the reference of sections 1 and 4, and its size.
    bz: PathBuf,
    bz_len: f64,
    rows: Vec<Row>,
    commands: Vec<String>,
}

impl Bench {
    fn new(a: &BenchArgs) -> Result<Bench> {
        let fx = Fixtures::load()?;
        let packer = crate::demo::build_packer()?;
        let dir = qemu::target_dir().join("bench");
        std::fs::create_dir_all(&dir)?;
        let bz = fx.kernel.vmlinuz.clone();
        let bz_len = std::fs::metadata(&bz)?.len() as f64;
        let commands = vec![format!(
            "cargo xtask bench --codecs {} --boot-codec {} --reps {} --boots {} --stage-codecs {}{}{}{}{}",
            a.codecs.join(","),
            a.boot_codec,
            a.reps,
            a.boots,
            a.stage_codecs.join(","),
            if a.no_boot { " --no-boot" } else { "" },
            if a.no_cli { " --no-cli" } else { "" },
            if a.no_stage { " --no-stage" } else { "" },
            if a.stage_only { " --stage-only" } else { "" }
        )];
        Ok(Bench {
            fx,
            packer,
            dir,
            bz,
            bz_len,
            rows: Vec::new(),
            commands,
        })
    }

    /// Sections 1 and 5b: packs every codec; image size and packer peak memory.
    fn pack_every_codec(&mut self, a: &BenchArgs) -> Result<(Vec<Packed>, Vec<PackTime>)> {
        let (packer, dir, bz, bz_len) = (&self.packer, &self.dir, &self.bz, self.bz_len);
        let (rows, commands) = (&mut self.rows, &mut self.commands);
        let mut images = Vec::new();
        let mut pack_times = Vec::new();
        for name in &a.codecs {
            let codec = codec_of(name)?;
            let out = dir.join(format!("bzImage-{name}.efi"));
            let mut cmd = Command::new(packer);
            cmd.arg("-q")
                .arg(bz)
                .arg("-o")
                .arg(&out)
                .args(["--codec", name]);
            commands.push(format!(
                "zboot-pack -q {} -o {} --codec {name}",
                bz.display(),
                out.display()
            ));
            eprintln!("bench: packing {name}");
            let (t, rss) = run_measured(&mut cmd, None)?;
            let len = std::fs::metadata(&out)?.len() as f64;
            let goal = match codec {
                Codec::Xz => Some(("<=", 1.0)),
                Codec::Zstd => Some(("<=", 1.10)),
                _ => None,
            };
            rows.push(Row {
                section: "1 image size",
                name: format!("{name} image / bzImage"),
                value: len,
                reference: bz_len,
                unit: "B",
                ratio: ratio(len, bz_len),
                goal,
                note: String::new(),
            });
            rows.push(Row {
                section: "5 packer memory",
                name: format!("{name} peak RSS / input"),
                value: rss as f64,
                reference: bz_len,
                unit: "B",
                ratio: ratio(rss as f64, bz_len),
                goal: None,
                note: "input = the bzImage (decodes to a 65.9 MB vmlinux)".into(),
            });
            pack_times.push((name.clone(), codec, t));
            images.push((name.clone(), codec, out));
        }
        Ok((images, pack_times))
    }

    /// Each image's stored stream (what its codec compresses: filters applied), decoded with
    /// the C reference, and the kernel's decoded stream (filters undone), which must be the
    /// same for every codec.
    fn stored_streams(&self, images: &[Packed]) -> Result<(Vec<PathBuf>, Vec<u8>)> {
        let dir = &self.dir;
        let mut stored = Vec::new();
        let mut stream: Option<Vec<u8>> = None;
        for (name, codec, path) in images {
            let img = load_pe(&std::fs::read(path)?)?;
            let p = zboot_stub::payload::locate(&img).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let mut s = vec![0u8; p.header.uncompressed_size as usize];
            c_decode(*codec, p.compressed, &mut s)?;
            let stored_path = dir.join(format!("stored-{name}.bin"));
            std::fs::write(&stored_path, &s)?;
            let mut plain = s;
            zboot_format::filters::undo(
                p.header.flags,
                zboot_format::filters::Span::of(&p.header),
                &mut plain,
            );
            match &stream {
                None => stream = Some(plain),
                Some(first) => ensure!(*first == plain, "{name} image holds another kernel stream"),
            }
            stored.push(stored_path);
        }
        let stream = stream.context("no codec")?;
        Ok((stored, stream))
    }

    /// Section 3: pack time / the reference CLI compressing the same stored stream (the
    /// packer's time includes decoding the bzImage and applying the filters).
    fn pack_time(&mut self, pack_times: &[PackTime], stored: &[PathBuf]) -> Result<()> {
        let dir = &self.dir;
        let (rows, commands) = (&mut self.rows, &mut self.commands);
        for ((name, codec, t_pack), stored_path) in pack_times.iter().zip(stored) {
            let (prog, args): (&str, Vec<&str>) = match codec {
                Codec::Zstd => ("zstd", vec!["-19", "-T2", "-q", "-c", "--content-size"]),
                Codec::Xz => (
                    "xz",
                    vec![
                        "-q",
                        "-c",
                        "-T1",
                        "--check=crc32",
                        "--x86",
                        "--lzma2=preset=9e,dict=32MiB,lc=4,lp=0,depth=0",
                    ],
                ),
                Codec::Gzip => ("gzip", vec!["-9", "-n", "-c"]),
                Codec::Lz4 => ("lz4", vec!["-12", "-l", "-q", "-c"]),
                Codec::None => continue,
            };
            let out = dir.join(format!("ref-{name}.out"));
            let mut cmd = Command::new(prog);
            cmd.args(&args).arg(stored_path);
            commands.push(format!(
                "{prog} {} {} > {}",
                args.join(" "),
                stored_path.display(),
                out.display()
            ));
            match run_measured(&mut cmd, Some(&out)) {
                Ok((t_ref, _)) => {
                    let ref_len = std::fs::metadata(&out)?.len();
                    rows.push(Row {
                        section: "3 pack time",
                        name: format!("zboot-pack --codec {name} / {prog} CLI"),
                        value: secs(*t_pack),
                        reference: secs(t_ref),
                        unit: "s",
                        ratio: ratio(secs(*t_pack), secs(t_ref)),
                        goal: Some(("<=", 1.1)),
                        note: format!(
                            "packer time includes decoding the bzImage; CLI output {ref_len} B"
                        ),
                    });
                }
                Err(e) => eprintln!("bench: {prog}: {e:#} (install it: apt-get install {prog})"),
            }
        }
        Ok(())
    }

    /// Section 2: host decode throughput, stub code vs C reference, alternating; the stub's
    /// other work around decoding (stream checksum, undoing the filters); for zstd and lz4 also
    /// the Rust decoders the stub carried before libzstd's and liblz4's.
    fn decode_throughput(
        &mut self,
        a: &BenchArgs,
        images: &[Packed],
        stored: &[PathBuf],
        stream: &[u8],
    ) -> Result<()> {
        let rows = &mut self.rows;
        for ((name, codec, path), stored_path) in images.iter().zip(stored) {
            let img = load_pe(&std::fs::read(path)?)?;
            let p = zboot_stub::payload::locate(&img).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let want = std::fs::read(stored_path)?;
            let mut dst = vec![0u8; want.len()];
            let (mut ts, mut tc, mut tr) = (Vec::new(), Vec::new(), Vec::new());
            let (mut thc, mut tf) = (Vec::new(), Vec::new());
            for _ in 0..a.reps.max(1) {
                dst.fill(0);
                let t = Instant::now();
                zboot_stub::decode::decode(*codec, p.compressed, &mut dst)
                    .map_err(|e| anyhow::anyhow!("stub {name}: {e}"))?;
                ts.push(secs(t.elapsed()));
                ensure!(dst == want, "stub {name} decoded other bytes");
                dst.fill(0);
                let t = Instant::now();
                c_decode(*codec, p.compressed, &mut dst)?;
                tc.push(secs(t.elapsed()));
                ensure!(dst == want, "C {name} decoded other bytes");
                if let Some((alt_name, alt)) = rust_alternative(*codec) {
                    dst.fill(0);
                    let t = Instant::now();
                    alt(p.compressed, &mut dst).map_err(|e| anyhow::anyhow!("{alt_name}: {e}"))?;
                    tr.push(secs(t.elapsed()));
                    ensure!(dst == want, "{alt_name} decoded other bytes");
                }
                let t = Instant::now();
                std::hint::black_box(p.header.stream_intact(p.compressed));
                thc.push(secs(t.elapsed()));
                let t = Instant::now();
                zboot_format::filters::undo(
                    p.header.flags,
                    zboot_format::filters::Span::of(&p.header),
                    &mut dst,
                );
                tf.push(secs(t.elapsed()));
                ensure!(dst == stream, "{name}: filters undone give another stream");
            }
            let (s, c) = (median(&ts), median(&tc));
            let reference = match codec {
                Codec::Zstd => "libzstd",
                Codec::Xz => "liblzma",
                Codec::Gzip => "flate2/zlib-rs",
                Codec::Lz4 => "liblz4",
                Codec::None => "memcpy",
            };
            let mbps = |t: f64| ratio(want.len() as f64, t) / 1e6;
            rows.push(Row {
                section: "2 decode throughput",
                name: format!("stub {name} / {reference}"),
                value: mbps(s),
                reference: mbps(c),
                unit: "MB/s",
                ratio: ratio(c, s),
                goal: Some((">=", 0.8)),
                note: format!("host build of the stub's decoder, median of {}", ts.len()),
            });
            if let (false, Some((alt_name, _))) = (tr.is_empty(), rust_alternative(*codec)) {
                rows.push(Row {
                    section: "2 decode throughput",
                    name: format!("{alt_name} / {reference}"),
                    value: mbps(median(&tr)),
                    reference: mbps(c),
                    unit: "MB/s",
                    ratio: ratio(c, median(&tr)),
                    goal: None,
                    note: "the pure-Rust alternative, not in the shipped stub".into(),
                });
            }
            rows.push(Row {
                section: "2 stub extra work",
                name: format!("{name}: stream checksum + filters / stub decode"),
                value: median(&thc) + median(&tf),
                reference: s,
                unit: "s",
                ratio: ratio(median(&thc) + median(&tf), s),
                goal: None,
                note: format!(
                    "stream checksum {:.3} s, filters {:#x} {:.3} s",
                    median(&thc),
                    p.header.flags.0,
                    median(&tf)
                ),
            });
        }
        Ok(())
    }

    /// Section 5: embedded stub size per codec.
    fn stub_sizes(&mut self) -> Result<()> {
        let rows = &mut self.rows;
        for (name, path) in stub_files() {
            let len = std::fs::metadata(&path)?.len() as f64;
            let goal = stub_goal(&name);
            rows.push(Row {
                section: "5 stub size",
                name: format!("{name} stub / {} KiB", goal >> 10),
                value: len,
                reference: goal as f64,
                unit: "B",
                ratio: ratio(len, goal as f64),
                goal: (name != "all").then_some(("<=", 1.0)),
                note: if name == "all" {
                    "every decoder (EMBEDDED_STUB, --stub default before per-codec stubs)".into()
                } else {
                    String::new()
                },
            });
        }
        Ok(())
    }

    /// Section 4: whole boot time of the boot codec's image against Debian's bzImage, and the
    /// same on a current kernel whose own bzImage is zstd (its EFI stub decodes in the EFI
    /// context as ours does): the lead over an xz bzImage is not the whole story.
    fn boot_time(&mut self, a: &BenchArgs, images: &[Packed]) -> Result<()> {
        let (fx, packer, dir, bz) = (&self.fx, &self.packer, &self.dir, &self.bz);
        let (rows, commands) = (&mut self.rows, &mut self.commands);
        let fw = Firmware::Ovmf2025StrictNx;
        let default_img = images
            .iter()
            .find(|(n, _, _)| *n == a.boot_codec)
            .map(|(_, _, p)| p.clone());
        // The same comparison on a current kernel whose own bzImage is zstd (its EFI stub
        // decodes in the EFI context as ours does): the lead over an xz bzImage is not the
        // whole story.
        let bz612 = fx.kernel612.vmlinuz.clone();
        let img612 = dir.join(format!("bzImage-612-{}.efi", a.boot_codec));
        let mut cmd = Command::new(packer);
        cmd.arg("-q").arg(&bz612).arg("-o").arg(&img612);
        cmd.args(["--codec", &a.boot_codec]);
        commands.push(format!(
            "zboot-pack -q {} -o {} --codec {}",
            bz612.display(),
            img612.display(),
            a.boot_codec
        ));
        run_measured(&mut cmd, None)?;
        if let Some(img) = &default_img {
            let refs = [
                (fx.kernel.release.as_str(), bz, img, GOAL_BOOT_XZ),
                (
                    fx.kernel612.release.as_str(),
                    &bz612,
                    &img612,
                    GOAL_BOOT_ZSTD,
                ),
            ];
            for (release, reference, image, goal) in refs {
                rows.push(boot_ratio(fx, fw, a, release, reference, image, goal)?);
            }
        }
        Ok(())
    }

    /// Section 0: the pre-kernel stage in guest instructions (stage.rs) of each stage codec's
    /// image against Debian's own bzImage of the same kernel, for both kernels; then, for the
    /// default codec on the current kernel, the stub's own steps from `efi=debug` in the same
    /// counted time.
    fn pre_kernel_stage(&mut self, a: &BenchArgs) -> Result<()> {
        let (fx, packer, dir) = (&self.fx, &self.packer, &self.dir);
        let (rows, commands) = (&mut self.rows, &mut self.commands);
        let fw = Firmware::Ovmf2025StrictNx;
        let app = std::fs::read(build_stub_variant("stage-baseline")?)?;
        let mut debug_image = None;
        for (kernel, current) in [(&fx.kernel612, true), (&fx.kernel, false)] {
            let (release, bz) = (kernel.release.as_str(), &kernel.vmlinuz);
            let bz_len = std::fs::metadata(bz)?.len();
            let reference = stage::measure(fx, fw, &app, bz, dir, &format!("{release}-bzimage"))?;
            for codec in &a.stage_codecs {
                let img = dir.join(format!("stage-{release}-{codec}.efi"));
                let mut cmd = Command::new(packer);
                cmd.arg("-q").arg(bz).arg("-o").arg(&img);
                cmd.args(["--codec", codec]);
                commands.push(format!(
                    "zboot-pack -q {} -o {} --codec {codec}",
                    bz.display(),
                    img.display()
                ));
                run_measured(&mut cmd, None)?;
                let s = stage::measure(fx, fw, &app, &img, dir, &format!("{release}-{codec}"))?;
                let len = std::fs::metadata(&img)?.len();
                let default = codec == DEFAULT_CODEC;
                if default && current {
                    debug_image = Some((release, img.clone(), s));
                }
                rows.push(Row {
                    section: "0 pre-kernel stage",
                    name: format!(
                        "{codec} image / Debian {release} bzImage: guest instructions before the \
                         kernel's clock, baseline subtracted"
                    ),
                    value: s.instructions() / 1e6,
                    reference: reference.instructions() / 1e6,
                    unit: "M instr",
                    ratio: ratio(s.instructions(), reference.instructions()),
                    goal: (default && current).then_some(("<=", GOAL_STAGE_612)),
                    note: format!(
                        "{fw}, systemd-boot, -icount shift={},sleep=off, `{}`; image {len} B = \
                         {:.3} of the bzImage's {bz_len} B; guest ms {:.1} / {:.1} (baselines \
                         {:.1} / {:.1} ms subtracted)",
                        stage::ICOUNT_SHIFT,
                        stage::OPTIONS,
                        ratio(len as f64, bz_len as f64),
                        s.ns() as f64 / 1e6,
                        reference.ns() as f64 / 1e6,
                        s.baseline_ns as f64 / 1e6,
                        reference.baseline_ns as f64 / 1e6,
                    ),
                });
            }
        }
        let Some((release, img, s)) = debug_image else {
            return Ok(());
        };
        let options = format!("{} efi=debug", stage::OPTIONS);
        let spec = stage::spec(fx, &format!("stage-{release}-debug"), fw, &img, &options);
        let out = qemu::run(fx, &spec)?;
        let r = parse_stub_report(&out.log);
        // Guest ms to M instructions: 1e6 ns per ms, 1e6 instructions per M.
        let instr = |ms: Option<u64>| ms.map(|m| m as f64 / stage::ns_per_instruction());
        if let Some(unpack) = instr(r.unpack_ms()) {
            rows.push(Row {
                section: "0 pre-kernel stage",
                name: format!(
                    "{DEFAULT_CODEC} image, Debian {release}: the stub's check + decode + filters / \
                     the whole stage"
                ),
                value: unpack,
                reference: s.instructions() / 1e6,
                unit: "M instr",
                ratio: ratio(unpack, s.instructions() / 1e6),
                goal: None,
                note: format!(
                    "the stub's efi=debug lines (`{options}`, a boot of its own): check {:.0}, \
                     decode {:.0}, filters {:.0} M instructions by the stub's clock, which it \
                     calibrates against the firmware's 10 ms Stall and which reads about 5 % \
                     fast under -icount: shares of the stage, not a second count",
                    instr(r.check_ms).unwrap_or(f64::NAN),
                    instr(r.decode_ms).unwrap_or(f64::NAN),
                    instr(r.filters_ms).unwrap_or(f64::NAN),
                ),
            });
        } else {
            eprintln!(
                "bench: {release}: no stub timings in {}",
                out.log_path.display()
            );
        }
        Ok(())
    }

    /// In firmware, per codec (the stub's efi=debug lines).
    fn in_firmware(&mut self, a: &BenchArgs, images: &[Packed]) -> Result<()> {
        let (fx, packer, dir, bz) = (&self.fx, &self.packer, &self.dir, &self.bz);
        let rows = &mut self.rows;
        let fw = Firmware::Ovmf2025StrictNx;
        let bz612 = fx.kernel612.vmlinuz.clone();
        // In firmware, per codec (the stub's efi=debug lines): unpack time (stream checksum +
        // decode + filters) against the default codec's, and the peak of what the stub holds
        // besides the kernel region and initrd (it decodes in place: only decoder state).
        // The debug boots run stubs built by the bench with the `memstats` counters (the
        // embedded ones carry none): one per codec, the pure-Rust decoders' stubs, and the
        // boot codec's for the 6.12 kernel. The counters sit in the allocation paths only.
        let mut debug_imgs: Vec<(String, PathBuf)> = Vec::new();
        let mut variants: Vec<(String, &Path, &str, String)> = images
            .iter()
            .map(|(n, _, _)| (n.clone(), bz.as_path(), n.as_str(), n.clone()))
            .collect();
        for (name, codec, _) in images {
            if rust_alternative(*codec).is_some() {
                // The same kernel behind the pure-Rust decoder's stub: the C-vs-Rust figure.
                let variant = format!("{name}-rust");
                variants.push((variant.clone(), bz.as_path(), name.as_str(), variant));
            }
        }
        variants.push((
            format!("{}-{}", fx.kernel612.release, a.boot_codec),
            bz612.as_path(),
            a.boot_codec.as_str(),
            a.boot_codec.clone(),
        ));
        for (label, kernel, codec, features) in variants {
            let stub = build_stub_variant(&format!("{features},memstats"))?;
            let out = dir.join(format!("debug-{label}.efi"));
            let mut cmd = Command::new(packer);
            cmd.arg("-q").arg(kernel).arg("-o").arg(&out);
            cmd.args(["--codec", codec, "--stub"]).arg(&stub);
            run_measured(&mut cmd, None)?;
            debug_imgs.push((label, out));
        }
        let mut reports = Vec::new();
        for (name, img) in &debug_imgs {
            let spec = BootSpec::systemd_boot(
                format!("bench-debug-{name}"),
                fw,
                img,
                Some(fx.initramfs.clone()),
                "console=ttyS0 efi=debug",
            );
            let out = qemu::run(fx, &spec)?;
            let r = parse_stub_report(&out.log);
            if r.unpack_ms().is_none() {
                eprintln!(
                    "bench: {name}: no stub timings in {}",
                    out.log_path.display()
                );
            }
            reports.push((name.clone(), r));
        }
        let base = reports
            .iter()
            .find(|(n, _)| *n == a.boot_codec)
            .and_then(|(_, r)| r.unpack_ms());
        for (name, r) in &reports {
            let detail = format!(
                "stream check {:?} ms, decode {:?} ms, filters {:?} ms",
                r.check_ms, r.decode_ms, r.filters_ms
            );
            if let (Some(u), Some(b)) = (r.unpack_ms(), base) {
                rows.push(Row {
                    section: "4 in-firmware",
                    name: format!("{name}: stub unpack / {} stub unpack", a.boot_codec),
                    value: u as f64 / 1e3,
                    reference: b as f64 / 1e3,
                    unit: "s",
                    ratio: ratio(u as f64, b as f64),
                    goal: None,
                    note: format!("{fw}, TCG, efi=debug; {detail}"),
                });
            }
            if let (Some(peak), Some(payload)) = (r.peak_bytes, r.payload_bytes) {
                rows.push(Row {
                    section: "5 boot memory",
                    name: format!("{name}: stub peak beyond kernel+initrd / kernel+initrd"),
                    value: peak as f64,
                    reference: payload as f64,
                    unit: "B",
                    ratio: ratio(peak as f64, payload as f64),
                    goal: None,
                    note: format!(
                        "heap peak {} B; pages + heap the stub held at once, besides the region \
                     it decodes into and the initrd",
                        r.peak_heap.unwrap_or(0)
                    ),
                });
            }
        }
        Ok(())
    }

    /// Prints the table and writes `results.json` and `results.md`.
    fn write(&self) -> Result<()> {
        let table = to_table(&self.rows);
        println!("{table}");
        let path = self.dir.join("results.json");
        std::fs::write(&path, to_json(&self.rows, &self.commands))?;
        std::fs::write(self.dir.join("results.md"), &table)?;
        println!("bench: wrote {}", path.display());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_ratio() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
        assert_eq!(ratio(1.0, 4.0), 0.25);
        assert!(ratio(1.0, 0.0).is_nan());
    }

    fn row(goal: Option<(&'static str, f64)>, ratio: f64) -> Row {
        Row {
            section: "s",
            name: "a \"b\"".into(),
            value: 10.0,
            reference: 4.0,
            unit: "B",
            ratio,
            goal,
            note: "x\ny".into(),
        }
    }

    #[test]
    fn goals() {
        assert_eq!(row(Some(("<=", 1.0)), 0.99).met(), Some(true));
        assert_eq!(row(Some(("<=", 1.0)), 1.01).met(), Some(false));
        assert_eq!(row(Some((">=", 0.8)), 0.81).met(), Some(true));
        assert_eq!(row(None, 0.5).met(), None);
    }

    #[test]
    fn json_is_well_formed() {
        let j = to_json(
            &[row(Some(("<=", 1.0)), 2.5), row(None, f64::NAN)],
            &["cargo xtask bench".into()],
        );
        let v: serde_json::Value = serde_json::from_str(&j).expect("valid JSON");
        let r = &v["rows"];
        assert_eq!(r[0]["name"], "a \"b\"");
        assert_eq!(r[0]["note"], "x\ny");
        assert_eq!(r[0]["ratio"], 2.5);
        assert_eq!(r[0]["goal"], "<= 1");
        assert_eq!(r[0]["met"], false);
        assert_eq!(r[0]["value"], 10.0);
        assert!(r[1]["ratio"].is_null() && r[1]["goal"].is_null() && r[1]["met"].is_null());
        assert_eq!(v["commands"][0], "cargo xtask bench");
    }

    #[test]
    fn stub_report() {
        let log = "zboot: payload zstd 1 -> 2 bytes\r\nzboot: stream sha256 ok in 350 ms\r\n\
                   zboot: decoded 61739008 bytes in 1834 ms\r\n\
                   zboot: filters 0xf undone in 120 ms\r\n\
                   zboot: memory: peak 266240 bytes beyond kernel+initrd (163840 heap), \
                   kernel+initrd 65011712 bytes\r\n";
        let r = parse_stub_report(log);
        assert_eq!(
            r,
            StubReport {
                check_ms: Some(350),
                decode_ms: Some(1834),
                filters_ms: Some(120),
                peak_bytes: Some(266240),
                peak_heap: Some(163840),
                payload_bytes: Some(65011712),
            }
        );
        assert_eq!(r.unpack_ms(), Some(2304));
        assert_eq!(parse_stub_report("nothing"), StubReport::default());
    }

    #[test]
    fn table_marks_misses() {
        let t = to_table(&[row(Some(("<=", 1.0)), 2.5)]);
        assert!(t.contains("| NO |"), "{t}");
        assert!(t.contains("2.500"));
    }
}

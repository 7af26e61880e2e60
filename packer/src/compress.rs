//! Compression of the payload stream and decoding of any codec the packer meets (its own payloads
//! and the payloads of Linux bzImage and zboot images).

use std::io::{IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use zboot_format::Codec;

pub use zboot_format::codec::{LZ4_LEGACY_BLOCK, LZ4_LEGACY_MAGIC};
/// Threads for zstd. Fixed (not the machine's core count) so output is the same everywhere.
pub const ZSTD_WORKERS: u32 = 2;
/// Decoders refuse to produce more than this (guards against decompression bombs).
pub const MAX_DECODED: u64 = (1 << 30) + (64 << 20);

/// Default level of each codec.
pub fn default_level(codec: Codec) -> u32 {
    match codec {
        Codec::Zstd => 19,
        Codec::Xz => 9,
        Codec::Gzip => 9,
        Codec::Lz4 => 12,
        Codec::None => 0,
    }
}

/// Accepted level range of each codec.
pub fn level_range(codec: Codec) -> (u32, u32) {
    match codec {
        Codec::Zstd => (1, 22),
        Codec::Xz => (0, 9),
        Codec::Gzip => (1, 9),
        Codec::Lz4 => (3, 12),
        Codec::None => (0, 0),
    }
}

/// Progress reporting on stderr, only when stderr is a terminal.
pub struct Progress {
    enabled: bool,
    label: String,
    total: u64,
    start: Instant,
    last: Instant,
}

impl Progress {
    pub fn new(label: &str, total: u64, allowed: bool) -> Self {
        let now = Instant::now();
        Progress {
            enabled: allowed && std::io::stderr().is_terminal(),
            label: label.to_string(),
            total: total.max(1),
            start: now,
            last: now,
        }
    }
    fn update(&mut self, done: u64) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(250) {
            return;
        }
        // Only long compressions get a progress line.
        if self.start.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last = Instant::now();
        eprint!("\r{}: {:3}%", self.label, done * 100 / self.total);
    }
    fn finish(&mut self) {
        if self.enabled && self.start.elapsed() >= Duration::from_secs(1) {
            eprintln!("\r{}: 100%", self.label);
        }
    }
}

fn feed<W: Write>(w: &mut W, data: &[u8], progress: &mut Progress) -> std::io::Result<()> {
    let mut done = 0u64;
    for chunk in data.chunks(1 << 20) {
        w.write_all(chunk)?;
        done += chunk.len() as u64;
        progress.update(done);
    }
    Ok(())
}

/// Whether the packer runs the x86 BCJ filter over the image before compressing it with
/// `codec` (payload flag `BCJ_X86`). xz carries the same filter inside its container; for the
/// others it buys a smaller image for one extra pass over the image at boot (docs/performance.md).
pub fn pre_filter(codec: Codec) -> bool {
    matches!(codec, Codec::Zstd | Codec::Gzip | Codec::Lz4)
}

/// Compress `data` with `codec` at `level`.
pub fn compress(codec: Codec, level: u32, data: &[u8], progress: &mut Progress) -> Result<Vec<u8>> {
    let out = match codec {
        Codec::None => data.to_vec(),
        Codec::Zstd => zstd_compress(level, data, progress)?,
        Codec::Xz => xz_compress(level, data, progress)?,
        Codec::Gzip => {
            let mut enc = flate2::GzBuilder::new()
                .mtime(0)
                .operating_system(3)
                .write(Vec::new(), flate2::Compression::new(level));
            feed(&mut enc, data, progress)?;
            enc.finish()?
        }
        Codec::Lz4 => lz4_legacy_compress(level, data, progress)?,
    };
    progress.finish();
    Ok(out)
}

fn zstd_compress(level: u32, data: &[u8], progress: &mut Progress) -> Result<Vec<u8>> {
    let mut enc = zstd::stream::Encoder::new(Vec::new(), level as i32)?;
    enc.multithread(ZSTD_WORKERS)?;
    enc.include_checksum(true)?;
    enc.include_contentsize(true)?;
    enc.set_pledged_src_size(Some(data.len() as u64))?;
    feed(&mut enc, data, progress)?;
    Ok(enc.finish()?)
}

/// Largest xz dictionary, as Linux's scripts/xz_wrap.sh for x86: on Debian 6.1's stream 32 MiB
/// gives a slightly *smaller* image than 64 MiB (8,010,340 vs 8,014,148 B with the xz CLI), and
/// the stub's xz decoder, which keeps a heap dictionary, needs half the boot-time memory.
const XZ_DICT_MAX: u64 = 32 << 20;

/// liblzma's LZMA_PRESET_EXTREME.
const LZMA_PRESET_EXTREME: u32 = 0x8000_0000;

fn xz_compress(level: u32, data: &[u8], progress: &mut Progress) -> Result<Vec<u8>> {
    use xz2::stream::{Check, Filters, LzmaOptions, Stream};
    let mut opts = LzmaOptions::new_preset(level | LZMA_PRESET_EXTREME)
        .map_err(|e| anyhow!("xz preset {level}: {e}"))?;
    // No bigger dictionary than the data needs (the decoder may size buffers from it).
    let want = (data.len() as u64)
        .next_power_of_two()
        .clamp(1 << 20, XZ_DICT_MAX) as u32;
    opts.dict_size(want.min(dict_size_of_preset(level)));
    // lc=4 (lc+lp <= 4 for LZMA2) suits x86 code: ~0.1% smaller than the preset's lc=3 on a
    // distro kernel; xz-embedded style decoders accept it.
    opts.literal_context_bits(4);
    opts.literal_position_bits(0);
    // liblzma's automatic match-finder depth beats the extreme preset's 512 here (smaller, faster).
    opts.depth(0);
    let mut filters = Filters::new();
    filters.x86();
    filters.lzma2(&opts);
    let stream = Stream::new_stream_encoder(&filters, Check::Crc32)
        .map_err(|e| anyhow!("xz encoder: {e}"))?;
    let mut enc = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
    feed(&mut enc, data, progress)?;
    Ok(enc.finish()?)
}

fn dict_size_of_preset(level: u32) -> u32 {
    match level {
        0 => 256 << 10,
        1 => 1 << 20,
        2 => 2 << 20,
        3 | 4 => 4 << 20,
        5 | 6 => 8 << 20,
        7 => 16 << 20,
        8 => 32 << 20,
        _ => 64 << 20,
    }
}

/// Threads for the codecs whose blocks are independent (lz4 legacy frames). The output does not
/// depend on it.
fn block_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
}

/// Linux lz4 legacy format: independent 8 MiB blocks, compressed on every core.
fn lz4_legacy_compress(level: u32, data: &[u8], progress: &mut Progress) -> Result<Vec<u8>> {
    use lz4::block::{CompressionMode, compress};
    let chunks: Vec<&[u8]> = data.chunks(LZ4_LEGACY_BLOCK).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut blocks: Vec<Option<std::io::Result<Vec<u8>>>> = Vec::new();
    blocks.resize_with(chunks.len(), || None);
    let results = std::sync::Mutex::new(blocks);
    std::thread::scope(|s| {
        for _ in 0..block_threads().min(chunks.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(chunk) = chunks.get(i) else { break };
                    let mode = Some(CompressionMode::HIGHCOMPRESSION(level as i32));
                    let block = compress(chunk, mode, false);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(block);
                }
            });
        }
    });
    let mut out = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
    let mut done = 0u64;
    let blocks = results.into_inner().unwrap_or_else(|e| e.into_inner());
    for (block, chunk) in blocks.into_iter().zip(&chunks) {
        let block = block
            .context("lz4 block not compressed")?
            .context("lz4 compression")?;
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        out.extend_from_slice(&block);
        done += chunk.len() as u64;
        progress.update(done);
    }
    Ok(out)
}

fn read_limited(mut r: impl Read, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    (&mut r)
        .take(MAX_DECODED + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("corrupt {what} data"))?;
    if out.len() as u64 > MAX_DECODED {
        bail!("{what} data decodes to more than {MAX_DECODED} bytes");
    }
    Ok(out)
}

/// Drive a liblzma decoder until the end of its stream; bytes after it (Linux appends the
/// decoded size) are ignored.
fn run_lzma(mut stream: xz2::stream::Stream, data: &[u8], what: &str) -> Result<Vec<u8>> {
    use xz2::stream::{Action, Status};
    let mut out: Vec<u8> = Vec::with_capacity(data.len() * 4);
    loop {
        if out.len() == out.capacity() {
            if out.len() as u64 >= MAX_DECODED {
                bail!("{what} data decodes to more than {MAX_DECODED} bytes");
            }
            out.reserve(out.len().max(1 << 20));
        }
        let consumed = stream.total_in() as usize;
        let before = (stream.total_in(), stream.total_out());
        let status = stream
            .process_vec(&data[consumed..], &mut out, Action::Finish)
            .map_err(|e| anyhow!("corrupt {what} data: {e}"))?;
        if status == Status::StreamEnd {
            return Ok(out);
        }
        if (stream.total_in(), stream.total_out()) == before && out.len() < out.capacity() {
            bail!("corrupt {what} data: truncated stream");
        }
    }
}

/// Decode a stream of a known codec.
pub fn decompress(codec: Codec, data: &[u8]) -> Result<Vec<u8>> {
    match codec {
        Codec::None => Ok(data.to_vec()),
        Codec::Gzip => read_limited(flate2::read::GzDecoder::new(data), "gzip"),
        Codec::Zstd => {
            let dec = zstd::stream::read::Decoder::with_buffer(data)?.single_frame();
            read_limited(dec, "zstd")
        }
        Codec::Xz => {
            let stream = xz2::stream::Stream::new_stream_decoder(MAX_DECODED, 0)
                .map_err(|e| anyhow!("xz decoder: {e}"))?;
            run_lzma(stream, data, "xz")
        }
        Codec::Lz4 => lz4_legacy_decompress(data),
    }
}

fn lz4_legacy_decompress(data: &[u8]) -> Result<Vec<u8>> {
    let mut rest = data
        .strip_prefix(&LZ4_LEGACY_MAGIC.to_le_bytes()[..])
        .ok_or_else(|| anyhow!("not an lz4 legacy stream"))?;
    let mut out = Vec::new();
    while rest.len() >= 4 {
        let size = u32::from_le_bytes(rest[..4].try_into().unwrap());
        if size == LZ4_LEGACY_MAGIC {
            rest = &rest[4..];
            continue;
        }
        let size = size as usize;
        if size > rest.len() - 4 {
            // Linux appends the uncompressed size (le32) after the stream.
            break;
        }
        let block = lz4::block::decompress(&rest[4..4 + size], Some(LZ4_LEGACY_BLOCK as i32))
            .context("corrupt lz4 data")?;
        out.extend_from_slice(&block);
        if out.len() as u64 > MAX_DECODED {
            bail!("lz4 data decodes to more than {MAX_DECODED} bytes");
        }
        rest = &rest[4 + size..];
    }
    Ok(out)
}

/// Decode a Linux-style compressed payload whose codec is known only by its magic.
/// Returns the codec name and the decoded bytes.
pub fn decode_any(data: &[u8]) -> Result<(&'static str, Vec<u8>)> {
    if data.starts_with(&[0x1f, 0x8b]) {
        Ok(("gzip", decompress(Codec::Gzip, data)?))
    } else if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Ok(("xz", decompress(Codec::Xz, data)?))
    } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(("zstd", decompress(Codec::Zstd, data)?))
    } else if data.starts_with(&LZ4_LEGACY_MAGIC.to_le_bytes()) {
        Ok(("lz4", decompress(Codec::Lz4, data)?))
    } else if data.starts_with(&[0x5d, 0, 0]) {
        let stream = xz2::stream::Stream::new_lzma_decoder(MAX_DECODED)
            .map_err(|e| anyhow!("lzma decoder: {e}"))?;
        Ok(("lzma", run_lzma(stream, data, "lzma")?))
    } else if data.starts_with(b"BZh") {
        bail!("bzip2-compressed payloads are not supported")
    } else if data.starts_with(&[0x89, b'L', b'Z', b'O']) {
        bail!("lzo-compressed payloads are not supported")
    } else if data.starts_with(b"\x7fELF") {
        Ok(("none", data.to_vec()))
    } else {
        bail!(
            "unknown compression (magic {:02x?})",
            &data[..data.len().min(6)]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..(LZ4_LEGACY_BLOCK + 5000) as u32 {
            v.push((i % 251) as u8 ^ (i >> 13) as u8);
        }
        v
    }

    #[test]
    fn every_codec_round_trips() {
        let data = sample();
        for codec in Codec::ALL {
            let level = if codec == Codec::Zstd {
                3
            } else {
                default_level(codec).min(6)
            };
            let mut p = Progress::new("t", data.len() as u64, false);
            let c = compress(codec, level, &data, &mut p).unwrap();
            assert_eq!(decompress(codec, &c).unwrap(), data, "{codec:?}");
            if codec != Codec::None {
                assert_eq!(decode_any(&c).unwrap().1, data, "{codec:?}");
            }
        }
    }

    /// Code-like bytes: a real x86_64 ELF from the machine (this test binary) when readable.
    fn code_sample() -> Vec<u8> {
        let mut v = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        v.truncate(4 << 20);
        v
    }

    /// `xz --format=raw` with `filters` (liblzma through the xz CLI, which has raw mode).
    fn xz_raw(filters: &[&str], decompress: bool, input: &[u8]) -> Vec<u8> {
        use std::process::{Command, Stdio};
        let mut cmd = Command::new("xz");
        cmd.args(["--format=raw", "-c", "-q"]).args(filters);
        if decompress {
            cmd.arg("-d");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the xz CLI (xz-utils) is needed for this test");
        let mut stdin = child.stdin.take().unwrap();
        let data = input.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&data));
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(out.status.success(), "xz {filters:?} failed");
        out.stdout
    }

    /// zboot_format::bcj must produce exactly liblzma's x86 BCJ (the .xz filter 0x04), both
    /// ways: liblzma applies or undoes the filter, LZMA2 alone carries the bytes in between.
    #[test]
    fn bcj_matches_liblzma() {
        use zboot_format::bcj::{Direction, X86Bcj};
        let data = code_sample();
        let (bcj, plain) = (["--x86", "--lzma2=preset=0"], ["--lzma2=preset=0"]);
        let mut ours = data.clone();
        X86Bcj::run_all(Direction::Encode, &mut ours);
        assert_ne!(ours, data, "no branch converted: not a code sample");
        let theirs = xz_raw(&plain, true, &xz_raw(&bcj, false, &data));
        assert!(theirs == ours, "liblzma's BCJ encoder disagrees with ours");
        let back = xz_raw(&bcj, true, &xz_raw(&plain, false, &ours));
        assert!(
            back == data,
            "liblzma's BCJ decoder disagrees with our encoder"
        );
        let mut undone = ours;
        X86Bcj::run_all(Direction::Decode, &mut undone);
        assert!(undone == data);
    }

    #[test]
    fn lz4_blocks_are_8_mib() {
        let data = sample();
        let mut p = Progress::new("t", 0, false);
        let c = compress(Codec::Lz4, 9, &data, &mut p).unwrap();
        let first = u32::from_le_bytes(c[4..8].try_into().unwrap()) as usize;
        let block =
            lz4::block::decompress(&c[8..8 + first], Some(LZ4_LEGACY_BLOCK as i32)).unwrap();
        assert_eq!(block.len(), LZ4_LEGACY_BLOCK);
    }

    #[test]
    fn zstd_frame_has_content_size_and_checksum() {
        let data = sample();
        let mut p = Progress::new("t", 0, false);
        let c = compress(Codec::Zstd, 3, &data, &mut p).unwrap();
        let fhd = c[4];
        assert_ne!(fhd & 0xc0, 0, "frame content size flag");
        assert_ne!(fhd & 0x04, 0, "checksum flag");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in Codec::ALL {
            if codec != Codec::None {
                assert!(
                    decompress(codec, b"\x28\xb5\x2f\xfdgarbage").is_err() || codec == Codec::Lz4
                );
            }
        }
        assert!(decode_any(b"hello").is_err());
    }
}

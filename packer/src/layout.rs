//! From a [`KernelImage`] to the decoded payload stream and the header fields describing it:
//! segments flattened by physical address (first PT_LOAD at offset 0, gaps zero, bss not stored),
//! then the relocation table at a 4-byte aligned offset.

use anyhow::{Result, bail};
use zboot_format::header::{Arch, Flags, PayloadHeader, sha256};
use zboot_format::{Codec, MAX_KERNEL_MEM, X86_KERNEL_ALIGN, checksum};

use crate::align_up;
use crate::input::{KernelImage, relocs};

/// The decoded stream and the payload header's fields that describe it (the codec, the
/// compressed stream and the embedded parts are filled in by [`Layout::header`]).
#[derive(Clone, Debug)]
pub struct Layout {
    /// `image || zero padding to 4 || relocs`.
    pub stream: Vec<u8>,
    /// What the layout decides; `codec`, `compressed_size`, `stream_check` and the embedded
    /// parts' fields are placeholders.
    pub header: PayloadHeader,
}

/// Lay out `k`. `relocs_override` (from `--relocs`) replaces any table found in the input;
/// `protect_text` (`--protect-text` / `--no-protect-text`) overrides whether the kernel is known
/// to tolerate a read-only text at entry.
pub fn lay_out(
    k: &KernelImage,
    relocs_override: Option<&[u8]>,
    la57: bool,
    protect_text: Option<bool>,
) -> Result<Layout> {
    let Some(first) = k.segments.first() else {
        bail!("no PT_LOAD segment")
    };
    let base = first.paddr;
    let link_virt_base = first.vaddr;
    let alignment = k.facts.alignment.unwrap_or(X86_KERNEL_ALIGN);
    if !alignment.is_power_of_two() || alignment < 4096 {
        bail!("bad kernel alignment {alignment:#x}");
    }
    if base % alignment != 0 {
        bail!("first segment's physical address {base:#x} is not aligned to {alignment:#x}");
    }
    let image_size = k
        .segments
        .iter()
        .map(|s| s.paddr + s.data.len() as u64 - base)
        .max()
        .unwrap_or(0);
    let span = k
        .segments
        .iter()
        .map(|s| s.paddr + s.mem_size - base)
        .max()
        .unwrap_or(0);
    if image_size == 0 {
        bail!("the PT_LOAD segments hold no file bytes");
    }
    if span > MAX_KERNEL_MEM {
        bail!("absurd size: {span:#x} bytes in memory (limit 1 GiB)");
    }
    let mut stream = vec![0u8; image_size as usize];
    for s in &k.segments {
        let off = (s.paddr - base) as usize;
        stream[off..off + s.data.len()].copy_from_slice(&s.data);
    }
    let entry_offset = k.entry.checked_sub(base).filter(|&o| o < image_size);
    let Some(entry_offset) = entry_offset else {
        bail!("entry point {:#x} outside the kernel image", k.entry)
    };

    let table = relocs_override.or(k.relocs.as_deref());
    let mut flags = 0u16;
    let (relocs_offset, relocs_counts) = match table {
        Some(t) => {
            relocs::check(t, link_virt_base, image_size)?;
            let off = align_up(image_size, 4);
            stream.resize(off as usize, 0);
            stream.extend_from_slice(t);
            // Stored delta-coded: less than half the compressed size (docs/performance.md).
            flags |= Flags::RELOCS | Flags::RELOCS_DELTA;
            (off, relocs::counts(t))
        }
        None => (0, (0, 0, 0)),
    };
    if la57 || k.facts.la57 {
        flags |= Flags::LA57;
    }
    let mut mem_size = align_up(span, alignment).max(align_up(stream.len() as u64, alignment));
    if let Some(m) = k.facts.mem_size {
        mem_size = mem_size.max(align_up(m, alignment));
    }
    if mem_size > MAX_KERNEL_MEM {
        bail!("absurd size: the kernel needs {mem_size:#x} bytes of memory (limit 1 GiB)");
    }
    let (text_size, nx_end) = match (protect_text, k.facts.text_ro_source.is_some(), k.facts.text) {
        (Some(false), ..) | (None, false, _) => (0, 0),
        (_, _, Some(t)) => {
            flags |= Flags::TEXT_RO;
            let nx_end = t.nx_end.unwrap_or(mem_size).min(mem_size).max(t.size);
            (t.size as u32, nx_end as u32)
        }
        (Some(true), _, None) => bail!(
            "--protect-text: where the kernel's text ends is unknown (no .rodata section header)"
        ),
        (None, true, None) => (0, 0),
    };
    let (relocs_count64, relocs_count_inv32, relocs_count32) = relocs_counts;
    let header = PayloadHeader {
        arch: Arch::X86_64,
        codec: Codec::None,
        flags: Flags(flags),
        compressed_size: 0,
        uncompressed_size: stream.len() as u64,
        image_size,
        mem_size,
        alignment,
        preferred_address: base,
        entry_offset,
        link_virt_base,
        relocs_offset,
        relocs_count64,
        relocs_count_inv32,
        relocs_count32,
        xloadflags: k.facts.xloadflags,
        boot_protocol: k.facts.boot_protocol,
        cmdline_rva: 0,
        cmdline_size: 0,
        initrd_rva: 0,
        initrd_size: 0,
        text_size,
        nx_end,
        image_sha256: sha256(&[&stream]),
        stream_check: 0,
        cmdline_check: 0,
        initrd_check: 0,
    };
    Ok(Layout { stream, header })
}

/// Where the embedded command line and initrd sit, and their bytes (for the hash).
#[derive(Clone, Copy, Debug, Default)]
pub struct Embedded<'a> {
    pub cmdline: Option<(u32, &'a [u8])>,
    pub initrd: Option<(u32, &'a [u8])>,
}

impl Layout {
    /// The payload flags: the layout's, plus `BCJ_X86` when `bcj` — over the kernel's text only
    /// (`BCJ_TEXT`) when the layout knows where the text ends (`TEXT_RO`), else over the image.
    pub fn payload_flags(&self, bcj: bool) -> Flags {
        let flags = self.header.flags;
        match (bcj, flags.has(Flags::TEXT_RO)) {
            (false, _) => flags,
            (true, false) => Flags(flags.0 | Flags::BCJ_X86),
            (true, true) => Flags(flags.0 | Flags::BCJ_X86 | Flags::BCJ_TEXT),
        }
    }

    /// The stream as the codec sees it: [`Layout::stream`] with the filters named by `flags`
    /// applied.
    pub fn stored_stream(&self, flags: Flags) -> Vec<u8> {
        let mut s = self.stream.clone();
        zboot_format::filters::apply(flags, zboot_format::filters::Span::of(&self.header), &mut s);
        s
    }

    /// The payload header for this layout stored with `flags` (see [`Layout::payload_flags`]),
    /// compressed with `codec` to `compressed`, with the embedded parts where they were placed.
    pub fn header(
        &self,
        codec: Codec,
        flags: Flags,
        compressed: &[u8],
        embedded: Embedded,
    ) -> PayloadHeader {
        let cmd = embedded.cmdline.unwrap_or((0, &[]));
        let ird = embedded.initrd.unwrap_or((0, &[]));
        PayloadHeader {
            codec,
            flags,
            compressed_size: compressed.len() as u64,
            cmdline_rva: cmd.0,
            cmdline_size: cmd.1.len() as u32,
            initrd_rva: ird.0,
            initrd_size: ird.1.len() as u32,
            stream_check: checksum::of(compressed),
            cmdline_check: checksum::of(cmd.1),
            initrd_check: checksum::of(ird.1),
            ..self.header
        }
    }
}

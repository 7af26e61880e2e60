//! Small synthetic kernels for tests (unit and integration). Not part of the tool's behaviour.

use zboot_format::testdata::XorShift64;

/// ELF header size and program header entry size.
pub const EHDR: usize = 64;
pub const PHDR: usize = 56;
/// Offsets inside a program header.
pub const P_TYPE: usize = 0;
pub const P_PADDR: usize = 24;
pub const P_FILESZ: usize = 32;
pub const P_MEMSZ: usize = 40;

/// Physical and virtual base of the synthetic kernel.
pub const PADDR: u64 = 0x100_0000;
pub const VADDR: u64 = 0xffff_ffff_8100_0000;

/// Deterministic pseudo-random bytes that look a little like code (compressible, not trivially).
pub fn bytes(seed: u32, len: usize) -> Vec<u8> {
    let mut g = XorShift64::new(u64::from(seed) + 1);
    (0..len)
        .map(|i| {
            let x = g.next_u32();
            if i % 7 < 3 { 0 } else { (x % 61) as u8 }
        })
        .collect()
}

/// A relocation table whose entries lie inside the synthetic image.
pub fn relocs() -> Vec<u8> {
    let mut t = Vec::new();
    let lo = |off: u64| ((VADDR + off) as u32).to_le_bytes();
    for w in [
        [0u8; 4],
        lo(0x100),
        lo(0x108),
        [0; 4],
        lo(0x200),
        [0; 4],
        lo(0x300),
        lo(0x20_0010),
    ] {
        t.extend_from_slice(&w);
    }
    t
}

/// A vmlinux-like ELF: two PT_LOAD segments (text at 16 MiB, data + bss at 18 MiB, a gap between),
/// physical entry at +0x10, optionally with the relocation table appended.
pub fn vmlinux(with_relocs: bool) -> Vec<u8> {
    let segs: [(u64, u64, usize, u64, u32); 2] = [
        (PADDR, VADDR, 0x3000, 0x3000, 5),
        (PADDR + 0x20_0000, VADDR + 0x20_0000, 0x1000, 0x5000, 6),
    ];
    let data_start = 0x1000usize;
    let mut out = vec![0u8; data_start];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // ELFCLASS64
    out[5] = 1; // little-endian
    out[6] = 1; // EV_CURRENT
    out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[24..32].copy_from_slice(&(PADDR + 0x10).to_le_bytes()); // e_entry (physical)
    out[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    out[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes());
    out[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes());
    out[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
    let mut file_off = data_start;
    for (i, &(paddr, vaddr, filesz, memsz, flags)) in segs.iter().enumerate() {
        let ph = EHDR + i * PHDR;
        out[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        out[ph + 4..ph + 8].copy_from_slice(&flags.to_le_bytes());
        out[ph + 8..ph + 16].copy_from_slice(&(file_off as u64).to_le_bytes());
        out[ph + 16..ph + 24].copy_from_slice(&vaddr.to_le_bytes());
        out[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
        out[ph + 32..ph + 40].copy_from_slice(&(filesz as u64).to_le_bytes());
        out[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        out[ph + 48..ph + 56].copy_from_slice(&0x1000u64.to_le_bytes());
        let mut d = bytes(i as u32 + 1, filesz);
        if i == 0 {
            d[0x10..0x19].copy_from_slice(b"\x48\x31\xc0\xfa\xf4Linu");
            let banner = b"Linux version 9.9.9-test (zboot) #1\n\0";
            d[0x800..0x800 + banner.len()].copy_from_slice(banner);
        }
        out.extend_from_slice(&d);
        file_off += filesz;
    }
    if with_relocs {
        out.extend_from_slice(&relocs());
    }
    out
}

/// A minimal bzImage (boot protocol 2.15: three setup sectors, the header as a loader reads
/// it) whose payload is `inner` compressed with gzip, right after the setup sectors.
pub fn bzimage(inner: &[u8]) -> Vec<u8> {
    use zboot_format::bootparam::{HDRS_MAGIC, SETUP_HEADER_OFFSET, SetupHeader};
    let mut progress = crate::compress::Progress::new("", inner.len() as u64, false);
    let payload = crate::compress::compress(zboot_format::Codec::Gzip, 6, inner, &mut progress)
        .expect("gzip");
    let h = SetupHeader {
        setup_sects: 3,
        boot_flag: 0xaa55,
        header: HDRS_MAGIC,
        version: 0x020f,
        loadflags: 1, // LOADED_HIGH
        kernel_alignment: 0x20_0000,
        relocatable_kernel: 1,
        xloadflags: 0x7f,
        payload_offset: 0,
        payload_length: payload.len() as u32,
        init_size: 0x80_0000,
        ..SetupHeader::default()
    };
    let mut d = vec![0u8; h.protected_mode_offset()];
    let bytes = h.to_bytes();
    d[SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + bytes.len()].copy_from_slice(&bytes);
    d.extend_from_slice(&payload);
    d
}

/// Overwrite a little-endian integer of `N` bytes at `off`.
pub fn poke<const N: usize>(data: &mut [u8], off: usize, value: u64) {
    data[off..off + N].copy_from_slice(&value.to_le_bytes()[..N]);
}

/// Set `path`'s modification time (tests of "newer than" rules).
pub fn set_mtime(path: &std::path::Path, t: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(t))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

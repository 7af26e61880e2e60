//! The test initramfs: a gzip'd newc cpio archive written directly (no root needed for the
//! `/dev/console` node, reproducible: every mtime is 0).

use anyhow::Result;
use flate2::{Compression, GzBuilder};
use std::io::Write;

/// `/init` of the test initramfs (busybox sh script).
pub const INIT_SCRIPT: &str = include_str!("../../fixtures/initramfs/init");

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// A newc ("070701") cpio archive under construction.
#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name, S_IFDIR | 0o755, (0, 0), &[]);
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | perm, (0, 0), data);
    }

    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, (0, 0), target.as_bytes());
    }

    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | perm, (major, minor), &[]);
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        while !self.out.len().is_multiple_of(512) {
            self.out.push(0);
        }
        self.out
    }
}

/// Kernel modules the test initramfs carries for `/init` to load, as `/lib/modules/<release>/<name>`.
pub struct Modules<'a> {
    pub release: &'a str,
    /// (file name, contents).
    pub files: Vec<(&'a str, Vec<u8>)>,
}

/// Builds the gzip'd initramfs: `/init`, a static busybox with `/bin/sh`, a `/dev/console` node,
/// the programs `bin` (`/bin/<name>`) and the `modules` (none when `files` is empty).
pub fn build(
    init: &[u8],
    busybox: &[u8],
    bin: &[(&str, Vec<u8>)],
    modules: &Modules,
) -> Result<Vec<u8>> {
    let mut c = Cpio::default();
    for d in [
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "lib",
        "lib/modules",
    ] {
        c.dir(d);
    }
    c.char_dev("dev/console", 0o600, 5, 1);
    c.char_dev("dev/ttyS0", 0o600, 4, 64);
    c.char_dev("dev/null", 0o666, 1, 3);
    c.file("bin/busybox", 0o755, busybox);
    c.symlink("bin/sh", "busybox");
    for (name, program) in bin {
        c.file(&format!("bin/{name}"), 0o755, program);
    }
    c.file("init", 0o755, init);
    if !modules.files.is_empty() {
        let d = format!("lib/modules/{}", modules.release);
        c.dir(&d);
        for (name, ko) in &modules.files {
            c.file(&format!("{d}/{name}"), 0o644, ko);
        }
    }
    let cpio = c.finish();
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    gz.write_all(&cpio)?;
    Ok(gz.finish()?)
}

/// An uncompressed newc archive of `files` ((path without leading `/`, mode bits, contents)),
/// with every parent directory. The kernel unpacks concatenated archives in order (an
/// uncompressed one only at a file offset that is a multiple of 4: pad what precedes it with
/// zeros), so appending it to the test initramfs adds (or replaces) these files: the kexec rows carry the second
/// kernel, its initrd and `/sbin/kexec` this way.
pub fn overlay(files: &[(String, u32, Vec<u8>)]) -> Vec<u8> {
    let mut c = Cpio::default();
    let mut dirs = std::collections::BTreeSet::new();
    for (path, perm, data) in files {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let d = &path[..at + i];
            if dirs.insert(d.to_string()) {
                c.dir(d);
            }
            at += i + 1;
        }
        c.file(path, *perm, data);
    }
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn newc_layout() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"#!/bin/sh\n");
        let a = c.finish();
        assert_eq!(&a[..6], b"070701");
        // name size field (13th field) = 5 ("init\0")
        assert_eq!(&a[6 + 11 * 8..6 + 12 * 8], b"00000005");
        let hdr = 110;
        assert_eq!(&a[hdr..hdr + 5], b"init\0");
        // 110 + 5 = 115 -> padded to 116, then data.
        assert_eq!(&a[116..126], b"#!/bin/sh\n");
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
        assert_eq!(a.len() % 512, 0);
    }

    fn test_modules() -> Modules<'static> {
        Modules {
            release: "6.1.0-1-amd64",
            files: vec![("efivarfs.ko", b"ko".to_vec())],
        }
    }

    #[test]
    fn reproducible_and_gzip() {
        let bin = [("stage-stamp", b"elf".to_vec())];
        let a = build(b"init", b"bb", &bin, &test_modules()).unwrap();
        let b = build(b"init", b"bb", &bin, &test_modules()).unwrap();
        assert_eq!(a, b);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(
            out.windows(28)
                .any(|w| w == b"lib/modules/6.1.0-1-amd64/ef")
        );
        assert!(out.windows(15).any(|w| w == b"bin/stage-stamp"));
    }

    #[test]
    fn overlay_has_parents_once() {
        let a = overlay(&[
            ("kexec/image".into(), 0o644, b"img".to_vec()),
            ("kexec/append".into(), 0o644, b"x".to_vec()),
        ]);
        let names = |n: &[u8]| a.windows(n.len()).filter(|w| *w == n).count();
        assert_eq!(names(b"kexec\0"), 1);
        assert_eq!(names(b"kexec/image\0"), 1);
        assert_eq!(a.len() % 512, 0);
    }

    #[test]
    fn init_script_has_every_key() {
        for key in [
            "release",
            "cmdline",
            "memtotal_kb",
            "efi_runtime",
            "efi_entries",
            "acpi_tables",
            "fb",
            "fb_mode",
            "edd",
            "bp_screen_info",
            "bp_eddbuf",
            "kallsyms_text",
            "iomem_kernel_code",
            "vmalloc_total_kb",
            "secure_boot",
            "end",
        ] {
            assert!(
                INIT_SCRIPT.contains(&format!("ZBOOT-INIT {key}=")),
                "init lacks {key}"
            );
        }
    }
}

//! The bad-input matrix, through the real binary, in one table: every case fails with exit
//! status 2 (not a panic: 101), exactly one short `zboot-pack: error: ` line on stderr naming
//! the file and the problem, no output file created, an existing output file left
//! byte-identical, and no temporary file left behind. (Usage errors are clap's: `cli.rs`.)

use std::path::Path;
use std::process::Command;

use zboot_pack::testkit::{self, EHDR, P_FILESZ, P_MEMSZ, P_PADDR, P_TYPE, PHDR, poke};

mod common;
use common::{BIN, write};

/// Existing output content: must survive every failed run byte for byte.
fn old_output() -> Vec<u8> {
    testkit::bytes(99, 4096)
}

struct Failure {
    stderr: String,
}

/// Run `zboot-pack INPUT -o OUTPUT` and check the common contract; returns stderr.
fn run_fails(dir: &Path, input: &Path, output: &Path, name: &str) -> Failure {
    run_fails_with(dir, input, output, &[], name)
}

/// As [`run_fails`], with `extra` options after the output.
fn run_fails_with(
    dir: &Path,
    input: &Path,
    output: &Path,
    extra: &[&dyn AsRef<std::ffi::OsStr>],
    name: &str,
) -> Failure {
    let out = Command::new(BIN)
        .arg(input)
        .arg("-o")
        .arg(output)
        .args(extra.iter().map(|a| a.as_ref()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{name}: status, stderr {stderr:?}"
    );
    assert!(out.stdout.is_empty(), "{name}: stdout {:?}", out.stdout);
    assert_eq!(stderr.lines().count(), 1, "{name}: {stderr:?}");
    assert!(
        stderr.starts_with("zboot-pack: error: "),
        "{name}: {stderr:?}"
    );
    assert!(
        stderr.len() < 240,
        "{name}: error line too long: {stderr:?}"
    );
    assert!(!stderr.contains("panicked"), "{name}: {stderr:?}");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".zboot-pack-") || n.starts_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "{name}: temporary files left: {leftovers:?}"
    );
    Failure { stderr }
}

/// An input that must be rejected: checked against a fresh output path (must not appear) and
/// an existing output (must stay byte-identical). `want` is part of the problem description.
fn rejected(dir: &Path, name: &str, input: &Path, want: &str) {
    let fresh = dir.join(format!("{name}.efi"));
    let f = run_fails(dir, input, &fresh, name);
    assert!(
        f.stderr.contains(&input.display().to_string()),
        "{name}: file not named: {:?}",
        f.stderr
    );
    assert!(
        f.stderr.contains(want),
        "{name}: want {want:?} in {:?}",
        f.stderr
    );
    assert!(!fresh.exists(), "{name}: output created");
    let existing = dir.join("existing.efi");
    std::fs::write(&existing, old_output()).unwrap();
    run_fails(dir, input, &existing, name);
    assert_eq!(
        std::fs::read(&existing).unwrap(),
        old_output(),
        "{name}: output changed"
    );
}

#[test]
fn the_synthetic_bzimage_packs() {
    // The truncated-bzImage case below is only meaningful if the whole one is accepted.
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "bzImage",
        &testkit::bzimage(&testkit::vmlinux(true)),
    );
    let out = Command::new(BIN)
        .arg(&input)
        .arg("-o")
        .arg(dir.path().join("ok.efi"))
        .arg("-q")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_input_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = testkit::vmlinux(false);
    let bz = testkit::bzimage(&testkit::vmlinux(true));

    let mut phoff = good.clone();
    poke::<8>(&mut phoff, 32, 0xffff_ffff_ffff_ff00); // e_phoff
    let mut memsz = good.clone();
    poke::<8>(&mut memsz, EHDR + PHDR + P_MEMSZ, u64::MAX);
    // A fixed-address user program: the synthetic kernel linked at its physical addresses.
    let mut user = good.clone();
    for i in 0..2 {
        let ph = EHDR + i * PHDR;
        let paddr = u64::from_le_bytes(user[ph + 24..ph + 32].try_into().unwrap());
        poke::<8>(&mut user, ph + 16, paddr);
    }
    // An ELF32 header (i386 executable), not just a flipped class byte.
    let mut elf32 = vec![0u8; 52];
    elf32[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
    elf32[16] = 2;
    elf32[18] = 3;

    // The synthetic kernel with one field changed.
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut d = good.clone();
        f(&mut d);
        d
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "not an ELF or bzImage"),
        (
            "random",
            testkit::bytes(1234, 64 * 1024),
            "not an ELF or bzImage",
        ),
        (
            "text",
            b"hello world, not a kernel at all".to_vec(),
            "not an ELF or bzImage",
        ),
        ("elf-header-only", good[..40].to_vec(), "truncated"),
        (
            "elf-truncated",
            good[..0x1800].to_vec(),
            "beyond the end of the file",
        ),
        ("elf32", elf32, "32-bit"),
        ("elf-class-32", with(&|d| d[4] = 1), "32-bit"),
        ("big-endian", with(&|d| d[5] = 2), "big-endian"),
        ("arm", with(&|d| poke::<2>(d, 18, 183)), "not x86_64"),
        (
            "no-load",
            with(&|d| {
                poke::<4>(d, EHDR + P_TYPE, 0);
                poke::<4>(d, EHDR + PHDR + P_TYPE, 0);
            }),
            "no PT_LOAD",
        ),
        (
            "overlap",
            with(&|d| poke::<8>(d, EHDR + PHDR + P_PADDR, testkit::PADDR + 0x1000)),
            "overlapping",
        ),
        (
            "filesz-beyond",
            with(&|d| poke::<8>(d, EHDR + P_FILESZ, 0x10_0000)),
            "beyond the end of the file",
        ),
        (
            "phoff",
            phoff,
            "program header table beyond the end of the file",
        ),
        (
            "memsz-absurd",
            with(&|d| poke::<8>(d, EHDR + PHDR + P_MEMSZ, 3 << 30)),
            "absurd",
        ),
        ("memsz-max", memsz, "absurd memory size"),
        (
            "misaligned",
            with(&|d| {
                poke::<8>(d, EHDR + P_PADDR, testkit::PADDR + 0x1000);
                poke::<8>(d, EHDR + PHDR + P_PADDR, testkit::PADDR + 0x20_1000);
                poke::<8>(d, 24, testkit::PADDR + 0x1010);
            }),
            "not 2 MiB aligned",
        ),
        ("user-program", user, "below the kernel map"),
        (
            "appended-relocs-bad",
            with(&|d| d.extend_from_slice(&[0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
            "malformed relocation table",
        ),
        (
            "appended-relocs-outside",
            with(&|d| d.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0x90])),
            "malformed relocation table",
        ),
        (
            "bzimage-truncated",
            bz[..bz.len() / 2].to_vec(),
            "beyond the end of the file",
        ),
        (
            "bzimage-setup-only",
            bz[..0x220].to_vec(),
            "truncated bzImage setup header",
        ),
        (
            "bzimage-no-payload",
            {
                // A bzImage cut short inside its setup sectors: the header, no payload.
                let mut d = testkit::bzimage(b"x");
                d.truncate(0x400);
                d
            },
            "bzImage payload",
        ),
    ];
    for (name, data, want) in &cases {
        let input = write(d, name, data);
        rejected(d, name, &input, want);
    }
    // A non-kernel ELF that is always there: this test program itself (dynamically linked).
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let input = write(d, "program", &me);
    rejected(d, "program", &input, "not a kernel");
    // A directory and a missing file.
    let sub = d.join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    rejected(d, "directory", &sub, "is a directory");
    rejected(d, "missing", &d.join("no-such-file"), "cannot read");
}

/// `--relocs` naming a malformed table: the error names that file.
#[test]
fn bad_relocation_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let elf = write(d, "vmlinux", &testkit::vmlinux(false));
    let rel = write(d, "bad.relocs", &[1, 2, 3]);
    let out = d.join("out.efi");
    let f = run_fails_with(d, &elf, &out, &[&"--relocs", &rel], "relocs-file");
    assert!(
        f.stderr.contains("bad.relocs") && f.stderr.contains("malformed relocation table"),
        "{:?}",
        f.stderr
    );
    assert!(!out.exists(), "output created");
}

#[test]
fn unwritable_output_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // With its relocation table: packing it prints no note, only the error.
    let input = write(d, "vmlinux", &testkit::vmlinux(true));
    // The parent is a regular file, the parent does not exist, the output is a directory.
    let file = write(d, "plain-file", &old_output());
    let f = run_fails(d, &input, &file.join("x.efi"), "parent-is-file");
    assert!(f.stderr.contains("cannot write"), "{:?}", f.stderr);
    assert!(f.stderr.contains("x.efi"), "{:?}", f.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), old_output());
    let f = run_fails(d, &input, &d.join("no/such/dir/x.efi"), "no-parent");
    assert!(f.stderr.contains("cannot write"), "{:?}", f.stderr);
    assert!(!d.join("no").exists());
    let out_dir = d.join("out-dir");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::write(out_dir.join("keep"), b"keep").unwrap();
    let f = run_fails(d, &input, &out_dir, "output-is-directory");
    assert!(f.stderr.contains("out-dir"), "{:?}", f.stderr);
    assert!(out_dir.is_dir());
    assert_eq!(std::fs::read(out_dir.join("keep")).unwrap(), b"keep");
}

/// `--cmdline` values the kernel could not take whole or that could fail open at boot (see
/// zboot_format::cmdline): exit 2, one line naming the option and the rule, no output.
#[test]
fn bad_embedded_command_lines() {
    let dir = tempfile::tempdir().unwrap();
    let elf = write(dir.path(), "vmlinux", &testkit::vmlinux(false));
    let long = "a".repeat(zboot_format::cmdline::MAX_LEN + 1);
    for (name, value, want) in [
        ("blank", "   ", "empty or only whitespace"),
        ("empty", "", "empty or only whitespace"),
        ("newline", "quiet\nroot=/dev/sda", "control character 0x0a"),
        ("tab", "quiet\troot=/dev/sda", "control character 0x09"),
        ("too-long", long.as_str(), "longer than the 2047"),
    ] {
        let out = dir.path().join(format!("{name}.efi"));
        let r = common::run(&[&elf, &"-o", &out, &"--cmdline", &value]);
        assert_eq!(r.code, 2, "{name}: {:?}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{name}: {:?}", r.stderr);
        assert!(
            r.stderr.starts_with("zboot-pack: error: ") && r.stderr.contains("--cmdline"),
            "{name}: {:?}",
            r.stderr
        );
        assert!(
            r.stderr.contains(want),
            "{name}: want {want:?} in {:?}",
            r.stderr
        );
        assert!(!out.exists(), "{name}: output written");
    }
    // The longest line the kernel keeps is accepted.
    let max = "a".repeat(zboot_format::cmdline::MAX_LEN);
    let out = dir.path().join("max.efi");
    let r = common::run(&[&elf, &"-o", &out, &"--cmdline", &max, &"-q"]);
    assert_eq!(r.code, 0, "{:?}", r.stderr);
}

//! End-to-end tests of the `zboot-pack` binary: packing, verification, round trips, independent
//! validators, usage errors (the bad-input matrix is `bad_inputs.rs`).

use std::path::Path;
use std::process::Command;

use zboot_format::header::Flags;
use zboot_pack::payload;
use zboot_pack::pe::read::PeFile;
use zboot_pack::testkit;

mod common;
use common::{BIN, debian_kernel, in_ci, run, write};

fn pack_ok(args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let r = run(args);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
}

#[test]
fn every_codec_packs_verifies_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let elf = write(dir.path(), "vmlinux", &testkit::vmlinux(true));
    for codec in zboot_format::Codec::ALL.map(|c| c.name()) {
        let a = dir.path().join(format!("a-{codec}.efi"));
        let b = dir.path().join(format!("b-{codec}.efi"));
        let x = dir.path().join(format!("x-{codec}.elf"));
        pack_ok(&[&elf, &"-o", &a, &"--codec", &codec, &"-q"]);
        let v = run(&[&"verify", &a]);
        assert_eq!(v.code, 0, "{codec}: {}", v.stdout);
        pack_ok(&[&"extract", &a, &"-o", &x, &"-q"]);
        pack_ok(&[&x, &"-o", &b, &"--codec", &codec, &"-q"]);
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{codec}: repack differs"
        );
        let img = std::fs::read(&a).unwrap();
        let pe = PeFile::parse(&img).unwrap();
        let p = payload::find(&pe).unwrap().unwrap();
        assert_eq!(p.header.codec.name(), codec);
        assert!(p.header.flags.has(Flags::RELOCS));
        assert_eq!(p.header.entry_offset, 0x10);
        assert_eq!(p.header.image_size, 0x20_1000);
        assert_eq!(p.header.mem_size, 0x40_0000);
        let stream = payload::decode(&p).unwrap();
        assert_eq!(
            &stream[p.header.relocs_offset as usize..],
            &testkit::relocs()[..]
        );
    }
}

#[test]
fn a_failed_pack_prints_one_line_even_without_relocations() {
    let dir = tempfile::tempdir().unwrap();
    let elf = write(dir.path(), "vmlinux", &testkit::vmlinux(false));
    let out = dir.path().join("missing-dir").join("x.efi");
    let r = run(&[&elf, &"-o", &out]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(!r.stderr.contains("note:"), "{}", r.stderr);
}

#[test]
fn output_is_deterministic_and_honours_source_date_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let elf = write(dir.path(), "vmlinux", &testkit::vmlinux(false));
    let (a, b) = (dir.path().join("a.efi"), dir.path().join("b.efi"));
    let r = run(&[&elf, &"-o", &a]);
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("no relocation table"), "{}", r.stderr);
    assert_eq!(r.stderr.matches("no relocation table").count(), 1);
    pack_ok(&[&elf, &"-o", &b, &"-q"]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // The default codec (docs/performance.md explains the choice): zstd behind the BCJ filter.
    let img = std::fs::read(&a).unwrap();
    let h = payload::find(&PeFile::parse(&img).unwrap())
        .unwrap()
        .unwrap()
        .header;
    assert_eq!(h.codec.name(), "zstd");
    assert!(h.flags.has(Flags::BCJ_X86) && !h.flags.has(Flags::RELOCS_DELTA));
    let st = Command::new(BIN)
        .arg(&elf)
        .arg("-o")
        .arg(&b)
        .arg("-q")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .status()
        .unwrap();
    assert!(st.success());
    let img = std::fs::read(&b).unwrap();
    let pe = PeFile::parse(&img).unwrap();
    assert_eq!(
        pe.file_header.time_date_stamp.get(object::LittleEndian),
        1_700_000_000
    );
    let q = run(&[&elf, &"-o", &b, &"-q"]);
    assert!(q.stderr.is_empty(), "-q printed {:?}", q.stderr);
}

#[test]
fn embedded_sections_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let elf = write(dir.path(), "vmlinux", &testkit::vmlinux(false));
    let relocs = write(dir.path(), "vmlinux.relocs", &testkit::relocs());
    let initrd = write(dir.path(), "initrd", &testkit::bytes(9, 5000));
    let sbat_text = format!(
        "{}\nzboot,1,zboot-pack,zboot,0.1,https://example.invalid\n",
        zboot_pack::sbat::SBAT_VERSION_LINE
    );
    let sbat = write(dir.path(), "sbat.csv", sbat_text.as_bytes());
    let out = dir.path().join("o.efi");
    pack_ok(&[
        &elf,
        &"-o",
        &out,
        &"--cmdline",
        &"console=ttyS0 quiet",
        &"--initrd",
        &initrd,
        &"--sbat",
        &sbat,
        &"--relocs",
        &relocs,
        &"--la57",
        &"--codec",
        &"gzip",
        &"-q",
    ]);
    let img = std::fs::read(&out).unwrap();
    let pe = PeFile::parse(&img).unwrap();
    let h = payload::find(&pe).unwrap().unwrap().header;
    assert!(h.flags.has(Flags::LA57) && h.flags.has(Flags::RELOCS));
    // gzip compresses the BCJ-filtered image; a relocation table is always stored delta-coded.
    assert!(h.flags.has(Flags::BCJ_X86) && h.flags.has(Flags::RELOCS_DELTA));
    assert_eq!(h.cmdline_rva, pe.section(".cmdline").unwrap().va());
    assert_eq!(h.initrd_rva, pe.section(".initrd").unwrap().va());
    let (cmd, ird) = payload::embedded(&pe, &h).unwrap();
    assert_eq!(cmd, b"console=ttyS0 quiet");
    assert_eq!(ird, &std::fs::read(&initrd).unwrap()[..]);
    assert!(pe.section(".sbat").is_some());
    let v = run(&[&"verify", &out]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    let j = run(&[&"inspect", &"--json", &out]);
    assert_eq!(j.code, 0);
    let json: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(json["kind"], "zboot-pack");
    assert_eq!(json["payload"]["codec"], "gzip");
    assert_eq!(json["payload"]["cmdline"]["text"], "console=ttyS0 quiet");
    assert_eq!(
        json["payload"]["kernel_version"],
        "Linux version 9.9.9-test (zboot) #1"
    );
    let t = run(&[&"inspect", &out]);
    assert!(
        t.stdout.contains(".zpayld") && t.stdout.contains("NX_COMPAT"),
        "{}",
        t.stdout
    );

    let bad_sbat = write(dir.path(), "bad.csv", b"zboot,1,zboot-pack\n");
    let r = run(&[&elf, &"-o", &out, &"--sbat", &bad_sbat]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("bad.csv"), "{}", r.stderr);
}

/// Usage errors are clap's (exit 2, its own message); bad input files are `bad_inputs.rs`.
#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let elf = write(dir.path(), "vmlinux", &testkit::vmlinux(false));
    let out = dir.path().join("o.efi");
    assert_eq!(run(&[&elf]).code, 2);
    assert_eq!(run(&[&elf, &"-o", &out, &"--codec", &"brotli"]).code, 2);
    let r = run(&[&elf, &"-o", &out, &"--codec", &"gzip", &"--level", &"12"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!out.exists(), "output written");
    assert_eq!(run(&[&"--help"]).code, 0);
}

#[test]
fn verify_flags_violations_with_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let elf = write(dir.path(), "vmlinux", &testkit::vmlinux(false));
    let out = dir.path().join("o.efi");
    pack_ok(&[&elf, &"-o", &out, &"-q"]);
    let mut img = std::fs::read(&out).unwrap();
    let n = img.len();
    img[n - 700] ^= 0x55; // inside the payload: checksum and payload hash break
    let bad = write(dir.path(), "bad.efi", &img);
    let r = run(&[&"verify", &bad]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("CheckSum"), "{}", r.stdout);
    let sd = Path::new("/usr/lib/systemd/boot/efi/systemd-bootx64.efi");
    if sd.exists() {
        let r = run(&[&"verify", &sd]);
        assert_eq!(r.code, 1);
        assert!(
            r.stdout.contains("NX_COMPAT") && r.stdout.contains("SectionAlignment"),
            "{}",
            r.stdout
        );
    }
    let r = run(&[&"verify", &elf]);
    assert_eq!(r.code, 1);
}

/// sbverify and python3-pefile accept the output.
#[test]
fn independent_validators_accept_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let elf = write(dir.path(), "vmlinux", &testkit::vmlinux(true));
    let out = dir.path().join("o.efi");
    pack_ok(&[&elf, &"-o", &out, &"--cmdline", &"quiet", &"-q"]);
    match Command::new("sbverify").arg("--list").arg(&out).output() {
        Ok(o) => assert!(
            o.status.success(),
            "sbverify: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => assert!(!in_ci(), "sbverify missing in CI"),
    }
    let script = r#"
import sys, pefile
pe = pefile.PE(sys.argv[1])
w = pe.get_warnings()
assert not w, w
assert pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum(), "checksum"
assert pe.OPTIONAL_HEADER.DllCharacteristics & 0x100, "nx"
names = [s.Name.rstrip(b"\0") for s in pe.sections]
assert b".zpayld" in names and b".cmdline" in names, names
for s in pe.sections:
    c = s.Characteristics
    assert not (c & 0x80000000 and c & 0x20000000), s.Name
print("ok")
"#;
    let py = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    match Command::new(py).arg("-c").arg(script).arg(&out).output() {
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named 'pefile'") => {
            assert!(!in_ci(), "python3-pefile missing in CI")
        }
        Ok(o) => assert!(
            o.status.success(),
            "pefile: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => assert!(!in_ci(), "python3 missing in CI"),
    }
}

#[test]
fn debian_kernel_packs_verifies_and_round_trips() {
    let Some(kernel) = debian_kernel() else {
        assert!(!in_ci(), "Debian 6.1 kernel not found in the fixture cache");
        eprintln!("skipped: no Debian kernel in the fixture cache");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let r = run(&[&"verify", &kernel]);
    assert_eq!(r.code, 0, "Debian's bzImage should pass: {}", r.stdout);
    let a = dir.path().join("a.efi");
    pack_ok(&[
        &kernel, &"-o", &a, &"--codec", &"zstd", &"--level", &"1", &"-q",
    ]);
    let v = run(&[&"verify", &a]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    let img = std::fs::read(&a).unwrap();
    let pe = PeFile::parse(&img).unwrap();
    let h = payload::find(&pe).unwrap().unwrap().header;
    assert!(h.flags.has(Flags::RELOCS) && h.flags.has(Flags::LA57));
    assert_eq!(h.preferred_address, 0x100_0000);
    assert_eq!(h.link_virt_base, 0xffff_ffff_8100_0000);
    assert_eq!(h.boot_protocol, 0x020f);
    let x = dir.path().join("x.elf");
    let b = dir.path().join("b.efi");
    pack_ok(&[&"extract", &a, &"-o", &x, &"-q"]);
    pack_ok(&[&x, &"-o", &b, &"--codec", &"zstd", &"--level", &"1", &"-q"]);
    assert!(std::fs::read(&b).unwrap() == img, "repack differs");
    let j = run(&[&"inspect", &"--json", &a]);
    let json: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert!(
        json["payload"]["kernel_version"]
            .as_str()
            .unwrap()
            .starts_with("Linux version 6.1.")
    );
}

/// A vmlinux in a build tree: its `vmlinux.relocs` and `.config` are found without options (not
/// a relocation table older than the vmlinux); `--no-relocs` takes none.
#[test]
fn build_tree_relocs_and_config_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path();
    write(tree, ".config", b"CONFIG_X86_64=y\nCONFIG_X86_5LEVEL=y\n");
    // A release before 6.16, so that the .config decides (the test kernel says 9.9.9).
    let mut kernel = testkit::vmlinux(false);
    let at = kernel
        .windows(19)
        .position(|w| w == b"Linux version 9.9.9")
        .unwrap();
    kernel[at..at + 19].copy_from_slice(b"Linux version 6.1.0");
    let elf = write(tree, "vmlinux", &kernel);
    // As `make bzImage` does: the relocation table after the vmlinux (never older than it).
    let relocs = tree.join(zboot_pack::input::detect::RELOCS_BESIDE);
    std::fs::create_dir_all(relocs.parent().unwrap()).unwrap();
    std::fs::write(&relocs, testkit::relocs()).unwrap();
    let later =
        std::fs::metadata(&elf).unwrap().modified().unwrap() + std::time::Duration::from_secs(1);
    testkit::set_mtime(&relocs, later);
    let out = tree.join("o.efi");
    let flags = |out: &Path| {
        let img = std::fs::read(out).unwrap();
        payload::find(&PeFile::parse(&img).unwrap())
            .unwrap()
            .unwrap()
            .header
            .flags
    };
    let r = run(&[&elf, &"-o", &out, &"-v"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("note:"), "{}", r.stderr);
    assert!(r.stderr.contains("CONFIG_X86_5LEVEL=y"), "{}", r.stderr);
    let f = flags(&out);
    assert!(f.has(Flags::RELOCS) && f.has(Flags::LA57), "{f:?}");

    pack_ok(&[&elf, &"-o", &out, &"--no-relocs", &"-q"]);
    assert!(!flags(&out).has(Flags::RELOCS));

    // A table older than the vmlinux belongs to an earlier build: not used, and a note says so.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    testkit::set_mtime(&relocs, old);
    let r = run(&[&elf, &"-o", &out]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("is older than"), "{}", r.stderr);
    assert!(!flags(&out).has(Flags::RELOCS));
}

/// The setup header (EFI handover protocol) is checked by `verify`: a changed handover_offset is
/// a violation.
#[test]
fn verify_checks_the_setup_header() {
    let dir = tempfile::tempdir().unwrap();
    let elf = write(dir.path(), "vmlinux", &testkit::vmlinux(false));
    let out = dir.path().join("o.efi");
    pack_ok(&[&elf, &"-o", &out, &"-q"]);
    assert_eq!(run(&[&"verify", &out]).code, 0);
    let mut img = std::fs::read(&out).unwrap();
    // handover_offset is the u32 at 0x264 (Documentation/arch/x86/boot.rst).
    img[0x264] ^= 0x10;
    let bad = write(dir.path(), "bad.efi", &img);
    let r = run(&[&"verify", &bad]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("setup header differs"), "{}", r.stdout);
}

#[test]
fn bcj_covers_the_text_only_when_the_text_is_known() {
    let Some(kernel) = debian_kernel() else {
        assert!(!in_ci(), "Debian 6.1 kernel not found in the fixture cache");
        eprintln!("skipped: no Debian kernel in the fixture cache");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for (protect, text_known) in [("--protect-text", true), ("--no-protect-text", false)] {
        let out = dir.path().join(format!("{protect}.efi"));
        pack_ok(&[&kernel, &"-o", &out, &protect, &"--level", &"3", &"-q"]);
        let img = std::fs::read(&out).unwrap();
        let h = payload::find(&PeFile::parse(&img).unwrap())
            .unwrap()
            .unwrap()
            .header;
        assert!(h.flags.has(Flags::BCJ_X86), "{protect}");
        assert_eq!(h.flags.has(Flags::TEXT_RO), text_known, "{protect}");
        assert_eq!(h.flags.has(Flags::BCJ_TEXT), text_known, "{protect}");
        let v = run(&[&"verify", &out]);
        assert_eq!(v.code, 0, "{protect}: verify: {}", v.stdout);
        sizes.push(h.compressed_size);
    }
    // Debian 6.1's rodata and data gain nothing from the filter: the text-only stream is smaller.
    assert!(
        sizes[0] < sizes[1],
        "text-only BCJ {} B, whole image {} B",
        sizes[0],
        sizes[1]
    );
}

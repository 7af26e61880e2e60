//! With the `zstd` feature: compiles libzstd's decompressor (C, from the zstd-sys crate the
//! workspace already depends on through the packer) for the stub, freestanding: no libc, no SIMD
//! registers (the UEFI target is soft-float), no heap (a caller-provided workspace), one Huffman
//! and one sequence decoder variant (size; docs/performance.md has the figures).
//!
//! Needs clang for the UEFI target (COFF objects) and llvm-ar; `.ci/run` installs both.
//! `ZBOOT_ZSTD_SRC=/path/to/zstd/lib` overrides where the C sources come from.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The C files of the one-shot decoder (no streaming helpers beyond what these hold, no
/// dictionary builder, no legacy formats).
const SOURCES: [&str; 9] = [
    "common/entropy_common.c",
    "common/error_private.c",
    "common/fse_decompress.c",
    "common/zstd_common.c",
    "common/xxhash.c",
    "decompress/huf_decompress.c",
    "decompress/zstd_ddict.c",
    "decompress/zstd_decompress.c",
    "decompress/zstd_decompress_block.c",
];

/// Preprocessor settings shared by the host and UEFI builds (the host build is what
/// `cargo xtask bench` times, so it must be the same decoder).
const DEFINES: [(&str, &str); 10] = [
    ("ZSTD_DISABLE_ASM", "1"),
    ("ZSTD_LEGACY_SUPPORT", "0"),
    ("DEBUGLEVEL", "0"),
    ("NDEBUG", "1"),
    ("ZSTD_TRACE", "0"),
    ("ZSTD_STRIP_ERROR_STRINGS", "1"),
    ("XXH_NAMESPACE", "ZSTD_"),
    // No runtime BMI2 dispatch: one copy of every hot loop.
    ("DYNAMIC_BMI2", "0"),
    // One Huffman decoder (single-symbol) and one sequence decoder (short offsets).
    ("HUF_FORCE_DECOMPRESS_X1", "1"),
    ("ZSTD_FORCE_DECOMPRESS_SEQUENCES_SHORT", "1"),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=ZBOOT_ZSTD_SRC");
    println!("cargo:rerun-if-env-changed=ZBOOT_ZSTD_OPT");
    if env::var_os("CARGO_FEATURE_ZSTD").is_none() {
        return;
    }
    let src = zstd_source();
    let uefi = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("uefi");
    let mut b = cc::Build::new();
    b.include(&src).include(src.join("common")).warnings(false);
    for (k, v) in DEFINES {
        b.define(k, v);
    }
    if uefi {
        // cc honours CC_x86_64_unknown_uefi / AR_x86_64_unknown_uefi; else clang and llvm-ar.
        let target = env::var("TARGET").unwrap_or_default().replace('-', "_");
        if env::var_os(format!("CC_{target}")).is_none() {
            require("clang");
            b.compiler("clang");
        }
        if env::var_os(format!("AR_{target}")).is_none() {
            require("llvm-ar");
            b.archiver("llvm-ar");
        }
        b.flag("-ffreestanding")
            .flag("-nostdlibinc")
            .flag("-isystem")
            .flag(
                Path::new("csrc/include")
                    .canonicalize()
                    .expect("stub/csrc/include"),
            )
            .flag("-mno-red-zone")
            .flag("-mno-mmx")
            .flag("-mno-sse")
            .flag("-mno-sse2")
            .flag("-fno-stack-protector")
            .flag("-fno-asynchronous-unwind-tables")
            .flag("-fno-unwind-tables");
    }
    // Size first, as the Rust side ([profile.stub] opt-level "s"); the host build (bench, tests)
    // uses the same level so its figures describe the code the stub runs.
    b.opt_level_str(&env::var("ZBOOT_ZSTD_OPT").unwrap_or_else(|_| "s".into()));
    for f in SOURCES {
        b.file(src.join(f));
    }
    b.compile("zboot_zstd");
}

/// Stop with one clear line when a tool the UEFI build needs is missing.
fn require(tool: &str) {
    let found = env::var_os("PATH")
        .map(|p| env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        eprintln!(
            "zboot-stub: `{tool}` not found: the stub's C zstd decoder needs clang and llvm-ar \
             for the UEFI target (Debian: apt-get install clang llvm)"
        );
        std::process::exit(1);
    }
}

/// `zstd/lib` of the zstd-sys package in this workspace's dependency graph.
fn zstd_source() -> PathBuf {
    if let Some(p) = env::var_os("ZBOOT_ZSTD_SRC") {
        return PathBuf::from(p);
    }
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
        .join("Cargo.toml");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let pkg = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "zstd-sys")
        .expect("zstd-sys is not in the workspace's dependency graph (set ZBOOT_ZSTD_SRC)");
    let path = PathBuf::from(pkg["manifest_path"].as_str().expect("manifest_path"));
    let lib = path
        .parent()
        .expect("zstd-sys dir")
        .join("zstd")
        .join("lib");
    assert!(
        lib.join("zstd.h").is_file(),
        "{}: no zstd sources",
        lib.display()
    );
    lib
}

//! Compiles the C decoders the stub uses, freestanding for the UEFI target (no libc, no SIMD
//! registers: the target is soft-float, no heap), from the sources of the -sys crates the stub
//! itself pins as exact-version build-dependencies (stub/Cargo.toml: the boot-time decoder
//! changes only when those lines do, never because another crate's dependencies moved):
//!
//! - feature `zstd`: libzstd's decompressor (zstd-sys), one Huffman and one sequence decoder
//!   variant (size; docs/performance.md has the figures), context in a caller workspace;
//! - feature `lz4`: liblz4's block decoder (lz4-sys), in its `LZ4_FREESTANDING` mode.
//!
//! Needs clang for the UEFI target (COFF objects) and llvm-ar; `.ci/run` installs both.
//! `ZBOOT_ZSTD_SRC=/path/to/zstd/lib` and `ZBOOT_LZ4_SRC=/path/to/lz4/lib` override where the C
//! sources come from.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One C library: where its sources live and how to build the part the stub calls.
struct CLib {
    /// Cargo feature that selects it.
    feature: &'static str,
    /// The -sys package carrying the sources, and the directory inside it.
    package: &'static str,
    subdir: &'static str,
    /// Environment override of that directory.
    env: &'static str,
    sources: &'static [&'static str],
    includes: &'static [&'static str],
    /// Preprocessor settings shared by the host and UEFI builds (the host build is what
    /// `cargo xtask bench` times, so it must be the same decoder).
    defines: &'static [(&'static str, &'static str)],
    lib: &'static str,
}

const LIBS: [CLib; 2] = [
    CLib {
        feature: "ZSTD",
        package: "zstd-sys",
        subdir: "zstd/lib",
        env: "ZBOOT_ZSTD_SRC",
        // The one-shot decoder: no dictionary builder, no legacy formats.
        sources: &[
            "common/entropy_common.c",
            "common/error_private.c",
            "common/fse_decompress.c",
            "common/zstd_common.c",
            "common/xxhash.c",
            "decompress/huf_decompress.c",
            "decompress/zstd_ddict.c",
            "decompress/zstd_decompress.c",
            "decompress/zstd_decompress_block.c",
        ],
        includes: &[".", "common"],
        defines: &[
            ("ZSTD_DISABLE_ASM", "1"),
            ("ZSTD_LEGACY_SUPPORT", "0"),
            ("DEBUGLEVEL", "0"),
            ("NDEBUG", "1"),
            ("ZSTD_TRACE", "0"),
            ("ZSTD_STRIP_ERROR_STRINGS", "1"),
            ("XXH_NAMESPACE", "ZSTD_"),
            // Runtime BMI2 dispatch (libzstd's cpuid check): the Huffman, FSE and sequence loops
            // twice, plain and BMI2. On Debian 6.12's stream the BMI2 copy decodes in 10.5 %
            // fewer guest instructions (5,602 -> 5,016 ms at -icount shift=3) for 19,456 bytes
            // of stub; a CPU without BMI2 runs the plain copy (docs/performance.md).
            ("DYNAMIC_BMI2", "1"),
            // One Huffman decoder (single-symbol) and one sequence decoder (short offsets).
            ("HUF_FORCE_DECOMPRESS_X1", "1"),
            ("ZSTD_FORCE_DECOMPRESS_SEQUENCES_SHORT", "1"),
        ],
        lib: "zboot_zstd",
    },
    CLib {
        feature: "LZ4",
        package: "lz4-sys",
        subdir: "liblz4/lib",
        env: "ZBOOT_LZ4_SRC",
        sources: &["lz4.c"],
        includes: &["."],
        defines: &[
            ("LZ4_FREESTANDING", "1"),
            ("LZ4_memcpy", "__builtin_memcpy"),
            ("LZ4_memmove", "__builtin_memmove"),
            ("LZ4_memset", "__builtin_memset"),
            ("NDEBUG", "1"),
        ],
        lib: "zboot_lz4",
    },
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("uefi") {
        // The stub relocates itself (src/image.rs) instead of carrying PE base relocations:
        // the 64-bit addresses it patches (vtables in read-only data, unwind data) must be in
        // writable memory, so read-only data joins `.data` (the image stays W^X: `.text` is
        // R+X, `.data` R+W). Linked at ImageBase 0, as Linux's own PE image is (systemd-stub
        // 258.x-259.1 load `.linux` only when it is 0).
        // `/Brepro`: the COFF timestamp and the debug directory's PDB signature derived from
        // the contents, not the clock, so the stub is the same bytes wherever and whenever it
        // is built (its sha256 is what `zboot-pack --version` names).
        for arg in [
            "/MERGE:.rdata=.data",
            "/MERGE:.eh_frame=.data",
            "/BASE:0",
            "/Brepro",
            "/DEBUG:NONE",
        ] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=ZBOOT_C_OPT");
    let wanted: Vec<&CLib> = LIBS
        .iter()
        .filter(|l| env::var_os(format!("CARGO_FEATURE_{}", l.feature)).is_some())
        .collect();
    if wanted.is_empty() {
        return;
    }
    let mut metadata = None;
    for lib in wanted {
        println!("cargo:rerun-if-env-changed={}", lib.env);
        let src = match env::var_os(lib.env) {
            Some(p) => PathBuf::from(p),
            None => package_dir(&mut metadata, lib.package).join(lib.subdir),
        };
        build(lib, &src);
    }
}

fn build(lib: &CLib, src: &Path) {
    assert!(
        src.join(lib.sources[0]).is_file(),
        "{}: no {} sources (set {})",
        src.display(),
        lib.package,
        lib.env
    );
    let uefi = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("uefi");
    let mut b = cc::Build::new();
    b.warnings(false);
    for i in lib.includes {
        b.include(src.join(i));
    }
    for (k, v) in lib.defines {
        b.define(k, *v);
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
            .flag("-fno-stack-protector")
            .flag("-fno-asynchronous-unwind-tables")
            .flag("-fno-unwind-tables");
        let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
        for f in arch_flags(&arch) {
            b.flag(f);
        }
    }
    // Size first, as the Rust side ([profile.stub] opt-level "s"); the host build (bench, tests)
    // uses the same level so its figures describe the code the stub runs.
    b.opt_level_str(&env::var("ZBOOT_C_OPT").unwrap_or_else(|_| "s".into()));
    for f in lib.sources {
        b.file(src.join(f));
    }
    b.compile(lib.lib);
}

/// What the Rust side's UEFI target promises for each architecture, told to clang: no red
/// zone and no vector registers on x86_64 (the target is soft-float; firmware interrupts may
/// use the stack below RSP), general-purpose registers only on aarch64.
fn arch_flags(arch: &str) -> &'static [&'static str] {
    match arch {
        "x86_64" => &["-mno-red-zone", "-mno-mmx", "-mno-sse", "-mno-sse2"],
        "aarch64" => &["-mgeneral-regs-only"],
        other => panic!("zboot-stub: no C flags for the UEFI target's architecture {other}"),
    }
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

/// The directory of `package` as the stub's own build-dependency resolves it (`cargo metadata`,
/// run once; the stub's node in the resolve graph, its dependency of kind "build").
fn package_dir(metadata: &mut Option<serde_json::Value>, package: &str) -> PathBuf {
    let meta = metadata.get_or_insert_with(|| {
        let manifest =
            PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
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
        serde_json::from_slice(&out.stdout).expect("metadata JSON")
    });
    let packages = meta["packages"].as_array().expect("packages");
    let by_id = |id: &serde_json::Value| packages.iter().find(|p| p["id"] == *id);
    let stub_name = env::var("CARGO_PKG_NAME").expect("CARGO_PKG_NAME");
    let stub = packages
        .iter()
        .find(|p| p["name"] == stub_name.as_str())
        .expect("the stub in cargo metadata");
    let node = meta["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["id"] == stub["id"])
        .expect("the stub in the resolve graph");
    let pkg = node["deps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| {
            d["dep_kinds"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k["kind"] == "build"))
        })
        .filter_map(|d| by_id(&d["pkg"]))
        .find(|p| p["name"] == package)
        .unwrap_or_else(|| panic!("{package} is not a build-dependency of {stub_name}"));
    let path = PathBuf::from(pkg["manifest_path"].as_str().expect("manifest_path"));
    path.parent().expect("package dir").to_path_buf()
}

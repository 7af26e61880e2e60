//! Embeds the EFI stub: builds `zboot-stub` for `x86_64-unknown-uefi` with a nested cargo (its own
//! target directory, the outer build's flags removed) unless `ZBOOT_STUB_EFI=/path/to/stub.efi`
//! names a prebuilt stub to embed instead.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use zboot_format::stub_build;

fn main() {
    println!("cargo:rerun-if-env-changed=ZBOOT_STUB_EFI");
    println!("cargo:rerun-if-changed=build.rs");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let dest = out_dir.join("zboot-stub.efi");

    if let Some(path) = env::var_os("ZBOOT_STUB_EFI").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        // `--version` names the embedded stub; a prebuilt one has no known crate version.
        println!("cargo:rustc-env=ZBOOT_STUB_VERSION=external");
        println!("cargo:rerun-if-changed={}", path.display());
        // The prebuilt stub serves every codec.
        for (name, _) in stub_build::VARIANTS {
            let to = out_dir.join(format!("zboot-stub-{name}.efi"));
            if let Err(e) = fs::copy(&path, &to) {
                panic!("ZBOOT_STUB_EFI={}: {e}", path.display());
            }
        }
        if let Err(e) = fs::copy(&path, &dest) {
            panic!("ZBOOT_STUB_EFI={}: {e}", path.display());
        }
        return;
    }

    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("..");
    println!(
        "cargo:rustc-env=ZBOOT_STUB_VERSION={}",
        stub_version(&root.join("stub").join("Cargo.toml"))
    );
    let workspace_manifest = root.join("Cargo.toml");
    for watched in [
        "stub",
        "crates/zboot-format",
        "Cargo.lock",
        "Cargo.toml",
        "rust-toolchain.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let target_dir = stub_target_dir(&out_dir);
    // One stub per codec carrying only that decoder (stub cargo features), plus the all-codec
    // stub for `EMBEDDED_STUB`: see docs/performance.md for the sizes.
    for (name, features) in stub_build::VARIANTS {
        let built = build_stub(&root, &workspace_manifest, &target_dir, features);
        let to = out_dir.join(format!("zboot-stub-{name}.efi"));
        if let Err(e) = fs::copy(&built, &to) {
            panic!("{}: {e}", built.display());
        }
    }
    if let Err(e) = fs::copy(out_dir.join("zboot-stub-all.efi"), &dest) {
        panic!("{}: {e}", dest.display());
    }
}

/// `cargo build --profile stub -p zboot-stub --no-default-features --features F`
/// ([`stub_build::CARGO_ARGS`]); the .efi built.
fn build_stub(
    root: &Path,
    workspace_manifest: &Path,
    target_dir: &Path,
    features: &str,
) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(stub_build::CARGO_ARGS)
        .args(["--features", features])
        .arg("--manifest-path")
        .arg(workspace_manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(root);
    // The outer build's settings must not leak into the stub build.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let keep = key == "CARGO_HOME"
            || key.starts_with("CARGO_NET_")
            || key.starts_with("CARGO_HTTP_")
            || key.starts_with("CARGO_REGISTRIES_")
            || key.starts_with("CARGO_REGISTRY_")
            || key.starts_with("CARGO_SOURCE_");
        let drop = (key.starts_with("CARGO_") && !keep)
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
                    | "MAKEFLAGS"
                    | "MFLAGS"
            );
        if drop {
            cmd.env_remove(key);
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for the stub: {e}"));
    if !status.success() {
        panic!(
            "building the EFI stub (cargo {} --features {features:?}) failed; \
             set ZBOOT_STUB_EFI=/path/to/stub.efi to embed a prebuilt stub instead",
            stub_build::CARGO_ARGS.join(" ")
        );
    }
    stub_build::ARTIFACT
        .iter()
        .fold(target_dir.to_path_buf(), |p, c| p.join(c))
}

/// `<target-dir>/zboot-stub`, next to the outer build's profile directories, so that build, check,
/// clippy and test share one stub build. Falls back to OUT_DIR.
fn stub_target_dir(out_dir: &Path) -> PathBuf {
    // OUT_DIR = <target-dir>[/<triple>]/<profile>/build/<pkg>-<hash>/out
    let mut dir = out_dir;
    while let Some(parent) = dir.parent() {
        if dir.file_name().is_some_and(|n| n == "build")
            && let Some(target_dir) = parent.parent()
        {
            return target_dir.join("zboot-stub");
        }
        dir = parent;
    }
    out_dir.join("stub-target")
}

/// The `zboot-stub` crate version: its own `version = "..."`, or the workspace's (which is also
/// this package's) for `version.workspace = true`.
fn stub_version(manifest: &Path) -> String {
    let text = fs::read_to_string(manifest).unwrap_or_default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("version") {
            let v = v.trim_start();
            if let Some(v) = v.strip_prefix('=') {
                return v.trim().trim_matches('"').to_string();
            }
            if v.starts_with(".workspace") {
                break;
            }
        }
    }
    env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| "unknown".into())
}

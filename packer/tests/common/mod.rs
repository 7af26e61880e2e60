//! Helpers shared by the end-to-end tests of the `zboot-pack` binary.
// Each test crate uses a different subset.
#![allow(
    dead_code,
    reason = "every test binary compiles this module and uses a different part of it"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_zboot-pack");

/// What one run of the binary printed and returned.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `zboot-pack` with `args` (no SOURCE_DATE_EPOCH from the caller's environment).
pub fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Run {
    let out = Command::new(BIN)
        .args(args.iter().map(|a| a.as_ref()))
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Under CI a missing prerequisite is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Writes `data` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Debian's 6.1 vmlinuz from the fixture cache (`cargo xtask fixtures` records it in the
/// cache's manifest.txt), if it is there.
pub fn debian_kernel() -> Option<PathBuf> {
    let root = std::env::var_os("ZBOOT_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/zboot-pack")))?;
    let manifest = std::fs::read_to_string(root.join("manifest.txt")).ok()?;
    let rel = manifest
        .lines()
        .find_map(|l| l.strip_prefix("kernel.vmlinuz="))?;
    Some(root.join(rel)).filter(|p| p.is_file())
}

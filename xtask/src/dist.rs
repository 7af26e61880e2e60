//! `cargo xtask dist`: the offline source release, and the `reproducible` test step that builds
//! it.
//!
//! The tarball `zboot-pack-<version>.tar.gz` holds the project's files (what git tracks, as they
//! are in the work tree), every crate `Cargo.lock` names under `vendor/` (`cargo vendor --locked
//! --versioned-dirs`), and a `.cargo/config.toml` that replaces crates.io with that directory and
//! turns the network off (`net.offline`), for the outer build and for the stub builds that
//! `packer/build.rs` runs inside it. Its entries are sorted, owned by 0:0 and dated at the last
//! commit (or `SOURCE_DATE_EPOCH`), and gzip writes no name or time: the same tree gives the same
//! tarball.
//!
//! A release build is the same bytes wherever it runs when the two absolute paths rustc would
//! record (in dependency panic messages) are remapped to one neutral name, [`REMAP_DEPS`]: the
//! vendored crates (`<tree>/vendor`) and, in a build from a clone, the cargo registry's sources.
//! The stubs need nothing: they carry no paths (and `/Brepro /DEBUG:NONE`, stub/build.rs, keep
//! the clock and the PDB out of them). docs/install.md has the recipe.

use anyhow::{Context, Result, bail, ensure};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::boot_tests::Ctx;
use crate::fixtures::{missing, run_capture};

/// The name both builds give the crate sources in the binaries they write.
pub const REMAP_DEPS: &str = "/rust/deps";

/// What the tarball's `.cargo/config.toml` adds to the project's own.
pub const VENDOR_CONFIG: &str = "
# Added by `cargo xtask dist`: every crate comes from vendor/, never from the network.
[source.crates-io]
replace-with = \"vendored-sources\"

[source.vendored-sources]
directory = \"vendor\"

[net]
offline = true
";

#[derive(clap::Args, Debug)]
pub struct DistArgs {
    /// Directory to write the tarball to (default: target/dist).
    #[arg(long, short)]
    pub out_dir: Option<PathBuf>,
}

pub fn cli(a: &DistArgs) -> Result<()> {
    let out = a
        .out_dir
        .clone()
        .unwrap_or_else(|| crate::qemu::target_dir().join("dist"));
    let tarball = write(&out)?;
    println!("{}", tarball.display());
    Ok(())
}

/// `zboot-pack-<version>`: the tarball's top directory.
fn release_name() -> String {
    format!("zboot-pack-{}", env!("CARGO_PKG_VERSION"))
}

/// Writes `<out>/zboot-pack-<version>.tar.gz` and returns its path.
pub fn write(out: &Path) -> Result<PathBuf> {
    let root = crate::workspace_root();
    let name = release_name();
    fs::create_dir_all(out)?;
    let stage = tempfile::Builder::new()
        .prefix("dist-")
        .tempdir_in(out)
        .context("creating the staging directory")?;
    let top = stage.path().join(&name);
    copy_tracked(&root, &top)?;
    eprintln!("dist: cargo vendor --locked --versioned-dirs vendor");
    run_capture(
        cargo_clean_env()
            .args([
                "vendor",
                "--locked",
                "--versioned-dirs",
                "--quiet",
                "vendor",
            ])
            .current_dir(&top),
    )?;
    let config = top.join(".cargo/config.toml");
    let mut text = fs::read_to_string(&config).unwrap_or_default();
    text.push_str(VENDOR_CONFIG);
    fs::create_dir_all(config.parent().unwrap())?;
    fs::write(&config, text)?;

    let tarball = out.join(format!("{name}.tar.gz"));
    let partial = out.join(format!(".{name}.tar.gz.partial"));
    let epoch = source_date_epoch(&root)?;
    let st = Command::new("tar")
        .arg("--sort=name")
        .arg(format!("--mtime=@{epoch}"))
        .args([
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mode=go-w",
            "--format=gnu",
            "--use-compress-program=gzip -9n",
            "-cf",
        ])
        .arg(&partial)
        .arg("-C")
        .arg(stage.path())
        .arg(&name)
        .stdin(Stdio::null())
        .status()
        .context("running tar (GNU tar and gzip are needed)")?;
    ensure!(st.success(), "tar -cf {} failed ({st})", partial.display());
    fs::rename(&partial, &tarball)?;
    eprintln!("dist: {} (commit time {epoch})", tarball.display());
    Ok(tarball)
}

/// `SOURCE_DATE_EPOCH`, else the committer time of HEAD.
fn source_date_epoch(root: &Path) -> Result<u64> {
    if let Some(v) = std::env::var_os("SOURCE_DATE_EPOCH") {
        let s = v.to_string_lossy();
        return s
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={s}: not a number of seconds"));
    }
    let out = run_capture(
        Command::new("git")
            .args(["log", "-1", "--format=%ct"])
            .current_dir(root),
    )
    .context("the commit time of HEAD (not a git checkout?)")?;
    Ok(out.trim().parse()?)
}

/// Copies what git tracks (and new files it does not ignore), as they are in the work tree, from
/// `root` to `dest`.
fn copy_tracked(root: &Path, dest: &Path) -> Result<()> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output()
        .context("running git ls-files")?;
    ensure!(
        out.status.success(),
        "git ls-files in {}: {}",
        root.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    for rel in out.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel)?);
        let from = root.join(rel);
        if !from.is_file() {
            continue; // deleted in the work tree
        }
        let to = dest.join(rel);
        fs::create_dir_all(to.parent().unwrap())?;
        fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
    }
    Ok(())
}

/// `cargo` with the outer `cargo xtask` run's settings removed (its target directory, flags and
/// package variables), so that a build elsewhere is the build a user would run there.
fn cargo_clean_env() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let outer = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || matches!(
                key,
                "RUSTFLAGS" | "RUSTDOCFLAGS" | "RUSTC_WRAPPER" | "RUSTC_WORKSPACE_WRAPPER"
            );
        if outer {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// The user's cargo home (`$CARGO_HOME`, else `~/.cargo`).
fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        })
}

/// `RUSTFLAGS` that name every directory in `sources` (crate source roots) [`REMAP_DEPS`].
pub fn remap_flags(sources: &[PathBuf]) -> String {
    sources
        .iter()
        .map(|d| format!("--remap-path-prefix={}={REMAP_DEPS}", d.display()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The registry source directories of a cargo home (`registry/src/<index>`).
fn registry_sources(home: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(home.join("registry/src"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// One release build: where it ran and what it wrote.
struct Build {
    packer: PathBuf,
    /// `zboot-stub-<variant>.efi` -> file, from the build script's OUT_DIR.
    stubs: BTreeMap<String, PathBuf>,
}

/// `cargo build --release --locked -p zboot-pack` in `tree` with `cargo_home` and `rustflags`;
/// `offline`: in a network namespace with only loopback (`unshare -n`).
fn release_build(tree: &Path, cargo_home: &Path, rustflags: &str, offline: bool) -> Result<Build> {
    let mut cargo = cargo_clean_env();
    cargo
        .args(["build", "--release", "--locked", "-p", "zboot-pack"])
        .env("CARGO_HOME", cargo_home)
        .env("RUSTFLAGS", rustflags);
    if offline {
        // A home of its own too: nothing of the user's is read (rustup's own home stays, named
        // by the RUSTUP_HOME rustup set for this process).
        cargo.arg("--offline").env("HOME", cargo_home);
    }
    let mut cmd = if offline {
        let mut u = Command::new("unshare");
        u.args(if crate::setup::is_root() {
            &["-n"][..]
        } else {
            &["-r", "-n"][..]
        });
        u.arg(cargo.get_program());
        u.args(cargo.get_args());
        for (k, v) in cargo.get_envs() {
            match v {
                Some(v) => u.env(k, v),
                None => u.env_remove(k),
            };
        }
        u
    } else {
        cargo
    };
    let what = if offline { "offline " } else { "" };
    eprintln!("reproducible: {what}release build in {}", tree.display());
    let out = cmd
        .current_dir(tree)
        .stdin(Stdio::null())
        .output()
        .context("running cargo build")?;
    ensure!(
        out.status.success(),
        "{what}cargo build --release in {} failed ({}):\n{}",
        tree.display(),
        out.status,
        tail(&String::from_utf8_lossy(&out.stderr), 30)
    );
    let target = tree.join("target/release");
    let mut stubs = BTreeMap::new();
    for dir in fs::read_dir(target.join("build"))?.filter_map(|e| e.ok().map(|e| e.path())) {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !name.starts_with("zboot-pack-") {
            continue;
        }
        for f in fs::read_dir(dir.join("out"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let n = f.file_name().to_string_lossy().into_owned();
            if n.starts_with("zboot-stub") && n.ends_with(".efi") {
                ensure!(
                    stubs.insert(n.clone(), f.path()).is_none(),
                    "two build directories of zboot-pack hold {n} in a fresh build"
                );
            }
        }
    }
    ensure!(
        stubs.len() == zboot_format::stub_build::VARIANTS.len() + 1,
        "the build in {} left {} stubs, want one per variant and zboot-stub.efi",
        tree.display(),
        stubs.len()
    );
    Ok(Build {
        packer: target.join("zboot-pack"),
        stubs,
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn sha256(path: &Path) -> Result<String> {
    use sha2::Digest;
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", sha2::Sha256::digest(&data)))
}

/// `zboot-pack --version` of `packer`.
fn version_line(packer: &Path) -> Result<String> {
    let out = crate::demo::run_packer(packer, &["--version".as_ref()])?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// The `reproducible` step: two release builds that share nothing but the commit and the
/// toolchain, compared artefact by artefact.
///
/// - **A**: a copy of the project's files in a fresh directory, the user's cargo home and its
///   registry (online), `RUSTFLAGS` remapping the registry sources to [`REMAP_DEPS`];
/// - **B**: the `cargo xtask dist` tarball unpacked in another fresh directory of another depth,
///   an empty cargo home and `HOME`, in a network namespace with only loopback, `RUSTFLAGS`
///   remapping `<tree>/vendor` to [`REMAP_DEPS`].
///
/// The packer binaries, every embedded stub and an image each packer writes of the Debian
/// kernel are byte-identical, and `zboot-pack --version` names the same stub in A, B and the
/// workspace's own release packer (built without any remapping).
pub fn test(ctx: &Ctx) -> Result<()> {
    if crate::setup::which("unshare").is_none() {
        return Err(missing("unshare (Debian package util-linux)"));
    }
    let fx = ctx.fixtures()?;
    let work = crate::qemu::target_dir().join("reproducible");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let tmp = tempfile::Builder::new()
        .prefix("repro-")
        .tempdir_in(&work)?;

    let tree_a = tmp.path().join("a/zboot-pack");
    copy_tracked(&crate::workspace_root(), &tree_a)?;
    let home = cargo_home();
    let a = release_build(
        &tree_a,
        &home,
        &remap_flags(&registry_sources(&home)),
        false,
    )?;

    let tarball = write(&tmp.path().join("dist"))?;
    let unpack = tmp.path().join("b/build/src");
    fs::create_dir_all(&unpack)?;
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&unpack)
        .status()
        .context("running tar -x")?;
    ensure!(st.success(), "tar -xzf {} failed", tarball.display());
    let tree_b = unpack.join(release_name());
    let home_b = tmp.path().join("b/cargo-home");
    fs::create_dir_all(&home_b)?;
    let b = release_build(
        &tree_b,
        &home_b,
        &remap_flags(&[tree_b.join("vendor")]),
        true,
    )?;

    let mut rows = vec![("zboot-pack".to_string(), a.packer.clone(), b.packer.clone())];
    for (name, pa) in &a.stubs {
        let pb = b
            .stubs
            .get(name)
            .with_context(|| format!("the offline build has no {name}"))?;
        rows.push((name.clone(), pa.clone(), pb.clone()));
    }
    let image = |packer: &Path, dir: &str| -> Result<PathBuf> {
        let out = tmp.path().join(dir).join("linux.efi");
        crate::demo::pack(packer, &fx.kernel.vmlinuz, &out, &[])?;
        Ok(out)
    };
    rows.push((
        format!("image of {}", fx.kernel.release),
        image(&a.packer, "a")?,
        image(&b.packer, "b")?,
    ));
    let mut differ = Vec::new();
    for (name, pa, pb) in &rows {
        let (ha, hb) = (sha256(pa)?, sha256(pb)?);
        println!(
            "    {name:<24} {}",
            if ha == hb { &ha[..16] } else { "DIFFERS" }
        );
        if ha != hb {
            differ.push(format!("{name} ({} vs {})", pa.display(), pb.display()));
        }
    }
    if !differ.is_empty() {
        bail!(
            "the two release builds differ: {} (`diffoscope` shows why; both trees are kept in {})",
            differ.join(", "),
            tmp.keep().display()
        );
    }
    let (va, vb, vw) = (
        version_line(&a.packer)?,
        version_line(&b.packer)?,
        version_line(&ctx.packer()?)?,
    );
    ensure!(
        va == vb && va == vw,
        "--version differs: clone {va:?}, offline {vb:?}, workspace {vw:?}"
    );
    println!("    --version: {va} (the workspace's release packer names the same stub)");
    Ok(())
}

//! Other loaders' build tools, unpacked (never installed) from Debian packages of the suite that
//! ships them: GRUB 2.12 (Debian 13) and 2.06 (Debian 12) with `grub-mkstandalone`, systemd-stub
//! and `ukify` 257 (Debian 13) and of Debian unstable. Each tool set lives in
//! `<cache>/tools/<name>-<version>/` (a filesystem root); a suite other than the machine's comes
//! through a private apt view ([`fixtures::suite_apt`]). Binaries of a newer suite run with that
//! suite's own dynamic loader and libraries ([`ToolRoot::command`]); ukify is Python and runs
//! with the machine's python3 and python3-pefile.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::fixtures::{self, Apt, FetchOptions};

/// One tool set: which suite, which packages, and a file that proves it is complete.
pub struct ToolSet {
    /// Manifest key and directory prefix.
    pub name: &'static str,
    /// Debian suite (`None`: the machine's own apt configuration).
    pub suite: Option<&'static str>,
    /// The package whose version names the set (first), then the rest.
    pub packages: &'static [&'static str],
    /// A path inside the root that must exist.
    pub probe: &'static str,
}

/// Libraries `grub-mkstandalone` and its libc need beyond the machine's (Debian 13 names).
const GRUB_LIBS_13: &[&str] = &[
    "libc6",
    "liblzma5",
    "libdevmapper1.02.1",
    "libefivar1t64",
    "libefiboot1t64",
    "libselinux1",
    "libudev1",
    "libpcre2-8-0",
    "libcap2",
];

pub const GRUB_212: ToolSet = ToolSet {
    name: "grub212",
    suite: Some("trixie"),
    packages: &["grub-efi-amd64-bin", "grub-common"],
    probe: "usr/lib/grub/x86_64-efi/linux.mod",
};

pub const GRUB_206: ToolSet = ToolSet {
    name: "grub206",
    suite: None,
    packages: &[
        "grub-efi-amd64-bin",
        "grub-common",
        "libdevmapper1.02.1",
        "libefivar1",
        "libefiboot1",
    ],
    probe: "usr/lib/grub/x86_64-efi/linuxefi.mod",
};

pub const UKI_257: ToolSet = ToolSet {
    name: "uki257",
    suite: Some("trixie"),
    packages: &["systemd-boot-efi", "systemd-ukify"],
    probe: "usr/lib/systemd/boot/efi/linuxx64.efi.stub",
};

pub const UKI_SID: ToolSet = ToolSet {
    name: "ukisid",
    suite: Some("sid"),
    packages: &["systemd-boot-efi", "systemd-ukify"],
    probe: "usr/lib/systemd/boot/efi/linuxx64.efi.stub",
};

/// Every tool set the boot tests use.
pub const ALL: [&ToolSet; 4] = [&GRUB_212, &GRUB_206, &UKI_257, &UKI_SID];

/// An unpacked tool set.
#[derive(Debug, Clone)]
pub struct ToolRoot {
    pub root: PathBuf,
    /// Version of the set's first package.
    pub version: String,
}

impl ToolRoot {
    /// A path inside the root (`usr/bin/...`).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A command running the root's ELF binary `rel`: through the root's own dynamic loader and
    /// libraries when it ships a libc (a newer suite), else the machine's loader with the root's
    /// libraries first.
    pub fn command(&self, rel: &str) -> Command {
        let own = self.root.join("usr/lib64/ld-linux-x86-64.so.2");
        let loader = if own.is_file() {
            own
        } else {
            PathBuf::from("/lib64/ld-linux-x86-64.so.2")
        };
        let libs = ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"]
            .map(|d| self.root.join(d).display().to_string())
            .join(":");
        let mut c = Command::new(loader);
        c.arg("--library-path").arg(libs).arg(self.root.join(rel));
        c
    }

    /// `ukify` of this root, run by the machine's python3.
    pub fn ukify(&self) -> Command {
        let mut c = Command::new("/usr/bin/python3");
        c.arg(self.root.join("usr/bin/ukify"));
        c
    }
}

/// Load a tool set recorded in the manifest.
pub fn load(root: &Path, m: &BTreeMap<String, String>, set: &ToolSet) -> Result<ToolRoot> {
    let get = |k: &str| {
        m.get(&format!("tool.{}.{k}", set.name))
            .cloned()
            .ok_or_else(|| {
                fixtures::missing(format!(
                    "tool set `{}` not in the fixture manifest; run `cargo xtask fixtures`",
                    set.name
                ))
            })
    };
    let t = ToolRoot {
        root: root.join(get("dir")?),
        version: get("version")?,
    };
    ensure!(
        t.root.join(set.probe).exists(),
        "{} lacks {}; run `cargo xtask fixtures --refresh`",
        t.root.display(),
        set.probe
    );
    Ok(t)
}

/// Fetch a tool set unless cached: resolve the first package's version, download every package
/// of the set (and, for a newer suite's binaries, its libc and libraries), unpack them into one
/// root.
pub fn fetch(
    root: &Path,
    m: &mut BTreeMap<String, String>,
    opts: &FetchOptions,
    set: &ToolSet,
) -> Result<()> {
    let dir_key = format!("tool.{}.dir", set.name);
    if fixtures::cached(root, m, &[&dir_key]) && !opts.refresh {
        let v = &m[&format!("tool.{}.version", set.name)];
        eprintln!("fixtures: {} {v} (cached)", set.name);
        return Ok(());
    }
    let apt = match set.suite {
        Some(suite) => {
            let apt = fixtures::suite_apt(root, suite)?;
            fixtures::update_lists(root, suite, &apt, opts.refresh)?;
            apt
        }
        None => Apt::default(),
    };
    let version = apt.show(set.packages[0])?["Version"].clone();
    let dir = root
        .join("tools")
        .join(format!("{}-{}", set.name, version.replace(['~', ':'], "_")));
    if !dir.join(set.probe).exists() {
        let work = root.join("tmp");
        let stage = tempfile::Builder::new().prefix("tools-").tempdir_in({
            fs::create_dir_all(&work)?;
            &work
        })?;
        let mut packages: Vec<&str> = set.packages.to_vec();
        if set.suite.is_some() && set.name.starts_with("grub") {
            packages.extend_from_slice(GRUB_LIBS_13);
        }
        for p in packages {
            let (_tmp, deb) = apt.download(p, &work)?;
            fixtures::extract_deb(&deb, stage.path(), &[])
                .with_context(|| format!("unpacking {p}"))?;
        }
        ensure!(
            stage.path().join(set.probe).exists(),
            "{} {version}: {} missing after unpacking",
            set.name,
            set.probe
        );
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(dir.parent().unwrap())?;
        fs::rename(stage.keep(), &dir)?;
    }
    eprintln!("fixtures: {} {version} in {}", set.name, dir.display());
    m.insert(dir_key, fixtures::rel(root, &dir));
    m.insert(format!("tool.{}.version", set.name), version);
    Ok(())
}

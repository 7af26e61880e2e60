//! `cargo xtask install [--prefix DIR] [--destdir DIR]`: the packer and everything around it, in
//! the places a distribution package puts them (`DESTDIR` staging as `make install` does):
//!
//! | file | where (under `DESTDIR` + `PREFIX`) |
//! |---|---|
//! | `zboot-pack` | `bin/` |
//! | man pages (`zboot-pack man`) | `share/man/man1/` |
//! | bash / zsh / fish completions | `share/bash-completion/completions/zboot-pack`, `share/zsh/site-functions/_zboot-pack`, `share/fish/vendor_completions.d/zboot-pack.fish` |
//! | the make fragment | `share/zboot-pack/zboot.mk` |
//! | the kernel-install plugin | `lib/kernel/install.d/91-zboot-pack.install` |
//!
//! The plugin's default `ZBOOT_PACK` is rewritten to `PREFIX/bin/zboot-pack` (kernel-install may
//! run with a short PATH). kernel-install reads plugins from `/usr/lib/kernel/install.d` and
//! `/etc/kernel/install.d` only: with another prefix, a note says where to link it.

use anyhow::{Context, Result, ensure};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    /// Installation prefix.
    #[arg(long, default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// Staging root prepended to every path (as `make install DESTDIR=`).
    #[arg(long)]
    pub destdir: Option<PathBuf>,
}

/// The kernel-install plugin's file name (its number orders it after 90-loaderentry.install).
pub const PLUGIN: &str = "91-zboot-pack.install";

/// Where each installed file goes, relative to the prefix.
pub struct Layout {
    pub bin: &'static str,
    pub man1: &'static str,
    pub bash: &'static str,
    pub zsh: &'static str,
    pub fish: &'static str,
    pub make: &'static str,
    pub plugin: &'static str,
}

pub const LAYOUT: Layout = Layout {
    bin: "bin/zboot-pack",
    man1: "share/man/man1",
    bash: "share/bash-completion/completions/zboot-pack",
    zsh: "share/zsh/site-functions/_zboot-pack",
    fish: "share/fish/vendor_completions.d/zboot-pack.fish",
    make: "share/zboot-pack/zboot.mk",
    plugin: "lib/kernel/install.d/91-zboot-pack.install",
};

/// `destdir` + `prefix` (an absolute prefix is re-rooted under `destdir`).
pub fn root(prefix: &Path, destdir: Option<&Path>) -> PathBuf {
    match destdir {
        Some(d) => d.join(prefix.strip_prefix("/").unwrap_or(prefix)),
        None => prefix.to_path_buf(),
    }
}

pub fn cli(a: &InstallArgs) -> Result<()> {
    ensure!(
        a.prefix.is_absolute(),
        "--prefix {} must be absolute",
        a.prefix.display()
    );
    let packer = crate::demo::build_packer()?;
    let files = install(&packer, &a.prefix, a.destdir.as_deref())?;
    for f in &files {
        println!("{}", f.display());
    }
    if a.prefix != Path::new("/usr") {
        println!(
            "note: kernel-install reads plugins from /usr/lib/kernel/install.d and \
             /etc/kernel/install.d; link {} into /etc/kernel/install.d to use it",
            a.prefix.join(LAYOUT.plugin).display()
        );
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(path.to_path_buf())
}

fn output_of(packer: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    crate::demo::run_packer(packer, &args)
}

/// Installs `packer` and its files under `destdir`/`prefix`; returns the files written.
pub fn install(packer: &Path, prefix: &Path, destdir: Option<&Path>) -> Result<Vec<PathBuf>> {
    let root = root(prefix, destdir);
    let ws = crate::workspace_root();
    let mut files = vec![write(
        &root.join(LAYOUT.bin),
        &fs::read(packer).with_context(|| format!("reading {}", packer.display()))?,
        0o755,
    )?];

    let man_tmp = tempfile::tempdir()?;
    let dir = man_tmp.path().to_str().context("temporary path")?;
    output_of(packer, &["man", "--out-dir", dir])?;
    let mut pages: Vec<_> = fs::read_dir(man_tmp.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    ensure!(!pages.is_empty(), "zboot-pack man wrote no pages");
    for p in pages {
        let name = p.file_name().context("page name")?;
        files.push(write(
            &root.join(LAYOUT.man1).join(name),
            &fs::read(&p)?,
            0o644,
        )?);
    }

    for (shell, rel) in [
        ("bash", LAYOUT.bash),
        ("zsh", LAYOUT.zsh),
        ("fish", LAYOUT.fish),
    ] {
        let text = output_of(packer, &["completions", shell])?;
        files.push(write(&root.join(rel), &text, 0o644)?);
    }

    files.push(write(
        &root.join(LAYOUT.make),
        &fs::read(ws.join("make/zboot.mk"))?,
        0o644,
    )?);

    let plugin_src = ws.join("packer/kernel-install").join(PLUGIN);
    let plugin = fs::read_to_string(&plugin_src)
        .with_context(|| format!("reading {}", plugin_src.display()))?;
    files.push(write(
        &root.join(LAYOUT.plugin),
        plugin_with_binary(&plugin, &prefix.join(LAYOUT.bin))?.as_bytes(),
        0o755,
    )?);
    Ok(files)
}

/// The plugin text with its default `ZBOOT_PACK=zboot-pack` replaced by the installed binary.
pub fn plugin_with_binary(plugin: &str, bin: &Path) -> Result<String> {
    const DEFAULT: &str = "\nZBOOT_PACK=zboot-pack\n";
    ensure!(
        plugin.matches(DEFAULT).count() == 1,
        "{PLUGIN}: expected one default line `ZBOOT_PACK=zboot-pack`"
    );
    Ok(plugin.replace(DEFAULT, &format!("\nZBOOT_PACK={}\n", bin.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_reroots_the_prefix_under_destdir() {
        assert_eq!(
            root(Path::new("/usr"), Some(Path::new("/tmp/d"))),
            Path::new("/tmp/d/usr")
        );
        assert_eq!(root(Path::new("/usr/local"), None), Path::new("/usr/local"));
    }

    #[test]
    fn plugin_default_binary_is_rewritten_once() {
        let src = fs::read_to_string(
            crate::workspace_root()
                .join("packer/kernel-install")
                .join(PLUGIN),
        )
        .unwrap();
        let out = plugin_with_binary(&src, Path::new("/usr/bin/zboot-pack")).unwrap();
        assert!(out.contains("\nZBOOT_PACK=/usr/bin/zboot-pack\n"));
        assert!(!out.contains("\nZBOOT_PACK=zboot-pack\n"));
        assert!(plugin_with_binary("no default here", Path::new("/x")).is_err());
    }
}

//! Atomic output: a temporary file in the target directory, renamed over the target only when
//! everything succeeded. On error the old output stays untouched and no partial file is left.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let shown = path.display();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if path.is_dir() {
        anyhow::bail!("{shown}: cannot write: is a directory");
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".zboot-pack-")
        .tempfile_in(dir)
        .with_context(|| format!("{shown}: cannot write"))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("{shown}: cannot write"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("{shown}: cannot write"))?;
    Ok(())
}

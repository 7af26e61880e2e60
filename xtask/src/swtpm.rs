//! A software TPM 2.0 for one QEMU run: `swtpm socket` with a fresh state directory, started
//! before QEMU and stopped with it ([`Swtpm`] kills it on drop). QEMU reaches it through
//! `-tpmdev emulator` and shows it to the guest as a TIS device; OVMF's TCG2 support does the rest.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixtures::missing;

pub struct Swtpm {
    child: Child,
    ctrl: PathBuf,
}

impl Swtpm {
    /// Starts swtpm with its state and control socket under `dir` (which must exist).
    pub fn start(dir: &Path) -> Result<Swtpm> {
        let state = dir.join("tpm-state");
        std::fs::create_dir_all(&state)?;
        let ctrl = dir.join("swtpm.sock");
        let log = std::fs::File::create(dir.join("swtpm.log"))?;
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--terminate"])
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", ctrl.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| missing(format!("swtpm (apt package swtpm): {e}")))?;
        let mut t = Swtpm { child, ctrl };
        let start = Instant::now();
        while !t.ctrl.exists() {
            if let Some(st) = t.child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("swtpm.log")).unwrap_or_default();
                bail!("swtpm exited at start ({st}): {}", log.trim());
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("swtpm: no control socket {} after 10 s", t.ctrl.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(t)
    }

    /// The QEMU arguments that attach this TPM (a TIS device on the ISA bus).
    pub fn qemu_args(&self) -> Vec<String> {
        vec![
            "-chardev".into(),
            format!("socket,id=chrtpm,path={}", self.ctrl.display()),
            "-tpmdev".into(),
            "emulator,id=tpm0,chardev=chrtpm".into(),
            "-device".into(),
            "tpm-tis,tpmdev=tpm0".into(),
        ]
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        // `--terminate` ends it when QEMU closes the control channel; this covers the rest.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait().context("waiting for swtpm");
    }
}

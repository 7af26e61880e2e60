//! `cargo xtask docs-check` (and the `docs-check` step of `cargo xtask test`): runs the commands
//! the documentation shows, so that they cannot rot.
//!
//! Scanned: `README.md` and `docs/*.md`. Two kinds of fenced blocks are executed:
//!
//! * ```` ```sh runnable ```` — the block is run with `bash -euo pipefail`;
//! * ```` ```yaml runnable ```` — a GitHub Actions workflow: its workflow- and job-level `env:`
//!   entries are exported (unless set below) and every `run:` step is executed in order, each in a
//!   subshell, except steps whose `run:` line carries
//!   `# docs-check: skip` (checkout, tool installation, writing secrets to files).
//!
//! The blocks of one file run in order, in one fresh temporary directory, with:
//! `PATH` starting with the directory of the release `zboot-pack`, `ZBOOT_SRC` (the checkout),
//! `ZBOOT_VMLINUZ` (Debian's 6.1 bzImage fixture), `ZBOOT_INITRD` (the test initramfs),
//! `KERNEL` / `INITRD` (the same, under the names the CI recipe uses), and `DB_KEY` / `DB_CERT`:
//! a throwaway RSA-2048 signing key and self-signed certificate made with openssl for this run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

use crate::boot_tests::Ctx;

/// One executable block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Line of the opening fence (1-based).
    pub line: usize,
    pub script: String,
}

/// The runnable blocks of a Markdown text.
pub fn blocks(markdown: &str) -> Result<Vec<Block>> {
    let mut out = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((i, l)) = lines.next() {
        let t = l.trim_start();
        let Some(info) = t.strip_prefix("```") else {
            continue;
        };
        let fence_indent = l.len() - t.len();
        let words: Vec<&str> = info.split_whitespace().collect();
        let mut body = Vec::new();
        for (_, l) in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            body.push(l.get(fence_indent..).unwrap_or(l.trim_start()));
        }
        if !words.contains(&"runnable") {
            continue;
        }
        let script = match words.first().copied() {
            Some("sh" | "bash") => body.join("\n") + "\n",
            Some("yaml" | "yml") => workflow_script(&body)
                .with_context(|| format!("workflow block at line {}", i + 1))?,
            other => bail!("line {}: runnable block of unknown kind {other:?}", i + 1),
        };
        out.push(Block {
            line: i + 1,
            script,
        });
    }
    Ok(out)
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

/// A GitHub Actions workflow as one bash script: `export` of the job-level `env:` entries, then
/// every `run:` step not marked `# docs-check: skip`.
pub fn workflow_script(yaml: &[&str]) -> Result<String> {
    let mut script = String::new();
    let mut steps = 0;
    let mut i = 0;
    while i < yaml.len() {
        let l = yaml[i];
        let t = l.trim_start();
        let ind = indent(l);
        // Workflow- or job-level env (not a step's): `NAME: value`.
        if t == "env:" && ind <= 4 {
            i += 1;
            while i < yaml.len() && (yaml[i].trim().is_empty() || indent(yaml[i]) > ind) {
                let entry = yaml[i].trim();
                if let Some((k, v)) = entry.split_once(": ").filter(|_| !entry.starts_with('#')) {
                    let v = v.split(" #").next().unwrap_or(v);
                    let v = v.trim().trim_matches('"').trim_matches('\'');
                    ensure!(
                        !v.contains("${{"),
                        "job-level env {k} uses an expression; docs-check cannot evaluate it"
                    );
                    // A value docs-check provides (fixture paths, the throwaway key) wins.
                    script.push_str(&format!(
                        "[ -n \"${{{k}+x}}\" ] || export {k}='{}'\n",
                        v.replace('\'', "'\\''")
                    ));
                }
                i += 1;
            }
            continue;
        }
        let step = t.strip_prefix("- ").unwrap_or(t);
        if let Some(cmd) = step.strip_prefix("run:") {
            let cmd = cmd.trim();
            let skip = cmd.contains("# docs-check: skip");
            let mut body = String::new();
            if cmd.starts_with('|') {
                i += 1;
                let mut block_indent = None;
                while i < yaml.len() && (yaml[i].trim().is_empty() || indent(yaml[i]) > ind) {
                    let bi = *block_indent.get_or_insert(indent(yaml[i]));
                    body.push_str(yaml[i].get(bi..).unwrap_or(""));
                    body.push('\n');
                    i += 1;
                }
            } else {
                body.push_str(cmd);
                body.push('\n');
                i += 1;
            }
            if !skip {
                steps += 1;
                script.push_str(&format!("( set -euo pipefail\n{body})\n"));
            }
            continue;
        }
        i += 1;
    }
    ensure!(steps > 0, "no run: step to execute");
    Ok(script)
}

/// The documents scanned, `README.md` first.
pub fn documents() -> Result<Vec<PathBuf>> {
    let root = crate::workspace_root();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root.join("README.md"));
    Ok(docs)
}

/// Makes the throwaway signing key and certificate in `dir`.
fn signing_key(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let key = dir.join("db.key");
    let cert = dir.join("db.crt");
    let o = Command::new("openssl")
        .args([
            "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
        ])
        .args([
            "-days",
            "1",
            "-subj",
            "/CN=zboot-pack docs-check throwaway key/",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| crate::fixtures::missing(format!("openssl: {e}")))?;
    ensure!(
        o.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok((key, cert))
}

/// Runs one block with `bash -euo pipefail` in `dir` (`SOURCE_DATE_EPOCH` unset, `env` added).
pub fn run_block(script: &str, dir: &Path, env: &[(&str, &std::ffi::OsStr)]) -> Result<()> {
    let o = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .context("running bash")?;
    if !o.status.success() {
        bail!(
            "{}\n--- stdout\n{}--- stderr\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}

/// Runs every runnable block; fails on the first failing one.
pub fn run(ctx: &Ctx) -> Result<()> {
    let fx = ctx.fixtures()?;
    for tool in ["sbsign", "sbverify", "openssl", "python3", "make"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool} >/dev/null")])
            .status()
            .map_or(true, |s| !s.success())
        {
            return Err(crate::fixtures::missing(format!("{tool} (docs-check)")));
        }
    }
    let packer = ctx.packer()?;
    let keys = tempfile::tempdir()?;
    let (key, cert) = signing_key(keys.path())?;
    let path = format!(
        "{}:{}",
        packer.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let root = crate::workspace_root();
    let mut total = 0;
    let mut workflows = 0;
    for doc in documents()? {
        let text = std::fs::read_to_string(&doc)?;
        let name = doc
            .strip_prefix(crate::workspace_root())
            .unwrap_or(&doc)
            .display()
            .to_string();
        let bs = blocks(&text).with_context(|| name.clone())?;
        if bs.is_empty() {
            continue;
        }
        let dir = tempfile::tempdir()?;
        for b in &bs {
            total += 1;
            workflows += usize::from(b.script.contains("( set -euo pipefail"));
            println!("    docs-check: {name}:{}", b.line);
            let env: [(&str, &std::ffi::OsStr); 9] = [
                ("PATH", path.as_ref()),
                ("ZBOOT_SRC", root.as_os_str()),
                ("ZBOOT_VMLINUZ", fx.kernel.vmlinuz.as_os_str()),
                ("ZBOOT_INITRD", fx.initramfs.as_os_str()),
                ("KERNEL", fx.kernel.vmlinuz.as_os_str()),
                ("INITRD", fx.initramfs.as_os_str()),
                ("DB_KEY", key.as_os_str()),
                ("DB_CERT", cert.as_os_str()),
                ("ZBOOT_DOCS_CHECK", "1".as_ref()),
            ];
            run_block(&b.script, dir.path(), &env).with_context(|| format!("{name}:{}", b.line))?;
        }
    }
    // The CI recipe (docs/ci.md) is a workflow; losing it or its markers must fail.
    ensure!(workflows > 0, "no runnable workflow block (docs/ci.md)");
    ensure!(total >= 3, "only {total} runnable blocks found");
    println!("    docs-check: {total} blocks ran ({workflows} workflow)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_runnable_blocks() {
        let md = "x\n```sh\nnot run\n```\n```sh runnable\necho a\necho b\n```\n```\nplain\n```\n";
        let b = blocks(md).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].line, 5);
        assert_eq!(b[0].script, "echo a\necho b\n");
        assert!(blocks("```python runnable\nprint(1)\n```\n").is_err());
    }

    #[test]
    fn workflow_runs_steps_and_env_in_order() {
        let yaml = "\
name: x
on: [push]
jobs:
  image:
    runs-on: ubuntu-24.04
    env:
      # A comment: not an entry
      SOURCE_DATE_EPOCH: 1700000000  # trailing comment
      OUT: \"out dir\"
    steps:
      - uses: actions/checkout@v4
      - name: install
        run: sudo apt-get install -y sbsigntool  # docs-check: skip
      - name: one
        run: echo one
      - name: two
        run: |
          echo two
            echo indented
        env:
          X: 1
";
        let lines: Vec<&str> = yaml.lines().collect();
        let s = workflow_script(&lines).unwrap();
        assert!(
            s.starts_with(
                "[ -n \"${SOURCE_DATE_EPOCH+x}\" ] || export SOURCE_DATE_EPOCH='1700000000'\n\
             [ -n \"${OUT+x}\" ] || export OUT='out dir'\n"
            ),
            "{s}"
        );
        assert!(!s.contains("apt-get"));
        let one = s.find("echo one").unwrap();
        let two = s.find("echo two\n  echo indented\n").unwrap();
        assert!(one < two, "{s}");
        assert!(!s.contains("export X"), "{s}");
        // A failing step fails the whole workflow, even when later steps succeed.
        let dir = tempfile::tempdir().unwrap();
        assert!(run_block(&s, dir.path(), &[]).is_ok(), "{s}");
        let failing = yaml.replace("echo one", "false");
        let lines2: Vec<&str> = failing.lines().collect();
        let s2 = workflow_script(&lines2).unwrap();
        assert!(run_block(&s2, dir.path(), &[]).is_err(), "{s2}");
        // A failing command in the middle of a sh block fails it.
        assert!(run_block("false\necho ok\n", dir.path(), &[]).is_err());
        assert!(run_block("set +e\nfalse\ntrue\n", dir.path(), &[]).is_ok());
        let secret =
            "jobs:\n  a:\n    env:\n      K: ${{ secrets.K }}\n    steps:\n      - run: true\n";
        let lines: Vec<&str> = secret.lines().collect();
        assert!(workflow_script(&lines).is_err());
    }
}

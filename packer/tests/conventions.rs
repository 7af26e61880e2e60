//! Command-line conventions: exit status, `--version`, shell completions, the man page, and the
//! documented `inspect --json` schema (docs/inspect-json.md).

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use zboot_pack::testkit;

mod common;
use common::{debian_kernel, in_ci, run};

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn exit_status_is_0_1_or_2_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let elf = dir.path().join("vmlinux");
    std::fs::write(&elf, testkit::vmlinux(true)).unwrap();
    let out = dir.path().join("o.efi");
    // 0: success, help, version.
    assert_eq!(run(&[&elf, &"-o", &out, &"-q"]).code, 0);
    assert_eq!(run(&[&"verify", &out]).code, 0);
    assert_eq!(run(&[&"--help"]).code, 0);
    assert_eq!(run(&[&"inspect", &"--help"]).code, 0);
    assert_eq!(run(&[&"--version"]).code, 0);
    // 1: verify found violations (a vmlinux is no PE at all).
    let r = run(&[&"verify", &elf]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    // 2: usage errors.
    let (e, o) = (elf.display().to_string(), out.display().to_string());
    let usage: [&[&str]; 9] = [
        &["--no-such-flag"],
        &[&e],       // no -o
        &["-o", &o], // no INPUT
        &[&e, "-o", &o, "--codec", "brotli"],
        &["completions", "cmd.exe"],
        &["inspect"],
        &["pcr"],
        &["pcr", &o, "--options", "x", "--options-file", &e],
        &[],
    ];
    for args in usage {
        let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args.iter().map(|a| a as _).collect();
        let r = run(&args);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(!r.stderr.is_empty());
    }
    // 2: input errors, one line on stderr.
    let m = dir.path().join("missing").display().to_string();
    let input: [&[&str]; 7] = [
        &[&m, "-o", &o],
        &["inspect", &m],
        &["verify", &m],
        &["extract", &m, "-o", &o],
        &["pcr", &m],
        &["pcr", &e], // not a zboot-pack image
        &["pcr", &o, "--initrd", &m],
    ];
    for args in input {
        let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args.iter().map(|a| a as _).collect();
        let r = run(&args);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.starts_with("zboot-pack: error: "), "{}", r.stderr);
        assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    }
}

#[test]
fn version_names_the_embedded_stub_and_its_hash() {
    let r = run(&[&"--version"]);
    assert_eq!(r.code, 0);
    let line = r.stdout.trim_end();
    let digest = hex(&zboot_format::header::sha256(&[zboot_pack::EMBEDDED_STUB]));
    let want = format!(
        "zboot-pack {} (stub zboot-stub {}, sha256 {})",
        env!("CARGO_PKG_VERSION"),
        zboot_pack::cli::STUB_VERSION,
        &digest[..12]
    );
    assert_eq!(line, want);
    assert!(zboot_pack::cli::STUB_VERSION != "unknown");
}

#[test]
fn completions_for_every_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef zboot-pack"),
        ("fish", "complete -c zboot-pack"),
        ("elvish", "edit:completion:arg-completer"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let r = run(&[&"completions", &shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        assert!(r.stdout.contains(marker), "{shell}: no {marker:?}");
        for word in [
            "inspect",
            "verify",
            "extract",
            "pcr",
            "completions",
            "man",
            "codec",
            "cmdline",
        ] {
            assert!(r.stdout.contains(word), "{shell}: no {word}");
        }
    }
    // The bash script is valid bash and completes subcommands and codec values.
    let script = run(&[&"completions", &"bash"]).stdout;
    let probe = format!(
        "{script}\n\
         COMP_WORDS=(zboot-pack ver); COMP_CWORD=1; _zboot__pack zboot-pack ver zboot-pack; \
         echo \"sub:${{COMPREPLY[*]}}\"\n\
         COMP_WORDS=(zboot-pack vmlinux --codec x); COMP_CWORD=3; \
         _zboot__pack zboot-pack x --codec; echo \"codec:${{COMPREPLY[*]}}\"\n"
    );
    match Command::new("bash").arg("-c").arg(&probe).output() {
        Ok(o) => {
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert!(out.contains("sub:verify"), "{out}");
            assert!(out.contains("codec:xz"), "{out}");
        }
        Err(_) => assert!(!in_ci(), "bash missing"),
    }
}

#[test]
fn man_pages_from_the_clap_definition() {
    let r = run(&[&"man"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with(".ie") || r.stdout.starts_with(".TH"));
    assert!(
        r.stdout.contains(".TH zboot-pack 1"),
        "{}",
        &r.stdout[..200]
    );
    for word in ["\\-\\-codec", "inspect", "Exit status", "stub zboot\\-stub"] {
        assert!(r.stdout.contains(word), "man page lacks {word}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let r = run(&[&"man", &"--out-dir", &out]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for page in [
        "zboot-pack.1",
        "zboot-pack-inspect.1",
        "zboot-pack-verify.1",
        "zboot-pack-extract.1",
        "zboot-pack-pcr.1",
        "zboot-pack-completions.1",
        "zboot-pack-man.1",
    ] {
        let text = std::fs::read_to_string(out.join(page)).unwrap();
        assert!(text.contains(".SH NAME"), "{page}");
    }
}

// -------------------------------------------------------------------------------------------------
// inspect --json against docs/inspect-json.md

struct Entry {
    path: String,
    ty: String,
    when: String,
}

fn schema() -> Vec<Entry> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/inspect-json.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let start = text.find("```schema\n").expect("no ```schema block") + "```schema\n".len();
    let end = start + text[start..].find("```").unwrap();
    let entries: Vec<Entry> = text[start..end]
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "bad schema line {l:?}");
            Entry {
                path: f[0].into(),
                ty: f[1].into(),
                when: f[2].into(),
            }
        })
        .collect();
    assert!(entries.len() > 50);
    entries
}

fn type_ok(ty: &str, v: &Value) -> bool {
    ty.split('|').any(|t| match t {
        "integer" => v.is_u64() || v.is_i64(),
        "bool" => v.is_boolean(),
        "string" => v.is_string(),
        "hex" => v.as_str().is_some_and(|s| {
            s.strip_prefix("0x")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
        }),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => match t.strip_prefix("array<").and_then(|t| t.strip_suffix('>')) {
            Some(inner) => v
                .as_array()
                .is_some_and(|a| a.iter().all(|x| type_ok(inner, x))),
            None => panic!("unknown schema type {t:?}"),
        },
    })
}

/// Every (schema path, value) of a JSON value: `a.b`, `a[].b`, `a.*.b` as written in the doc.
fn flatten<'a>(schema: &[Entry], prefix: &str, v: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    let Value::Object(m) = v else { return };
    for (k, val) in m {
        let mut path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if !schema.iter().any(|e| e.path == path) {
            let wild = if prefix.is_empty() {
                "*".to_string()
            } else {
                format!("{prefix}.*")
            };
            if schema.iter().any(|e| e.path == wild) {
                path = wild;
            }
        }
        out.push((path.clone(), val));
        match val {
            Value::Object(_) => flatten(schema, &path, val, out),
            Value::Array(a) => {
                for item in a {
                    flatten(schema, &format!("{path}[]"), item, out);
                }
            }
            _ => {}
        }
    }
}

fn check(schema: &[Entry], v: &Value, what: &str) {
    assert_eq!(
        v.as_object().unwrap().keys().next().map(String::as_str),
        Some("schema_version"),
        "{what}: schema_version is not the first key"
    );
    assert_eq!(v["schema_version"], 1, "{what}");
    let mut seen = Vec::new();
    flatten(schema, "", v, &mut seen);
    for (path, val) in &seen {
        let e = schema
            .iter()
            .find(|e| &e.path == path)
            .unwrap_or_else(|| panic!("{what}: key {path} is not documented in inspect-json.md"));
        assert!(
            type_ok(&e.ty, val),
            "{what}: {path} = {val} is not of the documented type {}",
            e.ty
        );
    }
    let kind = v["kind"].as_str().unwrap();
    let is_pe = v.get("pe").is_some();
    let has_zimg = matches!(kind, "zboot-pack" | "linux-zboot");
    for e in schema {
        let required = match e.when.as_str() {
            "always" => true,
            "pe" => is_pe,
            "zimg" => has_zimg,
            "optional" => false,
            k if k == kind => true,
            "zboot-pack" | "linux-bzimage" | "vmlinux" => false,
            other => panic!("unknown presence {other:?} for {}", e.path),
        };
        if !required {
            continue;
        }
        let count = seen.iter().filter(|(p, _)| p == &e.path).count();
        assert!(count > 0, "{what}: documented key {} missing", e.path);
        // `a[].b` is required in every element of `a`.
        if let Some((array, _)) = e.path.rsplit_once("[].") {
            let elements: usize = seen
                .iter()
                .filter(|(p, _)| p == array)
                .filter_map(|(_, v)| v.as_array().map(Vec::len))
                .sum();
            assert_eq!(
                count, elements,
                "{what}: {} missing in some element",
                e.path
            );
        }
    }
}

fn inspect_json(path: &Path) -> Value {
    let r = run(&[&"inspect", &"--json", &path]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn inspect_json_matches_documented_schema() {
    let schema = schema();
    let dir = tempfile::tempdir().unwrap();
    let elf = dir.path().join("vmlinux");
    std::fs::write(&elf, testkit::vmlinux(true)).unwrap();
    let initrd = dir.path().join("initrd");
    std::fs::write(&initrd, b"initrd").unwrap();

    // zboot-pack image with everything optional embedded.
    let a = dir.path().join("a.efi");
    let r = run(&[
        &elf,
        &"-o",
        &a,
        &"--cmdline",
        &"console=ttyS0",
        &"--initrd",
        &initrd,
        &"-q",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = inspect_json(&a);
    assert_eq!(v["kind"], "zboot-pack");
    assert_eq!(v["payload"]["cmdline"]["text"], "console=ttyS0");
    check(&schema, &v, "zboot-pack image");

    // Plain image (nothing embedded) and a plain PE (the embedded stub itself).
    let b = dir.path().join("b.efi");
    assert_eq!(run(&[&elf, &"-o", &b, &"--codec", &"none", &"-q"]).code, 0);
    check(&schema, &inspect_json(&b), "plain zboot-pack image");
    let stub = dir.path().join("stub.efi");
    std::fs::write(&stub, zboot_pack::EMBEDDED_STUB).unwrap();
    let v = inspect_json(&stub);
    assert_eq!(v["kind"], "pe");
    check(&schema, &v, "stub PE");

    // A vmlinux: what packing it would decide.
    let v = inspect_json(&elf);
    assert_eq!(v["kind"], "vmlinux");
    assert_eq!(v["vmlinux"]["relocations_source"], "appended to the file");
    check(&schema, &v, "vmlinux");

    // Linux's own bzImage (the Debian fixture kernel).
    match debian_kernel() {
        Some(k) => {
            let v = inspect_json(&k);
            assert_eq!(v["kind"], "linux-bzimage");
            check(&schema, &v, "Debian bzImage");
        }
        None => assert!(!in_ci(), "Debian 6.1 kernel not found in the fixture cache"),
    }

    // The checker itself rejects undocumented keys and wrong types.
    let mut v = inspect_json(&b);
    v["payload"]["surprise"] = Value::from(1);
    let caught = std::panic::catch_unwind(|| check(&schema, &v, "mutated"));
    assert!(caught.is_err(), "an undocumented key passed the check");
    let mut v = inspect_json(&b);
    v["file_size"] = Value::from("12");
    let caught = std::panic::catch_unwind(|| check(&schema, &v, "mutated"));
    assert!(caught.is_err(), "a wrong type passed the check");
}

// -------------------------------------------------------------------------------------------------
// pcr

/// `pcr --json` on an image with an embedded line and initrd, with loader options: the events in
/// the stub's order and PCR 9 = sha256 extends of their data from zero.
#[test]
fn pcr_predicts_from_the_embedded_parts_and_the_options() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let elf = dir.path().join("vmlinux");
    std::fs::write(&elf, testkit::vmlinux(true)).unwrap();
    let rd = dir.path().join("initrd.img");
    std::fs::write(&rd, b"070701 test initrd").unwrap();
    let out = dir.path().join("o.efi");
    let r = run(&[
        &elf,
        &"-o",
        &out,
        &"-q",
        &"--cmdline",
        &"quiet",
        &"--initrd",
        &rd,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&[&"pcr", &out, &"--options", &"a", &"--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let tags: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["0x7a626301", "0x8f3b22ed", "0x8f3b22ec"]);
    let mut pcr = [0u8; 32].to_vec();
    for data in [&b"quiet"[..], &[b'a', 0, 0, 0], b"070701 test initrd"] {
        pcr = Sha256::new()
            .chain_update(&pcr)
            .chain_update(Sha256::digest(data))
            .finalize()
            .to_vec();
    }
    assert_eq!(v["values"]["sha256"].as_str().unwrap(), hex(&pcr));
    assert_eq!(v["records"].as_array().unwrap().len(), 3);
    // A loader's initrd replaces the embedded one; no options, no LoadOptions event.
    let r = run(&[&"pcr", &out, &"--initrd", &elf, &"--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["events"][1]["source"], "--initrd");
    assert_eq!(v["events"].as_array().unwrap().len(), 2);
}

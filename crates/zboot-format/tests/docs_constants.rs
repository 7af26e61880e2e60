//! The documentation quotes some of zboot-format's limits by value and by name ("≤ 128,
//! `descriptor::MAX_RELOCS`"). Every such quote must carry the constant's current value, so a
//! limit cannot change on one side only (format.md once said 64 where the descriptor had 128).
//! A quote is a number followed, within a few characters on the same line, by a backticked
//! `module::NAME` path; every path quoted that way must be listed here.

use std::path::Path;

/// The constants the docs may quote, by the path they write.
const QUOTABLE: &[(&str, u64)] = &[
    (
        "descriptor::MAX_RELOCS",
        zboot_format::descriptor::MAX_RELOCS as u64,
    ),
    (
        "image::HEADERS_SIZE",
        zboot_format::image::HEADERS_SIZE as u64,
    ),
    (
        "image::BARE_SCRATCH_SIZE",
        zboot_format::image::BARE_SCRATCH_SIZE as u64,
    ),
    ("cmdline::MAX_LEN", zboot_format::cmdline::MAX_LEN as u64),
];

/// Every (number, path) quote in `text`: a backticked `a::B` path with a number at most
/// `REACH` bytes before its opening backtick on the same line.
fn quotes(text: &str) -> Vec<(usize, String, String)> {
    const REACH: usize = 12;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        let mut offset = 0;
        while let Some(open) = rest.find('`') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('`') else { break };
            let path = &after[..close];
            let at = offset + open;
            let is_const_path = path.split_once("::").is_some_and(|(m, c)| {
                !m.is_empty()
                    && m.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_')
                    && !c.is_empty()
                    && c.chars()
                        .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_')
            });
            if is_const_path {
                let before = &line[at.saturating_sub(REACH)..at];
                if let Some(num) = last_number(before) {
                    out.push((n + 1, num, path.to_string()));
                }
            }
            offset = at + 1 + close + 1;
            rest = &line[offset..];
        }
    }
    out
}

/// The last decimal or 0x-hex number in `s` (digits with `,` separators allowed).
fn last_number(s: &str) -> Option<String> {
    let end = s.rfind(|c: char| c.is_ascii_hexdigit())? + 1;
    let start = s[..end]
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == ','))
        .map_or(0, |i| i + 1);
    let tok = s[start..end].trim_start_matches(',');
    let ok = tok.strip_prefix("0x").map_or_else(
        || tok.chars().all(|c| c.is_ascii_digit() || c == ','),
        |h| h.chars().all(|c| c.is_ascii_hexdigit()),
    );
    (ok && tok.chars().any(|c| c.is_ascii_digit())).then(|| tok.to_string())
}

fn value(num: &str) -> Option<u64> {
    match num.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => num.replace(',', "").parse().ok(),
    }
}

#[test]
fn docs_quote_the_limits_they_name() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let mut checked = 0;
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(&docs).expect("docs/") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (line, num, name) in quotes(&text) {
            let file = path.file_name().unwrap().to_string_lossy();
            match QUOTABLE.iter().find(|(p, _)| *p == name) {
                None => wrong.push(format!(
                    "{file}:{line}: `{name}` quoted with {num}: add it to QUOTABLE"
                )),
                Some((_, v)) if value(&num) != Some(*v) => wrong.push(format!(
                    "{file}:{line}: says {num} for `{name}`, which is {v}"
                )),
                Some(_) => checked += 1,
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(checked >= 1, "no quote found: the scan itself is broken");
}

#[test]
fn the_scan_finds_a_drifted_quote() {
    // What format.md would say had the limit drifted as it once did.
    let q = quotes("| 0x14 | u32 | reloc_count | entries (≤ 64, `descriptor::MAX_RELOCS`) |");
    assert_eq!(
        q,
        [(1, "64".to_string(), "descriptor::MAX_RELOCS".to_string())]
    );
    assert_ne!(
        value(&q[0].1),
        Some(zboot_format::descriptor::MAX_RELOCS as u64)
    );
    assert_eq!(quotes("see `image::Part` and 3 `x::y`"), []);
    assert_eq!(value("0x1000"), Some(4096));
    assert_eq!(value("2,047"), Some(2047));
}

//! SBAT metadata (`.sbat` section): CSV, 6 fields per row, first row the SBAT version line.

use anyhow::{Result, bail};

/// The first row every SBAT section starts with.
pub const SBAT_VERSION_LINE: &str =
    "sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md";

/// Check SBAT CSV text (trailing NULs, as in a section, are ignored).
pub fn validate(data: &[u8]) -> Result<()> {
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let Ok(text) = std::str::from_utf8(&data[..end]) else {
        bail!("not UTF-8 text");
    };
    let mut rows = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .peekable();
    if rows.peek().is_none() {
        bail!("empty");
    }
    for (i, row) in rows {
        let row = row.trim_end_matches('\r');
        if i == 0 && row != SBAT_VERSION_LINE {
            bail!("first row must be `{SBAT_VERSION_LINE}`");
        }
        let fields: Vec<&str> = row.split(',').collect();
        if fields.len() != 6 {
            bail!("row {} has {} fields, expected 6", i + 1, fields.len());
        }
        if fields.iter().any(|f| f.is_empty()) {
            bail!("row {} has an empty field", i + 1);
        }
        if fields[1].parse::<u32>().is_err() {
            bail!("row {}: generation `{}` is not a number", i + 1, fields[1]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_typical_sbat() {
        let s =
            format!("{SBAT_VERSION_LINE}\nzboot,1,zboot-pack,zboot,0.1,https://example.invalid\n");
        validate(s.as_bytes()).unwrap();
        let mut padded = s.into_bytes();
        padded.extend([0; 10]);
        validate(&padded).unwrap();
    }

    #[test]
    fn rejects_bad_sbat() {
        assert!(validate(b"").is_err());
        assert!(validate(b"zboot,1,a,b,c,d\n").is_err());
        let s = format!("{SBAT_VERSION_LINE}\nzboot,1,zboot-pack\n");
        assert!(validate(s.as_bytes()).is_err());
        let s = format!("{SBAT_VERSION_LINE}\nzboot,x,zboot-pack,a,b,c\n");
        assert!(validate(s.as_bytes()).is_err());
    }
}

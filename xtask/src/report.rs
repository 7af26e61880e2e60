//! Parsers for the machine-readable lines guests print on the serial console.
//!
//! * The initramfs `/init` prints `ZBOOT-INIT <key>=<value>` lines, ending with `ZBOOT-INIT end=1`.
//! * The probe kernel prints `ZBOOT-PROBE <key>=<value>` lines, ending with
//!   `ZBOOT-PROBE result=pass` or `ZBOOT-PROBE result=fail:<reason>`.
//!
//! The value is the rest of the line (trailing `\r` and whitespace removed). A marker may be
//! preceded by other console output on the same line (kernel messages interleave with user space
//! writes), so the parser looks for the marker anywhere in a line.

use std::collections::BTreeMap;

pub const INIT_MARKER: &str = "ZBOOT-INIT ";
pub const PROBE_MARKER: &str = "ZBOOT-PROBE ";

/// Every `<marker><key>=<value>` line of `log`, in order.
pub fn marker_lines<'a>(log: &'a str, marker: &str) -> Vec<(&'a str, &'a str)> {
    log.lines()
        .filter_map(|line| {
            let at = line.find(marker)?;
            let kv = line[at + marker.len()..].trim_end();
            let (k, v) = kv.split_once('=')?;
            let k = k.trim();
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return None;
            }
            Some((k, v))
        })
        .collect()
}

/// The report of the initramfs `/init` (fixtures/initramfs/init).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitReport {
    /// `uname -r`.
    pub release: Option<String>,
    /// `/proc/cmdline`.
    pub cmdline: Option<String>,
    pub memtotal_kb: Option<u64>,
    pub efi_runtime: Option<bool>,
    /// Names in /sys/firmware/efi.
    pub efi_entries: Vec<String>,
    /// Names in /sys/firmware/acpi/tables.
    pub acpi_tables: Vec<String>,
    /// /proc/fb lines, e.g. "0 EFI VGA".
    pub fb: Vec<String>,
    /// Virtual address of `_text`.
    pub kallsyms_text: Option<u64>,
    /// The "Kernel code" range of /proc/iomem (inclusive end, as the kernel prints it).
    pub iomem_kernel_code: Option<(u64, u64)>,
    pub vmalloc_total_kb: Option<u64>,
    /// `Some(true/false)`, or `None` when the guest printed `unknown`.
    pub secure_boot: Option<bool>,
    /// `end=1` was seen: the report is complete.
    pub end: bool,
    /// Every key/value as printed (last one wins), including unknown keys.
    pub raw: BTreeMap<String, String>,
}

fn split_list(v: &str, sep: char) -> Vec<String> {
    v.split(sep)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn parse_hex(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v.strip_prefix("0x").unwrap_or(v);
    u64::from_str_radix(v, 16).ok()
}

impl InitReport {
    /// Parses the `ZBOOT-INIT` lines of a serial log. Returns `None` if there are none.
    pub fn parse(log: &str) -> Option<InitReport> {
        let lines = marker_lines(log, INIT_MARKER);
        if lines.is_empty() {
            return None;
        }
        let mut r = InitReport::default();
        for (k, v) in lines {
            let v = v.trim();
            r.raw.insert(k.to_string(), v.to_string());
            match k {
                "release" => r.release = Some(v.to_string()),
                "cmdline" => r.cmdline = Some(v.to_string()),
                "memtotal_kb" => r.memtotal_kb = v.parse().ok(),
                "efi_runtime" => r.efi_runtime = Some(v == "1"),
                "efi_entries" => r.efi_entries = split_list(v, ','),
                "acpi_tables" => r.acpi_tables = split_list(v, ','),
                "fb" => r.fb = split_list(v, ';'),
                "kallsyms_text" => r.kallsyms_text = parse_hex(v),
                "iomem_kernel_code" => {
                    r.iomem_kernel_code = v
                        .split_once('-')
                        .and_then(|(a, b)| Some((parse_hex(a)?, parse_hex(b)?)))
                }
                "vmalloc_total_kb" => r.vmalloc_total_kb = v.parse().ok(),
                "secure_boot" => {
                    r.secure_boot = match v {
                        "1" => Some(true),
                        "0" => Some(false),
                        _ => None,
                    }
                }
                "end" => r.end = v == "1",
                _ => {}
            }
        }
        Some(r)
    }

    /// Every report of a serial log, in order: a log holds more than one when the init started
    /// another kernel (kexec, kdump). A report starts at its `release` line; the lines before
    /// the first one (if any) belong to the first report.
    pub fn parse_all(log: &str) -> Vec<InitReport> {
        // (text, has a `release` line)
        let mut chunks: Vec<(String, bool)> = vec![(String::new(), false)];
        for line in log.lines() {
            let release = matches!(
                marker_lines(line, INIT_MARKER).first(),
                Some(("release", _))
            );
            let cur = chunks.last_mut().unwrap();
            if release && cur.1 {
                chunks.push((String::new(), false));
            }
            let cur = chunks.last_mut().unwrap();
            cur.0.push_str(line);
            cur.0.push('\n');
            cur.1 |= release;
        }
        chunks
            .iter()
            .filter_map(|(c, _)| InitReport::parse(c))
            .collect()
    }

    /// Whether the kernel's command line contains `word` as a whole word.
    pub fn cmdline_has(&self, word: &str) -> bool {
        self.cmdline
            .as_deref()
            .is_some_and(|c| c.split_whitespace().any(|w| w == word))
    }

    /// Whether a framebuffer named like `name` (e.g. "EFI VGA") exists.
    pub fn has_fb(&self, name: &str) -> bool {
        self.fb.iter().any(|l| l.contains(name))
    }

    /// 5-level paging is active (VmallocTotal larger than the 4-level maximum of 32 TiB).
    pub fn five_level_paging(&self) -> Option<bool> {
        self.vmalloc_total_kb.map(|v| v > 34_359_738_367)
    }

    /// Physical load address of the kernel (start of "Kernel code").
    pub fn kernel_phys_start(&self) -> Option<u64> {
        self.iomem_kernel_code.map(|(a, _)| a)
    }

    /// The standard "the kernel booted properly on UEFI" checks, as a list of failures
    /// (empty = all good).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.end {
            p.push("report incomplete (no `end=1`)".into());
        }
        if self.release.as_deref().unwrap_or("").is_empty() {
            p.push("no release".into());
        }
        if self.efi_runtime != Some(true) {
            p.push(format!("efi_runtime is {:?}, want 1", self.efi_runtime));
        }
        if self.acpi_tables.is_empty() {
            p.push("no ACPI tables".into());
        }
        if !self.has_fb("EFI VGA") {
            p.push(format!("no EFI VGA framebuffer (fb={:?})", self.fb));
        }
        match self.memtotal_kb {
            Some(m) if (1_500_000..=2_097_152).contains(&m) => {}
            other => p.push(format!(
                "MemTotal {other:?} kB not within a sane range for -m 2G"
            )),
        }
        p
    }
}

/// The probe kernel's report (fixtures/probe-kernel).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeReport {
    /// Every key/value (last one wins).
    pub values: BTreeMap<String, String>,
    /// `Some(Ok(()))` for `result=pass`, `Some(Err(reason))` for `result=fail:<reason>`,
    /// `None` when no result line was printed.
    pub result: Option<Result<(), String>>,
}

impl ProbeReport {
    /// Parses the `ZBOOT-PROBE` lines of a serial log. Returns `None` if there are none.
    pub fn parse(log: &str) -> Option<ProbeReport> {
        let lines = marker_lines(log, PROBE_MARKER);
        if lines.is_empty() {
            return None;
        }
        let mut r = ProbeReport::default();
        for (k, v) in lines {
            let v = v.trim();
            if k == "result" {
                r.result = Some(if v == "pass" {
                    Ok(())
                } else {
                    Err(v.strip_prefix("fail:").unwrap_or(v).trim().to_string())
                });
            }
            r.values.insert(k.to_string(), v.to_string());
        }
        Some(r)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub fn passed(&self) -> bool {
        matches!(self.result, Some(Ok(())))
    }

    /// The value of `key`, or an error naming it.
    pub fn value(&self, key: &str) -> anyhow::Result<&str> {
        self.get(key)
            .ok_or_else(|| anyhow::anyhow!("the probe reported no `{key}`"))
    }

    /// `key`'s value read as hexadecimal (with or without `0x`).
    pub fn hex(&self, key: &str) -> anyhow::Result<u64> {
        let v = self.value(key)?;
        u64::from_str_radix(v.trim_start_matches("0x"), 16)
            .map_err(|_| anyhow::anyhow!("the probe's `{key}={v}` is not hexadecimal"))
    }

    /// `key`'s value read as a decimal number.
    pub fn number(&self, key: &str) -> anyhow::Result<u64> {
        let v = self.value(key)?;
        v.parse()
            .map_err(|_| anyhow::anyhow!("the probe's `{key}={v}` is not a number"))
    }

    /// The probe's entry check `check_<name>` passed.
    pub fn check_ok(&self, name: &str) -> anyhow::Result<()> {
        let v = self.get(&format!("check_{name}")).unwrap_or("missing");
        anyhow::ensure!(v == "ok", "check_{name}={v}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
BdsDxe: loading Boot0001\r
[    1.234] Run /init as init process\r
ZBOOT-INIT release=6.1.0-56-amd64\r
ZBOOT-INIT cmdline=initrd=\\initrd.img console=ttyS0 zboot.marker=abc\r
ZBOOT-INIT memtotal_kb=2013232\r
ZBOOT-INIT efi_runtime=1\r
ZBOOT-INIT efi_entries=config_table,efivars,fw_platform_size,runtime,systab\r
ZBOOT-INIT acpi_tables=APIC,DSDT,FACP,FACS,HPET,MCFG,WAET,data,dynamic\r
[    2.000] random: crng init done\r
ZBOOT-INIT fb=0 EFI VGA\r
ZBOOT-INIT kallsyms_text=ffffffff9a000000\r
ZBOOT-INIT iomem_kernel_code=  1a000000-1ac02201\r
ZBOOT-INIT vmalloc_total_kb=13743895347199\r
[    2.1] foo ZBOOT-INIT secure_boot=0\r
ZBOOT-INIT bogus line without equals\r
ZBOOT-INIT end=1\r
";

    #[test]
    fn parses_complete_init_report() {
        let r = InitReport::parse(LOG).unwrap();
        assert_eq!(r.release.as_deref(), Some("6.1.0-56-amd64"));
        assert!(r.cmdline_has("zboot.marker=abc"));
        assert!(r.cmdline_has("console=ttyS0"));
        assert!(!r.cmdline_has("zboot.marker"));
        assert_eq!(r.memtotal_kb, Some(2013232));
        assert_eq!(r.efi_runtime, Some(true));
        assert_eq!(r.efi_entries.len(), 5);
        assert!(r.acpi_tables.iter().any(|t| t == "FACP"));
        assert_eq!(r.fb, vec!["0 EFI VGA".to_string()]);
        assert!(r.has_fb("EFI VGA"));
        assert_eq!(r.kallsyms_text, Some(0xffffffff9a000000));
        assert_eq!(r.iomem_kernel_code, Some((0x1a000000, 0x1ac02201)));
        assert_eq!(r.kernel_phys_start(), Some(0x1a000000));
        assert_eq!(r.five_level_paging(), Some(true));
        assert_eq!(r.secure_boot, Some(false));
        assert!(r.end);
        assert!(r.problems().is_empty(), "{:?}", r.problems());
    }

    #[test]
    fn incomplete_report_has_problems() {
        let log = "ZBOOT-INIT release=6.1\nZBOOT-INIT efi_runtime=0\nZBOOT-INIT fb=\nZBOOT-INIT secure_boot=unknown\n";
        let r = InitReport::parse(log).unwrap();
        assert!(!r.end);
        assert_eq!(r.secure_boot, None);
        assert!(r.fb.is_empty());
        let p = r.problems();
        assert!(p.iter().any(|s| s.contains("end=1")));
        assert!(p.iter().any(|s| s.contains("efi_runtime")));
        assert!(p.iter().any(|s| s.contains("EFI VGA")));
        assert!(p.iter().any(|s| s.contains("MemTotal")));
    }

    #[test]
    fn no_report_at_all() {
        assert_eq!(InitReport::parse("Kernel panic - not syncing\n"), None);
        assert_eq!(ProbeReport::parse(""), None);
    }

    #[test]
    fn four_level_and_empty_values() {
        let r = InitReport::parse("ZBOOT-INIT vmalloc_total_kb=34359738367\nZBOOT-INIT cmdline=\n")
            .unwrap();
        assert_eq!(r.five_level_paging(), Some(false));
        assert_eq!(r.cmdline.as_deref(), Some(""));
        assert_eq!(r.raw.get("cmdline").map(String::as_str), Some(""));
    }

    #[test]
    fn two_reports_in_one_log() {
        let log = format!(
            "{LOG}ZBOOT-INIT kexec_exec=1\r\n[    0.000] Linux version 6.1\r\n\
             ZBOOT-INIT release=6.1.0-56-amd64\r\nZBOOT-INIT cmdline=console=ttyS0 zboot.stage=2\r\n\
             ZBOOT-INIT end=1\r\n"
        );
        let all = InitReport::parse_all(&log);
        assert_eq!(all.len(), 2);
        assert!(all[0].end && all[0].cmdline_has("zboot.marker=abc"));
        assert_eq!(all[0].raw.get("kexec_exec").map(String::as_str), Some("1"));
        assert!(all[1].end && all[1].cmdline_has("zboot.stage=2"));
        assert!(!all[1].cmdline_has("zboot.marker=abc"));
        assert_eq!(all[1].memtotal_kb, None);
        assert!(InitReport::parse_all("no report\n").is_empty());
        // Lines before the first `release` stay with the first report.
        let all =
            InitReport::parse_all("ZBOOT-INIT cmdline=a\nZBOOT-INIT release=x\nZBOOT-INIT end=1\n");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].cmdline.as_deref(), Some("a"));
    }

    #[test]
    fn parses_probe_pass_and_fail() {
        let log = "ZBOOT-PROBE rsi=0x7000\r\nZBOOT-PROBE cr4=0x3406a0\nZBOOT-PROBE result=pass\n";
        let r = ProbeReport::parse(log).unwrap();
        assert!(r.passed());
        assert_eq!(r.get("rsi"), Some("0x7000"));
        assert_eq!(r.get("cr4"), Some("0x3406a0"));

        let r = ProbeReport::parse("ZBOOT-PROBE result=fail: base not 2M aligned\n").unwrap();
        assert!(!r.passed());
        assert_eq!(r.result, Some(Err("base not 2M aligned".into())));

        let r = ProbeReport::parse("ZBOOT-PROBE a=b=c\n").unwrap();
        assert_eq!(r.get("a"), Some("b=c"));
        assert_eq!(r.result, None);
    }
}

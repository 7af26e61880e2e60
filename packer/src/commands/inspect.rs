//! `inspect IMAGE [--json]`: what an image is made of. Reads zboot-pack images, Linux bzImage and
//! zboot images, any PE file, and a vmlinux ELF (what packing it would decide, and why). Text output is a rendering of the same JSON value.

use std::path::Path;

use anyhow::{Context, Result};
use object::LittleEndian as LE;
use object::pe::*;
use serde_json::{Map, Value, json};
use zboot_format::bootparam::XLF_5LEVEL;
use zboot_format::header::Flags;
use zboot_format::zimg::ZimgHeader;

use super::Outcome;
use crate::pe::read::PeFile;
use crate::{compress, input, payload};

fn hex(v: impl Into<u64>) -> Value {
    Value::String(format!("{:#x}", v.into()))
}

fn section_flags(c: u32) -> String {
    let mut s = String::new();
    s.push(if c & IMAGE_SCN_MEM_READ != 0 {
        'R'
    } else {
        '-'
    });
    s.push(if c & IMAGE_SCN_MEM_WRITE != 0 {
        'W'
    } else {
        '-'
    });
    s.push(if c & IMAGE_SCN_MEM_EXECUTE != 0 {
        'X'
    } else {
        '-'
    });
    for (bit, name) in [
        (IMAGE_SCN_CNT_CODE, " code"),
        (IMAGE_SCN_CNT_INITIALIZED_DATA, " data"),
        (IMAGE_SCN_CNT_UNINITIALIZED_DATA, " bss"),
        (IMAGE_SCN_MEM_DISCARDABLE, " discardable"),
    ] {
        if c & bit != 0 {
            s.push_str(name);
        }
    }
    s
}

fn dll_names(d: u16) -> Vec<&'static str> {
    [
        (IMAGE_DLLCHARACTERISTICS_HIGH_ENTROPY_VA, "HIGH_ENTROPY_VA"),
        (IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE, "DYNAMIC_BASE"),
        (IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY, "FORCE_INTEGRITY"),
        (IMAGE_DLLCHARACTERISTICS_NX_COMPAT, "NX_COMPAT"),
        (IMAGE_DLLCHARACTERISTICS_NO_SEH, "NO_SEH"),
        (IMAGE_DLLCHARACTERISTICS_GUARD_CF, "GUARD_CF"),
    ]
    .into_iter()
    .filter(|(b, _)| d & b != 0)
    .map(|(_, n)| n)
    .collect()
}

fn pe_json(pe: &PeFile) -> Value {
    let o = &pe.opt;
    let dll = o.dll_characteristics.get(LE);
    let dir_names = [
        "export",
        "import",
        "resource",
        "exception",
        "security",
        "basereloc",
        "debug",
        "architecture",
        "globalptr",
        "tls",
        "load_config",
        "bound_import",
        "iat",
        "delay_import",
        "clr",
        "reserved",
    ];
    let mut dirs = Map::new();
    for (i, name) in dir_names.iter().enumerate() {
        let (rva, size) = pe.dir(i);
        if size != 0 {
            dirs.insert(name.to_string(), json!({"rva": hex(rva), "size": size}));
        }
    }
    let sections: Vec<Value> = pe
        .sections
        .iter()
        .map(|s| {
            json!({
                "name": s.name(),
                "rva": hex(s.va()),
                "virtual_size": hex(s.vsize()),
                "raw_offset": hex(s.raw_ptr()),
                "raw_size": hex(s.raw_size()),
                "flags": section_flags(s.characteristics()),
                "characteristics": hex(s.characteristics()),
            })
        })
        .collect();
    json!({
        "machine": hex(pe.file_header.machine.get(LE)),
        "timestamp": pe.file_header.time_date_stamp.get(LE),
        "subsystem": o.subsystem.get(LE),
        "entry_point": hex(o.address_of_entry_point.get(LE)),
        "image_base": hex(o.image_base.get(LE)),
        "section_alignment": hex(o.section_alignment.get(LE)),
        "file_alignment": hex(o.file_alignment.get(LE)),
        "size_of_headers": hex(o.size_of_headers.get(LE)),
        "size_of_image": hex(o.size_of_image.get(LE)),
        "checksum": hex(o.check_sum.get(LE)),
        "dll_characteristics": format!("{dll:#06x} {}", dll_names(dll).join(" ")),
        "data_directories": dirs,
        "sections": sections,
    })
}

/// Version of the `inspect --json` schema (docs/inspect-json.md): bumped when a documented key
/// is removed, renamed or changes type; adding keys keeps it.
pub const SCHEMA_VERSION: u32 = 1;

/// A vmlinux ELF: what `zboot-pack` would take from it, and where each fact comes from.
fn describe_vmlinux(path: &Path, data: &[u8], root: &mut Map<String, Value>) -> Result<()> {
    root.insert("kind".into(), json!("vmlinux"));
    let k = input::elf::parse(data)?;
    let (mut la57, mut la57_source) = (k.facts.la57, k.facts.la57_source);
    if la57_source.is_none()
        && let Some(d) = input::detect::la57_from_config(path)
    {
        la57 = d.la57 == Some(true);
        la57_source = Some(d.source);
    }
    let (relocs, relocs_source) = match &k.relocs {
        Some(r) => (
            Some(input::relocs::counts(r)),
            json!("appended to the file"),
        ),
        None => match input::detect::relocs_beside(path) {
            Some(Ok(p)) => {
                let counts = std::fs::read(&p).ok().and_then(|t| {
                    zboot_format::relocs::RelocTable::parse(&t)
                        .ok()
                        .map(|t| t.counts())
                });
                (counts, json!(p.display().to_string()))
            }
            Some(Err(why)) => (None, json!(why)),
            None => (None, Value::Null),
        },
    };
    root.insert(
        "vmlinux".into(),
        json!({
            "segments": k.segments.len(),
            "entry": hex(k.entry),
            "link_virt_base": hex(k.segments[0].vaddr),
            "la57": la57,
            "la57_source": la57_source,
            "relocations": relocs,
            "relocations_source": relocs_source,
            "kernel_version": payload::kernel_version(data),
        }),
    );
    Ok(())
}

/// Describe the file at `path` (contents `data`) as a JSON value.
pub fn describe(path: &Path, data: &[u8]) -> Result<Value> {
    let mut root = Map::new();
    root.insert("schema_version".into(), json!(SCHEMA_VERSION));
    root.insert("file_size".into(), json!(data.len()));
    if data.starts_with(b"\x7fELF") {
        describe_vmlinux(path, data, &mut root)?;
        return Ok(Value::Object(root));
    }
    let zimg = ZimgHeader::parse(data).is_ok();
    if zimg && let Some(h) = zboot_format::bootparam::SetupHeader::read(data) {
        // A zimg image with a setup header: ours (a bzImage too: docs/format.md byte map).
        if { h.header } == zboot_format::bootparam::HDRS_MAGIC {
            use zboot_format::image;
            let (jump, loadflags, code32_start, kernel_alignment) =
                (h.jump, h.loadflags, h.code32_start, h.kernel_alignment);
            let (relocatable, pref_address, init_size, cmdline_size) = (
                h.relocatable_kernel,
                h.pref_address,
                h.init_size,
                h.cmdline_size,
            );
            let (initrd_addr_max, xloadflags, handover_offset, syssize) = (
                h.initrd_addr_max,
                h.xloadflags,
                h.handover_offset,
                h.syssize,
            );
            let version = h.version;
            let (root_flags, vid_mode, kernel_info_offset) =
                (h.root_flags, h.vid_mode, h.kernel_info_offset);
            let kernel_version = h
                .kernel_version_bytes(data)
                .map(|b| String::from_utf8_lossy(b).into_owned());
            let setup_type_max = h.kernel_info(data).map(|k| hex(k.setup_type_max));
            root.insert(
                "setup_header".into(),
                json!({
                    "kernel_version": kernel_version,
                    "root_flags": root_flags,
                    "vid_mode": hex(vid_mode),
                    "kernel_info_offset": hex(kernel_info_offset),
                    "setup_type_max": setup_type_max,
                    "boot_protocol": format!("{}.{:02}", version >> 8, version & 0xff),
                    "setup_sects": h.setup_sects,
                    "jump": hex(jump),
                    "loadflags": hex(loadflags),
                    "code32_start": hex(code32_start),
                    "kernel_alignment": hex(kernel_alignment),
                    "relocatable_kernel": relocatable,
                    "pref_address": hex(pref_address),
                    "init_size": hex(init_size),
                    "cmdline_size": cmdline_size,
                    "initrd_addr_max": hex(initrd_addr_max),
                    "xloadflags": hex(xloadflags),
                    "handover_offset": hex(handover_offset),
                    "syssize": hex(syssize),
                    "entries": {
                        "real_mode": hex(image::REAL_MODE_AT as u64),
                        "protected_mode_32": hex(h.entry32_offset()),
                        "long_mode_64": hex(h.entry64_offset()),
                        "efi_handover_32": hex(h.efi_handover32_offset()),
                        "efi_handover_64": hex(h.efi_handover64_offset()),
                    },
                }),
            );
        }
    }
    if input::bzimage::is_bzimage(data) && !zimg {
        root.insert("kind".into(), json!("linux-bzimage"));
        let info = input::bzimage::info(data)?;
        let h = info.hdr;
        let (xlf, version) = (h.xloadflags, h.version);
        let mut bz = json!({
            "boot_protocol": format!("{}.{:02}", version >> 8, version & 0xff),
            "xloadflags": hex(xlf),
            "la57": xlf & XLF_5LEVEL != 0,
            "kernel_alignment": hex(h.kernel_alignment),
            "init_size": hex(h.init_size),
            "pref_address": hex(h.pref_address),
            "payload_offset": hex(info.payload_offset as u64),
            "payload_size": info.payload_length,
        });
        let payload = &data[info.payload_offset..info.payload_offset + info.payload_length];
        match compress::decode_any(payload) {
            Ok((codec, decoded)) => {
                bz["codec"] = json!(codec);
                bz["decoded_size"] = json!(decoded.len());
                bz["ratio"] = json!(format!(
                    "{:.1}%",
                    info.payload_length as f64 * 100.0 / decoded.len().max(1) as f64
                ));
                match input::elf::parse(&decoded) {
                    Ok(k) => {
                        bz["segments"] = json!(k.segments.len());
                        bz["relocations"] =
                            json!(k.relocs.as_ref().map(|r| input::relocs::counts(r)));
                    }
                    Err(e) => bz["elf_error"] = json!(format!("{e:#}")),
                }
                bz["kernel_version"] = json!(payload::kernel_version(&decoded));
            }
            Err(e) => bz["decode_error"] = json!(format!("{e:#}")),
        }
        root.insert("bzimage".into(), bz);
    }
    let pe = match PeFile::parse(data) {
        Ok(pe) => pe,
        Err(e) => {
            if !root.contains_key("kind") {
                return Err(e);
            }
            return Ok(Value::Object(root));
        }
    };
    if let Ok(z) = ZimgHeader::parse(data) {
        root.insert(
            "zimg".into(),
            json!({"comp_type": z.comp_type, "payload_offset": hex(z.payload_offset), "payload_size": z.payload_size, "pe_offset": hex(z.pe_offset)}),
        );
    }
    match payload::find(&pe) {
        Ok(Some(p)) => {
            root.insert("kind".into(), json!("zboot-pack"));
            let h = p.header;
            let mut flags = Vec::new();
            for (bit, name) in [
                (Flags::RELOCS, "RELOCS"),
                (Flags::LA57, "LA57"),
                (Flags::TEXT_RO, "TEXT_RO"),
                (Flags::BCJ_X86, "BCJ_X86"),
                (Flags::BCJ_TEXT, "BCJ_TEXT"),
                (Flags::RELOCS_DELTA, "RELOCS_DELTA"),
            ] {
                if h.flags.has(bit) {
                    flags.push(name);
                }
            }
            let mut pj = json!({
                "arch": h.arch.name(),
                "codec": h.codec.name(),
                "flags": flags,
                "compressed_size": h.compressed_size,
                "uncompressed_size": h.uncompressed_size,
                "ratio": format!("{:.1}%", h.compressed_size as f64 * 100.0 / h.uncompressed_size.max(1) as f64),
                "image_size": hex(h.image_size),
                "mem_size": hex(h.mem_size),
                "alignment": hex(h.alignment),
                "preferred_address": hex(h.preferred_address),
                "entry_offset": hex(h.entry_offset),
                "link_virt_base": hex(h.link_virt_base),
                "relocs_offset": hex(h.relocs_offset),
                "relocs": [h.relocs_count64, h.relocs_count_inv32, h.relocs_count32],
                "xloadflags": hex(h.xloadflags),
                "boot_protocol": hex(h.boot_protocol),
                "cmdline": {"rva": hex(h.cmdline_rva), "size": h.cmdline_size},
                "initrd": {"rva": hex(h.initrd_rva), "size": h.initrd_size},
                "text_size": hex(h.text_size),
                "nx_end": hex(h.nx_end),
                "image_sha256": h.image_sha256.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            });
            if let Ok((cmdline, _)) = payload::embedded(&pe, &h)
                && !cmdline.is_empty()
            {
                pj["cmdline"]["text"] = json!(String::from_utf8_lossy(cmdline));
            }
            match payload::decode(&p) {
                Ok(stream) => {
                    pj["kernel_version"] =
                        json!(payload::kernel_version(&stream[..h.image_size as usize]))
                }
                Err(e) => pj["decode_error"] = json!(format!("{e:#}")),
            }
            root.insert("payload".into(), pj);
        }
        Ok(None) => {
            if !root.contains_key("kind") {
                let kind = if root.contains_key("zimg") {
                    "linux-zboot"
                } else {
                    "pe"
                };
                root.insert("kind".into(), json!(kind));
            }
        }
        Err(e) => {
            root.insert("kind".into(), json!("zboot-pack"));
            root.insert("payload_error".into(), json!(format!("{e:#}")));
        }
    }
    root.insert("pe".into(), pe_json(&pe));
    Ok(Value::Object(root))
}

fn render(v: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                match val {
                    Value::Object(_) => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        render(val, indent + 1, out);
                    }
                    Value::Array(a) if a.iter().any(|x| x.is_object()) => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        for item in a {
                            let line: Vec<String> = item
                                .as_object()
                                .map(|m| {
                                    m.iter()
                                        .map(|(k, v)| format!("{k}={}", scalar(v)))
                                        .collect()
                                })
                                .unwrap_or_default();
                            out.push_str(&format!("{pad}  - {}\n", line.join(" ")));
                        }
                    }
                    _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(val))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

pub fn run(path: &Path, as_json: bool) -> Result<Outcome> {
    let data = input::read_file(path)?;
    let v = describe(path, &data).with_context(|| path.display().to_string())?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let mut s = format!("{}:\n", path.display());
        render(&v, 1, &mut s);
        print!("{s}");
    }
    Ok(Outcome::Ok)
}

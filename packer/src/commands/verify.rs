//! `verify IMAGE`: the strict PE rules, plus (for zboot-pack images) the payload header, the
//! zimg header, the decoded stream's hash and the embedded sections' hash.

use std::path::Path;

use anyhow::Result;
use zboot_format::zimg::{self, ZimgHeader};

use super::Outcome;
use crate::pe::read::PeFile;
use crate::pe::rules;
use crate::{Verbosity, input, payload};

/// All violations found in `data` (empty: acceptable).
/// The setup header at 0x1f1 must be exactly what `zboot_format::image` derives from the image:
/// the handover entry in the stub's code, init_size covering the image, the zimg payload.
fn setup_header(
    data: &[u8],
    pe: &PeFile,
    z: &ZimgHeader,
    kernel_xloadflags: u16,
    v: &mut Vec<String>,
) {
    use object::LittleEndian as LE;
    use zboot_format::bootparam::SetupHeader;
    let Some(have) = SetupHeader::read(data) else {
        v.push("no room for the x86 setup header".into());
        return;
    };
    if let Err(e) = crate::pe::write::check_bzimage_entries(pe) {
        v.push(format!("setup header: {e:#}"));
    }
    match crate::pe::write::real_mode_code(pe) {
        Ok(code) => {
            let at = zboot_format::image::REAL_MODE_AT;
            if data.get(at..at + code.len()) != Some(code) {
                v.push(
                    "the 16-bit entry code after the setup header differs from the stub's".into(),
                );
            }
        }
        Err(e) => v.push(format!("setup header: {e:#}")),
    }
    let handover_rva = match crate::pe::write::handover_rva(pe) {
        Ok(r) => r,
        Err(e) => {
            v.push(format!("setup header: {e:#}"));
            return;
        }
    };
    let kernel_info_rva = match crate::pe::write::kernel_info_rva(pe) {
        Ok(r) => r,
        Err(e) => {
            v.push(format!("setup header: {e:#}"));
            return;
        }
    };
    kernel_info_and_version(data, &have, kernel_info_rva, v);
    let want = zboot_format::image::setup_header(&zboot_format::image::SetupFacts {
        image_size: pe.opt.size_of_image.get(LE),
        handover_rva,
        payload_offset: z.payload_offset,
        payload_size: z.payload_size,
        kernel_xloadflags,
        kernel_version: have.kernel_version != 0,
        kernel_info_rva,
    });
    if have.to_bytes() != want.to_bytes() {
        v.push(format!(
            "setup header differs from the one this image needs (handover_offset {:#x}, want {:#x}; init_size {:#x}, want {:#x})",
            { have.handover_offset },
            { want.handover_offset },
            { have.init_size },
            { want.init_size }
        ));
    }
}

/// The kernel_info block the image carries (file = RVA) and the version string the header
/// names, if it names one: NUL-terminated printable ASCII (where it lies, 0xf00, is checked
/// with the rest of the header).
fn kernel_info_and_version(
    data: &[u8],
    have: &zboot_format::bootparam::SetupHeader,
    kernel_info_rva: u32,
    v: &mut Vec<String>,
) {
    use zboot_format::bootparam::KernelInfo;
    use zboot_format::image::{KERNEL_VERSION_AT, check_kernel_version};
    if data
        .get(kernel_info_rva as usize..)
        .and_then(KernelInfo::parse)
        .is_none()
    {
        v.push(format!(
            "no kernel_info block at {kernel_info_rva:#x} (\"LToP\", sizes 16)"
        ));
    }
    if have.kernel_version != 0 {
        match have.kernel_version_bytes(data).map(check_kernel_version) {
            Some(Ok(())) => {}
            Some(Err(e)) => v.push(format!("setup header: {e}")),
            None => v.push(format!(
                "setup header: no NUL-terminated kernel version string at {KERNEL_VERSION_AT:#x}"
            )),
        }
    }
}

pub fn violations(data: &[u8]) -> Vec<String> {
    let mut v = rules::check(data);
    let Ok(pe) = PeFile::parse(data) else {
        return v;
    };
    match payload::find(&pe) {
        Ok(None) => {}
        Err(e) => v.push(format!("{e:#}")),
        Ok(Some(p)) => {
            match ZimgHeader::parse(data) {
                Ok(z) => {
                    let want_off = p.file_offset + payload::HEADER_LEN as u32;
                    if z.payload_offset != want_off
                        || u64::from(z.payload_size) != p.header.compressed_size
                    {
                        v.push(format!(
                            "zimg header points at {:#x}+{:#x}, payload is at {want_off:#x}+{:#x}",
                            z.payload_offset, z.payload_size, p.header.compressed_size
                        ));
                    }
                    setup_header(data, &pe, &z, p.header.xloadflags, &mut v);
                    if z.comp_type != p.header.codec.zimg_type() {
                        v.push(format!(
                            "zimg compression type {:?} does not match codec {}",
                            z.comp_type,
                            p.header.codec.name()
                        ));
                    }
                    if z.pe_offset != pe.e_lfanew {
                        v.push("zimg PE offset differs from e_lfanew".into());
                    }
                    let version = (
                        pe.opt.major_image_version.get(object::LittleEndian),
                        pe.opt.minor_image_version.get(object::LittleEndian),
                    );
                    let want = (zimg::EFISTUB_MAJOR_VERSION, zimg::EFISTUB_MINOR_VERSION);
                    if version != want {
                        v.push(format!(
                            "image version {}.{} is not the EFI stub version {}.{} \
                             (loaders use LoadImage only from 1.0)",
                            version.0, version.1, want.0, want.1
                        ));
                    }
                }
                Err(e) => v.push(format!("zimg header missing or invalid: {e:?}")),
            }
            if let Err(e) = payload::embedded(&pe, &p.header) {
                v.push(format!("{e:#}"));
            }
            if let Err(e) = payload::decode(&p) {
                v.push(format!("payload: {e:#}"));
            }
        }
    }
    v
}

pub fn run(path: &Path, verbosity: Verbosity) -> Result<Outcome> {
    let data = input::read_file(path)?;
    let v = violations(&data);
    for line in &v {
        println!("{}: {line}", path.display());
    }
    if v.is_empty() {
        if verbosity >= Verbosity::Normal {
            println!("{}: OK", path.display());
        }
        Ok(Outcome::Ok)
    } else {
        Ok(Outcome::Violations)
    }
}

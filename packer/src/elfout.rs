//! Rebuilding a vmlinux ELF from a decoded payload (`extract`): one PT_LOAD segment holding the
//! flattened image, a PT_NOTE carrying the facts a bare ELF cannot express (memory size,
//! alignment, xloadflags, boot protocol, LA57, the read-only text range), and the relocation table appended after the ELF,
//! as in a distro bzImage. Packing the result again with the same options is byte-identical.

use object::elf::*;
use object::pod::bytes_of;
use object::{LittleEndian as LE, U16, U32, U64};
use zboot_format::header::{Flags, PayloadHeader};

use crate::input::elf::{ZBOOT_NOTE_NAME, ZBOOT_NOTE_TYPE, ZbootNote};

/// File offset of the segment's bytes (page aligned, so `p_offset % p_align == p_vaddr % p_align`).
const SEGMENT_OFFSET: usize = 0x1000;

/// Build the ELF (with relocations appended) from a header and its decoded stream.
pub fn build(h: &PayloadHeader, stream: &[u8]) -> Vec<u8> {
    let image = &stream[..h.image_size as usize];
    let relocs = if h.flags.has(Flags::RELOCS) {
        &stream[h.relocs_offset as usize..]
    } else {
        &[][..]
    };
    let e = LE;
    let ehdr_size = size_of::<FileHeader64<LE>>();
    let phdr_size = size_of::<ProgramHeader64<LE>>();
    let note_offset = ehdr_size + 2 * phdr_size;

    let mut note = Vec::new();
    let name_len = ZBOOT_NOTE_NAME.len() + 1;
    note.extend_from_slice(&(name_len as u32).to_le_bytes());
    note.extend_from_slice(&(ZbootNote::SIZE as u32).to_le_bytes());
    note.extend_from_slice(&ZBOOT_NOTE_TYPE.to_le_bytes());
    note.extend_from_slice(ZBOOT_NOTE_NAME);
    note.push(0);
    while note.len() % 4 != 0 {
        note.push(0);
    }
    let desc = ZbootNote {
        mem_size: h.mem_size,
        alignment: h.alignment,
        xloadflags: h.xloadflags,
        boot_protocol: h.boot_protocol,
        flags: [
            (Flags::LA57, ZbootNote::FLAG_LA57),
            (Flags::TEXT_RO, ZbootNote::FLAG_TEXT_RO),
        ]
        .iter()
        .filter(|(f, _)| h.flags.has(*f))
        .fold(0, |acc, (_, bit)| acc | bit),
        text_size: h.text_size,
        nx_end: h.nx_end,
    };
    note.extend_from_slice(&desc.to_bytes());

    let mut ident = Ident {
        magic: ELFMAG,
        class: ELFCLASS64,
        data: ELFDATA2LSB,
        version: EV_CURRENT,
        os_abi: ELFOSABI_SYSV,
        abi_version: 0,
        padding: [0; 7],
    };
    ident.padding = [0; 7];
    let ehdr = FileHeader64::<LE> {
        e_ident: ident,
        e_type: U16::new(e, ET_EXEC),
        e_machine: U16::new(e, EM_X86_64),
        e_version: U32::new(e, u32::from(EV_CURRENT)),
        e_entry: U64::new(e, h.preferred_address + h.entry_offset),
        e_phoff: U64::new(e, ehdr_size as u64),
        e_shoff: U64::new(e, 0),
        e_flags: U32::new(e, 0),
        e_ehsize: U16::new(e, ehdr_size as u16),
        e_phentsize: U16::new(e, phdr_size as u16),
        e_phnum: U16::new(e, 2),
        e_shentsize: U16::new(e, size_of::<SectionHeader64<LE>>() as u16),
        e_shnum: U16::new(e, 0),
        e_shstrndx: U16::new(e, 0),
    };
    let load = ProgramHeader64::<LE> {
        p_type: U32::new(e, PT_LOAD),
        p_flags: U32::new(e, PF_R | PF_W | PF_X),
        p_offset: U64::new(e, SEGMENT_OFFSET as u64),
        p_vaddr: U64::new(e, h.link_virt_base),
        p_paddr: U64::new(e, h.preferred_address),
        p_filesz: U64::new(e, h.image_size),
        p_memsz: U64::new(e, h.mem_size),
        p_align: U64::new(e, 0x1000),
    };
    let note_ph = ProgramHeader64::<LE> {
        p_type: U32::new(e, PT_NOTE),
        p_flags: U32::new(e, PF_R),
        p_offset: U64::new(e, note_offset as u64),
        p_vaddr: U64::new(e, 0),
        p_paddr: U64::new(e, 0),
        p_filesz: U64::new(e, note.len() as u64),
        p_memsz: U64::new(e, 0),
        p_align: U64::new(e, 4),
    };
    let mut out = Vec::with_capacity(SEGMENT_OFFSET + image.len() + relocs.len());
    out.extend_from_slice(bytes_of(&ehdr));
    out.extend_from_slice(bytes_of(&load));
    out.extend_from_slice(bytes_of(&note_ph));
    out.extend_from_slice(&note);
    out.resize(SEGMENT_OFFSET, 0);
    out.extend_from_slice(image);
    out.extend_from_slice(relocs);
    out
}

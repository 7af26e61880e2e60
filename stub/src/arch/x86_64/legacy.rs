//! The bzImage entries (boot.rst: the 32-bit and 64-bit boot protocols) and the few CPU
//! instructions the firmware-less path needs: port I/O for the serial console, the descriptor
//! tables it must not overwrite, halting. With `handoff.rs` the only assembly of the stub.
//!
//! Both entries sit at fixed places, as in Linux's own bzImage: the 32-bit one at the first byte
//! of the protected-mode part (`code32_start`, `zboot_format::image::ENTRY32_RVA`), the 64-bit
//! one 0x200 bytes later (`ENTRY64_RVA`). They are the first code in `.text` (module-level
//! assembly is emitted before any function); the packer refuses a stub where they are not.
//! The GDT's selectors are `paging.rs`'s (0x08 code32, 0x10 code64, 0x18 data).

use super::own_map;
use zboot_format::bootparam::{BootParams, ScreenInfo, SetupHeader};
use zboot_format::descriptor::layout as desc;
use zboot_format::image::{BARE_STACK_SIZE, ENTRY32_RVA};

// 32-bit entry (boot.rst, 32-bit boot protocol: flat protected mode, paging off, interrupts
// off, ESI = boot_params; GRUB `linux` on BIOS or on EFI without the handover protocol, our own
// 16-bit entry). A jump over one data word (where our descriptor lies, relative to this entry),
// then, after the 64-bit entry:
// - the stack: `BARE_STACK_SIZE` bytes after our image; the page tables after it
//   (`own_map`): 0..4 GiB identity mapped in 2 MiB pages, writable and non-executable (NX when
//   the CPU has it), our code `[ENTRY32_RVA, code_end)` in 4 KiB pages read-only + executable;
// - PAE, CR3, EFER.LME (+NXE), our GDT (accessed bits preset: it lives in read-only code), paging
//   on, a far return into the 64-bit code segment, then the 64-bit entry's tail with
//   `own map = 1`.
//
// 64-bit entry: long mode, identity-mapped, RSI = boot_params (kexec_file_load, kexec-tools'
// bzImage64 loader). The loader's stack may be tiny (kexec's purgatory has 4 KiB): switch to
// ours, right after our image (inside `init_size`, which the loader reserved), then
// `zboot_bare_main(boot_params, own map)` (bare.rs), which never returns.
core::arch::global_asm!(
    ".globl zboot_entry32",
    ".globl zboot_entry64",
    ".code32",
    "zboot_entry32:",
    "jmp zboot_entry32_body",
    ".org zboot_entry32 + 8, 0xcc",
    "zboot_entry32_desc:",
    ".long ZBOOT_STUB_DESCRIPTOR - zboot_entry32",
    ".org zboot_entry32 + 0x200, 0xcc",
    ".code64",
    "zboot_entry64:",
    "cli",
    "cld",
    "movq %rsi, %rdi",
    "xorl %esi, %esi",
    "zboot_entry64_tail:",
    "leaq __ImageBase(%rip), %rax",
    "movl (ZBOOT_STUB_DESCRIPTOR + {image_size})(%rip), %ecx",
    "addq %rcx, %rax",
    "addq ${stack}, %rax",
    "andq $-16, %rax",
    "movq %rax, %rsp",
    "xorl %ebp, %ebp",
    "call zboot_bare_main",
    "ud2",
    ".code32",
    "zboot_entry32_body:",
    "cli",
    "cld",
    "call 1f",
    "1:",
    "popl %ebp",
    "subl $(1b - zboot_entry32 + {entry32_rva}), %ebp",
    // EBP = our image base; EAX = our descriptor; ECX = image size; EDX = code end.
    "movl ({entry32_rva} + 8)(%ebp), %eax",
    "leal {entry32_rva}(%ebp,%eax), %eax",
    "movl {image_size}(%eax), %ecx",
    "movl {code_end}(%eax), %edx",
    "leal {stack}(%ebp,%ecx), %edi",
    "movl %edi, %esp",
    "addl %ebp, %edx",
    "pushl %esi",
    "pushl %edx",
    // Zero the tables (EDI = their base from here on).
    "movl ${tables_words}, %ecx",
    "xorl %eax, %eax",
    "rep stosl",
    "subl ${tables_size}, %edi",
    // NX mask for the high dwords: bit 31 when CPUID.80000001H:EDX.NX.
    "movl $0x80000000, %eax",
    "cpuid",
    "xorl %edx, %edx",
    "cmpl $0x80000001, %eax",
    "jb 2f",
    "movl $0x80000001, %eax",
    "cpuid",
    "andl $(1 << 20), %edx",
    "shll $11, %edx",
    "2:",
    "pushl %edx",
    // Stack: [esp] NX mask, [esp+4] code end, [esp+8] boot_params.
    "leal ({pdpt} + 3)(%edi), %eax",
    "movl %eax, {pml4}(%edi)",
    "leal ({pd} + 3)(%edi), %eax",
    "movl %eax, {pdpt}(%edi)",
    "addl $0x1000, %eax",
    "movl %eax, ({pdpt} + 8)(%edi)",
    "addl $0x1000, %eax",
    "movl %eax, ({pdpt} + 16)(%edi)",
    "addl $0x1000, %eax",
    "movl %eax, ({pdpt} + 24)(%edi)",
    "xorl %ecx, %ecx",
    "3:",
    "movl %ecx, %eax",
    "shll $21, %eax",
    "orl $0x83, %eax",
    "movl %eax, {pd}(%edi,%ecx,8)",
    "movl %ecx, %eax",
    "shrl $11, %eax",
    "orl (%esp), %eax",
    "movl %eax, ({pd} + 4)(%edi,%ecx,8)",
    "incl %ecx",
    "cmpl $2048, %ecx",
    "jb 3b",
    // Our code in 4 KiB pages: EBX = code start, EDX = 2 MiB index, ESI = page table.
    "leal {entry32_rva}(%ebp), %ebx",
    "movl %ebx, %edx",
    "shrl $21, %edx",
    "leal {pt}(%edi), %esi",
    "4:",
    "xorl %ecx, %ecx",
    "5:",
    "movl %edx, %eax",
    "shll $21, %eax",
    "shll $12, %ecx",
    "orl %ecx, %eax",
    "shrl $12, %ecx",
    "cmpl %ebx, %eax",
    "jb 6f",
    "cmpl 4(%esp), %eax",
    "jae 6f",
    "orl $1, %eax",
    "movl %eax, (%esi,%ecx,8)",
    "movl $0, 4(%esi,%ecx,8)",
    "jmp 7f",
    "6:",
    "orl $3, %eax",
    "movl %eax, (%esi,%ecx,8)",
    "movl (%esp), %eax",
    "movl %eax, 4(%esi,%ecx,8)",
    "7:",
    "incl %ecx",
    "cmpl $512, %ecx",
    "jb 5b",
    "leal 3(%esi), %eax",
    "movl %eax, {pd}(%edi,%edx,8)",
    "movl $0, ({pd} + 4)(%edi,%edx,8)",
    // Next 2 MiB page if the code reaches into it (at most two page tables).
    "incl %edx",
    "addl $0x1000, %esi",
    "movl %edx, %eax",
    "shll $21, %eax",
    "cmpl 4(%esp), %eax",
    "jae 8f",
    "leal ({pt} + 0x2000)(%edi), %eax",
    "cmpl %eax, %esi",
    "jb 4b",
    "ud2",
    "8:",
    // Long mode: PAE, CR3, EFER.LME (+NXE), GDT, paging.
    "movl %cr4, %eax",
    "orl $0x20, %eax",
    "movl %eax, %cr4",
    "leal {pml4}(%edi), %eax",
    "movl %eax, %cr3",
    "movl $0xc0000080, %ecx",
    "rdmsr",
    "orl $0x100, %eax",
    "testl $0x80000000, (%esp)",
    "jz 9f",
    "orl $0x800, %eax",
    "9:",
    "wrmsr",
    "leal (zboot_entry32_gdt - zboot_entry32 + {entry32_rva})(%ebp), %eax",
    "pushl %eax",
    "pushw $31",
    "lgdt (%esp)",
    "movl %cr0, %eax",
    "orl $0x80000001, %eax",
    "movl %eax, %cr0",
    "leal (10f - zboot_entry32 + {entry32_rva})(%ebp), %eax",
    "pushl ${code64}",
    "pushl %eax",
    "lret",
    ".code64",
    "10:",
    "movl ${data}, %eax",
    "movl %eax, %ds",
    "movl %eax, %es",
    "movl %eax, %ss",
    "movl %eax, %fs",
    "movl %eax, %gs",
    "movl %esp, %esp",
    // Stack: 6 bytes of GDTR, NX mask, code end, boot_params.
    "movl 14(%rsp), %edi",
    "movl $1, %esi",
    "jmp zboot_entry64_tail",
    ".balign 8",
    "zboot_entry32_gdt:",
    ".quad 0",
    ".quad 0x00cf9b000000ffff",
    ".quad 0x00af9b000000ffff",
    ".quad 0x00cf93000000ffff",
    image_size = const desc::IMAGE_SIZE,
    code_end = const desc::CODE_END,
    stack = const BARE_STACK_SIZE,
    entry32_rva = const ENTRY32_RVA,
    tables_size = const own_map::SIZE,
    tables_words = const own_map::SIZE / 4,
    pml4 = const own_map::PML4,
    pdpt = const own_map::PDPT,
    pd = const own_map::PD,
    pt = const own_map::PT,
    code64 = const super::paging::SEL_CODE64,
    data = const super::paging::SEL_DATA,
    options(att_syntax),
);

// 16-bit entry (boot.rst, real-mode protocol: QEMU `-kernel` on SeaBIOS, GRUB `linux16`,
// syslinux, kexec --real-mode). Assembled into read-only data and never executed there: the
// packer copies `zboot_real_start..zboot_real_end` into the headers at
// `zboot_format::image::REAL_MODE_AT`, where the jump at 0x200 lands; the loader loaded those
// headers (the "setup") at segment X and enters at X+0x20:0. What the kernel's own real-mode
// setup would do that our pipeline needs: a clean boot_params at X:BP16 with the setup header as
// the loader filled it in, the BIOS e820 map, the text screen's geometry and cursor, A20; then
// flat protected mode (our GDT) and the 32-bit entry at `code32_start` with ESI = boot_params.
// Memory used: X:0..X:0x8000 (the real-mode area every loader leaves to the setup).
const BP16: u16 = 0x1000;
const STACK16: u16 = 0x7ff0;

core::arch::global_asm!(
    ".pushsection .rdata,\"dr\"",
    ".globl zboot_real_start",
    ".globl zboot_real_end",
    ".code16",
    "zboot_real_start:",
    "cli",
    "cld",
    "movw %cs, %ax",
    "subw $0x20, %ax",
    "movw %ax, %ds",
    "movw %ax, %es",
    "movw %ax, %ss",
    "movw ${stack16}, %sp",
    "movw ${bp}, %di",
    "movw $2048, %cx",
    "xorw %ax, %ax",
    "rep stosw",
    "movw ${hdr}, %si",
    "movw $({bp} + {hdr}), %di",
    "movw ${hdr_len}, %cx",
    "rep movsb",
    // The BIOS memory map (INT 15h, E820h), at most the zero page's entries.
    "xorl %ebx, %ebx",
    "movw $({bp} + {e820_table}), %di",
    "1:",
    "movl $0xe820, %eax",
    "movl $0x534d4150, %edx",
    "movl $20, %ecx",
    "int $0x15",
    "jc 2f",
    "cmpl $0x534d4150, %eax",
    "jne 2f",
    "addw $20, %di",
    "incb ({bp} + {e820_entries})",
    "cmpb ${e820_max}, ({bp} + {e820_entries})",
    "jae 2f",
    "testl %ebx, %ebx",
    "jnz 1b",
    "2:",
    // The screen: a text mode (0-3, 7) is described for our console and the kernel's.
    "movb $0x0f, %ah",
    "int $0x10",
    "movb %al, ({bp} + {video_mode})",
    "movb %ah, ({bp} + {video_cols})",
    "cmpb $7, %al",
    "je 3f",
    "cmpb $3, %al",
    "ja 4f",
    "3:",
    "movb $25, ({bp} + {video_lines})",
    "movb $1, ({bp} + {video_is_vga})",
    "movb $0x03, %ah",
    "xorb %bh, %bh",
    "int $0x10",
    "movb %dl, ({bp} + {orig_x})",
    "movb %dh, ({bp} + {orig_y})",
    "4:",
    // A20: the BIOS call, then the fast gate (bit 1 of port 0x92; bit 0 would reset).
    "movw $0x2401, %ax",
    "int $0x15",
    "inb $0x92, %al",
    "orb $2, %al",
    "andb $0xfe, %al",
    "outb %al, $0x92",
    // Flat protected mode and the 32-bit entry.
    "cli",
    "xorl %ebx, %ebx",
    "movw %ds, %bx",
    "shll $4, %ebx",
    "leal ({real_at} + (6f - zboot_real_start))(%ebx), %eax",
    "movl %eax, ({real_at} + (7f - zboot_real_start) + 2)",
    "lgdtl ({real_at} + (7f - zboot_real_start))",
    "movl ({bp} + {code32_start}), %edx",
    "leal {bp}(%ebx), %esi",
    "leal {stack16}(%ebx), %ecx",
    "movl %cr0, %eax",
    "orl $1, %eax",
    "movl %eax, %cr0",
    "movw ${data}, %ax",
    "movw %ax, %ds",
    "movw %ax, %es",
    "movw %ax, %fs",
    "movw %ax, %gs",
    "movw %ax, %ss",
    "movl %ecx, %esp",
    "pushl ${code32}",
    "pushl %edx",
    "lretl",
    ".balign 8",
    "6:",
    ".quad 0",
    ".quad 0x00cf9b000000ffff",
    ".quad 0x00af9b000000ffff",
    ".quad 0x00cf93000000ffff",
    "7:",
    ".word 31",
    ".long 0",
    "zboot_real_end:",
    ".popsection",
    stack16 = const STACK16,
    bp = const BP16,
    hdr = const core::mem::offset_of!(BootParams, hdr),
    hdr_len = const size_of::<SetupHeader>(),
    e820_table = const core::mem::offset_of!(BootParams, e820_table),
    e820_entries = const core::mem::offset_of!(BootParams, e820_entries),
    e820_max = const zboot_format::bootparam::E820_MAX_ENTRIES_ZEROPAGE,
    video_mode = const core::mem::offset_of!(ScreenInfo, orig_video_mode),
    video_cols = const core::mem::offset_of!(ScreenInfo, orig_video_cols),
    video_lines = const core::mem::offset_of!(ScreenInfo, orig_video_lines),
    video_is_vga = const core::mem::offset_of!(ScreenInfo, orig_video_is_vga),
    orig_x = const core::mem::offset_of!(ScreenInfo, orig_x),
    orig_y = const core::mem::offset_of!(ScreenInfo, orig_y),
    code32_start = const core::mem::offset_of!(BootParams, hdr) + core::mem::offset_of!(SetupHeader, code32_start),
    real_at = const zboot_format::image::REAL_MODE_AT,
    code32 = const super::paging::SEL_CODE32,
    data = const super::paging::SEL_DATA,
    options(att_syntax),
);

/// Write `byte` to I/O port `port`.
pub fn outb(port: u16, byte: u8) {
    // SAFETY: port I/O has no memory effects; the callers write the legacy serial port only.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") byte, options(nomem, nostack, preserves_flags))
    };
}

/// Read I/O port `port`.
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as `outb`; reading the serial line status has no side effect.
    unsafe {
        core::arch::asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Stop this CPU for good: interrupts off, halted.
pub fn halt() -> ! {
    loop {
        // SAFETY: CLI/HLT at CPL 0 only stop the CPU.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Base and size of the GDT and the IDT in use (the loader's: they must survive until the
/// kernel loads its own).
pub fn descriptor_tables() -> [(u64, u64); 2] {
    let mut gdtr = [0u8; 10];
    let mut idtr = [0u8; 10];
    // SAFETY: SGDT/SIDT store 10 bytes at the given addresses, which are ours.
    unsafe {
        core::arch::asm!("sgdt [{}]", in(reg) gdtr.as_mut_ptr(), options(nostack, preserves_flags));
        core::arch::asm!("sidt [{}]", in(reg) idtr.as_mut_ptr(), options(nostack, preserves_flags));
    }
    let table = |r: [u8; 10]| {
        let limit = u64::from(u16::from_le_bytes([r[0], r[1]]));
        let base = u64::from_le_bytes(r[2..10].try_into().unwrap());
        (base, limit + 1)
    };
    [table(gdtr), table(idtr)]
}

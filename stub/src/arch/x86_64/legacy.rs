//! The bzImage entries (boot.rst: the 32-bit and 64-bit boot protocols) and the few CPU
//! instructions the firmware-less path needs: port I/O for the serial console, the descriptor
//! tables it must not overwrite, halting. With `real_mode.rs` (the 16-bit entry),
//! `efi_handover.rs` and `handoff.rs` the only assembly of the stub.
//!
//! Both entries sit at fixed places, as in Linux's own bzImage: the 32-bit one at the first byte
//! of the protected-mode part (`code32_start`, `zboot_format::image::ENTRY32_RVA`), the 64-bit
//! one 0x200 bytes later (`ENTRY64_RVA`). They are the first code in `.text` (module-level
//! assembly is emitted before any function); the packer refuses a stub where they are not.
//! The GDT's selectors are `paging.rs`'s (0x08 code32, 0x10 code64, 0x18 data).

use super::own_map;
use zboot_format::descriptor::layout as desc;
use zboot_format::image::{BARE_STACK_SIZE, ENTRY32_RVA};

/// COM1, where the 32-bit entry's CPU check reports (the bare console's port, serial.rs).
const COM1: u16 = 0x3f8;

/// The 32-bit entry's line on a CPU an x86-64 kernel cannot run on (a macro: the assembly
/// takes it as a literal).
macro_rules! cpu_unsupported {
    () => {
        "zboot: error: this kernel requires an x86-64 CPU with fpu msr pae cx8 cmov fxsr sse sse2 lm; unable to boot"
    };
}

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
// `zboot_bare_main(boot_params, own map)` (platform/bare/mod.rs), which never returns.
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
    // The CPU check of the kernel's own 32-bit entry (verify_cpu): CPUID, long mode and the
    // features an x86-64 kernel requires; else one line on COM1 and a halt (the kernel's
    // entry halts silently; without long mode enabling it below would fault and reset).
    "pushfl",
    "popl %eax",
    "movl %eax, %ecx",
    "xorl $0x200000, %eax",
    "pushl %eax",
    "popfl",
    "pushfl",
    "popl %eax",
    "pushl %ecx",
    "popfl",
    "xorl %ecx, %eax",
    "testl $0x200000, %eax",
    "jz zboot_entry32_cpu",
    "xorl %eax, %eax",
    "cpuid",
    "cmpl $1, %eax",
    "jb zboot_entry32_cpu",
    "movl $1, %eax",
    "cpuid",
    "andl ${req1}, %edx",
    "cmpl ${req1}, %edx",
    "jne zboot_entry32_cpu",
    "movl $0x80000000, %eax",
    "cpuid",
    "cmpl $0x80000001, %eax",
    "jb zboot_entry32_cpu",
    "movl $0x80000001, %eax",
    "cpuid",
    "testl ${req_ext1}, %edx",
    "jz zboot_entry32_cpu",
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
    ".code32",
    "zboot_entry32_cpu:",
    "leal (zboot_entry32_cpu_msg - zboot_entry32 + {entry32_rva})(%ebp), %esi",
    "1:",
    "lodsb",
    "testb %al, %al",
    "jz 4f",
    "movb %al, %ah",
    "movw ${com1_lsr}, %dx",
    "movl $0xffff, %ecx",
    "2:",
    "inb %dx, %al",
    "testb $0x20, %al",
    "jnz 3f",
    "pause",
    "loop 2b",
    "3:",
    "movw ${com1}, %dx",
    "movb %ah, %al",
    "outb %al, %dx",
    "jmp 1b",
    "4:",
    "cli",
    "hlt",
    "jmp 4b",
    "zboot_entry32_cpu_msg:",
    concat!(".asciz \"", cpu_unsupported!(), "\\r\\n\""),
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
    req1 = const zboot_format::bootparam::REQUIRED_CPUID1_EDX,
    req_ext1 = const zboot_format::bootparam::REQUIRED_CPUID_EXT1_EDX,
    com1 = const COM1,
    com1_lsr = const COM1 + 5,
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

//! The bzImage entries (boot.rst: the 32-bit and 64-bit boot protocols) and the few CPU
//! instructions the firmware-less path needs: port I/O for the serial console, the descriptor
//! tables it must not overwrite, halting. With `handoff.rs` the only assembly of the stub.
//!
//! Both entries sit at fixed places, as in Linux's own bzImage: the 32-bit one at the first byte
//! of the protected-mode part (`code32_start`, `zboot_format::image::ENTRY32_RVA`), the 64-bit
//! one 0x200 bytes later (`ENTRY64_RVA`). They are the first code in `.text` (module-level
//! assembly is emitted before any function); the packer refuses a stub where they are not.

use zboot_format::descriptor::layout as desc;
use zboot_format::image::BARE_STACK_SIZE;

// 32-bit entry: flat protected mode, paging off (GRUB `linux` on BIOS, or on EFI without the
// handover protocol). Not implemented yet: one line on COM1, then halt, never a jump into the
// payload. Position independent (call/pop), no stack beyond that call.
//
// 64-bit entry: long mode, identity-mapped, RSI = boot_params (kexec_file_load, kexec-tools'
// bzImage64 loader). The loader's stack may be tiny (kexec's purgatory has 4 KiB): switch to
// ours, `BARE_STACK_SIZE` bytes right after our image (inside `init_size`, which the loader
// reserved), then `zboot_bare_main(boot_params)` (bare.rs), which never returns.
core::arch::global_asm!(
    ".globl zboot_entry32",
    ".globl zboot_entry64",
    ".code32",
    "zboot_entry32:",
    "cli",
    "cld",
    // The message's address is the call's return address.
    "call 2f",
    ".asciz \"zboot: error: the 32-bit boot protocol entry is not supported by this image; boot it as an EFI application or with a 64-bit loader\\r\\n\"",
    "2:",
    "pop esi",
    "4:",
    "movzx edi, byte ptr [esi]",
    "test edi, edi",
    "jz 6f",
    "mov edx, 0x3fd",
    "mov ecx, 0x100000",
    "5:",
    "in al, dx",
    "test al, 0x20",
    "jnz 7f",
    "loop 5b",
    "7:",
    "mov eax, edi",
    "mov edx, 0x3f8",
    "out dx, al",
    "inc esi",
    "jmp 4b",
    "6:",
    "hlt",
    "jmp 6b",
    ".org zboot_entry32 + 0x200, 0xcc",
    ".code64",
    "zboot_entry64:",
    "cli",
    "cld",
    "mov rdi, rsi",
    "lea rax, [rip + __ImageBase]",
    "mov ecx, dword ptr [rip + ZBOOT_STUB_DESCRIPTOR + {image_size}]",
    "add rax, rcx",
    "add rax, {stack}",
    "and rax, -16",
    "mov rsp, rax",
    "xor ebp, ebp",
    "call zboot_bare_main",
    "ud2",
    image_size = const desc::IMAGE_SIZE,
    stack = const BARE_STACK_SIZE,
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

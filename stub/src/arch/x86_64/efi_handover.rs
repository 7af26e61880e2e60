//! The EFI handover entries (boot.rst, "EFI Handover Protocol"): where the setup header's
//! `handover_offset` points, and 0x200 bytes after it. With `legacy.rs` and `handoff.rs` the
//! only assembly of the stub.
//!
//! A loader that copies the file flat (GRUB's `linuxefi`) calls `copy + handover_offset` on
//! 32-bit firmware and `copy + handover_offset + 0x200` on 64-bit firmware, as Linux lays out
//! `efi32_stub_entry` and `efi64_stub_entry`. Only the 64-bit one boots (the pipeline in
//! platform/efi/mod.rs); the image does not declare `XLF_EFI_HANDOVER_32`, but a loader that calls the
//! 32-bit offset anyway (Debian's GRUB ia32 does) gets a real entry there, never the middle of
//! other code: it prints one line (`mixed_mode_unsupported!`) on the firmware console and returns
//! `EFI_UNSUPPORTED` to the loader.

/// The line the 32-bit entry prints (ASCII; widened to UCS-2 on the stack). A macro: the
/// assembly takes it as a literal.
macro_rules! mixed_mode_unsupported {
    () => {
        "zboot: error: 32-bit UEFI firmware: this image boots on 64-bit UEFI only (no EFI mixed mode)"
    };
}

/// `EFI_UNSUPPORTED` in the 32-bit firmware's status width.
const EFI32_UNSUPPORTED: u32 = 0x8000_0003;
/// 32-bit `EFI_SYSTEM_TABLE`: the header (24 bytes), FirmwareVendor, FirmwareRevision,
/// ConsoleInHandle, ConIn, ConsoleOutHandle, then ConOut.
const EFI32_SYSTAB_CON_OUT: u32 = 44;
/// `EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL`: Reset, then OutputString.
const EFI32_OUTPUT_STRING: u32 = 4;

// 32-bit entry: `efi32_stub_entry(handle, system table, boot_params)`, cdecl (arguments on the
// stack), flat protected mode, boot services up. The ASCII line is widened into a UCS-2 buffer
// on the loader's stack (it is short), printed through `ConOut->OutputString`, and the entry
// returns `EFI_UNSUPPORTED` with the callee-saved registers and the stack as they came.
//
// 64-bit entry, 0x200 bytes later: a tail jump into `zboot_handover_entry` (platform/efi/mod.rs), SysV
// arguments untouched.
core::arch::global_asm!(
    ".globl zboot_handover32",
    ".globl zboot_handover64",
    ".code32",
    "zboot_handover32:",
    "pushl %ebp",
    "movl %esp, %ebp",
    "pushl %esi",
    "pushl %edi",
    "pushl %ebx",
    "movl 12(%ebp), %eax",
    "testl %eax, %eax",
    "jz 3f",
    "movl {con_out}(%eax), %esi",
    "testl %esi, %esi",
    "jz 3f",
    "call 1f",
    "1:",
    "popl %edx",
    "addl $(zboot_handover32_msg - 1b), %edx",
    "subl $((({msg_len} + 3) * 2 + 15) & ~15), %esp",
    "movl %esp, %edi",
    "2:",
    "movzbl (%edx), %ecx",
    "movw %cx, (%edi)",
    "incl %edx",
    "addl $2, %edi",
    "testl %ecx, %ecx",
    "jnz 2b",
    "movl %esp, %edi",
    "pushl %edi",
    "pushl %esi",
    "calll *{output_string}(%esi)",
    "3:",
    "movl ${unsupported}, %eax",
    "leal -12(%ebp), %esp",
    "popl %ebx",
    "popl %edi",
    "popl %esi",
    "popl %ebp",
    "retl",
    "zboot_handover32_msg:",
    concat!(".ascii \"", mixed_mode_unsupported!(), "\""),
    ".byte 13, 10, 0",
    ".org zboot_handover32 + {bias}, 0xcc",
    ".code64",
    "zboot_handover64:",
    "jmp zboot_handover_entry",
    con_out = const EFI32_SYSTAB_CON_OUT,
    output_string = const EFI32_OUTPUT_STRING,
    unsupported = const EFI32_UNSUPPORTED,
    msg_len = const mixed_mode_unsupported!().len(),
    bias = const zboot_format::image::HANDOVER_ENTRY_BIAS,
    options(att_syntax),
);

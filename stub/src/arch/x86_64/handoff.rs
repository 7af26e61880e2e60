//! Step 7, the last instructions: enter the kernel, directly or through the LA57 trampoline.
//! The only inline/global assembly of the stub.

use super::paging::vars;

// The paging-mode switch trampoline (see `paging.rs`). It is assembled into read-only data and
// never executed there: the stub copies `zboot_la57_start..zboot_la57_end` into its own code page
// below 4 GiB (made read-only + executable) and jumps to it with RDI = the variables page (below
// 4 GiB). Position independent: the only absolute target (the far jump back to 64-bit mode) is
// read from the variables page. No stack is used after leaving 64-bit mode (RSP may be above
// 4 GiB), and no register is trusted across the mode switches beyond its low 32 bits.
//
// 64-bit: clear CR4.PCIDE (clearing CR0.PG with PCIDE set faults), load our GDT, far return into
// the 32-bit code segment. 32-bit (compatibility mode): flat data segments, paging off (leaves
// long mode; EFER.LME stays set), CR4.LA57 as requested, CR3 = new root, paging on (long mode
// again, still compatibility mode), far jump through the variables page into the 64-bit
// segment. 64-bit: flat data segments, RSI = boot_params, jump to the kernel.
core::arch::global_asm!(
    ".pushsection .rdata,\"dr\"",
    ".globl zboot_la57_start",
    ".globl zboot_la57_ret64",
    ".globl zboot_la57_end",
    ".code64",
    "zboot_la57_start:",
    "cli",
    "mov ebx, edi",
    "mov rax, cr4",
    "and rax, ~(1 << 17)",
    "mov cr4, rax",
    "lgdt [rbx + {gdtr}]",
    "lea rax, [rip + 2f]",
    "push {code32}",
    "push rax",
    "retfq",
    ".code32",
    "2:",
    "mov eax, {data}",
    "mov ds, eax",
    "mov es, eax",
    "mov ss, eax",
    "mov eax, cr0",
    "and eax, 0x7fffffff",
    "mov cr0, eax",
    "mov eax, cr4",
    "and eax, ~(1 << 12)",
    "or eax, dword ptr [ebx + {la57}]",
    "mov cr4, eax",
    "mov eax, dword ptr [ebx + {cr3}]",
    "mov cr3, eax",
    "mov eax, cr0",
    "or eax, 0x80000000",
    "mov cr0, eax",
    "jmp fword ptr [ebx + {far64}]",
    ".code64",
    "zboot_la57_ret64:",
    "mov eax, {data}",
    "mov ds, eax",
    "mov es, eax",
    "mov ss, eax",
    "mov fs, eax",
    "mov gs, eax",
    "mov ebx, ebx",
    "mov rsi, qword ptr [rbx + {boot_params}]",
    "mov rax, qword ptr [rbx + {entry}]",
    "xor ebp, ebp",
    "cld",
    "jmp rax",
    "zboot_la57_end:",
    ".popsection",
    gdtr = const vars::GDTR,
    la57 = const vars::LA57,
    cr3 = const vars::NEW_CR3,
    far64 = const vars::FAR64,
    entry = const vars::ENTRY,
    boot_params = const vars::BOOT_PARAMS,
    code32 = const super::paging::SEL_CODE32,
    data = const super::paging::SEL_DATA,
);

unsafe extern "C" {
    static zboot_la57_start: u8;
    static zboot_la57_ret64: u8;
    static zboot_la57_end: u8;
}

/// The trampoline's bytes and the offset of its 64-bit return point.
pub fn trampoline() -> (&'static [u8], usize) {
    let start = &raw const zboot_la57_start as usize;
    let ret = &raw const zboot_la57_ret64 as usize;
    let end = &raw const zboot_la57_end as usize;
    // SAFETY: both labels delimit the assembled block in our read-only data.
    let code = unsafe { core::slice::from_raw_parts(start as *const u8, end - start) };
    (code, ret - start)
}

/// CPUID.(EAX=7,ECX=0):ECX\[16\]: the CPU can do 5-level paging.
pub fn cpu_has_la57() -> bool {
    // CPUID is available on every x86_64 CPU and has no side effects.
    let max = core::arch::x86_64::__cpuid(0).eax;
    max >= 7 && core::arch::x86_64::__cpuid_count(7, 0).ecx & (1 << 16) != 0
}

/// CR4 and CR3 as the firmware left them.
pub fn control_registers() -> (u64, u64) {
    let (cr3, cr4): (u64, u64);
    // SAFETY: reading control registers at CPL 0 (EFI boot services run in ring 0).
    unsafe {
        core::arch::asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags));
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack, preserves_flags));
    }
    (cr3, cr4)
}

/// Write `cr3` back into CR3 (flushes the TLB after a page-table edit).
///
/// # Safety
/// `cr3` must be the current root (or an equivalent one mapping everything in use).
pub unsafe fn reload_cr3(cr3: u64) {
    // SAFETY: the caller passes a root that maps what runs next.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) cr3, options(nostack, preserves_flags)) };
}

/// Jump to the 64-bit kernel entry (`startup_64`) with `RSI` = the zero page, interrupts off.
///
/// # Safety
/// Boot services must have been exited; `entry` must be the verified, relocated kernel's entry
/// inside an identity-mapped, executable region; `boot_params` a complete zero page.
pub unsafe fn jump(entry: u64, boot_params: u64) -> ! {
    // SAFETY: the caller guarantees the kernel image is in place and verified. The kernel's
    // startup_64 sets up its own stack, GDT and page tables; it only needs 64-bit mode,
    // the firmware's identity map, IF=0 and RSI (Documentation/arch/x86/boot.rst, 64-bit
    // boot protocol). DF is cleared as the SysV ABI/boot protocol expect.
    //
    // `entry` is pinned to RAX: the template zeroes RBP, and with `in(reg)` the register
    // allocator was free to put `entry` in RBP itself (it did, in some stub builds: the jump
    // then went to address 0 and slid through zero bytes into a #UD at 0x30000).
    unsafe {
        core::arch::asm!(
            "cli",
            "cld",
            "xor ebp, ebp",
            "jmp rax",
            in("rax") entry,
            in("rsi") boot_params,
            options(noreturn, nostack),
        )
    }
}

/// Enter the kernel through the trampoline copy at `code` (variables page at `vars_page`,
/// both below 4 GiB, filled in by `paging::fill_vars`).
///
/// # Safety
/// As [`jump`]; additionally `code` holds [`trampoline`]'s bytes in an executable page and
/// `vars_page` a complete variables page with a valid new root table.
pub unsafe fn jump_via_trampoline(code: u64, vars_page: u64) -> ! {
    // SAFETY: see above; the trampoline never returns (it jumps into the kernel).
    unsafe {
        core::arch::asm!(
            "cli",
            "jmp {code}",
            code = in(reg) code,
            in("rdi") vars_page,
            options(noreturn, nostack),
        )
    }
}

//! Step 7, the last instruction: enter the kernel. The only inline assembly of the stub.

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
    unsafe {
        core::arch::asm!(
            "cli",
            "cld",
            "xor ebp, ebp",
            "jmp {entry}",
            entry = in(reg) entry,
            in("rsi") boot_params,
            options(noreturn, nostack),
        )
    }
}

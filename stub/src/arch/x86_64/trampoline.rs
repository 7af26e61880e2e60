//! The LA57 switch trampoline, shared by both platforms: a code page and two data pages
//! (variables + GDT, new root table), all below 4 GiB, which the platform allocates while it
//! still can; entered as the very last step.

use super::{handoff, paging};
use zboot_format::header::PayloadHeader;

/// The paging-mode switch the kernel in `h` needs from the mode we run in (`no5lvl` from the
/// command line), and the current CR3.
pub fn decide(h: &PayloadHeader, no5lvl: bool) -> (paging::Switch, u64) {
    let (cr3, cr4) = handoff::control_registers();
    let switch = paging::decide(paging::Facts {
        cpu_la57: handoff::cpu_has_la57(),
        cr4_la57: cr4 & paging::CR4_LA57 != 0,
        kernel_la57: h.flags.has(zboot_format::Flags::LA57),
        no5lvl,
    });
    (switch, cr3)
}

pub struct Trampoline {
    switch: paging::Switch,
    /// Code page (the trampoline's bytes copied in).
    code: u64,
    ret64: usize,
    /// Two data pages.
    data: u64,
}

impl Trampoline {
    /// Copy the trampoline into the page at `code` and take the two pages at `data`.
    ///
    /// # Safety
    /// `code` (4 KiB) and `data` (8 KiB) are below 4 GiB, identity mapped, writable, ours
    /// until the kernel runs, and nothing else uses them.
    pub unsafe fn new(switch: paging::Switch, code: u64, data: u64) -> Trampoline {
        let (bytes, ret64) = handoff::trampoline();
        // SAFETY: the caller hands us the 4 KiB page at `code`.
        let page = unsafe { core::slice::from_raw_parts_mut(code as *mut u8, 4096) };
        page[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: the caller hands us the 8 KiB at `data`.
        unsafe { core::slice::from_raw_parts_mut(data as *mut u8, 8192) }.fill(0);
        Trampoline {
            switch,
            code,
            ret64,
            data,
        }
    }

    pub fn switch(&self) -> paging::Switch {
        self.switch
    }

    /// Build the new root table, fill the variables, switch the paging mode and enter the
    /// kernel.
    ///
    /// # Safety
    /// Nothing may allocate or call firmware any more; `entry`/`params` as for
    /// `handoff::jump`; `cr3` the current root; the code page executable.
    pub unsafe fn enter(self, cr3: u64, entry: u64, params: u64) -> ! {
        let vars_addr = self.data;
        let table_addr = vars_addr + 4096;
        // SAFETY: the 8 KiB at `data` are ours (see `new`).
        let bytes = unsafe { core::slice::from_raw_parts_mut(self.data as *mut u8, 8192) };
        let (vars, table) = bytes.split_at_mut(4096);
        let new_cr3 = match self.switch {
            paging::Switch::Enable => {
                table[..8].copy_from_slice(&paging::pml5_entry(cr3).to_le_bytes());
                table_addr
            }
            _ => {
                let root = cr3 & paging::PTE_ADDR;
                // SAFETY: CR3 points at the current identity-mapped PML5 (readable).
                let e0 = unsafe { core::ptr::read_volatile(root as *const u64) };
                let pml4 = e0 & paging::PTE_ADDR;
                if pml4 <= 0xffff_f000 {
                    pml4
                } else {
                    // SAFETY: the PML4 is a 4 KiB identity-mapped page table.
                    let src = unsafe { core::slice::from_raw_parts(pml4 as *const u8, 4096) };
                    table.copy_from_slice(src);
                    table_addr
                }
            }
        };
        paging::fill_vars(
            vars,
            vars_addr,
            new_cr3 as u32,
            self.switch,
            (self.code + self.ret64 as u64) as u32,
            entry,
            params,
        );
        // SAFETY: the trampoline code and variables are complete; see the caller.
        unsafe { handoff::jump_via_trampoline(self.code, vars_addr) }
    }
}

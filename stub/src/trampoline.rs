//! The LA57 switch trampoline, shared by both pipelines: a code page and two data pages
//! (variables + GDT, new root table), all below 4 GiB, set up while memory can still be
//! allocated; entered as the very last step.

use zboot_format::header::PayloadHeader;
use zboot_stub::arch::x86_64::{handoff, paging};

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

/// Under EFI: a trampoline prepared while memory can still be allocated, with its data pages
/// (freed on an error, handed over at the jump) and the root table it starts from.
pub struct EfiTrampoline {
    trampoline: Trampoline,
    data: crate::memory::Pages,
    cr3: u64,
}

/// Under EFI: the paging-mode switch the kernel in `h` needs, prepared in pages below 4 GiB;
/// `None` when there is none to make. Enabling 5-level paging is optional (staying in 4-level
/// mode is always correct for the kernel: a failure is only reported); disabling it, when the
/// kernel cannot run in 5-level mode, is not.
pub fn prepare_efi(
    h: &PayloadHeader,
    no5lvl: bool,
) -> Result<Option<EfiTrampoline>, crate::error::Error> {
    let (switch, cr3) = decide(h, no5lvl);
    let prepared = match switch {
        paging::Switch::None => return Ok(None),
        paging::Switch::Enable => match efi_pages(switch) {
            Ok(t) => t,
            Err(e) => {
                progress!("5-level paging not enabled: {}", e);
                return Ok(None);
            }
        },
        paging::Switch::Disable => efi_pages(switch)?,
    };
    let (trampoline, data) = prepared;
    Ok(Some(EfiTrampoline {
        trampoline,
        data,
        cr3,
    }))
}

/// The code page (read-only + executable once filled) and the data pages, below 4 GiB.
fn efi_pages(
    switch: paging::Switch,
) -> Result<(Trampoline, crate::memory::Pages), crate::error::Error> {
    use crate::error::Context;
    use crate::memory::{self, Pages};
    use uefi::boot::MemoryType;
    let code = Pages::below_4g(4096, MemoryType::LOADER_CODE)
        .efi("allocate LA57 trampoline below 4 GiB")?;
    let data = Pages::below_4g(8192, MemoryType::LOADER_DATA)
        .efi("allocate LA57 page table below 4 GiB")?;
    // SAFETY: both allocations are ours, below 4 GiB, identity mapped, writable.
    let t = unsafe { Trampoline::new(switch, code.addr(), data.addr()) };
    // W^X: the code page becomes read-only, then executable.
    let attr = memory::protect_code(code.addr(), 4096).efi("protect LA57 trampoline")?;
    progress!(
        "5-level paging: {:?} via trampoline at {:#x}{}",
        switch,
        code.addr(),
        if attr { " (RO+X)" } else { "" }
    );
    code.leak();
    Ok((t, data))
}

impl EfiTrampoline {
    /// Switch the paging mode and enter the kernel.
    ///
    /// # Safety
    /// As [`Trampoline::enter`]: boot services are gone, nothing allocates any more.
    pub unsafe fn enter(self, entry: u64, params: u64) -> ! {
        self.data.leak();
        // SAFETY: the caller's contract; the pages were prepared before ExitBootServices.
        unsafe { self.trampoline.enter(self.cr3, entry, params) }
    }
}

//! What the pipeline needs from whatever started us, as one trait with two implementations:
//!
//! - [`efi`]: UEFI firmware (the PE entry, the EFI handover entries): LoadOptions or a handover
//!   loader's boot_params, EFI_RNG_PROTOCOL, AllocatePages, LoadFile2 / `initrd=` files, the
//!   TPM, a zero page built from scratch, ExitBootServices;
//! - [`bare`]: no firmware (the bzImage entries, x86_64 only): the loader's boot_params and e820
//!   map, checked before use; memory from that map; the loader's copy of boot_params; nothing
//!   to measure with and nothing to exit.
//!
//! The steps and their order are the pipeline's (`pipeline::boot`); a platform only answers.
//! Where an answer is architecture-specific (the zero page, the paging switch, the jump) the
//! platform takes it from `zboot_stub::arch::current` and its own `x86_64` part.

pub mod bare;
pub mod efi;
mod loader_line;

use crate::error::Error;
use alloc::string::String;
use alloc::vec::Vec;
use zboot_format::header::PayloadHeader;
use zboot_format::measure::Event;
use zboot_stub::cmdline::Options;
use zboot_stub::placement::PhysMemory;

/// What the loader handed over, before anything acts on it.
pub struct LoaderInput {
    /// Its command line (UTF-8; empty when it gave none).
    pub options: String,
    /// The raw LoadOptions bytes to measure as the loader passed them (the PE entry only, as
    /// Linux measures them); `None` where the options are not measured.
    pub measured_options: Option<Vec<u8>>,
    /// An initrd it placed (address, size), already checked to lie in its memory.
    pub initrd: Option<(u64, u64)>,
    /// The Secure Boot state (`zboot_stub::secure_boot`): the firmware's, or the loader's word.
    pub secure_boot: u8,
}

/// The kernel's region, owned until it is handed over.
pub trait KernelRegion {
    fn addr(&self) -> u64;
    /// All of the region (`mem_size` bytes): ours alone.
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Hand it to the kernel: never freed.
    fn leak(self) -> u64;
}

/// Where an initrd came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitrdSource {
    /// The loader's (its memory; passed on as it is; it measured what it read).
    Loader,
    LoadFile2,
    Files,
    Embedded,
}

/// The initrds on offer before the platform looks for its own.
pub struct Offer {
    /// The loader's (address, size), checked to lie in its memory.
    pub loader: Option<(u64, u64)>,
    /// The image's embedded one.
    pub embedded: Option<&'static [u8]>,
}

/// A loaded initrd.
pub trait LoadedInitrd {
    fn source(&self) -> InitrdSource;
    /// Its bytes, where we read or carry them (`None` for a loader's, in the loader's memory).
    fn bytes(&self) -> Option<&[u8]>;
    /// (address, size).
    fn span(&self) -> (u64, u64);
    /// Hand the memory to the kernel: never freed.
    fn leak(self);
}

/// The decompressed kernel as the hand-off sees it.
pub struct Kernel<'a> {
    pub header: &'a PayloadHeader,
    pub base: u64,
    /// Whether its physical or virtual address was randomized.
    pub randomized: bool,
}

/// Everything the kernel is handed, for [`Platform::prepare_handoff`].
pub struct Handed<'a> {
    pub kernel: Kernel<'a>,
    /// The kernel's command line.
    pub line: &'a str,
    /// The initrd (address, size), if any.
    pub initrd: Option<(u64, u64)>,
    /// Bytes for the kernel's RNG seed, when there are any worth handing on.
    pub seed: Option<&'a [u8]>,
    /// `no5lvl` on the command line.
    pub no5lvl: bool,
    /// The Secure Boot state the kernel is told.
    pub secure_boot: u8,
}

/// One platform: the firmware (or its absence) the stub was started on.
pub trait Platform: PhysMemory<Claim = Self::Region, Error = Error> + Sized {
    type Region: KernelRegion;
    type Initrd: LoadedInitrd;
    /// Everything the jump needs, prepared while memory can still be had.
    type Handoff;

    /// The `efi=debug` line that says how we were started.
    fn report_entry(&self);
    /// What the loader handed over, checked.
    fn loader_input(&mut self) -> Result<LoaderInput, Error>;
    /// Fill `out` from the platform's random service; `false` when it has none (or it failed).
    fn firmware_random(&mut self, out: &mut [u8]) -> bool;
    /// Extend the measurement registers with `event` (nothing where there is no TPM).
    fn measure(&mut self, event: &Event);
    /// After the last measurement: hand the event log to the kernel (where there is one).
    fn finish_measurements(&mut self);
    /// Make the kernel's region usable as the kernel runs it at entry (writable and
    /// executable), right after it was placed.
    fn open_kernel(&mut self, kernel: &Self::Region, h: &PayloadHeader) -> Result<(), Error>;
    /// The initrd: the loader's, else what the platform can load, else the embedded one (the
    /// pipeline asks only without `noinitrd`).
    fn load_initrd(&mut self, opts: &Options, offer: Offer) -> Result<Option<Self::Initrd>, Error>;
    /// The kernel's boot information (on x86: boot_params and all it points to) and the paging
    /// switch, allocated and filled.
    fn prepare_handoff(&mut self, handed: &Handed<'_>) -> Result<Self::Handoff, Error>;
    /// The kernel's text read-only where the platform can (last of all that can fail).
    fn protect_kernel(&mut self, kernel: &Kernel<'_>, handoff: &Self::Handoff)
    -> Result<(), Error>;
    /// Hand over the kernel's region and the initrd, leave the platform (ExitBootServices, or
    /// nothing) and enter the kernel at `entry`.
    fn enter(
        self,
        entry: u64,
        kernel: Self::Region,
        initrd: Option<Self::Initrd>,
        handoff: Self::Handoff,
    ) -> !;
}

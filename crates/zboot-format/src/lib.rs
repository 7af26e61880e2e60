//! The contract between `zboot-pack` (host) and `zboot-stub` (EFI): one definition of every byte
//! layout both sides touch. `no_std`, no allocation, no I/O, so the stub can use it as is and the host
//! can test it.
//!
//! - [`header`]: the versioned payload header at the start of the `.zpayld` section.
//! - [`checksum`]: the boot-time integrity checksum (XXH3-64) the header records.
//! - [`filters`]: the reversible transforms (BCJ, delta-coded relocations) around compression.
//! - [`codec`]: compression ids and their names (CLI, zimg header).
//! - [`zimg`]: the Linux "zimg" zboot MZ header constants.
//! - [`bcj`]: the x86 BCJ filter (branch displacements made absolute) applied before zstd and friends.
//! - [`cmdline`]: the command-line rules (embedded line, length the kernel keeps).
//! - [`bootparam`]: Linux x86 `struct boot_params` and friends, offsets checked by tests.
//! - [`relocs`]: the x86 `vmlinux.relocs` table: parsing, validation and application.
//! - [`image`]: where an image's parts go (1:1 file/memory layout, headers page, setup header).
//! - [`measure`]: the TPM events (PCR 9) the stub measures, as Linux's EFI stub does.
//! - [`tcg_log`]: the TPM 2.0 event log layout (handed to Linux, replayed by the tests).
//! - `testdata` (feature `testdata`, tests only): the one pseudo-random generator of the
//!   workspace's tests.
//! - [`stub_build`]: how the stub is built (target, profile, the embedded variants).
//! - [`descriptor`]: the record in the stub's data through which it finds its payload and
//!   relocates itself (no PE headers, no PE base relocations needed at boot).
#![no_std]

pub mod bcj;
pub mod bootparam;
pub mod checksum;
pub mod cmdline;
pub mod codec;
pub mod descriptor;
pub mod filters;
pub mod header;
pub mod image;
pub mod measure;
pub mod pe;
pub mod relocs;
pub mod stub_build;
pub mod tcg_log;
#[cfg(any(test, feature = "testdata"))]
pub mod testdata;
pub mod zimg;

pub use codec::Codec;
pub use header::{Arch, Flags, HeaderError, PayloadHeader};

/// Name of the PE section holding the payload header followed by the compressed kernel.
pub const PAYLOAD_SECTION_NAME: &str = ".zpayld";
/// Name of the PE section holding the embedded kernel command line (`--cmdline`).
pub const CMDLINE_SECTION_NAME: &str = ".cmdline";
/// Name of the PE section holding the embedded initrd (`--initrd`).
pub const INITRD_SECTION_NAME: &str = ".initrd";
/// Name of the PE section holding SBAT metadata (`--sbat`).
pub const SBAT_SECTION_NAME: &str = ".sbat";
/// The same names as they sit in a section header.
pub const PAYLOAD_SECTION: &[u8; 8] = &pe::name8(PAYLOAD_SECTION_NAME);
pub const CMDLINE_SECTION: &[u8; 8] = &pe::name8(CMDLINE_SECTION_NAME);
pub const INITRD_SECTION: &[u8; 8] = &pe::name8(INITRD_SECTION_NAME);
pub const SBAT_SECTION: &[u8; 8] = &pe::name8(SBAT_SECTION_NAME);

/// x86_64 `__START_KERNEL_map`: kernel virtual addresses are `this + physical offset`.
pub const X86_START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// x86_64 `KERNEL_IMAGE_SIZE` with KASLR: the kernel image must fit in this virtual window.
pub const X86_KERNEL_IMAGE_SIZE: u64 = 1 << 30;
/// Largest kernel memory footprint the format accepts (guards against absurd headers).
pub const MAX_KERNEL_MEM: u64 = 1 << 30;
/// Alignment the x86_64 kernel requires of its physical load address.
pub const X86_KERNEL_ALIGN: u64 = 2 << 20;

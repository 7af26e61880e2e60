//! zboot-stub's portable core: everything the EFI application does that is pure logic
//! (payload location, command line, decoders, boot_params/e820 assembly, placement choice),
//! `no_std` + `alloc`, tested on the host. The pipeline and the platforms live in the binary (`main.rs`, `pipeline.rs`, `platform/`).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod arch;
pub mod cmdline;
pub mod decode;
pub mod memstats;
pub mod payload;
pub mod placement;
pub mod secure_boot;
pub mod tpm;
pub mod unpack;

//! What differs between architectures. The pipeline (`pipeline.rs`) names only
//! `arch::current` and the platforms; everything below is one architecture's implementation of
//! what they call: its boot protocol's tables, its KASLR window, its paging switch and
//! hand-off, its entries. An architecture without a module here builds the rest of this
//! library unchanged (`cargo xtask test` checks it for aarch64-unknown-uefi).

#[cfg(target_arch = "x86_64")]
pub mod x86_64;

/// The architecture being built for.
#[cfg(target_arch = "x86_64")]
pub use x86_64 as current;

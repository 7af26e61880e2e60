//! zboot-pack: turns a Linux x86_64 kernel into a compressed, strict PE/COFF EFI application
//! whose code is the `zboot-stub` EFI program.
//!
//! Data flows one way: `input` (vmlinux | bzImage → [`input::KernelImage`]) → `layout`
//! (flattened load image + payload header fields) → `compress` → `pe::write` (stub PE + sections)
//! → atomic output. `pe::rules` holds the strict PE checks shared by the writer and `verify`.

pub mod cli;
pub mod commands;
pub mod compress;
pub mod elfout;
pub mod input;
pub mod layout;
pub mod output;
pub mod payload;
pub mod pe;
pub mod sbat;
#[doc(hidden)]
pub mod testkit;

pub use zboot_format::Codec;

/// The stub embedded at build time (see build.rs; `ZBOOT_STUB_EFI` overrides it).
pub static EMBEDDED_STUB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/zboot-stub.efi"));

/// The stub `pack` embeds for `codec`: built with only that codec's decoder (smaller; see
/// docs/performance.md). All of them are [`EMBEDDED_STUB`] when `ZBOOT_STUB_EFI` is set.
pub fn embedded_stub(codec: Codec) -> &'static [u8] {
    macro_rules! stub {
        ($name:literal) => {
            include_bytes!(concat!(env!("OUT_DIR"), "/zboot-stub-", $name, ".efi"))
        };
    }
    match codec {
        Codec::None => stub!("none"),
        Codec::Gzip => stub!("gzip"),
        Codec::Zstd => stub!("zstd"),
        Codec::Xz => stub!("xz"),
        Codec::Lz4 => stub!("lz4"),
    }
}

/// How much the commands print on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// `x` rounded up to a multiple of the power of two `a`.
pub const fn align_up(x: u64, a: u64) -> u64 {
    (x + a - 1) & !(a - 1)
}

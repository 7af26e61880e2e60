//! How the EFI stub is built, for the two places that build it: `packer/build.rs` (the stubs
//! zboot-pack embeds) and `cargo xtask bench` (the same builds with measurement features).

/// The UEFI target of the x86_64 stub.
pub const TARGET: &str = "x86_64-unknown-uefi";
/// The cargo profile (`[profile.stub]` in the workspace manifest).
pub const PROFILE: &str = "stub";
/// The `cargo` arguments that build the stub; `--features <list>` follows.
pub const CARGO_ARGS: [&str; 8] = [
    "build",
    "--profile",
    PROFILE,
    "-p",
    "zboot-stub",
    "--target",
    TARGET,
    "--no-default-features",
];
/// The built stub, relative to the build's target directory.
pub const ARTIFACT: [&str; 3] = [TARGET, PROFILE, "zboot-stub.efi"];
/// The stubs zboot-pack embeds, as (name, `--features`): one per codec carrying only that
/// decoder, and `all` with every decoder. The embedded file is `zboot-stub-<name>.efi`.
pub const VARIANTS: [(&str, &str); 6] = [
    ("all", "zstd,xz,gzip,lz4"),
    ("none", ""),
    ("gzip", "gzip"),
    ("zstd", "zstd"),
    ("xz", "xz"),
    ("lz4", "lz4"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;

    #[test]
    fn one_variant_per_codec_named_and_built_for_it() {
        for c in Codec::ALL {
            let (_, features) = VARIANTS.iter().find(|(n, _)| *n == c.name()).unwrap();
            let want = if c == Codec::None { "" } else { c.name() };
            assert_eq!(*features, want);
        }
    }
}

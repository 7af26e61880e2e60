//! The command-line interface: the clap definition (shared with the man page and shell
//! completions, see [`command`]) and the dispatch to `commands/`.
//!
//! Exit status: 0 success, 1 `verify` found violations, 2 usage or input error ([`EXIT_OK`],
//! [`EXIT_VIOLATIONS`], [`EXIT_ERROR`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::commands::{self, Outcome};
use crate::{Codec, Verbosity};

/// Success.
pub const EXIT_OK: u8 = 0;
/// `verify` found violations.
pub const EXIT_VIOLATIONS: u8 = 1;
/// Usage error (bad arguments) or input error (unreadable, malformed or unsupported input).
pub const EXIT_ERROR: u8 = 2;

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  verify found violations
  2  usage or input error";

/// Pack a Linux x86_64 kernel (vmlinux ELF or bzImage/vmlinuz) into a compressed, strict PE/COFF
/// EFI application that is also a bzImage (kexec, GRUB `linux` and QEMU `-kernel` boot it through
/// the x86 boot protocols), or inspect, verify and unpack such images.
///
/// Exit status: 0 success, 1 `verify` found violations, 2 usage or input error.
#[derive(Parser, Debug)]
#[command(name = "zboot-pack", args_conflicts_with_subcommands = true)]
#[command(subcommand_negates_reqs = true, after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    pack: commands::pack::Options,
}

#[derive(Args, Debug, Clone, Copy, Default)]
pub struct VerbosityArgs {
    /// Print nothing but errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print details (sizes, timings, layout).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

impl VerbosityArgs {
    pub fn level(self) -> Verbosity {
        if self.quiet {
            Verbosity::Quiet
        } else if self.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Describe an image: PE layout, zimg and payload headers, codec, sizes, kernel version.
    /// Reads zboot-pack images, Linux bzImage and zboot images, and any EFI PE file.
    Inspect {
        /// Image to describe.
        #[arg(value_hint = clap::ValueHint::FilePath)]
        image: PathBuf,
        /// Print JSON instead of text (schema: docs/inspect-json.md).
        #[arg(long)]
        json: bool,
    },
    /// Check an EFI image against the strict PE rules (one line per violation, exit status 1 when
    /// any); for zboot-pack images also decode the payload and check its hashes.
    Verify {
        /// Image to check.
        #[arg(value_hint = clap::ValueHint::FilePath)]
        image: PathBuf,
    },
    /// Recover the kernel: a vmlinux ELF (with its relocation table appended) from a zboot-pack
    /// image, or the embedded ELF + relocations from a bzImage. Packing the result again with the
    /// same options gives a byte-identical image.
    Extract {
        /// Image to unpack.
        #[arg(value_hint = clap::ValueHint::FilePath)]
        image: PathBuf,
        /// Where to write the ELF.
        #[arg(short, long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
        output: PathBuf,
    },
    /// Predict PCR 9: the value (sha1, sha256, sha384, sha512) and the TPM events the image's stub
    /// measures when booted with these loader inputs, as Linux's own EFI stub measures them: the
    /// embedded command line (zboot-pack's event), the loader's LoadOptions, then the initrd
    /// handed over. PCR 9 is taken to start at zero with nothing else extending it. For sealing
    /// (systemd-pcrlock, tpm2 policies) see docs/measured-boot.md.
    Pcr {
        /// zboot-pack image to predict for.
        #[arg(value_hint = clap::ValueHint::FilePath)]
        image: PathBuf,
        /// The initrd the loader hands over (systemd-boot's LoadFile2 initrd, `initrd=` files
        /// concatenated in order); without it, the image's embedded initrd if any.
        #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
        initrd: Option<PathBuf>,
        /// The loader's options as text, exactly as the loader passes them (UTF-16 with a NUL,
        /// as systemd-boot does; it puts its own `initrd=\PATH` words first).
        #[arg(long, value_name = "STR", conflicts_with = "options_file")]
        options: Option<String>,
        /// The raw LoadOptions bytes (e.g. a firmware boot entry's optional data).
        #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
        options_file: Option<PathBuf>,
        /// Print JSON (values, events, and pcrlock-style records).
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script on stdout
    /// (e.g. `zboot-pack completions bash > /etc/bash_completion.d/zboot-pack`).
    Completions {
        /// Shell to generate the completions for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (roff): zboot-pack.1 and one zboot-pack-COMMAND.1 per subcommand
    /// into DIR, or only zboot-pack.1 on stdout (`cargo xtask man` writes them to target/man).
    Man {
        /// Directory to write the pages into (created if missing).
        #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
        out_dir: Option<PathBuf>,
    },
}

/// `--codec`: clap's view of [`Codec`], whose names and list zboot-format owns.
#[derive(Clone, Copy, Debug)]
pub struct CodecArg(pub Codec);

/// Every codec, for clap (in `Codec::ALL`'s order).
const CODEC_ARGS: [CodecArg; Codec::ALL.len()] = {
    let mut out = [CodecArg(Codec::None); Codec::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = CodecArg(Codec::ALL[i]);
        i += 1;
    }
    out
};

impl ValueEnum for CodecArg {
    fn value_variants<'a>() -> &'a [Self] {
        &CODEC_ARGS
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.name()))
    }
}

impl From<CodecArg> for Codec {
    fn from(c: CodecArg) -> Codec {
        c.0
    }
}

/// The version of the `zboot-stub` crate the embedded stub was built from (`external` when the
/// build embedded a prebuilt stub through `ZBOOT_STUB_EFI`).
pub const STUB_VERSION: &str = env!("ZBOOT_STUB_VERSION");

/// First 12 hex digits of the SHA-256 of the embedded stub.
pub fn stub_sha256_prefix() -> String {
    zboot_format::header::sha256(&[crate::EMBEDDED_STUB])[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What `--version` prints after the program name:
/// `0.1.0 (stub zboot-stub 0.1.0, sha256 0123456789ab)`.
pub fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        format!(
            "{} (stub zboot-stub {STUB_VERSION}, sha256 {})",
            env!("CARGO_PKG_VERSION"),
            stub_sha256_prefix()
        )
    })
}

/// The complete clap definition (man page, completions, parsing).
pub fn command() -> clap::Command {
    Cli::command().version(version())
}

/// Parses the process arguments and runs the command; returns the exit status.
pub fn main() -> ExitCode {
    let parsed = command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let verbosity = cli.pack.verbosity.level();
    let result = match cli.command {
        Some(Command::Inspect { image, json }) => commands::inspect::run(&image, json),
        Some(Command::Verify { image }) => commands::verify::run(&image, verbosity),
        Some(Command::Extract { image, output }) => {
            commands::extract::run(&image, &output, verbosity)
        }
        Some(Command::Pcr {
            image,
            initrd,
            options,
            options_file,
            json,
        }) => commands::pcr::run(&commands::pcr::Options {
            image,
            initrd,
            options,
            options_file,
            json,
        }),
        Some(Command::Completions { shell }) => {
            let mut cmd = command();
            let mut out = std::io::stdout().lock();
            clap_complete::generate(shell, &mut cmd, "zboot-pack", &mut out);
            let _ = out.flush();
            Ok(Outcome::Ok)
        }
        Some(Command::Man { out_dir }) => man(out_dir),
        None => commands::pack::run(&cli.pack),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::from(EXIT_OK),
        Ok(Outcome::Violations) => ExitCode::from(EXIT_VIOLATIONS),
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("zboot-pack: error: {msg}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The man pages: every visible (sub)command, `zboot-pack.1` first.
fn man(out_dir: Option<PathBuf>) -> anyhow::Result<Outcome> {
    use anyhow::Context;
    let cmd = command();
    match out_dir {
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            out.flush()?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
            clap_mangen::generate_to(cmd, &dir).with_context(|| dir.display().to_string())?;
        }
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn version_names_the_stub() {
        let v = version();
        assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
        assert!(v.contains("stub zboot-stub "), "{v}");
        let hash = v.rsplit("sha256 ").next().unwrap().trim_end_matches(')');
        assert_eq!(hash.len(), 12, "{v}");
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{v}");
    }
}

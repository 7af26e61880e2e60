//! `zboot-pack`: command-line parsing only; the work lives in `commands/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use zboot_pack::commands::{self, Outcome};
use zboot_pack::{Codec, Verbosity};

/// Pack a Linux x86_64 kernel (vmlinux ELF or bzImage/vmlinuz) into a compressed, strict PE/COFF
/// EFI application, or inspect, verify and unpack such images.
///
/// Exit status: 0 success, 1 `verify` found violations, 2 usage or input error.
#[derive(Parser, Debug)]
#[command(name = "zboot-pack", version, args_conflicts_with_subcommands = true)]
#[command(subcommand_negates_reqs = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    pack: PackArgs,
}

#[derive(Args, Debug)]
struct PackArgs {
    /// Kernel to pack: a vmlinux ELF (x86_64), or a bzImage/vmlinuz whose embedded ELF and
    /// relocation table are recovered.
    #[arg(value_name = "INPUT", required = true)]
    input: Option<PathBuf>,
    /// Where to write the EFI application (written atomically: replaced only on success).
    #[arg(short, long, value_name = "OUTPUT", required = true)]
    output: Option<PathBuf>,
    /// Compression of the kernel payload.
    #[arg(long, value_enum, default_value_t = CodecArg::Zstd)]
    codec: CodecArg,
    /// Compression level (zstd 1-22, default 19; xz 0-9, default 9 extreme; gzip 1-9, default 9;
    /// lz4 HC 3-12, default 12; ignored for none).
    #[arg(long, value_name = "N")]
    level: Option<u32>,
    /// Kernel command line to embed in a `.cmdline` section (used when the loader passes none).
    #[arg(long, value_name = "STR")]
    cmdline: Option<String>,
    /// Initrd to embed in an `.initrd` section (used when the loader provides none).
    #[arg(long, value_name = "FILE")]
    initrd: Option<PathBuf>,
    /// x86 relocation table (`arch/x86/boot/compressed/vmlinux.relocs`, Linux >= 6.5) enabling
    /// virtual KASLR for a bare vmlinux.
    #[arg(long, value_name = "FILE")]
    relocs: Option<PathBuf>,
    /// SBAT CSV to embed in a `.sbat` section (first row must be the `sbat,1,...` version line).
    #[arg(long, value_name = "FILE")]
    sbat: Option<PathBuf>,
    /// Use this EFI stub instead of the embedded one.
    #[arg(long, value_name = "FILE")]
    stub: Option<PathBuf>,
    /// The kernel may be entered with 5-level paging (LA57). For a bzImage this is taken from
    /// its xloadflags (XLF_5LEVEL) automatically.
    #[arg(long)]
    la57: bool,
    #[command(flatten)]
    verbosity: VerbosityArgs,
}

#[derive(Args, Debug, Clone, Copy)]
struct VerbosityArgs {
    /// Print nothing but errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print details (sizes, timings, layout).
    #[arg(short, long, global = true)]
    verbose: bool,
}

impl VerbosityArgs {
    fn level(self) -> Verbosity {
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
        image: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check an EFI image against the strict PE rules (one line per violation, exit status 1 when
    /// any); for zboot-pack images also decode the payload and check its hashes.
    Verify {
        /// Image to check.
        image: PathBuf,
    },
    /// Recover the kernel: a vmlinux ELF (with its relocation table appended) from a zboot-pack
    /// image, or the embedded ELF + relocations from a bzImage. Packing the result again with the
    /// same options gives a byte-identical image.
    Extract {
        /// Image to unpack.
        image: PathBuf,
        /// Where to write the ELF.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum CodecArg {
    Zstd,
    Xz,
    Gzip,
    Lz4,
    None,
}

impl From<CodecArg> for Codec {
    fn from(c: CodecArg) -> Codec {
        match c {
            CodecArg::Zstd => Codec::Zstd,
            CodecArg::Xz => Codec::Xz,
            CodecArg::Gzip => Codec::Gzip,
            CodecArg::Lz4 => Codec::Lz4,
            CodecArg::None => Codec::None,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
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
        None => {
            let p = cli.pack;
            let (Some(input), Some(output)) = (p.input, p.output) else {
                eprintln!("zboot-pack: error: INPUT and -o OUTPUT are required (see --help)");
                return ExitCode::from(2);
            };
            commands::pack::run(&commands::pack::Options {
                input,
                output,
                codec: p.codec.into(),
                level: p.level,
                cmdline: p.cmdline,
                initrd: p.initrd,
                relocs: p.relocs,
                sbat: p.sbat,
                stub: p.stub,
                la57: p.la57,
                verbosity,
            })
        }
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Violations) => ExitCode::from(1),
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("zboot-pack: error: {msg}");
            ExitCode::from(2)
        }
    }
}

//! `zboot-pack`: the command line lives in [`zboot_pack::cli`], the work in `commands/`.

fn main() -> std::process::ExitCode {
    zboot_pack::cli::main()
}

//! `cargo xtask <command>`: fixtures, QEMU boot harness, demo, tests, benchmarks.
//! (Skeleton: the harness work fills this in.)

mod probe;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("probe") => {
            if let Err(e) = probe::cli(&args[1..]) {
                eprintln!("xtask probe: {e:#}");
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!("usage: cargo xtask <probe|...>");
            std::process::exit(2);
        }
    }
}

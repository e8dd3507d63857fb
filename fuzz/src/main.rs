//! `cargo run --release -p adjoint-fuzz -- --programs 2000 [--seed S] [--batch B]
//! [--no-shrink] [--verbose]`: a fuzzing campaign; prints the counts of each class, the
//! rejection messages, and every finding shrunk to a minimal program.
//! `--show SEED` prints the program of a seed instead (`--seed S --show-index I`: the
//! I-th program of campaign S). `--pause-while FILE` waits
//! before each build while FILE exists (a machine shared with timing benchmarks).

use std::process::ExitCode;
use std::time::Duration;

use adjoint_fuzz::driver::{self, Options};
use adjoint_fuzz::{gen, print};

const USAGE: &str = "usage: adjoint-fuzz [--programs N] [--seed S] [--batch B] [--no-shrink] [--shrink-budget SECS] \
                     [--name NAME] [--pause-while FILE] [--verbose] | --show SEED | --seed S --show-index I";

fn main() -> ExitCode {
    let mut opts = Options::new(100, 1);
    opts.verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |what: &str| -> u64 {
            let v = args.next().unwrap_or_else(|| panic!("{what} needs a value\n{USAGE}"));
            parse(&v).unwrap_or_else(|| panic!("{what}: not a number: {v}\n{USAGE}"))
        };
        match a.as_str() {
            "--programs" => opts.programs = value("--programs") as usize,
            "--seed" => opts.seed = value("--seed"),
            "--batch" => opts.batch = value("--batch").max(1) as usize,
            "--shrink-budget" => opts.shrink_budget = Duration::from_secs(value("--shrink-budget")),
            "--no-shrink" => opts.shrink = false,
            "--verbose" => opts.verbose = true,
            "--name" => opts.name = args.next().expect("--name needs a value"),
            "--pause-while" => opts.pause_while = Some(args.next().expect("--pause-while needs a file").into()),
            "--show" => {
                let seed = value("--show");
                print!("{}", print::module(&gen::program(seed, &opts.config)));
                return ExitCode::SUCCESS;
            }
            "--show-index" => {
                let seed = driver::program_seed(opts.seed, value("--show-index") as usize);
                print!("{}", print::module(&gen::program(seed, &opts.config)));
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::FAILURE;
            }
        }
    }
    let summary = driver::campaign(&opts);
    print!("{}", summary.report());
    if summary.defects() == 0 && summary.invalid.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn parse(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

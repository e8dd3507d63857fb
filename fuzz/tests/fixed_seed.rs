//! A fixed-seed fuzzing run, part of `cargo test --workspace`: a few dozen random
//! programs compiled through `#[differentiable]` in one batch, every gradient (and the
//! second derivative of half of them) checked against finite differences. Any macro
//! panic, error in generated code, wrong gradient, NaN or runtime panic fails the test
//! with the program, shrunk.

use std::time::Duration;

use adjoint_fuzz::driver::{self, Options};

/// The number of programs; the seed is fixed, so every run checks the same programs.
const PROGRAMS: usize = 32;
const SEED: u64 = 0x14;

#[test]
fn fixed_seed_campaign() {
    let mut opts = Options::new(PROGRAMS, SEED);
    opts.batch = PROGRAMS;
    opts.name = "fixed-seed".into();
    opts.shrink_budget = Duration::from_secs(240);
    let summary = driver::campaign(&opts);
    let report = summary.report();
    println!("{report}");
    assert!(summary.invalid.is_empty(), "the generator wrote invalid programs:\n{report}");
    assert_eq!(summary.defects(), 0, "the fixed-seed fuzzing run found defects:\n{report}");
    assert!(summary.count("passed") >= PROGRAMS * 3 / 4, "too few programs were judged:\n{report}");
}

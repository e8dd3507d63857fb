//! A differential fuzzer for `#[differentiable]`.
//!
//! It writes random programs inside the subset the README documents as supported,
//! compiles them through the macro in batches, and checks every gradient against
//! central finite differences of the plain function (second derivatives through a
//! nested `grad!` included). Each program is classified — passed, clean rejection,
//! macro panic, error in generated code, wrong gradient, NaN where the differences are
//! finite, runtime panic — and each failure is shrunk to a minimal program.
//!
//! | stage | module |
//! |---|---|
//! | programs as data | [`ast`], with [`scope`] (what is in scope; the validity checker) |
//! | random programs | [`gen`] (seeded by [`rng`]) |
//! | Rust source | [`print`] |
//! | compile, run, classify | [`batch`], with `harness.rs` compiled into each batch |
//! | minimal failing programs | [`shrink`] |
//! | campaigns and counts | [`driver`] |
//!
//! `cargo run --release -p adjoint-fuzz -- --programs 2000` runs a campaign; a
//! fixed-seed run of a few dozen programs is part of `cargo test --workspace`.

pub mod ast;
pub mod batch;
pub mod driver;
pub mod gen;
#[path = "harness.rs"]
pub mod harness;
pub mod print;
pub mod rng;
pub mod scope;
pub mod shrink;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every generated program passes the checker (the generator itself panics in
    /// debug builds when it writes one that does not), and printing is deterministic.
    #[test]
    fn generated_programs_are_valid() {
        let cfg = gen::Config::default();
        for i in 0..2000 {
            let seed = driver::program_seed(7, i);
            let p = gen::program(seed, &cfg);
            scope::check(&p).unwrap_or_else(|e| panic!("program {i}: {e}"));
            assert_eq!(print::module(&p), print::module(&gen::program(seed, &cfg)));
        }
    }

    /// Every shrinking candidate is valid and smaller.
    #[test]
    fn shrink_candidates_are_valid_and_smaller() {
        let cfg = gen::Config::default();
        for i in 0..40 {
            let p = gen::program(driver::program_seed(11, i), &cfg);
            for c in shrink::candidates(&p) {
                assert!(c.size() < p.size());
                scope::check(&c).unwrap();
            }
        }
    }

    /// The generator covers the constructs it is meant to fuzz.
    #[test]
    fn generator_covers_the_subset() {
        let cfg = gen::Config::default();
        let text: String = (0..400).map(|i| print::module(&gen::program(driver::program_seed(3, i), &cfg))).collect();
        for needle in [
            ".rev()",
            ".step_by(",
            "..=",
            ".enumerate()",
            ".zip(",
            ".copied()",
            "while ",
            "= loop {",
            "break ",
            "continue;",
            "return ",
            "grad!(h",
            "value_and_grad!(h",
            "vec![0.0;",
            "Vec::with_capacity",
            ".push(",
            ".to_vec()",
            ".iter().sum",
            "if ",
            "else",
            ".powf(",
            ".powi(",
            ".log(",
            ".mul_add(",
            ".clamp(",
            "&x[",
            "order = 3",
            "match ",
            " | ",
            "..=",
            "} else if ",
            "detach(",
            " + 1]",
            ".iter().map(|&",
            ".iter().zip(",
            ".fold(",
            ": f64| ",
            "(|(&",
            "while let Some(",
            ".pop().unwrap()",
            ".sort_by(|a, b| a.partial_cmp(b).unwrap())",
            ".sort_by(|a, b| b.partial_cmp(a).unwrap())",
            ".sort_unstable_by(|a, b| a.total_cmp(b))",
            ".sort_by(f64::total_cmp)",
            ".swap(",
            "continue 'outer",
            "break 'outer",
            ": while ",
            ": loop {",
            "let part",
            "/ 2..]",
            "vec![vec![0.0;",
            "][j",
            "m: &[Vec<f64>]",
            "in &mat",
            "row",
        ] {
            assert!(text.contains(needle), "no generated program contains `{needle}`");
        }
    }
}

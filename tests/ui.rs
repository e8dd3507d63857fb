//! Compile-fail tests: every misuse of `#[differentiable]` and the derivative macros is
//! a compile error at the offending tokens, with a hint that names the fix. The
//! `.stderr` files are the documentation of these errors.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}

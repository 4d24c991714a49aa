//! Compile-fail tests: every error class of `network!`, each with the exact
//! message and the tokens it points at. The catalogue in `docs/errors.md` is
//! written from these cases.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test --test ui`
//! and read every `.stderr` before committing it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}

//! Compile-fail suites: every check the macros make, with its message, at the right token.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/geometry/*.rs");
    t.compile_fail("tests/ui/branch/*.rs");
    t.compile_fail("tests/ui/generic/*.rs");
    t.compile_fail("tests/ui/model/*.rs");
    t.compile_fail("tests/ui/names/*.rs");
    t.compile_fail("tests/ui/graph/*.rs");
    t.pass("tests/ui/pass/*.rs");
}

//! Test-only: the settings every property test ("fuzz_" tests) shares; see docs/FUZZING.md.
use proptest::test_runner::Config;

/// `cases` per test, so a plain `cargo test` stays quick, unless `PROPTEST_CASES` asks for
/// another number (a long run). Failures are shrunk and printed, not saved to files: each one
/// found is kept as a plain regression test instead.
pub fn fuzz_config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

//! Replays `fuzz/regressions/utp_connection/*` through the fuzz target's check, so every
//! input a fuzzer ever crashed on stays fixed.

#[test]
fn utp_connection_corpus() {
    shoal_core::fuzzing::replay_regressions("utp_connection", shoal_utp::fuzzing::utp_connection);
}

//! Replays `fuzz/regressions/krpc/*` through the fuzz target's checks, so every input a
//! fuzzer ever crashed on stays fixed.

#[test]
fn krpc_corpus() {
    shoal_core::fuzzing::replay_regressions("krpc", shoal_dht::fuzzing::krpc);
}

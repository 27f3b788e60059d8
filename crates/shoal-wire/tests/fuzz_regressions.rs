//! Replays `fuzz/regressions/{peer_session,ut_metadata,ut_pex,ut_holepunch,mse}/*` through the fuzz targets' checks, so
//! every input a fuzzer ever crashed on stays fixed.

use shoal_core::fuzzing::replay_regressions as replay;

#[test]
fn ut_metadata_corpus() {
    replay("ut_metadata", shoal_wire::fuzzing::ut_metadata);
}

#[test]
fn ut_pex_corpus() {
    replay("ut_pex", shoal_wire::fuzzing::ut_pex);
}

#[test]
fn ut_holepunch_corpus() {
    replay("ut_holepunch", shoal_wire::fuzzing::ut_holepunch);
}

#[test]
fn mse_corpus() {
    replay("mse", shoal_wire::fuzzing::mse);
}

#[test]
fn peer_session_corpus() {
    replay("peer_session", shoal_wire::fuzzing::peer_session);
}

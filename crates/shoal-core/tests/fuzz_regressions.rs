//! Replays `fuzz/regressions/<target>/*` through the fuzz targets' checks. Every input a
//! fuzzer ever crashed on becomes a file there, so the bug stays fixed.

use shoal_core::fuzzing::replay_regressions as replay;

#[test]
fn bencode_corpus() {
    replay("bencode", shoal_core::fuzzing::bencode);
}

#[test]
fn metainfo_corpus() {
    replay("metainfo", shoal_core::fuzzing::metainfo);
    // Bencode inputs are torrents too, as far as the parser knows.
    replay("bencode", shoal_core::fuzzing::metainfo);
}

#[test]
fn magnet_corpus() {
    replay("magnet", shoal_core::fuzzing::magnet);
}

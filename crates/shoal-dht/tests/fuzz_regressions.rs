//! Replays `fuzz/regressions/krpc/*` through the fuzz target's checks, so every input a
//! fuzzer ever crashed on stays fixed.

use std::path::Path;

#[test]
fn krpc_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/krpc");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("readable corpus").path();
        let data = std::fs::read(&path).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| shoal_dht::fuzzing::krpc(&data));
        assert!(outcome.is_ok(), "{} fails its fuzz check", path.display());
        count += 1;
    }
    assert!(count > 0, "empty corpus in {}", dir.display());
}

//! Replays every input kept in `fuzz/regressions/<target>/` through the fuzz target of that
//! name (`fuzz/harness.rs`, shared with the cargo-fuzz targets), so what a fuzzer once found
//! stays fixed without a fuzzer in the test run.
#![cfg(all(feature = "memory", feature = "jwt", feature = "axum"))]

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

#[test]
fn every_kept_fuzz_input_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = 0;
    for (name, target) in harness::TARGETS {
        let dir = root.join(name);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{} holds the kept inputs: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            let input = std::fs::read(&path).expect("a kept input reads");
            let outcome = std::panic::catch_unwind(|| target(&input));
            assert!(outcome.is_ok(), "{name}: {} fails again", path.display());
            replayed += 1;
        }
    }
    // Each target keeps at least its seeds, so an empty replay means the files went missing.
    assert!(
        replayed >= harness::TARGETS.len(),
        "only {replayed} inputs replayed"
    );
}

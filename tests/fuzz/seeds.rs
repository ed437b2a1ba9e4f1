//! The inputs committed under `fuzz/seeds/TARGET/` (the fuzz targets' starting corpus, and
//! every input a fuzzer found a failure with) replayed through the same targets, so a finding
//! stays fixed without nightly.

use std::path::Path;

use crate::check::{TARGETS, run_target};

#[test]
fn every_committed_fuzz_input_passes_its_target() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for target in TARGETS {
        let dir = seeds.join(target);
        let inputs: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).collect();
        assert!(!inputs.is_empty(), "no seeds in {}", dir.display());
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| run_target(target, &data));
            assert!(outcome.is_ok(), "{target} fails on {}", input.display());
            assert!(outcome.unwrap(), "{} never reaches {target}'s checks", input.display());
        }
    }
}

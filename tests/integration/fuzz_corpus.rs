//! Every input of the fuzz corpus (`fuzz/corpus/<target>/`), run through the fuzz targets'
//! own harness (`fuzz/harness.rs`): no panic, and each within its time and allocation bounds.
//! What fuzzing found once stays found.

use crate::harness;

/// The suite's build is unoptimized: decoding runs about ten times slower than in the
/// optimized fuzz targets, whose bound the harness states.
const UNOPTIMIZED_SLOWDOWN: u32 = if cfg!(debug_assertions) { 10 } else { 1 };

#[test]
fn every_corpus_input_keeps_its_bounds() {
    let corpus = xtask::project_root().join("fuzz").join("corpus");
    let mut failures = Vec::new();
    for (target, run) in harness::TARGETS {
        let dir = corpus.join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "the {target} corpus is empty");
        let (mut slowest, mut slowest_per_kib, mut largest) =
            (std::time::Duration::ZERO, std::time::Duration::ZERO, 0usize);
        for path in &inputs {
            let input = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // A panic is a failure too, reported with the input that caused it.
            match std::panic::catch_unwind(|| harness::run_checked(run, &input, UNOPTIMIZED_SLOWDOWN)) {
                Ok(Ok(cost)) => {
                    slowest = slowest.max(cost.took);
                    slowest_per_kib = slowest_per_kib.max(cost.took / (input.len() as u32).div_ceil(1024).max(1));
                    largest = largest.max(cost.allocated);
                }
                Ok(Err(broken)) => failures.push(format!("{target}/{}: {broken}", name(path))),
                Err(_) => failures.push(format!("{target}/{}: panicked", name(path))),
            }
        }
        println!(
            "{target}: {} inputs, slowest {slowest:?} ({slowest_per_kib:?} per KiB at most), largest allocation {largest} bytes",
            inputs.len()
        );
    }
    assert!(failures.is_empty(), "{} corpus inputs broke their bounds:\n{}", failures.len(), failures.join("\n"));
}

fn name(path: &std::path::Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

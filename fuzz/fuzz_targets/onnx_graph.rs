//! The ONNX graph reader (inputs without shapes, ZipMap class keys) on arbitrary model bytes.
//! Checked: it reads at most one bounded value at a time, and every fact it reports names
//! something the file holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onnx_serving::platforms::onnx_graph::graph_facts_from_bytes;
use onnx_serving_fuzz::{measure, Bound};

/// One value info or node (at most 1 MiB) at a time, and the names and keys it keeps.
const BOUND: Bound = Bound { per_input_byte: 16, budget_factor: 0, budget: 0, constant: (1 << 20) + (64 << 10) };

fuzz_target!(|bytes: &[u8]| {
    let (facts, peak) = measure(|| graph_facts_from_bytes(bytes));
    BOUND.check("ONNX graph", bytes.len(), peak);
    let Some(facts) = facts else { return };
    let names = facts.unshaped.iter().chain(facts.score_maps.keys());
    let keys = facts.score_maps.values().flatten();
    for text in names.chain(keys) {
        // NOTE: a name or key is read from the file; only invalid UTF-8 may be replaced.
        assert!(text.len() <= bytes.len() * 3, "{text:?} is longer than the file could hold");
    }
});

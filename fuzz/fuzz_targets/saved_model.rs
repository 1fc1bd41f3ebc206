//! `saved_model.pb` signature reading on arbitrary bytes. Checked: the allocation bound, and
//! that every signature read has a name and its inputs a dtype TF Serving can show.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onnx_serving::platforms::tensorflow::signatures_from_bytes;
use onnx_serving_fuzz::{measure, Bound};

/// prost's SavedModel (graphs, functions, signatures) and the signatures copied out of it.
const BOUND: Bound = Bound { per_input_byte: 128, budget_factor: 0, budget: 0, constant: 64 << 10 };

fuzz_target!(|bytes: &[u8]| {
    let (signatures, peak) = measure(|| signatures_from_bytes(bytes));
    BOUND.check("saved_model.pb", bytes.len(), peak);
    match signatures {
        Err(error) => assert!(!error.is_empty()),
        Ok(signatures) => {
            for def in signatures.values() {
                for info in def.inputs.values().chain(def.outputs.values()) {
                    assert!(info.shape.as_ref().is_none_or(|dims| dims.len() <= bytes.len()));
                }
            }
        }
    }
});

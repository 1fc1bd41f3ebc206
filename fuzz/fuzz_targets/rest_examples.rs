//! REST classify/regress bodies (`{"examples": [...], "context": {...}}`), parsed and turned
//! into a signature's inputs as TF's ParseExample does. Checked: the allocation bound, and
//! that the inputs made have one row per example.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onnx_serving::codec::json::classify::parse_example_request;
use onnx_serving::inference::example_parse::{examples_to_inputs, spec_of};
use onnx_serving_fuzz::{example_signature, measure, Bound};

/// As REST predict: the tape's 16 bytes per value, feature vectors and their doubling.
const BOUND: Bound = Bound { per_input_byte: 64, budget_factor: 0, budget: 0, constant: 64 << 10 };

fuzz_target!(|body: &[u8]| {
    let spec = spec_of("regress", &example_signature()).expect("the fixed signature has a spec");
    let (result, peak) = measure(|| {
        let request = parse_example_request(body)?;
        let inputs = examples_to_inputs(&request.input, &spec)?;
        Ok::<_, onnx_serving::core::ServingError>((request, inputs))
    });
    BOUND.check("REST classify/regress", body.len(), peak);
    match result {
        Err(error) => assert!(!error.message.is_empty(), "an error without a message"),
        Ok((request, inputs)) => {
            let rows = request.input.examples.len();
            for (alias, tensor) in &inputs {
                assert_eq!(tensor.shape.first().copied(), Some(rows), "input {alias} is not one row per example");
            }
        }
    }
});

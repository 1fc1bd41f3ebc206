//! A whole gRPC `PredictRequest`, its inputs decoded within one budget as the server does.
//! Checked: the allocation bound, the inputs' total within the budget, errors naming an input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onnx_serving::codec::tensor_proto::decode_inputs_within;
use onnx_serving::proto::tensorflow::serving::PredictRequest;
use onnx_serving_fuzz::{decoded_bytes, measure, Bound, DECODE_BUDGET};
use prost::Message;

/// As one TensorProto's: prost's parsed structure, the decoded inputs and a copy.
const BOUND: Bound = Bound { per_input_byte: 64, budget_factor: 2, budget: DECODE_BUDGET, constant: 64 << 10 };

fuzz_target!(|bytes: &[u8]| {
    let (decoded, peak) = measure(|| {
        let request = PredictRequest::decode(bytes).ok()?;
        let aliases: Vec<String> = request.inputs.keys().cloned().collect();
        Some((aliases, decode_inputs_within(request.inputs, DECODE_BUDGET)))
    });
    BOUND.check("PredictRequest", bytes.len(), peak);
    match decoded {
        None => {}
        Some((aliases, Err(error))) => assert!(
            aliases.iter().any(|alias| error.message.contains(&format!("tensor parsing error: {alias} ("))),
            "the error names none of the inputs {aliases:?}: {}",
            error.message
        ),
        Some((_, Ok(inputs))) => {
            let total: usize = inputs.values().map(decoded_bytes).sum();
            assert!(total <= DECODE_BUDGET, "the inputs decoded to {total} bytes over a budget of {DECODE_BUDGET}");
        }
    }
});

//! One `TensorProto` from a gRPC request, decoded within a budget. Checked: the decode never
//! holds more than the budget allows (TF's fill rule lets a few bytes ask for gigabytes), an
//! error names the input, and a decoded tensor encoded both ways decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onnx_serving::codec::tensor_proto::{decode_tensor_within, encode_tensor};
use onnx_serving::proto::tensorflow::TensorProto;
use onnx_serving_fuzz::{decoded_bytes, measure, Bound, DECODE_BUDGET};
use prost::Message;

/// prost's repeated fields cost up to 32 bytes per input byte (a one-byte dimension becomes
/// a `Dim` with a name), doubled while they grow; the tensor itself at most the budget, plus
/// a copy while it is laid out.
const BOUND: Bound = Bound { per_input_byte: 64, budget_factor: 2, budget: DECODE_BUDGET, constant: 64 << 10 };

fuzz_target!(|bytes: &[u8]| {
    let (decoded, peak) = measure(|| {
        let proto = TensorProto::decode(bytes).ok()?;
        Some(decode_tensor_within("fuzzed_input", proto, DECODE_BUDGET))
    });
    BOUND.check("TensorProto", bytes.len(), peak);
    let tensor = match decoded {
        None => return,
        Some(Err(error)) => {
            assert!(error.message.contains("fuzzed_input"), "the error does not name the input: {}", error.message);
            return;
        }
        Some(Ok(tensor)) => tensor,
    };
    let decoded = decoded_bytes(&tensor);
    assert!(decoded <= DECODE_BUDGET, "decoded {decoded} bytes over a budget of {DECODE_BUDGET}");
    for as_content in [false, true] {
        let again =
            decode_tensor_within("again", encode_tensor(&tensor, as_content), DECODE_BUDGET).unwrap_or_else(|e| {
                panic!("an encoded tensor does not decode (tensor_content: {as_content}): {}", e.message)
            });
        assert!(again == tensor, "the round trip (tensor_content: {as_content}) changed the tensor");
    }
});

//! A gRPC Classify/Regress `Input` (`example_list` or `example_list_with_context`), converted
//! and parsed into a signature's inputs. Checked: the allocation bound, one row per example.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onnx_serving::codec::example_proto::input_from_proto;
use onnx_serving::inference::example_parse::{examples_to_inputs, spec_of};
use onnx_serving::proto::tensorflow::serving::Input;
use onnx_serving_fuzz::{example_signature, measure, Bound};
use prost::Message;

/// prost's parsed Examples, their conversion and the tensors made of them.
const BOUND: Bound = Bound { per_input_byte: 96, budget_factor: 0, budget: 0, constant: 64 << 10 };

fuzz_target!(|bytes: &[u8]| {
    let spec = spec_of("regress", &example_signature()).expect("the fixed signature has a spec");
    let (result, peak) = measure(|| {
        let proto = Input::decode(bytes).ok()?;
        Some(input_from_proto(Some(&proto)).and_then(|input| {
            let inputs = examples_to_inputs(&input, &spec)?;
            Ok((input.examples.len(), inputs))
        }))
    });
    BOUND.check("tf.Example Input", bytes.len(), peak);
    match result {
        None => {}
        Some(Err(error)) => assert!(!error.message.is_empty(), "an error without a message"),
        Some(Ok((rows, inputs))) => {
            for (alias, tensor) in &inputs {
                assert_eq!(tensor.shape.first().copied(), Some(rows), "input {alias} is not one row per example");
            }
        }
    }
});

//! REST predict bodies (`{"instances": ...}` / `{"inputs": ...}`, base64 images) decoded
//! against signatures of every input kind. Checked: the decode stays within its allocation
//! bound; a decoded request, written back as JSON, decodes to the same tensors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onnx_serving::codec::json::{parse_predict_body, write_predict_response, JsonFormat, PredictBody};
use onnx_serving::core::OutputKeys;
use onnx_serving_fuzz::{measure, predict_signatures, Bound};

/// The tape keeps 16 bytes per JSON value and a value takes at least two bytes; a decoded
/// string costs its `Bytes` handle (32 bytes) for a two-byte `""`; vectors grow by doubling.
const BOUND: Bound = Bound { per_input_byte: 64, budget_factor: 0, budget: 0, constant: 64 << 10 };

fuzz_target!(|body: &[u8]| {
    let signatures = predict_signatures();
    let image_alias = |signature: &str| (signature == "images").then(|| "image".to_string());
    let (parsed, peak) = measure(|| parse_predict_body(body, &signatures, image_alias));
    BOUND.check("REST predict", body.len(), peak);
    let request = match parsed {
        Err(error) => {
            assert!(!error.message.is_empty(), "an error without a message");
            return;
        }
        Ok(PredictBody::Images { images, .. }) => {
            assert!(images.iter().map(|image| image.len()).sum::<usize>() <= body.len());
            return;
        }
        Ok(PredictBody::Tensors(request)) => request,
    };
    // The round trip: the decoded tensors written as a response, renamed into a request.
    let outputs: Vec<_> = request.inputs.clone().into_iter().collect();
    let Ok(written) = write_predict_response(request.format, &outputs, &OutputKeys::new()) else { return };
    let Some(rest) = written.strip_prefix(match request.format {
        JsonFormat::Row => &b"{\"predictions\":"[..],
        JsonFormat::Columnar => &b"{\"outputs\":"[..],
    }) else {
        panic!("the response starts unexpectedly: {}", String::from_utf8_lossy(&written));
    };
    let key = match request.format {
        JsonFormat::Row => "instances",
        JsonFormat::Columnar => "inputs",
    };
    let mut again = format!("{{\"signature_name\":\"{}\",\"{key}\":", request.signature_name).into_bytes();
    again.extend_from_slice(rest);
    match parse_predict_body(&again, &signatures, |_| None) {
        Ok(PredictBody::Tensors(decoded)) => assert!(
            decoded.inputs == request.inputs,
            "the round trip changed the tensors:\n{:?}\n{:?}\nthrough {}",
            request.inputs,
            decoded.inputs,
            String::from_utf8_lossy(&again)
        ),
        other => panic!("the written request does not decode: {other:?} from {}", String::from_utf8_lossy(&again)),
    }
});

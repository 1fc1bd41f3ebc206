//! The TF Serving REST JSON codec: predict, classify and regress request decoding, response
//! encoding, floats.
//!
//! Every request is parsed once into a flat tape (no `serde_json::Value`), with rapidjson's
//! error messages and offsets. Predict's `instances` (row) or `inputs` (columnar) value is then
//! decoded straight into typed buffers using the signature's input dtypes; classify and
//! regress `examples` become tf.Example features; base64 images for an image input, and
//! Simple TF Serving's `POST /` JSON, come from the same tape. Responses are written compactly; whitespace
//! differs from TF's PrettyWriter, values and structure do not.
//!
//! Known differences from TF Serving, all in corners clients do not reach:
//! - Numbers are parsed exactly; rapidjson (without full precision) can be an ulp off.
//! - Nested doubles in error-message value dumps use ryu's shortest digits where rapidjson
//!   uses Grisu2, which is very rarely one digit longer.
//! - Non-UTF-8 bytes in error messages become U+FFFD, since messages are Rust strings.

pub mod classify;
mod convert;
mod decode;
mod dtoa;
mod encode;
mod error;
mod float;
mod float_layout;
mod float_round;
mod images;
mod labels;
mod lexer;
mod number;
mod request;
pub mod simple;
mod tape;
mod text;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::core::error::ServingResult;
use crate::core::signature::{SignatureMap, DEFAULT_SIGNATURE};
use crate::core::tensor::Tensor;

pub use float::{write_f32, write_f64};

/// The request layout, which also picks the response layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonFormat {
    /// `{"instances": [...]}` in, `{"predictions": [...]}` out.
    Row,
    /// `{"inputs": ...}` in, `{"outputs": ...}` out.
    Columnar,
}

/// A decoded REST predict request.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictJsonRequest {
    /// The signature used: the request's `signature_name`, or `serving_default`.
    pub signature_name: String,
    pub format: JsonFormat,
    /// Input tensors keyed by signature input alias.
    pub inputs: BTreeMap<String, Tensor>,
}

/// Decodes a predict request body against the servable's signatures.
///
/// Errors carry TF Serving's codes and messages: INVALID_ARGUMENT for malformed JSON and
/// layout or type problems, UNIMPLEMENTED for input dtypes JSON cannot express (columnar).
pub fn parse_predict_request(body: &[u8], signatures: &SignatureMap) -> ServingResult<PredictJsonRequest> {
    decode::parse_predict_request(body, signatures)
}

/// A predict body, read once: base64 images for the requested signature's image input, or
/// input tensors.
#[derive(Debug, PartialEq)]
pub enum PredictBody {
    /// `{"b64": ...}` images (or base64 strings) sent for the image input of `signature_name`.
    Images {
        signature_name: String,
        images: Vec<Bytes>,
    },
    Tensors(PredictJsonRequest),
}

/// Decodes a predict body against the servable's signatures, as `parse_predict_request`;
/// when the body holds `"b64"` and `image_alias` names the requested signature's image input,
/// returns that input's images (from `instances`, else `inputs`) instead.
pub fn parse_predict_body(
    body: &[u8],
    signatures: &SignatureMap,
    image_alias: impl FnOnce(&str) -> Option<String>,
) -> ServingResult<PredictBody> {
    let tape = request::parse_request(body)?;
    let requested = request::requested_signature(&tape)?;
    if images::mentions_b64(body) {
        let signature_name = if requested.is_empty() { DEFAULT_SIGNATURE } else { requested.as_str() };
        let value =
            tape.find_member(request::ROOT, b"instances").or_else(|| tape.find_member(request::ROOT, b"inputs"));
        if let (Some(alias), Some(value)) = (image_alias(signature_name), value) {
            let images = images::collect_images(&tape, value, &alias)?;
            return Ok(PredictBody::Images { signature_name: signature_name.to_owned(), images });
        }
    }
    decode::decode_predict_request(&tape, &requested, signatures).map(PredictBody::Tensors)
}

/// Encodes output tensors (alias, tensor) as `{"predictions": ...}` or `{"outputs": ...}`.
pub fn write_predict_response(
    format: JsonFormat,
    outputs: &[(String, Tensor)],
    map_keys: &crate::core::OutputKeys,
) -> ServingResult<Vec<u8>> {
    encode::write_predict_response(format, outputs, map_keys)
}

/// Writes the row-format response to an image request, with its top labels when the
/// model has them: `{"predictions": [...], "labels": [[{"label", "index", "score"}]]}`.
pub fn write_image_response(
    outputs: &[(String, Tensor)],
    map_keys: &crate::core::OutputKeys,
    labels: Option<&[Vec<crate::codec::image::plan::TopLabel>]>,
) -> ServingResult<Vec<u8>> {
    let mut body = encode::write_predict_response(JsonFormat::Row, outputs, map_keys)?;
    if let Some(labels) = labels {
        while body.last().is_some_and(u8::is_ascii_whitespace) {
            body.pop();
        }
        if body.pop() != Some(b'}') {
            return Err(crate::core::ServingError::internal("the predict response is not a JSON object"));
        }
        body.extend_from_slice(b",\"labels\":");
        labels::write_labels(labels, &mut body);
        body.push(b'}');
    }
    Ok(body)
}

/// Returns the error body `{"error": "<message>"}`, laid out as TF's PrettyWriter does.
pub fn write_error_body(message: &str) -> Vec<u8> {
    encode::write_error_body(message)
}

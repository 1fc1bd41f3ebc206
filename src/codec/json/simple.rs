//! Simple TensorFlow Serving's JSON on `POST /`: `{"model_name", "model_version",
//! "signature_name", "data": {...}}`, read from the tape once; `data` holds the image input's
//! base64 images or the signature's inputs by alias, decoded as TF's columnar `inputs`.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::decode::{decode_inputs, predict_signature};
use super::images::collect_images;
use super::request::{invalid, parse_request, requested_signature, ROOT};
use super::tape::{Tag, Tape};
use crate::core::error::ServingResult;
use crate::core::servable::VersionRequest;
use crate::core::signature::{SignatureMap, DEFAULT_SIGNATURE};
use crate::core::tensor::Tensor;

/// A parsed Simple TF Serving request; its `data` is decoded once the version is known.
pub struct SimpleRequest<'a> {
    tape: Tape<'a>,
    data: usize,
    /// The request's `signature_name`; empty when absent.
    requested: String,
    /// `model_name`, when it is a non-empty string.
    pub model_name: Option<String>,
    /// `model_version` (a number or a numeric string), or the latest version.
    pub version: VersionRequest,
    /// The signature used: `signature_name`, or `serving_default`.
    pub signature_name: String,
}

/// What a Simple TF Serving request's `data` holds for the signature.
#[derive(Debug, PartialEq)]
pub enum SimpleInputs {
    /// Base64 images for the signature's image input.
    Images(Vec<Bytes>),
    /// Input tensors keyed by alias, as TF's columnar `inputs` would give them.
    Tensors(BTreeMap<String, Tensor>),
}

/// Parses a Simple TF Serving body: TF's JSON errors for malformed JSON and a non-string
/// `signature_name`, `Failed to convert version: ...` for a non-numeric `model_version`.
pub fn parse_simple_request(body: &[u8]) -> ServingResult<SimpleRequest<'_>> {
    let tape = parse_request(body)?;
    let requested = requested_signature(&tape)?;
    let model_name = match tape.find_member(ROOT, b"model_name") {
        None => None,
        Some(idx) if tape.tag(idx) == Tag::Null => None,
        Some(idx) if tape.tag(idx) == Tag::Str => {
            Some(String::from_utf8_lossy(tape.str_bytes(idx)).into_owned()).filter(|name| !name.is_empty())
        }
        // NOTE: refused rather than ignored, so a typo never silently reaches another model.
        Some(idx) => return Err(invalid(format!("'model_name' must be a string; was {}", tape.debug_string(idx)))),
    };
    let version = match tape.find_member(ROOT, b"model_version") {
        None => VersionRequest::Latest,
        Some(idx) if tape.tag(idx) == Tag::Null => VersionRequest::Latest,
        Some(idx) if tape.tag(idx) == Tag::Str => {
            VersionRequest::specific(&String::from_utf8_lossy(tape.str_bytes(idx)))?
        }
        Some(idx) => VersionRequest::specific(&tape.debug_string(idx))?,
    };
    let data =
        tape.find_member(ROOT, b"data").ok_or_else(|| invalid("the request has no 'data' object of input values"))?;
    let signature_name = if requested.is_empty() { DEFAULT_SIGNATURE.to_owned() } else { requested.clone() };
    Ok(SimpleRequest { tape, data, requested, model_name, version, signature_name })
}

impl SimpleRequest<'_> {
    /// Decodes `data` against the version's signatures: with `image_alias` (the signature's
    /// image input), the images under that key or `data` itself; otherwise the inputs.
    pub fn inputs(&self, signatures: &SignatureMap, image_alias: Option<&str>) -> ServingResult<SimpleInputs> {
        let tape = &self.tape;
        if let Some(alias) = image_alias {
            let value = match tape.tag(self.data) {
                Tag::Object => tape.find_member(self.data, alias.as_bytes()).unwrap_or(self.data),
                _ => self.data,
            };
            return Ok(SimpleInputs::Images(collect_images(tape, value, alias)?));
        }
        let (_, signature) = predict_signature(signatures, &self.requested)?;
        Ok(SimpleInputs::Tensors(decode_inputs(tape, self.data, signature)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::json::tests::decode_tests::float_sig;

    #[test]
    fn the_envelope_is_read_with_tf_errors() {
        let request = parse_simple_request(br#"{"model_name": "m", "model_version": " 7", "data": {}}"#).expect("ok");
        assert_eq!((request.model_name.as_deref(), &request.version), (Some("m"), &VersionRequest::Specific(7)));
        assert_eq!(request.signature_name, DEFAULT_SIGNATURE);
        let request = parse_simple_request(br#"{"model_name": "", "model_version": 3, "data": 1}"#).expect("ok");
        assert_eq!((request.model_name, request.version), (None, VersionRequest::Specific(3)));
        let error = |body: &str| parse_simple_request(body.as_bytes()).err().map(|e| e.message).unwrap_or_default();
        assert_eq!(error(r#"{"model_version": "x", "data": {}}"#), "Failed to convert version: x to numeric.");
        assert_eq!(error(r#"{"model_name": 7, "data": {}}"#), "'model_name' must be a string; was 7");
        assert_eq!(error(r#"{"model_version": 2.5, "data": {}}"#), "Failed to convert version: 2.5 to numeric.");
        assert_eq!(error(r#"{"model_name": "m"}"#), "the request has no 'data' object of input values");
        assert_eq!(error("{nope"), "JSON Parse error: Missing a name for object member. at offset: 1");
        assert_eq!(error(""), "JSON Parse error: The document is empty");
        assert!(error(r#"{"signature_name": 1, "data": {}}"#).ends_with("'signature_name' key must be a string value."));
    }

    #[test]
    fn data_becomes_images_or_columnar_tensors() {
        let request = parse_simple_request(br#"{"data": {"image": ["YQ==", {"b64": "Yg=="}]}}"#).expect("ok");
        let images = request.inputs(&float_sig(), Some("image")).expect("images");
        assert_eq!(images, SimpleInputs::Images(vec![Bytes::from("a"), Bytes::from("b")]));
        let request = parse_simple_request(br#"{"data": {"x": [[1.0], [2.0]], "other": 1}}"#).expect("ok");
        let SimpleInputs::Tensors(tensors) = request.inputs(&float_sig(), None).expect("tensors") else {
            panic!("tensors expected")
        };
        assert_eq!(tensors["x"], Tensor::from_vec(vec![2, 1], vec![1.0f32, 2.0]));
        let request = parse_simple_request(br#"{"data": {"y": 1}}"#).expect("ok");
        let error = request.inputs(&float_sig(), None).expect_err("missing x");
        assert_eq!(error.message, "Missing named input: x in 'inputs' object.");
    }
}

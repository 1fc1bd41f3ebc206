//! Base64 images inside request JSON: `{"b64": ...}` objects, plain base64 strings, lists of
//! them, or `{"<alias>": ...}` holding them, for a version's image input.

use bytes::Bytes;

use super::request::invalid;
use super::tape::{Tag, Tape};
use crate::codec::base64::{base64_unescape, web_safe_base64_unescape};
use crate::core::error::ServingResult;

/// Returns whether a body may carry `{"b64": ...}` images: it holds the text `"b64"`.
pub(crate) fn mentions_b64(body: &[u8]) -> bool {
    body.windows(5).any(|w| w == b"\"b64\"")
}

/// Decodes an image's base64 by TF's rules, in the standard alphabet or else the web-safe one.
fn decode_image(index: usize, text: &[u8]) -> ServingResult<Bytes> {
    base64_unescape(text)
        .or_else(|| web_safe_base64_unescape(text))
        .map(Bytes::from)
        .ok_or_else(|| invalid(format!("image {index}: Unable to base64 decode")))
}

/// Collects the base64 images of the value at `root`, in document order: `{"b64": s}`, a
/// plain string, a list of either, or `{"<alias>": ...}` holding them.
pub(crate) fn collect_images(tape: &Tape<'_>, root: usize, alias: &str) -> ServingResult<Vec<Bytes>> {
    let mut images = Vec::new();
    // NOTE: the tape accepts any nesting depth, so the walk keeps its own stack.
    let mut pending = vec![root];
    while let Some(idx) = pending.pop() {
        match tape.tag(idx) {
            Tag::Str => images.push(decode_image(images.len(), tape.str_bytes(idx))?),
            Tag::Array => {
                let start = pending.len();
                pending.extend(tape.elements(idx));
                pending[start..].reverse();
            }
            Tag::Object if tape.is_b64_object(idx) => images.push(decode_image(images.len(), tape.str_bytes(idx + 2))?),
            Tag::Object => match tape.members(idx).collect::<Vec<_>>().as_slice() {
                [(key, value)] if tape.str_bytes(*key) == alias.as_bytes() => pending.push(*value),
                members => {
                    let mut keys: Vec<String> = members
                        .iter()
                        .map(|(key, _)| String::from_utf8_lossy(tape.str_bytes(*key)).into_owned())
                        .collect();
                    keys.sort();
                    return Err(invalid(format!(
                        "expected {{\"b64\": \"<image>\"}} or {{\"{alias}\": ...}} for the image input, got an object with keys {}",
                        keys.join(",")
                    )));
                }
            },
            _ => {
                return Err(invalid(format!(
                    "expected a base64 image for input '{alias}', got {}",
                    tape.debug_string(idx)
                )))
            }
        }
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::json::request::parse_request;

    /// Collects the images of `value`, sent as the member `v` of a request.
    fn images(value: &str, alias: &str) -> ServingResult<Vec<Bytes>> {
        let body = format!(r#"{{"v": {value}}}"#);
        let tape = parse_request(body.as_bytes())?;
        collect_images(&tape, tape.find_member(0, b"v").expect("v"), alias)
    }

    #[test]
    fn every_layout_of_images_is_read_in_order() {
        let found = images(r#"[{"b64": "YQ=="}, "Yg", {"img": [{"b64": "Yw=="}, "_-8="]}]"#, "img").expect("images");
        assert_eq!(found, vec![Bytes::from("a"), Bytes::from("b"), Bytes::from("c"), Bytes::from(vec![0xff, 0xef])]);
    }

    #[test]
    fn bad_images_are_named() {
        assert_eq!(
            images(r#"{"z": 1, "a": 2}"#, "img").expect_err("keys").message,
            r#"expected {"b64": "<image>"} or {"img": ...} for the image input, got an object with keys a,z"#
        );
        assert_eq!(images(r#"["YQ==", "*"]"#, "img").expect_err("base64").message, "image 1: Unable to base64 decode");
        assert_eq!(
            images("[true]", "img").expect_err("bool").message,
            "expected a base64 image for input 'img', got true"
        );
        let deep = format!("{}\"YQ==\"{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(images(&deep, "img").expect("deep lists").len(), 1);
    }

    #[test]
    fn a_predict_body_is_read_once_as_images_or_tensors() {
        use crate::codec::json::tests::decode_tests::sigs;
        use crate::codec::json::{parse_predict_body, JsonFormat, PredictBody};
        use crate::core::tensor::DType;

        let signatures = sigs(&[("image", DType::String)]);
        let alias = |signature: &str| (signature == "serving_default").then(|| "image".to_string());
        let body = br#"{"inputs": {"image": [{"b64": "YQ=="}]}}"#;
        let images = parse_predict_body(body, &signatures, alias).expect("images");
        let expected = PredictBody::Images { signature_name: "serving_default".into(), images: vec![Bytes::from("a")] };
        assert_eq!(images, expected);
        let PredictBody::Tensors(request) = parse_predict_body(body, &signatures, |_| None).expect("tensors") else {
            panic!("no image input: tensors expected")
        };
        assert_eq!(
            (request.format, request.inputs["image"].strings().map(<[Bytes]>::len)),
            (JsonFormat::Columnar, Some(1))
        );
        let error = parse_predict_body(br#"{"instances": [{"b64": 1}"#, &signatures, alias).expect_err("malformed");
        assert_eq!(error.message, "JSON Parse error: Missing a comma or ']' after an array element. at offset: 25");
    }
}

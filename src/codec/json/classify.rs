//! TF Serving's Classify/Regress JSON: `{"signature_name", "context", "examples": [...]}`
//! requests, read from the same tape as predict (each feature's kind from its JSON tokens, as
//! TF's `FillClassifyRegressRequestFromJson`), and `{"results": ...}` responses.

use bytes::Bytes;

use super::convert::decode_b64_object;
use super::float::write_f32;
use super::request::{format_error, invalid, parse_request, requested_signature, ROOT};
use super::tape::{Tag, Tape};
use super::text::write_json_string;
use crate::core::example::{Example, ExampleInput, ExampleResults, Feature};
use crate::core::ServingResult;

/// A parsed Classify or Regress request.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleRequest {
    /// Empty when the request names none.
    pub signature_name: String,
    pub input: ExampleInput,
}

/// The list a JSON element goes to, as TF's `AddValueToFeature` picks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Float,
    Int64,
    Bytes,
}

impl Kind {
    /// TF's name of the kind in `Unexpected element type` errors.
    fn name(self) -> &'static str {
        match self {
            Kind::Float => "float",
            Kind::Int64 => "int64",
            Kind::Bytes => "bytes",
        }
    }
}

/// Returns the kind of the element at `idx`: rapidjson doubles (a fraction, an exponent,
/// NaN/Infinity, or an integer too big for 64 bits) are floats, integer tokens and bools are
/// int64, strings and `{"b64": ...}` objects are bytes.
fn element_kind(tape: &Tape<'_>, idx: usize, feature: &str) -> ServingResult<Kind> {
    match tape.tag(idx) {
        Tag::Double => Ok(Kind::Float),
        Tag::Int | Tag::Uint | Tag::True | Tag::False => Ok(Kind::Int64),
        Tag::Str => Ok(Kind::Bytes),
        Tag::Object if tape.is_b64_object(idx) => Ok(Kind::Bytes),
        Tag::Null | Tag::Array | Tag::Object => {
            Err(invalid(format!("Feature: {feature} has element with unexpected JSON type: {}", tape.type_name(idx))))
        }
    }
}

/// Builds one feature from a scalar or a flat list; the first element fixes the kind, and
/// an empty list leaves the kind unset.
fn feature(tape: &Tape<'_>, idx: usize, key: &str) -> ServingResult<Feature> {
    let items: Vec<usize> = if tape.tag(idx) == Tag::Array { tape.elements(idx).collect() } else { vec![idx] };
    let mut kind = None;
    let (mut floats, mut int64s, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
    for item in items {
        let element = element_kind(tape, item, key)?;
        // NOTE: as in TF, the kind is checked before the value, so a mixed list reports the
        // mismatch even where the value itself (uint64, bad base64) is also wrong.
        match kind {
            None => kind = Some(element),
            Some(first) if first != element => {
                return Err(invalid(format!(
                    "Unexpected element type in feature: {key} expecting type: {}",
                    first.name()
                )));
            }
            Some(_) => {}
        }
        let node = tape.node(item);
        match (element, node.tag) {
            (Kind::Float, _) => floats.push(tape.as_f64(item) as f32),
            (Kind::Int64, Tag::Uint) => {
                return Err(invalid(format!("Feature: {key} has uint64_t element. Only int64_t is supported.")));
            }
            (Kind::Int64, Tag::Int) => int64s.push(node.val as i64),
            (Kind::Int64, tag) => int64s.push(i64::from(tag == Tag::True)),
            (Kind::Bytes, Tag::Str) => bytes.push(Bytes::copy_from_slice(tape.str_bytes(item))),
            (Kind::Bytes, _) => bytes.push(decode_b64_object(tape, item)?),
        }
    }
    Ok(match kind {
        None => Feature::Empty,
        Some(Kind::Float) => Feature::Floats(floats),
        Some(Kind::Int64) => Feature::Int64s(int64s),
        Some(Kind::Bytes) => Feature::Bytes(bytes),
    })
}

/// TF's `MakeExampleFromJsonObject`: one feature per member; a repeated key keeps the last.
fn example(tape: &Tape<'_>, idx: usize) -> ServingResult<Example> {
    if tape.tag(idx) != Tag::Object {
        return Err(invalid(format!("Example must be JSON object but got JSON {}", tape.type_name(idx))));
    }
    tape.members(idx)
        .map(|(key, value)| {
            let key = String::from_utf8_lossy(tape.str_bytes(key)).into_owned();
            let feature = feature(tape, value, &key)?;
            Ok((key, feature))
        })
        .collect()
}

/// Parses a Classify or Regress request body. TF's error text says "classify" for both.
///
/// Malformed JSON and a bad `signature_name` get the same errors as predict; NaN and Infinity
/// tokens are float features, as rapidjson's `kParseNanAndInfFlag` makes them.
pub fn parse_example_request(body: &[u8]) -> ServingResult<ExampleRequest> {
    let tape = parse_request(body)?;
    let signature_name = requested_signature(&tape)?;
    let context = tape.find_member(ROOT, b"context").map(|idx| example(&tape, idx)).transpose()?;
    let examples = match tape.find_member(ROOT, b"examples") {
        None => {
            return Err(format_error(
                &tape,
                ROOT,
                "When method is classify, key 'examples' is expected and was not found",
            ))
        }
        Some(list) if tape.tag(list) != Tag::Array => {
            return Err(format_error(&tape, ROOT, "Expecting 'examples' value to be an list/array"))
        }
        Some(list) if tape.node(list).len == 0 => {
            return Err(format_error(&tape, ROOT, "'examples' value is an empty array"))
        }
        Some(list) => tape.elements(list).map(|idx| example(&tape, idx)).collect::<ServingResult<Vec<_>>>()?,
    };
    Ok(ExampleRequest { signature_name, input: ExampleInput { examples, context } })
}

/// Writes Classify results as `{"results": [[["label", score], ...], ...]}` (labels as rapidjson
/// writes strings: bytes unchanged, control characters escaped) and Regress results as
/// `{"results": [v1, v2, ...]}`; scores and values as TF's `WriteDecimal` prints them.
pub fn write_example_response(results: &ExampleResults) -> ServingResult<Vec<u8>> {
    let (len, what) = match results {
        ExampleResults::Classes(classes) => (classes.len(), "ClassificationResults"),
        ExampleResults::Values(values) => (values.len(), "RegressionResults"),
    };
    if len == 0 {
        return Err(invalid(format!("Cannot convert empty {what} to JSON")));
    }
    let mut out = b"{\"results\":".to_vec();
    match results {
        ExampleResults::Classes(classes) => write_list(&mut out, classes, |out, classes| {
            write_list(out, classes, |out, (label, score)| {
                out.push(b'[');
                write_json_string(out, label);
                out.push(b',');
                write_f32(*score, out);
                out.push(b']');
            })
        }),
        ExampleResults::Values(values) => write_list(&mut out, values, |out, value| write_f32(*value, out)),
    }
    out.push(b'}');
    Ok(out)
}

/// Writes `[item, item, ...]`.
fn write_list<T>(out: &mut Vec<u8>, items: &[T], mut write: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::json::parse_predict_request;
    use crate::core::signature::SignatureMap;

    #[test]
    fn json_tokens_choose_the_feature_kind() {
        let body = br#"{"signature_name": "classify_x_to_y", "context": {"query": "pizza", "loc": ["sfo"]},
            "examples": [{"x": 2.0, "n": 2, "flag": true, "names": ["a", {"b64": "aGVsbG8="}], "big": 1e3}]}"#;
        let request = parse_example_request(body).expect("parse");
        assert_eq!(request.signature_name, "classify_x_to_y");
        let example = &request.input.examples[0];
        assert_eq!(example["x"], Feature::Floats(vec![2.0]));
        assert_eq!(example["n"], Feature::Int64s(vec![2]), "an integer token is int64, as TF Serving does");
        assert_eq!(example["flag"], Feature::Int64s(vec![1]));
        assert_eq!(example["names"], Feature::Bytes(vec![Bytes::from("a"), Bytes::from("hello")]));
        assert_eq!(example["big"], Feature::Floats(vec![1000.0]));
        let context = request.input.context.expect("context");
        assert_eq!(context["loc"], Feature::Bytes(vec![Bytes::from("sfo")]));
    }

    #[test]
    fn malformed_requests_get_tf_serving_errors() {
        let error = |body: &str| parse_example_request(body.as_bytes()).expect_err(body).message;
        assert!(error(r#"{"x": 1}"#).ends_with("When method is classify, key 'examples' is expected and was not found"));
        assert!(error(r#"{"examples": {}}"#).ends_with("Expecting 'examples' value to be an list/array"));
        assert!(error(r#"{"examples": []}"#).ends_with("'examples' value is an empty array"));
        assert_eq!(error(r#"{"examples": [1]}"#), "Example must be JSON object but got JSON Number");
        assert_eq!(
            error(r#"{"examples": [{"x": [1, 2.5]}]}"#),
            "Unexpected element type in feature: x expecting type: int64"
        );
        assert_eq!(error(r#"{"examples": [{"x": null}]}"#), "Feature: x has element with unexpected JSON type: Null");
        assert_eq!(error(r#"{"examples": [{"x": [[1]]}]}"#), "Feature: x has element with unexpected JSON type: Array");
        assert_eq!(
            error(r#"{"examples": [{"x": 18446744073709551615}]}"#),
            "Feature: x has uint64_t element. Only int64_t is supported."
        );
    }

    #[test]
    fn results_are_written_as_tf_serving_writes_them() {
        let classes = vec![vec![(Bytes::from("a"), 3.0f32), (Bytes::new(), 0.25)]];
        assert_eq!(
            write_example_response(&ExampleResults::Classes(classes)).expect("ok"),
            br#"{"results":[[["a",3.0],["",0.25]]]}"#.to_vec()
        );
        assert_eq!(
            write_example_response(&ExampleResults::Values(vec![3.0, 3.5])).expect("ok"),
            br#"{"results":[3.0,3.5]}"#.to_vec()
        );
        assert!(write_example_response(&ExampleResults::Values(vec![]))
            .expect_err("empty")
            .message
            .contains("empty RegressionResults"));
    }

    #[test]
    fn malformed_json_gets_the_same_errors_as_predict() {
        let error = |body: &[u8]| parse_example_request(body).expect_err("malformed").message;
        assert_eq!(error(b"x"), "JSON Parse error: Invalid value. at offset: 0");
        assert_eq!(error(b""), "JSON Parse error: The document is empty");
        assert_eq!(error(b"[1]"), "JSON Value: [1] Is not object");
        let bodies: [&[u8]; 6] = [b"x", b"", b"  ", b"{\"examples\": [", b"[1]", b"{\"a\" 1}"];
        for body in bodies {
            let predict = parse_predict_request(body, &SignatureMap::default()).expect_err("malformed").message;
            assert_eq!(error(body), predict, "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(
            error(br#"{"signature_name": 1, "examples": [{}]}"#),
            "JSON Value: {\n    \"signature_name\": 1,\n    \"examples\": [{}]\n} not formatted correctly. \
             'signature_name' key must be a string value."
        );
        assert_eq!(
            error(br#"{"examples": {"x": 1}}"#),
            "JSON Value: {\n    \"examples\": {\n        \"x\": 1\n    }\n} Expecting 'examples' value to be an list/array"
        );
    }

    #[test]
    fn nan_and_infinity_are_float_features() {
        let body = br#"{"examples": [{"x": NaN, "y": [Infinity, -Infinity, 1.5], "z": [Inf, -Inf]}]}"#;
        let request = parse_example_request(body).expect("parse");
        let example = &request.input.examples[0];
        let Feature::Floats(x) = &example["x"] else { panic!("x: {:?}", example["x"]) };
        assert!(x.len() == 1 && x[0].is_nan());
        assert_eq!(example["y"], Feature::Floats(vec![f32::INFINITY, f32::NEG_INFINITY, 1.5]));
        assert_eq!(example["z"], Feature::Floats(vec![f32::INFINITY, f32::NEG_INFINITY]));
        let error = parse_example_request(br#"{"examples": [{"x": [1, NaN]}]}"#).expect_err("mixed").message;
        assert_eq!(error, "Unexpected element type in feature: x expecting type: int64");
    }

    #[test]
    fn features_follow_tf_rules() {
        let request =
            parse_example_request(b"{\"examples\": [{\"raw\": \"\xff\", \"empty\": [], \"x\": 1, \"x\": 2.5}]}")
                .expect("parse");
        let example = &request.input.examples[0];
        assert_eq!(example["raw"], Feature::Bytes(vec![Bytes::from_static(b"\xff")]), "bytes are not UTF-8 checked");
        assert_eq!(example["empty"], Feature::Empty);
        assert_eq!(example["x"], Feature::Floats(vec![2.5]), "a repeated key keeps the last");
        let big = parse_example_request(br#"{"examples": [{"x": [1e400]}]}"#).expect_err("too big").message;
        assert_eq!(big, "JSON Parse error: Number too big to be stored in double. at offset: 21");
        let request = parse_example_request(br#"{"examples": [{"x": 123456789012345678901234}]}"#).expect("parse");
        assert_eq!(
            request.input.examples[0]["x"],
            Feature::Floats(vec![123456789012345678901234.0f64 as f32]),
            "beyond u64 is a double"
        );
    }

    #[test]
    fn feature_errors_match_tf() {
        let error = |body: &str| parse_example_request(body.as_bytes()).expect_err(body).message;
        assert_eq!(error(r#"{"examples": [true]}"#), "Example must be JSON object but got JSON True");
        assert_eq!(error(r#"{"context": [1], "examples": [{}]}"#), "Example must be JSON object but got JSON Array");
        assert_eq!(
            error(r#"{"examples": [{"x": {"y": 1}}]}"#),
            "Feature: x has element with unexpected JSON type: Object"
        );
        // The kind is checked before the value, as in TF.
        assert_eq!(
            error(r#"{"examples": [{"x": [1.5, 18446744073709551615]}]}"#),
            "Unexpected element type in feature: x expecting type: float"
        );
        assert_eq!(
            error(r#"{"examples": [{"x": [true, {"b64": "!"}]}]}"#),
            "Unexpected element type in feature: x expecting type: int64"
        );
        assert_eq!(
            error(r#"{"examples": [{"x": ["a", 1]}]}"#),
            "Unexpected element type in feature: x expecting type: bytes"
        );
    }

    #[test]
    fn b64_features_decode_as_predict_does() {
        let body = br#"{"examples": [{"x": [{"b64": "aGVsbG8"}, {"b64": "aGVs bG8."}, {"b64": ""}]}]}"#;
        let request = parse_example_request(body).expect("parse");
        let expected = vec![Bytes::from("hello"), Bytes::from("hello"), Bytes::new()];
        assert_eq!(request.input.examples[0]["x"], Feature::Bytes(expected));
        let error = |body: &str| parse_example_request(body.as_bytes()).expect_err(body).message;
        for bad in ["a", "aGVsbG8==", "aGVs!G8=", "aGVsbG8=x", "aGVsbG8-"] {
            assert_eq!(error(&format!(r#"{{"examples": [{{"x": {{"b64": "{bad}"}}}}]}}"#)), "Unable to base64 decode");
        }
        assert_eq!(
            error(r#"{"examples": [{"x": {"b64": 5}}]}"#),
            "Feature: x has element with unexpected JSON type: Object",
            "not a b64 object"
        );
    }

    #[test]
    fn labels_are_written_as_rapidjson_writes_strings() {
        let classes = vec![vec![(Bytes::from_static(b"a\"\x01\xff"), 0.5f32)]];
        assert_eq!(
            write_example_response(&ExampleResults::Classes(classes)).expect("ok"),
            b"{\"results\":[[[\"a\\\"\\u0001\xff\",0.5]]]}".to_vec()
        );
    }
}

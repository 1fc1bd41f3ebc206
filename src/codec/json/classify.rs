//! TF Serving's Classify/Regress JSON: `{"signature_name", "context", "examples": [...]}`
//! requests (feature kinds from the JSON tokens) and `{"results": ...}` responses.

use bytes::Bytes;
use serde_json::Value;

use super::float::write_f32;
use crate::core::example::{Example, ExampleInput, Feature};
use crate::core::{ServingError, ServingResult};

/// A parsed Classify or Regress request.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleRequest {
    /// Empty when the request names none.
    pub signature_name: String,
    pub input: ExampleInput,
}

fn invalid(message: impl Into<String>) -> ServingError {
    ServingError::invalid_argument(message)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "Null",
        Value::Bool(_) => "Bool",
        Value::Number(_) => "Number",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Object",
    }
}

/// One JSON element's feature kind and value.
enum Element {
    Float(f32),
    Int(i64),
    Bytes(Bytes),
}

fn element(feature: &str, value: &Value) -> ServingResult<Element> {
    match value {
        Value::Number(number) if number.is_f64() => Ok(Element::Float(number.as_f64().unwrap_or(0.0) as f32)),
        Value::Number(number) => match number.as_i64() {
            Some(v) => Ok(Element::Int(v)),
            None => Err(invalid(format!("Feature: {feature} has uint64_t element. Only int64_t is supported."))),
        },
        Value::Bool(flag) => Ok(Element::Int(i64::from(*flag))),
        Value::String(text) => Ok(Element::Bytes(Bytes::copy_from_slice(text.as_bytes()))),
        Value::Object(map) if map.len() == 1 && map.get("b64").is_some_and(Value::is_string) => {
            use base64::Engine;
            let text = map.get("b64").and_then(Value::as_str).unwrap_or_default();
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(|b| Element::Bytes(Bytes::from(b)))
                .map_err(|_| invalid(format!("Unable to base64 decode feature: {feature}")))
        }
        other => {
            Err(invalid(format!("Feature: {feature} has element with unexpected JSON type: {}", json_type(other))))
        }
    }
}

fn feature(key: &str, value: &Value) -> ServingResult<Feature> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        scalar => vec![scalar],
    };
    let mut feature = Feature::Empty;
    for item in items {
        let expecting =
            |kind: &str| invalid(format!("Unexpected element type in feature: {key} expecting type: {kind}"));
        match (&mut feature, element(key, item)?) {
            (Feature::Empty, Element::Float(v)) => feature = Feature::Floats(vec![v]),
            (Feature::Empty, Element::Int(v)) => feature = Feature::Int64s(vec![v]),
            (Feature::Empty, Element::Bytes(v)) => feature = Feature::Bytes(vec![v]),
            (Feature::Floats(list), Element::Float(v)) => list.push(v),
            (Feature::Int64s(list), Element::Int(v)) => list.push(v),
            (Feature::Bytes(list), Element::Bytes(v)) => list.push(v),
            (Feature::Floats(_), _) => return Err(expecting("float")),
            (Feature::Int64s(_), _) => return Err(expecting("int64")),
            (Feature::Bytes(_), _) => return Err(expecting("bytes")),
        }
    }
    Ok(feature)
}

fn example(value: &Value) -> ServingResult<Example> {
    let Value::Object(map) = value else {
        return Err(invalid(format!("Example must be JSON object but got JSON {}", json_type(value))));
    };
    map.iter().map(|(key, value)| Ok((key.clone(), feature(key, value)?))).collect()
}

/// Parses a Classify or Regress request body. TF's error text says "classify" for both.
pub fn parse_example_request(body: &[u8]) -> ServingResult<ExampleRequest> {
    let value: Value = serde_json::from_slice(body).map_err(|e| invalid(format!("JSON Parse error: {e}")))?;
    let Value::Object(request) = &value else {
        return Err(invalid(format!("JSON Value: {value} Is not object")));
    };
    let signature_name = match request.get("signature_name") {
        None => String::new(),
        Some(Value::String(name)) => name.clone(),
        Some(other) => return Err(invalid(format!("JSON Value: {other} Expecting 'signature_name' to be a string"))),
    };
    let context = match request.get("context") {
        None => None,
        Some(context @ Value::Object(_)) => Some(example(context)?),
        Some(other) => return Err(invalid(format!("JSON Value: {other} Expecting 'context' value to be an object"))),
    };
    let examples = match request.get("examples") {
        None => {
            return Err(invalid(format!(
                "JSON Value: {value} When method is classify, key 'examples' is expected and was not found"
            )))
        }
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(invalid(format!("JSON Value: {value} 'examples' value is an empty array")))
        }
        Some(Value::Array(items)) => items.iter().map(example).collect::<ServingResult<Vec<_>>>()?,
        Some(_) => return Err(invalid(format!("JSON Value: {value} Expecting 'examples' value to be an list/array"))),
    };
    Ok(ExampleRequest { signature_name, input: ExampleInput { examples, context } })
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(Value::String(text.to_string()).to_string().as_bytes());
}

/// `{"results": [[["label", score], ...], ...]}`, scores as TF's `WriteDecimal` prints them.
pub fn write_classify_response(results: &[Vec<(Bytes, f32)>]) -> ServingResult<Vec<u8>> {
    if results.is_empty() {
        return Err(invalid("Cannot convert empty ClassificationResults to JSON"));
    }
    let mut out = b"{\"results\":[".to_vec();
    for (row, classes) in results.iter().enumerate() {
        if row > 0 {
            out.push(b',');
        }
        out.push(b'[');
        for (index, (label, score)) in classes.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.push(b'[');
            write_string(&String::from_utf8_lossy(label), &mut out);
            out.push(b',');
            write_f32(*score, &mut out);
            out.push(b']');
        }
        out.push(b']');
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// `{"results": [v1, v2, ...]}`.
pub fn write_regress_response(values: &[f32]) -> ServingResult<Vec<u8>> {
    if values.is_empty() {
        return Err(invalid("Cannot convert empty RegressionResults to JSON"));
    }
    let mut out = b"{\"results\":[".to_vec();
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_f32(*value, &mut out);
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(write_classify_response(&classes).expect("ok"), br#"{"results":[[["a",3.0],["",0.25]]]}"#.to_vec());
        assert_eq!(write_regress_response(&[3.0, 3.5]).expect("ok"), br#"{"results":[3.0,3.5]}"#.to_vec());
        assert!(write_regress_response(&[]).expect_err("empty").message.contains("empty RegressionResults"));
    }
}

//! Predict request decoding: row and columnar layouts, dtypes, and TF's exact error messages.

use bytes::Bytes;

use crate::codec::json::{parse_predict_request, JsonFormat, PredictJsonRequest};
use crate::core::error::{Code, ServingError};
use crate::core::signature::{SignatureDef, SignatureMap, TensorInfo, PREDICT_METHOD_NAME};
use crate::core::tensor::{DType, Element, Tensor};

pub(crate) fn signature(inputs: &[(&str, DType)]) -> SignatureDef {
    SignatureDef {
        method_name: PREDICT_METHOD_NAME.to_owned(),
        inputs: inputs
            .iter()
            .map(|&(alias, dtype)| {
                let info = TensorInfo { name: format!("{alias}:0"), dtype, shape: Some(vec![-1]), map_keys: None };
                (alias.to_owned(), info)
            })
            .collect(),
        outputs: Default::default(),
        example_spec: None,
        lenient_shapes: false,
    }
}

pub(crate) fn sigs(inputs: &[(&str, DType)]) -> SignatureMap {
    [("serving_default".to_owned(), signature(inputs))].into_iter().collect()
}

pub(crate) fn float_sig() -> SignatureMap {
    sigs(&[("x", DType::Float)])
}

pub(crate) fn parse_ok(body: &[u8], signatures: &SignatureMap) -> PredictJsonRequest {
    match parse_predict_request(body, signatures) {
        Ok(request) => request,
        Err(e) => panic!("{}: {}", String::from_utf8_lossy(body), e.message),
    }
}

pub(crate) fn parse_err(body: &[u8], signatures: &SignatureMap) -> ServingError {
    match parse_predict_request(body, signatures) {
        Ok(request) => panic!("{} decoded: {request:?}", String::from_utf8_lossy(body)),
        Err(e) => e,
    }
}

/// Returns the INVALID_ARGUMENT message for `body` with a signature of `inputs`.
fn invalid(body: &str, inputs: &[(&str, DType)]) -> String {
    let e = parse_err(body.as_bytes(), &sigs(inputs));
    assert_eq!(e.code, Code::InvalidArgument, "{}", e.message);
    e.message
}

fn tensor<'r>(request: &'r PredictJsonRequest, alias: &str) -> &'r Tensor {
    request.inputs.get(alias).unwrap_or_else(|| panic!("no input {alias}"))
}

fn typed<T: Element>(request: &PredictJsonRequest, alias: &str) -> (Vec<usize>, Vec<T>) {
    let t = tensor(request, alias);
    let values = t.values::<T>().unwrap_or_else(|| panic!("{alias} is {:?}", t.dtype));
    (t.shape.clone(), values.into_owned())
}

fn strings(request: &PredictJsonRequest, alias: &str) -> (Vec<usize>, Vec<Bytes>) {
    let t = tensor(request, alias);
    (t.shape.clone(), t.strings().expect("string tensor").to_vec())
}

#[test]
fn row_scalars_give_batch_shape() {
    let request = parse_ok(br#"{"instances": [1.0, 2.0]}"#, &float_sig());
    assert_eq!(request.format, JsonFormat::Row);
    assert_eq!(request.signature_name, "serving_default");
    assert_eq!(typed::<f32>(&request, "x"), (vec![2], vec![1.0, 2.0]));
}

#[test]
fn row_lists_stack_on_a_batch_dimension() {
    let request = parse_ok(br#"{"instances": [[1,2],[3,4],[5,6]]}"#, &sigs(&[("x", DType::Int32)]));
    assert_eq!(typed::<i32>(&request, "x"), (vec![3, 2], vec![1, 2, 3, 4, 5, 6]));
}

#[test]
fn float_accepts_any_number_and_narrows() {
    let request = parse_ok(
        br#"{"instances": [1, 2.0, 5.003, 0.007, -0, 1e39, -1e39, 1e-50, NaN, Infinity, -Inf,
            18446744073709551615, 0.1]}"#,
        &float_sig(),
    );
    let (shape, values) = typed::<f32>(&request, "x");
    assert_eq!(shape, vec![13]);
    assert_eq!(&values[..4], &[1.0, 2.0, 5.003, 0.007]);
    assert_eq!(values[4].to_bits(), 0);
    assert_eq!(&values[5..8], &[f32::INFINITY, f32::NEG_INFINITY, 0.0]);
    assert!(values[8].is_nan());
    assert_eq!(&values[9..], &[f32::INFINITY, f32::NEG_INFINITY, 1.8446744e19, 0.1]);
}

#[test]
fn double_keeps_full_precision() {
    let request = parse_ok(
        br#"{"instances": [1.0, 2, 0.662, 0.1, 9007199254740993, 1.7976931348623157e308, NaN]}"#,
        &sigs(&[("x", DType::Double)]),
    );
    let (_, values) = typed::<f64>(&request, "x");
    assert_eq!(&values[..6], &[1.0, 2.0, 0.662, 0.1, 9007199254740992.0, f64::MAX]);
    assert!(values[6].is_nan());
}

#[test]
fn integer_dtypes() {
    let body = br#"{"inputs": {"i8": [-128, 127, 300], "i16": [-32768, 70000], "u8": [0, 255, 256],
        "i32": [-2147483648, 2147483647], "i64": [-9223372036854775808, 9223372036854775807],
        "u32": [0, 4294967295], "u64": [0, 18446744073709551615]}}"#;
    let signatures = sigs(&[
        ("i8", DType::Int8),
        ("i16", DType::Int16),
        ("u8", DType::UInt8),
        ("i32", DType::Int32),
        ("i64", DType::Int64),
        ("u32", DType::UInt32),
        ("u64", DType::UInt64),
    ]);
    let request = parse_ok(body, &signatures);
    assert_eq!(request.format, JsonFormat::Columnar);
    // 8/16-bit values are narrowed without a range check, as TF does through int_val.
    assert_eq!(typed::<i8>(&request, "i8").1, vec![-128, 127, 44]);
    assert_eq!(typed::<i16>(&request, "i16").1, vec![-32768, 4464]);
    assert_eq!(typed::<u8>(&request, "u8").1, vec![0, 255, 0]);
    assert_eq!(typed::<i32>(&request, "i32").1, vec![i32::MIN, i32::MAX]);
    assert_eq!(typed::<i64>(&request, "i64").1, vec![i64::MIN, i64::MAX]);
    assert_eq!(typed::<u32>(&request, "u32").1, vec![0, u32::MAX]);
    assert_eq!(typed::<u64>(&request, "u64").1, vec![0, u64::MAX]);
}

#[test]
fn integer_dtypes_reject_float_tokens_and_out_of_range() {
    // (token, its debug text, dtype, dtype name)
    let cases = [
        ("1.0", "1.0", DType::Int32, "int32"),
        ("1.5", "1.5", DType::Int8, "int8"),
        ("2147483648", "2147483648", DType::Int32, "int32"),
        ("-2147483649", "-2147483649", DType::UInt8, "uint8"),
        ("9223372036854775808", "9223372036854775808", DType::Int64, "int64"),
        ("1e2", "100.0", DType::Int64, "int64"),
        ("-1", "-1", DType::UInt32, "uint32"),
        ("4294967296", "4294967296", DType::UInt32, "uint32"),
        ("-1", "-1", DType::UInt64, "uint64"),
        ("18446744073709551616", "1.84467441e+19", DType::UInt64, "uint64"),
        ("1e300", "1e+300", DType::Int32, "int32"),
        ("NaN", "NaN", DType::Int32, "int32"),
        ("-Infinity", "-Infinity", DType::Int32, "int32"),
        ("1", "1", DType::Bool, "bool"),
        ("1", "1", DType::String, "string"),
    ];
    for (token, shown, dtype, name) in cases {
        let body = format!(r#"{{"instances": [{token}]}}"#);
        assert_eq!(
            invalid(&body, &[("x", dtype)]),
            format!(
                "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: \
                 JSON Value: {shown} Type: Number is not of expected type: {name}"
            )
        );
    }
}

#[test]
fn type_errors_name_the_json_type() {
    let cases = [
        ("null", "Null", DType::Float, "float"),
        ("true", "True", DType::Double, "double"),
        ("false", "False", DType::Int64, "int64"),
        ("\"1\"", "String", DType::Int32, "int32"),
        ("null", "Null", DType::String, "string"),
        ("\"true\"", "String", DType::Bool, "bool"),
    ];
    for (value, type_name, dtype, dtype_name) in cases {
        let body = format!(r#"{{"inputs": [{value}]}}"#);
        assert_eq!(
            invalid(&body, &[("x", dtype)]),
            format!("JSON Value: {value} Type: {type_name} is not of expected type: {dtype_name}")
        );
    }
    assert_eq!(
        invalid(r#"{"inputs": [{"a": 1}]}"#, &[("x", DType::Float)]),
        "JSON Value: {\n    \"a\": 1\n} Type: Object is not of expected type: float"
    );
    assert_eq!(
        invalid(r#"{"inputs": {"b64": "aGVsbG8="}}"#, &[("x", DType::Int32)]),
        "JSON Value: {\n    \"b64\": \"aGVsbG8=\"\n} Type: Object is not of expected type: int32"
    );
}

#[test]
fn bool_and_string_values() {
    let signatures = sigs(&[("b", DType::Bool), ("s", DType::String)]);
    let request =
        parse_ok(br#"{"instances": [{"b": true, "s": "caf\u00e9"}, {"b": false, "s": "x\"y"}]}"#, &signatures);
    let b = tensor(&request, "b");
    assert_eq!((b.shape.clone(), b.bool_values()), (vec![2], Some(vec![true, false])));
    let expected = vec![Bytes::from("café"), Bytes::from("x\"y")];
    assert_eq!(strings(&request, "s"), (vec![2], expected));
}

#[test]
fn b64_values_decode_to_bytes() {
    let signatures = sigs(&[("x", DType::String)]);
    let request = parse_ok(br#"{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}"#, &signatures);
    assert_eq!(strings(&request, "x"), (vec![2], vec![Bytes::from("hello"), Bytes::from("world")]));
    let request = parse_ok(br#"{"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}"#, &signatures);
    assert_eq!(strings(&request, "x").0, vec![2, 1]);
    // Columnar: a b64 object is the value of the single input, a scalar.
    let request = parse_ok(br#"{"inputs": {"b64": "/+8="}}"#, &signatures);
    assert_eq!(strings(&request, "x"), (vec![], vec![Bytes::from_static(b"\xff\xef")]));
    // absl's leniency: missing padding, whitespace, '.' padding.
    let request = parse_ok(br#"{"inputs": [{"b64": "aGVsbG8"}, {"b64": "aGVs bG8."}]}"#, &signatures);
    assert_eq!(strings(&request, "x").1, vec![Bytes::from("hello"), Bytes::from("hello")]);
}

#[test]
fn b64_errors() {
    let string_input = [("x", DType::String)];
    for bad in ["a", "aGVsbG8==", "aGVs!G8=", "aGVsbG8=x"] {
        let body = format!(r#"{{"inputs": {{"b64": "{bad}"}}}}"#);
        assert_eq!(invalid(&body, &string_input), "Unable to base64 decode", "{bad}");
    }
    assert_eq!(
        invalid(r#"{"inputs": {"x": {"b64": 5}}}"#, &string_input),
        "JSON Value: {\n    \"b64\": 5\n} not formatted correctly for base64 data"
    );
    assert_eq!(
        invalid(r#"{"instances": [{"x": {"b64": "aGk=", "y": 1}}]}"#, &string_input),
        "Failed to process element: 0 key: x of 'instances' list. Error: INVALID_ARGUMENT: JSON \
         Value: {\n    \"b64\": \"aGk=\",\n    \"y\": 1\n} not formatted correctly for base64 data"
    );
    assert_eq!(
        invalid(r#"{"instances": [{"b64": "a"}]}"#, &string_input),
        "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: Unable to \
         base64 decode"
    );
}

#[test]
fn unsupported_dtypes_are_unimplemented() {
    for (dtype, name) in [(DType::Half, "half"), (DType::BFloat16, "bfloat16"), (DType::UInt16, "uint16")] {
        let e = parse_err(br#"{"inputs": [1.5]}"#, &sigs(&[("x", dtype)]));
        assert_eq!(e.code, Code::Unimplemented);
        assert_eq!(e.message, format!("Conversion of JSON Value: 1.5 to type: {name}"));
        // Row errors are wrapped, which makes them INVALID_ARGUMENT.
        assert_eq!(
            invalid(r#"{"instances": [2]}"#, &[("x", dtype)]),
            format!(
                "Failed to process element: 0 of 'instances' list. Error: UNIMPLEMENTED: \
                 Conversion of JSON Value: 2 to type: {name}"
            )
        );
    }
    let e = parse_err(br#"{"inputs": [1, 2]}"#, &sigs(&[("x", DType::Complex64)]));
    assert_eq!(e.message, "Conversion of JSON Value: 1 to type: complex64");
}

#[test]
fn top_level_errors() {
    let x = [("x", DType::Float)];
    assert_eq!(invalid("[1, 2]", &x), "JSON Value: [1, 2] Is not object");
    assert_eq!(invalid("1.5", &x), "JSON Value: 1.5 Is not object");
    assert_eq!(invalid("\"s\"", &x), "JSON Value: \"s\" Is not object");
    assert_eq!(
        invalid(r#"{"signature_name": 5, "instances": [1]}"#, &x),
        "JSON Value: {\n    \"signature_name\": 5,\n    \"instances\": [1]\n} not formatted \
         correctly. 'signature_name' key must be a string value."
    );
    assert_eq!(
        invalid(r#"{"instances": [1], "inputs": [1]}"#, &x),
        "JSON Value: {\n    \"instances\": [1],\n    \"inputs\": [1]\n} Not formatted correctly \
         expecting only one of 'inputs' or 'instances' keys to exist "
    );
    assert_eq!(invalid(r#"{"other": 1}"#, &x), "Missing 'inputs' or 'instances' key");
    assert_eq!(
        invalid(r#"{"instances": 5}"#, &x),
        "JSON Value: {\n    \"instances\": 5\n} Expecting 'instances' to be an list/array"
    );
    assert_eq!(
        invalid(r#"{"instances": []}"#, &x),
        "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"
    );
}

#[test]
fn signature_resolution() {
    let mut signatures = sigs(&[("x", DType::Float)]);
    signatures.insert("ints".to_owned(), signature(&[("y", DType::Int64)]));
    signatures.insert("empty".to_owned(), signature(&[]));
    let request = parse_ok(br#"{"signature_name": "ints", "instances": [3]}"#, &signatures);
    assert_eq!(request.signature_name, "ints");
    assert_eq!(typed::<i64>(&request, "y"), (vec![1], vec![3]));
    let request = parse_ok(br#"{"signature_name": "", "inputs": 1}"#, &signatures);
    assert_eq!(request.signature_name, "serving_default");
    let e = parse_err(br#"{"signature_name": "nope", "instances": [1]}"#, &signatures);
    assert_eq!(
        (e.code, e.message.as_str()),
        (Code::InvalidArgument, "Serving signature name: \"nope\" not found in signature def")
    );
    let e = parse_err(br#"{"signature_name": "empty", "instances": [1]}"#, &signatures);
    assert_eq!(e.message, "Failed to get input map for signature: empty");
    let e = parse_err(br#"{"instances": [1]}"#, &sigs(&[]));
    assert_eq!(e.message, "Failed to get input map for signature: DEFAULT");
    let e = parse_err(br#"{"instances": [1]}"#, &SignatureMap::new());
    assert_eq!(e.message, "Serving signature name: \"serving_default\" not found in signature def");
}

#[test]
fn row_layout_errors() {
    let ab = [("a", DType::Float), ("b", DType::Float)];
    assert_eq!(
        invalid(r#"{"instances": [1, 2]}"#, &ab),
        "instances is a plain list, but expecting list of objects as multiple input tensors \
         required as per tensorinfo_map"
    );
    assert_eq!(
        invalid(r#"{"instances": [{"a": 1, "b": 2}, 3]}"#, &ab),
        "Expecting object but got list at item 1 of input list"
    );
    assert_eq!(
        invalid(r#"{"instances": [1, {"a": 1}]}"#, &[("a", DType::Float)]),
        "Expecting value/list but got object at item 1 of input list"
    );
    assert_eq!(
        invalid(r#"{"instances": [{"a": 1, "c": 2}]}"#, &ab),
        "Failed to process element: 0 key: c of 'instances' list. Error: INVALID_ARGUMENT: JSON \
         object: does not have named input: c"
    );
    assert_eq!(
        invalid(r#"{"instances": [{"a": 1, "b": 2}, {"b": [3]}]}"#, &ab),
        "Failed to process element: 1 key: b of 'instances' list. Error: INVALID_ARGUMENT: \
         Expecting shape [] but got: [1]"
    );
    assert_eq!(
        invalid(r#"{"instances": [{"a": 1, "b": 2}, {"a": 3}]}"#, &ab),
        "Failed to process element: 1 of 'instances' list. JSON object: {\n    \"a\": 3\n} keys \
         must be equal to: a,b"
    );
    assert_eq!(
        invalid(r#"{"instances": [{"a": 1, "b": "x"}]}"#, &ab),
        "Failed to process element: 0 key: b of 'instances' list. Error: INVALID_ARGUMENT: JSON \
         Value: \"x\" Type: String is not of expected type: float"
    );
    assert_eq!(invalid(r#"{"instances": [{"a": 1, "a": 2, "b": 3}]}"#, &ab), "tensor parsing error: a");
}

#[test]
fn row_shape_consistency_errors() {
    let x = [("x", DType::Int32)];
    let wrap = |i: usize, inner: &str| {
        format!("Failed to process element: {i} of 'instances' list. Error: INVALID_ARGUMENT: {inner}")
    };
    assert_eq!(invalid(r#"{"instances": [[1,2],[3,4],[5,6,7]]}"#, &x), wrap(2, "Expecting tensor size: 2 but got: 3"));
    assert_eq!(invalid(r#"{"instances": [[1,2],[3,4],[[5,6]]]}"#, &x), wrap(2, "Expecting shape [2] but got: [1,2]"));
    assert_eq!(invalid(r#"{"instances": [1, [1]]}"#, &x), wrap(1, "Expecting shape [] but got: [1]"));
    assert_eq!(
        invalid(r#"{"instances": [[[1,2],[3]]]}"#, &x),
        wrap(0, "Encountered list at unexpected size: 1 at level: 1 expected size: 2")
    );
    assert_eq!(
        invalid(r#"{"instances": [[[1,2],[3,[4]]]]}"#, &x),
        wrap(0, "Encountered list at unexpected level: 2 expected < 2")
    );
    assert_eq!(
        invalid(r#"{"instances": [[[1,2],3]]}"#, &x),
        wrap(0, "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2")
    );
}

#[test]
fn multi_input_rows() {
    let signatures = sigs(&[("a", DType::Float), ("b", DType::String), ("c", DType::Int64)]);
    let request = parse_ok(
        br#"{"instances": [{"a": [1, 2], "b": "x", "c": [[1]]}, {"c": [[2]], "b": "y", "a": [3, 4]}]}"#,
        &signatures,
    );
    assert_eq!(typed::<f32>(&request, "a"), (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
    assert_eq!(strings(&request, "b"), (vec![2], vec![Bytes::from("x"), Bytes::from("y")]));
    assert_eq!(typed::<i64>(&request, "c"), (vec![2, 1, 1], vec![1, 2]));
}

#[test]
fn columnar_layouts() {
    let x = float_sig();
    let request = parse_ok(br#"{"inputs": [[1, 2], [3, 4]]}"#, &x);
    assert_eq!(request.format, JsonFormat::Columnar);
    assert_eq!(typed::<f32>(&request, "x"), (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
    let request = parse_ok(br#"{"inputs": 5.0}"#, &x);
    assert_eq!(typed::<f32>(&request, "x"), (vec![], vec![5.0]));
    let request = parse_ok(br#"{"inputs": []}"#, &x);
    assert_eq!(typed::<f32>(&request, "x"), (vec![0], vec![]));
    let request = parse_ok(br#"{"inputs": [[], []]}"#, &x);
    assert_eq!(typed::<f32>(&request, "x").0, vec![2, 0]);
    let request = parse_ok(br#"{"inputs": {"x": [1], "extra": "ignored"}}"#, &x);
    assert_eq!(typed::<f32>(&request, "x"), (vec![1], vec![1.0]));

    let ab = sigs(&[("a", DType::Int32), ("b", DType::Double)]);
    let request = parse_ok(br#"{"inputs": {"b": 2.5, "a": [[1], [2], [3]]}}"#, &ab);
    assert_eq!(typed::<i32>(&request, "a"), (vec![3, 1], vec![1, 2, 3]));
    assert_eq!(typed::<f64>(&request, "b"), (vec![], vec![2.5]));
    let ab = [("a", DType::Int32), ("b", DType::Double)];
    assert_eq!(invalid(r#"{"inputs": {"a": [1]}}"#, &ab), "Missing named input: b in 'inputs' object.");
    assert_eq!(
        invalid(r#"{"inputs": [1]}"#, &ab),
        "inputs is a plain value/list, but expecting an object as multiple input tensors \
         required as per tensorinfo_map"
    );
    assert_eq!(
        invalid(r#"{"inputs": {"a": [1, 2.5], "b": 1}}"#, &ab),
        "JSON Value: 2.5 Type: Number is not of expected type: int32"
    );
    assert_eq!(
        invalid(r#"{"inputs": {"a": [[1], 2], "b": 1}}"#, &ab),
        "JSON Value: 2 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"
    );
}

#[test]
fn signature_shapes_are_not_enforced() {
    // The signature says [-1]; rank 0 and rank 2 inputs still decode.
    let x = float_sig();
    assert_eq!(typed::<f32>(&parse_ok(br#"{"inputs": 1}"#, &x), "x").0, Vec::<usize>::new());
    assert_eq!(typed::<f32>(&parse_ok(br#"{"instances": [[1]]}"#, &x), "x").0, vec![1, 1]);
}

#[test]
fn deep_nesting_in_an_ignored_key() {
    let depth = 500_000;
    let mut body = b"{\"ignored\": ".to_vec();
    body.extend(std::iter::repeat_n(b'[', depth));
    body.extend(std::iter::repeat_n(b']', depth));
    body.extend_from_slice(b", \"instances\": [1.5]}");
    let request = parse_ok(&body, &float_sig());
    assert_eq!(typed::<f32>(&request, "x"), (vec![1], vec![1.5]));
    // Deep nesting in the value itself is read without recursion too, and refused past TF's
    // limit on dimensions instead of becoming a tensor of rank 500,000 (issue 16).
    let mut body = b"{\"inputs\": ".to_vec();
    body.extend(std::iter::repeat_n(b'[', depth));
    body.extend(std::iter::repeat_n(b']', depth));
    body.push(b'}');
    let error = parse_err(&body, &float_sig());
    assert_eq!(error.message, "Too many dimensions in tensor: 255 (at most 254)");
    // And a deep non-object document still gets its (truncated) debug text.
    let deep = vec![b'['; depth].into_iter().chain(vec![b']'; depth]).collect::<Vec<u8>>();
    let message = parse_err(&deep, &float_sig()).message;
    assert!(message.starts_with("JSON Value: [[[[") && message.ends_with(" Is not object"));
}

#[test]
fn trailing_bytes_are_ignored() {
    let request = parse_ok(b"{\"instances\": [1, 2]}\n\nnot json at all {{{", &float_sig());
    assert_eq!(typed::<f32>(&request, "x").1, vec![1.0, 2.0]);
}

#[test]
fn first_member_wins_for_repeated_top_level_keys() {
    let request = parse_ok(br#"{"inputs": [1], "inputs": [2, 3]}"#, &float_sig());
    assert_eq!(typed::<f32>(&request, "x").1, vec![1.0]);
}

#[test]
fn values_nested_past_tfs_dimension_limit_are_refused() {
    let signatures = float_sig();
    // 254 levels are a tensor of rank 254; 255 are refused, as are a million.
    for (depth, ok) in [(254usize, true), (255, false), (1_000_000, false)] {
        let body = format!("{{\"inputs\": {}1.0{}}}", "[".repeat(depth), "]".repeat(depth));
        if ok {
            assert_eq!(parse_ok(body.as_bytes(), &signatures).inputs["x"].shape.len(), depth);
        } else {
            let error = parse_err(body.as_bytes(), &signatures);
            assert!(error.message.starts_with("Too many dimensions in tensor"), "{}", error.message);
        }
    }
    // The row format counts the batch dimension too.
    let body = format!("{{\"instances\": [{}1.0{}]}}", "[".repeat(300), "]".repeat(300));
    let message = parse_err(body.as_bytes(), &signatures).message;
    assert!(message.contains("Too many dimensions in tensor"), "{message}");
}

//! Predict response encoding and error bodies.

use bytes::Bytes;

use crate::codec::json::tests::decode_tests::{parse_ok, sigs};
use crate::codec::json::{write_error_body, write_predict_response, JsonFormat};
use crate::core::error::Code;
use crate::core::signature::OutputKeys;
use crate::core::tensor::{DType, Tensor, TensorData};

fn encode(format: JsonFormat, outputs: Vec<(&str, Tensor)>) -> String {
    let outputs: Vec<(String, Tensor)> = outputs.into_iter().map(|(alias, t)| (alias.to_owned(), t)).collect();
    match write_predict_response(format, &outputs, &OutputKeys::new()) {
        Ok(body) => String::from_utf8(body).expect("utf-8 body"),
        Err(e) => panic!("{}", e.message),
    }
}

fn encode_err(format: JsonFormat, outputs: Vec<(&str, Tensor)>) -> (Code, String) {
    let outputs: Vec<(String, Tensor)> = outputs.into_iter().map(|(alias, t)| (alias.to_owned(), t)).collect();
    match write_predict_response(format, &outputs, &OutputKeys::new()) {
        Ok(body) => panic!("encoded: {}", String::from_utf8_lossy(&body)),
        Err(e) => (e.code, e.message),
    }
}

fn floats(shape: &[usize], values: &[f32]) -> Tensor {
    Tensor::from_vec(shape.to_vec(), values.to_vec())
}

fn strings(shape: &[usize], values: &[&[u8]]) -> Tensor {
    Tensor::from_strings(shape.to_vec(), values.iter().map(|s| Bytes::copy_from_slice(s)).collect())
}

#[test]
fn row_single_output_drops_the_name() {
    let out = encode(JsonFormat::Row, vec![("y", floats(&[3], &[3.0, 3.5, 4.0]))]);
    assert_eq!(out, r#"{"predictions":[3.0,3.5,4.0]}"#);
    let out = encode(JsonFormat::Row, vec![("y", Tensor::from_vec(vec![2, 2], vec![1i32, 2, 3, 4]))]);
    assert_eq!(out, r#"{"predictions":[[1,2],[3,4]]}"#);
    let out = encode(JsonFormat::Row, vec![("y", floats(&[1, 2, 2], &[1.0, 2.0, 3.0, 4.0]))]);
    assert_eq!(out, r#"{"predictions":[[[1.0,2.0],[3.0,4.0]]]}"#);
}

#[test]
fn row_multiple_outputs_are_objects_per_row() {
    let out = encode(
        JsonFormat::Row,
        vec![
            ("a", floats(&[2], &[0.5, 1.5])),
            ("b", Tensor::from_vec(vec![2, 2], vec![1i64, 2, 3, 4])),
            ("c_bytes", strings(&[2], &[b"hi", b"\xff"])),
        ],
    );
    assert_eq!(
        out,
        r#"{"predictions":[{"a":0.5,"b":[1,2],"c_bytes":{"b64":"aGk="}},{"a":1.5,"b":[3,4],"c_bytes":{"b64":"/w=="}}]}"#
    );
}

#[test]
fn row_errors() {
    let scalar = floats(&[], &[1.0]);
    assert_eq!(
        encode_err(JsonFormat::Row, vec![("y", scalar)]),
        (Code::InvalidArgument, "Tensor name: y has no shape information ".to_owned())
    );
    assert_eq!(
        encode_err(JsonFormat::Row, vec![("a", floats(&[2], &[1.0, 2.0])), ("b", floats(&[3], &[1.0; 3]))]),
        (Code::InvalidArgument, "Tensor name: b has inconsistent batch size: 3 expecting: 2".to_owned())
    );
    assert_eq!(
        encode_err(JsonFormat::Row, vec![]),
        (Code::InvalidArgument, "Cannot convert empty tensor map to JSON".to_owned())
    );
    assert_eq!(
        encode_err(JsonFormat::Columnar, vec![]),
        (Code::InvalidArgument, "Cannot convert empty tensor map to JSON".to_owned())
    );
}

#[test]
fn row_batch_of_zero_is_an_empty_list() {
    let out = encode(JsonFormat::Row, vec![("y", floats(&[0, 3], &[]))]);
    assert_eq!(out, r#"{"predictions":[]}"#);
}

#[test]
fn columnar_outputs() {
    let out = encode(JsonFormat::Columnar, vec![("y", floats(&[], &[5.0]))]);
    assert_eq!(out, r#"{"outputs":5.0}"#);
    let out = encode(JsonFormat::Columnar, vec![("y", floats(&[2], &[1.0, 2.0]))]);
    assert_eq!(out, r#"{"outputs":[1.0,2.0]}"#);
    let out = encode(JsonFormat::Columnar, vec![("y", floats(&[2, 0], &[]))]);
    assert_eq!(out, r#"{"outputs":[[],[]]}"#);
    let out = encode(JsonFormat::Columnar, vec![("y", floats(&[0, 3], &[]))]);
    assert_eq!(out, r#"{"outputs":[]}"#);
    let out = encode(JsonFormat::Columnar, vec![("y", floats(&[2, 1, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))]);
    assert_eq!(out, r#"{"outputs":[[[1.0,2.0,3.0]],[[4.0,5.0,6.0]]]}"#);
    let out = encode(
        JsonFormat::Columnar,
        vec![("scores", floats(&[1, 2], &[0.25, 0.75])), ("label", strings(&[], &[b"cat"]))],
    );
    assert_eq!(out, r#"{"outputs":{"scores":[[0.25,0.75]],"label":"cat"}}"#);
}

#[test]
fn every_writable_dtype() {
    let out = encode(
        JsonFormat::Columnar,
        vec![
            ("f", floats(&[3], &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY])),
            ("d", Tensor::from_vec(vec![2], vec![0.1f64, 1.0 / 3.0])),
            ("i8", Tensor::from_vec(vec![2], vec![-128i8, 127])),
            ("i16", Tensor::from_vec(vec![1], vec![-300i16])),
            ("i32", Tensor::from_vec(vec![1], vec![i32::MIN])),
            ("i64", Tensor::from_vec(vec![2], vec![i64::MIN, i64::MAX])),
            ("u8", Tensor::from_vec(vec![1], vec![255u8])),
            ("u32", Tensor::from_vec(vec![1], vec![u32::MAX])),
            ("u64", Tensor::from_vec(vec![1], vec![u64::MAX])),
            ("b", Tensor::from_bools(vec![2], vec![true, false])),
            ("s", strings(&[2], &[b"a\"b\\c\n\x01", "é".as_bytes()])),
        ],
    );
    assert_eq!(
        out,
        concat!(
            r#"{"outputs":{"f":[NaN,Infinity,-Infinity],"d":[0.1,0.33333333333333331],"#,
            r#""i8":[-128,127],"i16":[-300],"i32":[-2147483648],"#,
            r#""i64":[-9223372036854775808,9223372036854775807],"u8":[255],"#,
            r#""u32":[4294967295],"u64":[18446744073709551615],"b":[true,false],"#,
            r#""s":["a\"b\\c\n\u0001","é"]}}"#
        )
    );
}

#[test]
fn bytes_suffix_selects_b64() {
    let out = encode(JsonFormat::Columnar, vec![("image_bytes", strings(&[1], &[b"hello"]))]);
    assert_eq!(out, r#"{"outputs":[{"b64":"aGVsbG8="}]}"#);
    let out = encode(JsonFormat::Columnar, vec![("bytes_image", strings(&[1], &[b"hello"]))]);
    assert_eq!(out, r#"{"outputs":["hello"]}"#);
    // Only strings are affected by the suffix.
    let out = encode(JsonFormat::Columnar, vec![("x_bytes", floats(&[1], &[1.0]))]);
    assert_eq!(out, r#"{"outputs":[1.0]}"#);
}

#[test]
fn invalid_utf8_strings_pass_through() {
    let outputs = vec![("s".to_owned(), strings(&[1], &[b"\xff\xfe"]))];
    let body = write_predict_response(JsonFormat::Columnar, &outputs, &OutputKeys::new()).expect("encodes");
    assert_eq!(body, b"{\"outputs\":[\"\xff\xfe\"]}");
}

#[test]
fn unwritable_dtypes() {
    for (dtype, name) in [(DType::Half, "half"), (DType::BFloat16, "bfloat16"), (DType::UInt16, "uint16")] {
        let tensor = Tensor::from_bytes(dtype, vec![2], Bytes::from(vec![0u8; 4])).expect("tensor");
        assert_eq!(
            encode_err(JsonFormat::Columnar, vec![("y", tensor)]),
            (Code::InvalidArgument, format!("Failed to write JSON value for tensor type: {name}"))
        );
    }
    // TF fails per value, so an empty half tensor still writes.
    let empty = Tensor::from_bytes(DType::Half, vec![0], Bytes::new()).expect("tensor");
    assert_eq!(encode(JsonFormat::Columnar, vec![("y", empty)]), r#"{"outputs":[]}"#);
}

#[test]
fn inconsistent_tensors_are_internal_errors() {
    let short = Tensor { dtype: DType::Float, shape: vec![3], data: TensorData::Dense(Bytes::from(vec![0u8; 8])) };
    assert_eq!(encode_err(JsonFormat::Columnar, vec![("y", short)]).0, Code::Internal);
    let wrong = Tensor { dtype: DType::String, shape: vec![1], data: TensorData::Dense(Bytes::new()) };
    assert_eq!(encode_err(JsonFormat::Columnar, vec![("y", wrong)]).0, Code::Internal);
}

#[test]
fn score_maps_are_written_as_one_object_per_row() {
    let outputs = vec![
        ("p".to_owned(), floats(&[2, 3], &[0.5, 0.25, 0.25, 0.0, 1.0, 0.0])),
        ("label".to_owned(), Tensor::from_vec(vec![2], vec![0i64, 1])),
    ];
    let keys: OutputKeys = [("p".to_owned(), vec!["2".to_owned(), "10".into(), "a\"b".into()].into())].into();
    let row = write_predict_response(JsonFormat::Row, &outputs, &keys).expect("encodes");
    assert_eq!(
        String::from_utf8(row).expect("utf-8"),
        r#"{"predictions":[{"p":{"2":0.5,"10":0.25,"a\"b":0.25},"label":0},{"p":{"2":0.0,"10":1.0,"a\"b":0.0},"label":1}]}"#
    );
    let columns = write_predict_response(JsonFormat::Columnar, &outputs[..1], &keys).expect("encodes");
    assert_eq!(
        String::from_utf8(columns).expect("utf-8"),
        r#"{"outputs":[{"2":0.5,"10":0.25,"a\"b":0.25},{"2":0.0,"10":1.0,"a\"b":0.0}]}"#
    );
    // Keys that do not match the columns are the server's fault, not a truncated answer.
    let two: OutputKeys = [("p".to_owned(), vec!["x".to_owned(), "y".into()].into())].into();
    let error = write_predict_response(JsonFormat::Row, &outputs, &two).expect_err("mismatch");
    assert_eq!(error.code, Code::Internal, "{}", error.message);
}

#[test]
fn error_body_matches_pretty_writer() {
    assert_eq!(write_error_body("oops"), b"{\n    \"error\": \"oops\"\n}");
    assert_eq!(
        String::from_utf8(write_error_body("JSON Value: {\n    \"a\": 1\n} bad\\\t\u{1}")).expect("utf-8"),
        "{\n    \"error\": \"JSON Value: {\\n    \\\"a\\\": 1\\n} bad\\\\\\t\\u0001\"\n}"
    );
}

#[test]
fn decoded_request_round_trips_through_the_encoder() {
    let signatures = sigs(&[("x", DType::Float)]);
    let request = parse_ok(br#"{"instances": [[0.1, 2.5e-8], [NaN, -Infinity]]}"#, &signatures);
    let outputs: Vec<(String, Tensor)> = request.inputs.into_iter().collect();
    let body = write_predict_response(request.format, &outputs, &OutputKeys::new()).expect("encodes");
    assert_eq!(body, b"{\"predictions\":[[0.1,2.5e-08],[NaN,-Infinity]]}");
}

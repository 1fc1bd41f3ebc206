//! TF Serving's REST API against the real runtime and real models, over a real socket.

mod common;

use common::{base_url, repo_path, start_server, ServerProcess};
use serde_json::{json, Value};

async fn post(client: &reqwest::Client, url: &str, body: &str) -> (u16, String) {
    let response = client.post(url).body(body.to_string()).send().await.expect("send");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_string());
    assert_eq!(content_type.as_deref(), Some("application/json"), "REST answers are JSON");
    (status, response.text().await.expect("body"))
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("invalid JSON {body}: {e}"))
}

#[tokio::test]
async fn half_plus_two_predicts_in_both_formats() {
    let server = start_server(&[("half_plus_two", repo_path("models/half_plus_two"))]).await;
    let url = format!("{}/v1/models/half_plus_two:predict", base_url(&server));
    let client = reqwest::Client::new();

    let (status, body) = post(&client, &url, r#"{"instances": [1.0, 2.0, 5.0]}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body), json!({"predictions": [2.5, 3.0, 4.5]}));

    let (status, body) = post(&client, &url, r#"{"inputs": [[1, 2], [3, 4]]}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body), json!({"outputs": [[2.5, 3.0], [3.5, 4.0]]}));

    let (status, body) = post(&client, &url, r#"{"inputs": 5.0}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body), json!({"outputs": 4.5}));

    // Versions in the URL, and the TF float printing rules on the way out.
    let versioned = format!("{}/v1/models/half_plus_two/versions/1:predict", base_url(&server));
    // 0.5 * -3.3333333 + 2 = 0.33333337f: "%g" does not round-trip, so "%.9g" is used.
    // 0.5 * 19999996 + 2 = 1e7 exactly: "%g" round-trips in exponent form.
    // 0.5 * 2e7 + 2 = 10000002: "%g" would be 1e+07, so "%.9g" plus ".0".
    let (status, body) = post(&client, &versioned, r#"{"instances": [-3.3333333, 19999996, 2e7, 0.2]}"#).await;
    assert_eq!(status, 200, "{body}");
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(compact, r#"{"predictions":[0.333333373,1e+07,10000002.0,2.1]}"#);

    // NaN and Infinity tokens go in and come back as bare tokens.
    let (status, body) = post(&client, &url, r#"{"instances": [NaN, Infinity, -Infinity]}"#).await;
    assert_eq!(status, 200, "{body}");
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(compact, r#"{"predictions":[NaN,Infinity,-Infinity]}"#);
    server.shutdown().await;
}

#[tokio::test]
async fn every_dtype_round_trips() {
    let server = start_server(&[("dtypes", repo_path("tests/fixtures/dtypes"))]).await;
    let url = format!("{}/v1/models/dtypes:predict", base_url(&server));
    let client = reqwest::Client::new();
    let request = json!({"instances": [
        {"f32": 1.5, "f64": 0.1, "i32": -7, "i64": 9007199254740993_i64, "u8": 255, "flag": true, "text": "héllo"},
        {"f32": -2.0, "f64": 1e300, "i32": 2147483647, "i64": -1, "u8": 0, "flag": false, "text": {"b64": "YWJj"}}
    ]});
    let (status, body) = post(&client, &url, &request.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let predictions = parse(&body)["predictions"].clone();
    assert_eq!(predictions[0]["f32_out"], json!(1.5));
    assert_eq!(predictions[0]["f64_out"], json!(0.1));
    assert_eq!(predictions[0]["i32_out"], json!(-7));
    assert_eq!(predictions[0]["i64_out"], json!(9007199254740993_i64));
    assert_eq!(predictions[0]["u8_out"], json!(255));
    assert_eq!(predictions[0]["flag_out"], json!(true));
    assert_eq!(predictions[0]["text_out"], json!("héllo"));
    assert_eq!(predictions[1]["text_out"], json!("abc"));
    assert_eq!(predictions[1]["text_bytes"], json!({"b64": "YWJj"}), "the _bytes suffix gives base64");
    assert_eq!(predictions[1]["f64_out"], json!(1e300));
    assert_eq!(predictions[1]["i32_out"], json!(2147483647));
    assert_eq!(predictions[1]["flag_out"], json!(false));

    let columnar = json!({"inputs": {"f32": [1.0], "f64": [2.0], "i32": [3], "i64": [4], "u8": [5], "flag": [true], "text": ["t"], "ignored": 1}});
    let (status, body) = post(&client, &url, &columnar.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let outputs = parse(&body)["outputs"].clone();
    assert_eq!(outputs["i64_out"], json!([4]));
    assert_eq!(outputs["text_bytes"], json!([{"b64": "dA=="}]));

    // An integer dtype rejects a float token.
    let bad = json!({"inputs": {"f32": [1.0], "f64": [2.0], "i32": [3.5], "i64": [4], "u8": [5], "flag": [true], "text": ["t"]}});
    let (status, body) = post(&client, &url, &bad.to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert!(parse(&body)["error"].as_str().unwrap_or_default().contains("is not of expected type: int32"), "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn status_and_metadata_have_tf_serving_shapes() {
    let server = start_server(&[("mnist", repo_path("models/mnist_onnx"))]).await;
    let client = reqwest::Client::new();
    let base = base_url(&server);

    let status =
        parse(&client.get(format!("{base}/v1/models/mnist")).send().await.expect("get").text().await.expect("text"));
    assert_eq!(
        status,
        json!({"model_version_status": [{"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}),
        "TF Serving's document, field for field"
    );
    let one = client.get(format!("{base}/v1/models/mnist/versions/2")).send().await.expect("get");
    assert_eq!(one.status(), 200);
    let missing = client.get(format!("{base}/v1/models/mnist/versions/1")).send().await.expect("get");
    assert_eq!(missing.status(), 404);
    assert_eq!(parse(&missing.text().await.expect("text"))["error"], "Could not find version 1 of model mnist");

    let metadata = parse(
        &client.get(format!("{base}/v1/models/mnist/metadata")).send().await.expect("get").text().await.expect("text"),
    );
    assert_eq!(metadata["model_spec"], json!({"name": "mnist", "signature_name": "", "version": "2"}));
    let signature = &metadata["metadata"]["signature_def"]["signature_def"]["serving_default"];
    assert_eq!(signature["method_name"], "tensorflow/serving/predict");
    assert_eq!(signature["defaults"], json!({}));
    assert_eq!(
        signature["inputs"]["images"],
        json!({"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1", "name": ""}, {"size": "784", "name": ""}], "unknown_rank": false}, "name": "images"})
    );
    assert_eq!(signature["outputs"]["scores"]["tensor_shape"]["dim"][1]["size"], "10");

    // A real prediction: ten probabilities that sum to one.
    let image: Vec<f32> = (0..784).map(|i| if (300..480).contains(&i) { 1.0 } else { 0.0 }).collect();
    let (code, body) =
        post(&client, &format!("{base}/v1/models/mnist:predict"), &json!({"instances": [image]}).to_string()).await;
    assert_eq!(code, 200, "{body}");
    let scores: Vec<f64> = serde_json::from_value(parse(&body)["predictions"][0].clone()).expect("scores");
    assert_eq!(scores.len(), 10);
    assert!((scores.iter().sum::<f64>() - 1.0).abs() < 1e-4);

    // A native ONNX model keeps its declared shapes, with a message that names them.
    let columnar = json!({"inputs": {"images": image}}).to_string();
    let (code, body) = post(&client, &format!("{base}/v1/models/mnist:predict"), &columnar).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        parse(&body)["error"],
        "input 'images' has shape [784] (rank 1), but the model takes rank 2 (shape [-1, 784])"
    );
    let short = json!({"instances": [[0.5, 0.5]]}).to_string();
    let (code, body) = post(&client, &format!("{base}/v1/models/mnist:predict"), &short).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        parse(&body)["error"],
        "input 'images' has shape [1, 2], but the model takes 784 in dimension 1 (shape [-1, 784])"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn errors_follow_the_spec() {
    let server = start_server(&[
        ("half_plus_two", repo_path("models/half_plus_two")),
        ("scalar_out", repo_path("tests/fixtures/scalar_out")),
    ])
    .await;
    let client = reqwest::Client::new();
    let base = base_url(&server);
    let predict = format!("{base}/v1/models/half_plus_two:predict");
    let cases: &[(&str, &str, u16, &str)] = &[
        (&predict, "", 400, "JSON Parse error: The document is empty"),
        (&predict, "{nope", 400, "JSON Parse error: Missing a name for object member. at offset: 1"),
        (&predict, "[1]", 400, "Is not object"),
        (&predict, r#"{"instances": ["a"]}"#, 400, "Type: String is not of expected type: float"),
        (
            &predict,
            r#"{"instances": [1], "inputs": [1]}"#,
            400,
            "expecting only one of 'inputs' or 'instances' keys to exist",
        ),
        (
            &predict,
            r#"{"signature_name": "nope", "instances": [1]}"#,
            400,
            r#"Serving signature name: "nope" not found in signature def"#,
        ),
        (&predict, r#"{"instances": [[1, 2], [3]]}"#, 400, "Failed to process element: 1 of 'instances' list."),
        (&predict, r#"{"instances": []}"#, 400, "No values in 'instances' array"),
        (&predict, r#"{"x": 1}"#, 400, "Missing 'inputs' or 'instances' key"),
    ];
    for (url, body, code, message) in cases {
        let (status, text) = post(&client, url, body).await;
        assert_eq!(status, *code, "body {body:?} gave {text}");
        let error = parse(&text)["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(message), "body {body:?}: expected {message:?} in {error:?}");
    }

    let (status, text) = post(&client, &format!("{base}/v1/models/nope:predict"), "not even json").await;
    assert_eq!((status, parse(&text)["error"].clone()), (404, json!("Servable not found for request: Latest(nope)")));
    let (status, text) = post(&client, &format!("{base}/v1/models/half_plus_two/versions/99:predict"), "{}").await;
    assert_eq!(
        (status, parse(&text)["error"].clone()),
        (404, json!("Servable not found for request: Specific(half_plus_two, 99)"))
    );
    let (status, text) = post(&client, &format!("{base}/v1/models/half_plus_two/labels/x:predict"), "{}").await;
    assert_eq!((status, parse(&text)["error"].clone()), (400, json!("Unrecognized servable version label: x")));
    let (status, text) =
        post(&client, &format!("{base}/v1/models/scalar_out:predict"), r#"{"instances": [1, 2]}"#).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("has no shape information"), "{text}");
    let (status, text) = post(&client, &format!("{base}/v1/models/scalar_out:predict"), r#"{"inputs": [1, 2]}"#).await;
    assert_eq!((status, parse(&text)), (200, json!({"outputs": 3.0})));

    let (status, text) = post(&client, &format!("{base}/v1/models/half_plus_two/metadata"), "").await;
    assert_eq!(
        (status, parse(&text)["error"].clone()),
        (400, json!(format!("Malformed request: POST /v1/models/half_plus_two/metadata")))
    );
    let response = client.get(format!("{base}/v1/models")).send().await.expect("get");
    assert_eq!(response.status(), 400);
    assert_eq!(parse(&response.text().await.expect("text"))["error"], "Missing model name in request.");
    let response = client.get(format!("{base}/v1/models/nope")).send().await.expect("get");
    assert_eq!(response.status(), 404);
    assert_eq!(parse(&response.text().await.expect("text"))["error"], "Could not find any versions of model nope");
    let response = client.put(format!("{base}/v1/models/half_plus_two")).send().await.expect("put");
    assert_eq!(response.status(), 400);
    let response = client.get(format!("{base}/healthz")).send().await.expect("get");
    assert_eq!(response.status(), 404);
    server.shutdown().await;
}

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    use std::io::Write;
    let server = start_server(&[("half_plus_two", repo_path("models/half_plus_two"))]).await;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(br#"{"instances": [4.0]}"#).expect("gzip");
    let body = encoder.finish().expect("gzip");
    let response = reqwest::Client::new()
        .post(format!("{}/v1/models/half_plus_two:predict", base_url(&server)))
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(parse(&response.text().await.expect("text")), json!({"predictions": [4.0]}));
    server.shutdown().await;
}

#[tokio::test]
async fn aliases_from_model_options_rename_inputs_and_outputs() {
    let base = tempfile::tempdir().expect("tempdir");
    common::copy_dir(&repo_path("models/half_plus_two"), base.path());
    std::fs::write(
        base.path().join("model_options.pbtxt"),
        "input_aliases { key: \"x\" value: \"value\" }\noutput_aliases { key: \"y\" value: \"result\" }\n",
    )
    .expect("options");
    let server = start_server(&[("hpt", base.path().to_path_buf())]).await;
    let client = reqwest::Client::new();
    let base_url = base_url(&server);
    let metadata = parse(
        &client
            .get(format!("{base_url}/v1/models/hpt/metadata"))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("text"),
    );
    let signature = &metadata["metadata"]["signature_def"]["signature_def"]["serving_default"];
    assert_eq!(signature["inputs"]["value"]["name"], "x", "the alias keys the ONNX name: {metadata}");
    assert_eq!(signature["outputs"]["result"]["name"], "y");
    let url = format!("{base_url}/v1/models/hpt:predict");
    let (status, body) = post(&client, &url, r#"{"inputs": {"value": [1.0, 4.0]}}"#).await;
    assert_eq!((status, parse(&body)), (200, json!({"outputs": [2.5, 4.0]})));
    let (status, body) = post(&client, &url, r#"{"inputs": {"x": [1.0]}}"#).await;
    assert_eq!(status, 400, "the ONNX name is no longer an alias: {body}");
    server.shutdown().await;
}

#[tokio::test]
async fn classify_and_regress_take_tf_example_json() {
    let server = start_server(&[("hpt", repo_path("tests/fixtures/example_half_plus_two"))]).await;
    let client = reqwest::Client::new();
    let url = |method: &str| format!("{}/v1/models/hpt:{method}", base_url(&server));
    let (status, body) = post(&client, &url("classify"), r#"{"examples": [{"x": 2.0}, {"x": 3.0}]}"#).await;
    assert_eq!((status, body.as_str()), (200, r#"{"results":[[["y",3.0]],[["y",3.5]]]}"#));
    let (status, body) =
        post(&client, &url("regress"), r#"{"context": {"x": 10.0}, "examples": [{"x": 4.0}, {}]}"#).await;
    assert_eq!((status, body.as_str()), (200, r#"{"results":[4.0,7.0]}"#), "the example wins over the context");
    let versioned = format!("{}/v1/models/hpt/versions/1:regress", base_url(&server));
    let (status, body) =
        post(&client, &versioned, r#"{"signature_name": "serving_default", "examples": [{"x": [2.0]}]}"#).await;
    assert_eq!((status, body.as_str()), (200, r#"{"results":[3.0]}"#));
    let (status, body) = post(&client, &url("regress"), r#"{"examples": [{"x": NaN}, {"x": -Infinity}]}"#).await;
    assert_eq!((status, body.as_str()), (200, r#"{"results":[NaN,-Infinity]}"#), "NaN and Infinity are floats");

    // TF Serving's errors, as 400s in its error format.
    let error = |body: String| parse(&body)["error"].as_str().unwrap_or_default().to_string();
    let (status, body) = post(&client, &url("classify"), "x").await;
    assert_eq!((status, error(body).as_str()), (400, "JSON Parse error: Invalid value. at offset: 0"));
    let (status, body) = post(&client, &url("regress"), r#"{"examples": [{"x": 2}]}"#).await;
    assert_eq!(status, 400);
    assert_eq!(
        error(body),
        "Name: <unknown>, Key: x, Index: 0.  Data types don't match. Data type: int64 but expected type: float",
        "an integer token is an int64 feature, as in TF Serving"
    );
    let (status, body) = post(&client, &url("classify"), r#"{"instances": [1.0]}"#).await;
    assert_eq!(status, 400);
    assert!(error(body).ends_with("When method is classify, key 'examples' is expected and was not found"));
    let (status, body) = post(&client, &url("classify"), r#"{"examples": [{"y": 1.0}]}"#).await;
    assert_eq!(status, 400);
    assert_eq!(error(body), "Name: <unknown>, Feature: x (data type: float) is required but could not be found.");
    let (status, body) =
        post(&client, &url("regress"), r#"{"signature_name": "nope", "examples": [{"x": 1.0}]}"#).await;
    assert_eq!((status, error(body).as_str()), (400, "No signature was found with the name: nope"));
    server.shutdown().await;
}

#[tokio::test]
async fn zipmap_outputs_become_json_objects_and_dense_grpc_tensors() {
    use onnx_serving::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
    use onnx_serving::proto::tensorflow::serving::{ModelSpec, PredictRequest};
    use onnx_serving::proto::tensorflow::{tensor_shape_proto, TensorProto, TensorShapeProto};
    // The same scikit-learn logistic regression, exported with skl2onnx's default ZipMap and
    // with zipmap=False.
    let server = start_server(&[
        ("zipmap", repo_path("tests/fixtures/iris_zipmap")),
        ("tensor", repo_path("tests/fixtures/iris_tensor")),
    ])
    .await;
    let client = reqwest::Client::new();
    let flowers = r#"{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}"#;
    let (status, body) = post(&client, &format!("{}/v1/models/zipmap:predict", base_url(&server)), flowers).await;
    assert_eq!(status, 200, "{body}");
    let zipmap = parse(&body);
    let (_, body) = post(&client, &format!("{}/v1/models/tensor:predict", base_url(&server)), flowers).await;
    let dense = parse(&body);
    for row in 0..2 {
        let object = zipmap["predictions"][row]["output_probability"].as_object().expect("one object per row").clone();
        assert_eq!(object.keys().collect::<Vec<_>>(), vec!["0", "1", "2"], "{zipmap}");
        for class in 0..3 {
            let a = object[&class.to_string()].as_f64().expect("score");
            let b = dense["predictions"][row]["probabilities"][class].as_f64().expect("score");
            assert!((a - b).abs() < 1e-6, "row {row} class {class}: {a} vs {b}");
        }
        assert_eq!(zipmap["predictions"][row]["output_label"], dense["predictions"][row]["label"]);
    }
    assert_eq!(zipmap["predictions"][1]["output_label"], json!(2), "a virginica");
    // Columnar requests get the same objects.
    let (_, body) = post(
        &client,
        &format!("{}/v1/models/zipmap:predict", base_url(&server)),
        r#"{"inputs": {"X": [[5.1, 3.5, 1.4, 0.2]]}}"#,
    )
    .await;
    assert!(parse(&body)["outputs"]["output_probability"][0]["0"].is_number(), "{body}");
    // The signature declares the scores, one column per class label of the ZipMap.
    let metadata = reqwest::get(format!("{}/v1/models/zipmap/metadata", base_url(&server)))
        .await
        .expect("metadata")
        .text()
        .await
        .expect("body");
    let output = &parse(&metadata)["metadata"]["signature_def"]["signature_def"]["serving_default"]["outputs"]
        ["output_probability"];
    assert_eq!(output["dtype"], json!("DT_FLOAT"), "{metadata}");
    assert_eq!(output["tensor_shape"]["dim"][1]["size"], json!("3"), "{metadata}");

    // gRPC: the dense scores and the class keys in column order.
    let address = server.grpc_address.expect("gRPC");
    let mut grpc = PredictionServiceClient::connect(format!("http://{address}")).await.expect("connect");
    let x = TensorProto {
        dtype: 1,
        tensor_shape: Some(TensorShapeProto {
            dim: [1, 4].iter().map(|&size| tensor_shape_proto::Dim { size, name: String::new() }).collect(),
            unknown_rank: false,
        }),
        float_val: vec![5.1, 3.5, 1.4, 0.2],
        ..Default::default()
    };
    let response = grpc
        .predict(PredictRequest {
            model_spec: Some(ModelSpec { name: "zipmap".into(), ..Default::default() }),
            inputs: [("X".to_string(), x)].into_iter().collect(),
            ..Default::default()
        })
        .await
        .expect("predict")
        .into_inner();
    let scores = &response.outputs["output_probability"];
    assert_eq!(scores.dtype, 1);
    assert_eq!(
        scores.tensor_shape.as_ref().map(|s| s.dim.iter().map(|d| d.size).collect::<Vec<_>>()),
        Some(vec![1, 3])
    );
    let classes = &response.outputs["output_probability_classes"];
    assert_eq!(classes.string_val, vec![bytes::Bytes::from("0"), bytes::Bytes::from("1"), bytes::Bytes::from("2")]);
    let first = zipmap["predictions"][0]["output_probability"]["0"].as_f64().expect("score");
    assert!((f64::from(scores.float_val[0]) - first).abs() < 1e-6);
    server.shutdown().await;
}

#[tokio::test]
async fn pytorch_exports_serve_with_aliases_and_fixed_batches_skip_the_batcher() {
    // Version 1 is an unnamed TorchScript export (input.1 -> 15); version 2 the same weights
    // through the dynamo exporter (x -> softmax, weights in model.onnx.data). Each gets the
    // aliases image and scores from its model_options.pbtxt.
    let server = ServerProcess::start_logged(
        &[
            "--model_name=cnn",
            &format!("--model_base_path={}", repo_path("models/mnist_cnn_pytorch").display()),
            "--model_platform=pytorch",
            "--model_version_policy=all",
        ],
        &[],
    );
    let client = reqwest::Client::new();
    let image = vec![vec![vec![vec![0.25f32; 28]; 28]; 1]; 3];
    let mut answers = Vec::new();
    for (version, onnx_input) in [(1, "input.1"), (2, "x")] {
        let url = server.url(&format!("/v1/models/cnn/versions/{version}/metadata"));
        let metadata: Value = client.get(url).send().await.expect("get").json().await.expect("json");
        let signature = &metadata["metadata"]["signature_def"]["signature_def"]["serving_default"];
        assert_eq!(signature["inputs"]["image"]["name"], onnx_input, "{metadata}");
        let dims: Vec<&str> = signature["inputs"]["image"]["tensor_shape"]["dim"]
            .as_array()
            .map(|d| d.iter().filter_map(|d| d["size"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(dims, vec!["-1", "1", "28", "28"], "NCHW with a dynamic batch");
        assert!(signature["outputs"]["scores"].is_object(), "{metadata}");
        let response = client
            .post(server.url(&format!("/v1/models/cnn/versions/{version}:predict")))
            .body(json!({"instances": image}).to_string())
            .send()
            .await
            .expect("predict");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["predictions"].as_array().map(Vec::len), Some(3), "{body}");
        let scores: Vec<f64> = serde_json::from_value(body["predictions"][0].clone()).expect("scores");
        assert!((scores.iter().sum::<f64>() - 1.0).abs() < 1e-4, "a softmax: {scores:?}");
        answers.push(scores);
    }
    for (a, b) in answers[0].iter().zip(&answers[1]) {
        assert!((a - b).abs() < 1e-5, "both exporters give the same answers: {answers:?}");
    }
    drop(server);

    // A fixed batch of 1 with external data (model.onnx.data): it serves, the batcher leaves
    // it alone, and metadata shows the fixed dimension.
    let server = ServerProcess::start_logged(
        &[
            "--model_name=fixed",
            &format!("--model_base_path={}", repo_path("tests/fixtures/pytorch_fixed_batch").display()),
            "--model_platform=pytorch",
            "--enable_batching",
        ],
        &[],
    );
    let bypassed = server.log_lines_with("batching bypassed");
    assert!(bypassed.iter().any(|l| l.contains("fixed batch dimension of 1")), "{bypassed:?}");
    let (status, body) =
        post(&client, &server.url("/v1/models/fixed:predict"), r#"{"instances": [[1.0, 1.0, 1.0, 1.0]]}"#).await;
    assert_eq!((status, parse(&body)), (200, json!({"predictions": [[10.25, 0.0]]})));
    let metadata: Value =
        client.get(server.url("/v1/models/fixed/metadata")).send().await.expect("get").json().await.expect("json");
    let dim = &metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["x"]["tensor_shape"]
        ["dim"];
    assert_eq!(dim[0]["size"], "1", "{metadata}");
    let (status, body) = post(
        &client,
        &server.url("/v1/models/fixed:predict"),
        r#"{"instances": [[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]]}"#,
    )
    .await;
    assert_eq!(status, 400, "two rows do not fit a batch of one: {body}");
}

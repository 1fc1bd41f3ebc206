//! The tensorflow platform against the real binary: SavedModels served from their ONNX
//! conversions over REST and gRPC (Predict, Classify, Regress, MultiInference, metadata), the
//! committed conversions without TensorFlow, and the converter itself (automatic conversion
//! into the content-keyed cache, `onnx-serving convert`, failures that say what to do).
//!
//! The converter tests need Python with TensorFlow and tf2onnx
//! (`python/requirements-convert.txt`), named by `ONNX_SERVING_CONVERTER_PYTHON`; `.ci/run`
//! installs them in a venv. TF Serving's own test SavedModels come from the shared references
//! (`../shared/tfs-testdata` or `TFS_TESTDATA_DIR`). Without either, those tests say why they
//! skip, unless `ONNX_SERVING_REQUIRE_ALL_TESTS=1` makes a skip a failure.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_dir, repo_path, run_to_exit, skip_unless, ServerProcess};
use onnx_serving::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use onnx_serving::proto::tensorflow::serving::{
    inference_result, input, model_spec, ClassificationRequest, ExampleList, InferenceTask, Input, ModelSpec,
    MultiInferenceRequest, PredictRequest, RegressionRequest,
};
use onnx_serving::proto::tensorflow::{
    feature, tensor_shape_proto, Example, Feature, Features, FloatList, TensorProto, TensorShapeProto,
};
use serde_json::{json, Value};

fn converter_python() -> Option<String> {
    std::env::var("ONNX_SERVING_CONVERTER_PYTHON").ok().filter(|p| Path::new(p).is_file())
}

fn tfs_testdata(name: &str) -> PathBuf {
    std::env::var_os("TFS_TESTDATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path("../shared/tfs-testdata"))
        .join(name)
}

fn serve_tf(name: &str, base: &Path, extra: &[&str]) -> ServerProcess {
    let mut args = vec![
        format!("--model_name={name}"),
        format!("--model_base_path={}", base.display()),
        "--model_platform=tensorflow".to_string(),
        "--max_num_load_retries=0".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ServerProcess::start_logged(&args, &[])
}

async fn post(server: &ServerProcess, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new().post(server.url(path)).json(&body).send().await.expect("post");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

/// TF Serving's half_plus_two answers, over REST.
async fn check_half_plus_two_rest(server: &ServerProcess, model: &str) {
    let at = |method: &str| format!("/v1/models/{model}:{method}");
    let (status, body) = post(server, &at("predict"), json!({"instances": [[1.0], [2.0], [5.0]]})).await;
    assert_eq!((status, body), (200, json!({"predictions": [[2.5], [3.0], [4.5]]})));
    // TF Serving's own tests send x (declared [-1, 1]) as a list of scalars, in both formats,
    // and TF runs them: the ops broadcast, and y takes x's shape.
    let (status, body) = post(server, &at("predict"), json!({"instances": [2, 3, 4]})).await;
    assert_eq!((status, body), (200, json!({"predictions": [3.0, 3.5, 4.0]})));
    let (status, body) = post(server, &at("predict"), json!({"inputs": [2, 3, 4]})).await;
    assert_eq!((status, body), (200, json!({"outputs": [3.0, 3.5, 4.0]})));
    // Metadata keeps the declared shape.
    let response = reqwest::get(format!("http://{}/v1/models/{model}/metadata", server.rest_address)).await;
    let metadata: Value = response.expect("metadata").json().await.expect("json");
    let x = &metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["x"];
    assert_eq!(x["tensor_shape"]["dim"], json!([{"size": "-1", "name": ""}, {"size": "1", "name": ""}]), "{x}");
    let examples = json!([{"x": 2.0}, {"x": 3.0}]);
    let (_, body) =
        post(server, &at("classify"), json!({"signature_name": "classify_x_to_y", "examples": examples})).await;
    assert_eq!(body, json!({"results": [[["", 3.0]], [["", 3.5]]]}));
    let (_, body) =
        post(server, &at("regress"), json!({"signature_name": "regress_x_to_y", "examples": examples})).await;
    assert_eq!(body, json!({"results": [3.0, 3.5]}));
    let (_, body) =
        post(server, &at("regress"), json!({"signature_name": "regress_x_to_y2", "examples": [{"x": 2.0}]})).await;
    assert_eq!(body, json!({"results": [4.0]}));
    // regress_x2_to_y3 takes x2 itself: y3 = 0.5 * 4 + 3.
    let (_, body) =
        post(server, &at("predict"), json!({"signature_name": "regress_x2_to_y3", "instances": [[4.0]]})).await;
    assert_eq!(body, json!({"predictions": [[5.0]]}));
    // Predict on a tf.Example signature says where the examples go.
    let (status, body) =
        post(server, &at("predict"), json!({"signature_name": "classify_x_to_y", "instances": [{"b64": "CgA="}]}))
            .await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap_or_default().contains("send the examples with Classify"), "{body}");
    // A feature of the wrong type is refused as TF's parser refuses it.
    let (status, body) =
        post(server, &at("regress"), json!({"signature_name": "regress_x_to_y", "examples": [{"x2": 1}]})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "Name: <unknown>, Key: x2, Index: 0.  Data types don't match. Data type: int64 but expected type: float"
    );
}

fn float_example(x: f32) -> Example {
    let feature = Feature { kind: Some(feature::Kind::FloatList(FloatList { value: vec![x] })) };
    Example { features: Some(Features { feature: [("x".to_string(), feature)].into_iter().collect() }) }
}

fn spec(name: &str, signature: &str) -> Option<ModelSpec> {
    Some(ModelSpec { name: name.into(), signature_name: signature.into(), ..Default::default() })
}

/// A Predict on model `default` with the float input `x`, optionally filtering on `y`.
fn predict_x(signature: &str, dims: &[i64], values: Vec<f32>, filter: bool) -> PredictRequest {
    let x = TensorProto {
        dtype: 1,
        tensor_shape: Some(TensorShapeProto {
            dim: dims.iter().map(|&size| tensor_shape_proto::Dim { size, name: String::new() }).collect(),
            unknown_rank: false,
        }),
        float_val: values,
        ..Default::default()
    };
    PredictRequest {
        model_spec: spec("default", signature),
        inputs: [("x".to_string(), x)].into_iter().collect(),
        output_filter: if filter { vec!["y".to_string()] } else { Vec::new() },
        ..Default::default()
    }
}

#[tokio::test]
async fn committed_conversions_serve_half_plus_two_without_tensorflow() {
    // No converter: the conversion beside the SavedModel (onnx/) is all there is.
    let server = serve_tf("default", &repo_path("models/half_plus_two_tf"), &["--conversion_python=/nonexistent"]);
    check_half_plus_two_rest(&server, "default").await;

    let address = server.grpc_address.expect("gRPC");
    let mut client = PredictionServiceClient::connect(format!("http://{address}")).await.expect("connect");
    let response = client.predict(predict_x("", &[2, 1], vec![2.0, 4.0], false)).await.expect("predict").into_inner();
    assert_eq!(response.outputs["y"].float_val, vec![3.0, 4.0]);
    // TF Serving's gRPC test: x of shape [1] answers y [3.0] of shape [1].
    let response =
        client.predict(predict_x("", &[1], vec![2.0], false)).await.expect("predict on x of rank 1").into_inner();
    let y = &response.outputs["y"];
    assert_eq!(y.float_val, vec![3.0]);
    assert_eq!(y.tensor_shape.as_ref().map(|s| s.dim.iter().map(|d| d.size).collect::<Vec<_>>()), Some(vec![1]));
    let examples =
        Some(Input { kind: Some(input::Kind::ExampleList(ExampleList { examples: vec![float_example(2.0)] })) });
    let response = client
        .classify(ClassificationRequest { model_spec: spec("default", "classify_x_to_y"), input: examples.clone() })
        .await
        .expect("classify")
        .into_inner();
    assert_eq!(response.result.expect("result").classifications[0].classes[0].score, 3.0);
    let response = client
        .regress(RegressionRequest { model_spec: spec("default", "regress_x_to_y"), input: examples.clone() })
        .await
        .expect("regress")
        .into_inner();
    assert_eq!(response.result.expect("result").regressions[0].value, 3.0);
    check_multi_inference(&server, "default").await;

    // Metadata is TF Serving's, byte for byte where it matters: compare with TF Serving's own
    // golden response for this model.
    let golden = tfs_testdata("half_plus_two_model_metadata.json");
    if skip_unless("TF Serving's golden metadata (../shared/tfs-testdata)", golden.is_file()) {
        return;
    }
    let ours: Value =
        reqwest::get(server.url("/v1/models/default/metadata")).await.expect("get").json().await.expect("json");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(golden).expect("read")).expect("json");
    assert_eq!(ours, golden);
}

#[tokio::test]
async fn the_mnist_tutorial_model_predicts_and_classifies_with_its_lookup_table() {
    let server = serve_tf("mnist", &repo_path("models/mnist"), &["--conversion_python=/nonexistent"]);
    // A blank image: the classes are the table's strings, ten of them, scores descending.
    let (status, body) =
        post(&server, "/v1/models/mnist:classify", json!({"examples": [{"x": vec![0.0f32; 784]}]})).await;
    assert_eq!(status, 200, "{body}");
    let classes = body["results"][0].as_array().expect("classes").clone();
    assert_eq!(classes.len(), 10);
    let labels: Vec<&str> = classes.iter().filter_map(|c| c[0].as_str()).collect();
    let mut sorted = labels.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    let scores: Vec<f64> = classes.iter().filter_map(|c| c[1].as_f64()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let (status, body) = post(
        &server,
        "/v1/models/mnist:predict",
        json!({"signature_name": "predict_images", "instances": [vec![0.0f32; 784]]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let probabilities: Vec<f64> = serde_json::from_value(body["predictions"][0].clone()).expect("scores");
    // The classify scores are the top-k of the same softmax.
    let mut top = probabilities.clone();
    top.sort_by(|a, b| b.total_cmp(a));
    assert!((top[0] - scores[0]).abs() < 1e-6);
}

#[tokio::test]
async fn without_a_conversion_or_a_converter_the_error_gives_the_command() {
    let base = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_path("models/half_plus_two_tf/123"), &base.path().join("123"));
    std::fs::remove_dir_all(base.path().join("123/onnx")).expect("drop the conversion");
    let cache = tempfile::tempdir().expect("cache");
    let (code, output) = run_to_exit(
        &[
            "--model_name=hpt",
            &format!("--model_base_path={}", base.path().display()),
            "--model_platform=tensorflow",
            "--max_num_load_retries=0",
            "--conversion_python=/nonexistent/python3",
            &format!("--conversion_cache_dir={}", cache.path().display()),
        ],
        &[],
    );
    assert_ne!(code, Some(0));
    assert!(
        output.contains("has no ONNX conversion, and converting it failed: cannot run /nonexistent/python3"),
        "{output}"
    );
    assert!(
        output.contains(&format!("onnx-serving convert --saved_model_dir={}", base.path().join("123").display())),
        "{output}"
    );
    assert!(output.contains("pip install -r python/requirements-convert.txt"), "{output}");
    // An unknown platform lists the known ones.
    let (_, output) = run_to_exit(&["--model_base_path=/tmp", "--model_platform=caffe"], &[]);
    assert!(output.contains("onnx") && output.contains("pytorch") && output.contains("tensorflow"), "{output}");
}

#[tokio::test]
async fn the_server_converts_into_the_cache_and_reuses_it() {
    let Some(python) = converter_python() else {
        skip_unless("ONNX_SERVING_CONVERTER_PYTHON (a Python with python/requirements-convert.txt)", false);
        return;
    };
    let base = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_path("models/half_plus_two_tf/123"), &base.path().join("123"));
    std::fs::remove_dir_all(base.path().join("123/onnx")).expect("drop the conversion");
    let cache = tempfile::tempdir().expect("cache");
    let flags = [format!("--conversion_python={python}"), format!("--conversion_cache_dir={}", cache.path().display())];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = serve_tf("default", base.path(), &flags);
    assert!(!server.log_lines_with("SavedModel converted").is_empty());
    check_half_plus_two_rest(&server, "default").await;
    drop(server);
    // Nothing was written into the model directory; a second start finds the cache.
    let entries: Vec<_> =
        std::fs::read_dir(base.path().join("123")).expect("read").flatten().map(|e| e.file_name()).collect();
    assert!(!entries.iter().any(|n| n == "onnx"), "{entries:?}");
    let server = serve_tf("default", base.path(), &flags);
    assert!(!server.log_lines_with("using the cached SavedModel conversion").is_empty());
    assert!(server.log_lines_with("converting the SavedModel").is_empty());
    check_half_plus_two_rest(&server, "default").await;
}

/// Compares version 123's REST metadata with a golden file of TF Serving's, ignoring the model
/// name (the golden file's is its own).
async fn assert_matches_golden(server: &ServerProcess, model: &str, golden: &str) {
    let url = server.url(&format!("/v1/models/{model}/versions/123/metadata"));
    let mut ours: Value = reqwest::get(url).await.expect("get").json().await.expect("json");
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(tfs_testdata(golden)).expect("golden")).expect("json");
    ours["model_spec"]["name"] = golden["model_spec"]["name"].clone();
    assert_eq!(ours, golden, "{golden}");
}

async fn check_multi_inference(server: &ServerProcess, model: &str) {
    let address = server.grpc_address.expect("gRPC");
    let mut client = PredictionServiceClient::connect(format!("http://{address}")).await.expect("connect");
    let task = |signature: &str, method: &str| InferenceTask {
        model_spec: spec(model, signature),
        method_name: format!("tensorflow/serving/{method}"),
    };
    let input =
        Some(Input { kind: Some(input::Kind::ExampleList(ExampleList { examples: vec![float_example(2.0)] })) });
    let response = client
        .multi_inference(MultiInferenceRequest {
            tasks: vec![task("classify_x_to_y", "classify"), task("regress_x_to_y", "regress")],
            input,
        })
        .await
        .expect("multi inference")
        .into_inner();
    match (&response.results[0].result, &response.results[1].result) {
        (
            Some(inference_result::Result::ClassificationResult(classes)),
            Some(inference_result::Result::RegressionResult(values)),
        ) => {
            assert_eq!(classes.classifications[0].classes[0].score, 3.0);
            assert_eq!(values.regressions[0].value, 3.0);
        }
        other => panic!("expected a classification and a regression, got {other:?}"),
    }
}

#[tokio::test]
async fn tf_serving_test_models_convert_and_answer() {
    let Some(python) = converter_python() else {
        skip_unless("ONNX_SERVING_CONVERTER_PYTHON (a Python with python/requirements-convert.txt)", false);
        return;
    };
    if skip_unless("TF Serving's test SavedModels (../shared/tfs-testdata)", tfs_testdata("README.md").is_file()) {
        return;
    }
    let cache = tempfile::tempdir().expect("cache");
    let flags = [format!("--conversion_python={python}"), format!("--conversion_cache_dir={}", cache.path().display())];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    // TF1 half_plus_two, as TF Serving's own tests check it, and its golden metadata.
    let server = serve_tf("default", &tfs_testdata("saved_model_half_plus_two_cpu"), &flags);
    check_half_plus_two_rest(&server, "default").await;
    assert_matches_golden(&server, "default", "half_plus_two_model_metadata.json").await;
    check_multi_inference(&server, "default").await;
    drop(server);
    // The two-version copy, version 123, against its golden response.
    let mut with_policy = flags.clone();
    with_policy.push("--model_version_policy=all");
    let server = serve_tf(
        "saved_model_half_plus_two_2_versions",
        &tfs_testdata("saved_model_half_plus_two_2_versions"),
        &with_policy,
    );
    assert_matches_golden(
        &server,
        "saved_model_half_plus_two_2_versions",
        "saved_model_half_plus_two_2_versions_metadata.json",
    )
    .await;
    drop(server);
    // The TF2 export: every method_name is predict, and tf.Example still works.
    let server = serve_tf("tf2", &tfs_testdata("saved_model_half_plus_two_tf2_cpu"), &flags);
    let (_, body) = post(
        &server,
        "/v1/models/tf2:classify",
        json!({"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}),
    )
    .await;
    assert_eq!(body, json!({"results": [[["", 3.0]]]}));
    let metadata: Value =
        reqwest::get(server.url("/v1/models/tf2/metadata")).await.expect("get").json().await.expect("json");
    let signatures = &metadata["metadata"]["signature_def"]["signature_def"];
    assert!(signatures.get("__saved_model_init_op").is_some(), "shown as TF Serving shows it: {metadata}");
    // TF Serving's golden TF2 metadata is for a two-version copy of this model; the
    // signatures are the same.
    assert_matches_golden(&server, "tf2", "saved_model_half_plus_two_tf2_2_versions_metadata.json").await;
    drop(server);
    // half_plus_three: y = 0.5x + 3, TF's regress signature name included.
    let server = serve_tf("three", &tfs_testdata("saved_model_half_plus_three"), &flags);
    let (_, body) = post(
        &server,
        "/v1/models/three:regress",
        json!({"signature_name": "tensorflow/serving/regress", "examples": [{"x": 2.0}]}),
    )
    .await;
    assert_eq!(body, json!({"results": [4.0]}));
    drop(server);
    // The stateful counter cannot become ONNX, and says so.
    let (code, output) = run_to_exit(
        &[
            "--model_name=counter",
            &format!("--model_base_path={}", tfs_testdata("saved_model_counter").display()),
            "--model_platform=tensorflow",
            "--max_num_load_retries=0",
            flags[0],
            flags[1],
        ],
        &[],
    );
    assert_ne!(code, Some(0));
    assert!(output.contains("is a float32_ref (a stateful variable reference), which ONNX cannot express"), "{output}");
}

#[test]
fn onnx_serving_convert_writes_a_conversion_the_server_uses() {
    let Some(python) = converter_python() else {
        skip_unless("ONNX_SERVING_CONVERTER_PYTHON (a Python with python/requirements-convert.txt)", false);
        return;
    };
    let out = tempfile::tempdir().expect("out");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_onnx-serving"))
        .args([
            "convert",
            &format!("--saved_model_dir={}", repo_path("tests/fixtures/saved_model_counter/1").display()),
            &format!("--output_dir={}", out.path().display()),
            &format!("--python={python}"),
        ])
        .output()
        .expect("run convert");
    assert!(!status.status.success());
    assert!(String::from_utf8_lossy(&status.stderr).contains("which ONNX cannot express"));
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_onnx-serving"))
        .args([
            "convert",
            &format!("--saved_model_dir={}", repo_path("models/half_plus_two_tf/123").display()),
            &format!("--output_dir={}", out.path().display()),
            &format!("--python={python}"),
        ])
        .output()
        .expect("run convert");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("manifest.json")).expect("manifest"))
            .expect("json");
    let signatures = manifest["signatures"].as_object().expect("signatures");
    assert_eq!(signatures.len(), 5);
    let spec = &signatures["classify_x_to_y"]["example_spec"];
    assert_eq!(spec["features"][0]["key"], "x");
    assert_eq!(spec["features"][1]["default"], json!([0.0]));
    assert_eq!(spec["features"][1]["used"], false);
    // Plain signatures take any rank, as TF does; tf.Example ones take the parsed features.
    assert_eq!(signatures["serving_default"]["lenient_shapes"], true);
    assert_eq!(signatures["classify_x_to_y"]["lenient_shapes"], false);

    // Asked to keep the declared shapes, it does.
    let kept = tempfile::tempdir().expect("out");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_onnx-serving"))
        .args([
            "convert",
            &format!("--saved_model_dir={}", repo_path("models/half_plus_two_tf/123").display()),
            &format!("--output_dir={}", kept.path().display()),
            &format!("--python={python}"),
            "--keep_declared_shapes",
        ])
        .output()
        .expect("run convert");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(kept.path().join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["signatures"]["serving_default"]["lenient_shapes"], false);
}

#[tokio::test]
async fn tf_servings_command_line_needs_no_platform_flag() {
    // TF Serving's own form: no --model_platform. The version directory decides.
    let args = ["--model_name=default", "--conversion_python=/nonexistent", "--max_num_load_retries=0"];
    let tf_base = format!("--model_base_path={}", repo_path("models/half_plus_two_tf").display());
    let server = ServerProcess::start_logged(&[args[0], args[1], args[2], tf_base.as_str()], &[]);
    check_half_plus_two_rest(&server, "default").await;
    let detected = server.log_lines_with("model platform detected");
    assert!(
        detected.iter().any(|l| l.contains("platform=\"tensorflow\"") || l.contains("platform=tensorflow")),
        "{detected:?}"
    );
    assert!(detected.iter().any(|l| l.contains("saved_model.pb is a SavedModel")), "{detected:?}");
    drop(server);

    let onnx_base = format!("--model_base_path={}", repo_path("models/half_plus_two").display());
    let server = ServerProcess::start_logged(&[args[0], args[2], onnx_base.as_str()], &[]);
    let (status, body) = post(&server, "/v1/models/default:predict", json!({"instances": [1.0, 2.0, 5.0]})).await;
    assert_eq!((status, body), (200, json!({"predictions": [2.5, 3.0, 4.5]})));
    assert!(server.log_lines_with("is an ONNX model").len() == 1, "{:?}", server.log_lines_with("platform"));

    // A directory of neither kind ends with a message that says what to do.
    let empty = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(empty.path().join("1")).expect("mkdir");
    // NOTE: not empty, as an empty version directory is not aspired yet.
    std::fs::write(empty.path().join("1/README.txt"), "a model goes here").expect("write");
    let (code, output) = run_to_exit(
        &["--model_name=m", "--max_num_load_retries=0", &format!("--model_base_path={}", empty.path().display())],
        &[],
    );
    assert_eq!(code, Some(255), "{output}");
    assert!(output.contains("cannot tell the platform of") && output.contains("--model_platform"), "{output}");
}

/// Writes the two SavedModels of TF Serving's `test_tf_saved_model_save` and
/// `test_tf_saved_model_save_multiple_signatures`, as those tests build them (facts: a
/// `tf.train.Checkpoint` root, an input spec of unknown rank, and outputs that are constants),
/// and a Keras 3 `model.export()` (`serve` and `serving_default` of one function).
const TF_SAVED_MODEL_SAVE: &str = r#"
import sys
import tensorflow as tf
out = sys.argv[1]
root = tf.train.Checkpoint()
root.v1 = tf.Variable(3.)
root.v2 = tf.Variable(2.)
root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
tf.saved_model.save(root, out + "/save/00000123", root.f.get_concrete_function(tf.TensorSpec(None, tf.float32)))
both = tf.train.Checkpoint()
both.f = tf.function(lambda x: {"y": 1.}, input_signature=[tf.TensorSpec(None, tf.float32)])
both.g = tf.function(lambda x: {"y": 2.}, input_signature=[tf.TensorSpec(None, tf.float32)])
tf.saved_model.save(both, out + "/multiple/00000123",
                    signatures={"serving_default": both.f, "custom_signature_key": both.g})
import keras
keras.utils.set_random_seed(1)
model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="ones")])
model.export(out + "/keras/1")
"#;

#[tokio::test]
async fn tf_saved_model_save_exports_serve_every_signature() {
    let Some(python) = converter_python() else {
        skip_unless("ONNX_SERVING_CONVERTER_PYTHON (a Python with python/requirements-convert.txt)", false);
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let made = std::process::Command::new(&python)
        .args(["-c", TF_SAVED_MODEL_SAVE])
        .arg(dir.path())
        .env("TF_CPP_MIN_LOG_LEVEL", "2")
        .output()
        .expect("run python");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let cache = tempfile::tempdir().expect("cache");
    let flags = [format!("--conversion_python={python}"), format!("--conversion_cache_dir={}", cache.path().display())];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    // TF Serving's VerifyPredictRequest: x = [2.0] of shape [1], optionally filtering on y.
    let request = |signature: &str, filter: bool| predict_x(signature, &[1], vec![2.0], filter);
    for (model, cases) in
        [("save", vec![("", false, 12.0)]), ("multiple", vec![("custom_signature_key", true, 2.0), ("", true, 1.0)])]
    {
        let server = serve_tf("default", &dir.path().join(model), &flags);
        let address = server.grpc_address.expect("gRPC");
        let mut client = PredictionServiceClient::connect(format!("http://{address}")).await.expect("connect");
        for (signature, filter, expected) in cases {
            let response = client.predict(request(signature, filter)).await.expect("predict").into_inner();
            let y = &response.outputs["y"];
            assert_eq!(y.dtype, 1, "{model} {signature}: DT_FLOAT");
            assert_eq!(y.float_val, vec![expected], "{model} {signature}");
            let echoed = response.model_spec.expect("model_spec");
            let name = if signature.is_empty() { "serving_default" } else { signature };
            assert_eq!(echoed.signature_name, name, "{model}");
            assert_eq!(echoed.version_choice, Some(model_spec::VersionChoice::Version(123)), "{model}");
        }
    }

    // Keras 3: `serve` and `serving_default` are one function, converted once and loaded once.
    let keras_cache = tempfile::tempdir().expect("cache");
    let keras_flags =
        [format!("--conversion_python={python}"), format!("--conversion_cache_dir={}", keras_cache.path().display())];
    let keras_flags: Vec<&str> = keras_flags.iter().map(String::as_str).collect();
    let server = serve_tf("keras", &dir.path().join("keras"), &keras_flags);
    for signature in ["serve", "serving_default"] {
        let (status, body) =
            post(&server, "/v1/models/keras:predict", json!({"signature_name": signature, "instances": [[2.0]]})).await;
        assert_eq!((status, body), (200, json!({"predictions": [[3.0]]})), "{signature}");
    }
    let conversions: Vec<_> = std::fs::read_dir(keras_cache.path()).expect("cache").flatten().collect();
    assert_eq!(conversions.len(), 1, "one conversion in the cache");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(conversions[0].path().join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["signatures"]["serve"]["file"], manifest["signatures"]["serving_default"]["file"]);
    server.wait_for_log_line("sessions created").await;
    let sessions = server.log_lines_with("sessions created");
    assert_eq!(sessions.len(), 1, "one set of sessions for both signatures: {sessions:?}");
}

#[test]
fn a_conversion_that_cannot_succeed_is_remembered_for_its_content() {
    let Some(python) = converter_python() else {
        skip_unless("ONNX_SERVING_CONVERTER_PYTHON (a Python with python/requirements-convert.txt)", false);
        return;
    };
    let cache = tempfile::tempdir().expect("cache");
    let args = [
        "--model_name=counter".to_string(),
        format!("--model_base_path={}", repo_path("tests/fixtures/saved_model_counter").display()),
        format!("--conversion_python={python}"),
        format!("--conversion_cache_dir={}", cache.path().display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reason = "which ONNX cannot express";
    let (code, first) = run_to_exit(&args, &[]);
    assert_eq!(code, Some(255), "{first}");
    assert!(first.contains(reason) && !first.contains("remembered"), "{first}");
    // A restart does not run the converter again: the failure is remembered for this content.
    let (code, second) = run_to_exit(&args, &[]);
    assert_eq!(code, Some(255), "{second}");
    assert!(second.contains(reason) && second.contains("remembered from an earlier attempt"), "{second}");
    assert!(!second.contains("converting the SavedModel to ONNX"), "{second}");
}

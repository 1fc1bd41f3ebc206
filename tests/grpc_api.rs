//! TF Serving's gRPC API against the real runtime and real models, through a tonic client
//! over real sockets (TCP and a Unix socket).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{repo_path, start_server, test_config, ServerProcess};
use onnx_serving::proto::tensorflow::serving::model_service_client::ModelServiceClient;
use onnx_serving::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use onnx_serving::proto::tensorflow::serving::{
    inference_result, input, model_server_config, model_spec, ClassificationRequest, ExampleList,
    ExampleListWithContext, GetModelMetadataRequest, GetModelStatusRequest, InferenceTask, Input, ModelConfig,
    ModelConfigList, ModelServerConfig, ModelSpec, MultiInferenceRequest, PredictRequest, RegressionRequest,
    ReloadConfigRequest, SignatureDefMap,
};
use onnx_serving::proto::tensorflow::{
    feature, tensor_shape_proto, Example, Feature, Features, FloatList, TensorProto, TensorShapeProto,
};
use onnx_serving::server::{start, RunningServer};
use prost::Message;
use tonic::transport::Channel;
use tonic::Code;

fn spec(name: &str) -> Option<ModelSpec> {
    Some(ModelSpec { name: name.into(), ..Default::default() })
}

fn shape(dims: &[i64]) -> Option<TensorShapeProto> {
    Some(TensorShapeProto {
        dim: dims.iter().map(|&size| tensor_shape_proto::Dim { size, name: String::new() }).collect(),
        unknown_rank: false,
    })
}

fn floats(dims: &[i64], values: Vec<f32>) -> TensorProto {
    TensorProto { dtype: 1, tensor_shape: shape(dims), float_val: values, ..Default::default() }
}

fn float_content(dims: &[i64], values: &[f32]) -> TensorProto {
    let content: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    TensorProto { dtype: 1, tensor_shape: shape(dims), tensor_content: Bytes::from(content), ..Default::default() }
}

fn predict_request(model: Option<ModelSpec>, inputs: Vec<(&str, TensorProto)>) -> PredictRequest {
    PredictRequest {
        model_spec: model,
        inputs: inputs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        ..Default::default()
    }
}

async fn channel(server: &RunningServer) -> Channel {
    let address = server.grpc_address.expect("gRPC is on");
    Channel::from_shared(format!("http://{address}")).expect("uri").connect().await.expect("connect")
}

fn assert_status(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, message: &str) {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "{}", status.message());
    assert_eq!(status.message(), message);
}

#[tokio::test]
async fn predict_reads_both_encodings_and_answers_in_typed_fields() {
    let server = start_server(&[("half_plus_two", repo_path("models/half_plus_two"))]).await;
    let mut client = PredictionServiceClient::new(channel(&server).await);

    let request = predict_request(spec("half_plus_two"), vec![("x", floats(&[3], vec![1.0, 2.0, 5.0]))]);
    let response = client.predict(request).await.expect("predict").into_inner();
    let y = &response.outputs["y"];
    assert_eq!(y.float_val, vec![2.5, 3.0, 4.5]);
    assert!(y.tensor_content.is_empty(), "typed fields by default, as clients read float_val");
    assert_eq!(y.dtype, 1);
    assert_eq!(y.tensor_shape, shape(&[3]));
    let echoed = response.model_spec.expect("model_spec");
    assert_eq!(echoed.name, "half_plus_two");
    assert_eq!(echoed.signature_name, "serving_default");
    assert_eq!(echoed.version_choice, Some(model_spec::VersionChoice::Version(1)));

    let content = predict_request(spec("half_plus_two"), vec![("x", float_content(&[2, 2], &[1.0, 2.0, 3.0, 4.0]))]);
    let response = client.predict(content).await.expect("predict").into_inner();
    assert_eq!(response.outputs["y"].float_val, vec![2.5, 3.0, 3.5, 4.0]);
    assert_eq!(response.outputs["y"].tensor_shape, shape(&[2, 2]));

    // Fewer values than elements: the last one repeats. None: zeros. A scalar keeps `[]`.
    let repeated = predict_request(spec("half_plus_two"), vec![("x", floats(&[3], vec![2.0]))]);
    assert_eq!(client.predict(repeated).await.expect("predict").into_inner().outputs["y"].float_val, vec![3.0; 3]);
    let zeros = predict_request(spec("half_plus_two"), vec![("x", floats(&[2], vec![]))]);
    assert_eq!(client.predict(zeros).await.expect("predict").into_inner().outputs["y"].float_val, vec![2.0; 2]);
    let scalar = predict_request(spec("half_plus_two"), vec![("x", floats(&[], vec![4.0]))]);
    let y = client.predict(scalar).await.expect("predict").into_inner().outputs["y"].clone();
    assert_eq!((y.float_val, y.tensor_shape), (vec![4.0], Some(TensorShapeProto::default())));

    // A specific version, and an output filter naming the one output.
    let mut versioned = predict_request(
        Some(ModelSpec {
            name: "half_plus_two".into(),
            version_choice: Some(model_spec::VersionChoice::Version(1)),
            signature_name: "serving_default".into(),
        }),
        vec![("x", floats(&[1], vec![10.0]))],
    );
    versioned.output_filter = vec!["y".into()];
    assert_eq!(client.predict(versioned).await.expect("predict").into_inner().outputs["y"].float_val, vec![7.0]);
    server.shutdown().await;
}

#[tokio::test]
async fn mnist_takes_tensor_content_as_tf_make_tensor_proto_sends_it() {
    let server = start_server(&[("mnist", repo_path("models/mnist_onnx"))]).await;
    let mut client = PredictionServiceClient::new(channel(&server).await);
    let image: Vec<f32> = (0..784).map(|i| if (300..480).contains(&i) { 1.0 } else { 0.0 }).collect();
    let request = predict_request(spec("mnist"), vec![("images", float_content(&[1, 784], &image))]);
    let response = client.predict(request).await.expect("predict").into_inner();
    let scores = &response.outputs["scores"];
    assert_eq!(scores.float_val.len(), 10);
    assert!((scores.float_val.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    assert_eq!(scores.tensor_shape, shape(&[1, 10]));
    assert_eq!(response.model_spec.and_then(|s| s.version_choice), Some(model_spec::VersionChoice::Version(2)));
    server.shutdown().await;
}

#[tokio::test]
async fn predict_errors_follow_the_spec() {
    let server = start_server(&[("half_plus_two", repo_path("models/half_plus_two"))]).await;
    let mut client = PredictionServiceClient::new(channel(&server).await);
    let x = || vec![("x", floats(&[1], vec![1.0]))];

    assert_status(client.predict(predict_request(None, x())).await, Code::InvalidArgument, "Missing ModelSpec");
    assert_status(
        client.predict(predict_request(spec(""), x())).await,
        Code::InvalidArgument,
        "ModelSpec has no name specified.",
    );
    assert_status(
        client.predict(predict_request(spec("nope"), x())).await,
        Code::NotFound,
        "Servable not found for request: Latest(nope)",
    );
    let version = |v| {
        Some(ModelSpec {
            name: "half_plus_two".into(),
            version_choice: Some(model_spec::VersionChoice::Version(v)),
            ..Default::default()
        })
    };
    assert_status(
        client.predict(predict_request(version(9), x())).await,
        Code::NotFound,
        "Servable not found for request: Specific(half_plus_two, 9)",
    );
    let label = Some(ModelSpec {
        name: "half_plus_two".into(),
        version_choice: Some(model_spec::VersionChoice::VersionLabel("canary".into())),
        ..Default::default()
    });
    assert_status(
        client.predict(predict_request(label, x())).await,
        Code::InvalidArgument,
        "Unrecognized servable version label: canary",
    );
    let signature =
        Some(ModelSpec { name: "half_plus_two".into(), signature_name: "nope".into(), ..Default::default() });
    assert_status(
        client.predict(predict_request(signature, x())).await,
        Code::FailedPrecondition,
        "Serving signature key \"nope\" not found.",
    );
    let extra =
        predict_request(spec("half_plus_two"), vec![("x", floats(&[1], vec![1.0])), ("z", floats(&[1], vec![]))]);
    assert_status(
        client.predict(extra).await,
        Code::InvalidArgument,
        "input size does not match signature: 2!=1 len({x,z}) != len({x}). Sent extra: {z}. Missing but required: {}.",
    );
    let short = predict_request(spec("half_plus_two"), vec![("x", float_content(&[3], &[1.0, 2.0]))]);
    let status = client.predict(short).await.expect_err("size mismatch");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("tensor parsing error: x ("), "{}", status.message());
    let negative = predict_request(spec("half_plus_two"), vec![("x", floats(&[-2], vec![1.0]))]);
    let status = client.predict(negative).await.expect_err("negative dim");
    assert!(status.message().starts_with("tensor parsing error: x") && status.message().contains("negative"));
    let overflow = predict_request(spec("half_plus_two"), vec![("x", floats(&[1 << 62, 1 << 62], vec![1.0]))]);
    let status = client.predict(overflow).await.expect_err("overflow");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("too many elements"), "{}", status.message());
    let unsupported = TensorProto { dtype: 20, tensor_shape: shape(&[1]), ..Default::default() };
    let status =
        client.predict(predict_request(spec("half_plus_two"), vec![("x", unsupported)])).await.expect_err("dtype");
    assert!(status.message().contains("dtype 20 is not supported"), "{}", status.message());
    let wrong_type = TensorProto { dtype: 3, tensor_shape: shape(&[1]), int_val: vec![1], ..Default::default() };
    let status =
        client.predict(predict_request(spec("half_plus_two"), vec![("x", wrong_type)])).await.expect_err("type");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("to be float but int32 is provided"), "{}", status.message());

    let mut filtered = predict_request(spec("half_plus_two"), x());
    filtered.output_filter = vec!["nope".into()];
    assert_status(
        client.predict(filtered.clone()).await,
        Code::InvalidArgument,
        "output tensor alias not found in signature: nope Outputs expected to be in the set {y}.",
    );
    filtered.output_filter = vec!["y".into(), "y".into()];
    assert_status(client.predict(filtered).await, Code::InvalidArgument, "duplicate output tensor alias: y");

    // Long messages are cut at 1024 characters, as TF Serving does.
    let long_name = "m".repeat(3000);
    let status = client.predict(predict_request(spec(&long_name), x())).await.expect_err("not found");
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().ends_with("...TRUNCATED"));
    assert_eq!(status.message().len(), 1024 + "...TRUNCATED".len());
    server.shutdown().await;
}

#[tokio::test]
async fn metadata_carries_the_signature_def_map() {
    let server = start_server(&[("mnist", repo_path("models/mnist_onnx"))]).await;
    let mut client = PredictionServiceClient::new(channel(&server).await);
    let request = GetModelMetadataRequest { model_spec: spec("mnist"), metadata_field: vec!["signature_def".into()] };
    let response = client.get_model_metadata(request).await.expect("metadata").into_inner();
    let echoed = response.model_spec.expect("model_spec");
    assert_eq!((echoed.name.as_str(), echoed.signature_name.as_str()), ("mnist", ""));
    assert_eq!(echoed.version_choice, Some(model_spec::VersionChoice::Version(2)));
    let any = &response.metadata["signature_def"];
    assert_eq!(any.type_url, "type.googleapis.com/tensorflow.serving.SignatureDefMap");
    let map = SignatureDefMap::decode(any.value.as_slice()).expect("SignatureDefMap");
    let signature = &map.signature_def["serving_default"];
    assert_eq!(signature.method_name, "tensorflow/serving/predict");
    let images = &signature.inputs["images"];
    assert_eq!(images.dtype, 1);
    assert_eq!(images.tensor_shape, shape(&[-1, 784]));
    assert_eq!(signature.outputs["scores"].tensor_shape, shape(&[-1, 10]));

    assert_status(
        client.get_model_metadata(GetModelMetadataRequest { model_spec: spec("mnist"), metadata_field: vec![] }).await,
        Code::InvalidArgument,
        "GetModelMetadataRequest must specify at least one metadata_field",
    );
    let unsupported = GetModelMetadataRequest { model_spec: spec("mnist"), metadata_field: vec!["graph".into()] };
    assert_status(
        client.get_model_metadata(unsupported).await,
        Code::InvalidArgument,
        "Metadata field graph is not supported",
    );
    let missing = GetModelMetadataRequest { model_spec: None, metadata_field: vec!["signature_def".into()] };
    assert_status(client.get_model_metadata(missing).await, Code::InvalidArgument, "Missing ModelSpec");
    let unknown = GetModelMetadataRequest { model_spec: spec("x"), metadata_field: vec!["signature_def".into()] };
    assert_status(
        client.get_model_metadata(unknown).await,
        Code::NotFound,
        "Servable not found for request: Latest(x)",
    );
    server.shutdown().await;
}

fn example(x: Option<f32>) -> Example {
    let feature = x.map(|x| Feature { kind: Some(feature::Kind::FloatList(FloatList { value: vec![x] })) });
    Example { features: Some(Features { feature: feature.map(|f| ("x".to_string(), f)).into_iter().collect() }) }
}

fn example_input(values: &[f32]) -> Option<Input> {
    let examples = values.iter().map(|&x| example(Some(x))).collect();
    Some(Input { kind: Some(input::Kind::ExampleList(ExampleList { examples })) })
}

#[tokio::test]
async fn classify_regress_and_multi_inference_parse_tf_examples() {
    let server = start_server(&[
        ("hpt", repo_path("tests/fixtures/example_half_plus_two")),
        ("half_plus_two", repo_path("models/half_plus_two")),
    ])
    .await;
    let mut client = PredictionServiceClient::new(channel(&server).await);
    let response = client
        .classify(ClassificationRequest { model_spec: spec("hpt"), input: example_input(&[2.0, 3.0]) })
        .await
        .expect("classify")
        .into_inner();
    let classes: Vec<Vec<(String, f32)>> = response
        .result
        .expect("result")
        .classifications
        .iter()
        .map(|c| c.classes.iter().map(|class| (class.label.clone(), class.score)).collect())
        .collect();
    assert_eq!(classes, vec![vec![("y".to_string(), 3.0)], vec![("y".to_string(), 3.5)]]);
    let echoed = response.model_spec.expect("model_spec");
    assert_eq!((echoed.name.as_str(), echoed.signature_name.as_str()), ("hpt", "serving_default"));
    // Context: the example wins; an example without x takes the context's.
    let with_context = Input {
        kind: Some(input::Kind::ExampleListWithContext(ExampleListWithContext {
            examples: vec![example(Some(4.0)), example(None)],
            context: Some(example(Some(10.0))),
        })),
    };
    let response = client
        .regress(RegressionRequest { model_spec: spec("hpt"), input: Some(with_context) })
        .await
        .expect("regress")
        .into_inner();
    let values: Vec<f32> = response.result.expect("result").regressions.iter().map(|r| r.value).collect();
    assert_eq!(values, vec![4.0, 7.0]);

    let task = |signature: &str, method: &str| InferenceTask {
        model_spec: Some(ModelSpec { name: "hpt".into(), signature_name: signature.into(), ..Default::default() }),
        method_name: method.into(),
    };
    let response = client
        .multi_inference(MultiInferenceRequest {
            tasks: vec![task("", "tensorflow/serving/regress")],
            input: example_input(&[2.0]),
        })
        .await
        .expect("multi inference")
        .into_inner();
    assert_eq!(response.results.len(), 1);
    match &response.results[0].result {
        Some(inference_result::Result::RegressionResult(result)) => assert_eq!(result.regressions[0].value, 3.0),
        other => panic!("expected a regression result, got {other:?}"),
    }
    assert_eq!(response.results[0].model_spec.as_ref().map(|s| s.signature_name.as_str()), Some("serving_default"));

    // TF Serving's errors.
    assert_status(
        client.classify(ClassificationRequest { model_spec: spec("hpt"), input: None }).await,
        Code::InvalidArgument,
        "Input is empty.",
    );
    let missing_x = Some(Input { kind: Some(input::Kind::ExampleList(ExampleList { examples: vec![example(None)] })) });
    assert_status(
        client.regress(RegressionRequest { model_spec: spec("hpt"), input: missing_x }).await,
        Code::InvalidArgument,
        "Name: <unknown>, Feature: x (data type: float) is required but could not be found.",
    );
    // half_plus_two's input has no shape, so no feature spec follows from it.
    let status = client
        .classify(ClassificationRequest { model_spec: spec("half_plus_two"), input: example_input(&[1.0]) })
        .await
        .expect_err("unknown rank");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("cannot be fed from tf.Example features"), "{}", status.message());
    assert_status(
        client.classify(ClassificationRequest { model_spec: spec("nope"), input: None }).await,
        Code::NotFound,
        "Servable not found for request: Latest(nope)",
    );
    let signature = Some(ModelSpec { name: "hpt".into(), signature_name: "missing".into(), ..Default::default() });
    assert_status(
        client.regress(RegressionRequest { model_spec: signature, input: example_input(&[1.0]) }).await,
        Code::InvalidArgument,
        "No signature was found with the name: missing",
    );
    assert_status(
        client.regress(RegressionRequest { model_spec: None, input: None }).await,
        Code::InvalidArgument,
        "Missing ModelSpec",
    );

    let multi = |tasks| MultiInferenceRequest { tasks, input: example_input(&[1.0]) };
    let named = |name: &str, signature: &str| InferenceTask {
        model_spec: Some(ModelSpec { name: name.into(), signature_name: signature.into(), ..Default::default() }),
        method_name: "tensorflow/serving/classify".into(),
    };
    assert_status(
        client.multi_inference(multi(vec![named("hpt", "a"), named("other", "b")])).await,
        Code::InvalidArgument,
        "All ModelSpecs in a MultiInferenceRequest must access the same model name.",
    );
    assert_status(
        client.multi_inference(multi(vec![named("hpt", "a"), named("hpt", "a")])).await,
        Code::InvalidArgument,
        "Duplicate evaluation of signature: a",
    );
    assert_status(
        client.multi_inference(multi(vec![named("", "a")])).await,
        Code::InvalidArgument,
        "Found ModelSpec with an empty model name.",
    );
    assert_status(
        client.multi_inference(multi(vec![task("serving_default", "tensorflow/serving/predict")])).await,
        Code::Unimplemented,
        "Unsupported signature method_name: tensorflow/serving/predict",
    );
    server.shutdown().await;
}

#[tokio::test]
async fn model_status_lists_versions() {
    let server = start_server(&[("mnist", repo_path("models/mnist_onnx"))]).await;
    let mut client = ModelServiceClient::new(channel(&server).await);
    let response = client.get_model_status(GetModelStatusRequest { model_spec: spec("mnist") }).await.expect("status");
    let statuses = response.into_inner().model_version_status;
    assert_eq!(statuses.len(), 1);
    assert_eq!((statuses[0].version, statuses[0].state), (2, 30));
    let ok = statuses[0].status.clone().expect("status");
    assert_eq!((ok.error_code, ok.error_message.as_str()), (0, ""));

    let version = |v| {
        Some(ModelSpec {
            name: "mnist".into(),
            version_choice: Some(model_spec::VersionChoice::Version(v)),
            ..Default::default()
        })
    };
    assert!(client.get_model_status(GetModelStatusRequest { model_spec: version(2) }).await.is_ok());
    assert_status(
        client.get_model_status(GetModelStatusRequest { model_spec: version(1) }).await,
        Code::NotFound,
        "Could not find version 1 of model mnist",
    );
    assert_status(
        client.get_model_status(GetModelStatusRequest { model_spec: spec("nope") }).await,
        Code::NotFound,
        "Could not find any versions of model nope",
    );
    assert_status(
        client.get_model_status(GetModelStatusRequest { model_spec: None }).await,
        Code::InvalidArgument,
        "Missing ModelSpec",
    );
    server.shutdown().await;
}

fn config_list(models: &[(&str, std::path::PathBuf, &str)]) -> ReloadConfigRequest {
    let config = models
        .iter()
        .map(|(name, path, platform)| ModelConfig {
            name: name.to_string(),
            base_path: path.display().to_string(),
            model_platform: platform.to_string(),
            ..Default::default()
        })
        .collect();
    ReloadConfigRequest {
        config: Some(ModelServerConfig {
            config: Some(model_server_config::Config::ModelConfigList(ModelConfigList { config })),
        }),
        metric_names: vec![],
    }
}

#[tokio::test]
async fn reload_config_adds_and_removes_models() {
    let server = start_server(&[("half_plus_two", repo_path("models/half_plus_two"))]).await;
    let channel = channel(&server).await;
    let mut models = ModelServiceClient::new(channel.clone());
    let mut predictions = PredictionServiceClient::new(channel);

    // Adding a model: the call returns once the new model is loaded.
    let both = config_list(&[
        ("half_plus_two", repo_path("models/half_plus_two"), "onnx"),
        ("mnist", repo_path("models/mnist_onnx"), "onnx"),
    ]);
    let response = models.handle_reload_config_request(both).await.expect("reload").into_inner();
    assert_eq!(response.status.map(|s| s.error_code), Some(0));
    let image = float_content(&[1, 784], &[0.5; 784]);
    let scores = predictions.predict(predict_request(spec("mnist"), vec![("images", image)])).await.expect("mnist");
    assert_eq!(scores.into_inner().outputs["scores"].float_val.len(), 10);

    // Removing a model unloads it; its versions stay listed as END.
    let only_mnist = config_list(&[("mnist", repo_path("models/mnist_onnx"), "pytorch")]);
    models.handle_reload_config_request(only_mnist).await.expect("reload");
    let x = vec![("x", floats(&[1], vec![1.0]))];
    let mut gone = None;
    for _ in 0..200 {
        match predictions.predict(predict_request(spec("half_plus_two"), x.clone())).await {
            Err(status) => {
                gone = Some(status);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let gone = gone.expect("half_plus_two unloads");
    assert_eq!(gone.code(), Code::NotFound);
    let status = models.get_model_status(GetModelStatusRequest { model_spec: spec("half_plus_two") }).await;
    let states: Vec<i32> = status.expect("status").into_inner().model_version_status.iter().map(|s| s.state).collect();
    assert!(states == vec![40] || states == vec![50], "UNLOADING or END: {states:?}");

    // Added back at once, while its version may still be unloading: the reload returns once
    // it serves again.
    let mnist = ("mnist", repo_path("models/mnist_onnx"), "pytorch");
    let half_plus_two = ("half_plus_two", repo_path("models/half_plus_two"), "onnx");
    let again = config_list(&[mnist.clone(), half_plus_two.clone()]);
    models.handle_reload_config_request(again).await.expect("re-added");
    let y = predictions.predict(predict_request(spec("half_plus_two"), x.clone())).await.expect("serves again");
    assert_eq!(y.into_inner().outputs["y"].float_val, vec![2.5]);

    // A model whose base path holds no version yet: answered at once with TF Serving's
    // message; the config applies, so the others keep serving.
    let empty = tempfile::tempdir().expect("tempdir");
    let with_empty = config_list(&[mnist, half_plus_two, ("later", empty.path().to_path_buf(), "onnx")]);
    let status = models.handle_reload_config_request(with_empty).await.expect_err("no versions");
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    let expected = format!("No versions of servable later found under base path {}", empty.path().display());
    assert!(status.message().contains(&expected), "{}", status.message());
    assert!(predictions.predict(predict_request(spec("half_plus_two"), x.clone())).await.is_ok());

    // Errors leave the served models alone.
    let custom = ReloadConfigRequest {
        config: Some(ModelServerConfig {
            config: Some(model_server_config::Config::CustomModelConfig(Default::default())),
        }),
        metric_names: vec![],
    };
    let status = models.handle_reload_config_request(custom).await.expect_err("custom config");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("ServerModelConfig type not supported by HandleReloadConfigRequest"));
    let unknown_platform = config_list(&[("mnist", repo_path("models/mnist_onnx"), "caffe")]);
    let status = models.handle_reload_config_request(unknown_platform).await.expect_err("platform");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("Model mnist requests unsupported platform caffe"), "{}", status.message());
    let missing = config_list(&[("mnist", "/nonexistent/mnist".into(), "onnx")]);
    let status = models.handle_reload_config_request(missing).await.expect_err("missing path");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "Could not find base path /nonexistent/mnist for servable mnist");
    let image = float_content(&[1, 784], &[0.5; 784]);
    assert!(predictions.predict(predict_request(spec("mnist"), vec![("images", image)])).await.is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn health_and_reflection_services_answer() {
    let mut config = test_config(&[("half_plus_two", repo_path("models/half_plus_two"))]);
    config.grpc.enable_health_service = true;
    let server = start(config).await.expect("server starts");
    let channel = channel(&server).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "tensorflow.serving.PredictionService", "ModelService"] {
        let request = tonic_health::pb::HealthCheckRequest { service: service.into() };
        let response = health.check(request).await.expect("check").into_inner();
        assert_eq!(
            response.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream =
        reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.expect("reflection").into_inner();
    let response = stream.message().await.expect("message").expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn message_cap_and_serialization_flag_apply() {
    let mut config = test_config(&[("half_plus_two", repo_path("models/half_plus_two"))]);
    config.serialize_as_tensor_content = true;
    config
        .grpc
        .apply_channel_arguments("grpc.max_receive_message_length=4096,grpc.lb_policy_name=grpclb")
        .expect("args");
    let server = start(config).await.expect("server starts");
    let mut client = PredictionServiceClient::new(channel(&server).await);
    let small = predict_request(spec("half_plus_two"), vec![("x", floats(&[2], vec![1.0, 3.0]))]);
    let y = client.predict(small).await.expect("predict").into_inner().outputs["y"].clone();
    assert!(y.float_val.is_empty());
    let values: Vec<f32> =
        y.tensor_content.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(values, vec![2.5, 3.5]);
    let large = predict_request(spec("half_plus_two"), vec![("x", float_content(&[2000], &[1.0; 2000]))]);
    let status = client.predict(large).await.expect_err("over the receive cap");
    assert_eq!(status.code(), Code::OutOfRange, "{}", status.message());
    server.shutdown().await;
}

#[tokio::test]
async fn binary_serves_a_unix_socket_over_a_stale_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("grpc.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind a socket that goes stale"));
    assert!(socket.exists(), "the stale socket file is left behind");
    let base = repo_path("models/half_plus_two");
    let _server = ServerProcess::start(&[
        "--model_name=half_plus_two",
        &format!("--model_base_path={}", base.display()),
        &format!("--grpc_socket_path={}", socket.display()),
    ]);
    let path = socket.clone();
    let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect over the Unix socket");
    let mut client = PredictionServiceClient::new(channel);
    let request = predict_request(spec("half_plus_two"), vec![("x", floats(&[1], vec![4.0]))]);
    assert_eq!(client.predict(request).await.expect("predict").into_inner().outputs["y"].float_val, vec![4.0]);
}

fn slow_request(iterations: i64) -> PredictRequest {
    let iterations =
        TensorProto { dtype: 9, tensor_shape: shape(&[]), int64_val: vec![iterations], ..Default::default() };
    predict_request(spec("slow"), vec![("iterations", iterations), ("x", floats(&[1, 64], vec![0.5]))])
}

#[tokio::test]
async fn deadlines_and_departed_clients_stop_the_running_model() {
    // The slow_loop model runs `iterations` steps on its one worker thread: an endless run
    // that is not terminated would block every later request.
    let server = start_server(&[("slow", repo_path("tests/fixtures/slow_loop"))]).await;
    let mut client = PredictionServiceClient::new(channel(&server).await);

    let mut endless = tonic::Request::new(slow_request(i64::MAX));
    endless.set_timeout(Duration::from_millis(300));
    let status = client.predict(endless).await.expect_err("the deadline passes");
    assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
    let mut short = tonic::Request::new(slow_request(3));
    short.set_timeout(Duration::from_secs(60));
    let y = client.predict(short).await.expect("the worker is free again").into_inner().outputs["y"].clone();
    assert_eq!(y.float_val.len(), 64);

    // A client that stops waiting (no deadline sent) also frees the worker.
    let mut impatient = client.clone();
    let gave_up = tokio::time::timeout(Duration::from_millis(300), impatient.predict(slow_request(i64::MAX))).await;
    assert!(gave_up.is_err(), "the endless call is abandoned");
    drop(impatient);
    let mut short = tonic::Request::new(slow_request(3));
    short.set_timeout(Duration::from_secs(60));
    assert!(client.predict(short).await.is_ok(), "the abandoned run was stopped");
    server.shutdown().await;
}

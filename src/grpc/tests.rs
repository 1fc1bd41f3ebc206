//! The gRPC services in process: the tonic service impls are called directly, serving a fake
//! half-plus-two servable behind a real manager, with no ONNX Runtime and no sockets.

use std::sync::Arc;

use prost::Message;
use tonic::{Code, Request};

use super::{GrpcState, ModelServerConfigReloader, ModelServiceImpl, PredictionServiceImpl};
use crate::core::testing::serve_half_plus_two;
use crate::core::{ReloadFuture, ServingError};
use crate::proto::tensorflow::serving::model_service_server::ModelService;
use crate::proto::tensorflow::serving::prediction_service_server::PredictionService;
use crate::proto::tensorflow::serving::{
    model_spec, GetModelMetadataRequest, GetModelStatusRequest, ModelServerConfig, ModelSpec, PredictRequest,
    SignatureDefMap,
};
use crate::proto::tensorflow::{tensor_shape_proto, TensorProto, TensorShapeProto};

/// Refuses every reload: these tests never reload.
struct NoReload;

impl ModelServerConfigReloader for NoReload {
    fn reload(&self, _config: ModelServerConfig, _deadline: Option<std::time::Instant>) -> ReloadFuture {
        Box::pin(async { Err(ServingError::unimplemented("reload is not part of these tests")) })
    }
}

async fn state() -> GrpcState {
    GrpcState {
        manager: serve_half_plus_two("half_plus_two").await,
        reloader: Arc::new(NoReload),
        serialize_as_tensor_content: false,
        credentials: None,
        max_decoded_request_bytes: 1 << 20,
        budget: crate::core::MemoryBudget::new(1 << 20),
    }
}

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

fn predict_request(model: Option<ModelSpec>, inputs: Vec<(&str, TensorProto)>) -> PredictRequest {
    PredictRequest {
        model_spec: model,
        inputs: inputs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        ..Default::default()
    }
}

fn assert_status(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, message: &str) {
    let status = result.expect_err("the call should fail");
    assert_eq!((status.code(), status.message()), (code, message));
}

#[tokio::test]
async fn predict_computes_half_plus_two() {
    let service = PredictionServiceImpl::new(state().await);
    let request = predict_request(spec("half_plus_two"), vec![("x", floats(&[3, 1], vec![1.0, 2.0, 5.0]))]);
    let response = service.predict(Request::new(request)).await.expect("predict").into_inner();
    let y = &response.outputs["y"];
    assert_eq!((y.dtype, &y.tensor_shape, &y.float_val), (1, &shape(&[3, 1]), &vec![2.5, 3.0, 4.5]));
    let echoed = response.model_spec.expect("model spec");
    assert_eq!((echoed.name.as_str(), echoed.signature_name.as_str()), ("half_plus_two", "serving_default"));
    assert_eq!(echoed.version_choice, Some(model_spec::VersionChoice::Version(1)));
}

#[tokio::test]
async fn predict_on_unknown_model_or_version_is_not_found() {
    let service = PredictionServiceImpl::new(state().await);
    let x = || vec![("x", floats(&[1], vec![1.0]))];
    assert_status(
        service.predict(Request::new(predict_request(spec("missing"), x()))).await,
        Code::NotFound,
        "Servable not found for request: Latest(missing)",
    );
    let version = Some(ModelSpec {
        name: "half_plus_two".into(),
        version_choice: Some(model_spec::VersionChoice::Version(9)),
        ..Default::default()
    });
    assert_status(
        service.predict(Request::new(predict_request(version, x()))).await,
        Code::NotFound,
        "Servable not found for request: Specific(half_plus_two, 9)",
    );
}

#[tokio::test]
async fn predict_without_its_input_is_invalid() {
    let service = PredictionServiceImpl::new(state().await);
    assert_status(
        service.predict(Request::new(predict_request(spec("half_plus_two"), vec![]))).await,
        Code::InvalidArgument,
        "input size does not match signature: 0!=1 len({}) != len({x}). Sent extra: {}. Missing but required: {x}.",
    );
    assert_status(
        service.predict(Request::new(predict_request(None, vec![("x", floats(&[1], vec![1.0]))]))).await,
        Code::InvalidArgument,
        "Missing ModelSpec",
    );
}

#[tokio::test]
async fn metadata_lists_the_signature() {
    let service = PredictionServiceImpl::new(state().await);
    let request =
        GetModelMetadataRequest { model_spec: spec("half_plus_two"), metadata_field: vec!["signature_def".into()] };
    let response = service.get_model_metadata(Request::new(request)).await.expect("metadata").into_inner();
    let echoed = response.model_spec.expect("model spec");
    assert_eq!((echoed.name.as_str(), echoed.signature_name.as_str()), ("half_plus_two", ""));
    assert_eq!(echoed.version_choice, Some(model_spec::VersionChoice::Version(1)));
    let any = &response.metadata["signature_def"];
    assert_eq!(any.type_url, "type.googleapis.com/tensorflow.serving.SignatureDefMap");
    let map = SignatureDefMap::decode(any.value.as_slice()).expect("SignatureDefMap");
    let signature = &map.signature_def["serving_default"];
    assert_eq!(signature.method_name, "tensorflow/serving/predict");
    assert_eq!((signature.inputs["x"].dtype, &signature.inputs["x"].tensor_shape), (1, &shape(&[-1, 1])));
    assert_eq!((signature.outputs["y"].dtype, &signature.outputs["y"].tensor_shape), (1, &shape(&[-1, 1])));

    let empty = GetModelMetadataRequest { model_spec: spec("half_plus_two"), metadata_field: vec![] };
    assert_status(
        service.get_model_metadata(Request::new(empty)).await,
        Code::InvalidArgument,
        "GetModelMetadataRequest must specify at least one metadata_field",
    );
}

#[tokio::test]
async fn status_reports_the_available_version() {
    let service = ModelServiceImpl::new(state().await);
    let request = GetModelStatusRequest { model_spec: spec("half_plus_two") };
    let response = service.get_model_status(Request::new(request)).await.expect("status").into_inner();
    let [status] = response.model_version_status.as_slice() else {
        panic!("one version expected: {response:?}");
    };
    assert_eq!((status.version, status.state), (1, 30), "version 1 is AVAILABLE");
    let proto = status.status.as_ref().expect("status proto");
    assert_eq!((proto.error_code, proto.error_message.as_str()), (0, ""));

    assert_status(
        service.get_model_status(Request::new(GetModelStatusRequest { model_spec: spec("missing") })).await,
        Code::NotFound,
        "Could not find any versions of model missing",
    );
}

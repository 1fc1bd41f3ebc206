//! `tensorflow.serving.PredictionService`: Predict, GetModelMetadata, and the tf.Example
//! methods (Classify, Regress, MultiInference), which need the tensorflow platform.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use prost::Message;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::error::to_status;
use super::model_spec::{deadline, echo, resolve};
use super::GrpcState;
use crate::codec::example_proto::{classification_result, inference_result, input_from_proto, regression_result};
use crate::codec::signature_proto::{signature_def_map, SIGNATURE_DEF_MAP_TYPE_URL};

/// The suffix of the extra output that carries a map output's class keys over gRPC.
pub const MAP_CLASSES_SUFFIX: &str = "_classes";

/// Our GetModelMetadata field listing the version's execution providers.
pub const EXECUTION_PROVIDERS_FIELD: &str = "execution_providers";
const EXECUTION_PROVIDERS_TYPE_URL: &str = "type.googleapis.com/onnx_serving.ExecutionProviders";
use crate::codec::tensor_proto::{decode_inputs_within, encode_tensor};
use crate::core::example::ExampleMethod::{self, Classify, Regress};
use crate::core::example::ExampleResults;
use crate::core::{ServingError, ServingResult, Tensor};
use crate::inference::{inline_or_blocking, predict, run_example_method};
use crate::observability::account;
use crate::proto::tensorflow::serving::prediction_service_server::PredictionService;
use crate::proto::tensorflow::serving::{
    ClassificationRequest, ClassificationResponse, GetModelMetadataRequest, GetModelMetadataResponse, InferenceResult,
    Input, ModelSpec, MultiInferenceRequest, MultiInferenceResponse, PredictRequest, PredictResponse,
    RegressionRequest, RegressionResponse,
};
use crate::proto::tensorflow::TensorProto;

/// Requests whose typed fields hold more values than this are decoded off the async runtime.
const INLINE_DECODE_VALUES: usize = 64 * 1024;

/// The PredictionService implementation.
#[derive(Clone)]
pub struct PredictionServiceImpl {
    state: GrpcState,
}

impl PredictionServiceImpl {
    pub fn new(state: GrpcState) -> Self {
        Self { state }
    }

    async fn predict_request(
        &self,
        request: PredictRequest,
        deadline: Option<Instant>,
    ) -> ServingResult<PredictResponse> {
        let spec = resolve(request.model_spec.as_ref())?;
        let handle = self.state.manager.handle(&spec.name, &spec.version)?;
        tracing::Span::current().record("version", handle.id.version);
        // NOTE: a full queue refuses before the tensors are decoded.
        handle.servable.admission()?;
        let inputs = decode_inputs(request.inputs, self.state.max_decoded_request_bytes).await?;
        // NOTE: held until the answer is built: the decoded inputs, and the outputs after them.
        let _permit = self.state.budget.try_take(inputs.values().map(Tensor::held_bytes).sum())?;
        let outcome =
            predict(handle.servable.as_ref(), &spec.signature_name, inputs, &request.output_filter, deadline).await?;
        let as_content = self.state.serialize_as_tensor_content;
        let mut outputs = BTreeMap::new();
        for (alias, tensor) in &outcome.outputs {
            // NOTE: TensorProto has no map; a score-map output goes out as its dense
            // [batch, classes] scores plus `<alias>_classes`, the class keys in column order.
            if let Some(keys) = outcome.map_keys.get(alias) {
                let classes = Tensor::from_strings(
                    vec![keys.len()],
                    keys.iter().map(|k| bytes::Bytes::copy_from_slice(k.as_bytes())).collect(),
                );
                outputs.insert(format!("{alias}{MAP_CLASSES_SUFFIX}"), encode_tensor(&classes, as_content));
            }
            outputs.insert(alias.clone(), encode_tensor(tensor, as_content));
        }
        Ok(PredictResponse { model_spec: Some(echo(&spec.name, handle.id.version, &spec.signature_name)), outputs })
    }

    fn metadata_request(&self, request: GetModelMetadataRequest) -> ServingResult<GetModelMetadataResponse> {
        let spec = resolve(request.model_spec.as_ref())?;
        if request.metadata_field.is_empty() {
            return Err(ServingError::invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field",
            ));
        }
        // NOTE: `execution_providers` is our extension, answered only when asked for.
        if let Some(field) =
            request.metadata_field.iter().find(|f| *f != "signature_def" && *f != EXECUTION_PROVIDERS_FIELD)
        {
            return Err(ServingError::invalid_argument(format!("Metadata field {field} is not supported")));
        }
        let handle = self.state.manager.handle(&spec.name, &spec.version)?;
        let mut metadata = BTreeMap::new();
        if request.metadata_field.iter().any(|f| f == "signature_def") {
            let map = signature_def_map(handle.servable.signatures());
            metadata.insert(
                "signature_def".to_string(),
                prost_types::Any { type_url: SIGNATURE_DEF_MAP_TYPE_URL.to_string(), value: map.encode_to_vec() },
            );
        }
        if request.metadata_field.iter().any(|f| f == EXECUTION_PROVIDERS_FIELD) {
            let providers =
                crate::proto::onnx_serving::ExecutionProviders { providers: handle.servable.execution_providers() };
            metadata.insert(
                EXECUTION_PROVIDERS_FIELD.to_string(),
                prost_types::Any {
                    type_url: EXECUTION_PROVIDERS_TYPE_URL.to_string(),
                    value: providers.encode_to_vec(),
                },
            );
        }
        let mut model_spec = echo(&spec.name, handle.id.version, "");
        model_spec.signature_name.clear();
        Ok(GetModelMetadataResponse { model_spec: Some(model_spec), metadata })
    }

    async fn classify_request(
        &self,
        request: ClassificationRequest,
        deadline: Option<Instant>,
    ) -> ServingResult<ClassificationResponse> {
        let (model_spec, results) =
            self.example_request(request.model_spec.as_ref(), request.input.as_ref(), Classify, deadline).await?;
        Ok(ClassificationResponse {
            model_spec: Some(model_spec),
            result: results.classes().map(classification_result),
        })
    }

    async fn regress_request(
        &self,
        request: RegressionRequest,
        deadline: Option<Instant>,
    ) -> ServingResult<RegressionResponse> {
        let (model_spec, results) =
            self.example_request(request.model_spec.as_ref(), request.input.as_ref(), Regress, deadline).await?;
        Ok(RegressionResponse { model_spec: Some(model_spec), result: results.values().map(regression_result) })
    }

    /// Classify or Regress: runs the method on the model the spec names; returns the spec
    /// echoed with the version and signature used, and the results.
    async fn example_request(
        &self,
        spec: Option<&ModelSpec>,
        input: Option<&Input>,
        method: ExampleMethod,
        deadline: Option<Instant>,
    ) -> ServingResult<(ModelSpec, ExampleResults)> {
        let spec = resolve(spec)?;
        let handle = self.state.manager.handle(&spec.name, &spec.version)?;
        handle.servable.admission()?;
        // NOTE: the Examples are held, and copied once into the model's inputs, until the
        // answer is built: counted in the in-flight budget at their encoded size.
        let _permit = self.state.budget.try_take(input.map_or(0, |input| input.encoded_len()))?;
        let input = input_from_proto(input)?;
        let (signature, results) =
            run_example_method(handle.servable.as_ref(), method, &spec.signature_name, &input, deadline).await?;
        Ok((echo(&spec.name, handle.id.version, &signature), results))
    }

    /// MultiInference: every task on the model of the first, each a Classify or Regress of
    /// the same Examples. NOTE: TF runs the tasks' signatures in one session run; here each
    /// task runs on its own, with the same results.
    async fn multi_inference_request(
        &self,
        request: MultiInferenceRequest,
        deadline: Option<Instant>,
    ) -> ServingResult<MultiInferenceResponse> {
        let first = request
            .tasks
            .first()
            .ok_or_else(|| ServingError::invalid_argument("MultiInferenceRequest must contain at least one task"))?;
        let model = first.model_spec.as_ref().map(|s| s.name.as_str()).unwrap_or_default();
        let mut signatures = BTreeSet::new();
        let mut methods = Vec::with_capacity(request.tasks.len());
        for task in &request.tasks {
            let name = task.model_spec.as_ref().map(|s| s.name.as_str()).unwrap_or_default();
            if name.is_empty() {
                return Err(ServingError::invalid_argument("Found ModelSpec with an empty model name."));
            }
            if name != model {
                return Err(ServingError::invalid_argument(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name.",
                ));
            }
            let signature = resolve(task.model_spec.as_ref())?.signature_name;
            if !signatures.insert(signature.clone()) {
                return Err(ServingError::invalid_argument(format!("Duplicate evaluation of signature: {signature}")));
            }
            let Some(method) = ExampleMethod::from_method_name(&task.method_name) else {
                return Err(ServingError::unimplemented(format!(
                    "Unsupported signature method_name: {}",
                    task.method_name
                )));
            };
            methods.push(method);
        }
        let spec = resolve(first.model_spec.as_ref())?;
        let handle = self.state.manager.handle(&spec.name, &spec.version)?;
        let input = input_from_proto(request.input.as_ref())?;
        let servable = handle.servable.as_ref();
        let mut results = Vec::with_capacity(request.tasks.len());
        for (task, method) in request.tasks.iter().zip(methods) {
            let signature = resolve(task.model_spec.as_ref())?.signature_name;
            crate::inference::classify::example_signature(servable, &signature)?;
            let (_, task_results) = run_example_method(servable, method, &signature, &input, deadline).await?;
            results.push(InferenceResult {
                model_spec: Some(echo(&spec.name, handle.id.version, &signature)),
                result: Some(inference_result(&task_results)),
            });
        }
        Ok(MultiInferenceResponse { results })
    }
}

/// The values decoding `proto` converts: those its typed fields carry, or, when it carries
/// fewer than its shape holds, the shape's count (TF's fill rule repeats the last value), so a
/// few bytes that expand to many values are decoded off the async runtime too.
fn typed_len(proto: &TensorProto) -> usize {
    if !proto.tensor_content.is_empty() {
        return 0;
    }
    let shape_count = proto.tensor_shape.as_ref().map_or(1, |shape| {
        shape
            .dim
            .iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(usize::try_from(d.size).unwrap_or(0)))
            .unwrap_or(usize::MAX)
    });
    carried_len(proto).max(shape_count)
}

fn carried_len(proto: &TensorProto) -> usize {
    proto.float_val.len()
        + proto.double_val.len()
        + proto.int_val.len()
        + proto.int64_val.len()
        + proto.half_val.len()
        + proto.bool_val.len()
        + proto.string_val.len()
        + proto.uint32_val.len()
        + proto.uint64_val.len()
}

/// Decodes the request tensors, all of them within `budget` bytes; `tensor_content` moves
/// without a copy, large typed fields are converted on a blocking thread.
async fn decode_inputs(
    inputs: BTreeMap<String, TensorProto>,
    budget: usize,
) -> ServingResult<BTreeMap<String, Tensor>> {
    let inline = inputs.values().map(typed_len).fold(0usize, usize::saturating_add) <= INLINE_DECODE_VALUES;
    inline_or_blocking(inline, "request decoding", move || decode_inputs_within(inputs, budget)).await
}

fn model_name(spec: Option<&crate::proto::tensorflow::serving::ModelSpec>) -> String {
    spec.map(|s| s.name.clone()).unwrap_or_default()
}

#[tonic::async_trait]
impl PredictionService for PredictionServiceImpl {
    async fn predict(&self, request: Request<PredictRequest>) -> Result<Response<PredictResponse>, Status> {
        let deadline = deadline(request.metadata());
        let request = request.into_inner();
        let model = model_name(request.model_spec.as_ref());
        let span = tracing::info_span!("grpc_predict", model = %model, version = tracing::field::Empty);
        let result = account(&model, "Predict", "GRPC", self.predict_request(request, deadline).instrument(span)).await;
        result.map(Response::new).map_err(to_status)
    }

    async fn get_model_metadata(
        &self,
        request: Request<GetModelMetadataRequest>,
    ) -> Result<Response<GetModelMetadataResponse>, Status> {
        self.metadata_request(request.into_inner()).map(Response::new).map_err(to_status)
    }

    async fn classify(
        &self,
        request: Request<ClassificationRequest>,
    ) -> Result<Response<ClassificationResponse>, Status> {
        let deadline = deadline(request.metadata());
        let request = request.into_inner();
        let model = model_name(request.model_spec.as_ref());
        let span = tracing::info_span!("grpc_classify", model = %model);
        let result =
            account(&model, "Classify", "GRPC", self.classify_request(request, deadline).instrument(span)).await;
        result.map(Response::new).map_err(to_status)
    }

    async fn regress(&self, request: Request<RegressionRequest>) -> Result<Response<RegressionResponse>, Status> {
        let deadline = deadline(request.metadata());
        let request = request.into_inner();
        let model = model_name(request.model_spec.as_ref());
        let span = tracing::info_span!("grpc_regress", model = %model);
        let result = account(&model, "Regress", "GRPC", self.regress_request(request, deadline).instrument(span)).await;
        result.map(Response::new).map_err(to_status)
    }

    async fn multi_inference(
        &self,
        request: Request<MultiInferenceRequest>,
    ) -> Result<Response<MultiInferenceResponse>, Status> {
        let deadline = deadline(request.metadata());
        let request = request.into_inner();
        let model = request.tasks.first().map(|t| model_name(t.model_spec.as_ref())).unwrap_or_default();
        let span = tracing::info_span!("grpc_multi_inference", model = %model);
        self.multi_inference_request(request, deadline).instrument(span).await.map(Response::new).map_err(to_status)
    }
}

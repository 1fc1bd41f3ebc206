//! Session construction: options, execution providers with fallback to CPU, model I/O.

use std::path::Path;
use std::str::FromStr;

use ort::ep::ExecutionProvider;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::ValueType;
use tracing::{info, warn};

use super::convert::dtype_from_ort;
use super::OrtRuntime;
use crate::core::{DType, ServingError, ServingResult};

/// An execution provider that a model may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionProviderKind {
    TensorRt,
    Cuda,
    Cpu,
}

impl ExecutionProviderKind {
    /// Returns ONNX Runtime's name for the provider.
    pub fn ort_name(self) -> &'static str {
        match self {
            ExecutionProviderKind::TensorRt => "TensorrtExecutionProvider",
            ExecutionProviderKind::Cuda => "CUDAExecutionProvider",
            ExecutionProviderKind::Cpu => "CPUExecutionProvider",
        }
    }
}

impl FromStr for ExecutionProviderKind {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "tensorrt" | "trt" => Ok(ExecutionProviderKind::TensorRt),
            "cuda" => Ok(ExecutionProviderKind::Cuda),
            "cpu" => Ok(ExecutionProviderKind::Cpu),
            other => Err(format!("unknown execution provider `{other}` (known: tensorrt, cuda, cpu)")),
        }
    }
}

/// How to build the sessions of one model version.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Providers in priority order; CPU is always the final fallback.
    pub execution_providers: Vec<ExecutionProviderKind>,
    pub gpu_device_id: i32,
    /// 0 lets ONNX Runtime choose.
    pub intra_op_threads: usize,
    /// 0 lets ONNX Runtime choose.
    pub inter_op_threads: usize,
    /// Sessions per model version, each on its own worker thread (at least 1). The batcher
    /// sets this to `num_batch_threads` so that batches run side by side.
    pub sessions_per_version: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            execution_providers: vec![ExecutionProviderKind::Cpu],
            gpu_device_id: 0,
            intra_op_threads: 0,
            inter_op_threads: 0,
            sessions_per_version: 1,
        }
    }
}

/// One graph input or output as ONNX Runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIo {
    pub name: String,
    /// `None` for non-tensor values (sequences, maps) and element types TF has no name for.
    pub dtype: Option<DType>,
    /// Dimensions with -1 for symbolic ones. ONNX Runtime reports a missing shape as `[]`.
    pub dims: Vec<i64>,
}

fn ort_error(context: &str, error: impl std::fmt::Display) -> ServingError {
    ServingError::internal(format!("{context}: {error}"))
}

impl OrtRuntime {
    /// Builds a session for `model_path`, registering the requested execution providers in
    /// order. A provider the library lacks, or one that fails to register, is logged and
    /// skipped. Returns the session and the providers actually registered.
    pub(crate) fn build_session(
        &self,
        model_path: &Path,
        options: &SessionOptions,
        log_context: &str,
    ) -> ServingResult<(Session, Vec<String>)> {
        let mut builder = Session::builder(&self.environment).map_err(|e| ort_error("creating session builder", e))?;
        builder = builder
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| ort_error("setting optimization level", e))?;
        if options.intra_op_threads > 0 {
            builder = builder
                .with_intra_threads(options.intra_op_threads)
                .map_err(|e| ort_error("setting intra-op threads", e))?;
        }
        if options.inter_op_threads > 0 {
            builder = builder
                .with_inter_threads(options.inter_op_threads)
                .map_err(|e| ort_error("setting inter-op threads", e))?;
        }
        let mut active = Vec::new();
        for kind in &options.execution_providers {
            let outcome = match kind {
                ExecutionProviderKind::Cpu => break,
                ExecutionProviderKind::TensorRt => register(
                    &mut builder,
                    ort::ep::TensorRT::is_available(),
                    ort::ep::TensorRT::default().with_device_id(options.gpu_device_id).build(),
                ),
                ExecutionProviderKind::Cuda => register(
                    &mut builder,
                    ort::ep::CUDA::is_available(),
                    ort::ep::CUDA::default().with_device_id(options.gpu_device_id).build(),
                ),
            };
            match outcome {
                Ok(()) => active.push(kind.ort_name().to_string()),
                Err(reason) => warn!(
                    model = log_context,
                    provider = kind.ort_name(),
                    reason = %reason,
                    "execution provider unavailable, falling back to the next one"
                ),
            }
        }
        active.push(ExecutionProviderKind::Cpu.ort_name().to_string());
        let session = builder
            .commit_from_file(model_path)
            .map_err(|e| ort_error(&format!("loading {}", model_path.display()), e))?;
        info!(model = log_context, providers = ?active, "session created");
        Ok((session, active))
    }
}

fn register(
    builder: &mut SessionBuilder,
    available: ort::Result<bool>,
    provider: ort::ep::ExecutionProviderDispatch,
) -> Result<(), String> {
    match available {
        Ok(true) => provider.register(builder).map_err(|e| e.to_string()),
        Ok(false) => Err("the loaded ONNX Runtime library was built without it".to_string()),
        Err(error) => Err(error.to_string()),
    }
}

/// Returns the inputs and outputs of a session.
pub(crate) fn model_io(session: &Session) -> (Vec<ModelIo>, Vec<ModelIo>) {
    let describe = |name: &str, value_type: &ValueType| match value_type {
        ValueType::Tensor { ty, shape, .. } => {
            ModelIo { name: name.to_string(), dtype: dtype_from_ort(*ty), dims: shape.to_vec() }
        }
        _ => ModelIo { name: name.to_string(), dtype: None, dims: Vec::new() },
    };
    let inputs = session.inputs().iter().map(|o| describe(o.name(), o.dtype())).collect();
    let outputs = session.outputs().iter().map(|o| describe(o.name(), o.dtype())).collect();
    (inputs, outputs)
}

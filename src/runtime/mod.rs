//! ONNX Runtime: loading the library, building sessions with execution providers, and
//! running them on worker threads. The only module that imports `ort`.

mod convert;
pub mod engine_cache;
pub mod gpu;
pub mod library;
mod model_io;
pub mod options;
pub mod providers;
mod session;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use tracing::info;

pub use model_io::ModelIo;
pub use options::{BatchProfile, ExecutionProviderKind, ExecutionSettings, SessionOptions};
pub use providers::{batch_profile_shapes, cuda_provider_options, tensorrt_provider_options};
pub use session::ProviderFallback;
pub use worker::OrtServable;

/// TF Serving's histogram of model runs, in microseconds, recorded by the workers.
pub const RUNTIME_LATENCY: &str = ":tensorflow:serving:runtime_latency";

/// Requests refused before they ran (a version's queue was full), by `model_name` and `reason`.
pub const REJECTED: &str = "onnx_serving_rejected_requests_total";

/// Records one model run.
fn record_runtime(model_name: &str, elapsed: std::time::Duration) {
    metrics::histogram!(RUNTIME_LATENCY, "model_name" => model_name.to_string(), "API" => "Predict", "runtime" => "onnxruntime")
        .record(elapsed.as_secs_f64() * 1e6);
}

/// The process-wide ONNX Runtime: the loaded library and its one environment.
pub struct OrtRuntime {
    environment: ort::environment::Environment,
    pub library_path: PathBuf,
}

static RUNTIME: OnceLock<OrtRuntime> = OnceLock::new();
/// Serialises the first initialisation: ONNX Runtime allows one environment per process.
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl OrtRuntime {
    /// Loads ONNX Runtime once per process. Later calls return the same runtime.
    pub fn init(library_flag: Option<&Path>) -> anyhow::Result<&'static OrtRuntime> {
        if let Some(runtime) = RUNTIME.get() {
            return Ok(runtime);
        }
        let _guard = INIT_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(runtime) = RUNTIME.get() {
            return Ok(runtime);
        }
        let (path, source) = library::find_library(library_flag).map_err(|searched| {
            anyhow!(
                "the ONNX Runtime shared library was not found (searched: {}). Install it with \
                 `pip install onnxruntime==1.31.1`, or point --ort_library_path (or ORT_DYLIB_PATH) \
                 at libonnxruntime.so",
                searched.join("; ")
            )
        })?;
        // NOTE: no ort API may run before `init_from` succeeds, or ort panics while
        // loading a library on its own.
        let builder = ort::init_from(&path).map_err(|error| {
            anyhow!(
                "failed to load ONNX Runtime from {}: {error}. Install a matching runtime with \
                 `pip install onnxruntime==1.31.1`, or pass --ort_library_path",
                path.display()
            )
        })?;
        let environment = builder
            .with_name("onnx-serving")
            .with_telemetry(false)
            .build()
            .context("failed to create the ONNX Runtime environment")?;
        info!(library = %path.display(), source = ?source, "loaded ONNX Runtime");
        let runtime = OrtRuntime { environment, library_path: path };
        Ok(RUNTIME.get_or_init(|| runtime))
    }
}

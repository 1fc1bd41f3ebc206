//! Session construction: execution providers registered in priority order with a fallback
//! to CPU, custom operator libraries, the TensorRT engine cache.

use std::path::Path;

use ort::ep::{ArbitrarilyConfigurableExecutionProvider, ExecutionProvider};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use tracing::warn;

use super::engine_cache::EngineCacheEntry;
use super::model_io::model_io;
use super::model_io::ModelIo;
use super::options::{ExecutionProviderKind, GraphOptimization, SessionOptions};
use super::providers::{
    batch_profile_shapes, check_value, cuda_provider_options, engine_shaping, tensorrt_provider_options,
};
use super::OrtRuntime;
use crate::core::{ServingError, ServingResult};

fn ort_error(context: &str, error: impl std::fmt::Display) -> ServingError {
    ServingError::internal(format!("{context}: {error}"))
}

/// A provider that was asked for and not taken, with the reason.
#[derive(Debug, Clone)]
pub struct ProviderFallback {
    pub provider: ExecutionProviderKind,
    pub reason: String,
}

/// One built session and how its providers turned out.
pub(crate) struct BuiltSession {
    pub session: Session,
    /// ONNX Runtime names of the providers registered, CPU last.
    pub active: Vec<String>,
    pub fallbacks: Vec<ProviderFallback>,
}

const MISSING_FROM_LIBRARY: &str = "the loaded ONNX Runtime library was built without it";

impl OrtRuntime {
    /// Returns ONNX Runtime's version and build, for the engine cache key.
    pub fn runtime_identity(&self) -> String {
        let file = self.library_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{file} {}", ort::info())
    }

    fn base_builder(&self, options: &SessionOptions) -> ServingResult<SessionBuilder> {
        let mut builder = Session::builder(&self.environment).map_err(|e| ort_error("creating session builder", e))?;
        let level = match options.graph_optimization {
            GraphOptimization::Disable => GraphOptimizationLevel::Disable,
            GraphOptimization::Basic => GraphOptimizationLevel::Level1,
            GraphOptimization::Extended => GraphOptimizationLevel::Level2,
            GraphOptimization::All => GraphOptimizationLevel::All,
        };
        builder = builder.with_optimization_level(level).map_err(|e| ort_error("setting optimization level", e))?;
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
        for library in &options.custom_op_libraries {
            if !library.is_file() {
                return Err(ServingError::failed_precondition(format!(
                    "custom op library {} does not exist",
                    library.display()
                )));
            }
            builder = builder.with_operator_library(library).map_err(|e| {
                let text = e.to_string();
                // NOTE: onnxruntime-extensions' library is a Python extension module.
                let hint = if text.contains("undefined symbol: Py") {
                    " (the library needs the Python runtime: start the server with \
                     LD_PRELOAD=<path of libpython3.x.so>)"
                } else {
                    ""
                };
                ServingError::failed_precondition(format!(
                    "custom op library {} failed to load: {text}{hint}",
                    library.display()
                ))
            })?;
        }
        Ok(builder)
    }

    /// Returns `options` with TensorRT's optimization profile derived from the batching range,
    /// when TensorRT will be tried, batching is on and the model's options give no profile. Run
    /// once per version: it reads the model's inputs with a plain CPU session.
    pub(crate) fn with_tensorrt_profile(
        &self,
        model_path: &Path,
        options: &SessionOptions,
    ) -> ServingResult<SessionOptions> {
        let mut options = options.clone();
        let wanted = options.execution_providers.contains(&ExecutionProviderKind::TensorRt)
            && options.tensorrt.profile_min_shapes.is_none()
            && matches!(ort::ep::TensorRT::is_available(), Ok(true));
        if let (true, Some(batch)) = (wanted, options.batch_profile) {
            if let Some((min, opt, max)) = batch_profile_shapes(&self.probe_inputs(model_path, &options)?, batch) {
                options.tensorrt.profile_min_shapes = Some(min);
                options.tensorrt.profile_opt_shapes = Some(opt);
                options.tensorrt.profile_max_shapes = Some(max);
            }
        }
        Ok(options)
    }

    /// Reads a model's inputs with a plain CPU session, for TensorRT's batch profile.
    fn probe_inputs(&self, model_path: &Path, options: &SessionOptions) -> ServingResult<Vec<ModelIo>> {
        let mut probe_options = options.clone();
        probe_options.graph_optimization = GraphOptimization::Disable;
        let session = self
            .base_builder(&probe_options)?
            .commit_from_file(model_path)
            .map_err(|e| ort_error(&format!("loading {}", model_path.display()), e))?;
        Ok(model_io(&session).0)
    }

    fn register_tensorrt(
        &self,
        builder: &mut SessionBuilder,
        model_path: &Path,
        options: &SessionOptions,
        log_context: &str,
        engine_entry: &mut Option<EngineCacheEntry>,
    ) -> ServingResult<Result<(), String>> {
        match ort::ep::TensorRT::is_available() {
            Ok(true) => {}
            Ok(false) => return Ok(Err(MISSING_FROM_LIBRARY.to_string())),
            Err(error) => return Ok(Err(error.to_string())),
        }
        // NOTE: the batch profile was settled once per version by `with_tensorrt_profile`.
        let mut pairs = tensorrt_provider_options(options, None);
        // NOTE: a cache that cannot be used (unwritable, unreadable model) costs speed, not the
        // load: TensorRT then builds its engines in memory.
        let entry = match &options.tensorrt_cache_dir {
            Some(cache_dir) => match self.engine_cache_entry(cache_dir, model_path, options, &pairs, log_context) {
                Ok(entry) => Some(entry),
                Err(error) => {
                    warn!(model = log_context, error = %error.message, "TensorRT engine cache unavailable; building engines without it");
                    None
                }
            },
            None => None,
        };
        if let Some(entry) = entry {
            let dir = entry.dir.display().to_string();
            if options.tensorrt.engine_cache != Some(false) {
                pairs.push(("trt_engine_cache_enable", "1".into()));
                pairs.push(("trt_engine_cache_path", dir.clone()));
            }
            if options.tensorrt.timing_cache != Some(false) {
                pairs.push(("trt_timing_cache_enable", "1".into()));
                pairs.push(("trt_timing_cache_path", dir));
            }
            *engine_entry = Some(entry);
        } else if options.tensorrt.timing_cache == Some(true) {
            pairs.push(("trt_timing_cache_enable", "1".into()));
        }
        let mut provider = ort::ep::TensorRT::default();
        for (key, value) in &pairs {
            check_value(key, value)?;
            provider = provider.with_arbitrary_config(key, value);
        }
        Ok(provider.build().register(builder).map_err(|e| e.to_string()))
    }

    fn register_cuda(
        &self,
        builder: &mut SessionBuilder,
        options: &SessionOptions,
        log_context: &str,
    ) -> ServingResult<Result<(), String>> {
        match ort::ep::CUDA::is_available() {
            Ok(true) => {}
            Ok(false) => return Ok(Err(MISSING_FROM_LIBRARY.to_string())),
            Err(error) => return Ok(Err(error.to_string())),
        }
        let device = options.cuda.device_id.unwrap_or(options.gpu_device_id);
        let gpu = options.gpu_memory_fraction.and_then(|_| super::gpu::query(device));
        if options.gpu_memory_fraction.is_some() && options.cuda.gpu_mem_limit.is_none() && gpu.is_none() {
            warn!(
                model = log_context,
                device,
                "cannot read the GPU's total memory (nvidia-smi); --per_process_gpu_memory_fraction is not applied"
            );
        }
        let mut provider = ort::ep::CUDA::default();
        for (key, value) in cuda_provider_options(options, gpu.as_ref()) {
            check_value(key, &value)?;
            provider = provider.with_arbitrary_config(key, value);
        }
        Ok(provider.build().register(builder).map_err(|e| e.to_string()))
    }

    /// Builds a session for `model_path`, registering the requested execution providers in
    /// order. A provider the library lacks, or one that fails to register, is skipped and
    /// reported in `fallbacks`, unless it is the required one, which fails the load.
    pub(crate) fn build_session(
        &self,
        model_path: &Path,
        options: &SessionOptions,
        log_context: &str,
    ) -> ServingResult<BuiltSession> {
        let mut builder = self.base_builder(options)?;
        let mut active = Vec::new();
        let mut fallbacks = Vec::new();
        let mut engine_entry = None;
        for kind in &options.execution_providers {
            let outcome = match kind {
                ExecutionProviderKind::Cpu => break,
                ExecutionProviderKind::TensorRt => {
                    self.register_tensorrt(&mut builder, model_path, options, log_context, &mut engine_entry)?
                }
                ExecutionProviderKind::Cuda => self.register_cuda(&mut builder, options, log_context)?,
            };
            match outcome {
                Ok(()) => active.push(kind.ort_name().to_string()),
                Err(reason) if options.require_provider == Some(*kind) => {
                    return Err(ServingError::failed_precondition(format!(
                        "the required execution provider {} is not available: {reason}",
                        kind.ort_name()
                    )));
                }
                Err(reason) => fallbacks.push(ProviderFallback { provider: *kind, reason }),
            }
        }
        if let Some(required) = options.require_provider {
            if required != ExecutionProviderKind::Cpu && !active.iter().any(|name| name == required.ort_name()) {
                return Err(ServingError::failed_precondition(format!(
                    "the required execution provider {} is not in the provider list before cpu ({})",
                    required.ort_name(),
                    options.execution_providers.iter().map(|p| p.ort_name()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        if let Some(arena) = options.cpu_arena {
            ort::ep::CPU::default()
                .with_arena_allocator(arena)
                .build()
                .register(&mut builder)
                .map_err(|e| ort_error("configuring the CPU provider", e))?;
        }
        active.push(ExecutionProviderKind::Cpu.ort_name().to_string());
        let session = match builder.commit_from_file(model_path) {
            Ok(session) => session,
            Err(error) => {
                if let Some(entry) = &engine_entry {
                    // NOTE: engines that ONNX Runtime refuses are dropped, so the next
                    // attempt (the manager retries) builds them afresh.
                    super::engine_cache::discard(entry);
                }
                let text = error.to_string();
                let hint = if text.contains("is not a registered function/op") {
                    " (a custom operator: register its library with --custom_op_paths or \
                     execution { custom_op_libraries } in model_options.pbtxt)"
                } else {
                    ""
                };
                // NOTE: most load failures are the model's and stay (INTERNAL, not retried); memory
                // that was short, or a cached engine just discarded, may do better next time.
                let code = if ["bad_alloc", "Failed to allocate", "out of memory", "OutOfMemory"]
                    .iter()
                    .any(|marker| text.contains(marker))
                {
                    crate::core::Code::ResourceExhausted
                } else if engine_entry.is_some() {
                    crate::core::Code::Unavailable
                } else {
                    crate::core::Code::Internal
                };
                return Err(ServingError::new(code, format!("loading {}: {text}{hint}", model_path.display())));
            }
        };
        if let Some(entry) = &engine_entry {
            if let Err(error) = super::engine_cache::seal(entry) {
                warn!(model = log_context, error = %error, "cannot seal the TensorRT engine cache entry");
            }
        }
        Ok(BuiltSession { session, active, fallbacks })
    }

    fn engine_cache_entry(
        &self,
        cache_dir: &Path,
        model_path: &Path,
        options: &SessionOptions,
        pairs: &[(&'static str, String)],
        log_context: &str,
    ) -> ServingResult<EngineCacheEntry> {
        let cache_error = |e: std::io::Error| {
            ServingError::failed_precondition(format!("TensorRT engine cache {}: {e}", cache_dir.display()))
        };
        let mut digest = super::engine_cache::file_digest(model_path).map_err(cache_error)?;
        let external = model_path.with_extension("onnx.data");
        if external.is_file() {
            digest.push('+');
            digest.push_str(&super::engine_cache::file_digest(&external).map_err(cache_error)?);
        }
        let device = options.tensorrt.device_id.unwrap_or(options.gpu_device_id);
        let key = super::engine_cache::EngineKey::new(
            digest,
            engine_shaping(pairs),
            self.runtime_identity(),
            super::gpu::query(device).as_ref(),
        );
        super::engine_cache::open(cache_dir, &key, log_context).map_err(cache_error)
    }
}

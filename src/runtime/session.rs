//! Session construction: options, execution providers (TensorRT, CUDA, CPU) with their
//! ONNX Runtime option pairs and a fallback to CPU, custom operator libraries, model I/O.

use std::path::{Path, PathBuf};

use ort::ep::{ArbitrarilyConfigurableExecutionProvider, ExecutionProvider};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::ValueType;
use tracing::warn;

use super::convert::dtype_from_ort;
use super::engine_cache::EngineCacheEntry;
use super::gpu::GpuInfo;
use super::OrtRuntime;
pub use crate::core::model_options::{
    ArenaExtendStrategy, ConvAlgoSearch, CudaSettings, ExecutionSettings, GraphOptimization, TensorRtSettings,
};
pub use crate::core::ExecutionProviderKind;
use crate::core::{DType, ServingError, ServingResult};

/// The batch dimension range the batcher will use, for TensorRT's optimization profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProfile {
    /// The batch size TensorRT tunes for.
    pub opt: usize,
    /// The largest batch the batcher forms.
    pub max: usize,
}

/// How to build the sessions of one model version: the global flags, overridden by the
/// model's `model_options.pbtxt` (see `with_model_settings`).
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Providers in priority order; CPU is always the final fallback.
    pub execution_providers: Vec<ExecutionProviderKind>,
    /// A provider whose absence fails the load instead of falling back.
    pub require_provider: Option<ExecutionProviderKind>,
    pub gpu_device_id: i32,
    /// `--per_process_gpu_memory_fraction`: the CUDA arena limit as a share of the device.
    pub gpu_memory_fraction: Option<f64>,
    /// 0 lets ONNX Runtime choose.
    pub intra_op_threads: usize,
    /// 0 lets ONNX Runtime choose.
    pub inter_op_threads: usize,
    /// `None` keeps ONNX Runtime's default (on).
    pub cpu_arena: Option<bool>,
    pub graph_optimization: GraphOptimization,
    pub cuda: CudaSettings,
    pub tensorrt: TensorRtSettings,
    /// Registered on every session, in order: `--custom_op_paths`, then the model's own.
    pub custom_op_libraries: Vec<PathBuf>,
    /// `--tensorrt_cache_dir`: engines keyed by content (see `engine_cache`).
    pub tensorrt_cache_dir: Option<PathBuf>,
    /// Set when batching is on; shapes TensorRT's profile for the batch dimension.
    pub batch_profile: Option<BatchProfile>,
    /// Sessions per model version, each on its own worker thread (at least 1). The batcher
    /// sets this to `num_batch_threads` so that batches run side by side.
    pub sessions_per_version: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            execution_providers: vec![ExecutionProviderKind::Cpu],
            require_provider: None,
            gpu_device_id: 0,
            gpu_memory_fraction: None,
            intra_op_threads: 0,
            inter_op_threads: 0,
            cpu_arena: None,
            graph_optimization: GraphOptimization::All,
            cuda: CudaSettings::default(),
            tensorrt: TensorRtSettings::default(),
            custom_op_libraries: Vec::new(),
            tensorrt_cache_dir: None,
            batch_profile: None,
            sessions_per_version: 1,
        }
    }
}

impl SessionOptions {
    /// Returns these options with a model's own settings laid over them.
    pub fn with_model_settings(&self, settings: &ExecutionSettings) -> SessionOptions {
        let mut options = self.clone();
        if let Some(providers) = &settings.providers {
            options.execution_providers = providers.clone();
        }
        if settings.require_provider.is_some() {
            options.require_provider = settings.require_provider;
        }
        if let Some(level) = settings.graph_optimization {
            options.graph_optimization = level;
        }
        options.custom_op_libraries.extend(settings.custom_op_libraries.iter().cloned());
        let cpu = &settings.cpu;
        options.intra_op_threads = cpu.intra_op_threads.unwrap_or(options.intra_op_threads);
        options.inter_op_threads = cpu.inter_op_threads.unwrap_or(options.inter_op_threads);
        options.cpu_arena = cpu.arena.or(options.cpu_arena);
        options.cuda = settings.cuda.clone();
        options.tensorrt = settings.tensorrt.clone();
        options
    }
}

fn flag(enable: bool) -> String {
    if enable { "1" } else { "0" }.to_string()
}

/// The CUDA provider's options as ONNX Runtime takes them (key, value).
pub fn cuda_provider_options(options: &SessionOptions, gpu: Option<&GpuInfo>) -> Vec<(&'static str, String)> {
    let cuda = &options.cuda;
    let mut pairs = vec![("device_id", cuda.device_id.unwrap_or(options.gpu_device_id).to_string())];
    let from_fraction = options
        .gpu_memory_fraction
        .zip(gpu)
        .map(|(fraction, gpu)| (gpu.total_memory_bytes as f64 * fraction.clamp(0.0, 1.0)) as u64);
    if let Some(limit) = cuda.gpu_mem_limit.or(from_fraction) {
        pairs.push(("gpu_mem_limit", limit.to_string()));
    }
    if let Some(strategy) = cuda.arena_extend_strategy {
        let value = match strategy {
            ArenaExtendStrategy::NextPowerOfTwo => "kNextPowerOfTwo",
            ArenaExtendStrategy::SameAsRequested => "kSameAsRequested",
        };
        pairs.push(("arena_extend_strategy", value.to_string()));
    }
    if let Some(search) = cuda.cudnn_conv_algo_search {
        let value = match search {
            ConvAlgoSearch::Exhaustive => "EXHAUSTIVE",
            ConvAlgoSearch::Heuristic => "HEURISTIC",
            ConvAlgoSearch::Default => "DEFAULT",
        };
        pairs.push(("cudnn_conv_algo_search", value.to_string()));
    }
    if let Some(enable) = cuda.cuda_graph {
        pairs.push(("enable_cuda_graph", flag(enable)));
    }
    if let Some(enable) = cuda.tf32 {
        pairs.push(("use_tf32", flag(enable)));
    }
    pairs
}

/// TensorRT's optimization profile (min, opt, max shapes) for a batching model: the batch
/// dimension spans 1..=max and is tuned for `opt`. `None` when an input has another dynamic
/// dimension, which no batch setting can fix; TensorRT then profiles at run time.
pub fn batch_profile_shapes(inputs: &[ModelIo], profile: BatchProfile) -> Option<(String, String, String)> {
    let mut shapes = (Vec::new(), Vec::new(), Vec::new());
    for input in inputs {
        let (first, rest) = input.dims.split_first()?;
        if *first >= 0 || rest.iter().any(|&d| d < 0) {
            if *first >= 0 && rest.iter().all(|&d| d >= 0) {
                continue;
            }
            return None;
        }
        let tail: String = rest.iter().map(|d| format!("x{d}")).collect();
        shapes.0.push(format!("{}:1{tail}", input.name));
        shapes.1.push(format!("{}:{}{tail}", input.name, profile.opt.max(1)));
        shapes.2.push(format!("{}:{}{tail}", input.name, profile.max.max(1)));
    }
    if shapes.0.is_empty() {
        return None;
    }
    Some((shapes.0.join(","), shapes.1.join(","), shapes.2.join(",")))
}

/// The TensorRT provider's options as ONNX Runtime takes them, without the cache paths.
/// `profile` is the batch profile derived from the model's inputs, used when the model's
/// options give none.
pub fn tensorrt_provider_options(
    options: &SessionOptions,
    profile: Option<(String, String, String)>,
) -> Vec<(&'static str, String)> {
    let trt = &options.tensorrt;
    let mut pairs = vec![("device_id", trt.device_id.unwrap_or(options.gpu_device_id).to_string())];
    let mut push_flag = |key: &'static str, value: Option<bool>| {
        if let Some(enable) = value {
            pairs.push((key, flag(enable)));
        }
    };
    push_flag("trt_fp16_enable", trt.fp16);
    push_flag("trt_int8_enable", trt.int8);
    push_flag("trt_cuda_graph_enable", trt.cuda_graph);
    if let Some(table) = &trt.int8_calibration_table {
        pairs.push(("trt_int8_calibration_table_name", table.display().to_string()));
    }
    if let Some(size) = trt.max_workspace_size {
        pairs.push(("trt_max_workspace_size", size.to_string()));
    }
    if let Some(level) = trt.builder_optimization_level {
        pairs.push(("trt_builder_optimization_level", level.to_string()));
    }
    let explicit =
        trt.profile_min_shapes.clone().zip(trt.profile_opt_shapes.clone()).zip(trt.profile_max_shapes.clone());
    let profile = explicit.map(|((min, opt), max)| (min, opt, max)).or(profile);
    if let Some((min, opt, max)) = profile {
        pairs.push(("trt_profile_min_shapes", min));
        pairs.push(("trt_profile_opt_shapes", opt));
        pairs.push(("trt_profile_max_shapes", max));
    }
    pairs
}

/// The TensorRT options that change a built engine, for the cache key.
fn engine_shaping(pairs: &[(&'static str, String)]) -> Vec<String> {
    pairs.iter().filter(|(key, _)| *key != "device_id").map(|(key, value)| format!("{key}={value}")).collect()
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

fn check_value(key: &str, value: &str) -> ServingResult<()> {
    // NOTE: ort panics on a NUL inside an option value; a config file can contain one.
    if value.contains('\0') {
        return Err(ServingError::failed_precondition(format!("the value of provider option {key} contains NUL")));
    }
    Ok(())
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
                return Err(ort_error(&format!("loading {}", model_path.display()), format!("{text}{hint}")));
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

/// True for `map(int64|string, float)`, the element of a ZipMap output.
pub(crate) fn is_score_map(value_type: &ValueType) -> bool {
    matches!(
        value_type,
        ValueType::Map {
            key: ort::value::TensorElementType::Int64 | ort::value::TensorElementType::String,
            value: ort::value::TensorElementType::Float32
        }
    )
}

/// Returns the inputs and outputs of a session.
pub(crate) fn model_io(session: &Session) -> (Vec<ModelIo>, Vec<ModelIo>) {
    let describe = |name: &str, value_type: &ValueType| match value_type {
        ValueType::Tensor { ty, shape, .. } => {
            ModelIo { name: name.to_string(), dtype: dtype_from_ort(*ty), dims: shape.to_vec() }
        }
        // NOTE: a sequence of maps to floats (a classifier's ZipMap) is served as the dense
        // [batch, classes] float tensor it holds; see `convert::map_rows_output`.
        ValueType::Sequence(inner) if is_score_map(inner) => {
            ModelIo { name: name.to_string(), dtype: Some(DType::Float), dims: vec![-1, -1] }
        }
        _ => ModelIo { name: name.to_string(), dtype: None, dims: Vec::new() },
    };
    let inputs = session.inputs().iter().map(|o| describe(o.name(), o.dtype())).collect();
    let outputs = session.outputs().iter().map(|o| describe(o.name(), o.dtype())).collect();
    (inputs, outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model_options::CpuSettings;

    fn io(name: &str, dims: &[i64]) -> ModelIo {
        ModelIo { name: name.into(), dtype: Some(DType::Float), dims: dims.to_vec() }
    }

    fn value<'a>(pairs: &'a [(&'static str, String)], key: &str) -> Option<&'a str> {
        pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn model_settings_override_the_flags() {
        let global = SessionOptions {
            execution_providers: vec![ExecutionProviderKind::Cpu],
            intra_op_threads: 4,
            custom_op_libraries: vec![PathBuf::from("/global.so")],
            ..SessionOptions::default()
        };
        let settings = ExecutionSettings {
            providers: Some(vec![ExecutionProviderKind::Cuda, ExecutionProviderKind::Cpu]),
            require_provider: Some(ExecutionProviderKind::Cuda),
            graph_optimization: Some(GraphOptimization::Basic),
            custom_op_libraries: vec![PathBuf::from("/model.so")],
            cpu: CpuSettings { inter_op_threads: Some(2), arena: Some(false), ..CpuSettings::default() },
            ..ExecutionSettings::default()
        };
        let merged = global.with_model_settings(&settings);
        assert_eq!(merged.execution_providers, vec![ExecutionProviderKind::Cuda, ExecutionProviderKind::Cpu]);
        assert_eq!(merged.require_provider, Some(ExecutionProviderKind::Cuda));
        assert_eq!(merged.graph_optimization, GraphOptimization::Basic);
        assert_eq!((merged.intra_op_threads, merged.inter_op_threads, merged.cpu_arena), (4, 2, Some(false)));
        assert_eq!(merged.custom_op_libraries, vec![PathBuf::from("/global.so"), PathBuf::from("/model.so")]);
        // Unset settings keep the flags.
        let untouched = global.with_model_settings(&ExecutionSettings::default());
        assert_eq!(untouched.execution_providers, global.execution_providers);
        assert_eq!(untouched.graph_optimization, GraphOptimization::All);
    }

    #[test]
    fn cuda_options_reach_onnx_runtime_by_its_names() {
        let mut options = SessionOptions { gpu_device_id: 1, ..SessionOptions::default() };
        assert_eq!(cuda_provider_options(&options, None), vec![("device_id", "1".to_string())]);
        options.cuda = CudaSettings {
            device_id: Some(2),
            gpu_mem_limit: None,
            arena_extend_strategy: Some(ArenaExtendStrategy::SameAsRequested),
            cudnn_conv_algo_search: Some(ConvAlgoSearch::Heuristic),
            cuda_graph: Some(true),
            tf32: Some(false),
        };
        options.gpu_memory_fraction = Some(0.25);
        let gpu = GpuInfo { name: "T4".into(), compute_capability: "7.5".into(), total_memory_bytes: 16 << 30 };
        let pairs = cuda_provider_options(&options, Some(&gpu));
        assert_eq!(value(&pairs, "device_id"), Some("2"));
        assert_eq!(value(&pairs, "gpu_mem_limit"), Some((4u64 << 30).to_string().as_str()), "a quarter of 16 GiB");
        assert_eq!(value(&pairs, "arena_extend_strategy"), Some("kSameAsRequested"));
        assert_eq!(value(&pairs, "cudnn_conv_algo_search"), Some("HEURISTIC"));
        assert_eq!(value(&pairs, "enable_cuda_graph"), Some("1"));
        assert_eq!(value(&pairs, "use_tf32"), Some("0"));
        // An explicit limit wins over the fraction; without device facts the fraction is dropped.
        options.cuda.gpu_mem_limit = Some(1000);
        assert_eq!(value(&cuda_provider_options(&options, Some(&gpu)), "gpu_mem_limit"), Some("1000"));
        options.cuda.gpu_mem_limit = None;
        assert_eq!(value(&cuda_provider_options(&options, None), "gpu_mem_limit"), None);
    }

    #[test]
    fn tensorrt_options_reach_onnx_runtime_by_its_names() {
        let options = SessionOptions {
            tensorrt: TensorRtSettings {
                fp16: Some(true),
                int8: Some(true),
                int8_calibration_table: Some(PathBuf::from("/m/calibration.flatbuffers")),
                max_workspace_size: Some(1 << 31),
                builder_optimization_level: Some(5),
                cuda_graph: Some(false),
                ..TensorRtSettings::default()
            },
            ..SessionOptions::default()
        };
        let pairs = tensorrt_provider_options(&options, None);
        assert_eq!(value(&pairs, "device_id"), Some("0"));
        assert_eq!(value(&pairs, "trt_fp16_enable"), Some("1"));
        assert_eq!(value(&pairs, "trt_int8_enable"), Some("1"));
        assert_eq!(value(&pairs, "trt_int8_calibration_table_name"), Some("/m/calibration.flatbuffers"));
        assert_eq!(value(&pairs, "trt_max_workspace_size"), Some("2147483648"));
        assert_eq!(value(&pairs, "trt_builder_optimization_level"), Some("5"));
        assert_eq!(value(&pairs, "trt_cuda_graph_enable"), Some("0"));
        assert_eq!(value(&pairs, "trt_profile_min_shapes"), None);
        // The engine key leaves the device out: the GPU model is keyed on its own.
        assert!(engine_shaping(&pairs).iter().all(|p| !p.starts_with("device_id")));
        assert!(engine_shaping(&pairs).contains(&"trt_fp16_enable=1".to_string()));
    }

    #[test]
    fn batching_shapes_the_tensorrt_profile() {
        let inputs = [io("image", &[-1, 3, 224, 224]), io("scale", &[-1, 1])];
        let profile = batch_profile_shapes(&inputs, BatchProfile { opt: 16, max: 32 }).expect("profile");
        assert_eq!(profile.0, "image:1x3x224x224,scale:1x1");
        assert_eq!(profile.1, "image:16x3x224x224,scale:16x1");
        assert_eq!(profile.2, "image:32x3x224x224,scale:32x1");
        let options = SessionOptions::default();
        let pairs = tensorrt_provider_options(&options, Some(profile.clone()));
        assert_eq!(value(&pairs, "trt_profile_max_shapes"), Some(profile.2.as_str()));
        // A model's own profile wins over the derived one.
        let mut own = SessionOptions::default();
        own.tensorrt.profile_min_shapes = Some("image:1x3x224x224".into());
        own.tensorrt.profile_opt_shapes = Some("image:4x3x224x224".into());
        own.tensorrt.profile_max_shapes = Some("image:8x3x224x224".into());
        let pairs = tensorrt_provider_options(&own, Some(profile));
        assert_eq!(value(&pairs, "trt_profile_max_shapes"), Some("image:8x3x224x224"));
        // Other dynamic dimensions leave the profile to TensorRT; fixed inputs need none.
        assert!(batch_profile_shapes(&[io("text", &[-1, -1])], BatchProfile { opt: 8, max: 8 }).is_none());
        assert!(batch_profile_shapes(&[io("fixed", &[1, 10])], BatchProfile { opt: 8, max: 8 }).is_none());
        let mixed = batch_profile_shapes(&[io("x", &[-1, 4]), io("fixed", &[2])], BatchProfile { opt: 2, max: 4 });
        assert_eq!(mixed.expect("mixed").2, "x:4x4");
    }

    #[test]
    fn nul_bytes_never_reach_onnx_runtime() {
        assert!(check_value("trt_engine_cache_path", "/tmp/a\0b").is_err());
        assert!(check_value("trt_engine_cache_path", "/tmp/ab").is_ok());
    }
}

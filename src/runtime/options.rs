//! How one version's sessions are built, as plain settings: the global flags
//! (`SessionOptions`) with a model's own `execution` section (`ExecutionSettings`) laid over
//! them.

use std::path::PathBuf;
use std::str::FromStr;

use crate::core::error::unknown_choice as unknown;

/// An execution provider that a model may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
            "tensorrt" | "trt" | "tensorrtexecutionprovider" => Ok(ExecutionProviderKind::TensorRt),
            "cuda" | "cudaexecutionprovider" => Ok(ExecutionProviderKind::Cuda),
            "cpu" | "cpuexecutionprovider" => Ok(ExecutionProviderKind::Cpu),
            other => Err(unknown("execution provider", other, &["tensorrt", "cuda", "cpu"])),
        }
    }
}

/// ONNX Runtime's graph optimization levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphOptimization {
    Disable,
    Basic,
    Extended,
    #[default]
    All,
}

impl FromStr for GraphOptimization {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "disable" => Ok(Self::Disable),
            "basic" => Ok(Self::Basic),
            "extended" => Ok(Self::Extended),
            "all" => Ok(Self::All),
            other => Err(unknown("graph optimization level", other, &["disable", "basic", "extended", "all"])),
        }
    }
}

/// How the CUDA arena grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArenaExtendStrategy {
    NextPowerOfTwo,
    SameAsRequested,
}

impl FromStr for ArenaExtendStrategy {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "next_power_of_two" => Ok(Self::NextPowerOfTwo),
            "same_as_requested" => Ok(Self::SameAsRequested),
            other => Err(unknown("arena_extend_strategy", other, &["next_power_of_two", "same_as_requested"])),
        }
    }
}

/// How cuDNN picks convolution algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvAlgoSearch {
    Exhaustive,
    Heuristic,
    Default,
}

impl FromStr for ConvAlgoSearch {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "exhaustive" => Ok(Self::Exhaustive),
            "heuristic" => Ok(Self::Heuristic),
            "default" => Ok(Self::Default),
            other => Err(unknown("cudnn_conv_algo_search", other, &["exhaustive", "heuristic", "default"])),
        }
    }
}

/// CPU session settings; `None` keeps the global value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuSettings {
    pub intra_op_threads: Option<usize>,
    pub inter_op_threads: Option<usize>,
    pub arena: Option<bool>,
}

/// CUDA provider settings; `None` keeps ONNX Runtime's default (or the global flag).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CudaSettings {
    pub device_id: Option<i32>,
    pub gpu_mem_limit: Option<u64>,
    pub arena_extend_strategy: Option<ArenaExtendStrategy>,
    pub cudnn_conv_algo_search: Option<ConvAlgoSearch>,
    pub cuda_graph: Option<bool>,
    pub tf32: Option<bool>,
}

/// TensorRT provider settings; `None` keeps ONNX Runtime's default (or the global flag).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorRtSettings {
    pub device_id: Option<i32>,
    pub fp16: Option<bool>,
    pub int8: Option<bool>,
    pub int8_calibration_table: Option<PathBuf>,
    pub max_workspace_size: Option<u64>,
    pub builder_optimization_level: Option<u8>,
    pub timing_cache: Option<bool>,
    pub engine_cache: Option<bool>,
    pub cuda_graph: Option<bool>,
    pub profile_min_shapes: Option<String>,
    pub profile_opt_shapes: Option<String>,
    pub profile_max_shapes: Option<String>,
}

/// A model's execution settings, each overriding the global flag when set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionSettings {
    pub providers: Option<Vec<ExecutionProviderKind>>,
    pub require_provider: Option<ExecutionProviderKind>,
    pub graph_optimization: Option<GraphOptimization>,
    /// Absolute paths, registered after the global `--custom_op_paths`.
    pub custom_op_libraries: Vec<PathBuf>,
    pub cpu: CpuSettings,
    pub cuda: CudaSettings,
    pub tensorrt: TensorRtSettings,
    /// Overrides the queue bound (`SessionOptions::max_queued_requests`).
    pub max_queued_requests: Option<usize>,
}

/// Requests each session may have waiting, by default (`--max_queued_requests_per_session`):
/// with a model of 30 ms a call, 32 waiting requests are about a second of work, beyond which
/// a client is better told at once to retry elsewhere.
pub const DEFAULT_QUEUED_REQUESTS_PER_SESSION: usize = 32;

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
    /// Requests per session that may wait for one before more are refused.
    pub queued_requests_per_session: usize,
    /// A model's own bound on waiting requests (from `model_options.pbtxt`), in place of
    /// `queued_requests_per_session` times the sessions.
    pub max_queued_requests: Option<usize>,
}

impl SessionOptions {
    /// How many requests may wait for a session of a version built with these options.
    pub fn queue_bound(&self) -> usize {
        self.max_queued_requests
            .unwrap_or_else(|| self.sessions_per_version.max(1).saturating_mul(self.queued_requests_per_session))
            .max(1)
    }
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
            queued_requests_per_session: DEFAULT_QUEUED_REQUESTS_PER_SESSION,
            max_queued_requests: None,
        }
    }
}

impl SessionOptions {
    /// Returns these options with a model's own settings laid over them.
    /// Returns these options for a caller that uses the sessions as `hints` say: a session per
    /// concurrent call, and a TensorRT profile up to the largest batch.
    pub fn with_hints(&self, hints: &crate::core::LoadHints) -> SessionOptions {
        let mut options = self.clone();
        if let Some(calls) = hints.concurrent_calls {
            options.sessions_per_version = options.sessions_per_version.max(calls);
        }
        if let Some(rows) = hints.max_rows {
            let rows = rows.max(1);
            options.batch_profile = Some(BatchProfile { opt: rows, max: rows });
        }
        options
    }

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
        options.max_queued_requests = settings.max_queued_requests.or(options.max_queued_requests);
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_give_a_session_per_call_and_a_profile_up_to_the_largest_batch() {
        let base = SessionOptions { sessions_per_version: 2, ..SessionOptions::default() };
        let hinted = base.with_hints(&crate::core::LoadHints { concurrent_calls: Some(4), max_rows: Some(32) });
        assert_eq!(hinted.sessions_per_version, 4);
        assert_eq!(hinted.batch_profile, Some(BatchProfile { opt: 32, max: 32 }));
        // Fewer calls than the base asks for keep the base's sessions; no hints change nothing.
        let fewer = base.with_hints(&crate::core::LoadHints { concurrent_calls: Some(1), max_rows: None });
        assert_eq!((fewer.sessions_per_version, fewer.batch_profile), (2, None));
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        assert_eq!("TensorRT".parse::<ExecutionProviderKind>(), Ok(ExecutionProviderKind::TensorRt));
        assert!("rocm".parse::<ExecutionProviderKind>().expect_err("unknown").contains("tensorrt, cuda, cpu"));
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
}

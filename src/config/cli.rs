//! The command line, with TF Serving's flag names in `--flag=value` form.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};

use crate::core::VersionPolicy;

/// onnx-serving: a drop-in replacement for TensorFlow Serving that runs models on ONNX Runtime.
#[derive(Debug, Parser)]
#[command(name = "onnx-serving", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serves models over TF Serving's gRPC and REST APIs.
    Serve(Box<ServeArgs>),
    /// Converts a SavedModel's signatures to ONNX for the tensorflow platform.
    Convert(ConvertArgs),
}

/// Flags of `convert`.
#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// The SavedModel (a version directory: saved_model.pb, variables/).
    #[arg(long = "saved_model_dir")]
    pub saved_model_dir: PathBuf,

    /// Where the ONNX files and manifest.json go; default `<saved_model_dir>/onnx`, where
    /// the server looks first.
    #[arg(long = "output_dir")]
    pub output_dir: Option<PathBuf>,

    /// The Python with tensorflow and tf2onnx (python/requirements-convert.txt).
    #[arg(long = "python", default_value = "python3")]
    pub python: String,

    /// Keep the signatures' declared input shapes: requests must then match them (ONNX
    /// Runtime checks), instead of running any rank as TF does.
    #[arg(long = "keep_declared_shapes", default_value_t = false)]
    pub keep_declared_shapes: bool,
}

/// `--grpc_max_message_bytes` by default: TF Serving's limit, 2 GiB - 1.
pub const DEFAULT_GRPC_MAX_MESSAGE_BYTES: usize = i32::MAX as usize;

/// `--max_request_body_bytes` by default: 256 MiB.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 256 * 1024 * 1024;

fn parse_secret(text: &str) -> Result<crate::core::Secret, String> {
    Ok(crate::core::Secret(text.to_string()))
}

/// Parses `latest`, `latest:N`, `all` or `specific:V1,V2`.
pub fn parse_version_policy(text: &str) -> Result<VersionPolicy, String> {
    let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
    match (kind, rest) {
        ("latest", "") => Ok(VersionPolicy::Latest(1)),
        ("latest", n) => n.parse().map(VersionPolicy::Latest).map_err(|_| format!("bad version count `{n}`")),
        ("all", "") => Ok(VersionPolicy::All),
        ("specific", list) if !list.is_empty() => list
            .split(',')
            .map(|v| v.trim().parse::<i64>().map_err(|_| format!("bad version `{v}`")))
            .collect::<Result<_, _>>()
            .map(VersionPolicy::Specific),
        _ => Err(format!("expected latest, latest:N, all or specific:V1,V2; got `{text}`")),
    }
}

/// Flags of `serve`. Names and defaults follow TF Serving unless noted.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// gRPC port (PredictionService, ModelService); 0 disables gRPC over TCP.
    #[arg(long = "port", default_value_t = 8500)]
    pub port: u16,

    /// gRPC listen address as HOST:PORT, overriding --port (port 0 picks a free port, which
    /// is printed). Not a TF Serving flag.
    #[arg(long = "grpc_address")]
    pub grpc_address: Option<SocketAddr>,

    /// Also serves gRPC on this Unix socket; a stale socket file is removed first.
    #[arg(long = "grpc_socket_path")]
    pub grpc_socket_path: Option<PathBuf>,

    /// gRPC channel arguments as `key=value,key=value`. Keys tonic can honour are applied
    /// (grpc.max_receive_message_length, grpc.max_send_message_length,
    /// grpc.max_concurrent_streams, grpc.keepalive_time_ms, grpc.keepalive_timeout_ms,
    /// grpc.http2.max_frame_size, grpc.max_connection_age_ms); others are logged and ignored.
    #[arg(long = "grpc_channel_arguments")]
    pub grpc_channel_arguments: Option<String>,

    /// Largest gRPC message received or sent, in bytes. TF Serving's limit is 2 GiB - 1;
    /// lower it to bound per-request memory. Not a TF Serving flag.
    #[arg(long = "grpc_max_message_bytes", default_value_t = DEFAULT_GRPC_MAX_MESSAGE_BYTES)]
    pub grpc_max_message_bytes: usize,

    /// Serves grpc.health.v1.Health: SERVING while every model has an available version.
    #[arg(long = "enable_grpc_healthcheck_service", default_value_t = false, num_args = 0..=1,
        require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub enable_grpc_healthcheck_service: bool,

    /// Merges concurrent requests to a model into batches along dimension 0.
    #[arg(long = "enable_batching", default_value_t = false, num_args = 0..=1,
        require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub enable_batching: bool,

    /// Text-format BatchingParameters for every model (needs --enable_batching). Without it,
    /// TF Serving's defaults apply: max_batch_size 1000, no timeout, 10 queued batches.
    #[arg(long = "batching_parameters_file")]
    pub batching_parameters_file: Option<PathBuf>,

    /// Reads `<version>/batching_params.pbtxt`, when present, instead of the global parameters.
    #[arg(long = "enable_per_model_batching_parameters", default_value_t = false, num_args = 0..=1,
        require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub enable_per_model_batching_parameters: bool,

    /// Sends gRPC outputs packed in `tensor_content` instead of the typed `*_val` fields.
    /// Smaller and faster, but clients that read `float_val` directly break. REST is unaffected.
    #[arg(long = "enable_serialization_as_tensor_content", default_value_t = false, num_args = 0..=1,
        require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub enable_serialization_as_tensor_content: bool,

    /// What the tensors of one gRPC request may decode to, in bytes (TF's fill rule lets a
    /// 20-byte tensor ask for gigabytes; a request over it gets INVALID_ARGUMENT before
    /// anything is allocated). Default: a sixteenth of the machine's memory, at most 1 GiB.
    #[arg(long = "max_decoded_request_bytes")]
    pub max_decoded_request_bytes: Option<u64>,

    /// What all requests in flight together may hold once decoded, in bytes; a request that
    /// would pass it is refused at once with RESOURCE_EXHAUSTED (REST 429 with Retry-After).
    /// Default: a quarter of the machine's memory.
    #[arg(long = "max_inflight_request_bytes")]
    pub max_inflight_request_bytes: Option<u64>,

    /// REST port; 0 disables REST. TF Serving defaults to 0, we default to 8501 as its
    /// Docker image does.
    #[arg(long = "rest_api_port", default_value_t = 8501)]
    pub rest_api_port: u16,

    /// REST listen address as HOST:PORT, overriding --rest_api_port (port 0 picks a free
    /// port, which is logged). Not a TF Serving flag.
    #[arg(long = "rest_api_address")]
    pub rest_api_address: Option<SocketAddr>,

    /// Per-request REST timeout in milliseconds; ≤ 0 means none. Exceeding it returns 504.
    #[arg(long = "rest_api_timeout_in_ms", default_value_t = 30000, allow_negative_numbers = true)]
    pub rest_api_timeout_in_ms: i64,

    /// Text-format ModelServerConfig listing every model (name, base_path, model_platform,
    /// model_version_policy, version_labels). Replaces --model_name and --model_base_path.
    #[arg(long = "model_config_file")]
    pub model_config_file: Option<PathBuf>,

    /// Seconds between re-reads of --model_config_file; a changed file adds, removes and
    /// relabels models without a restart, a broken one is logged and ignored. 0 never re-reads.
    #[arg(long = "model_config_file_poll_wait_seconds", default_value_t = 0)]
    pub model_config_file_poll_wait_seconds: u64,

    /// Lets a new version label point at a version that is not (yet) available.
    #[arg(long = "allow_version_labels_for_unavailable_models", default_value_t = false, num_args = 0..=1,
        require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub allow_version_labels_for_unavailable_models: bool,

    /// On SIGTERM or Ctrl-C, how long the server keeps accepting requests while it reports
    /// not ready, so load balancers take it out of rotation first. A second signal ends the
    /// window early. Not a TF Serving flag.
    #[arg(long = "drain_seconds", default_value_t = 5)]
    pub drain_seconds: u64,

    /// On SIGTERM or Ctrl-C, after the drain window, how long in-flight requests may take
    /// before the process exits anyway. Not a TF Serving flag.
    #[arg(long = "shutdown_grace_seconds", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,

    /// Text-format MonitoringConfig; with `prometheus_config { enable: true }` Prometheus
    /// metrics are served on the REST port at its path (default /monitoring/prometheus/metrics).
    #[arg(long = "monitoring_config_file")]
    pub monitoring_config_file: Option<PathBuf>,

    /// Requires HTTP basic auth on every REST route (except /v1/health/*) and the same
    /// `authorization: Basic ...` metadata on gRPC calls.
    #[arg(long = "enable_auth", default_value_t = false, num_args = 0..=1,
        require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub enable_auth: bool,

    /// The accepted username (with --enable_auth).
    #[arg(long = "auth_username")]
    pub auth_username: Option<String>,

    /// The accepted password (with --enable_auth). Visible in the process list: prefer
    /// --auth_password_file.
    #[arg(long = "auth_password", value_parser = parse_secret)]
    pub auth_password: Option<crate::core::Secret>,

    /// A file whose first line is the accepted password (with --enable_auth).
    #[arg(long = "auth_password_file")]
    pub auth_password_file: Option<PathBuf>,

    /// Adds CORS headers to REST responses (Access-Control-Allow-Origin: *, ...).
    #[arg(long = "rest_api_enable_cors_support", default_value_t = false, num_args = 0..=1,
        require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub rest_api_enable_cors_support: bool,

    /// Largest REST request body, after gzip decoding; larger ones get 413. Not a TF
    /// Serving flag (TF Serving caps gzip bodies at 100 MiB).
    #[arg(long = "max_request_body_bytes", default_value_t = DEFAULT_MAX_REQUEST_BODY_BYTES)]
    pub max_request_body_bytes: usize,

    /// Runs `<version>/assets.extra/tf_serving_warmup_requests` (a TFRecord file of
    /// PredictionLogs) before a version serves; a failing warmup fails the load.
    #[arg(long = "enable_model_warmup", default_value_t = true, num_args = 0..=1,
        require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub enable_model_warmup: bool,

    /// Times each warmup record runs; 0 means once.
    #[arg(long = "num_request_iterations_for_warmup", default_value_t = 0)]
    pub num_request_iterations_for_warmup: usize,

    /// Text-format SSLConfig (PEM server_key, server_cert, custom_ca, client_verify) that puts
    /// gRPC behind TLS, or mutual TLS with client_verify.
    #[arg(long = "ssl_config_file")]
    pub ssl_config_file: Option<PathBuf>,

    /// PEM certificate chain for REST over TLS (with --rest_ssl_key_file). Not a TF Serving flag.
    #[arg(long = "rest_ssl_cert_file")]
    pub rest_ssl_cert_file: Option<PathBuf>,

    /// PEM private key for REST over TLS.
    #[arg(long = "rest_ssl_key_file")]
    pub rest_ssl_key_file: Option<PathBuf>,

    /// Name of the model served in single-model mode.
    #[arg(long = "model_name", default_value = "default")]
    pub model_name: String,

    /// Directory holding numeric version subdirectories. Relative paths are resolved
    /// against the working directory (TF Serving demands absolute ones).
    #[arg(long = "model_base_path")]
    pub model_base_path: Option<PathBuf>,

    /// Which versions to serve: `latest` (the highest), `latest:N`, `all`, or
    /// `specific:1,2`. Not a TF Serving flag: there, policies need a model config file.
    #[arg(long = "model_version_policy", default_value = "latest", value_parser = parse_version_policy)]
    pub model_version_policy: VersionPolicy,

    /// Platform of the model: onnx, pytorch or tensorflow. Without it (as TF Serving is run),
    /// each version directory decides: saved_model.pb is tensorflow, an .onnx file is onnx.
    #[arg(long = "model_platform", default_value = "")]
    pub model_platform: String,

    /// Seconds between polls of the base path; events from the file system trigger scans
    /// in between. 0 scans once at start; negative never polls (events still apply).
    #[arg(long = "file_system_poll_wait_seconds", default_value_t = 1, allow_negative_numbers = true)]
    pub file_system_poll_wait_seconds: i64,

    /// Extra attempts after a failed load. Each retry keeps the version LOADING.
    #[arg(long = "max_num_load_retries", default_value_t = 5)]
    pub max_num_load_retries: u32,

    /// How many versions load at once after the initial load; 0 loads one at a time. The
    /// initial load uses 4 per CPU, as TF Serving's does.
    #[arg(long = "num_load_threads", default_value_t = 0)]
    pub num_load_threads: usize,

    /// Accepted for TF Serving's command lines; unloads run as each version drains.
    #[arg(long = "num_unload_threads", default_value_t = 0)]
    pub num_unload_threads: usize,

    /// Wait between load retries, in microseconds.
    #[arg(long = "load_retry_interval_micros", default_value_t = 60_000_000)]
    pub load_retry_interval_micros: u64,

    /// Path of libonnxruntime.so. Otherwise ORT_DYLIB_PATH, the executable's directory, the
    /// onnxruntime Python package and the system paths are searched, in that order.
    #[arg(long = "ort_library_path")]
    pub ort_library_path: Option<PathBuf>,

    /// Execution providers in priority order (tensorrt, cuda, cpu). Unavailable ones are
    /// skipped with a warning; CPU is always the last resort.
    #[arg(long = "execution_providers", default_value = "cpu", value_delimiter = ',')]
    pub execution_providers: Vec<String>,

    /// GPU used by the CUDA and TensorRT providers.
    #[arg(long = "gpu_device_id", default_value_t = 0)]
    pub gpu_device_id: i32,

    /// A provider that must register, or the version fails to load instead of falling back
    /// (e.g. `cuda`, for users who would rather fail than run slowly on CPU).
    #[arg(long = "require_execution_provider")]
    pub require_execution_provider: Option<String>,

    /// Share of the GPU's memory the CUDA provider's arena may take (0 = no limit), as TF
    /// Serving's flag; a model's own `gpu_mem_limit` wins.
    #[arg(long = "per_process_gpu_memory_fraction", default_value_t = 0.0)]
    pub per_process_gpu_memory_fraction: f64,

    /// Directory of TensorRT engines, keyed by model content, options, runtime and GPU, so
    /// that reloads and copies of a model reuse them.
    #[arg(long = "tensorrt_cache_dir")]
    pub tensorrt_cache_dir: Option<PathBuf>,

    /// Comma-separated custom operator libraries registered on every session.
    #[arg(long = "custom_op_paths", value_delimiter = ',')]
    pub custom_op_paths: Vec<PathBuf>,

    /// Where the tensorflow platform keeps SavedModel conversions, keyed by content
    /// (default ~/.cache/onnx-serving/conversions). The model directories are never written.
    #[arg(long = "conversion_cache_dir")]
    pub conversion_cache_dir: Option<PathBuf>,

    /// The Python that runs the SavedModel converter when a version has no conversion
    /// (it needs tensorflow and tf2onnx: python/requirements-convert.txt).
    #[arg(long = "conversion_python", default_value = "python3")]
    pub conversion_python: String,

    /// A SavedModel conversion still running after this many seconds is stopped and the
    /// version fails to load with the converter's last output; 0 never stops it.
    #[arg(long = "conversion_timeout_seconds", default_value_t = 1800)]
    pub conversion_timeout_seconds: u64,

    /// SavedModel conversions that may run at once; each converter can take gigabytes
    /// (about 9 GB for Keras ResNet50), so one at a time by default.
    #[arg(long = "max_concurrent_conversions", default_value_t = 1,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub max_concurrent_conversions: u64,

    /// Threads inside one operator; 0 lets ONNX Runtime use every core.
    #[arg(long = "intra_op_threads", default_value_t = 0)]
    pub intra_op_threads: usize,

    /// Requests per session that may wait for one (without batching) before more are
    /// refused with UNAVAILABLE (REST 503 with Retry-After); `max_queued_requests` in a
    /// model's model_options.pbtxt overrides the product for that model.
    #[arg(long = "max_queued_requests_per_session", default_value_t = 32,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queued_requests_per_session: u64,

    /// Threads across independent operators; 0 lets ONNX Runtime choose.
    #[arg(long = "inter_op_threads", default_value_t = 0)]
    pub inter_op_threads: usize,

    /// Prints the version and exits.
    #[arg(long = "version", action = ArgAction::SetTrue)]
    pub print_version: bool,
}

/// Removes `--flag[=value]` arguments that `serve` does not know, as TF Serving tolerates
/// them. Returns the kept arguments and the dropped ones.
pub fn split_unknown_flags(args: Vec<String>) -> (Vec<String>, Vec<String>) {
    let command = Cli::command();
    let serve = command.find_subcommand("serve");
    let known: Vec<String> =
        serve.map(|s| s.get_arguments().filter_map(|a| a.get_long().map(str::to_string)).collect()).unwrap_or_default();
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    let mut after_serve = false;
    for arg in args {
        if !after_serve {
            after_serve = arg == "serve";
            kept.push(arg);
            continue;
        }
        let flag = arg.strip_prefix("--").map(|rest| rest.split('=').next().unwrap_or(rest));
        match flag {
            Some(name) if name != "help" && !known.iter().any(|k| k == name) => dropped.push(arg),
            _ => kept.push(arg),
        }
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tf_serving_flags() {
        let cli = Cli::try_parse_from([
            "onnx-serving",
            "serve",
            "--model_name=mnist",
            "--model_base_path=models/mnist_onnx",
            "--rest_api_port=9000",
            "--execution_providers=tensorrt,cuda,cpu",
            "--file_system_poll_wait_seconds=-1",
        ])
        .expect("parse");
        let Command::Serve(args) = cli.command else { panic!("serve") };
        assert_eq!(args.model_name, "mnist");
        assert_eq!(args.rest_api_port, 9000);
        assert_eq!(args.port, 8500);
        assert_eq!(args.execution_providers, vec!["tensorrt", "cuda", "cpu"]);
        assert_eq!(args.file_system_poll_wait_seconds, -1);
        assert!(!args.enable_grpc_healthcheck_service);
    }

    #[test]
    fn bool_flags_take_tf_serving_forms() {
        let parse = |flag: &str| {
            let cli = Cli::try_parse_from(["onnx-serving", "serve", flag]).map_err(|e| e.to_string())?;
            let Command::Serve(args) = cli.command else { panic!("serve") };
            Ok::<_, String>(args.enable_grpc_healthcheck_service)
        };
        assert_eq!(parse("--enable_grpc_healthcheck_service"), Ok(true));
        assert_eq!(parse("--enable_grpc_healthcheck_service=true"), Ok(true));
        assert_eq!(parse("--enable_grpc_healthcheck_service=false"), Ok(false));
        assert!(parse("--enable_grpc_healthcheck_service=1").is_err());
    }

    #[test]
    fn parses_version_policies() {
        assert_eq!(parse_version_policy("latest"), Ok(VersionPolicy::Latest(1)));
        assert_eq!(parse_version_policy("latest:3"), Ok(VersionPolicy::Latest(3)));
        assert_eq!(parse_version_policy("all"), Ok(VersionPolicy::All));
        assert_eq!(parse_version_policy("specific:1,2"), Ok(VersionPolicy::Specific([1, 2].into())));
        assert!(parse_version_policy("newest").is_err());
        assert!(parse_version_policy("specific:x").is_err());
    }

    #[test]
    fn unknown_flags_are_dropped_not_fatal() {
        let args = ["onnx-serving", "serve", "--model_name=m", "--tensorflow_session_parallelism=2"]
            .map(String::from)
            .to_vec();
        let (kept, dropped) = split_unknown_flags(args);
        assert_eq!(dropped, vec!["--tensorflow_session_parallelism=2"]);
        assert!(Cli::try_parse_from(kept).is_ok());
    }
}

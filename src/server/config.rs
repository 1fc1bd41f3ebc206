//! The validated server configuration, built from TF Serving's flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tracing::{info, warn};

use crate::auth::Credentials;
use crate::batching::BatchingParameters;
use crate::config::model_server_config::read_model_config_file;
use crate::config::ServeArgs;
use crate::core::Secret;
use crate::core::{ManagerOptions, ModelConfig};
use crate::grpc::GrpcOptions;
use crate::proto::text_format::TextFormatError;
use crate::runtime::{ExecutionProviderKind, SessionOptions};

/// Why the flags and the files they name do not make a server configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag's value, or a combination of flags, is not allowed.
    #[error("{0}")]
    Flags(String),
    /// A config file cannot be read or holds a bad value.
    #[error(transparent)]
    File(#[from] TextFormatError),
    /// `--model_config_file` is not text-format protobuf (the parse error goes to stderr first).
    #[error("Invalid protobuf file: '{}'", path.display())]
    InvalidProtobufFile {
        path: PathBuf,
        #[source]
        source: TextFormatError,
    },
    #[error("cannot read --auth_password_file {}: {source}", path.display())]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot resolve the working directory: {0}")]
    WorkingDir(#[source] std::io::Error),
}

/// Everything the server needs, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `None` disables REST.
    pub rest_api_address: Option<SocketAddr>,
    /// `None` disables gRPC over TCP.
    pub grpc_address: Option<SocketAddr>,
    /// Also serve gRPC on this Unix socket (`--grpc_socket_path`).
    pub grpc_socket_path: Option<PathBuf>,
    pub grpc: GrpcOptions,
    /// `--enable_serialization_as_tensor_content`: gRPC outputs in `tensor_content`.
    pub serialize_as_tensor_content: bool,
    /// What the tensors of one gRPC request may decode to.
    pub max_decoded_request_bytes: usize,
    /// What all requests in flight together may hold, decoded.
    pub max_inflight_request_bytes: usize,
    pub models: Vec<ModelConfig>,
    /// `None` never polls; file events still trigger scans.
    pub file_system_poll_wait: Option<Duration>,
    pub rest_api_timeout: Option<Duration>,
    pub manager: ManagerOptions,
    pub ort_library_path: Option<PathBuf>,
    pub session: SessionOptions,
    /// Where the `tensorflow` platform finds or makes SavedModel conversions.
    pub conversion: crate::platforms::tensorflow::ConversionOptions,
    /// `None` without `--enable_batching`.
    pub batching: Option<BatchingConfig>,
    /// `--model_config_file`, re-read every `model_config_file_poll_wait` when set.
    pub model_config_file: Option<PathBuf>,
    pub model_config_file_poll_wait: Option<Duration>,
    /// `--allow_version_labels_for_unavailable_models`.
    pub allow_labels_for_unavailable_models: bool,
    /// How long a shutdown keeps accepting requests while reporting not ready.
    pub drain: Duration,
    /// How long a shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// The Prometheus path from `--monitoring_config_file`, when enabled.
    pub prometheus_path: Option<String>,
    /// `--enable_auth`: the one accepted username and password.
    pub credentials: Option<Credentials>,
    /// `--rest_api_enable_cors_support`.
    pub cors: bool,
    pub max_request_body_bytes: usize,
    /// Runs each version's warmup records this many times before it serves; `None` skips warmup.
    pub warmup_iterations: Option<usize>,
    /// `--rest_ssl_cert_file` and `--rest_ssl_key_file`: REST over TLS.
    pub rest_tls: Option<(PathBuf, PathBuf)>,
}

/// How models are batched.
#[derive(Debug, Clone)]
pub struct BatchingConfig {
    pub global: BatchingParameters,
    /// `--enable_per_model_batching_parameters`.
    pub per_model_files: bool,
}

impl ServerConfig {
    /// Returns a config for `models` with every other setting at its default, gRPC and
    /// REST off. Tests and benches start from this.
    pub fn for_models(models: Vec<ModelConfig>) -> Self {
        Self {
            rest_api_address: None,
            grpc_address: None,
            grpc_socket_path: None,
            grpc: GrpcOptions::default(),
            serialize_as_tensor_content: false,
            max_decoded_request_bytes: default_decoded_request_bytes(),
            max_inflight_request_bytes: default_inflight_request_bytes(),
            models,
            file_system_poll_wait: Some(Duration::from_secs(1)),
            rest_api_timeout: Some(Duration::from_secs(30)),
            manager: ManagerOptions::default(),
            ort_library_path: None,
            session: SessionOptions::default(),
            conversion: Default::default(),
            batching: None,
            model_config_file: None,
            model_config_file_poll_wait: None,
            allow_labels_for_unavailable_models: false,
            // NOTE: in-process servers (tests, embedders) stop at once; the binary's flag
            // defaults to a few seconds.
            drain: Duration::ZERO,
            shutdown_grace: Duration::from_secs(30),
            prometheus_path: None,
            credentials: None,
            cors: false,
            max_request_body_bytes: crate::http::MAX_REQUEST_BODY_BYTES,
            warmup_iterations: Some(1),
            rest_tls: None,
        }
    }

    /// Validates the `serve` flags.
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let working_dir = std::env::current_dir().map_err(ConfigError::WorkingDir)?;
        let models = match (&args.model_config_file, &args.model_base_path) {
            (Some(path), _) => match read_model_config_file(path, &working_dir) {
                Ok(models) => models,
                Err(error) if error.is_syntax() => {
                    // NOTE: tooling greps stderr for this line, as TF Serving prints it.
                    eprintln!("{error}");
                    return Err(ConfigError::InvalidProtobufFile { path: path.clone(), source: error });
                }
                Err(error) => return Err(error.into()),
            },
            (None, Some(base_path)) => vec![ModelConfig {
                name: args.model_name.clone(),
                // NOTE: joining an absolute path gives that path.
                base_path: working_dir.join(base_path),
                platform: args.model_platform.clone(),
                policy: args.model_version_policy.clone(),
                labels: Default::default(),
            }],
            (None, None) => {
                return Err(ConfigError::Flags(
                    "Both server_options.model_base_path and server_options.model_config_file are empty! \
                 (give --model_base_path, the directory that holds the numeric version directories, \
                 or --model_config_file)"
                        .into(),
                ))
            }
        };
        let execution_providers = args
            .execution_providers
            .iter()
            .filter(|name| !name.trim().is_empty())
            .map(|name| {
                name.parse::<ExecutionProviderKind>()
                    .map_err(|e| ConfigError::Flags(format!("--execution_providers: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let require_provider = match args.require_execution_provider.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(
                name.parse::<ExecutionProviderKind>()
                    .map_err(|e| ConfigError::Flags(format!("--require_execution_provider: {e}")))?,
            ),
        };
        if !(0.0..=1.0).contains(&args.per_process_gpu_memory_fraction) {
            return Err(ConfigError::Flags(format!(
                "--per_process_gpu_memory_fraction must be between 0 and 1; was {}",
                args.per_process_gpu_memory_fraction
            )));
        }
        let rest_api_address = match args.rest_api_address {
            Some(address) => Some(address),
            None if args.rest_api_port == 0 => None,
            None => Some(SocketAddr::from(([0, 0, 0, 0], args.rest_api_port))),
        };
        let grpc_address = match args.grpc_address {
            Some(address) => Some(address),
            None if args.port == 0 => None,
            None => Some(SocketAddr::from(([0, 0, 0, 0], args.port))),
        };
        if let (Some(rest), Some(grpc)) = (rest_api_address, grpc_address) {
            if rest.port() != 0 && rest == grpc {
                return Err(ConfigError::Flags(format!(
                    "--rest_api_port and --port must differ (both are {})",
                    rest.port()
                )));
            }
        }
        if args.batching_parameters_file.is_some() && !args.enable_batching {
            return Err(ConfigError::Flags("server_options.batching_parameters_file is set without setting server_options.enable_batching to true.".into()));
        }
        let batching = if args.enable_batching {
            let global = match &args.batching_parameters_file {
                Some(path) => crate::batching::params_file::read_file(path, "batch_threads")?,
                None => {
                    BatchingParameters { thread_pool_name: "model_server_batch_threads".into(), ..Default::default() }
                }
            };
            Some(BatchingConfig { global, per_model_files: args.enable_per_model_batching_parameters })
        } else {
            None
        };
        let prometheus_path = match &args.monitoring_config_file {
            Some(path) => crate::config::monitoring::read_file(path)?,
            None => None,
        };
        if prometheus_path.is_some() && rest_api_address.is_none() {
            return Err(ConfigError::Flags(
                "--monitoring_config_file needs the REST API (--rest_api_port), which serves the metrics".into(),
            ));
        }
        let mut grpc = GrpcOptions {
            max_receive_message_bytes: args.grpc_max_message_bytes,
            max_send_message_bytes: args.grpc_max_message_bytes,
            enable_health_service: args.enable_grpc_healthcheck_service,
            tls: match &args.ssl_config_file {
                Some(path) => {
                    let ssl = crate::config::ssl::read_file(path)?;
                    Some(crate::grpc::GrpcTls {
                        server_cert_pem: ssl.server_cert_pem,
                        server_key_pem: ssl.server_key_pem,
                        client_ca_pem: ssl.client_ca_pem,
                        client_verify: ssl.client_verify,
                    })
                }
                None => None,
            },
            ..GrpcOptions::default()
        };
        if let Some(arguments) = &args.grpc_channel_arguments {
            let ignored = grpc.apply_channel_arguments(arguments).map_err(ConfigError::Flags)?;
            for key in ignored {
                info!(argument = %key, "gRPC channel argument has no tonic equivalent, ignored");
            }
        }
        Ok(Self {
            rest_api_address,
            grpc_address,
            grpc_socket_path: args.grpc_socket_path.clone().filter(|p| !p.as_os_str().is_empty()),
            grpc,
            serialize_as_tensor_content: args.enable_serialization_as_tensor_content,
            max_decoded_request_bytes: args
                .max_decoded_request_bytes
                .map_or_else(default_decoded_request_bytes, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            max_inflight_request_bytes: args
                .max_inflight_request_bytes
                .map_or_else(default_inflight_request_bytes, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            models,
            file_system_poll_wait: u64::try_from(args.file_system_poll_wait_seconds)
                .ok()
                .filter(|&s| s > 0)
                .map(Duration::from_secs),
            rest_api_timeout: u64::try_from(args.rest_api_timeout_in_ms)
                .ok()
                .filter(|&ms| ms > 0)
                .map(Duration::from_millis),
            manager: ManagerOptions {
                max_num_load_retries: args.max_num_load_retries,
                load_retry_interval: Duration::from_micros(args.load_retry_interval_micros),
                num_load_threads: args.num_load_threads,
            },
            ort_library_path: args.ort_library_path.clone(),
            session: SessionOptions {
                execution_providers,
                require_provider,
                gpu_device_id: args.gpu_device_id,
                gpu_memory_fraction: (args.per_process_gpu_memory_fraction > 0.0)
                    .then_some(args.per_process_gpu_memory_fraction),
                intra_op_threads: args.intra_op_threads,
                queued_requests_per_session: usize::try_from(args.max_queued_requests_per_session)
                    .unwrap_or(usize::MAX),
                inter_op_threads: args.inter_op_threads,
                custom_op_libraries: args
                    .custom_op_paths
                    .iter()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(|p| working_dir.join(p))
                    .collect(),
                tensorrt_cache_dir: args.tensorrt_cache_dir.as_ref().map(|p| working_dir.join(p)),
                ..SessionOptions::default()
            },
            conversion: {
                let mut conversion = crate::platforms::tensorflow::ConversionOptions::default();
                if let Some(dir) = &args.conversion_cache_dir {
                    conversion.cache_dir = working_dir.join(dir);
                }
                conversion.python = args.conversion_python.clone();
                conversion.max_concurrent = usize::try_from(args.max_concurrent_conversions).unwrap_or(usize::MAX);
                conversion.timeout = (args.conversion_timeout_seconds > 0)
                    .then(|| std::time::Duration::from_secs(args.conversion_timeout_seconds));
                conversion
            },
            batching,
            model_config_file: args.model_config_file.clone(),
            model_config_file_poll_wait: (args.model_config_file_poll_wait_seconds > 0)
                .then(|| Duration::from_secs(args.model_config_file_poll_wait_seconds)),
            allow_labels_for_unavailable_models: args.allow_version_labels_for_unavailable_models,
            drain: Duration::from_secs(args.drain_seconds),
            shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
            prometheus_path,
            credentials: credentials_from_args(args)?,
            cors: args.rest_api_enable_cors_support,
            max_request_body_bytes: args.max_request_body_bytes,
            warmup_iterations: args.enable_model_warmup.then_some(args.num_request_iterations_for_warmup.max(1)),
            rest_tls: match (&args.rest_ssl_cert_file, &args.rest_ssl_key_file) {
                (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
                (None, None) => None,
                _ => return Err(ConfigError::Flags("--rest_ssl_cert_file and --rest_ssl_key_file go together".into())),
            },
        })
    }
}

/// The machine's memory, when it can be read.
fn machine_memory_bytes() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim();
    kib.parse::<usize>().ok().map(|kib| kib.saturating_mul(1024))
}

/// A sixteenth of the machine's memory, at most 1 GiB (and 1 GiB where the memory cannot
/// be read): a few requests at that size stay well inside memory.
fn default_decoded_request_bytes() -> usize {
    const CAP: usize = 1 << 30;
    machine_memory_bytes().map_or(CAP, |bytes| (bytes / 16).min(CAP))
}

/// A quarter of the machine's memory (4 GiB where it cannot be read): the rest is left to the
/// models, their sessions and ONNX Runtime's arenas.
fn default_inflight_request_bytes() -> usize {
    machine_memory_bytes().map_or(4 << 30, |bytes| bytes / 4)
}

fn credentials_from_args(args: &ServeArgs) -> Result<Option<Credentials>, ConfigError> {
    if !args.enable_auth {
        if args.auth_username.is_some() || args.auth_password.is_some() || args.auth_password_file.is_some() {
            warn!("--auth_* flags are ignored without --enable_auth");
        }
        return Ok(None);
    }
    let Some(username) = args.auth_username.clone().filter(|u| !u.is_empty()) else {
        return Err(ConfigError::Flags("--enable_auth needs --auth_username".into()));
    };
    let password = match (&args.auth_password, &args.auth_password_file) {
        (Some(password), None) => password.clone(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::PasswordFile { path: path.clone(), source })?;
            Secret(text.lines().next().unwrap_or_default().to_string())
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::Flags("give --auth_password or --auth_password_file, not both".into()))
        }
        (None, None) => {
            return Err(ConfigError::Flags("--enable_auth needs --auth_password or --auth_password_file".into()))
        }
    };
    if password.0.is_empty() {
        return Err(ConfigError::Flags("--enable_auth needs a non-empty password".into()));
    }
    Ok(Some(Credentials { username, password }))
}

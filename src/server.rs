//! The composition root: config -> runtime -> registry -> manager -> sources -> transports.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::{Credentials, Secret};
use crate::batching::{BatchingAdapter, BatchingParameters, PerModelParameters};
use crate::config::model_server_config::{read_model_config_file, ConfigFileError};
use crate::config::ServeArgs;
use crate::core::{
    AspiredVersionsManager, ConfigReloader, ManagerOptions, ReloadFuture, ServableId, ServableState, ServingError,
    ServingResult, SourceAdapter,
};
use crate::grpc::{GrpcOptions, GrpcState};
use crate::http::{router, AppState};
use crate::platforms::onnx::OnnxAdapter;
use crate::platforms::PlatformRegistry;
use crate::runtime::{ExecutionProviderKind, OrtRuntime, SessionOptions};
use crate::sources::file_system::check_base_paths;
use crate::sources::{FileSystemSource, FileSystemSourceHandle, WatchedModel};

pub use crate::core::ModelConfig;

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
    pub models: Vec<ModelConfig>,
    /// `None` never polls; file events still trigger scans.
    pub file_system_poll_wait: Option<Duration>,
    pub rest_api_timeout: Option<Duration>,
    pub manager: ManagerOptions,
    pub ort_library_path: Option<PathBuf>,
    pub session: SessionOptions,
    /// `None` without `--enable_batching`.
    pub batching: Option<BatchingConfig>,
    /// `--model_config_file`, re-read every `model_config_file_poll_wait` when set.
    pub model_config_file: Option<PathBuf>,
    pub model_config_file_poll_wait: Option<Duration>,
    /// `--allow_version_labels_for_unavailable_models`.
    pub allow_labels_for_unavailable_models: bool,
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
            models,
            file_system_poll_wait: Some(Duration::from_secs(1)),
            rest_api_timeout: Some(Duration::from_secs(30)),
            manager: ManagerOptions::default(),
            ort_library_path: None,
            session: SessionOptions::default(),
            batching: None,
            model_config_file: None,
            model_config_file_poll_wait: None,
            allow_labels_for_unavailable_models: false,
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
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Self> {
        let working_dir = std::env::current_dir().context("cannot resolve the working directory")?;
        let models = match (&args.model_config_file, &args.model_base_path) {
            (Some(path), _) => match read_model_config_file(path, &working_dir) {
                Ok(models) => models,
                Err(ConfigFileError::Syntax(message)) => {
                    // NOTE: tooling greps stderr for this line, as TF Serving prints it.
                    eprintln!("{message}");
                    bail!("Invalid protobuf file: '{}'", path.display());
                }
                Err(error) => bail!("{error}"),
            },
            (None, Some(base_path)) => vec![ModelConfig {
                name: args.model_name.clone(),
                base_path: if base_path.is_absolute() { base_path.clone() } else { working_dir.join(base_path) },
                platform: args.model_platform.clone(),
                policy: args.model_version_policy.clone(),
                labels: Default::default(),
            }],
            (None, None) => bail!(
                "Both server_options.model_base_path and server_options.model_config_file are empty! \
                 (give --model_base_path, the directory that holds the numeric version directories, \
                 or --model_config_file)"
            ),
        };
        let execution_providers = args
            .execution_providers
            .iter()
            .filter(|name| !name.trim().is_empty())
            .map(|name| name.parse::<ExecutionProviderKind>().map_err(|e| anyhow!("--execution_providers: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
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
                bail!("--rest_api_port and --port must differ (both are {})", rest.port());
            }
        }
        if args.batching_parameters_file.is_some() && !args.enable_batching {
            bail!("server_options.batching_parameters_file is set without setting server_options.enable_batching to true.");
        }
        let batching = if args.enable_batching {
            let global = match &args.batching_parameters_file {
                Some(path) => crate::config::batching::read_file(path, "batch_threads").map_err(|e| anyhow!(e))?,
                None => {
                    BatchingParameters { thread_pool_name: "model_server_batch_threads".into(), ..Default::default() }
                }
            };
            Some(BatchingConfig { global, per_model_files: args.enable_per_model_batching_parameters })
        } else {
            None
        };
        let prometheus_path = match &args.monitoring_config_file {
            Some(path) => crate::config::monitoring::read_file(path).map_err(|e| anyhow!(e))?,
            None => None,
        };
        if prometheus_path.is_some() && rest_api_address.is_none() {
            bail!("--monitoring_config_file needs the REST API (--rest_api_port), which serves the metrics");
        }
        let mut grpc = GrpcOptions {
            max_receive_message_bytes: args.grpc_max_message_bytes,
            max_send_message_bytes: args.grpc_max_message_bytes,
            enable_health_service: args.enable_grpc_healthcheck_service,
            tls: match &args.ssl_config_file {
                Some(path) => Some(crate::config::ssl::read_file(path).map_err(|e| anyhow!(e))?),
                None => None,
            },
            ..GrpcOptions::default()
        };
        if let Some(arguments) = &args.grpc_channel_arguments {
            let ignored = grpc.apply_channel_arguments(arguments).map_err(|e| anyhow!(e))?;
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
            },
            ort_library_path: args.ort_library_path.clone(),
            session: SessionOptions {
                execution_providers,
                gpu_device_id: args.gpu_device_id,
                intra_op_threads: args.intra_op_threads,
                inter_op_threads: args.inter_op_threads,
                sessions_per_version: 1,
            },
            batching,
            model_config_file: args.model_config_file.clone(),
            model_config_file_poll_wait: (args.model_config_file_poll_wait_seconds > 0)
                .then(|| Duration::from_secs(args.model_config_file_poll_wait_seconds)),
            allow_labels_for_unavailable_models: args.allow_version_labels_for_unavailable_models,
            shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
            prometheus_path,
            credentials: credentials_from_args(args)?,
            cors: args.rest_api_enable_cors_support,
            max_request_body_bytes: args.max_request_body_bytes,
            warmup_iterations: args.enable_model_warmup.then_some(args.num_request_iterations_for_warmup.max(1)),
            rest_tls: match (&args.rest_ssl_cert_file, &args.rest_ssl_key_file) {
                (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
                (None, None) => None,
                _ => bail!("--rest_ssl_cert_file and --rest_ssl_key_file go together"),
            },
        })
    }
}

fn credentials_from_args(args: &ServeArgs) -> anyhow::Result<Option<Credentials>> {
    if !args.enable_auth {
        if args.auth_username.is_some() || args.auth_password.is_some() || args.auth_password_file.is_some() {
            warn!("--auth_* flags are ignored without --enable_auth");
        }
        return Ok(None);
    }
    let Some(username) = args.auth_username.clone().filter(|u| !u.is_empty()) else {
        bail!("--enable_auth needs --auth_username");
    };
    let password = match (&args.auth_password, &args.auth_password_file) {
        (Some(password), None) => password.clone(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --auth_password_file {}", path.display()))?;
            Secret(text.lines().next().unwrap_or_default().to_string())
        }
        (Some(_), Some(_)) => bail!("give --auth_password or --auth_password_file, not both"),
        (None, None) => bail!("--enable_auth needs --auth_password or --auth_password_file"),
    };
    if password.0.is_empty() {
        bail!("--enable_auth needs a non-empty password");
    }
    Ok(Some(Credentials { username, password }))
}

/// Returns the registry with every built-in platform.
pub fn builtin_platforms(runtime: &'static OrtRuntime, session: SessionOptions) -> PlatformRegistry {
    let mut registry = PlatformRegistry::default();
    for platform in ["onnx", "pytorch"] {
        let session = session.clone();
        registry.register(
            platform,
            Arc::new(move || Arc::new(OnnxAdapter::new(platform, runtime, session.clone())) as Arc<dyn SourceAdapter>),
        );
    }
    registry
}

/// Applies model configs to the manager and the source: TF Serving's `ServerCore`.
struct ServerCore {
    registry: PlatformRegistry,
    batching: Option<BatchingConfig>,
    /// `None` with `--enable_model_warmup=false`.
    warmup_iterations: Option<usize>,
    allow_labels_for_unavailable_models: bool,
    manager: AspiredVersionsManager,
    source: FileSystemSourceHandle,
    /// The applied config; the lock also serialises reloads.
    current: Mutex<Vec<ModelConfig>>,
    configured_tx: watch::Sender<Vec<String>>,
}

fn watched(models: &[ModelConfig]) -> Vec<WatchedModel> {
    models
        .iter()
        .map(|m| WatchedModel { name: m.name.clone(), base_path: m.base_path.clone(), policy: m.policy.clone() })
        .collect()
}

fn failure_list(failures: &[(ServableId, ServingError)]) -> String {
    let detail: String =
        failures.iter().map(|(id, error)| format!("{{{id} due to error: {}}}, ", error.to_status_string())).collect();
    format!("{{{detail}}}")
}

impl ServerCore {
    /// Registers adapters, labels and paths, then waits for the models not served before.
    /// Returns the versions of those models that failed to load.
    async fn apply(&self, models: Vec<ModelConfig>) -> ServingResult<Vec<(ServableId, ServingError)>> {
        let mut current = self.current.lock().await;
        let mut adapters = Vec::with_capacity(models.len());
        for model in &models {
            let adapter = self.registry.adapter(&model.platform).map_err(|known| {
                ServingError::invalid_argument(format!(
                    "Model {} requests unsupported platform {} ({known})",
                    model.name, model.platform
                ))
            })?;
            adapters.push(self.decorate(adapter));
        }
        let watched = watched(&models);
        check_base_paths(&watched).map_err(ServingError::not_found)?;
        let previous: BTreeSet<&str> = current.iter().map(|m| m.name.as_str()).collect();
        let added: Vec<String> =
            models.iter().filter(|m| !previous.contains(m.name.as_str())).map(|m| m.name.clone()).collect();
        for (model, adapter) in models.iter().zip(adapters) {
            self.manager.register_model(&model.name, adapter);
        }
        self.source.set_models(watched).await;
        let failures = self.manager.wait_until_settled(&added).await;
        // NOTE: labels are checked once the new versions had their chance to load, and each
        // model's whole label map is replaced in one step, so a canary flip is atomic.
        let label_result = self.check_labels(&current, &models);
        if label_result.is_ok() {
            for model in &models {
                let labels: HashMap<String, i64> = model.labels.iter().map(|(k, v)| (k.clone(), *v)).collect();
                self.manager.set_labels(&model.name, labels);
            }
        }
        *current = models;
        self.configured_tx.send_replace(current.iter().map(|m| m.name.clone()).collect());
        label_result.map(|()| failures)
    }

    /// Wraps a platform's adapter: batching innermost (so warmup goes through it), then
    /// warmup, then the metrics that time the whole load.
    fn decorate(&self, adapter: Arc<dyn SourceAdapter>) -> Arc<dyn SourceAdapter> {
        let mut adapter = adapter;
        if let Some(batching) = &self.batching {
            let per_model = batching
                .per_model_files
                .then(|| Arc::new(crate::config::batching::read_per_model) as PerModelParameters);
            adapter = Arc::new(BatchingAdapter::new(adapter, batching.global.clone(), per_model));
        }
        if let Some(iterations) = self.warmup_iterations {
            adapter = Arc::new(crate::warmup::WarmupAdapter::new(adapter, iterations));
        }
        Arc::new(crate::observability::MetricsAdapter::new(adapter))
    }

    /// Checks TF Serving's label rule: a label points to an AVAILABLE version, except that
    /// with `--allow_version_labels_for_unavailable_models` a label that is new may point
    /// to any version.
    fn check_labels(&self, previous: &[ModelConfig], models: &[ModelConfig]) -> ServingResult<()> {
        for model in models {
            let statuses = self.manager.version_statuses(&model.name).unwrap_or_default();
            let old = previous.iter().find(|m| m.name == model.name);
            for (label, &version) in &model.labels {
                let available = statuses.iter().any(|s| s.version == version && s.state == ServableState::Available);
                let is_new = old.is_none_or(|m| !m.labels.contains_key(label));
                let allowed = available || (self.allow_labels_for_unavailable_models && is_new);
                if !allowed {
                    return Err(ServingError::failed_precondition(format!(
                        "Request to assign label to version {version} of model {}, which is not currently available for inference",
                        model.name
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The reload entry point handed to the gRPC service.
struct SharedCore(Arc<ServerCore>);

impl ConfigReloader for SharedCore {
    fn reload(&self, models: Vec<ModelConfig>) -> ReloadFuture {
        let core = Arc::clone(&self.0);
        Box::pin(async move {
            let failures = core.apply(models).await?;
            if failures.is_empty() {
                return Ok(());
            }
            Err(ServingError::unknown(format!(
                "{} model(s) did not become available: {}",
                failures.len(),
                failure_list(&failures)
            )))
        })
    }
}

/// A started server: its bound addresses and the means to stop it.
pub struct RunningServer {
    pub rest_address: Option<SocketAddr>,
    pub grpc_address: Option<SocketAddr>,
    pub manager: AspiredVersionsManager,
    ready: Arc<AtomicBool>,
    shutdown_grace: Duration,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl RunningServer {
    /// Turns readiness off, stops accepting connections, lets in-flight requests finish
    /// within the grace period, and stops every task.
    pub async fn shutdown(mut self) {
        self.ready.store(false, Ordering::SeqCst);
        self.shutdown.cancel();
        let drained =
            tokio::time::timeout(self.shutdown_grace, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            warn!(grace = ?self.shutdown_grace, "requests still running after the shutdown grace period; stopping them");
            self.tasks.shutdown().await;
        }
    }

    /// Returns the token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Loads the runtime and the initial model versions, then opens the ports.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    let library_flag = config.ort_library_path.clone();
    let runtime = tokio::task::spawn_blocking(move || OrtRuntime::init(library_flag.as_deref()))
        .await
        .context("runtime initialisation panicked")??;
    let mut session = config.session.clone();
    if let Some(batching) = &config.batching {
        // NOTE: one session per batch thread, so that num_batch_threads batches run at once.
        session.sessions_per_version = session.sessions_per_version.max(batching.global.num_batch_threads);
    }
    let registry = builtin_platforms(runtime, session);
    check_base_paths(&watched(&config.models)).map_err(|e| anyhow!("{e}"))?;

    let manager = AspiredVersionsManager::spawn(config.manager.clone());
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    // NOTE: installed before the initial load, so its load times and states are recorded.
    let prometheus = match &config.prometheus_path {
        Some(path) => crate::observability::install_prometheus().map(|handle| {
            tasks.spawn(crate::observability::version_state_task(manager.clone(), shutdown.clone()));
            info!(path = %path, "serving Prometheus metrics on the REST port");
            crate::http::PrometheusEndpoint { path: path.clone(), handle }
        }),
        None => None,
    };
    let mut source = FileSystemSource::new(Vec::new(), config.file_system_poll_wait, Arc::new(manager.clone()));
    let source_handle = source.handle();
    tasks.spawn(source.run(shutdown.clone()));
    let (configured_tx, configured_rx) = watch::channel(Vec::new());
    let core = Arc::new(ServerCore {
        registry,
        batching: config.batching.clone(),
        warmup_iterations: config.warmup_iterations,
        allow_labels_for_unavailable_models: config.allow_labels_for_unavailable_models,
        manager: manager.clone(),
        source: source_handle,
        current: Mutex::new(Vec::new()),
        configured_tx,
    });

    let names: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
    info!(models = ?names, "waiting for the initial model versions");
    let failures = match core.apply(config.models.clone()).await {
        Ok(failures) => failures,
        Err(error) => {
            shutdown.cancel();
            bail!("{error}");
        }
    };
    if !failures.is_empty() {
        shutdown.cancel();
        bail!("{} servable(s) did not become available: {}", failures.len(), failure_list(&failures));
    }

    // NOTE: the ports open only now, after the initial versions loaded, so readiness starts true.
    let ready = Arc::new(AtomicBool::new(true));
    if let (Some(path), Some(wait)) = (config.model_config_file.clone(), config.model_config_file_poll_wait) {
        tasks.spawn(poll_model_config_file(Arc::clone(&core), path, wait, shutdown.clone()));
    }
    let credentials = config.credentials.clone().map(Arc::new);
    let grpc_state = GrpcState {
        manager: manager.clone(),
        reloader: Arc::new(SharedCore(Arc::clone(&core))),
        serialize_as_tensor_content: config.serialize_as_tensor_content,
        credentials: credentials.clone(),
        working_dir: std::env::current_dir().unwrap_or_default(),
    };
    let health = if config.grpc.enable_health_service {
        let reporter = tonic_health::server::HealthReporter::new();
        let service = tonic_health::server::HealthService::from_health_reporter(reporter.clone());
        tasks.spawn(crate::grpc::health_task(reporter, manager.clone(), configured_rx, shutdown.clone()));
        Some(tonic_health::pb::health_server::HealthServer::new(service))
    } else {
        None
    };
    let mut grpc_address = None;
    if let Some(address) = config.grpc_address {
        let listener =
            TcpListener::bind(address).await.with_context(|| format!("cannot bind the gRPC API to {address}"))?;
        let bound = listener.local_addr()?;
        grpc_address = Some(bound);
        info!("Running gRPC ModelServer at {bound} ...");
        // NOTE: tests and scripts read this line to find an ephemeral port.
        println!("Running gRPC ModelServer at {bound} ...");
        let router = crate::grpc::router(grpc_state.clone(), &config.grpc, health.clone()).map_err(|e| anyhow!(e))?;
        let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |conn| {
            // NOTE: small unary calls wait on Nagle's algorithm without this.
            conn.inspect(|stream| {
                let _ = stream.set_nodelay(true);
            })
        });
        let token = shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) = router.serve_with_incoming_shutdown(incoming, token.cancelled_owned()).await {
                warn!(error = %error, "gRPC server stopped with an error");
            }
        });
    }
    if let Some(path) = &config.grpc_socket_path {
        let listener = bind_unix_socket(path)?;
        info!("Running gRPC ModelServer at unix:{} ...", path.display());
        println!("Running gRPC ModelServer at unix:{} ...", path.display());
        let router = crate::grpc::router(grpc_state.clone(), &config.grpc, health.clone()).map_err(|e| anyhow!(e))?;
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let token = shutdown.clone();
        let socket_path = path.clone();
        tasks.spawn(async move {
            if let Err(error) = router.serve_with_incoming_shutdown(incoming, token.cancelled_owned()).await {
                warn!(error = %error, "gRPC Unix-socket server stopped with an error");
            }
            let _ = std::fs::remove_file(&socket_path);
        });
    }
    if grpc_address.is_none() && config.grpc_socket_path.is_none() {
        info!("gRPC is disabled (--port=0 and no --grpc_socket_path)");
    }

    let rest_tls = match &config.rest_tls {
        Some((cert, key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await.with_context(|| {
                format!("cannot load the REST certificate {} and key {}", cert.display(), key.display())
            })?;
            Some(tls)
        }
        None => None,
    };
    let mut rest_address = None;
    if let Some(address) = config.rest_api_address {
        let listener =
            TcpListener::bind(address).await.with_context(|| format!("cannot bind the REST API to {address}"))?;
        let bound = listener.local_addr()?;
        rest_address = Some(bound);
        info!("Exporting HTTP/REST API at:{bound} ...");
        // NOTE: tests and scripts read this line to find an ephemeral port.
        println!("Exporting HTTP/REST API at:{bound} ...");
        let app = router(
            AppState {
                manager: manager.clone(),
                rest_api_timeout: config.rest_api_timeout,
                ready: Arc::clone(&ready),
                credentials: credentials.clone(),
                cors: config.cors,
                max_request_body_bytes: config.max_request_body_bytes,
            },
            prometheus.clone(),
        );
        let token = shutdown.clone();
        match rest_tls {
            None => {
                tasks.spawn(async move {
                    let served = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await;
                    if let Err(error) = served {
                        warn!(error = %error, "REST server stopped with an error");
                    }
                });
            }
            Some(tls) => {
                let listener = listener.into_std().context("cannot hand the REST socket to the TLS server")?;
                let handle = axum_server::Handle::new();
                let grace = config.shutdown_grace;
                let stopper = handle.clone();
                tasks.spawn(async move {
                    token.cancelled().await;
                    stopper.graceful_shutdown(Some(grace));
                });
                let server = axum_server::tls_rustls::from_tcp_rustls(listener, tls)?.handle(handle);
                info!("REST API served over TLS");
                tasks.spawn(async move {
                    if let Err(error) = server.serve(app.into_make_service()).await {
                        warn!(error = %error, "REST TLS server stopped with an error");
                    }
                });
            }
        }
    }
    Ok(RunningServer {
        rest_address,
        grpc_address,
        manager,
        ready,
        shutdown_grace: config.shutdown_grace,
        shutdown,
        tasks,
    })
}

/// Re-reads `--model_config_file` every `wait` and applies it when it changed. A file that
/// does not parse or does not apply is logged, and the models already served stay.
async fn poll_model_config_file(core: Arc<ServerCore>, path: PathBuf, wait: Duration, shutdown: CancellationToken) {
    let mut applied = std::fs::read_to_string(&path).ok();
    let working_dir = std::env::current_dir().unwrap_or_default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => {
                warn!(path = %path.display(), error = %error, "cannot re-read the model config file; keeping the current models");
                continue;
            }
        };
        if applied.as_deref() == Some(text.as_str()) {
            continue;
        }
        let models = match crate::config::model_server_config::parse_model_config_text(&text, &working_dir) {
            Ok(models) => models,
            Err(error) => {
                warn!(path = %path.display(), error = %error, "ignoring the changed model config file");
                continue;
            }
        };
        info!(path = %path.display(), models = ?models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            "model config file changed, reloading");
        match SharedCore(Arc::clone(&core)).reload(models).await {
            Ok(()) => applied = Some(text),
            Err(error) => warn!(path = %path.display(), error = %error, "the changed model config file did not apply"),
        }
    }
}

/// Binds a Unix socket, first removing a stale socket file left by an earlier run.
fn bind_unix_socket(path: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path).with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
        } else {
            bail!("--grpc_socket_path {} exists and is not a socket", path.display());
        }
    }
    tokio::net::UnixListener::bind(path).with_context(|| format!("cannot bind the gRPC API to unix:{}", path.display()))
}

/// Runs until Ctrl-C or SIGTERM, then drains and exits.
pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    let server = start(config).await?;
    wait_for_signal().await;
    info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

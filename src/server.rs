//! The composition root: config -> runtime -> registry -> manager -> sources -> transports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::ServeArgs;
use crate::core::{AspiredVersionsManager, ManagerOptions, SourceAdapter, VersionPolicy};
use crate::http::{router, AppState};
use crate::platforms::onnx::OnnxAdapter;
use crate::platforms::PlatformRegistry;
use crate::runtime::{ExecutionProviderKind, OrtRuntime, SessionOptions};
use crate::sources::file_system::check_base_paths;
use crate::sources::{FileSystemSource, WatchedModel};

/// One served model.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    pub base_path: PathBuf,
    pub platform: String,
    pub policy: VersionPolicy,
}

/// Everything the server needs, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `None` disables REST.
    pub rest_api_address: Option<SocketAddr>,
    pub grpc_port: u16,
    pub models: Vec<ModelConfig>,
    /// `None` never polls; file events still trigger scans.
    pub file_system_poll_wait: Option<Duration>,
    pub rest_api_timeout: Option<Duration>,
    pub manager: ManagerOptions,
    pub ort_library_path: Option<PathBuf>,
    pub session: SessionOptions,
}

impl ServerConfig {
    /// Validates the `serve` flags.
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Self> {
        let Some(base_path) = &args.model_base_path else {
            bail!("--model_base_path is required (the directory that holds the numeric version directories)");
        };
        let base_path = if base_path.is_absolute() {
            base_path.clone()
        } else {
            std::env::current_dir().context("cannot resolve the working directory")?.join(base_path)
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
        Ok(Self {
            rest_api_address,
            grpc_port: args.port,
            models: vec![ModelConfig {
                name: args.model_name.clone(),
                base_path,
                platform: args.model_platform.clone(),
                policy: args.model_version_policy.clone(),
            }],
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
            },
        })
    }
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

/// A started server: its bound addresses and the means to stop it.
pub struct RunningServer {
    pub rest_address: Option<SocketAddr>,
    pub manager: AspiredVersionsManager,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl RunningServer {
    /// Stops accepting requests, drains the ones in flight, and waits for every task.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
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
    let registry = builtin_platforms(runtime, config.session.clone());
    let watched: Vec<WatchedModel> = config
        .models
        .iter()
        .map(|m| WatchedModel { name: m.name.clone(), base_path: m.base_path.clone(), policy: m.policy.clone() })
        .collect();
    check_base_paths(&watched).map_err(|e| anyhow!("{e}"))?;

    let manager = AspiredVersionsManager::spawn(config.manager.clone());
    for model in &config.models {
        let adapter = registry.adapter(&model.platform).map_err(|e| anyhow!("model {}: {e}", model.name))?;
        manager.register_model(&model.name, adapter);
    }
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let source = FileSystemSource::new(watched, config.file_system_poll_wait, Arc::new(manager.clone()));
    tasks.spawn(source.run(shutdown.clone()));

    let names: Vec<String> = config.models.iter().map(|m| m.name.clone()).collect();
    info!(models = ?names, "waiting for the initial model versions");
    let failures = manager.wait_until_settled(&names).await;
    if !failures.is_empty() {
        shutdown.cancel();
        let detail: String = failures
            .iter()
            .map(|(id, error)| format!("{{{id} due to error: {}}}, ", error.to_status_string()))
            .collect();
        bail!("{} servable(s) did not become available: {{{detail}}}", failures.len());
    }

    warn!(port = config.grpc_port, "the gRPC API is not served by this build; --port is accepted and ignored");
    let mut rest_address = None;
    if let Some(address) = config.rest_api_address {
        let listener =
            TcpListener::bind(address).await.with_context(|| format!("cannot bind the REST API to {address}"))?;
        let bound = listener.local_addr()?;
        rest_address = Some(bound);
        info!("Exporting HTTP/REST API at:{bound} ...");
        // NOTE: tests and scripts read this line to find an ephemeral port.
        println!("Exporting HTTP/REST API at:{bound} ...");
        let app = router(AppState { manager: manager.clone(), rest_api_timeout: config.rest_api_timeout });
        let token = shutdown.clone();
        tasks.spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await;
            if let Err(error) = served {
                warn!(error = %error, "REST server stopped with an error");
            }
        });
    }
    Ok(RunningServer { rest_address, manager, shutdown, tasks })
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

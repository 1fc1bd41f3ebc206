//! The composition root: config -> runtime -> registry -> manager -> sources -> transports.

mod config;
mod server_core;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::core::{AspiredVersionsManager, SourceAdapter};
use crate::grpc::GrpcState;
use crate::http::{router, AppState};
use crate::platforms::onnx::OnnxAdapter;
use crate::platforms::PlatformRegistry;
use crate::runtime::{OrtRuntime, SessionOptions};
use crate::sources::file_system::check_base_paths;
use crate::sources::FileSystemSource;
use server_core::{
    failure_list, no_versions_message, poll_model_config_file, watched, AppliedConfig, ServerCore, SharedCore,
};

pub use crate::core::ModelConfig;
pub use config::{BatchingConfig, ConfigError, ServerConfig};
/// Returns the registry with every built-in platform.
pub fn builtin_platforms(
    runtime: &'static OrtRuntime,
    session: SessionOptions,
    conversion: crate::platforms::tensorflow::ConversionOptions,
) -> PlatformRegistry {
    let mut registry = PlatformRegistry::default();
    let tf_session = session.clone();
    registry.register(
        "tensorflow",
        Arc::new(move || {
            Arc::new(crate::platforms::tensorflow::TensorFlowAdapter::new(
                runtime,
                tf_session.clone(),
                conversion.clone(),
            )) as Arc<dyn SourceAdapter>
        }),
    );
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
    pub grpc_address: Option<SocketAddr>,
    pub manager: AspiredVersionsManager,
    ready: Arc<AtomicBool>,
    drain: Duration,
    shutdown_grace: Duration,
    /// Fires when the drain window opens: readiness and gRPC health turn off.
    draining: CancellationToken,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl RunningServer {
    /// Turns readiness off, keeps accepting requests for the drain window (or until `cut`
    /// resolves), then stops accepting connections, lets in-flight requests finish within
    /// the grace period, and stops every task.
    pub async fn shutdown_after_drain(self, cut: impl std::future::Future<Output = ()>) {
        self.ready.store(false, Ordering::SeqCst);
        self.draining.cancel();
        if !self.drain.is_zero() {
            info!(drain = ?self.drain, "not ready; still accepting requests for the drain window");
            tokio::select! {
                _ = tokio::time::sleep(self.drain) => {}
                _ = cut => info!("second signal: ending the drain window early"),
            }
        }
        self.shutdown().await;
    }

    /// Turns readiness off, stops accepting connections at once, lets in-flight requests
    /// finish within the grace period, and stops every task.
    pub async fn shutdown(mut self) {
        self.ready.store(false, Ordering::SeqCst);
        self.draining.cancel();
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
    // NOTE: once, with secrets redacted by their Debug, so an operator sees what really runs.
    info!(config = ?config, "effective configuration");
    let library_flag = config.ort_library_path.clone();
    let runtime = tokio::task::spawn_blocking(move || OrtRuntime::init(library_flag.as_deref()))
        .await
        .context("runtime initialisation panicked")??;
    // NOTE: with batching on, each version's sessions and TensorRT profile follow its own
    // batching parameters, which the batching decorator hands to the loader.
    let session = config.session.clone();
    let registry = builtin_platforms(runtime, session, config.conversion.clone());
    check_base_paths(&watched(&config.models)).map_err(|e| anyhow!("{e}"))?;

    // NOTE: the initial load runs 4 loads per CPU at once, as TF Serving's does; afterwards
    // `--num_load_threads` applies.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let initial = crate::core::ManagerOptions { num_load_threads: 4 * cpus, ..config.manager.clone() };
    let manager = AspiredVersionsManager::spawn(initial);
    let shutdown = CancellationToken::new();
    let draining = CancellationToken::new();
    let mut tasks = JoinSet::new();
    // NOTE: installed before the initial load, so its load times and states are recorded.
    let prometheus = match &config.prometheus_path {
        Some(path) => crate::observability::install_prometheus().map(|handle| {
            tasks.spawn(crate::observability::version_state_task(manager.clone(), shutdown.clone()));
            tasks.spawn(crate::observability::upkeep_task(handle.clone(), shutdown.clone()));
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
        current: Mutex::new(AppliedConfig::default()),
        configured_tx,
    });

    let names: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
    info!(models = ?names, "waiting for the initial model versions");
    let settlement = match core.apply(config.models.clone(), None).await {
        Ok(settlement) => settlement,
        Err(error) => {
            shutdown.cancel();
            bail!("{error}");
        }
    };
    manager.set_load_threads(config.manager.num_load_threads);
    let failures = &settlement.failures;
    if !failures.is_empty() {
        shutdown.cancel();
        bail!("{} servable(s) did not become available: {}", failures.len(), failure_list(failures));
    }
    for name in &settlement.without_versions {
        // NOTE: TF Serving waits here forever; we serve the other models and load this one
        // as soon as a version directory appears.
        let base_path = config.models.iter().find(|m| &m.name == name).map(|m| m.base_path.clone()).unwrap_or_default();
        warn!(model = %name, "{}; serving without it until a version appears", no_versions_message(name, &base_path));
    }

    // NOTE: the ports open only now, after the initial versions loaded, so readiness starts true.
    let ready = Arc::new(AtomicBool::new(true));
    if let (Some(path), Some(wait)) = (config.model_config_file.clone(), config.model_config_file_poll_wait) {
        tasks.spawn(poll_model_config_file(Arc::clone(&core), path, wait, shutdown.clone()));
    }
    let credentials = config.credentials.clone().map(Arc::new);
    let budget = crate::core::MemoryBudget::new(config.max_inflight_request_bytes);
    let grpc_state = GrpcState {
        manager: manager.clone(),
        reloader: Arc::new(SharedCore {
            core: Arc::clone(&core),
            working_dir: std::env::current_dir().unwrap_or_default(),
        }),
        serialize_as_tensor_content: config.serialize_as_tensor_content,
        credentials: credentials.clone(),
        max_decoded_request_bytes: config.max_decoded_request_bytes,
        budget: budget.clone(),
    };
    let health = if config.grpc.enable_health_service {
        let reporter = tonic_health::server::HealthReporter::new();
        let service = tonic_health::server::HealthService::from_health_reporter(reporter.clone());
        tasks.spawn(crate::grpc::health_task(reporter, manager.clone(), configured_rx, draining.clone()));
        Some(tonic_health::pb::health_server::HealthServer::new(service))
    } else {
        None
    };
    let mut grpc_address = None;
    if let Some(address) = config.grpc_address {
        let listener = listen(address).with_context(|| format!("cannot bind the gRPC API to {address}"))?;
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
        let incoming = crate::grpc::unix_socket::incoming(listener);
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
        let listener = listen(address).with_context(|| format!("cannot bind the REST API to {address}"))?;
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
                max_decoded_request_bytes: config.max_decoded_request_bytes,
                budget: budget.clone(),
            },
            prometheus.clone(),
        );
        // NOTE: one server stack for plain and TLS REST, so both shut down the same way: no
        // new connections once the drain window closes, in-flight requests get the grace.
        let listener = listener.into_std().context("cannot hand over the REST socket")?;
        let handle = axum_server::Handle::new();
        let (token, grace, stopper) = (shutdown.clone(), config.shutdown_grace, handle.clone());
        tasks.spawn(async move {
            token.cancelled().await;
            stopper.graceful_shutdown(Some(grace));
        });
        let server = axum_server::from_tcp(listener).context("cannot serve the REST socket")?.handle(handle);
        let service = app.into_make_service();
        match rest_tls {
            None => {
                let server = server.acceptor(axum_server::accept::NoDelayAcceptor::new());
                tasks.spawn(async move {
                    if let Err(error) = server.serve(service).await {
                        warn!(error = %error, "REST server stopped with an error");
                    }
                });
            }
            Some(tls) => {
                let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
                    .acceptor(axum_server::accept::NoDelayAcceptor::new());
                let server = server.acceptor(acceptor);
                info!("REST API served over TLS");
                tasks.spawn(async move {
                    if let Err(error) = server.serve(service).await {
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
        drain: config.drain,
        shutdown_grace: config.shutdown_grace,
        draining,
        shutdown,
        tasks,
    })
}

/// Connections the kernel may hold for a port before the server accepts them (capped by
/// `net.core.somaxconn`). A flood opens a thousand at once; with the usual 1,024 the queue
/// overflowed, the kernel dropped handshakes and clients saw resets (benches/flood.rs).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP port as `TcpListener::bind` does (address reuse on Unix), with a backlog of
/// `LISTEN_BACKLOG`.
fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
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

/// Runs until Ctrl-C or SIGTERM, then drains and exits; a second signal ends the drain
/// window early.
pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    let server = start(config).await?;
    wait_for_signal().await;
    info!("shutting down");
    server.shutdown_after_drain(wait_for_signal()).await;
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

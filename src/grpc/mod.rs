//! The gRPC transport: TF Serving's PredictionService and ModelService on tonic, plus the
//! standard health and reflection services.

pub mod error;
pub mod model_service;
pub mod model_spec;
pub mod prediction_service;
#[cfg(test)]
mod tests;
pub mod unix_socket;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Router;
use tonic::transport::Server;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;
use tracing::{info, warn};

use crate::auth::Credentials;
use crate::core::{AspiredVersionsManager, ReloadFuture, ServableState};
use crate::proto::tensorflow::serving::model_service_server::ModelServiceServer;
use crate::proto::tensorflow::serving::prediction_service_server::PredictionServiceServer;
use crate::proto::tensorflow::serving::ModelServerConfig;
use crate::proto::FILE_DESCRIPTOR_SET;

pub use model_service::ModelServiceImpl;
pub use prediction_service::PredictionServiceImpl;

/// The largest message TF Serving accepts and sends (INT32_MAX).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = i32::MAX as usize;

/// Applies the `ModelServerConfig` of a `HandleReloadConfigRequest`. The server's wiring
/// implements it with the config layer's reader, so this transport never parses configs.
pub trait ModelServerConfigReloader: Send + Sync {
    /// Applies `config`, waiting for its new models until `deadline` (the client's) at most.
    fn reload(&self, config: ModelServerConfig, deadline: Option<std::time::Instant>) -> ReloadFuture;
}

/// Shared state of the gRPC services.
#[derive(Clone)]
pub struct GrpcState {
    pub manager: AspiredVersionsManager,
    pub reloader: Arc<dyn ModelServerConfigReloader>,
    /// `--enable_serialization_as_tensor_content`.
    pub serialize_as_tensor_content: bool,
    /// `--enable_auth`: every call but health checks must carry these credentials.
    pub credentials: Option<Arc<Credentials>>,
    /// `--max_decoded_request_bytes`: what the tensors of one request may decode to.
    pub max_decoded_request_bytes: usize,
    /// `--max_inflight_request_bytes`, shared with REST.
    pub budget: crate::core::MemoryBudget,
}

/// TLS for gRPC, from TF Serving's `SSLConfig`.
#[derive(Clone)]
pub struct GrpcTls {
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// The CA that signs client certificates.
    pub client_ca_pem: Option<String>,
    /// Clients must present a certificate signed by `client_ca_pem` (mutual TLS).
    pub client_verify: bool,
}

impl std::fmt::Debug for GrpcTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTls")
            .field("server_key_pem", &"***")
            .field("client_ca", &self.client_ca_pem.is_some())
            .field("client_verify", &self.client_verify)
            .finish()
    }
}

/// Transport settings: message limits and the `--grpc_channel_arguments` tonic honours.
#[derive(Debug, Clone)]
pub struct GrpcOptions {
    pub max_receive_message_bytes: usize,
    pub max_send_message_bytes: usize,
    pub max_concurrent_streams: Option<u32>,
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Option<Duration>,
    pub max_frame_size: Option<u32>,
    pub max_connection_age: Option<Duration>,
    pub enable_health_service: bool,
    /// `--ssl_config_file`.
    pub tls: Option<GrpcTls>,
}

impl Default for GrpcOptions {
    fn default() -> Self {
        Self {
            max_receive_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_send_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_concurrent_streams: None,
            keepalive_interval: None,
            keepalive_timeout: None,
            max_frame_size: None,
            max_connection_age: None,
            enable_health_service: false,
            tls: None,
        }
    }
}

impl GrpcOptions {
    /// Applies `k=v,k=v` channel arguments. Returns the keys that tonic cannot honour,
    /// which the caller logs; a bad value for a known key is an error.
    pub fn apply_channel_arguments(&mut self, arguments: &str) -> Result<Vec<String>, String> {
        let mut ignored = Vec::new();
        for pair in arguments.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                value
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("--grpc_channel_arguments: {key} needs an integer, got `{value}`"))
            };
            let size = || number().map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            match key.trim() {
                "grpc.max_receive_message_length" => self.max_receive_message_bytes = size()?,
                "grpc.max_send_message_length" => self.max_send_message_bytes = size()?,
                "grpc.max_concurrent_streams" => {
                    self.max_concurrent_streams = Some(u32::try_from(number()?).unwrap_or(u32::MAX))
                }
                "grpc.keepalive_time_ms" => self.keepalive_interval = Some(Duration::from_millis(number()?)),
                "grpc.keepalive_timeout_ms" => self.keepalive_timeout = Some(Duration::from_millis(number()?)),
                "grpc.http2.max_frame_size" => self.max_frame_size = Some(u32::try_from(number()?).unwrap_or(u32::MAX)),
                "grpc.max_connection_age_ms" => self.max_connection_age = Some(Duration::from_millis(number()?)),
                other => ignored.push(other.to_string()),
            }
        }
        Ok(ignored)
    }
}

/// Builds the tonic router with every service.
pub fn router(
    state: GrpcState,
    options: &GrpcOptions,
    health: Option<HealthServer<HealthService>>,
) -> Result<Router, String> {
    let mut server = Server::builder();
    if let Some(tls) = &options.tls {
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&tls.server_cert_pem, &tls.server_key_pem));
        if let Some(ca) = &tls.client_ca_pem {
            config = config
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(!tls.client_verify);
        }
        server = server.tls_config(config).map_err(|e| format!("invalid gRPC TLS configuration: {e}"))?;
    }
    if let Some(streams) = options.max_concurrent_streams {
        server = server.max_concurrent_streams(streams);
    }
    server = server
        .http2_keepalive_interval(options.keepalive_interval)
        .http2_keepalive_timeout(options.keepalive_timeout)
        .max_frame_size(options.max_frame_size);
    if let Some(age) = options.max_connection_age {
        server = server.max_connection_age(age);
    }
    let credentials = state.credentials.clone();
    let prediction = PredictionServiceServer::new(PredictionServiceImpl::new(state.clone()))
        .max_decoding_message_size(options.max_receive_message_bytes)
        .max_encoding_message_size(options.max_send_message_bytes);
    let model = ModelServiceServer::new(ModelServiceImpl::new(state))
        .max_decoding_message_size(options.max_receive_message_bytes)
        .max_encoding_message_size(options.max_send_message_bytes);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|error| warn!(error = %error, "gRPC reflection is unavailable"))
        .ok();
    let mut router = match credentials {
        Some(credentials) => {
            let check = crate::auth::grpc_interceptor(credentials);
            let router = server
                .add_service(InterceptedService::new(prediction, check.clone()))
                .add_service(InterceptedService::new(model, check.clone()));
            router.add_optional_service(reflection.map(|r| InterceptedService::new(r, check)))
        }
        None => server.add_service(prediction).add_service(model).add_optional_service(reflection),
    };
    if let Some(health) = health {
        router = router.add_service(health);
    }
    Ok(router)
}

/// The names the health service reports, as TF Serving sets them plus the full names.
const HEALTH_SERVICE_NAMES: [&str; 5] = [
    "",
    "ModelService",
    "PredictionService",
    "tensorflow.serving.ModelService",
    "tensorflow.serving.PredictionService",
];

/// Keeps the health service in step with the models: SERVING while every configured model
/// has an AVAILABLE version, NOT_SERVING otherwise. When `draining` fires (the drain window
/// of a shutdown opens) it reports NOT_SERVING and ends; the service keeps answering that.
pub async fn health_task(
    reporter: tonic_health::server::HealthReporter,
    manager: AspiredVersionsManager,
    configured: tokio::sync::watch::Receiver<Vec<String>>,
    draining: CancellationToken,
) {
    let mut status_rx = manager.subscribe();
    let mut configured = configured;
    let mut last: Option<bool> = None;
    loop {
        let serving = {
            let snapshot = status_rx.borrow_and_update();
            let names = configured.borrow_and_update();
            !names.is_empty()
                && names.iter().all(|name| {
                    snapshot.get(name).is_some_and(|v| v.values().any(|s| s.state == ServableState::Available))
                })
        };
        if last != Some(serving) {
            let status =
                if serving { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
            for name in HEALTH_SERVICE_NAMES {
                reporter.set_service_status(name, status).await;
            }
            info!(serving, "gRPC health status changed");
            last = Some(serving);
        }
        if draining.is_cancelled() {
            for name in HEALTH_SERVICE_NAMES {
                reporter.set_service_status(name, tonic_health::ServingStatus::NotServing).await;
            }
            return;
        }
        tokio::select! {
            changed = status_rx.changed() => if changed.is_err() { return },
            changed = configured.changed() => if changed.is_err() { return },
            _ = draining.cancelled() => {}
        }
    }
}

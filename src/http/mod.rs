//! The HTTP transport: TF Serving's REST API on axum.

pub mod error;
pub mod model_json;
pub mod rest;

use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tower_http::decompression::RequestDecompressionLayer;

use crate::core::AspiredVersionsManager;

/// Shared state of every HTTP handler.
#[derive(Clone)]
pub struct AppState {
    pub manager: AspiredVersionsManager,
    /// `--rest_api_timeout_in_ms`; `None` when ≤ 0.
    pub rest_api_timeout: Option<Duration>,
    /// False until the initial models are available and again while draining.
    pub ready: Arc<AtomicBool>,
}

/// Where and what the Prometheus endpoint serves.
#[derive(Clone)]
pub struct PrometheusEndpoint {
    pub path: String,
    pub handle: metrics_exporter_prometheus::PrometheusHandle,
}

/// Request bodies above this size are refused (after gzip decoding).
pub const MAX_REQUEST_BODY_BYTES: usize = 256 * 1024 * 1024;

/// Builds the REST router, with the Prometheus endpoint when one is configured.
pub fn router(state: AppState, prometheus: Option<PrometheusEndpoint>) -> Router {
    let mut router = Router::new();
    if let Some(endpoint) = prometheus {
        let path = endpoint.path.clone();
        router = router.route(&path, get(move |uri: Uri| prometheus_metrics(endpoint.clone(), uri)));
    }
    router
        .route("/v1/health/live", get(live))
        .route("/v1/health/ready", get(ready))
        .fallback(rest::dispatch)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(RequestDecompressionLayer::new())
        .with_state(state)
}

/// Liveness: the process answers.
async fn live() -> Response {
    error::json_response(StatusCode::OK, b"{\"status\": \"live\"}\n".to_vec())
}

/// Readiness: 200 once the initial models are available, 503 before and while draining.
async fn ready(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        error::json_response(StatusCode::OK, b"{\"status\": \"ready\"}\n".to_vec())
    } else {
        error::json_response(StatusCode::SERVICE_UNAVAILABLE, b"{\"status\": \"draining\"}\n".to_vec())
    }
}

/// Prometheus text format; the path must match exactly, as in TF Serving.
async fn prometheus_metrics(endpoint: PrometheusEndpoint, uri: Uri) -> Response {
    use axum::response::IntoResponse;
    let (status, body) = match uri.query() {
        Some(query) => {
            (StatusCode::BAD_REQUEST, format!("Unexpected path: {}?{query}. Should be {}", uri.path(), endpoint.path))
        }
        None => (StatusCode::OK, endpoint.handle.render()),
    };
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}

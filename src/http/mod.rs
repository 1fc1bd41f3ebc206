//! The HTTP transport: TF Serving's REST API on axum.

pub mod error;
pub mod image_upload;
pub mod model_json;
pub mod rest;
#[cfg(test)]
mod tests;
pub mod ui;

use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tower_http::decompression::RequestDecompressionLayer;

use crate::auth::{is_probe_path, Credentials, UNAUTHENTICATED_MESSAGE};
use crate::core::AspiredVersionsManager;

/// Shared state of every HTTP handler.
#[derive(Clone)]
pub struct AppState {
    pub manager: AspiredVersionsManager,
    /// `--rest_api_timeout_in_ms`; `None` when ≤ 0.
    pub rest_api_timeout: Option<Duration>,
    /// False until the initial models are available and again while draining.
    pub ready: Arc<AtomicBool>,
    /// `--enable_auth`: every route but the health probes needs these credentials.
    pub credentials: Option<Arc<Credentials>>,
    /// `--rest_api_enable_cors_support`.
    pub cors: bool,
    /// Largest body after gzip decoding.
    pub max_request_body_bytes: usize,
    /// `--max_decoded_request_bytes`: what the tensors of one request may decode to (images).
    pub max_decoded_request_bytes: usize,
    /// `--max_inflight_request_bytes`, shared with gRPC.
    pub budget: crate::core::MemoryBudget,
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
    let limit = state.max_request_body_bytes;
    router
        .route("/v1/health/live", get(live))
        .route("/v1/health/ready", get(ready))
        .route("/", get(ui::page).post(ui::root_post))
        .route("/ui", get(ui::page))
        .route("/ui/models", get(ui::models))
        .route("/v1/models/{name}/gen_json", get(ui::gen_json))
        .route("/v1/models/{name}/gen_client", get(ui::gen_client))
        .fallback(rest::dispatch)
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestDecompressionLayer::new())
        .layer(middleware::from_fn_with_state(state.clone(), guard))
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

/// Checks credentials (when auth is on) and adds CORS headers (when enabled).
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let rest_path = rest::is_rest_path(request.uri().path());
    let preflight = request.method() == axum::http::Method::OPTIONS;
    if let Some(credentials) = &state.credentials {
        let header = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
        if !preflight && !is_probe_path(request.uri().path()) && !credentials.accepts(header) {
            let mut response = error::json_response(
                StatusCode::UNAUTHORIZED,
                crate::codec::json::write_error_body(UNAUTHENTICATED_MESSAGE),
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"onnx-serving\""));
            return response;
        }
    }
    let mut response = next.run(request).await;
    if state.cors && rest_path && !preflight {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, GET"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type"));
    }
    response
}

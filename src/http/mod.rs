//! The HTTP transport: TF Serving's REST API on axum.

pub mod error;
pub mod model_json;
pub mod rest;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tower_http::decompression::RequestDecompressionLayer;

use crate::core::AspiredVersionsManager;

/// Shared state of every HTTP handler.
#[derive(Clone)]
pub struct AppState {
    pub manager: AspiredVersionsManager,
    /// `--rest_api_timeout_in_ms`; `None` when ≤ 0.
    pub rest_api_timeout: Option<Duration>,
}

/// Request bodies above this size are refused (after gzip decoding).
pub const MAX_REQUEST_BODY_BYTES: usize = 256 * 1024 * 1024;

/// Builds the REST router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .fallback(rest::dispatch)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(RequestDecompressionLayer::new())
        .with_state(state)
}

//! TF Serving's REST API: `/v1/models/...` predict, status and metadata, dispatched with
//! TF Serving's own path rules.

use std::sync::LazyLock;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use regex::Regex;
use tracing::Instrument;

use super::error::{json_response, RestError};
use super::image_upload::{is_upload, predict_upload, read_upload, upload_version, Upload};
use super::model_json::{execution_providers_json, metadata_json, status_json, to_pretty_bytes};
use super::AppState;
use crate::codec::json::classify::{parse_example_request, write_example_response};
use crate::codec::json::{parse_predict_body, write_predict_response, PredictBody};
use crate::core::example::ExampleMethod;
use crate::core::{ServableHandle, ServingError, ServingResult, Tensor, VersionRequest};
use crate::inference::images::image_input_alias;
use crate::inference::{inline_or_blocking, predict, run_example_method};
use crate::observability::account;

static REST_PATH: LazyLock<Regex> = LazyLock::new(|| compile(r"(?i)^/v1/.*$"));
static ORIGIN: LazyLock<Regex> = LazyLock::new(|| compile(r"https?://"));
static POST_PATH: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?i)^/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)$")
});
static GET_PATH: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)^/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata|execution_providers))?$",
    )
});

fn compile(pattern: &str) -> Regex {
    // NOTE: the patterns are constants checked by the tests below.
    Regex::new(pattern).unwrap_or_else(|e| panic!("invalid built-in route pattern {pattern}: {e}"))
}

/// Bodies larger than this are decoded and encoded off the async runtime.
const INLINE_CODEC_LIMIT: usize = 64 * 1024;

/// Returns whether a path (with its query string) belongs to the REST API.
pub fn is_rest_path(path_and_query: &str) -> bool {
    REST_PATH.is_match(path_and_query)
}

/// Decodes `%XX` escapes; `+` stays `+`, as `curl_easy_unescape` does.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

struct ModelPath {
    name: String,
    version: VersionRequest,
    has_version: Option<i64>,
}

fn model_path(name: &str, version: Option<&str>, label: Option<&str>) -> ServingResult<ModelPath> {
    let name = percent_decode(name);
    if let Some(text) = version {
        let version = VersionRequest::specific(text)?;
        let has_version = match version {
            VersionRequest::Specific(number) => Some(number),
            _ => None,
        };
        return Ok(ModelPath { name, version, has_version });
    }
    if let Some(label) = label {
        return Ok(ModelPath { name, version: VersionRequest::Label(percent_decode(label)), has_version: None });
    }
    Ok(ModelPath { name, version: VersionRequest::Latest, has_version: None })
}

fn malformed(method: &Method, path: &str) -> RestError {
    RestError(ServingError::invalid_argument(format!("Malformed request: {method} {path}")))
}

/// Handles every request under `/v1/`, and answers 404 elsewhere.
pub async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/").to_string();
    if !is_rest_path(&path) {
        let mut response = (StatusCode::NOT_FOUND, "<html><body><h1>404 Not Found</h1></body></html>").into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        return response;
    }
    let method = parts.method.clone();
    if method == Method::OPTIONS {
        return cors_preflight(&parts.headers);
    }
    let mut unread = Request::new(body);
    // NOTE: the body limit travels in the extensions (`DefaultBodyLimit`).
    *unread.extensions_mut() = std::mem::take(&mut parts.extensions);
    for name in [header::CONTENT_LENGTH, header::EXPECT] {
        if let Some(value) = parts.headers.get(&name) {
            unread.headers_mut().insert(name, value.clone());
        }
    }
    if method == Method::POST {
        handle_post(&state, &method, &path, &parts.headers, UnreadBody(unread)).await
    } else if method == Method::GET {
        handle_get(&state, &method, &path).await.unwrap_or_else(IntoResponse::into_response)
    } else {
        malformed(&method, &path).into_response()
    }
}

/// A request body not read yet: a request is admitted (its model resolved, a place in its
/// queue free) before its body is read, so a flood is refused without buffering or decoding
/// its bodies.
struct UnreadBody(Request);

impl UnreadBody {
    /// Reads the body within the REST body limit (after gzip decoding); a refusal keeps TF
    /// Serving's error format.
    async fn read(self) -> Result<Bytes, Response> {
        Bytes::from_request(self.0, &()).await.map_err(|rejection| {
            let message = format!("Failed to read the request body: {}", rejection.body_text());
            super::error::json_response(rejection.status(), crate::codec::json::write_error_body(&message))
        })
    }
}

impl UnreadBody {
    /// Disposes of the body of a refused request without keeping or decoding it, and returns
    /// whether the connection can serve another request. A client that waits for
    /// `100 Continue` never sends it (hyper asks only when the body is read); otherwise it is
    /// read and dropped chunk by chunk up to `limit` (the REST body limit), so that the client
    /// reads its refusal instead of a reset, and goes on using its connection.
    async fn discard(self, limit: usize) -> bool {
        use futures_util::StreamExt;
        if self.0.headers().contains_key(header::EXPECT) {
            return false;
        }
        let announced =
            self.0.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if announced.is_some_and(|length| length > limit) {
            return false;
        }
        let mut chunks = self.0.into_body().into_data_stream();
        let mut left = limit;
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(chunk) if chunk.len() <= left => left -= chunk.len(),
                _ => return false,
            }
        }
        true
    }
}

/// Asks the version a request's path names for room, before the body is read. The handle
/// is not kept: a client slow to send its body must not hold a version that is unloading.
fn admitted(state: &AppState, target: &ModelPath) -> Result<(), RestError> {
    state.manager.handle(&target.name, &target.version)?.servable.admission()?;
    Ok(())
}

/// Answers a CORS preflight as TF Serving does: 200 when the Origin looks like an http(s)
/// origin, 400 otherwise, both with an empty body and no content type.
fn cors_preflight(headers: &HeaderMap) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let status = if ORIGIN.is_match(origin) { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let mut response = status.into_response();
    if status == StatusCode::OK {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, GET"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type"));
    }
    response
}

async fn handle_post(state: &AppState, method: &Method, path: &str, headers: &HeaderMap, body: UnreadBody) -> Response {
    let Some(captures) = POST_PATH.captures(path) else { return malformed(method, path).into_response() };
    let group = |i: usize| captures.get(i).map(|m| m.as_str());
    let target = match model_path(group(1).unwrap_or_default(), group(2), group(3)) {
        Ok(target) => target,
        Err(error) => return RestError(error).into_response(),
    };
    let (api, span) = match group(4).unwrap_or_default() {
        "predict" => ("predict", tracing::info_span!("predict", model = %target.name, version = tracing::field::Empty)),
        "classify" => ("classify", tracing::info_span!("example_request", method = "classify", model = %target.name)),
        "regress" => ("regress", tracing::info_span!("example_request", method = "regress", model = %target.name)),
        _ => return malformed(method, path).into_response(),
    };
    let model = target.name.clone();
    if let Err(refused) = admitted(state, &target) {
        let reusable = body.discard(state.max_request_body_bytes).await;
        let mut response = account(&model, api, "REST", std::future::ready(Err::<Response, _>(refused)))
            .await
            .unwrap_or_else(IntoResponse::into_response);
        if !reusable {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return response;
    }
    let body = match body.read().await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let request = async {
        if api == "predict" && is_upload(headers) {
            // NOTE: an upload may name its version in a form field.
            let upload = read_upload(headers, body).await?;
            let handle = state.manager.handle(&target.name, &upload_version(target.version, &upload)?)?;
            return predict_upload(state, &handle, upload).await;
        }
        let handle = state.manager.handle(&target.name, &target.version)?;
        match api {
            // NOTE: the model is resolved before the body is parsed, as TF Serving does, and
            // this one handle serves the whole request.
            "predict" => predict_route(state, handle, body).await,
            _ => example_route(state, handle, api == "classify", body).await,
        }
    };
    account(&model, api, "REST", request.instrument(span)).await.unwrap_or_else(IntoResponse::into_response)
}

/// `:classify` and `:regress`: tf.Example JSON in, `{"results": ...}` out.
async fn example_route(
    state: &AppState,
    handle: ServableHandle,
    classify: bool,
    body: Bytes,
) -> Result<Response, RestError> {
    let started = Instant::now();
    let deadline = state.rest_api_timeout.map(|timeout| started + timeout);
    // NOTE: a large body is parsed off the async runtime, as predict bodies are.
    let inline = body.len() <= INLINE_CODEC_LIMIT;
    let _permit = state.budget.try_take(body.len())?;
    let request = inline_or_blocking(inline, "request decoding", move || parse_example_request(&body)).await?;
    let method = if classify { ExampleMethod::Classify } else { ExampleMethod::Regress };
    let (_, results) =
        run_example_method(handle.servable.as_ref(), method, &request.signature_name, &request.input, deadline).await?;
    Ok(json_response(StatusCode::OK, write_example_response(&results)?))
}

async fn predict_route(state: &AppState, handle: ServableHandle, body: Bytes) -> Result<Response, RestError> {
    let started = Instant::now();
    tracing::Span::current().record("version", handle.id.version);
    let deadline = state.rest_api_timeout.map(|timeout| started + timeout);
    let body_handle = handle.clone();
    let inline = body.len() <= INLINE_CODEC_LIMIT;
    let body_len = body.len();
    // NOTE: the body is parsed once; base64 images for the image input take the upload path.
    let parsed = inline_or_blocking(inline, "request decoding", move || {
        let servable = body_handle.servable.as_ref();
        parse_predict_body(&body, servable.signatures(), |signature| image_input_alias(servable, signature))
    })
    .await?;
    let request = match parsed {
        PredictBody::Tensors(request) => request,
        PredictBody::Images { signature_name, images } => {
            let upload = Upload { images, signature_name: Some(signature_name), ..Default::default() };
            return predict_upload(state, &handle, upload).await;
        }
    };
    // NOTE: held until the answer is encoded: the body and its decoded inputs.
    let decoded: usize = request.inputs.values().map(Tensor::held_bytes).fold(body_len, usize::saturating_add);
    let permit = state.budget.try_take(decoded)?;
    let outcome = predict(handle.servable.as_ref(), &request.signature_name, request.inputs, &[], deadline).await?;
    drop(handle);
    let format = request.format;
    let inline = outcome.outputs.iter().map(|(_, t)| t.num_elements()).sum::<usize>() <= INLINE_CODEC_LIMIT / 8;
    let body = inline_or_blocking(inline, "response encoding", move || {
        write_predict_response(format, &outcome.outputs, &outcome.map_keys)
    })
    .await?;
    drop(permit);
    Ok(json_response(StatusCode::OK, body))
}

async fn handle_get(state: &AppState, method: &Method, path: &str) -> Result<Response, RestError> {
    let captures = GET_PATH.captures(path).ok_or_else(|| malformed(method, path))?;
    let group = |i: usize| captures.get(i).map(|m| m.as_str());
    let Some(name) = group(1) else {
        return Err(RestError(ServingError::invalid_argument("Missing model name in request.")));
    };
    let target = model_path(name, group(2), group(3))?;
    let document = group(4).map(str::to_ascii_lowercase);
    account(&target.name, "", "REST", async { model_document(state, &target, document.as_deref()) }).await
}

/// Status (no suffix), `metadata`, or our `execution_providers` extension.
fn model_document(state: &AppState, target: &ModelPath, document: Option<&str>) -> Result<Response, RestError> {
    let body = if document == Some("metadata") {
        let handle = state.manager.handle(&target.name, &target.version)?;
        to_pretty_bytes(&metadata_json(&target.name, handle.id.version, handle.servable.signatures()))?
    } else {
        // NOTE: TF Serving ignores a label on status requests and lists every version.
        let statuses = state.manager.model_status(&target.name, target.has_version)?;
        if document.is_some() {
            to_pretty_bytes(&execution_providers_json(&statuses))?
        } else {
            to_pretty_bytes(&status_json(&statuses))?
        }
    };
    Ok(json_response(StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_patterns_follow_tf_serving() {
        assert!(POST_PATH.is_match("/v1/models/m:predict"));
        assert!(POST_PATH.is_match("/v1/models/m/versions/3:regress"));
        assert!(POST_PATH.is_match("/v1/models/m/labels/canary:classify"));
        assert!(!POST_PATH.is_match("/v1/models/foo/version/50:regress"));
        assert!(!POST_PATH.is_match("/v1/models/foo/versions/HELLO:regress"));
        assert!(!POST_PATH.is_match("/v1/models/foo/versions/50/labels/x:regress"));
        assert!(GET_PATH.is_match("/v1/models/m/versions/3/metadata"));
        assert!(!GET_PATH.is_match("/v1/models/foo:predict"));
        assert!(!POST_PATH.is_match("/v1/models/m:predict?x=1"));
        assert!(is_rest_path("/V1/models/m"));
        assert!(!is_rest_path("/v2/models/m"));
    }

    #[test]
    fn names_are_percent_decoded_without_plus() {
        assert_eq!(
            percent_decode("modelname%21%23%24%25%26%27%28%29%2A%2B%2C%2F%3A%3B%3D%3F%40%5B%5D"),
            "modelname!#$%&'()*+,/:;=?@[]"
        );
        assert_eq!(percent_decode("a+b%2"), "a+b%2");
    }
}

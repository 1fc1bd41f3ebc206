//! Image uploads over REST: `multipart/form-data` files (fields `image`/`images`, with
//! `model_name`, `model_version`, `signature_name`) and raw `image/*` bodies, on the predict
//! routes and on `POST /` as Simple TensorFlow Serving had it.

use std::convert::Infallible;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use super::error::{json_response, RestError};
use super::AppState;
use crate::codec::json::{write_image_response, write_predict_response};
use crate::core::{ServableHandle, ServingError, ServingResult, VersionRequest, DEFAULT_SIGNATURE};
use crate::inference::images::{image_input_alias, predict_images};
use crate::inference::predict;

/// The images of a request and the form fields that came with them.
#[derive(Debug, Default)]
pub struct Upload {
    pub images: Vec<Bytes>,
    pub model_name: Option<String>,
    pub model_version: Option<String>,
    pub signature_name: Option<String>,
}

fn content_type(headers: &HeaderMap) -> &str {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// Returns whether the body is an upload rather than TF Serving JSON.
pub fn is_upload(headers: &HeaderMap) -> bool {
    let kind = content_type(headers).trim().to_ascii_lowercase();
    kind.starts_with("multipart/form-data") || kind.starts_with("image/")
}

/// Reads the images and form fields of an upload.
pub async fn read_upload(headers: &HeaderMap, body: Bytes) -> ServingResult<Upload> {
    let kind = content_type(headers).to_string();
    if kind.trim().to_ascii_lowercase().starts_with("image/") {
        return Ok(Upload { images: vec![body], ..Default::default() });
    }
    let bad = |what: String| ServingError::invalid_argument(format!("malformed multipart/form-data body: {what}"));
    let boundary = multer::parse_boundary(&kind).map_err(|e| bad(e.to_string()))?;
    let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut upload = Upload::default();
    while let Some(field) = multipart.next_field().await.map_err(|e| bad(e.to_string()))? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "image" | "images" | "image[]" | "images[]" => {
                upload.images.push(field.bytes().await.map_err(|e| bad(e.to_string()))?)
            }
            "model_name" => upload.model_name = Some(field.text().await.map_err(|e| bad(e.to_string()))?),
            "model_version" => upload.model_version = Some(field.text().await.map_err(|e| bad(e.to_string()))?),
            "signature_name" => upload.signature_name = Some(field.text().await.map_err(|e| bad(e.to_string()))?),
            other => {
                return Err(ServingError::invalid_argument(format!(
                "unexpected form field '{other}': expected image, images, model_name, model_version or signature_name"
            )))
            }
        }
    }
    if upload.images.is_empty() {
        return Err(ServingError::invalid_argument("the form has no 'image' or 'images' file field"));
    }
    Ok(upload)
}

/// Returns the version an upload asks for: its `model_version` field, when the path named
/// none.
pub fn upload_version(version: VersionRequest, upload: &Upload) -> ServingResult<VersionRequest> {
    match (&version, &upload.model_version) {
        (VersionRequest::Latest, Some(text)) if !text.trim().is_empty() => {
            let parsed = text.trim().parse::<i64>().map_err(|_| {
                ServingError::invalid_argument(format!("Failed to convert version: {text} to numeric."))
            })?;
            Ok(VersionRequest::Specific(parsed))
        }
        _ => Ok(version),
    }
}

/// Runs an upload through the version: the signature's image input gets the decoded batch,
/// and the answer is TF Serving's row format (`{"predictions": ...}`) with `labels` when the
/// model has them.
pub async fn predict_upload(state: &AppState, handle: &ServableHandle, upload: Upload) -> Result<Response, RestError> {
    let started = Instant::now();
    tracing::Span::current().record("version", handle.id.version);
    let signature_name = upload.signature_name.filter(|s| !s.is_empty()).unwrap_or(DEFAULT_SIGNATURE.into());
    let deadline = state.rest_api_timeout.map(|timeout| started + timeout);
    let prediction = predict_images(handle.servable.as_ref(), &signature_name, upload.images, deadline).await?;
    let body = write_image_response(&prediction.outcome.outputs, prediction.labels.as_deref())?;
    Ok(json_response(StatusCode::OK, body))
}

/// `POST /`: an upload for the model in its `model_name` field, or `default`, or the only
/// model served.
pub async fn root_upload(state: &AppState, headers: &HeaderMap, body: Bytes) -> Result<Response, RestError> {
    if !is_upload(headers) {
        return root_json(state, body).await;
    }
    let upload = read_upload(headers, body).await?;
    let names = state.manager.model_names();
    let name = match upload.model_name.clone().filter(|n| !n.is_empty()) {
        Some(name) => name,
        None if names.iter().any(|n| n == "default") => "default".to_string(),
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(RestError(ServingError::invalid_argument(format!(
                "the form has no model_name and several models are served: {}",
                names.join(", ")
            ))))
        }
    };
    let handle = state.manager.handle(&name, &upload_version(VersionRequest::Latest, &upload)?)?;
    predict_upload(state, &handle, upload).await
}

/// Decodes an image's base64 by TF's rules, in the standard alphabet or else the web-safe one.
fn decode_base64(index: usize, text: &str) -> ServingResult<Bytes> {
    use crate::codec::base64::{base64_unescape, web_safe_base64_unescape};
    base64_unescape(text.as_bytes())
        .or_else(|| web_safe_base64_unescape(text.as_bytes()))
        .map(Bytes::from)
        .ok_or_else(|| ServingError::invalid_argument(format!("image {index}: Unable to base64 decode")))
}

/// Collects base64 images from a JSON value: `{"b64": s}`, a plain string, a list of
/// either, or `{"<alias>": ...}` holding them.
fn collect_b64(value: &serde_json::Value, alias: &str, images: &mut Vec<Bytes>) -> ServingResult<()> {
    use serde_json::Value;
    match value {
        Value::String(text) => images.push(decode_base64(images.len(), text)?),
        Value::Object(map) => match (map.get("b64"), map.get(alias)) {
            (Some(Value::String(text)), _) if map.len() == 1 => images.push(decode_base64(images.len(), text)?),
            (_, Some(inner)) if map.len() == 1 => collect_b64(inner, alias, images)?,
            _ => {
                return Err(ServingError::invalid_argument(format!(
                    "expected {{\"b64\": \"<image>\"}} or {{\"{alias}\": ...}} for the image input, got an object with keys {}",
                    map.keys().cloned().collect::<Vec<_>>().join(",")
                )))
            }
        },
        Value::Array(items) => {
            for item in items {
                collect_b64(item, alias, images)?;
            }
        }
        other => {
            return Err(ServingError::invalid_argument(format!(
                "expected a base64 image for input '{alias}', got {other}"
            )))
        }
    }
    Ok(())
}

/// Reads TF Serving JSON whose image input carries base64 images (`{"instances":
/// [{"b64": ...}]}` or `{"inputs": ...}`) as an upload. `None` when the body is not such JSON.
pub fn b64_upload(body: &[u8], alias: &str) -> ServingResult<Option<Upload>> {
    if !body.windows(5).any(|w| w == b"\"b64\"") {
        return Ok(None);
    }
    let Ok(serde_json::Value::Object(request)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Ok(None);
    };
    let Some(images_value) = request.get("instances").or_else(|| request.get("inputs")) else { return Ok(None) };
    let mut images = Vec::new();
    collect_b64(images_value, alias, &mut images)?;
    let signature_name = request.get("signature_name").and_then(|v| v.as_str()).map(str::to_string);
    Ok(Some(Upload { images, signature_name, ..Default::default() }))
}

/// Simple TF Serving's JSON on `POST /`: `{"model_name", "model_version", "data": {"<input>": [...]}}`.
/// Base64 strings go to an image input; anything else is sent as TF Serving's columnar
/// `{"inputs": data}`.
pub async fn root_json(state: &AppState, body: Bytes) -> Result<Response, RestError> {
    let request: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ServingError::invalid_argument(format!("JSON Parse error: {e}")))?;
    let names = state.manager.model_names();
    let name = match request.get("model_name").and_then(|v| v.as_str()).filter(|n| !n.is_empty()) {
        Some(name) => name.to_string(),
        None if names.iter().any(|n| n == "default") => "default".to_string(),
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(RestError(ServingError::invalid_argument(format!(
                "the request has no model_name and several models are served: {}",
                names.join(", ")
            ))))
        }
    };
    let version = match request.get("model_version") {
        None | Some(serde_json::Value::Null) => VersionRequest::Latest,
        Some(v) => {
            let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            VersionRequest::Specific(text.trim().parse().map_err(|_| {
                ServingError::invalid_argument(format!("Failed to convert version: {text} to numeric."))
            })?)
        }
    };
    let signature_name =
        request.get("signature_name").and_then(|v| v.as_str()).unwrap_or(DEFAULT_SIGNATURE).to_string();
    let data = request
        .get("data")
        .ok_or_else(|| ServingError::invalid_argument("the request has no 'data' object of input values"))?;
    let handle = state.manager.handle(&name, &version)?;
    if let Some(alias) = image_input_alias(handle.servable.as_ref(), &signature_name) {
        let value = data.get(&alias).unwrap_or(data);
        let mut images = Vec::new();
        collect_b64(value, &alias, &mut images)?;
        let upload = Upload { images, signature_name: Some(signature_name), ..Default::default() };
        return predict_upload(state, &handle, upload).await;
    }
    let columnar = serde_json::json!({ "signature_name": signature_name, "inputs": data }).to_string();
    let parsed = crate::codec::json::parse_predict_request(columnar.as_bytes(), handle.servable.signatures())?;
    let deadline = state.rest_api_timeout.map(|timeout| Instant::now() + timeout);
    let outcome = predict(handle.servable.as_ref(), &parsed.signature_name, parsed.inputs, &[], deadline).await?;
    Ok(json_response(StatusCode::OK, write_predict_response(parsed.format, &outcome.outputs)?))
}

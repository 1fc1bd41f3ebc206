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
use crate::codec::image::ImageLimits;
use crate::codec::json::simple::{parse_simple_request, SimpleInputs};
use crate::codec::json::{write_image_response, write_predict_response, JsonFormat};
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
        (VersionRequest::Latest, Some(text)) if !text.trim().is_empty() => VersionRequest::specific(text),
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
    // NOTE: counts the encoded images; `predict_images` counts their decoded pixels too.
    let _permit = state.budget.try_take(upload.images.iter().map(|image| image.len()).sum())?;
    let limits = ImageLimits { max_tensor_bytes: state.max_decoded_request_bytes, ..ImageLimits::default() };
    let servable = handle.servable.as_ref();
    let prediction = predict_images(servable, &signature_name, upload.images, limits, &state.budget, deadline).await?;
    let body =
        write_image_response(&prediction.outcome.outputs, &prediction.outcome.map_keys, prediction.labels.as_deref())?;
    Ok(json_response(StatusCode::OK, body))
}

/// Returns the model a `POST /` request is for: the one it names, else `default`, else the
/// only model served. `what` names the request in the error.
fn served_model(state: &AppState, named: Option<String>, what: &str) -> ServingResult<String> {
    if let Some(name) = named {
        return Ok(name);
    }
    let names = state.manager.model_names();
    match names.as_slice() {
        _ if names.iter().any(|n| n == "default") => Ok("default".to_string()),
        [only] => Ok(only.clone()),
        _ => Err(ServingError::invalid_argument(format!(
            "{what} has no model_name and several models are served: {}",
            names.join(", ")
        ))),
    }
}

/// `POST /`: an upload for the model in its `model_name` field, or `default`, or the only
/// model served.
pub async fn root_upload(state: &AppState, headers: &HeaderMap, body: Bytes) -> Result<Response, RestError> {
    if !is_upload(headers) {
        return root_json(state, body).await;
    }
    let upload = read_upload(headers, body).await?;
    let name = served_model(state, upload.model_name.clone().filter(|n| !n.is_empty()), "the form")?;
    let handle = state.manager.handle(&name, &upload_version(VersionRequest::Latest, &upload)?)?;
    predict_upload(state, &handle, upload).await
}

/// Simple TF Serving's JSON on `POST /`: `{"model_name", "model_version", "data": {"<input>": [...]}}`.
/// Base64 strings go to an image input; anything else is decoded as TF Serving's columnar
/// `inputs`, answered as `{"outputs": ...}`.
pub async fn root_json(state: &AppState, body: Bytes) -> Result<Response, RestError> {
    let request = parse_simple_request(&body)?;
    let name = served_model(state, request.model_name.clone(), "the request")?;
    let handle = state.manager.handle(&name, &request.version)?;
    let alias = image_input_alias(handle.servable.as_ref(), &request.signature_name);
    let inputs = match request.inputs(handle.servable.signatures(), alias.as_deref())? {
        SimpleInputs::Images(images) => {
            let upload = Upload { images, signature_name: Some(request.signature_name), ..Default::default() };
            return predict_upload(state, &handle, upload).await;
        }
        SimpleInputs::Tensors(inputs) => inputs,
    };
    let deadline = state.rest_api_timeout.map(|timeout| Instant::now() + timeout);
    let outcome = predict(handle.servable.as_ref(), &request.signature_name, inputs, &[], deadline).await?;
    Ok(json_response(
        StatusCode::OK,
        write_predict_response(JsonFormat::Columnar, &outcome.outputs, &outcome.map_keys)?,
    ))
}

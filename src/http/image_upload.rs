//! Image uploads over REST: `multipart/form-data` files (fields `image`/`images`, with
//! `model_name`, `model_version`, `signature_name`) and raw `image/*` bodies, on the predict
//! routes and on `POST /` as Simple TensorFlow Serving had it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use super::error::{json_response, RestError};
use super::AppState;
use crate::codec::image::{image_target, images_to_tensor, ImageLimits};
use crate::codec::json::{write_predict_response, JsonFormat};
use crate::core::model_options::Labels;
use crate::core::{DType, ServingError, ServingResult, Tensor, TensorInfo, VersionRequest, DEFAULT_SIGNATURE};
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

/// Runs an upload through the model: the signature's one image input gets the decoded
/// batch, and the answer is TF Serving's row format (`{"predictions": ...}`).
pub async fn predict_upload(
    state: &AppState,
    name: &str,
    version: VersionRequest,
    upload: Upload,
) -> Result<Response, RestError> {
    let started = Instant::now();
    let version = match (&version, &upload.model_version) {
        (VersionRequest::Latest, Some(text)) if !text.trim().is_empty() => {
            let parsed = text.trim().parse::<i64>().map_err(|_| {
                ServingError::invalid_argument(format!("Failed to convert version: {text} to numeric."))
            })?;
            VersionRequest::Specific(parsed)
        }
        _ => version,
    };
    let handle = state.manager.handle(name, &version)?;
    let signature_name = upload.signature_name.clone().filter(|s| !s.is_empty()).unwrap_or(DEFAULT_SIGNATURE.into());
    let signature = handle.servable.signatures().get(&signature_name).ok_or_else(|| {
        ServingError::invalid_argument(format!(
            "Serving signature name: \"{signature_name}\" not found in signature def"
        ))
    })?;
    let presentation = handle.servable.presentation();
    let image_options = presentation.and_then(|p| p.image.as_ref());
    let inputs: Vec<(&String, &TensorInfo)> = signature.inputs.iter().collect();
    let (alias, info) = match (inputs.as_slice(), image_options.and_then(|o| o.input.as_ref())) {
        ([(alias, info)], None) => ((*alias).clone(), *info),
        ([(alias, info)], Some(wanted)) if *alias == wanted => ((*alias).clone(), *info),
        (_, Some(wanted)) if !signature.inputs.contains_key(wanted) => {
            return Err(RestError(ServingError::invalid_argument(format!(
                "signature {signature_name} has no input '{wanted}' (model_options.pbtxt image.input)"
            ))))
        }
        (inputs, _) => {
            return Err(RestError(ServingError::invalid_argument(format!(
                "signature {signature_name} takes {} inputs; image uploads need a signature with exactly one",
                inputs.len()
            ))))
        }
    };
    let target = image_target(info, image_options)?.ok_or_else(|| {
        ServingError::invalid_argument(format!(
            "input '{alias}' of signature {signature_name} is not an image input: it needs uint8, float or half \
             of shape [batch, height, width, 1|3] or [batch, 1|3, height, width], and has {} {:?}",
            info.dtype, info.shape
        ))
    })?;
    let images = upload.images;
    // NOTE: decoding and resizing are CPU work, kept off the async runtime.
    let tensor = tokio::task::spawn_blocking(move || images_to_tensor(&images, &target, &ImageLimits::default()))
        .await
        .map_err(|e| ServingError::internal(format!("image decoding failed: {e}")))??;
    let deadline = state.rest_api_timeout.map(|timeout| started + timeout);
    let inputs = BTreeMap::from([(alias, tensor)]);
    let outcome = predict(handle.servable.as_ref(), &signature_name, inputs, &[], deadline).await?;
    let mut body = write_predict_response(JsonFormat::Row, &outcome.outputs)?;
    if let Some(labels) = presentation.and_then(|p| p.labels.as_ref()) {
        let top = top_labels(labels, &outcome.outputs)?;
        append_field(&mut body, "labels", &top);
    }
    Ok(json_response(StatusCode::OK, body))
}

/// Returns, per image, the `top_k` classes of the scores output, highest first, as
/// `{"label", "index", "score"}`. The scores output is `labels.output`, or the only output of
/// rank 2.
pub fn top_labels(labels: &Labels, outputs: &[(String, Tensor)]) -> ServingResult<serde_json::Value> {
    let scores = match &labels.output {
        Some(name) => outputs.iter().find(|(alias, _)| alias == name),
        None => {
            let ranked: Vec<&(String, Tensor)> = outputs.iter().filter(|(_, t)| t.shape.len() == 2).collect();
            match ranked.as_slice() {
                [one] => Some(*one),
                _ => None,
            }
        }
    };
    let Some((alias, tensor)) = scores else {
        return Err(ServingError::failed_precondition(
            "model_options.pbtxt labels: no scores output; name it with labels.output (the model has no single \
             output of rank 2)",
        ));
    };
    let values: Vec<f32> = match tensor.dtype {
        DType::Float => tensor.values::<f32>().map(|v| v.into_owned()),
        DType::Double => tensor.values::<f64>().map(|v| v.iter().map(|&x| x as f32).collect()),
        DType::Half => tensor.values::<half::f16>().map(|v| v.iter().map(|x| x.to_f32()).collect()),
        _ => None,
    }
    .ok_or_else(|| {
        ServingError::failed_precondition(format!(
            "model_options.pbtxt labels: output '{alias}' is {}, not floating-point scores",
            tensor.dtype
        ))
    })?;
    let classes = tensor.shape.get(1).copied().unwrap_or(0).max(1);
    let rows = values
        .chunks(classes)
        .map(|row| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            order
                .into_iter()
                .take(labels.top_k)
                .map(|index| {
                    let label = labels.names.get(index).cloned().unwrap_or_else(|| index.to_string());
                    serde_json::json!({"label": label, "index": index, "score": f64::from(row[index])})
                })
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    Ok(serde_json::Value::from(rows))
}

/// Adds `"name": value` as the last field of a JSON object body.
fn append_field(body: &mut Vec<u8>, name: &str, value: &serde_json::Value) {
    while body.last().is_some_and(|b| b.is_ascii_whitespace()) {
        body.pop();
    }
    if body.last() == Some(&b'}') {
        body.pop();
        body.extend_from_slice(format!(",\n    \"{name}\": ").as_bytes());
        body.extend_from_slice(value.to_string().as_bytes());
        body.extend_from_slice(b"\n}");
    }
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
    predict_upload(state, &name, VersionRequest::Latest, upload).await
}

/// Decodes standard or URL-safe base64, with or without padding.
fn decode_base64(index: usize, text: &str) -> ServingResult<Bytes> {
    use base64::Engine;
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let text = text.trim();
    engines
        .iter()
        .find_map(|engine| engine.decode(text).ok())
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

/// Returns the alias of a signature's one image input, if it has exactly one input and it
/// is image-shaped.
pub fn image_input(state: &AppState, name: &str, version: &VersionRequest, signature_name: &str) -> Option<String> {
    let handle = state.manager.handle(name, version).ok()?;
    let signature = handle.servable.signatures().get(signature_name)?;
    match signature.inputs.iter().collect::<Vec<_>>().as_slice() {
        [(alias, info)] => {
            let options = handle.servable.presentation().and_then(|p| p.image.as_ref());
            matches!(image_target(info, options), Ok(Some(_))).then(|| (*alias).clone())
        }
        _ => None,
    }
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
    if let Some(alias) = image_input(state, &name, &version, &signature_name) {
        let value = data.get(&alias).unwrap_or(data);
        let mut images = Vec::new();
        collect_b64(value, &alias, &mut images)?;
        let upload = Upload { images, signature_name: Some(signature_name), ..Default::default() };
        return predict_upload(state, &name, version, upload).await;
    }
    let handle = state.manager.handle(&name, &version)?;
    let columnar = serde_json::json!({ "signature_name": signature_name, "inputs": data }).to_string();
    let parsed = crate::codec::json::parse_predict_request(columnar.as_bytes(), handle.servable.signatures())?;
    let deadline = state.rest_api_timeout.map(|timeout| Instant::now() + timeout);
    let outcome = predict(handle.servable.as_ref(), &parsed.signature_name, parsed.inputs, &[], deadline).await?;
    Ok(json_response(StatusCode::OK, write_predict_response(parsed.format, &outcome.outputs)?))
}

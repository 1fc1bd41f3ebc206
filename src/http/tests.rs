//! The REST router in process: requests go through `router(state).oneshot(...)` to a fake
//! half-plus-two servable behind a real manager, with no ONNX Runtime and no sockets.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{router, AppState, MAX_REQUEST_BODY_BYTES};
use crate::core::testing::serve_half_plus_two;

/// The router over a fake half_plus_two, with `budget` for requests in flight.
async fn app_with(budget: crate::core::MemoryBudget) -> axum::Router {
    let state = AppState {
        max_decoded_request_bytes: 1 << 20,
        budget,
        manager: serve_half_plus_two("half_plus_two").await,
        rest_api_timeout: None,
        ready: Arc::new(AtomicBool::new(true)),
        credentials: None,
        cors: false,
        max_request_body_bytes: MAX_REQUEST_BODY_BYTES,
    };
    router(state, None)
}

async fn app() -> axum::Router {
    app_with(crate::core::MemoryBudget::new(1 << 20)).await
}

/// Sends one request and returns the status and the body as text.
async fn call(method: Method, path: &str, body: &str) -> (StatusCode, String) {
    let request = Request::builder().method(method).uri(path).body(Body::from(body.to_string())).expect("request");
    let response = app().await.oneshot(request).await.expect("the router is infallible");
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(content_type.as_deref(), Some("application/json"), "REST answers are JSON");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    (status, String::from_utf8(bytes.to_vec()).expect("UTF-8 body"))
}

async fn post(path: &str, body: &str) -> (StatusCode, String) {
    call(Method::POST, path, body).await
}

async fn get(path: &str) -> (StatusCode, String) {
    call(Method::GET, path, "").await
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("invalid JSON {body}: {e}"))
}

fn error(body: &str) -> String {
    parse(body)["error"].as_str().unwrap_or_else(|| panic!("no error string in {body}")).to_string()
}

const PREDICT: &str = "/v1/models/half_plus_two:predict";

#[tokio::test]
async fn predict_rows_are_computed() {
    let (status, body) = post(PREDICT, r#"{"instances": [1.0, 2.0, 5.0]}"#).await;
    assert_eq!((status, parse(&body)), (StatusCode::OK, json!({"predictions": [2.5, 3.0, 4.5]})));
    let (status, body) = post("/v1/models/half_plus_two/versions/1:predict", r#"{"instances": [[4.0]]}"#).await;
    assert_eq!((status, parse(&body)), (StatusCode::OK, json!({"predictions": [[4.0]]})));
}

#[tokio::test]
async fn predict_columns_are_computed() {
    let (status, body) = post(PREDICT, r#"{"inputs": [[1, 2], [3, 4]]}"#).await;
    assert_eq!((status, parse(&body)), (StatusCode::OK, json!({"outputs": [[2.5, 3.0], [3.5, 4.0]]})));
    let (status, body) = post(PREDICT, r#"{"inputs": {"x": 5.0}}"#).await;
    assert_eq!((status, parse(&body)), (StatusCode::OK, json!({"outputs": 4.5})));
}

#[tokio::test]
async fn unknown_model_and_version_are_not_found() {
    let (status, body) = post("/v1/models/missing:predict", "not even json").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "{\n    \"error\": \"Servable not found for request: Latest(missing)\"\n}");
    let (status, body) = post("/v1/models/half_plus_two/versions/99:predict", "{}").await;
    assert_eq!(
        (status, error(&body).as_str()),
        (StatusCode::NOT_FOUND, "Servable not found for request: Specific(half_plus_two, 99)")
    );
    let (status, body) = post("/v1/models/half_plus_two/labels/x:predict", "{}").await;
    assert_eq!((status, error(&body).as_str()), (StatusCode::BAD_REQUEST, "Unrecognized servable version label: x"));
}

#[tokio::test]
async fn malformed_json_gives_tf_parse_errors() {
    let cases = [
        ("", "JSON Parse error: The document is empty"),
        ("{nope", "JSON Parse error: Missing a name for object member. at offset: 1"),
    ];
    for (body, message) in cases {
        let (status, text) = post(PREDICT, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?} gave {text}");
        assert!(error(&text).starts_with(message), "{body:?}: expected {message:?} in {text}");
    }
    let (status, text) = post("/v1/models/half_plus_two:classify", "x").await;
    assert_eq!(
        (status, error(&text).as_str()),
        (StatusCode::BAD_REQUEST, "JSON Parse error: Invalid value. at offset: 0")
    );
}

#[tokio::test]
async fn request_shape_errors_follow_the_spec() {
    let cases = [
        (r#"{"instances": ["a"]}"#, "Type: String is not of expected type: float"),
        (r#"{"instances": [1], "inputs": [1]}"#, "expecting only one of 'inputs' or 'instances' keys to exist"),
        (r#"{"instances": []}"#, "No values in 'instances' array"),
        (r#"{"x": 1}"#, "Missing 'inputs' or 'instances' key"),
    ];
    for (body, message) in cases {
        let (status, text) = post(PREDICT, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?} gave {text}");
        assert!(error(&text).contains(message), "{body:?}: expected {message:?} in {text}");
    }
}

#[tokio::test]
async fn unknown_signature_is_named() {
    let (status, text) = post(PREDICT, r#"{"signature_name": "nope", "instances": [1]}"#).await;
    assert_eq!(
        (status, error(&text).as_str()),
        (StatusCode::BAD_REQUEST, r#"Serving signature name: "nope" not found in signature def"#)
    );
}

#[tokio::test]
async fn status_has_tf_serving_shape() {
    let (status, body) = get("/v1/models/half_plus_two").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        parse(&body),
        json!({"model_version_status": [{"version": "1", "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]}),
        "TF Serving's document, field for field"
    );
    let (status, body) = get("/v1/models/half_plus_two/execution_providers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        parse(&body),
        json!({"model_version_status": [{"version": "1", "state": "AVAILABLE", "execution_providers": ["CPU"]}]}),
        "our extension document"
    );
    let (status, body) = get("/v1/models/half_plus_two/versions/2").await;
    assert_eq!(
        (status, error(&body).as_str()),
        (StatusCode::NOT_FOUND, "Could not find version 2 of model half_plus_two")
    );
    let (status, body) = get("/v1/models/nope").await;
    assert_eq!((status, error(&body).as_str()), (StatusCode::NOT_FOUND, "Could not find any versions of model nope"));
}

#[tokio::test]
async fn metadata_has_tf_serving_shape() {
    let (status, body) = get("/v1/models/half_plus_two/metadata").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let metadata = parse(&body);
    assert_eq!(metadata["model_spec"], json!({"name": "half_plus_two", "signature_name": "", "version": "1"}));
    let signature = &metadata["metadata"]["signature_def"]["signature_def"]["serving_default"];
    assert_eq!(signature["method_name"], "tensorflow/serving/predict");
    let tensor = |name: &str| {
        json!({"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
            "unknown_rank": false}, "name": name})
    };
    assert_eq!(signature["inputs"]["x"], tensor("x"));
    assert_eq!(signature["outputs"]["y"], tensor("y"));
}

#[tokio::test]
async fn bad_paths_are_malformed_requests() {
    let (status, body) = post("/v1/models/half_plus_two/metadata", "").await;
    assert_eq!(
        (status, error(&body).as_str()),
        (StatusCode::BAD_REQUEST, "Malformed request: POST /v1/models/half_plus_two/metadata")
    );
    let (status, body) = get("/v1/models/half_plus_two:predict").await;
    assert_eq!(
        (status, error(&body).as_str()),
        (StatusCode::BAD_REQUEST, "Malformed request: GET /v1/models/half_plus_two:predict")
    );
    let (status, body) = get("/v1/models").await;
    assert_eq!((status, error(&body).as_str()), (StatusCode::BAD_REQUEST, "Missing model name in request."));
}

#[tokio::test]
async fn b64_and_simple_json_bodies_get_the_tape_errors() {
    let cases = [
        (
            PREDICT,
            r#"{"instances": [{"b64": "YQ=="}"#,
            "JSON Parse error: Missing a comma or ']' after an array element. at offset: 30",
        ),
        (PREDICT, r#"{"signature_name": 7, "inputs": {"b64": ""}}"#, "'signature_name' key must be a string value."),
        ("/", "{nope", "JSON Parse error: Missing a name for object member. at offset: 1"),
        (
            "/",
            r#"{"data": {"b64": "YQ=="#,
            "JSON Parse error: Missing a closing quotation mark in string. at offset: 22",
        ),
        ("/", "[1]", "Is not object"),
        ("/", r#"{"model_version": "two", "data": {}}"#, "Failed to convert version: two to numeric."),
        ("/", r#"{"model_name": "half_plus_two"}"#, "the request has no 'data' object of input values"),
    ];
    for (path, body, message) in cases {
        let (status, text) = post(path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?} gave {text}");
        assert!(error(&text).contains(message), "{body:?}: expected {message:?} in {text}");
    }
}

#[tokio::test]
async fn simple_json_inputs_are_columnar() {
    let (status, body) = post("/", r#"{"model_version": 1, "data": {"x": [[1.0], [3.0]]}}"#).await;
    assert_eq!((status, parse(&body)), (StatusCode::OK, json!({"outputs": [[2.5], [3.5]]})));
    let (status, body) = post("/", r#"{"model_name": "half_plus_two", "data": 4.0}"#).await;
    assert_eq!((status, parse(&body)), (StatusCode::OK, json!({"outputs": 4.0})));
    let (status, body) = post("/", r#"{"model_name": "nope", "data": {}}"#).await;
    assert_eq!(
        (status, error(&body).as_str()),
        (StatusCode::NOT_FOUND, "Servable not found for request: Latest(nope)")
    );
}

#[tokio::test]
async fn a_spent_memory_budget_refuses_at_once_with_429_and_retry_after() {
    let budget = crate::core::MemoryBudget::new(4096);
    let app = app_with(budget.clone()).await;
    let send = |body: String| {
        let request = Request::builder().method(Method::POST).uri(PREDICT).body(Body::from(body)).expect("request");
        app.clone().oneshot(request)
    };
    // Other requests in flight hold most of the budget.
    let held = budget.try_take(4090).expect("held");
    let response = send(r#"{"instances": [1.0, 2.0, 5.0]}"#.to_string()).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("1"));
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    let message = error(std::str::from_utf8(&bytes).expect("UTF-8"));
    assert!(message.contains("--max_inflight_request_bytes"), "{message}");
    // Once they are answered, the same request runs, and gives its bytes back.
    drop(held);
    let response = send(r#"{"instances": [1.0, 2.0, 5.0]}"#.to_string()).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(budget.used(), 0);
}

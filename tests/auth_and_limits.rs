//! Basic auth on REST and gRPC, CORS, the request body limit and the bounded request queue,
//! through the real binary.

mod common;

use std::io::Write;

use base64::Engine;
use common::{repo_path, ServerProcess};
use onnx_serving::proto::tensorflow::serving::model_service_client::ModelServiceClient;
use onnx_serving::proto::tensorflow::serving::{GetModelStatusRequest, ModelSpec};
use serde_json::json;

fn half_plus_two_args() -> Vec<String> {
    vec![
        "--model_name=half_plus_two".into(),
        format!("--model_base_path={}", repo_path("models/half_plus_two").display()),
    ]
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[tokio::test]
async fn auth_guards_rest_and_grpc_without_saying_what_was_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "correct horse\n").expect("write");
    let mut args = half_plus_two_args();
    args.extend([
        "--enable_auth".to_string(),
        "--auth_username=ops".to_string(),
        format!("--auth_password_file={}", password_file.display()),
    ]);
    let server = ServerProcess::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let client = reqwest::Client::new();
    let url = server.url("/v1/models/half_plus_two:predict");
    let body = r#"{"instances": [1.0]}"#;

    let mut refusals = Vec::new();
    for authorization in
        [None, Some(basic("ops", "wrong")), Some(basic("root", "correct horse")), Some("Bearer x".into())]
    {
        let mut request = client.post(&url).body(body);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("send");
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Basic realm=\"onnx-serving\"");
        refusals.push(response.text().await.expect("text"));
    }
    assert!(refusals.windows(2).all(|w| w[0] == w[1]), "every refusal reads the same: {refusals:?}");
    let accepted = client.post(&url).header("authorization", basic("ops", "correct horse")).body(body).send().await;
    assert_eq!(
        accepted.expect("send").text().await.expect("text").replace(char::is_whitespace, ""),
        r#"{"predictions":[2.5]}"#
    );
    let probe = client.get(server.url("/v1/health/ready")).send().await.expect("probe");
    assert_eq!(probe.status(), 200, "probes need no credentials");
    let status = client.get(server.url("/v1/models/half_plus_two")).send().await.expect("status");
    assert_eq!(status.status(), 401, "status and metadata are guarded too");

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc_address.expect("gRPC")))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut models = ModelServiceClient::new(channel);
    let status_request =
        || GetModelStatusRequest { model_spec: Some(ModelSpec { name: "half_plus_two".into(), ..Default::default() }) };
    let refused = models.get_model_status(status_request()).await.expect_err("no credentials");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut wrong = tonic::Request::new(status_request());
    wrong.metadata_mut().insert("authorization", basic("ops", "nope").parse().expect("metadata"));
    let wrong = models.get_model_status(wrong).await.expect_err("wrong password");
    assert_eq!((wrong.code(), wrong.message()), (refused.code(), refused.message()));
    let mut right = tonic::Request::new(status_request());
    right.metadata_mut().insert("authorization", basic("ops", "correct horse").parse().expect("metadata"));
    assert!(models.get_model_status(right).await.is_ok());
}

#[tokio::test]
async fn cors_and_the_body_limit_follow_the_flags() {
    let mut args = half_plus_two_args();
    args.extend(["--rest_api_enable_cors_support".to_string(), "--max_request_body_bytes=1000".to_string()]);
    let server = ServerProcess::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let client = reqwest::Client::new();
    let status = client.get(server.url("/v1/models/half_plus_two")).send().await.expect("status");
    assert_eq!(status.headers()["access-control-allow-origin"], "*");
    assert_eq!(status.headers()["access-control-allow-methods"], "POST, GET");
    assert_eq!(status.headers()["access-control-allow-headers"], "Content-Type");

    let preflight = |origin: Option<&str>| {
        let mut request = client.request(reqwest::Method::OPTIONS, server.url("/v1/models/half_plus_two:predict"));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let allowed = preflight(Some("https://app.example")).await.expect("preflight");
    assert_eq!(allowed.status(), 200);
    assert!(allowed.headers().get("content-type").is_none());
    assert!(allowed.text().await.expect("text").is_empty());
    let refused = preflight(None).await.expect("preflight");
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.expect("text").is_empty());

    let url = server.url("/v1/models/half_plus_two:predict");
    let small = client.post(&url).body(r#"{"instances": [1.0]}"#).send().await.expect("send");
    assert_eq!(small.status(), 200);
    let large = format!(r#"{{"instances": [{}]}}"#, vec!["1.0"; 400].join(","));
    let refused = client.post(&url).body(large.clone()).send().await.expect("send");
    assert_eq!(refused.status(), 413);
    let error: serde_json::Value = refused.json().await.expect("a TF Serving error body");
    assert!(error["error"].as_str().is_some_and(|m| m.starts_with("Failed to read the request body")), "{error}");
    // A small gzip body that inflates past the limit is refused too.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(large.as_bytes()).expect("gzip");
    let compressed = encoder.finish().expect("gzip");
    assert!(compressed.len() < 1000);
    let refused = client.post(&url).header("content-encoding", "gzip").body(compressed).send().await.expect("send");
    assert_eq!(refused.status(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once_with_503_and_retry_after() {
    // One session, and room for one waiting request.
    let server = ServerProcess::start_logged(
        &[
            "--model_name=slow",
            &format!("--model_base_path={}", repo_path("tests/fixtures/slow_loop").display()),
            "--max_queued_requests_per_session=1",
        ],
        &[("RUST_LOG", "info,onnx_serving::runtime=debug")],
    );
    let url = server.url("/v1/models/slow:predict");
    let slow = |iterations: u64| {
        let (url, body) = (url.clone(), json!({"inputs": {"iterations": iterations, "x": [vec![0.5f32; 64]]}}));
        async move { reqwest::Client::new().post(url).json(&body).send().await.expect("send") }
    };
    // About a second of work holds the one session.
    let running = tokio::spawn(slow(400_000));
    server.wait_for_log_line("running a model call").await;
    // Two more: one waits in the queue, the other is refused at once (whichever comes second).
    let (b, c) = tokio::join!(slow(1), slow(1));
    let mut statuses = Vec::new();
    for response in [b, c] {
        let status = response.status().as_u16();
        if status == 503 {
            assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
            let body: serde_json::Value = response.json().await.expect("json");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.starts_with("The model's request queue is full"), "{error}");
        }
        statuses.push(status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 503], "one waited, one was refused");
    assert_eq!(running.await.expect("task").status(), 200);

    // While the queue is full, a request is refused before its body is read: a client that
    // announces 100 MB and waits for `100 Continue` gets its 503 instead, without sending it.
    let running = tokio::spawn(slow(1_500_000));
    server.wait_for_log_line_count("running a model call", 3).await;
    let (b, c) = (tokio::spawn(slow(1)), tokio::spawn(slow(1)));
    let refused = tokio::select! {
        b = b => b.expect("task"),
        c = c => c.expect("task"),
    };
    assert_eq!(refused.status(), 503, "the queue holds one, the other is refused");
    let address = url.trim_start_matches("http://").split('/').next().expect("host:port").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connect");
    let head = format!(
        "POST /v1/models/slow:predict HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes()).await.expect("write");
    let mut answer = vec![0u8; 512];
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        tokio::io::AsyncReadExt::read(&mut stream, &mut answer).await
    })
    .await
    .expect("no answer: the server waited for the body instead of refusing")
    .expect("read");
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("The model's request queue is full"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "the body never came: {answer}");
    assert_eq!(running.await.expect("task").status(), 200);
}

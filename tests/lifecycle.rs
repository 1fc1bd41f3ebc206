//! The real binary: version discovery, hot swaps under load, broken versions, startup errors.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{copy_dir, repo_path, state_of, wait_for_status, ServerProcess};
use serde_json::json;

const IMAGE_REQUEST_ROWS: usize = 2;

fn mnist_request() -> String {
    let image: Vec<f32> = (0..784).map(|i| ((i * 7) % 255) as f32 / 255.0).collect();
    json!({"instances": vec![image; IMAGE_REQUEST_ROWS]}).to_string()
}

fn serve_args(base: &std::path::Path) -> Vec<String> {
    vec![
        "--model_name=mnist".to_string(),
        format!("--model_base_path={}", base.display()),
        "--file_system_poll_wait_seconds=1".to_string(),
        "--max_num_load_retries=0".to_string(),
        "--intra_op_threads=1".to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_swap_without_failing_a_request() {
    let base = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_path("models/mnist/1"), &base.path().join("1"));
    let args = serve_args(base.path());
    let server = ServerProcess::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let client = reqwest::Client::new();
    let status_url = server.url("/v1/models/mnist");
    let predict_url = server.url("/v1/models/mnist:predict");

    // A client keeps predicting while a new version arrives and the old one retires.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, url, stop, answered) = (client.clone(), predict_url.clone(), stop.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let body = mnist_request();
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let response = client.post(&url).body(body.clone()).send().await.expect("send");
                let status = response.status();
                let text = response.text().await.expect("text");
                if status != 200 {
                    failures.push(format!("{status}: {text}"));
                }
                answered.fetch_add(1, Ordering::SeqCst);
            }
            failures
        }));
    }

    copy_dir(&repo_path("models/mnist/2"), &base.path().join("2"));
    let status = wait_for_status(&client, &status_url, "v2 available and v1 retired", |s| {
        state_of(s, 2).as_deref() == Some("AVAILABLE") && state_of(s, 1).as_deref() == Some("END")
    })
    .await;
    assert_eq!(status["model_version_status"][0]["version"], "2", "highest version first");
    for _ in 0..20 {
        let response = client.post(&predict_url).body(mnist_request()).send().await.expect("send");
        assert_eq!(response.status(), 200, "served by the new version");
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        let failures = client.await.expect("client task");
        assert!(failures.is_empty(), "requests failed during the swap: {failures:?}");
    }
    assert!(answered.load(Ordering::SeqCst) > 0, "the clients ran during the swap");

    let metadata: serde_json::Value =
        client.get(server.url("/v1/models/mnist/metadata")).send().await.expect("get").json().await.expect("json");
    assert_eq!(metadata["model_spec"]["version"], "2");

    // Removing the newest version brings the older one back.
    std::fs::remove_dir_all(base.path().join("2")).expect("rm");
    wait_for_status(&client, &status_url, "v1 reloaded and v2 retired", |s| {
        state_of(s, 1).as_deref() == Some("AVAILABLE") && state_of(s, 2).as_deref() == Some("END")
    })
    .await;
    let response = client
        .post(server.url("/v1/models/mnist/versions/2:predict"))
        .body(mnist_request())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_version_ends_with_error_and_others_keep_serving() {
    let base = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_path("models/mnist/1"), &base.path().join("1"));
    let args = serve_args(base.path());
    let server = ServerProcess::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let client = reqwest::Client::new();
    let status_url = server.url("/v1/models/mnist");

    std::fs::create_dir_all(base.path().join("7")).expect("mkdir");
    std::fs::write(base.path().join("7/model.onnx"), b"this is not an onnx model").expect("write");
    let status =
        wait_for_status(&client, &status_url, "v7 to fail", |s| state_of(s, 7).as_deref() == Some("END")).await;
    let entry = status["model_version_status"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["version"] == "7"))
        .cloned()
        .expect("v7 listed");
    assert_ne!(entry["status"]["error_code"], "OK", "{entry}");
    assert!(!entry["status"]["error_message"].as_str().unwrap_or_default().is_empty(), "{entry}");
    assert_eq!(state_of(&status, 1).as_deref(), Some("AVAILABLE"));

    let response =
        client.post(server.url("/v1/models/mnist:predict")).body(mnist_request()).send().await.expect("send");
    assert_eq!(response.status(), 200, "version 1 keeps serving");

    // A directory with no model file fails the same way, with a message saying what is missing.
    std::fs::create_dir_all(base.path().join("9/assets")).expect("mkdir");
    std::fs::write(base.path().join("9/assets/vocab.txt"), b"a").expect("write");
    let status =
        wait_for_status(&client, &status_url, "v9 to fail", |s| state_of(s, 9).as_deref() == Some("END")).await;
    let text = status.to_string();
    assert!(text.contains("expected model.onnx or exactly one *.onnx file"), "{text}");
    assert_eq!(state_of(&status, 1).as_deref(), Some("AVAILABLE"));
}

#[test]
fn startup_errors_are_clear_and_exit_255() {
    let missing = Command::new(env!("CARGO_BIN_EXE_onnx-serving"))
        .args(["serve", "--model_name=m", "--model_base_path=/nonexistent/models/m", "--rest_api_address=127.0.0.1:0"])
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("Could not find base path /nonexistent/models/m for servable m"), "{stderr}");

    let no_runtime = Command::new(env!("CARGO_BIN_EXE_onnx-serving"))
        .args([
            "serve",
            "--model_name=m",
            "--model_base_path=models/half_plus_two",
            "--ort_library_path=/nonexistent/libonnxruntime.so",
        ])
        .current_dir(repo_path(""))
        .output()
        .expect("run");
    assert_eq!(no_runtime.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&no_runtime.stderr);
    assert!(stderr.contains("pip install onnxruntime"), "{stderr}");
    assert!(stderr.contains("--ort_library_path"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let broken = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(broken.path().join("1")).expect("mkdir");
    std::fs::write(broken.path().join("1/model.onnx"), b"garbage").expect("write");
    let failed = Command::new(env!("CARGO_BIN_EXE_onnx-serving"))
        .args(["serve", "--model_name=m", "--max_num_load_retries=0", "--rest_api_address=127.0.0.1:0"])
        .arg(format!("--model_base_path={}", broken.path().display()))
        .output()
        .expect("run");
    assert_eq!(failed.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    // NOTE: TF Serving wraps the list in braces and each entry in braces around the id's own.
    assert!(
        stderr.contains("1 servable(s) did not become available: {{{name: m version: 1} due to error:"),
        "{stderr}"
    );
    assert!(stderr.trim_end().ends_with("}, }"), "{stderr}");
}

#[test]
fn version_flag_prints_and_exits() {
    let output = Command::new(env!("CARGO_BIN_EXE_onnx-serving")).args(["serve", "--version"]).output().expect("run");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("onnx-serving: "));
}

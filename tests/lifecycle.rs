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
    copy_dir(&repo_path("models/mnist_onnx/1"), &base.path().join("1"));
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

    copy_dir(&repo_path("models/mnist_onnx/2"), &base.path().join("2"));
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
    copy_dir(&repo_path("models/mnist_onnx/1"), &base.path().join("1"));
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
    let stdout = String::from_utf8_lossy(&missing.stdout);
    assert!(stdout.contains("Failed to start server. Error: "), "TF Serving prints it on stdout: {stdout}");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("Could not find base path /nonexistent/models/m for servable m"), "{stderr}");

    // NOTE: a flag value that does not parse exits 255 too, as TF Serving does (clap's own is 2).
    let bad_flag = Command::new(env!("CARGO_BIN_EXE_onnx-serving"))
        .args(["--model_base_path=/x", "--rest_api_port=notanumber"])
        .output()
        .expect("run");
    assert_eq!(bad_flag.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&bad_flag.stderr).contains("notanumber"));

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

    // NOTE: with TF Serving's default retries (5, a minute apart): a model that does not
    // parse is a permanent error, so the start fails at once instead of after five minutes.
    let broken = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(broken.path().join("1")).expect("mkdir");
    std::fs::write(broken.path().join("1/model.onnx"), b"garbage").expect("write");
    let started = std::time::Instant::now();
    let failed = Command::new(env!("CARGO_BIN_EXE_onnx-serving"))
        .args(["serve", "--model_name=m", "--rest_api_address=127.0.0.1:0"])
        .arg(format!("--model_base_path={}", broken.path().display()))
        .output()
        .expect("run");
    assert!(started.elapsed() < std::time::Duration::from_secs(50), "retried a permanent error");
    assert_eq!(failed.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    // NOTE: TF Serving wraps the list in braces and each entry in braces around the id's own.
    assert!(
        stderr.contains("1 servable(s) did not become available: {{{name: m version: 1} due to error:"),
        "{stderr}"
    );
    assert!(stderr.trim_end().ends_with("}, }"), "{stderr}");
}

#[tokio::test]
async fn a_model_without_versions_starts_and_loads_once_one_appears() {
    let base = tempfile::tempdir().expect("tempdir");
    // An empty version directory (files on their way) is no version yet; it does not hold
    // the start up.
    std::fs::create_dir_all(base.path().join("1")).expect("mkdir");
    let args = serve_args(base.path());
    let server = ServerProcess::start_logged(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let expected = format!("No versions of servable mnist found under base path {}", base.path().display());
    // TF Serving's warning is logged, and the server starts anyway.
    server.wait_for_log_line(&expected).await;
    let client = reqwest::Client::new();
    let status_url = server.url("/v1/models/mnist");
    let response = client.get(&status_url).send().await.expect("status");
    assert_eq!(response.status(), 404);
    copy_dir(&repo_path("models/mnist_onnx/1"), &base.path().join("1"));
    wait_for_status(&client, &status_url, "v1 to load", |s| state_of(s, 1).as_deref() == Some("AVAILABLE")).await;
    let response =
        client.post(server.url("/v1/models/mnist:predict")).body(mnist_request()).send().await.expect("send");
    assert_eq!(response.status(), 200);
}

#[test]
fn version_flag_prints_and_exits() {
    let output = Command::new(env!("CARGO_BIN_EXE_onnx-serving")).args(["serve", "--version"]).output().expect("run");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("onnx-serving: "));
}

fn write_config(path: &std::path::Path, text: &str) {
    // NOTE: write then rename, so the poller never reads a half-written file.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).expect("write config");
    std::fs::rename(&partial, path).expect("rename config");
}

fn config_entry(name: &str, base: &std::path::Path, extra: &str) -> String {
    format!("config {{ name: \"{name}\" base_path: \"{}\" model_platform: \"onnx\" {extra} }}", base.display())
}

async fn metadata_version(client: &reqwest::Client, url: &str) -> Option<String> {
    let value: serde_json::Value = client.get(url).send().await.ok()?.json().await.ok()?;
    value["model_spec"]["version"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_config_file_serves_labels_and_reloads_without_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("models.config");
    let mnist = repo_path("models/mnist_onnx");
    let half = repo_path("models/half_plus_two");
    let both_versions = "model_version_policy { specific { versions: 1 versions: 2 } }";
    write_config(
        &config,
        &format!(
            "model_config_list {{ {} }}",
            config_entry(
                "mnist",
                &mnist,
                &format!("{both_versions} version_labels {{ key: 'stable' value: 1 }} version_labels {{ key: 'canary' value: 2 }}")
            )
        ),
    );
    let server = ServerProcess::start(&[
        &format!("--model_config_file={}", config.display()),
        "--model_config_file_poll_wait_seconds=1",
        "--file_system_poll_wait_seconds=1",
    ]);
    let client = reqwest::Client::new();
    let canary = server.url("/v1/models/mnist/labels/canary/metadata");
    assert_eq!(metadata_version(&client, &canary).await.as_deref(), Some("2"));
    assert_eq!(
        metadata_version(&client, &server.url("/v1/models/mnist/labels/stable/metadata")).await.as_deref(),
        Some("1")
    );
    let predict = client.post(server.url("/v1/models/mnist/labels/stable:predict")).body(mnist_request()).send().await;
    assert_eq!(predict.expect("predict").status(), 200);
    let unknown = client.post(server.url("/v1/models/mnist/labels/nope:predict")).body(mnist_request()).send().await;
    let unknown = unknown.expect("predict");
    assert_eq!(unknown.status(), 400);
    assert_eq!(
        unknown.json::<serde_json::Value>().await.expect("json")["error"],
        "Unrecognized servable version label: nope"
    );

    // One edit flips the canary and adds a model.
    write_config(
        &config,
        &format!(
            "model_config_list {{ {} {} }}",
            config_entry(
                "mnist",
                &mnist,
                &format!("{both_versions} version_labels {{ key: 'stable' value: 1 }} version_labels {{ key: 'canary' value: 1 }}")
            ),
            config_entry("half_plus_two", &half, "")
        ),
    );
    wait_for_status(&client, &server.url("/v1/models/half_plus_two"), "half_plus_two to load", |s| {
        state_of(s, 1).as_deref() == Some("AVAILABLE")
    })
    .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while metadata_version(&client, &canary).await.as_deref() != Some("1") {
        assert!(tokio::time::Instant::now() < deadline, "the canary label never moved");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A broken file is ignored; the next good one still applies (the poller survived).
    write_config(&config, "model_config_list { config { name: ");
    write_config(&config, &format!("model_config_list {{ {} }}", config_entry("mnist", &mnist, both_versions)));
    wait_for_status(&client, &server.url("/v1/models/half_plus_two"), "half_plus_two to unload", |s| {
        state_of(s, 1).as_deref() == Some("END")
    })
    .await;
    let predict = client.post(server.url("/v1/models/mnist:predict")).body(mnist_request()).send().await;
    assert_eq!(predict.expect("predict").status(), 200, "mnist kept serving throughout");
}

#[test]
fn model_config_file_errors_stop_startup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.config");
    std::fs::write(&config, "model_config_list {\n  config { name: \"m\" bogus: 1 }\n}\n").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_onnx-serving"))
        .args(["serve", "--rest_api_address=127.0.0.1:0", "--grpc_address=127.0.0.1:0"])
        .arg(format!("--model_config_file={}", config.display()))
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Error parsing text-format tensorflow.serving.ModelServerConfig: 2:"), "{stderr}");
    assert!(stderr.contains(&format!("Invalid protobuf file: '{}'", config.display())), "{stderr}");

    // A label on a version that is not available stops startup, unless the flag allows it.
    let mnist = repo_path("models/mnist_onnx");
    let labelled =
        format!("model_config_list {{ {} }}", config_entry("mnist", &mnist, "version_labels { key: 'next' value: 9 }"));
    std::fs::write(&config, labelled).expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_onnx-serving"))
        .args(["serve", "--rest_api_address=127.0.0.1:0", "--grpc_address=127.0.0.1:0"])
        .arg(format!("--model_config_file={}", config.display()))
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "Request to assign label to version 9 of model mnist, which is not currently available for inference"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn labels_may_point_ahead_with_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("models.config");
    let mnist = repo_path("models/mnist_onnx");
    let text =
        format!("model_config_list {{ {} }}", config_entry("mnist", &mnist, "version_labels { key: 'next' value: 9 }"));
    std::fs::write(&config, text).expect("write");
    let server = ServerProcess::start(&[
        &format!("--model_config_file={}", config.display()),
        "--allow_version_labels_for_unavailable_models",
    ]);
    let client = reqwest::Client::new();
    let response = client.post(server.url("/v1/models/mnist/labels/next:predict")).body(mnist_request()).send().await;
    let response = response.expect("predict");
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "Servable not found for request: Specific(mnist, 9)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_opens_a_drain_window_then_finishes_in_flight_requests_and_exits_0() {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_onnx-serving"))
        .args(["serve", "--model_name=slow", "--rest_api_address=127.0.0.1:0", "--grpc_address=127.0.0.1:0"])
        .arg("--drain_seconds=2")
        .arg(format!("--model_base_path={}", repo_path("tests/fixtures/slow_loop").display()))
        .env("RUST_LOG", "info,onnx_serving::runtime=debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let address = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("Exporting HTTP/REST API at:").map(|a| a.trim_end_matches(" ...").to_string()))
        .expect("REST address");
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("running a model call") {
                let _ = started_tx.send(());
            }
        }
    });
    let predict_url = format!("http://{address}/v1/models/slow:predict");
    let slow_predict = |iterations: u64| {
        let url = predict_url.clone();
        let body = json!({"inputs": {"iterations": iterations, "x": [vec![0.5f32; 64]]}}).to_string();
        // NOTE: a fresh connection per request, so each one is accepted or refused as a whole.
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
        async move { client.post(url).body(body).send().await }
    };
    // Several seconds of work: it must finish although SIGTERM arrives while it runs, and it
    // outlasts the drain window.
    let in_flight = tokio::spawn(slow_predict(2_000_000));
    started_rx.recv_timeout(std::time::Duration::from_secs(30)).expect("the model call started");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());

    // The window: not ready, yet 32 clients that arrive now are all answered.
    let client = reqwest::Client::new();
    let ready_url = format!("http://{address}/v1/health/ready");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = client.get(&ready_url).send().await.map(|r| r.status().as_u16());
        if status.as_ref().ok() == Some(&503) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "readiness never turned off: {status:?}");
        tokio::task::yield_now().await;
    }
    let during: Vec<_> = (0..32).map(|_| tokio::spawn(slow_predict(1))).collect();

    // After the window: new connections are refused while the slow request still runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match tokio::net::TcpStream::connect(&address).await {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => break,
            other => assert!(std::time::Instant::now() < deadline, "the port stayed open: {other:?}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!in_flight.is_finished(), "the slow request was still running when the window closed");

    for (index, request) in during.into_iter().enumerate() {
        let response = request.await.expect("task").unwrap_or_else(|e| panic!("client {index} lost: {e}"));
        assert_eq!(response.status(), 200, "client {index}");
    }
    let response = in_flight.await.expect("task").expect("the in-flight request completes");
    assert_eq!(response.status(), 200);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "a drained shutdown exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_under_load_fails_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("models.config");
    let mnist = repo_path("models/mnist_onnx");
    let half = repo_path("models/half_plus_two");
    let only = |v: i64| format!("model_version_policy {{ specific {{ versions: {v} }} }}");
    write_config(&config, &format!("model_config_list {{ {} }}", config_entry("mnist", &mnist, &only(1))));
    let server = ServerProcess::start(&[
        &format!("--model_config_file={}", config.display()),
        "--model_config_file_poll_wait_seconds=1",
        "--intra_op_threads=1",
    ]);
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, url, stop, answered) =
            (client.clone(), server.url("/v1/models/mnist:predict"), stop.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match client.post(&url).body(mnist_request()).send().await {
                    Ok(response) if response.status() == 200 => {}
                    Ok(response) => {
                        failures.push(format!("{}: {}", response.status(), response.text().await.unwrap_or_default()))
                    }
                    Err(error) => failures.push(error.to_string()),
                }
                answered.fetch_add(1, Ordering::SeqCst);
            }
            failures
        }));
    }
    // One edit moves mnist from version 1 to 2 and adds a model; the next removes it again.
    write_config(
        &config,
        &format!(
            "model_config_list {{ {} {} }}",
            config_entry("mnist", &mnist, &only(2)),
            config_entry("half", &half, "")
        ),
    );
    wait_for_status(&client, &server.url("/v1/models/mnist"), "mnist v2 serving and v1 retired", |s| {
        state_of(s, 2).as_deref() == Some("AVAILABLE") && state_of(s, 1).as_deref() == Some("END")
    })
    .await;
    wait_for_status(&client, &server.url("/v1/models/half"), "half loaded", |s| {
        state_of(s, 1).as_deref() == Some("AVAILABLE")
    })
    .await;
    write_config(&config, &format!("model_config_list {{ {} }}", config_entry("mnist", &mnist, &only(2))));
    wait_for_status(&client, &server.url("/v1/models/half"), "half unloaded", |s| {
        state_of(s, 1).as_deref() == Some("END")
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for task in clients {
        let failures = task.await.expect("client");
        assert!(failures.is_empty(), "requests failed during the reloads: {failures:?}");
    }
    assert!(answered.load(Ordering::SeqCst) > 0);
}

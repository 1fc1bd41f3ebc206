//! Prometheus metrics from the real binary: TF Serving's names and labels, our own gauges,
//! promtool's format check, and a real Prometheus server scraping the endpoint.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{repo_path, ServerProcess};

const PATH: &str = "/monitoring/prometheus/metrics";

fn mnist_body() -> String {
    serde_json::json!({ "instances": [vec![0.5f32; 784]] }).to_string()
}

async fn scrape(client: &reqwest::Client, server: &ServerProcess) -> String {
    client.get(server.url(PATH)).send().await.expect("scrape").text().await.expect("text")
}

fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tf_serving_metrics_are_exported_and_scraped_by_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let monitoring = dir.path().join("monitoring.config");
    std::fs::write(&monitoring, format!("prometheus_config {{ enable: true, path: \"{PATH}\" }}\n")).expect("write");
    let server = ServerProcess::start(&[
        "--model_name=mnist",
        &format!("--model_base_path={}", repo_path("models/mnist_onnx").display()),
        &format!("--monitoring_config_file={}", monitoring.display()),
    ]);
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let response = client.post(server.url("/v1/models/mnist:predict")).body(mnist_body()).send().await;
        assert_eq!(response.expect("predict").status(), 200);
    }
    let missing = client.post(server.url("/v1/models/nope:predict")).body(mnist_body()).send().await;
    assert_eq!(missing.expect("predict").status(), 404);

    let text = scrape(&client, &server).await;
    let expect = |prefix: &str| sample(&text, prefix).unwrap_or_else(|| panic!("no sample {prefix} in:\n{text}"));
    assert_eq!(expect(r#":tensorflow:serving:request_count{model_name="mnist",status="OK"}"#), 2.0);
    assert_eq!(expect(r#":tensorflow:serving:request_count{model_name="nope",status="NOT_FOUND"}"#), 1.0);
    assert_eq!(
        expect(r#":tensorflow:serving:request_latency_count{model_name="mnist",API="predict",entrypoint="REST"}"#),
        2.0
    );
    assert!(text.contains(
        r#":tensorflow:serving:request_latency_bucket{model_name="mnist",API="predict",entrypoint="REST",le="10"}"#
    ));
    assert_eq!(
        expect(r#":tensorflow:serving:runtime_latency_count{model_name="mnist",API="Predict",runtime="onnxruntime"}"#),
        2.0
    );
    assert_eq!(expect(r#"onnx_serving_model_version_state{model_name="mnist",version="2"}"#), 30.0, "AVAILABLE");
    assert_eq!(expect(r#"onnx_serving_model_load_seconds_count{model_name="mnist",version="2"}"#), 1.0);
    assert_eq!(
        expect(r#"onnx_serving_execution_provider{model_name="mnist",version="2",provider="CPUExecutionProvider"}"#),
        1.0
    );
    assert!(expect("onnx_serving_process_start_time_seconds") > 1.7e9);

    let with_query = client.get(server.url(&format!("{PATH}?x=1"))).send().await.expect("scrape");
    assert_eq!(with_query.status(), 400);
    assert_eq!(with_query.text().await.expect("text"), format!("Unexpected path: {PATH}?x=1. Should be {PATH}"));

    // promtool (Debian's prometheus package) accepts the exposition format.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool: apt-get install prometheus");
    std::io::Write::write_all(&mut promtool.stdin.take().expect("stdin"), text.as_bytes()).expect("write");
    let checked = promtool.wait_with_output().expect("promtool");
    let report = String::from_utf8_lossy(&checked.stdout).to_string() + &String::from_utf8_lossy(&checked.stderr);
    // NOTE: exit 3 means lint findings only. TF Serving's names (`:tensorflow:...`, counters
    // without `_total`) are what its dashboards query, so those findings are expected.
    assert!(matches!(checked.status.code(), Some(0) | Some(3)), "promtool rejected the format: {report}");
    let expected_lint =
        ["should have \"_total\" suffix", "should not contain ':'", "should not have \"_count\" suffix"];
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        assert!(expected_lint.iter().any(|lint| line.contains(lint)), "unexpected promtool finding: {line}");
    }

    // A real Prometheus server scrapes the endpoint.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "scrape_configs:\n  - job_name: onnx-serving\n    scrape_interval: 1s\n    metrics_path: {PATH}\n    \
             static_configs:\n      - targets: ['{}']\n",
            server.rest_address
        ),
    )
    .expect("write prometheus.yml");
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus: apt-get install prometheus");
    let query = format!("http://127.0.0.1:{port}/api/v1/query");
    let mut scraped = None;
    for _ in 0..600 {
        let response = client
            .get(&query)
            .query(&[("query", r#"{__name__=":tensorflow:serving:request_count",status="OK"}"#)])
            .send()
            .await;
        if let Ok(response) = response {
            if let Ok(value) = response.json::<serde_json::Value>().await {
                if let Some(result) = value["data"]["result"].as_array().filter(|r| !r.is_empty()) {
                    scraped = Some(result[0].clone());
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let scraped = scraped.expect("Prometheus scraped request_count within a minute");
    assert_eq!(scraped["metric"]["model_name"], "mnist");
    assert_eq!(scraped["value"][1], "2");
}

#[tokio::test]
async fn provider_gauges_drop_when_a_version_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let monitoring = dir.path().join("monitoring.config");
    std::fs::write(&monitoring, "prometheus_config { enable: true }\n").expect("write");
    let base = dir.path().join("mnist");
    common::copy_dir(&repo_path("models/mnist_onnx/1"), &base.join("1"));
    let server = ServerProcess::start(&[
        "--model_name=mnist",
        &format!("--model_base_path={}", base.display()),
        &format!("--monitoring_config_file={}", monitoring.display()),
        "--file_system_poll_wait_seconds=1",
    ]);
    let client = reqwest::Client::new();
    let gauge = |version: i64| {
        format!(
            r#"onnx_serving_execution_provider{{model_name="mnist",version="{version}",provider="CPUExecutionProvider"}}"#
        )
    };
    assert_eq!(sample(&scrape(&client, &server).await, &gauge(1)), Some(1.0));
    common::copy_dir(&repo_path("models/mnist_onnx/2"), &base.join("2"));
    common::wait_for_status(&client, &server.url("/v1/models/mnist"), "v1 retired", |s| {
        common::state_of(s, 1).as_deref() == Some("END") && common::state_of(s, 2).as_deref() == Some("AVAILABLE")
    })
    .await;
    let mut text = scrape(&client, &server).await;
    for _ in 0..100 {
        if sample(&text, &gauge(1)) == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        text = scrape(&client, &server).await;
    }
    assert_eq!(sample(&text, &gauge(1)), Some(0.0), "the retired version no longer runs anywhere");
    assert_eq!(sample(&text, &gauge(2)), Some(1.0));
}

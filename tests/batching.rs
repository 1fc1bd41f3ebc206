//! The dynamic batcher through the real servers: concurrent REST and gRPC clients merged into
//! one model call, padding, splitting, rejection and bypass. Merging is proven by the batch
//! size metrics (a debugging recorder), never by timing.

mod common;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use common::{base_url, repo_path, test_config};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use onnx_serving::batching::{metric_names, BatchingParameters};
use onnx_serving::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use onnx_serving::proto::tensorflow::serving::{ModelSpec, PredictRequest};
use onnx_serving::proto::tensorflow::{tensor_shape_proto, TensorProto, TensorShapeProto};
use onnx_serving::server::{start, BatchingConfig, RunningServer};
use serde_json::{json, Value};

/// Every metric recorded so far, by name. Snapshots drain the recorder, so values are kept.
struct Recorded {
    snapshotter: Snapshotter,
    histograms: Mutex<HashMap<String, Vec<f64>>>,
    counters: Mutex<HashMap<String, u64>>,
}

impl Recorded {
    fn refresh(&self) -> HashMap<String, f64> {
        let mut gauges = HashMap::new();
        let mut histograms = self.histograms.lock().expect("lock");
        let mut counters = self.counters.lock().expect("lock");
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let name = key.key().name().to_string();
            match value {
                DebugValue::Histogram(values) => histograms.entry(name).or_default().extend(values.iter().map(|v| v.0)),
                DebugValue::Counter(count) => *counters.entry(name).or_default() += count,
                DebugValue::Gauge(value) => {
                    gauges.insert(name, value.0);
                }
            }
        }
        gauges
    }

    fn histogram(&self, name: &str) -> Vec<f64> {
        self.refresh();
        self.histograms.lock().expect("lock").get(name).cloned().unwrap_or_default()
    }

    /// Forgets what was recorded, so a test step sees only its own batches.
    fn reset(&self) {
        self.refresh();
        self.histograms.lock().expect("lock").clear();
        self.counters.lock().expect("lock").clear();
    }
}

fn recorded() -> &'static Recorded {
    static RECORDED: OnceLock<Recorded> = OnceLock::new();
    RECORDED.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("the only recorder of this test binary");
        Recorded { snapshotter, histograms: Mutex::default(), counters: Mutex::default() }
    })
}

/// The steps share the global recorder, so they run one after another in one test.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn batching_server(model: &str, params: BatchingParameters) -> RunningServer {
    let directory = if model == "mnist" { "mnist_onnx" } else { model };
    let mut config = test_config(&[(model, repo_path(&format!("models/{directory}")))]);
    config.batching = Some(BatchingConfig { global: params, per_model_files: false });
    start(config).await.expect("server starts")
}

fn image(seed: usize) -> Vec<f32> {
    (0..784).map(|i| ((i * 31 + seed * 17) % 255) as f32 / 255.0).collect()
}

fn mnist_proto(images: &[Vec<f32>]) -> PredictRequest {
    let content: Vec<u8> = images.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    let dims = [images.len() as i64, 784].map(|size| tensor_shape_proto::Dim { size, name: String::new() });
    let tensor = TensorProto {
        dtype: 1,
        tensor_shape: Some(TensorShapeProto { dim: dims.to_vec(), unknown_rank: false }),
        tensor_content: Bytes::from(content),
        ..Default::default()
    };
    PredictRequest {
        model_spec: Some(ModelSpec { name: "mnist".into(), ..Default::default() }),
        inputs: [("images".to_string(), tensor)].into(),
        ..Default::default()
    }
}

async fn rest_scores(client: &reqwest::Client, server: &RunningServer, images: &[Vec<f32>]) -> (u16, Value) {
    let url = format!("{}/v1/models/mnist:predict", base_url(server));
    let response = client.post(url).body(json!({ "instances": images }).to_string()).send().await.expect("send");
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.text().await.expect("body")).expect("json"))
}

fn rows_of(value: &Value) -> Vec<Vec<f32>> {
    serde_json::from_value(value["predictions"].clone()).expect("rows of scores")
}

fn assert_close(actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() < 1e-5, "{actual:?} vs {expected:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_merge_into_one_model_call() {
    let _serial = SERIAL.lock().await;
    let metrics = recorded();
    let reference = common::start_server(&[("mnist", repo_path("models/mnist_onnx"))]).await;
    // A batch closes only when 8 rows are queued (the timeout is far away), so merging does
    // not depend on how fast the clients are.
    let params = BatchingParameters {
        max_batch_size: 8,
        batch_timeout: Duration::from_secs(60),
        num_batch_threads: 1,
        ..Default::default()
    };
    let server = batching_server("mnist", params).await;
    let client = reqwest::Client::new();
    let (_, expected) = rest_scores(&client, &reference, &(0..8).map(image).collect::<Vec<_>>()).await;
    let expected = rows_of(&expected);
    metrics.reset();

    let grpc_address = server.grpc_address.expect("gRPC");
    let mut calls = Vec::new();
    for seed in 0..8 {
        let client = client.clone();
        let base = base_url(&server);
        calls.push(tokio::spawn(async move {
            if seed % 2 == 0 {
                let url = format!("{base}/v1/models/mnist:predict");
                let body = json!({ "instances": [image(seed)] }).to_string();
                let text = client.post(url).body(body).send().await.expect("send").text().await.expect("body");
                let value: Value = serde_json::from_str(&text).expect("json");
                (seed, rows_of(&value).remove(0))
            } else {
                let mut grpc =
                    PredictionServiceClient::connect(format!("http://{grpc_address}")).await.expect("connect");
                let response = grpc.predict(mnist_proto(&[image(seed)])).await.expect("predict").into_inner();
                (seed, response.outputs["scores"].float_val.clone())
            }
        }));
    }
    for call in calls {
        let (seed, scores) = call.await.expect("client");
        assert_close(&scores, &expected[seed]);
    }
    assert_eq!(metrics.histogram(metric_names::PROCESSED_BATCH_SIZE), vec![8.0], "REST and gRPC shared one batch");
    assert_eq!(metrics.histogram(metric_names::PADDING_SIZE), vec![0.0]);
    assert_eq!(metrics.histogram(metric_names::QUEUING_LATENCY).len(), 8, "one queueing sample per request");

    // Larger than max_batch_size without splitting: rejected with TF Serving's message.
    let (status, body) = rest_scores(&client, &server, &(0..9).map(image).collect::<Vec<_>>()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "Task size 9 is larger than maximum input batch size 8");
    server.shutdown().await;

    // Padding up to an allowed size; padding rows are never returned.
    let params = BatchingParameters {
        max_batch_size: 8,
        allowed_batch_sizes: vec![4, 8],
        num_batch_threads: 1,
        ..Default::default()
    };
    let server = batching_server("mnist", params).await;
    metrics.reset();
    let (status, body) = rest_scores(&client, &server, &(0..3).map(image).collect::<Vec<_>>()).await;
    assert_eq!(status, 200, "{body}");
    let rows = rows_of(&body);
    assert_eq!(rows.len(), 3);
    for (row, want) in rows.iter().zip(&expected) {
        assert_close(row, want);
    }
    assert_eq!(metrics.histogram(metric_names::PROCESSED_BATCH_SIZE), vec![4.0]);
    assert_eq!(metrics.histogram(metric_names::PADDING_SIZE), vec![1.0]);
    server.shutdown().await;

    // A large request is split across execution batches and reassembled in order.
    let params = BatchingParameters {
        max_batch_size: 16,
        enable_large_batch_splitting: true,
        max_execution_batch_size: 3,
        num_batch_threads: 2,
        ..Default::default()
    };
    let server = batching_server("mnist", params).await;
    metrics.reset();
    let (status, body) = rest_scores(&client, &server, &(0..8).map(image).collect::<Vec<_>>()).await;
    assert_eq!(status, 200, "{body}");
    let rows = rows_of(&body);
    assert_eq!(rows.len(), 8);
    for (row, want) in rows.iter().zip(&expected) {
        assert_close(row, want);
    }
    let mut sizes = metrics.histogram(metric_names::PROCESSED_BATCH_SIZE);
    sizes.sort_by(f64::total_cmp);
    assert_eq!(sizes, vec![2.0, 3.0, 3.0]);
    server.shutdown().await;
    reference.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_rejects_at_once_with_503() {
    let _serial = SERIAL.lock().await;
    let metrics = recorded();
    // Room for one batch of two rows, and a batch closes only when full.
    let params = BatchingParameters {
        max_batch_size: 2,
        max_enqueued_batches: 1,
        batch_timeout: Duration::from_secs(60),
        num_batch_threads: 1,
        ..Default::default()
    };
    let server = batching_server("mnist", params).await;
    metrics.reset();
    let client = reqwest::Client::new();
    let waiting = {
        let client = client.clone();
        let url = format!("{}/v1/models/mnist:predict", base_url(&server));
        tokio::spawn(async move { client.post(url).body(json!({ "instances": [image(1)] }).to_string()).send().await })
    };
    // Wait until the first request sits in the queue.
    let mut queued = false;
    for _ in 0..1000 {
        if metrics.refresh().get(metric_names::QUEUE_DEPTH) == Some(&1.0) {
            queued = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(queued, "the first request was queued");
    let (status, body) = rest_scores(&client, &server, &[image(2), image(3)]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "The batch scheduling queue to which this task was submitted is full");
    let mut grpc = PredictionServiceClient::connect(format!("http://{}", server.grpc_address.expect("gRPC")))
        .await
        .expect("connect");
    let status = grpc.predict(mnist_proto(&[image(2), image(3)])).await.expect_err("full");
    assert_eq!(status.code(), tonic::Code::Unavailable);

    // One more row fills the batch, and both waiting requests are answered.
    let (status, body) = rest_scores(&client, &server, &[image(4)]).await;
    assert_eq!(status, 200, "{body}");
    let first = waiting.await.expect("task").expect("send");
    assert_eq!(first.status().as_u16(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn requests_that_cannot_merge_bypass_the_batcher() {
    let _serial = SERIAL.lock().await;
    // half_plus_two's input has no shape: scalars and mismatched ranks run on their own.
    let params = BatchingParameters { max_batch_size: 4, num_batch_threads: 1, ..Default::default() };
    let server = batching_server("half_plus_two", params).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/models/half_plus_two:predict", base_url(&server));
    for (body, expected) in [
        (json!({"inputs": 5.0}), json!({"outputs": 4.5})),
        (json!({"inputs": [[1.0, 2.0], [3.0, 4.0]]}), json!({"outputs": [[2.5, 3.0], [3.5, 4.0]]})),
        (json!({"instances": [1.0, 2.0, 5.0]}), json!({"predictions": [2.5, 3.0, 4.5]})),
    ] {
        let text = client.post(&url).body(body.to_string()).send().await.expect("send").text().await.expect("body");
        assert_eq!(serde_json::from_str::<Value>(&text).expect("json"), expected);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn per_model_files_replace_the_global_parameters() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    common::copy_dir(&repo_path("models/mnist_onnx/2"), &dir.path().join("1"));
    std::fs::write(dir.path().join("1/batching_params.pbtxt"), "max_batch_size { value: 2 }\n").expect("write");
    let mut config = test_config(&[("mnist", dir.path().to_path_buf())]);
    let global = BatchingParameters { max_batch_size: 32, num_batch_threads: 1, ..Default::default() };
    config.batching = Some(BatchingConfig { global: global.clone(), per_model_files: true });
    let server = start(config).await.expect("server starts");
    let client = reqwest::Client::new();
    let (status, body) = rest_scores(&client, &server, &[image(1), image(2), image(3)]).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"], "Task size 3 is larger than maximum input batch size 2",
        "the version's own file applies"
    );
    server.shutdown().await;

    // A broken file fails the version's load with the parse error.
    std::fs::write(dir.path().join("1/batching_params.pbtxt"), "max_batch_size {\n").expect("write");
    let mut config = test_config(&[("mnist", dir.path().to_path_buf())]);
    config.batching = Some(BatchingConfig { global, per_model_files: true });
    let error = start(config).await.err().expect("the only version fails to load").to_string();
    assert!(error.contains("Error parsing text-format tensorflow.serving.BatchingParameters: 2:1"), "{error}");
}

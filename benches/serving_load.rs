//! Load generator: predict latency and throughput through the real server over REST and
//! gRPC, against in-process ONNX Runtime, a bare axum route answering the same JSON and a
//! bare tonic service answering the same PredictResponse, all measured in one run.
//! `cargo bench --bench serving_load`.

mod loadgen;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use loadgen::{drive, drive_grpc, micros, repo_path, row, shape, sorted_percentile, spawn_and_read_address, Spawned};
use onnx_serving::proto::tensorflow::serving::prediction_service_server::{PredictionService, PredictionServiceServer};
use onnx_serving::proto::tensorflow::serving::{ModelSpec, PredictRequest, PredictResponse};
use onnx_serving::proto::tensorflow::TensorProto;

const ROLE_ENV: &str = "ONNX_SERVING_BENCH_ROLE";
const REQUEST_BODY: &str = r#"{"instances": [1.0, 2.0, 5.0]}"#;
const RESPONSE_BODY: &str = "{\"predictions\": [2.5, 3.0, 4.5]}";
const PREDICT_PATH: &str = "/v1/models/half_plus_two:predict";
const MNIST_PIXELS: usize = 784;

/// Serves the fixed predict answer with axum and nothing else: the transport's floor.
fn run_bare_route() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let app = axum::Router::new().fallback(|body: axum::body::Bytes| async move {
            std::hint::black_box(body);
            ([("content-type", "application/json")], RESPONSE_BODY)
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("bare route at:{}", listener.local_addr().expect("addr"));
        axum::serve(listener, app).await.expect("serve");
    });
}

/// The MNIST request as `tf.make_tensor_proto(image, shape=[1, 784])` sends it.
fn mnist_request() -> PredictRequest {
    let image: Vec<u8> = (0..MNIST_PIXELS).flat_map(|i| (((i * 7) % 255) as f32 / 255.0).to_le_bytes()).collect();
    let images = TensorProto {
        dtype: 1,
        tensor_shape: Some(shape(&[1, MNIST_PIXELS as i64])),
        tensor_content: image.into(),
        ..Default::default()
    };
    PredictRequest {
        model_spec: Some(ModelSpec { name: "mnist".into(), ..Default::default() }),
        inputs: [("images".to_string(), images)].into(),
        ..Default::default()
    }
}

fn half_plus_two_request() -> PredictRequest {
    let x =
        TensorProto { dtype: 1, tensor_shape: Some(shape(&[3])), float_val: vec![1.0, 2.0, 5.0], ..Default::default() };
    PredictRequest {
        model_spec: Some(ModelSpec { name: "half_plus_two".into(), ..Default::default() }),
        inputs: [("x".to_string(), x)].into(),
        ..Default::default()
    }
}

/// Answers every Predict with a fixed response of the model's shape: the gRPC floor.
struct BarePrediction;

#[tonic::async_trait]
impl PredictionService for BarePrediction {
    async fn predict(
        &self,
        request: tonic::Request<PredictRequest>,
    ) -> Result<tonic::Response<PredictResponse>, tonic::Status> {
        let request = request.into_inner();
        let (alias, values) = match request.model_spec.as_ref().map(|s| s.name.as_str()) {
            Some("mnist") => ("scores", vec![0.1f32; 10]),
            _ => ("y", vec![2.5f32, 3.0, 4.5]),
        };
        std::hint::black_box(&request);
        let len = values.len() as i64;
        let tensor =
            TensorProto { dtype: 1, tensor_shape: Some(shape(&[1, len])), float_val: values, ..Default::default() };
        Ok(tonic::Response::new(PredictResponse {
            model_spec: request.model_spec,
            outputs: [(alias.to_string(), tensor)].into(),
        }))
    }
    async fn classify(
        &self,
        _: tonic::Request<onnx_serving::proto::tensorflow::serving::ClassificationRequest>,
    ) -> Result<tonic::Response<onnx_serving::proto::tensorflow::serving::ClassificationResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
    async fn regress(
        &self,
        _: tonic::Request<onnx_serving::proto::tensorflow::serving::RegressionRequest>,
    ) -> Result<tonic::Response<onnx_serving::proto::tensorflow::serving::RegressionResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
    async fn multi_inference(
        &self,
        _: tonic::Request<onnx_serving::proto::tensorflow::serving::MultiInferenceRequest>,
    ) -> Result<tonic::Response<onnx_serving::proto::tensorflow::serving::MultiInferenceResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
    async fn get_model_metadata(
        &self,
        _: tonic::Request<onnx_serving::proto::tensorflow::serving::GetModelMetadataRequest>,
    ) -> Result<tonic::Response<onnx_serving::proto::tensorflow::serving::GetModelMetadataResponse>, tonic::Status>
    {
        Err(tonic::Status::unimplemented("bare"))
    }
}

fn run_bare_grpc() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("bare grpc at:{}", listener.local_addr().expect("addr"));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(PredictionServiceServer::new(BarePrediction))
            .serve_with_incoming(incoming)
            .await
            .expect("serve");
    });
}

/// Runs both models through ONNX Runtime directly, with no server in between. Returns the
/// sorted latencies of half_plus_two and of MNIST.
fn in_process_latencies(runs: usize) -> (Vec<Duration>, Vec<Duration>) {
    let (library, _) = onnx_serving::runtime::library::find_library(None).expect("libonnxruntime");
    let environment = ort::init_from(&library).expect("load ort").build().expect("environment");
    let session = |path: &str| {
        ort::session::Session::builder(&environment)
            .expect("builder")
            .with_intra_threads(1)
            .expect("threads")
            .commit_from_file(repo_path(path))
            .expect("session")
    };
    let mut half_plus_two = session("models/half_plus_two/1/model.onnx");
    let mut mnist = session("models/mnist_onnx/2/model.onnx");
    let small = vec![1.0f32, 2.0, 5.0];
    let image: Vec<f32> = (0..MNIST_PIXELS).map(|i| ((i * 7) % 255) as f32 / 255.0).collect();
    let mut small_latencies = Vec::with_capacity(runs);
    let mut mnist_latencies = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let tensor = ort::value::TensorRef::from_array_view(([3usize], small.as_slice())).expect("tensor");
        let outputs = half_plus_two.run(ort::inputs![tensor]).expect("run");
        let (_, values) = outputs[0].try_extract_tensor::<f32>().expect("output");
        std::hint::black_box(values);
        small_latencies.push(started.elapsed());

        let started = Instant::now();
        let tensor =
            ort::value::TensorRef::from_array_view(([1usize, MNIST_PIXELS], image.as_slice())).expect("tensor");
        let outputs = mnist.run(ort::inputs![tensor]).expect("run");
        let (_, values) = outputs[0].try_extract_tensor::<f32>().expect("output");
        std::hint::black_box(values);
        mnist_latencies.push(started.elapsed());
    }
    small_latencies.sort();
    mnist_latencies.sort();
    (small_latencies, mnist_latencies)
}

fn spawn_server(model: &str) -> (Spawned, SocketAddr) {
    // NOTE: the ONNX MNIST lives in models/mnist_onnx; models/mnist is the tutorial SavedModel.
    let directory = if model == "mnist" { "mnist_onnx" } else { model };
    let base_path = format!("--model_base_path={}", repo_path(&format!("models/{directory}")).display());
    loadgen::spawn_server(&[&format!("--model_name={model}"), &base_path, "--intra_op_threads=1"])
}

fn in_process_row(label: &str, sorted: &[Duration]) {
    let p50 = sorted_percentile(sorted, 0.5);
    println!(
        "| {label} | 1 | {:.1} | {:.1} | {:.1} | {:.0} |",
        micros(p50),
        micros(sorted_percentile(sorted, 0.9)),
        micros(sorted_percentile(sorted, 0.99)),
        1e6 / micros(p50)
    );
}

fn main() {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("bare") => return run_bare_route(),
        Ok("bare_grpc") => return run_bare_grpc(),
        _ => {}
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds: u64 = std::env::var("LOADGEN_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    let warmup = Duration::from_secs(1);

    let (small_server, small_grpc) = spawn_server("half_plus_two");
    let (mnist_server, mnist_grpc) = spawn_server("mnist");
    let mut bare_command = Command::new(std::env::current_exe().expect("exe"));
    bare_command.env(ROLE_ENV, "bare");
    let bare = spawn_and_read_address(bare_command, "bare route at:");
    let mut bare_grpc_command = Command::new(std::env::current_exe().expect("exe"));
    bare_grpc_command.env(ROLE_ENV, "bare_grpc");
    let bare_grpc = spawn_and_read_address(bare_grpc_command, "bare grpc at:");

    let (small_in_process, mnist_in_process) = in_process_latencies(20_000);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    println!("| target | concurrency | p50 µs | p90 µs | p99 µs | requests/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    in_process_row("in-process ONNX Runtime, half_plus_two", &small_in_process);
    in_process_row("in-process ONNX Runtime, MNIST", &mnist_in_process);
    let mut results = Vec::new();
    for (label, address) in [("REST half_plus_two", small_server.1), ("bare axum route", bare.1)] {
        for concurrency in [1, 32] {
            let body: std::sync::Arc<str> = REQUEST_BODY.into();
            let result = runtime.block_on(drive(address, PREDICT_PATH, body, concurrency, warmup, duration));
            row(label, concurrency, &result);
            results.push((label, concurrency, result));
        }
    }
    let grpc_targets = [
        ("gRPC half_plus_two", small_grpc, half_plus_two_request()),
        ("gRPC MNIST (tensor_content)", mnist_grpc, mnist_request()),
        ("bare tonic, half_plus_two shape", bare_grpc.1, half_plus_two_request()),
        ("bare tonic, MNIST shape", bare_grpc.1, mnist_request()),
    ];
    for (label, address, request) in grpc_targets {
        for concurrency in [1, 32] {
            let result = runtime.block_on(drive_grpc(address, request.clone(), concurrency, warmup, duration));
            row(label, concurrency, &result);
            results.push((label, concurrency, result));
        }
    }
    let find = |label: &str, c: usize| results.iter().find(|(l, cc, _)| *l == label && *cc == c).map(|(_, _, r)| r);
    println!();
    let overhead = |label: &str, in_process: &[Duration]| {
        find(label, 1).map(|r| micros(r.percentile(0.5)) - micros(sorted_percentile(in_process, 0.5)))
    };
    let ratio = |label: &str, bare: &str| Some(find(label, 32)?.throughput() / find(bare, 32)?.throughput() * 100.0);
    if let Some(o) = overhead("REST half_plus_two", &small_in_process) {
        println!("REST overhead at p50, half_plus_two (c=1 minus in-process): {o:.1} µs (target < 100 µs)");
    }
    if let Some(r) = ratio("REST half_plus_two", "bare axum route") {
        println!("REST throughput at c=32 vs bare axum route: {r:.0}% (target >= 50%)");
    }
    if let Some(o) = overhead("gRPC half_plus_two", &small_in_process) {
        println!("gRPC overhead at p50, half_plus_two: {o:.1} µs");
    }
    if let Some(o) = overhead("gRPC MNIST (tensor_content)", &mnist_in_process) {
        println!("gRPC overhead at p50, MNIST: {o:.1} µs (target < 60 µs)");
    }
    if let Some(r) = ratio("gRPC MNIST (tensor_content)", "bare tonic, MNIST shape") {
        println!("gRPC MNIST throughput at c=32 vs bare tonic: {r:.0}%");
    }
    if let (Some(server), Some(bare)) = (find("gRPC MNIST (tensor_content)", 1), find("bare tonic, MNIST shape", 1)) {
        println!(
            "gRPC MNIST p50 above the bare tonic floor: {:.1} µs",
            micros(server.percentile(0.5)) - micros(bare.percentile(0.5))
        );
    }
    drop(small_server);
    drop(mnist_server);
    drop(bare);
    drop(bare_grpc);
}

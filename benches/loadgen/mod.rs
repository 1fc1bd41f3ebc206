//! The load generator shared by the benches: server processes on 127.0.0.1:0, keep-alive
//! HTTP/1.1 and HTTP/2 (gRPC) clients, and latency percentiles.
#![allow(dead_code)]

pub mod flood;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use onnx_serving::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use onnx_serving::proto::tensorflow::serving::PredictRequest;
use onnx_serving::proto::tensorflow::{tensor_shape_proto, TensorShapeProto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A server process, killed on drop.
pub struct Spawned(pub Child, pub SocketAddr);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn_and_read_address(mut command: Command, marker: &str) -> Spawned {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines.next().expect("the process printed its address").expect("line");
        if let Some(rest) = line.strip_prefix(marker) {
            break rest.trim_end_matches(" ...").trim().parse().expect("address");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Spawned(child, address)
}

pub fn shape(dims: &[i64]) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims.iter().map(|&size| tensor_shape_proto::Dim { size, name: String::new() }).collect(),
        unknown_rank: false,
    }
}

/// One keep-alive HTTP/1.1 connection that sends the same POST over and over.
pub struct Connection {
    stream: TcpStream,
    request: Vec<u8>,
    buffer: Vec<u8>,
}

impl Connection {
    pub async fn open(address: SocketAddr, path: &str, body: &str) -> Self {
        let stream = TcpStream::connect(address).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        Self { stream, request, buffer: Vec::with_capacity(4096) }
    }

    /// Sends one request and reads the whole response; returns the status code.
    pub async fn round_trip(&mut self) -> u16 {
        self.stream.write_all(&self.request).await.expect("write");
        self.buffer.clear();
        let header_end = loop {
            let mut chunk = [0u8; 4096];
            let read = self.stream.read(&mut chunk).await.expect("read");
            assert!(read > 0, "server closed the connection");
            self.buffer.extend_from_slice(&chunk[..read]);
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let head = String::from_utf8_lossy(&self.buffer[..header_end]).to_ascii_lowercase();
        let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).expect("status line");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().expect("length"))
            .expect("content-length");
        while self.buffer.len() < header_end + length {
            let mut chunk = [0u8; 4096];
            let read = self.stream.read(&mut chunk).await.expect("read");
            assert!(read > 0, "server closed the connection");
            self.buffer.extend_from_slice(&chunk[..read]);
        }
        status
    }
}

pub struct LoadResult {
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index]
    }
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// The measured stretch of a load run: calls sent before `measure_from` only warm up.
#[derive(Clone, Copy)]
struct Window {
    measure_from: Instant,
    stop_at: Instant,
}

impl Window {
    fn new(warmup: Duration, duration: Duration) -> Self {
        let measure_from = Instant::now() + warmup;
        Self { measure_from, stop_at: measure_from + duration }
    }

    /// Returns the send time of the next call, or `None` once the run is over.
    fn next_call(&self) -> Option<Instant> {
        let now = Instant::now();
        (now < self.stop_at).then_some(now)
    }

    fn record(&self, sent: Instant, latencies: &mut Vec<Duration>) {
        if sent >= self.measure_from {
            latencies.push(sent.elapsed());
        }
    }
}

async fn collect(workers: Vec<tokio::task::JoinHandle<Vec<Duration>>>, duration: Duration) -> LoadResult {
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    LoadResult { latencies, elapsed: duration }
}

/// Sends `body` to `path` from `concurrency` keep-alive connections for `duration` after
/// `warmup`, and returns the latencies measured after the warm-up.
pub async fn drive(
    address: SocketAddr,
    path: &'static str,
    body: std::sync::Arc<str>,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> LoadResult {
    let window = Window::new(warmup, duration);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let body = std::sync::Arc::clone(&body);
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::open(address, path, &body).await;
            let mut latencies = Vec::new();
            while let Some(sent) = window.next_call() {
                assert_eq!(connection.round_trip().await, 200, "request failed");
                window.record(sent, &mut latencies);
            }
            latencies
        }));
    }
    collect(workers, duration).await
}

/// Sends `request` over gRPC from `concurrency` HTTP/2 channels, as `drive` does over REST.
pub async fn drive_grpc(
    address: SocketAddr,
    request: PredictRequest,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> LoadResult {
    let window = Window::new(warmup, duration);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let request = request.clone();
        workers.push(tokio::spawn(async move {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
                .expect("uri")
                .tcp_nodelay(true)
                .connect()
                .await
                .expect("connect");
            let mut client = PredictionServiceClient::new(channel);
            let mut latencies = Vec::new();
            while let Some(sent) = window.next_call() {
                std::hint::black_box(client.predict(request.clone()).await.expect("gRPC predict"));
                window.record(sent, &mut latencies);
            }
            latencies
        }));
    }
    collect(workers, duration).await
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn sorted_percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn row(label: &str, concurrency: usize, result: &LoadResult) {
    println!(
        "| {label} | {concurrency} | {:.1} | {:.1} | {:.1} | {:.0} |",
        micros(result.percentile(0.5)),
        micros(result.percentile(0.9)),
        micros(result.percentile(0.99)),
        result.throughput()
    );
}

/// Starts the onnx-serving binary with `args` on ephemeral ports; returns it (with its REST
/// address) and its gRPC address.
pub fn spawn_server(args: &[&str]) -> (Spawned, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_onnx-serving"));
    command.args(["serve", "--rest_api_address=127.0.0.1:0", "--grpc_address=127.0.0.1:0"]).args(args);
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut grpc = None;
    let rest = loop {
        let line = lines.next().expect("the server printed its addresses").expect("line");
        if let Some(rest) = line.strip_prefix("Running gRPC ModelServer at ") {
            grpc = Some(rest.trim_end_matches(" ...").trim().parse().expect("gRPC address"));
        }
        if let Some(rest) = line.strip_prefix("Exporting HTTP/REST API at:") {
            break rest.trim_end_matches(" ...").trim().parse().expect("REST address");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Spawned(child, rest), grpc.expect("gRPC is printed before REST"))
}

//! Load generator: half_plus_two predict latency and throughput through the real server,
//! against in-process ONNX Runtime and a bare axum route answering the same JSON, all
//! measured in one run. `cargo bench --bench serving_load`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ROLE_ENV: &str = "ONNX_SERVING_BENCH_ROLE";
const REQUEST_BODY: &str = r#"{"instances": [1.0, 2.0, 5.0]}"#;
const RESPONSE_BODY: &str = "{\"predictions\": [2.5, 3.0, 4.5]}";
const PREDICT_PATH: &str = "/v1/models/half_plus_two:predict";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A server process, killed on drop.
struct Spawned(Child, SocketAddr);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_and_read_address(mut command: Command, marker: &str) -> Spawned {
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

/// One keep-alive HTTP/1.1 connection that sends the same POST over and over.
struct Connection {
    stream: TcpStream,
    request: Vec<u8>,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(address: SocketAddr, path: &str, body: &str) -> Self {
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
    async fn round_trip(&mut self) -> u16 {
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

struct LoadResult {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl LoadResult {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index]
    }
    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

async fn drive(address: SocketAddr, concurrency: usize, warmup: Duration, duration: Duration) -> LoadResult {
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop_at = measure_from + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::open(address, PREDICT_PATH, REQUEST_BODY).await;
            let mut latencies = Vec::new();
            loop {
                let sent = Instant::now();
                if sent >= stop_at {
                    break;
                }
                let status = connection.round_trip().await;
                assert_eq!(status, 200, "request failed");
                if sent >= measure_from {
                    latencies.push(sent.elapsed());
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    LoadResult { latencies, elapsed: duration }
}

/// Runs half_plus_two through ONNX Runtime directly, with no server in between.
fn in_process_latencies(runs: usize) -> Vec<Duration> {
    let (library, _) = onnx_serving::runtime::library::find_library(None).expect("libonnxruntime");
    let environment = ort::init_from(&library).expect("load ort").build().expect("environment");
    let mut session = ort::session::Session::builder(&environment)
        .expect("builder")
        .commit_from_file(repo_path("models/half_plus_two/1/model.onnx"))
        .expect("session");
    let input = vec![1.0f32, 2.0, 5.0];
    let mut latencies = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let tensor = ort::value::TensorRef::from_array_view(([3usize], input.as_slice())).expect("tensor");
        let outputs = session.run(ort::inputs![tensor]).expect("run");
        let (_, values) = outputs[0].try_extract_tensor::<f32>().expect("output");
        std::hint::black_box(values);
        latencies.push(started.elapsed());
    }
    latencies
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    if std::env::var(ROLE_ENV).as_deref() == Ok("bare") {
        run_bare_route();
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds: u64 = std::env::var("LOADGEN_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    let warmup = Duration::from_secs(1);

    let mut server_command = Command::new(env!("CARGO_BIN_EXE_onnx-serving"));
    server_command.args([
        "serve",
        "--model_name=half_plus_two",
        "--rest_api_address=127.0.0.1:0",
        "--intra_op_threads=1",
    ]);
    server_command.arg(format!("--model_base_path={}", repo_path("models/half_plus_two").display()));
    let server = spawn_and_read_address(server_command, "Exporting HTTP/REST API at:");
    let mut bare_command = Command::new(std::env::current_exe().expect("exe"));
    bare_command.env(ROLE_ENV, "bare");
    let bare = spawn_and_read_address(bare_command, "bare route at:");

    let mut in_process = in_process_latencies(20_000);
    in_process.sort();
    let in_process_p50 = in_process[in_process.len() / 2];
    let in_process_p99 = in_process[in_process.len() * 99 / 100];

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    println!("| target | concurrency | p50 µs | p90 µs | p99 µs | requests/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| in-process ONNX Runtime | 1 | {:.1} | {:.1} | {:.1} | {:.0} |",
        micros(in_process_p50),
        micros(in_process[in_process.len() * 9 / 10]),
        micros(in_process_p99),
        1e6 / micros(in_process_p50)
    );
    let mut results = Vec::new();
    for (label, address) in [("onnx-serving REST", server.1), ("bare axum route", bare.1)] {
        for concurrency in [1, 32] {
            let result = runtime.block_on(drive(address, concurrency, warmup, duration));
            println!(
                "| {label} | {concurrency} | {:.1} | {:.1} | {:.1} | {:.0} |",
                micros(result.percentile(0.5)),
                micros(result.percentile(0.9)),
                micros(result.percentile(0.99)),
                result.throughput()
            );
            results.push((label, concurrency, result));
        }
    }
    let find = |label: &str, c: usize| results.iter().find(|(l, cc, _)| *l == label && *cc == c).map(|(_, _, r)| r);
    if let (Some(server_c1), Some(server_c32), Some(bare_c32)) =
        (find("onnx-serving REST", 1), find("onnx-serving REST", 32), find("bare axum route", 32))
    {
        let overhead = micros(server_c1.percentile(0.5)) - micros(in_process_p50);
        let ratio = server_c32.throughput() / bare_c32.throughput();
        println!();
        println!("server overhead at p50 (REST c=1 minus in-process): {overhead:.1} µs (target < 100 µs)");
        println!("throughput at c=32 vs bare route: {:.0}% (target >= 50%)", ratio * 100.0);
    }
    drop(server);
    drop(bare);
}

//! A flood and hostile requests at once, against a real server: many keep-alive REST clients
//! with large bodies and many gRPC clients on a slow model, plus requests built to make a
//! server allocate (TF's fill rule, a deeply nested array, an image whose header claims
//! billions of pixels). Every answer is classified; anything but a success, a refusal for
//! load or the expected refusal of a hostile request is a failure. Shared by
//! `benches/flood.rs` (figures) and `tests/flood.rs` (a short run that must pass).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onnx_serving::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use onnx_serving::proto::tensorflow::serving::{ModelSpec, PredictRequest};
use onnx_serving::proto::tensorflow::{tensor_shape_proto, TensorProto, TensorShapeProto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What to send.
#[derive(Debug, Clone)]
pub struct FloodPlan {
    pub rest_clients: usize,
    pub grpc_clients: usize,
    /// Size of each REST body (the request, padded with JSON whitespace).
    pub body_bytes: usize,
    /// The slow model's loop count: about 2.5 µs each.
    pub iterations: i64,
    pub duration: Duration,
    /// Clients wait as a refusal asks (`Retry-After`, one second for gRPC's UNAVAILABLE)
    /// instead of sending again at once.
    pub polite: bool,
}

/// What came back.
#[derive(Debug, Default)]
pub struct FloodReport {
    /// Latencies of answered requests, by outcome.
    pub admitted: Vec<Duration>,
    pub refused: Vec<Duration>,
    /// Refusals that came without `Retry-After` (REST).
    pub refused_without_retry_after: usize,
    /// Hostile requests and how many were refused as they should be (or for load).
    pub hostile_sent: usize,
    pub hostile_refused: usize,
    /// Anything else: transport errors, unexpected statuses or answers.
    pub failures: Vec<String>,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    /// From the end of the flood to the first success of a lone client.
    pub recovery: Duration,
}

impl FloodReport {
    fn merge(&mut self, other: FloodReport) {
        self.admitted.extend(other.admitted);
        self.refused.extend(other.refused);
        self.refused_without_retry_after += other.refused_without_retry_after;
        self.hostile_sent += other.hostile_sent;
        self.hostile_refused += other.hostile_refused;
        self.failures.extend(other.failures);
    }
}

pub fn percentile(latencies: &[Duration], p: f64) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    sorted.get(((sorted.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or_default()
}

/// Writes the model config file the flood's server serves, in `dir`: `slow` (the slow loop)
/// and `mnist_image`; returns its path.
pub fn write_model_config(dir: &std::path::Path) -> std::path::PathBuf {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let entry = |name: &str, path: &str| {
        format!("config {{ name: \"{name}\" base_path: \"{}\" model_platform: \"onnx\" }}", repo.join(path).display())
    };
    let config = dir.join("models.config");
    let text = format!(
        "model_config_list {{ {} {} }}",
        entry("slow", "tests/fixtures/slow_loop"),
        entry("mnist_image", "models/mnist_image")
    );
    std::fs::write(&config, text).expect("write the model config");
    config
}

/// The REST body: a request for the slow model padded with whitespace to `bytes`.
pub fn slow_body(iterations: i64, bytes: usize) -> String {
    let request = format!(r#""inputs": {{"iterations": {iterations}, "x": [[{}]]}}}}"#, vec!["0.5"; 64].join(","));
    format!("{{{}{request}", " ".repeat(bytes.saturating_sub(request.len() + 1)))
}

/// Reads the resident set of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .map(|v| v.trim().trim_end_matches(" kB").trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One HTTP/1.1 answer: status, whether it said `Retry-After`, whether the server closes.
struct Answer {
    status: u16,
    retry_after: bool,
    close: bool,
    body: Vec<u8>,
}

/// Sends one request on `stream` and reads its answer.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> std::io::Result<Answer> {
    stream.write_all(request).await?;
    let mut buffer = Vec::with_capacity(1024);
    let header_end = loop {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before answering"));
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_ascii_lowercase();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let header = |name: &str| head.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string());
    let length: usize = header("content-length:").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buffer.len() < header_end + length {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed mid-answer"));
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    Ok(Answer {
        status,
        retry_after: header("retry-after:").is_some(),
        close: header("connection:").is_some_and(|v| v == "close"),
        body: buffer[header_end..].to_vec(),
    })
}

fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: flood\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    [head.as_bytes(), body].concat()
}

/// Waits out a refusal's back-off when the plan is polite, or until the flood ends.
async fn back_off(polite: bool, stop: &AtomicBool) {
    if polite && !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn rest_client(address: SocketAddr, request: Arc<Vec<u8>>, polite: bool, stop: Arc<AtomicBool>) -> FloodReport {
    let mut report = FloodReport::default();
    let mut stream = None;
    while !stop.load(Ordering::Relaxed) {
        if stream.is_none() {
            match TcpStream::connect(address).await {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    report.failures.push(format!("REST connect: {e}"));
                    return report;
                }
            }
        }
        let Some(connection) = stream.as_mut() else { continue };
        let sent = Instant::now();
        match exchange(connection, &request).await {
            Ok(answer) => {
                match answer.status {
                    200 => report.admitted.push(sent.elapsed()),
                    503 => {
                        report.refused.push(sent.elapsed());
                        report.refused_without_retry_after += usize::from(!answer.retry_after);
                        back_off(polite, &stop).await;
                    }
                    other => report.failures.push(format!("REST {other}: {}", String::from_utf8_lossy(&answer.body))),
                }
                if answer.close {
                    stream = None;
                }
            }
            Err(e) => {
                report.failures.push(format!("REST transport: {e}"));
                stream = None;
            }
        }
    }
    report
}

fn slow_request(iterations: i64) -> PredictRequest {
    let tensor = |dtype: i32, dims: &[i64]| TensorProto {
        dtype,
        tensor_shape: Some(TensorShapeProto {
            dim: dims.iter().map(|&size| tensor_shape_proto::Dim { size, name: String::new() }).collect(),
            unknown_rank: false,
        }),
        ..Default::default()
    };
    let x = TensorProto { float_val: vec![0.5; 64], ..tensor(1, &[1, 64]) };
    let count = TensorProto { int64_val: vec![iterations], ..tensor(9, &[]) };
    PredictRequest {
        model_spec: Some(ModelSpec { name: "slow".into(), ..Default::default() }),
        inputs: [("x".to_string(), x), ("iterations".to_string(), count)].into(),
        ..Default::default()
    }
}

async fn grpc_client(address: SocketAddr, iterations: i64, polite: bool, stop: Arc<AtomicBool>) -> FloodReport {
    let mut report = FloodReport::default();
    let channel = match tonic::transport::Endpoint::from_shared(format!("http://{address}")) {
        Ok(endpoint) => match endpoint.connect().await {
            Ok(channel) => channel,
            Err(e) => {
                report.failures.push(format!("gRPC connect: {e}"));
                return report;
            }
        },
        Err(e) => {
            report.failures.push(format!("gRPC endpoint: {e}"));
            return report;
        }
    };
    let mut client = PredictionServiceClient::new(channel);
    let request = slow_request(iterations);
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        match client.predict(request.clone()).await {
            Ok(_) => report.admitted.push(sent.elapsed()),
            // NOTE: tonic reports transport failures as UNAVAILABLE too: a refusal says why.
            Err(status) if status.code() == tonic::Code::Unavailable && status.message().contains("queue is full") => {
                report.refused.push(sent.elapsed());
                back_off(polite, &stop).await;
            }
            Err(status) => report.failures.push(format!("gRPC {:?}: {}", status.code(), status.message())),
        }
    }
    report
}

/// A PNG header that claims `side` x `side` pixels, and nothing behind it.
fn png_bomb(side: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = crc32(&ihdr);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc.to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Sends hostile requests one after another until `stop`: each must be refused (400, or 503
/// for load over REST; INVALID_ARGUMENT or UNAVAILABLE over gRPC).
async fn hostile_client(rest: SocketAddr, grpc: SocketAddr, stop: Arc<AtomicBool>) -> FloodReport {
    let mut report = FloodReport::default();
    let depth = 100_000;
    let deep = format!(r#"{{"inputs": {{"x": {}0.5{}, "iterations": 1}}}}"#, "[".repeat(depth), "]".repeat(depth));
    let rest_requests = [
        ("deep JSON", post("/v1/models/slow:predict", "application/json", deep.as_bytes())),
        ("image bomb", post("/v1/models/mnist_image:predict", "image/png", &png_bomb(60_000))),
    ];
    let mut fill = slow_request(1);
    if let Some(x) = fill.inputs.get_mut("x") {
        x.float_val = vec![1.0];
        x.tensor_shape = Some(TensorShapeProto {
            dim: [1, 1_000_000_000].iter().map(|&size| tensor_shape_proto::Dim { size, name: String::new() }).collect(),
            unknown_rank: false,
        });
    }
    let mut grpc_client = match tonic::transport::Endpoint::from_shared(format!("http://{grpc}")) {
        Ok(endpoint) => endpoint.connect().await.ok().map(PredictionServiceClient::new),
        Err(_) => None,
    };
    while !stop.load(Ordering::Relaxed) {
        for (what, request) in &rest_requests {
            report.hostile_sent += 1;
            let answer = match TcpStream::connect(rest).await {
                Ok(mut stream) => exchange(&mut stream, request).await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(answer) if matches!(answer.status, 400 | 503) => report.hostile_refused += 1,
                Ok(answer) => report.failures.push(format!("{what}: {}", answer.status)),
                Err(e) => report.failures.push(format!("{what}: transport: {e}")),
            }
        }
        if let Some(client) = grpc_client.as_mut() {
            report.hostile_sent += 1;
            match client.predict(fill.clone()).await {
                Err(status)
                    if status.code() == tonic::Code::InvalidArgument
                        || (status.code() == tonic::Code::Unavailable
                            && status.message().contains("queue is full")) =>
                {
                    report.hostile_refused += 1
                }
                Err(status) => report.failures.push(format!("fill rule: {:?} {}", status.code(), status.message())),
                Ok(_) => report.failures.push("fill rule: answered".into()),
            }
        }
    }
    report
}

/// Runs the plan against a server at `rest`/`grpc` (process `pid`) serving the slow model as
/// `slow` and an image model as `mnist_image`.
pub async fn flood(rest: SocketAddr, grpc: SocketAddr, pid: u32, plan: &FloodPlan) -> FloodReport {
    let stop = Arc::new(AtomicBool::new(false));
    let request = Arc::new(post(
        "/v1/models/slow:predict",
        "application/json",
        slow_body(plan.iterations, plan.body_bytes).as_bytes(),
    ));
    let rss_before = rss_kib(pid);
    let peak = Arc::new(Mutex::new(rss_before));
    let sampler = {
        let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let rss = rss_kib(pid);
                if let Ok(mut peak) = peak.lock() {
                    *peak = (*peak).max(rss);
                }
            }
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..plan.rest_clients {
        tasks.push(tokio::spawn(rest_client(rest, Arc::clone(&request), plan.polite, Arc::clone(&stop))));
    }
    for _ in 0..plan.grpc_clients {
        tasks.push(tokio::spawn(grpc_client(grpc, plan.iterations, plan.polite, Arc::clone(&stop))));
    }
    tasks.push(tokio::spawn(hostile_client(rest, grpc, Arc::clone(&stop))));
    tokio::time::sleep(plan.duration).await;
    stop.store(true, Ordering::Relaxed);
    let ended = Instant::now();
    // Normal service: a lone client's first success after the flood stops.
    let lone = Arc::new(post("/v1/models/slow:predict", "application/json", slow_body(1, 0).as_bytes()));
    let mut report = FloodReport::default();
    loop {
        let answer = match TcpStream::connect(rest).await {
            Ok(mut stream) => exchange(&mut stream, &lone).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(answer) if answer.status == 200 => break,
            Ok(answer) if answer.status == 503 => continue,
            Ok(answer) => {
                report.failures.push(format!("after the flood: {}", answer.status));
                break;
            }
            Err(e) => {
                report.failures.push(format!("after the flood: {e}"));
                break;
            }
        }
    }
    report.recovery = ended.elapsed();
    for task in tasks {
        match task.await {
            Ok(part) => report.merge(part),
            Err(e) => report.failures.push(format!("client task: {e}")),
        }
    }
    let _ = sampler.await;
    report.rss_before_kib = rss_before;
    report.rss_peak_kib = peak.lock().map(|p| *p).unwrap_or(0);
    report
}

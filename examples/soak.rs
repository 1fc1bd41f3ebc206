//! Soak: the real binary under a mixed load for a while, with version swaps, config reloads
//! that remove and re-add a model, and a hostile request every second; then checks that no
//! well-formed request failed and that memory, file descriptors and threads came back.
//! Run it with `scripts/soak.sh SECONDS`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onnx_serving::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use onnx_serving::proto::tensorflow::serving::{ModelSpec, PredictRequest};
use onnx_serving::proto::tensorflow::{tensor_shape_proto, TensorProto, TensorShapeProto};
use serde_json::json;

/// How often a new MNIST version is copied in, and the config is edited.
const SWAP_EVERY: Duration = Duration::from_secs(3);
const RELOAD_EVERY: Duration = Duration::from_secs(5);
/// RSS may grow this much over the warmed-up baseline (allocator caches, metric series).
const RSS_SLACK_KIB: u64 = 64 * 1024;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// Copies a version directory in whole: written beside the base path, then renamed into it.
fn publish_version(from: &Path, base: &Path, version: u64) {
    let staging = base.parent().expect("parent").join(format!("staging-{version}"));
    copy_dir(from, &staging);
    std::fs::rename(&staging, base.join(version.to_string())).expect("rename version");
}

fn proc_value(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// What the process holds: RSS (KiB), file descriptors, threads.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    rss_kib: u64,
    fds: usize,
    threads: u64,
}

fn footprint(pid: u32) -> Footprint {
    Footprint { rss_kib: proc_value(pid, "VmRSS:"), fds: fd_count(pid), threads: proc_value(pid, "Threads:") }
}

fn config_text(dir: &Path, with_extra: bool) -> String {
    let entry = |name: &str, base: &Path| {
        format!("config {{ name: \"{name}\" base_path: \"{}\" model_platform: \"onnx\" }}", base.display())
    };
    let mut models =
        vec![entry("mnist", &dir.join("mnist")), entry("half", &dir.join("half")), entry("hpt", &dir.join("hpt"))];
    if with_extra {
        models.push(entry("extra", &dir.join("extra")));
    }
    format!("model_config_list {{ {} }}", models.join(" "))
}

fn write_config(path: &Path, text: &str) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).expect("write config");
    std::fs::rename(&partial, path).expect("rename config");
}

/// Counts per kind of request: sent, and failed (with the first few reasons).
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    failed: AtomicU64,
    reasons: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, outcome: Result<(), String>) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if let Err(reason) = outcome {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut reasons) = self.reasons.lock() {
                if reasons.len() < 10 {
                    reasons.push(reason);
                }
            }
        }
    }
}

async fn expect_status(
    request: reqwest::RequestBuilder,
    accepted: &[u16],
    check: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let response = request.send().await.map_err(|e| format!("transport: {e}"))?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| format!("body: {e}"))?;
    if !accepted.contains(&status) {
        return Err(format!("{status}: {body}"));
    }
    if status == 200 && !check(&body) {
        return Err(format!("unexpected answer: {body}"));
    }
    Ok(())
}

fn mnist_body() -> String {
    let image: Vec<f32> = (0..784).map(|i| ((i * 7) % 255) as f32 / 255.0).collect();
    json!({"instances": [image]}).to_string()
}

fn grpc_half_request() -> PredictRequest {
    let x = TensorProto {
        dtype: 1,
        tensor_shape: Some(TensorShapeProto {
            dim: vec![tensor_shape_proto::Dim { size: 3, name: String::new() }],
            unknown_rank: false,
        }),
        float_val: vec![1.0, 2.0, 5.0],
        ..Default::default()
    };
    PredictRequest {
        model_spec: Some(ModelSpec { name: "half".into(), ..Default::default() }),
        inputs: [("x".to_string(), x)].into(),
        ..Default::default()
    }
}

/// Malformed requests, one a second, each of which must get a 4xx (never a 5xx or a crash).
const HOSTILE: &[(&str, &str)] = &[
    ("/v1/models/half:predict", "{\"instances\": [1.0, 2.0"),
    ("/v1/models/half:predict", "{\"instances\": [\"a\", \"b\"]}"),
    ("/v1/models/half:predict", "{\"inputs\": {\"x\": {\"b64\": \"!!!\"}}}"),
    ("/v1/models/half:predict", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["),
    ("/v1/models/half:predict", "{\"instances\": [1.0], \"inputs\": [1.0]}"),
    ("/v1/models/nope:predict", "{\"instances\": [1.0]}"),
    ("/v1/models/hpt:classify", "{\"examples\": [{\"x\": \"text\"}]}"),
    ("/v1/models/mnist/versions/-3:predict", "{}"),
];

struct Server {
    child: Child,
    rest: String,
    grpc: String,
}

fn start_server(binary: &Path, config: &Path) -> Server {
    let mut child = Command::new(binary)
        .args([
            "serve",
            "--rest_api_address=127.0.0.1:0",
            "--grpc_address=127.0.0.1:0",
            "--model_config_file_poll_wait_seconds=1",
            "--file_system_poll_wait_seconds=1",
            "--intra_op_threads=1",
            "--drain_seconds=1",
        ])
        .arg(format!("--model_config_file={}", config.display()))
        // NOTE: Prometheus on and never scraped: the recorder's own upkeep must keep its
        // memory flat, which the RSS check below sees.
        .arg(format!("--monitoring_config_file={}", config.with_file_name("monitoring.config").display()))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start onnx-serving");
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let (mut rest, mut grpc) = (None, None);
    while rest.is_none() || grpc.is_none() {
        let line = lines.next().and_then(Result::ok).expect("the server exited before opening its ports");
        if let Some(address) = line.strip_prefix("Running gRPC ModelServer at ") {
            grpc = Some(address.trim_end_matches(" ...").trim().to_string());
        }
        if let Some(address) = line.strip_prefix("Exporting HTTP/REST API at:") {
            rest = Some(address.trim_end_matches(" ...").trim().to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Server { child, rest: rest.unwrap_or_default(), grpc: grpc.unwrap_or_default() }
}

fn binary_beside_this_example() -> PathBuf {
    // target/<profile>/examples/soak -> target/<profile>/onnx-serving
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).map(|dir| dir.join("onnx-serving")).expect("target dir")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let binary = std::env::var_os("ONNX_SERVING_BIN").map(PathBuf::from).unwrap_or_else(binary_beside_this_example);
    let dir = tempfile::tempdir().expect("tempdir");
    let mnist_sources = [repo_path("models/mnist_onnx/1"), repo_path("models/mnist_onnx/2")];
    std::fs::create_dir_all(dir.path().join("mnist")).expect("mkdir");
    publish_version(&mnist_sources[0], &dir.path().join("mnist"), 1);
    copy_dir(&repo_path("models/half_plus_two/1"), &dir.path().join("half/1"));
    copy_dir(&repo_path("tests/fixtures/example_half_plus_two/1"), &dir.path().join("hpt/1"));
    copy_dir(&repo_path("models/half_plus_two/1"), &dir.path().join("extra/1"));
    let config = dir.path().join("models.config");
    write_config(&config, &config_text(dir.path(), true));
    std::fs::write(dir.path().join("monitoring.config"), "prometheus_config { enable: true }\n").expect("monitoring");

    let mut server = start_server(&binary, &config);
    let pid = server.child.id();
    let rest = format!("http://{}", server.rest);
    let client = reqwest::Client::new();
    let baseline = footprint(pid);
    println!("soak: {seconds} s against {} (pid {pid}); at start {baseline:?}", binary.display());

    let stop = Arc::new(AtomicBool::new(false));
    let kinds = ["rest mnist", "rest half", "grpc half", "rest classify", "metadata+status", "extra (200|404)"];
    let tallies: Arc<Vec<Tally>> = Arc::new(kinds.iter().map(|_| Tally::default()).collect());
    let hostile = Arc::new(Tally::default());
    let mut workers = Vec::new();
    for worker in 0..kinds.len() {
        let (client, rest, stop, tallies) = (client.clone(), rest.clone(), stop.clone(), tallies.clone());
        let grpc_address = format!("http://{}", server.grpc);
        workers.push(tokio::spawn(async move {
            let mut grpc = match worker {
                2 => Some(PredictionServiceClient::connect(grpc_address).await.expect("gRPC connect")),
                _ => None,
            };
            let mnist = mnist_body();
            while !stop.load(Ordering::Relaxed) {
                let outcome = match worker {
                    0 => {
                        let request = client.post(format!("{rest}/v1/models/mnist:predict")).body(mnist.clone());
                        expect_status(request, &[200], |b| b.contains("predictions")).await
                    }
                    1 => {
                        let request =
                            client.post(format!("{rest}/v1/models/half:predict")).body("{\"instances\": [1.0, 2.0]}");
                        expect_status(request, &[200], |b| b == "{\"predictions\":[2.5,3.0]}").await
                    }
                    2 => match grpc.as_mut() {
                        Some(grpc) => match grpc.predict(grpc_half_request()).await {
                            Ok(response) if response.get_ref().outputs["y"].float_val == [2.5, 3.0, 4.5] => Ok(()),
                            Ok(response) => Err(format!("unexpected answer: {:?}", response.get_ref().outputs)),
                            Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
                        },
                        None => Err("no gRPC client".into()),
                    },
                    3 => {
                        let request = client
                            .post(format!("{rest}/v1/models/hpt:classify"))
                            .body("{\"examples\": [{\"x\": 2.0}]}");
                        expect_status(request, &[200], |b| b == "{\"results\":[[[\"y\",3.0]]]}").await
                    }
                    4 => {
                        let metadata = client.get(format!("{rest}/v1/models/mnist/metadata"));
                        match expect_status(metadata, &[200], |b| b.contains("signature_def")).await {
                            Ok(()) => {
                                let status = client.get(format!("{rest}/v1/models/mnist"));
                                expect_status(status, &[200], |b| b.contains("AVAILABLE")).await
                            }
                            error => error,
                        }
                    }
                    _ => {
                        // The model comes and goes with the config reloads.
                        let request =
                            client.post(format!("{rest}/v1/models/extra:predict")).body("{\"instances\": [1.0]}");
                        expect_status(request, &[200, 404], |b| b == "{\"predictions\":[2.5]}").await
                    }
                };
                tallies[worker].record(outcome);
            }
        }));
    }

    // The lifecycle and the hostile requests, on this task.
    let started = Instant::now();
    let (mut next_swap, mut next_reload, mut next_hostile) = (started + SWAP_EVERY, started + RELOAD_EVERY, started);
    let (mut version, mut with_extra, mut hostile_index) = (1u64, true, 0usize);
    let mut peak = baseline;
    let mut warmed: Option<Footprint> = None;
    while started.elapsed() < Duration::from_secs(seconds) {
        let now = Instant::now();
        if now >= next_swap {
            version += 1;
            let source = &mnist_sources[(version % 2) as usize];
            publish_version(source, &dir.path().join("mnist"), version);
            // Versions two back have retired by now; their directories go.
            if version > 2 {
                let _ = std::fs::remove_dir_all(dir.path().join(format!("mnist/{}", version - 2)));
            }
            next_swap = now + SWAP_EVERY;
        }
        if now >= next_reload {
            with_extra = !with_extra;
            write_config(&config, &config_text(dir.path(), with_extra));
            next_reload = now + RELOAD_EVERY;
        }
        if now >= next_hostile {
            let (path, body) = HOSTILE[hostile_index % HOSTILE.len()];
            hostile_index += 1;
            let request = client.post(format!("{rest}{path}")).body(body);
            let outcome = match request.send().await {
                Ok(response) if (400..500).contains(&response.status().as_u16()) => Ok(()),
                Ok(response) => Err(format!("{path} {body:?}: {}", response.status())),
                Err(error) => Err(format!("{path} {body:?}: {error}")),
            };
            hostile.record(outcome);
            next_hostile = now + Duration::from_secs(1);
        }
        let now_footprint = footprint(pid);
        peak.rss_kib = peak.rss_kib.max(now_footprint.rss_kib);
        // NOTE: the baseline for growth is taken once the first swaps and reloads have run.
        if warmed.is_none() && started.elapsed() >= Duration::from_secs(seconds.min(60) / 4) {
            warmed = Some(now_footprint);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    // End where we began: the extra model served, as at the baseline.
    if !with_extra {
        write_config(&config, &config_text(dir.path(), true));
    }
    drop(client);

    // Idle threads (blocking pool) and closed connections go within a few seconds.
    let settle_until = Instant::now() + Duration::from_secs(30);
    let mut settled = footprint(pid);
    while Instant::now() < settle_until {
        settled = footprint(pid);
        if settled.fds <= baseline.fds + 2 && settled.threads <= baseline.threads + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let warmed = warmed.unwrap_or(baseline);

    let mut failures = Vec::new();
    println!("{:<18} {:>10} {:>8}", "requests", "sent", "failed");
    for (kind, tally) in kinds.iter().copied().zip(tallies.iter()).chain([("hostile (4xx)", hostile.as_ref())]) {
        let (sent, failed) = (tally.sent.load(Ordering::Relaxed), tally.failed.load(Ordering::Relaxed));
        println!("{kind:<18} {sent:>10} {failed:>8}");
        if failed > 0 || sent == 0 {
            let reasons = tally.reasons.lock().map(|r| r.clone()).unwrap_or_default();
            failures.push(format!("{kind}: {failed} of {sent} failed: {reasons:?}"));
        }
    }
    println!("mnist versions swapped in: {}; config reloads: {}", version - 1, started.elapsed().as_secs() / 5);
    println!(
        "RSS KiB: start {} / warmed {} / peak {} / end {}; fds: start {} / end {}; threads: start {} / end {}",
        baseline.rss_kib,
        warmed.rss_kib,
        peak.rss_kib,
        settled.rss_kib,
        baseline.fds,
        settled.fds,
        baseline.threads,
        settled.threads
    );
    if settled.rss_kib > warmed.rss_kib + RSS_SLACK_KIB {
        failures.push(format!("RSS grew from {} KiB to {} KiB", warmed.rss_kib, settled.rss_kib));
    }
    if settled.fds > baseline.fds + 2 {
        failures.push(format!("file descriptors: {} at start, {} at the end", baseline.fds, settled.fds));
    }
    if settled.threads > baseline.threads + 2 {
        failures.push(format!("threads: {} at start, {} at the end", baseline.threads, settled.threads));
    }

    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let exit = server.child.wait().expect("wait");
    if exit.code() != Some(0) {
        failures.push(format!("the server exited with {exit} after SIGTERM"));
    }
    if failures.is_empty() {
        println!("soak passed");
    } else {
        for failure in &failures {
            eprintln!("soak FAILED: {failure}");
        }
        std::process::exit(1);
    }
}

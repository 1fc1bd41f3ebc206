//! The batching benchmark: a compute-bound CNN (ResNet-18, random weights, 3×64×64 images)
//! through ONNX Runtime in-process at batch 1, 8 and 32 (the limit), through our server
//! without and with batching at concurrency 1, 8 and 32, and through a FastAPI +
//! onnxruntime peer written the way a Python user would, all in one run.
//! `cargo bench --bench batching_load` (the model is generated on first use).

mod loadgen;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use loadgen::{drive, drive_grpc, micros, repo_path, shape, spawn_server, LoadResult, Spawned};
use onnx_serving::proto::tensorflow::serving::{ModelSpec, PredictRequest};
use onnx_serving::proto::tensorflow::TensorProto;

const SIDE: usize = 64;
const PIXELS: usize = 3 * SIDE * SIDE;
/// Intra-op threads of every session: the whole 2-core machine, for us, the peer and in-process.
const INTRA_OP_THREADS: usize = 2;
const PREDICT_PATH: &str = "/v1/models/resnet:predict";

fn model_dir() -> PathBuf {
    repo_path("target/bench-models/resnet18")
}

/// Generates the model with `scripts/make_resnet.py` unless it is already there.
fn ensure_model() -> PathBuf {
    let file = model_dir().join("1/model.onnx");
    if !file.exists() {
        let status = Command::new("python3")
            .arg(repo_path("scripts/make_resnet.py"))
            .arg(&file)
            .status()
            .expect("run python3 scripts/make_resnet.py (pip install -r scripts/requirements.txt)");
        assert!(status.success(), "scripts/make_resnet.py failed");
    }
    file
}

fn pixels() -> Vec<f32> {
    (0..PIXELS).map(|i| ((i * 37) % 255) as f32 / 255.0).collect()
}

fn grpc_request() -> PredictRequest {
    let content: Vec<u8> = pixels().iter().flat_map(|v| v.to_le_bytes()).collect();
    let images = TensorProto {
        dtype: 1,
        tensor_shape: Some(shape(&[1, 3, SIDE as i64, SIDE as i64])),
        tensor_content: content.into(),
        ..Default::default()
    };
    PredictRequest {
        model_spec: Some(ModelSpec { name: "resnet".into(), ..Default::default() }),
        inputs: [("images".to_string(), images)].into(),
        ..Default::default()
    }
}

/// `{"instances": [image]}` with the image nested as [3][64][64].
fn json_request() -> Arc<str> {
    let values = pixels();
    let channels: Vec<Vec<Vec<f32>>> =
        values.chunks(SIDE * SIDE).map(|plane| plane.chunks(SIDE).map(<[f32]>::to_vec).collect()).collect();
    serde_json::json!({ "instances": [channels] }).to_string().into()
}

/// Runs batches in-process for about `seconds`; returns (p50 latency, images per second).
fn in_process(batch: usize, seconds: f64) -> (Duration, f64) {
    let (library, _) = onnx_serving::runtime::library::find_library(None).expect("libonnxruntime");
    static ENVIRONMENT: std::sync::OnceLock<ort::environment::Environment> = std::sync::OnceLock::new();
    let environment =
        ENVIRONMENT.get_or_init(|| ort::init_from(&library).expect("load ort").build().expect("environment"));
    let mut session = ort::session::Session::builder(environment)
        .expect("builder")
        .with_intra_threads(INTRA_OP_THREADS)
        .expect("threads")
        .commit_from_file(model_dir().join("1/model.onnx"))
        .expect("session");
    let input: Vec<f32> = pixels().repeat(batch);
    let run = |session: &mut ort::session::Session| {
        let tensor =
            ort::value::TensorRef::from_array_view(([batch, 3, SIDE, SIDE], input.as_slice())).expect("tensor");
        let outputs = session.run(ort::inputs![tensor]).expect("run");
        std::hint::black_box(outputs[0].try_extract_tensor::<f32>().expect("logits").1.len());
    };
    run(&mut session);
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds || latencies.len() < 5 {
        let t = Instant::now();
        run(&mut session);
        latencies.push(t.elapsed());
    }
    latencies.sort();
    let total: Duration = latencies.iter().sum();
    (latencies[latencies.len() / 2], (latencies.len() * batch) as f64 / total.as_secs_f64())
}

fn start_peer(model: &std::path::Path) -> Option<Spawned> {
    let mut child = Command::new("python3")
        .arg(repo_path("benches/peer/fastapi_server.py"))
        .arg(model)
        .arg(INTRA_OP_THREADS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let mut lines = BufReader::new(stdout).lines();
    let address = lines.next()?.ok()?.strip_prefix("peer at:")?.trim().parse().ok()?;
    std::thread::spawn(move || for _ in lines {});
    Some(Spawned(child, address))
}

/// One measurement: latency percentiles in µs and requests (or images) per second.
#[derive(Clone, Copy)]
struct Summary {
    p50: f64,
    p90: f64,
    p99: f64,
    throughput: f64,
}

impl Summary {
    fn of(result: &LoadResult) -> Self {
        Self {
            p50: micros(result.percentile(0.5)),
            p90: micros(result.percentile(0.9)),
            p99: micros(result.percentile(0.99)),
            throughput: result.throughput(),
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Measurements of every round, by (target, concurrency or batch), in first-seen order.
#[derive(Default)]
struct Rounds {
    entries: Vec<((String, usize), Vec<Summary>)>,
}

impl Rounds {
    fn add(&mut self, label: &str, size: usize, summary: Summary) {
        let key = (label.to_string(), size);
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) => values.push(summary),
            None => self.entries.push((key, vec![summary])),
        }
    }

    /// The median of each figure over the rounds.
    fn median(&self, label: &str, size: usize) -> Option<Summary> {
        let (_, values) = self.entries.iter().find(|((l, s), _)| l == label && *s == size)?;
        let pick = |f: fn(&Summary) -> f64| median(values.iter().map(f).collect());
        Some(Summary {
            p50: pick(|s| s.p50),
            p90: pick(|s| s.p90),
            p99: pick(|s| s.p99),
            throughput: pick(|s| s.throughput),
        })
    }

    fn spread(&self, label: &str, size: usize) -> (f64, f64) {
        let values = self.entries.iter().find(|((l, s), _)| l == label && *s == size).map(|(_, v)| v);
        let throughputs: Vec<f64> = values.map(|v| v.iter().map(|s| s.throughput).collect()).unwrap_or_default();
        (throughputs.iter().copied().fold(f64::INFINITY, f64::min), throughputs.iter().copied().fold(0.0, f64::max))
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds: u64 = std::env::var("LOADGEN_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let rounds: usize = std::env::var("LOADGEN_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let duration = Duration::from_secs(seconds);
    let warmup = Duration::from_secs(1);
    let model = ensure_model();

    let params_file = |threads: usize| {
        let path = std::env::temp_dir().join(format!("onnx-serving-batching-{}-{threads}.pbtxt", std::process::id()));
        let text = format!(
            "max_batch_size {{ value: 32 }}\nbatch_timeout_micros {{ value: 0 }}\n\
             max_enqueued_batches {{ value: 100 }}\nnum_batch_threads {{ value: {threads} }}\n"
        );
        std::fs::write(&path, text).expect("write the batching parameters");
        path
    };
    let one_thread = params_file(1);
    let two_threads = params_file(2);
    let base = format!("--model_base_path={}", model_dir().display());
    let intra = format!("--intra_op_threads={INTRA_OP_THREADS}");
    let batching_file = format!("--batching_parameters_file={}", one_thread.display());
    let two_batch_threads = format!("--batching_parameters_file={}", two_threads.display());
    // NOTE: the third configuration runs two batches at once, one core each, instead of one
    // batch on both cores.
    let configurations: [(&str, Vec<&str>); 3] = [
        ("no batching", vec!["--model_name=resnet", &base, &intra]),
        ("batching", vec!["--model_name=resnet", &base, &intra, "--enable_batching", &batching_file]),
        (
            "batching, 2 batch threads x 1 intra-op thread",
            vec!["--model_name=resnet", &base, "--intra_op_threads=1", "--enable_batching", &two_batch_threads],
        ),
    ];
    let servers: Vec<(&str, Spawned, std::net::SocketAddr)> = configurations
        .iter()
        .map(|(name, args)| {
            let (server, grpc) = spawn_server(args);
            (*name, server, grpc)
        })
        .collect();
    let _ = std::fs::remove_file(&one_thread);
    let _ = std::fs::remove_file(&two_threads);
    let peer = start_peer(&model);
    if peer.is_none() {
        println!("(peer skipped: pip install -r benches/peer/requirements.txt)");
    }

    // NOTE: every target is measured once per round and rounds interleave them, so that a
    // noisy stretch of the shared machine hits all of them; medians are reported.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    let mut measured = Rounds::default();
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        for batch in [1, 8, 32] {
            let (p50, throughput) = in_process(batch, seconds as f64);
            let p50 = micros(p50);
            measured.add("in-process ONNX Runtime", batch, Summary { p50, p90: p50, p99: p50, throughput });
        }
        for (name, server, grpc) in &servers {
            for concurrency in [1, 8, 32] {
                let result = runtime.block_on(drive_grpc(*grpc, grpc_request(), concurrency, warmup, duration));
                measured.add(&format!("gRPC, {name}"), concurrency, Summary::of(&result));
            }
            let result = runtime.block_on(drive(server.1, PREDICT_PATH, json_request(), 32, warmup, duration));
            measured.add(&format!("REST JSON, {name}"), 32, Summary::of(&result));
        }
        if let Some(peer) = &peer {
            for concurrency in [1, 8, 32] {
                let result =
                    runtime.block_on(drive(peer.1, PREDICT_PATH, json_request(), concurrency, warmup, duration));
                measured.add("REST JSON, FastAPI + onnxruntime", concurrency, Summary::of(&result));
            }
        }
    }
    drop(servers);
    drop(peer);

    println!("Medians of {rounds} rounds of {seconds} s each.");
    println!();
    println!("| target | batch or concurrency | p50 µs | p90 µs | p99 µs | requests/s (min–max) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for ((label, size), _) in &measured.entries {
        if let Some(m) = measured.median(label, *size) {
            let (low, high) = measured.spread(label, *size);
            println!(
                "| {label} | {size} | {:.0} | {:.0} | {:.0} | {:.0} ({low:.0}–{high:.0}) |",
                m.p50, m.p90, m.p99, m.throughput
            );
        }
    }
    println!();
    let limit_32 = measured.median("in-process ONNX Runtime", 32).map_or(f64::NAN, |m| m.throughput);
    let plain_32 = measured.median("gRPC, no batching", 32);
    for config in ["batching", "batching, 2 batch threads x 1 intra-op thread"] {
        if let (Some(batched), Some(plain)) = (measured.median(&format!("gRPC, {config}"), 32), plain_32) {
            println!(
                "c=32 throughput, {config}: {:.0}% of in-process at batch 32 (target >= 85%); {:.2}x without batching (target >= 2x)",
                batched.throughput / limit_32 * 100.0,
                batched.throughput / plain.throughput
            );
        }
    }
    if let (Some(batched), Some(plain)) =
        (measured.median("gRPC, batching", 1), measured.median("gRPC, no batching", 1))
    {
        println!("c=1 p50 added by batching: {:+.1}% (target < 5%)", (batched.p50 / plain.p50 - 1.0) * 100.0);
    }
    let ours = measured.median("REST JSON, batching", 32);
    if let (Some(ours), Some(peer)) = (ours, measured.median("REST JSON, FastAPI + onnxruntime", 32)) {
        println!(
            "c=32 REST vs FastAPI peer: {:.2}x its throughput (target >= 5x); p99 {:.1} ms vs {:.1} ms",
            ours.throughput / peer.throughput,
            ours.p99 / 1000.0,
            peer.p99 / 1000.0
        );
    }
}

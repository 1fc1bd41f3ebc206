//! The flood: 1,000 keep-alive REST clients sending 100 KB bodies and 200 gRPC clients on a
//! model of about 30 ms a call, with hostile requests (TF's fill rule, a 100,000-deep array,
//! a PNG header claiming 60,000 x 60,000 pixels) sent at the same time; then how soon a lone
//! client is served again. The baseline, measured first in the same run: the same request
//! from one client on the idle server. Two modes: clients that send again at once after a
//! refusal, and clients that wait as it asks. `cargo bench --bench flood` (FLOOD_SECONDS per
//! mode, default 20; FLOOD_REST_CLIENTS, FLOOD_GRPC_CLIENTS to change the load).

mod loadgen;

use std::time::{Duration, Instant};

use loadgen::flood::{flood, percentile, slow_body, write_model_config, FloodPlan};
use loadgen::{micros, spawn_server};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_model_config(dir.path());
    let rest_clients = env_number("FLOOD_REST_CLIENTS", 1000) as usize;
    let grpc_clients = env_number("FLOOD_GRPC_CLIENTS", 200) as usize;
    let duration = Duration::from_secs(env_number("FLOOD_SECONDS", 20));
    let iterations = 5_000;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    println!("| clients | mode | admitted | admitted p50 / p99 ms | refused | refused p50 / p99 / max ms | hostile refused | RSS before / peak MiB | served again after ms | failures |");
    println!("|---|---|---:|---|---:|---|---|---|---:|---:|");
    for polite in [false, true] {
        // NOTE: a fresh server per mode, so that one mode's queues and caches do not carry over.
        let (server, grpc) = spawn_server(&[&format!("--model_config_file={}", config.display())]);
        let (rest, pid) = (server.1, server.0.id());
        let plan = FloodPlan { rest_clients, grpc_clients, body_bytes: 100 * 1024, iterations, duration, polite };
        let body = slow_body(iterations, plan.body_bytes);
        let lone = runtime.block_on(async {
            let client = reqwest::Client::new();
            let url = format!("http://{rest}/v1/models/slow:predict");
            let mut latencies = Vec::new();
            for _ in 0..50 {
                let sent = Instant::now();
                let response = client.post(&url).body(body.clone()).send().await.expect("send");
                assert_eq!(response.status(), 200, "the idle server answers");
                response.bytes().await.expect("body");
                latencies.push(sent.elapsed());
            }
            latencies
        });
        let report = runtime.block_on(flood(rest, grpc, pid, &plan));
        let ms = |d: Duration| micros(d) / 1e3;
        println!(
            "| 1 | baseline: the same request, idle server | {} | {:.1} / {:.1} | | | | | | |",
            lone.len(),
            ms(percentile(&lone, 0.5)),
            ms(percentile(&lone, 0.99))
        );
        println!(
            "| {rest_clients} REST + {grpc_clients} gRPC | {} | {} | {:.0} / {:.0} | {} | {:.1} / {:.1} / {:.1} | {} of {} | {:.0} / {:.0} | {:.0} | {} |",
            if polite { "clients wait as Retry-After says" } else { "clients send again at once" },
            report.admitted.len(),
            ms(percentile(&report.admitted, 0.5)),
            ms(percentile(&report.admitted, 0.99)),
            report.refused.len(),
            ms(percentile(&report.refused, 0.5)),
            ms(percentile(&report.refused, 0.99)),
            ms(report.refused.iter().max().copied().unwrap_or_default()),
            report.hostile_refused,
            report.hostile_sent,
            report.rss_before_kib as f64 / 1024.0,
            report.rss_peak_kib as f64 / 1024.0,
            ms(report.recovery),
            report.failures.len()
        );
        assert_eq!(report.refused_without_retry_after, 0, "every REST refusal says Retry-After");
        for failure in report.failures.iter().take(10) {
            eprintln!("  {failure}");
        }
    }
    println!();
    println!(
        "{duration:?} per mode; 100 KiB REST bodies; the slow model at {iterations} iterations on one session, \
         32 places in its queue (--max_queued_requests_per_session's default)"
    );
}

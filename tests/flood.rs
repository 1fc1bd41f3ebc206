//! A short flood (benches/flood.rs has the full one and its figures): 100 REST clients with
//! 100 KB bodies and 20 gRPC clients on a slow model, with hostile requests at the same time.
//! Every answer must be a success, a refusal for load (503 with Retry-After, UNAVAILABLE) or
//! the refusal of a hostile request; no transport error; and a lone client is served after.

mod common;
#[path = "../benches/loadgen/flood.rs"]
mod flood;

use std::time::Duration;

use common::ServerProcess;
use flood::{flood, write_model_config, FloodPlan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_with_hostile_requests_is_refused_fast_and_nothing_breaks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_model_config(dir.path());
    let server = ServerProcess::start(&[
        &format!("--model_config_file={}", config.display()),
        "--max_queued_requests_per_session=8",
    ]);
    let grpc = server.grpc_address.expect("gRPC address");
    let plan = FloodPlan {
        rest_clients: 100,
        grpc_clients: 20,
        body_bytes: 100 * 1024,
        iterations: 4_000,
        duration: Duration::from_secs(3),
        polite: false,
    };
    let report = flood(server.rest_address, grpc, server.child.id(), &plan).await;
    eprintln!(
        "admitted {} (p99 {:?}), refused {} (p99 {:?}), hostile {} of {} refused, served again after {:?}",
        report.admitted.len(),
        flood::percentile(&report.admitted, 0.99),
        report.refused.len(),
        flood::percentile(&report.refused, 0.99),
        report.hostile_refused,
        report.hostile_sent,
        report.recovery
    );
    assert!(
        report.failures.is_empty(),
        "{} failures, first: {:?}",
        report.failures.len(),
        &report.failures[..report.failures.len().min(5)]
    );
    assert!(!report.admitted.is_empty(), "nothing was admitted");
    assert!(!report.refused.is_empty(), "120 clients on 8 places: some must be refused");
    assert_eq!(report.refused_without_retry_after, 0);
    assert!(report.hostile_sent > 0 && report.hostile_refused == report.hostile_sent);
}

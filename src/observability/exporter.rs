//! The Prometheus exporter behind `--monitoring_config_file`: the recorder, TF Serving's
//! histogram buckets, every metric's HELP text, and the process start time.

use std::time::SystemTime;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::warn;

use super::requests::REQUEST_LATENCY;
use super::{requests, versions};
use crate::batching::metric_names as batching;
use crate::runtime::RUNTIME_LATENCY;

pub const PROCESS_START_TIME: &str = "onnx_serving_process_start_time_seconds";

/// Returns Exponential(start, growth, count) bucket limits, rounded to 6 significant
/// digits so that they print as TF Serving prints them (`32.4`, not `32.400000000000006`).
fn exponential_buckets(start: f64, growth: f64, count: i32) -> Vec<f64> {
    (0..count)
        .map(|i| {
            let limit = start * growth.powi(i);
            format!("{limit:.5e}").parse().unwrap_or(limit)
        })
        .collect()
}

/// Describes every metric, so the exposition carries HELP lines.
fn describe_metrics() {
    requests::describe();
    versions::describe();
    metrics::describe_histogram!(RUNTIME_LATENCY, "Latency of model runs in microseconds (TF Serving).");
    metrics::describe_histogram!(batching::QUEUING_LATENCY, "Time requests waited in a batch queue, in microseconds.");
    metrics::describe_counter!(batching::WRAPPED_RUN_COUNT, "Batched model runs.");
    metrics::describe_histogram!(batching::INPUT_BATCH_SIZE, "Rows of each batch before padding.");
    metrics::describe_histogram!(batching::PROCESSED_BATCH_SIZE, "Rows of each batch after padding.");
    metrics::describe_histogram!(batching::PADDING_SIZE, "Padding rows added to each batch.");
    metrics::describe_counter!(batching::REJECTED, "Requests the batcher rejected (queue full, too large).");
    metrics::describe_gauge!(batching::QUEUE_DEPTH, "Rows waiting in a model's batch queue.");
    metrics::describe_gauge!(PROCESS_START_TIME, "Start time of the process, in seconds since the Unix epoch.");
}

/// Installs the Prometheus recorder as the process's metrics recorder. Returns `None` (with
/// a warning) when another recorder is already installed.
pub fn install_prometheus() -> Option<PrometheusHandle> {
    let latency = exponential_buckets(10.0, 1.8, 33);
    let queueing = exponential_buckets(100.0, 1.2, 52);
    let sizes = exponential_buckets(1.0, 2.0, 14);
    let buckets: [(&str, &[f64]); 7] = [
        (REQUEST_LATENCY, &latency),
        (RUNTIME_LATENCY, &latency),
        (batching::QUEUING_LATENCY, &queueing),
        (batching::INPUT_BATCH_SIZE, &sizes),
        (batching::PROCESSED_BATCH_SIZE, &sizes),
        (batching::PADDING_SIZE, &sizes),
        (versions::MODEL_LOAD_SECONDS, versions::LOAD_SECONDS_BUCKETS),
    ];
    let builder = buckets.into_iter().try_fold(PrometheusBuilder::new(), |builder, (name, limits)| {
        builder.set_buckets_for_metric(Matcher::Full(name.into()), limits)
    });
    let recorder = match builder {
        Ok(builder) => builder.build_recorder(),
        Err(error) => {
            warn!(error = %error, "cannot configure the Prometheus exporter");
            return None;
        }
    };
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        warn!("a metrics recorder is already installed; the Prometheus endpoint will be empty");
        return None;
    }
    describe_metrics();
    let started = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    metrics::gauge!(PROCESS_START_TIME).set(started.as_secs_f64());
    Some(handle)
}

/// How often recorded histogram samples are folded into their buckets without a scrape.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds histogram samples into their buckets every few seconds until `shutdown`, so that
/// memory stays flat between scrapes (and with no scraper at all).
pub async fn upkeep_task(handle: PrometheusHandle, shutdown: tokio_util::sync::CancellationToken) {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => handle.run_upkeep(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_print_like_tf_serving() {
        let latency = exponential_buckets(10.0, 1.8, 33);
        assert_eq!(&latency[..4], &[10.0, 18.0, 32.4, 58.32]);
        assert_eq!(latency.len(), 33);
    }
}

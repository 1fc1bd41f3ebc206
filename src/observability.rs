//! Observability: the metric names (TF Serving's and our own), the loader decorator that
//! records load time and execution providers, the version-state gauges, and the Prometheus
//! exporter behind `--monitoring_config_file`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::core::{AspiredVersionsManager, Loader, Servable, ServableId, ServingResult, SourceAdapter};

pub const REQUEST_COUNT: &str = ":tensorflow:serving:request_count";
pub const REQUEST_LATENCY: &str = ":tensorflow:serving:request_latency";
pub use crate::runtime::RUNTIME_LATENCY;
pub const MODEL_LOAD_SECONDS: &str = "onnx_serving_model_load_seconds";
pub const MODEL_VERSION_STATE: &str = "onnx_serving_model_version_state";
pub const EXECUTION_PROVIDER: &str = "onnx_serving_execution_provider";
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
    use crate::batching::metric_names as batching;
    metrics::describe_counter!(REQUEST_COUNT, "Requests by model and status code (TF Serving).");
    metrics::describe_histogram!(REQUEST_LATENCY, "Latency of successful requests in microseconds (TF Serving).");
    metrics::describe_histogram!(RUNTIME_LATENCY, "Latency of model runs in microseconds (TF Serving).");
    metrics::describe_histogram!(batching::QUEUING_LATENCY, "Time requests waited in a batch queue, in microseconds.");
    metrics::describe_counter!(batching::WRAPPED_RUN_COUNT, "Batched model runs.");
    metrics::describe_histogram!(batching::INPUT_BATCH_SIZE, "Rows of each batch before padding.");
    metrics::describe_histogram!(batching::PROCESSED_BATCH_SIZE, "Rows of each batch after padding.");
    metrics::describe_histogram!(batching::PADDING_SIZE, "Padding rows added to each batch.");
    metrics::describe_counter!(batching::REJECTED, "Requests the batcher rejected (queue full, too large).");
    metrics::describe_gauge!(batching::QUEUE_DEPTH, "Rows waiting in a model's batch queue.");
    metrics::describe_histogram!(MODEL_LOAD_SECONDS, "Time to load a model version, in seconds.");
    metrics::describe_gauge!(
        MODEL_VERSION_STATE,
        "State of a model version: 10 START, 20 LOADING, 30 AVAILABLE, 40 UNLOADING, 50 END."
    );
    metrics::describe_gauge!(EXECUTION_PROVIDER, "1 for each execution provider a model version runs on.");
    metrics::describe_gauge!(PROCESS_START_TIME, "Start time of the process, in seconds since the Unix epoch.");
}

/// Installs the Prometheus recorder as the process's metrics recorder. Returns `None` (with
/// a warning) when another recorder is already installed.
pub fn install_prometheus() -> Option<PrometheusHandle> {
    let latency = exponential_buckets(10.0, 1.8, 33);
    let queueing = exponential_buckets(100.0, 1.2, 52);
    let sizes = exponential_buckets(1.0, 2.0, 14);
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_LATENCY.into()), &latency)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(RUNTIME_LATENCY.into()), &latency))
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(crate::batching::metric_names::QUEUING_LATENCY.into()), &queueing)
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(crate::batching::metric_names::INPUT_BATCH_SIZE.into()), &sizes)
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(crate::batching::metric_names::PROCESSED_BATCH_SIZE.into()), &sizes)
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(crate::batching::metric_names::PADDING_SIZE.into()), &sizes)
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(MODEL_LOAD_SECONDS.into()), &[0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0])
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

/// Records one finished request: `request_count` always, `request_latency` when it succeeded.
pub fn record_request(
    model_name: &str,
    api: &'static str,
    entrypoint: &'static str,
    status: &'static str,
    started: Instant,
) {
    metrics::counter!(REQUEST_COUNT, "model_name" => model_name.to_string(), "status" => status).increment(1);
    if status == "OK" {
        let micros = started.elapsed().as_secs_f64() * 1e6;
        metrics::histogram!(REQUEST_LATENCY, "model_name" => model_name.to_string(), "API" => api, "entrypoint" => entrypoint)
            .record(micros);
    }
}

/// The providers each loaded version reported, so that their gauges drop to 0 when it ends.
static PROVIDERS: std::sync::Mutex<Vec<(ServableId, Vec<String>)>> = std::sync::Mutex::new(Vec::new());

fn set_provider_gauges(id: &ServableId, providers: &[String], value: f64) {
    for provider in providers {
        metrics::gauge!(EXECUTION_PROVIDER, "model_name" => id.name.clone(),
            "version" => id.version.to_string(), "provider" => provider.clone())
        .set(value);
    }
}

/// A SourceAdapter decorator that records each version's load time and providers.
pub struct MetricsAdapter {
    inner: Arc<dyn SourceAdapter>,
}

impl MetricsAdapter {
    pub fn new(inner: Arc<dyn SourceAdapter>) -> Self {
        Self { inner }
    }
}

impl SourceAdapter for MetricsAdapter {
    fn platform(&self) -> &str {
        self.inner.platform()
    }

    fn adapt(&self, id: &ServableId, path: PathBuf) -> ServingResult<Box<dyn Loader>> {
        Ok(Box::new(MetricsLoader { id: id.clone(), inner: self.inner.adapt(id, path)? }))
    }
}

struct MetricsLoader {
    id: ServableId,
    inner: Box<dyn Loader>,
}

impl Loader for MetricsLoader {
    fn load(&self) -> ServingResult<Arc<dyn Servable>> {
        let started = Instant::now();
        let servable = self.inner.load()?;
        let labels = [("model_name", self.id.name.clone()), ("version", self.id.version.to_string())];
        metrics::histogram!(MODEL_LOAD_SECONDS, &labels).record(started.elapsed().as_secs_f64());
        let providers = servable.execution_providers();
        set_provider_gauges(&self.id, &providers, 1.0);
        if let Ok(mut loaded) = PROVIDERS.lock() {
            loaded.retain(|(id, _)| *id != self.id);
            loaded.push((self.id.clone(), providers));
        }
        Ok(servable)
    }
}

/// Keeps `onnx_serving_model_version_state` (TF's state numbers: 10 START … 50 END) in step
/// with the manager until `shutdown`.
pub async fn version_state_task(manager: AspiredVersionsManager, shutdown: CancellationToken) {
    let mut status_rx = manager.subscribe();
    loop {
        {
            let snapshot = status_rx.borrow_and_update();
            for (name, versions) in snapshot.iter() {
                for status in versions.values() {
                    metrics::gauge!(MODEL_VERSION_STATE, "model_name" => name.clone(), "version" => status.version.to_string())
                        .set(status.state as i32 as f64);
                }
            }
            // NOTE: a version that ended no longer runs on its providers.
            if let Ok(mut loaded) = PROVIDERS.lock() {
                loaded.retain(|(id, providers)| {
                    let ended = snapshot
                        .get(&id.name)
                        .and_then(|versions| versions.get(&id.version))
                        .is_some_and(|status| status.state == crate::core::ServableState::End);
                    if ended {
                        set_provider_gauges(id, providers, 0.0);
                    }
                    !ended
                });
            }
        }
        tokio::select! {
            changed = status_rx.changed() => if changed.is_err() { return },
            _ = shutdown.cancelled() => return,
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

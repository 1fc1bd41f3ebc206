//! Request accounting, the same for every transport: TF Serving's `request_count` and
//! `request_latency`, recorded from a request's result.

use std::future::Future;
use std::time::Instant;

use crate::core::ServingError;

pub const REQUEST_COUNT: &str = ":tensorflow:serving:request_count";
pub const REQUEST_LATENCY: &str = ":tensorflow:serving:request_latency";

/// Describes this module's metrics, so the exposition carries HELP lines.
pub(super) fn describe() {
    metrics::describe_counter!(REQUEST_COUNT, "Requests by model and status code (TF Serving).");
    metrics::describe_histogram!(REQUEST_LATENCY, "Latency of successful requests in microseconds (TF Serving).");
}

/// Runs one request and records it: `request_count` by the result's status always,
/// `request_latency` (from now until `request` finishes) when it succeeded.
pub async fn account<T, E: AsRef<ServingError>>(
    model_name: &str,
    api: &'static str,
    entrypoint: &'static str,
    request: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = request.await;
    let status = result.as_ref().map_or_else(|error| error.as_ref().code.name(), |_| "OK");
    metrics::counter!(REQUEST_COUNT, "model_name" => model_name.to_string(), "status" => status).increment(1);
    if status == "OK" {
        let micros = started.elapsed().as_secs_f64() * 1e6;
        metrics::histogram!(REQUEST_LATENCY, "model_name" => model_name.to_string(), "API" => api, "entrypoint" => entrypoint)
            .record(micros);
    }
    result
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    #[test]
    fn every_request_is_counted_by_status_and_successes_are_timed() {
        let recorder = DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            let ok = account("m", "predict", "REST", async { Ok::<_, ServingError>(()) }).now_or_never();
            assert!(matches!(ok, Some(Ok(()))));
            let missing = account("m", "Predict", "GRPC", async { Err::<(), _>(ServingError::not_found("no model")) });
            assert!(matches!(missing.now_or_never(), Some(Err(_))));
        });
        let mut seen: Vec<String> = recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let mut labels: Vec<String> =
                    key.key().labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
                labels.sort();
                let value = match value {
                    DebugValue::Counter(count) => count.to_string(),
                    DebugValue::Histogram(samples) => format!("{} samples", samples.len()),
                    DebugValue::Gauge(value) => value.to_string(),
                };
                format!("{} {} {value}", key.key().name(), labels.join(","))
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                ":tensorflow:serving:request_count model_name=m,status=NOT_FOUND 1",
                ":tensorflow:serving:request_count model_name=m,status=OK 1",
                ":tensorflow:serving:request_latency API=predict,entrypoint=REST,model_name=m 1 samples",
            ]
        );
    }
}

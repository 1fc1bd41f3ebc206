//! Model version metrics: the load decorator that times each load and raises the gauges of
//! the execution providers a version runs on (back to 0 when it unloads), and the task that
//! keeps the version-state gauges in step with the manager.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::core::{
    AspiredVersionsManager, ExtendedServable, LoadDecorator, Loader, Servable, ServableId, ServingResult,
};

pub const MODEL_LOAD_SECONDS: &str = "onnx_serving_model_load_seconds";
pub const MODEL_VERSION_STATE: &str = "onnx_serving_model_version_state";
pub const EXECUTION_PROVIDER: &str = "onnx_serving_execution_provider";

/// The buckets of `MODEL_LOAD_SECONDS`, in seconds.
pub(super) const LOAD_SECONDS_BUCKETS: &[f64] = &[0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0];

/// Describes this module's metrics, so the exposition carries HELP lines.
pub(super) fn describe() {
    metrics::describe_histogram!(MODEL_LOAD_SECONDS, "Time to load a model version, in seconds.");
    metrics::describe_gauge!(
        MODEL_VERSION_STATE,
        "State of a model version: 10 START, 20 LOADING, 30 AVAILABLE, 40 UNLOADING, 50 END."
    );
    metrics::describe_gauge!(EXECUTION_PROVIDER, "1 for each execution provider a model version runs on.");
}

/// Times the whole load of every version and raises its provider gauges (a `LoadDecorator`,
/// the outermost one).
pub struct VersionMetrics;

impl LoadDecorator for VersionMetrics {
    fn load(&self, id: &ServableId, _path: &Path, inner: &dyn Loader) -> ServingResult<Arc<dyn Servable>> {
        let started = Instant::now();
        let servable = inner.load()?;
        let labels = [("model_name", id.name.clone()), ("version", id.version.to_string())];
        metrics::histogram!(MODEL_LOAD_SECONDS, &labels).record(started.elapsed().as_secs_f64());
        let providers = servable.execution_providers();
        set_provider_gauges(id, &providers, 1.0);
        // NOTE: the guard rides in the version's extensions (the inner ones kept), so it drops,
        // and zeroes the gauges, when the manager drops the unloaded version.
        let mut extensions = servable.extensions().clone();
        extensions.insert(ProviderGauges { id: id.clone(), providers });
        Ok(ExtendedServable::wrap(servable, extensions))
    }
}

fn set_provider_gauges(id: &ServableId, providers: &[String], value: f64) {
    for provider in providers {
        metrics::gauge!(EXECUTION_PROVIDER, "model_name" => id.name.clone(),
            "version" => id.version.to_string(), "provider" => provider.clone())
        .set(value);
    }
}

/// Drops a version's provider gauges to 0 when the version unloads: a version that ended
/// no longer runs on its providers.
struct ProviderGauges {
    id: ServableId,
    providers: Vec<String>,
}

impl Drop for ProviderGauges {
    fn drop(&mut self) {
        set_provider_gauges(&self.id, &self.providers, 0.0);
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
        }
        tokio::select! {
            changed = status_rx.changed() => if changed.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;
    use crate::core::testing::FakeAdapter;
    use crate::core::{Decorated, SourceAdapter};

    fn provider_gauge(recorder: &DebuggingRecorder) -> Option<f64> {
        recorder.snapshotter().snapshot().into_vec().into_iter().find_map(|(key, _, _, value)| {
            match (key.key().name() == EXECUTION_PROVIDER, value) {
                (true, DebugValue::Gauge(value)) => Some(value.into_inner()),
                _ => None,
            }
        })
    }

    #[test]
    fn provider_gauges_rise_on_load_and_drop_when_the_version_unloads() {
        let recorder = DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            let fake: Arc<dyn SourceAdapter> = Arc::new(FakeAdapter::healthy());
            let adapter = Decorated::wrap(fake, VersionMetrics);
            let id = ServableId { name: "m".into(), version: 1 };
            let servable = adapter.adapt(&id, PathBuf::from("/m/1")).expect("adapt").load().expect("load");
            assert_eq!(servable.execution_providers(), vec!["CPU".to_string()]);
            assert_eq!(provider_gauge(&recorder), Some(1.0));
            drop(servable);
            assert_eq!(provider_gauge(&recorder), Some(0.0));
        });
    }
}

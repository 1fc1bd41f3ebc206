//! TF Serving's `ServerCore`: applies a set of model configs to the manager and the
//! file-system source (at startup, on gRPC reloads and when the config file changes).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::BatchingConfig;
use crate::batching::BatchingDecorator;
use crate::config::model_server_config::{model_config_list, model_configs};
use crate::core::{
    AspiredVersionsManager, ConfigReloader, Decorated, ModelConfig, ReloadFuture, ServableId, ServableState,
    ServingError, ServingResult, Settlement, SourceAdapter,
};
use crate::observability::VersionMetrics;
use crate::platforms::PlatformRegistry;
use crate::proto::tensorflow::serving::ModelServerConfig;
use crate::sources::file_system::check_base_paths;
use crate::sources::{FileSystemSourceHandle, WatchedModel};
use crate::warmup::WarmupDecorator;

/// Applies model configs to the manager and the source: TF Serving's `ServerCore`.
pub(super) struct ServerCore {
    pub(super) registry: PlatformRegistry,
    pub(super) batching: Option<BatchingConfig>,
    /// `None` with `--enable_model_warmup=false`.
    pub(super) warmup_iterations: Option<usize>,
    pub(super) allow_labels_for_unavailable_models: bool,
    pub(super) manager: AspiredVersionsManager,
    pub(super) source: FileSystemSourceHandle,
    /// The applied config. The lock serialises the changes, never a wait for loads.
    pub(super) current: Mutex<AppliedConfig>,
    pub(super) configured_tx: watch::Sender<Vec<String>>,
}

/// The config applied last, and how many configs have been applied.
#[derive(Default)]
pub(super) struct AppliedConfig {
    pub(super) models: Vec<ModelConfig>,
    pub(super) generation: u64,
    /// Models added by a config whose wait ended before they settled (the caller's deadline):
    /// the next apply waits for them again, so a retried reload does not answer OK early.
    pub(super) pending: BTreeSet<String>,
}

/// TF Serving's warning for a base path without a version directory.
pub(super) fn no_versions_message(model: &str, base_path: &std::path::Path) -> String {
    format!(
        "No versions of servable {model} found under base path {}. Did you forget to name your leaf directory as a number (eg. '/1/')?",
        base_path.display()
    )
}

pub(super) fn watched(models: &[ModelConfig]) -> Vec<WatchedModel> {
    models
        .iter()
        .map(|m| WatchedModel { name: m.name.clone(), base_path: m.base_path.clone(), policy: m.policy.clone() })
        .collect()
}

pub(super) fn failure_list(failures: &[(ServableId, ServingError)]) -> String {
    let detail: String =
        failures.iter().map(|(id, error)| format!("{{{id} due to error: {}}}, ", error.to_status_string())).collect();
    format!("{{{detail}}}")
}

/// A config applied and not yet waited for: what `ServerCore::finish` needs.
pub(super) struct Applied {
    models: Vec<ModelConfig>,
    previous: Vec<ModelConfig>,
    added: Vec<String>,
    marks: crate::core::AspiredSnapshot,
    generation: u64,
}

impl ServerCore {
    /// Applies `models`, then waits (until `deadline` at most, without holding the config
    /// lock) for the models not served before, and reports how they went.
    pub(super) async fn apply(&self, models: Vec<ModelConfig>, deadline: Option<Instant>) -> ServingResult<Settlement> {
        let applied = self.begin(models).await?;
        self.finish(applied, deadline).await
    }

    /// Waits for the new models of an applied config, then (unless a newer config was applied
    /// meanwhile) sets its labels and the models that health checks wait for.
    pub(super) async fn finish(&self, applied: Applied, deadline: Option<Instant>) -> ServingResult<Settlement> {
        let Applied { models, previous, added, marks, generation } = applied;
        let settlement = self.manager.wait_until_settled(&added, &marks, deadline).await;
        // NOTE: labels are checked once the new versions had their chance to load, and each
        // model's whole label map is replaced in one step, so a canary flip is atomic. A
        // newer config applied meanwhile owns the labels.
        let mut current = self.current.lock().await;
        let still_loading: BTreeSet<&String> = settlement.unsettled.iter().map(|(name, _)| name).collect();
        for name in &added {
            if still_loading.contains(name) {
                current.pending.insert(name.clone());
            } else {
                current.pending.remove(name);
            }
        }
        if current.generation != generation {
            return Ok(settlement);
        }
        // NOTE: health waits for every configured model except those with no version yet,
        // published only now so that adding a model does not turn the server NOT_SERVING.
        let waited: Vec<String> =
            models.iter().map(|m| m.name.clone()).filter(|name| !settlement.without_versions.contains(name)).collect();
        self.configured_tx.send_replace(waited);
        self.check_labels(&previous, &models)?;
        for model in &models {
            let labels: HashMap<String, i64> = model.labels.iter().map(|(k, v)| (k.clone(), *v)).collect();
            self.manager.set_labels(&model.name, labels);
        }
        Ok(settlement)
    }

    /// Under the config lock: checks the config and hands it to the manager and the source.
    /// The config is in force once this returns; `finish` waits for its new models.
    pub(super) async fn begin(&self, models: Vec<ModelConfig>) -> ServingResult<Applied> {
        let mut current = self.current.lock().await;
        let mut adapters = Vec::with_capacity(models.len());
        for model in &models {
            let adapter = self.registry.adapter(&model.platform).map_err(|known| {
                ServingError::invalid_argument(format!(
                    "Model {} requests unsupported platform {} ({known})",
                    model.name, model.platform
                ))
            })?;
            adapters.push(self.decorate(adapter));
        }
        let watched = watched(&models);
        check_base_paths(&watched).map_err(ServingError::not_found)?;
        let served: BTreeSet<&str> = current.models.iter().map(|m| m.name.as_str()).collect();
        let added: Vec<String> = models
            .iter()
            .filter(|m| !served.contains(m.name.as_str()) || current.pending.contains(&m.name))
            .map(|m| m.name.clone())
            .collect();
        current.pending = added.iter().cloned().collect::<BTreeSet<_>>();
        for (model, adapter) in models.iter().zip(adapters) {
            self.manager.register_model(&model.name, adapter);
        }
        // NOTE: taken after the registrations and before the source scans, so only the
        // source's answer to this config counts as news.
        let marks = self.manager.aspired_marks().await;
        self.source.set_models(watched).await;
        let previous = std::mem::replace(&mut current.models, models.clone());
        current.generation += 1;
        Ok(Applied { models, previous, added, marks, generation: current.generation })
    }

    /// Says what a settlement means to the one who asked: `Ok` when every new model serves,
    /// else TF Serving's messages for the versions that failed, then the models without a
    /// version and those still loading.
    pub(super) fn outcome(&self, models: &[ModelConfig], settlement: &Settlement) -> ServingResult<()> {
        let Settlement { failures, without_versions, unsettled } = settlement;
        let mut problems = Vec::new();
        if !failures.is_empty() {
            problems.push(format!("{} model(s) did not become available: {}", failures.len(), failure_list(failures)));
        }
        for name in without_versions {
            let base_path = models.iter().find(|m| &m.name == name).map(|m| m.base_path.clone()).unwrap_or_default();
            problems.push(no_versions_message(name, &base_path));
        }
        for (name, why) in unsettled {
            problems.push(format!("model {name} is not available yet: {why}"));
        }
        if problems.is_empty() {
            return Ok(());
        }
        // NOTE: a failed version is TF Serving's UNKNOWN; a model still loading when the call's
        // time ran out is DEADLINE_EXCEEDED; one with no version yet is UNAVAILABLE.
        let code = if !failures.is_empty() {
            crate::core::Code::Unknown
        } else if !unsettled.is_empty() {
            crate::core::Code::DeadlineExceeded
        } else {
            crate::core::Code::Unavailable
        };
        Err(ServingError::new(code, problems.join("; ")))
    }

    /// Wraps a platform's adapter: batching innermost (so warmup goes through it), then
    /// warmup, then the metrics that time the whole load.
    fn decorate(&self, adapter: Arc<dyn SourceAdapter>) -> Arc<dyn SourceAdapter> {
        let mut adapter = adapter;
        if let Some(batching) = &self.batching {
            let batching = BatchingDecorator::new(batching.global.clone(), batching.per_model_files);
            adapter = Decorated::wrap(adapter, batching);
        }
        if let Some(iterations) = self.warmup_iterations {
            adapter = Decorated::wrap(adapter, WarmupDecorator::new(iterations));
        }
        Decorated::wrap(adapter, VersionMetrics)
    }

    /// Checks TF Serving's label rule: a label points to an AVAILABLE version, except that
    /// with `--allow_version_labels_for_unavailable_models` a label that is new may point
    /// to any version.
    fn check_labels(&self, previous: &[ModelConfig], models: &[ModelConfig]) -> ServingResult<()> {
        for model in models {
            let statuses = self.manager.version_statuses(&model.name).unwrap_or_default();
            let old = previous.iter().find(|m| m.name == model.name);
            for (label, &version) in &model.labels {
                let available = statuses.iter().any(|s| s.version == version && s.state == ServableState::Available);
                let is_new = old.is_none_or(|m| !m.labels.contains_key(label));
                let allowed = available || (self.allow_labels_for_unavailable_models && is_new);
                if !allowed {
                    return Err(ServingError::failed_precondition(format!(
                        "Request to assign label to version {version} of model {}, which is not currently available for inference",
                        model.name
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The reload entry point handed to the gRPC service; relative base paths in a reloaded
/// config resolve against `working_dir`.
pub(super) struct SharedCore {
    pub(super) core: Arc<ServerCore>,
    pub(super) working_dir: PathBuf,
}

impl crate::grpc::ModelServerConfigReloader for SharedCore {
    fn reload(&self, config: ModelServerConfig, deadline: Option<Instant>) -> ReloadFuture {
        let models = model_config_list(&config).and_then(|list| model_configs(list, &self.working_dir));
        match models {
            Ok(models) => {
                info!(models = ?models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), "reloading the model config");
                ConfigReloader::reload(self, models, deadline)
            }
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }
}

/// How much earlier than the client's deadline a reload stops waiting, so the client hears
/// which model did not settle instead of a bare DEADLINE_EXCEEDED.
const ANSWER_MARGIN: Duration = Duration::from_millis(250);

impl ConfigReloader for SharedCore {
    fn reload(&self, models: Vec<ModelConfig>, deadline: Option<Instant>) -> ReloadFuture {
        let core = Arc::clone(&self.core);
        Box::pin(async move {
            let applied = core.begin(models.clone()).await?;
            // NOTE: the wait and the labels run on their own task, so a client that gives up
            // (its call dropped) does not leave the config without its labels.
            let waiter = Arc::clone(&core);
            let deadline = deadline.map(|d| d.checked_sub(ANSWER_MARGIN).unwrap_or(d));
            let settlement = tokio::spawn(async move { waiter.finish(applied, deadline).await })
                .await
                .map_err(|_| ServingError::internal("the reload's wait stopped unexpectedly"))??;
            core.outcome(&models, &settlement)
        })
    }
}

/// Re-reads `--model_config_file` every `wait` and applies it when it changed. A file that
/// does not parse or does not apply is logged, and the models already served stay.
pub(super) async fn poll_model_config_file(
    core: Arc<ServerCore>,
    path: PathBuf,
    wait: Duration,
    shutdown: CancellationToken,
) {
    let mut applied = tokio::fs::read_to_string(&path).await.ok();
    let working_dir = std::env::current_dir().unwrap_or_default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(text) => text,
            Err(error) => {
                warn!(path = %path.display(), error = %error, "cannot re-read the model config file; keeping the current models");
                continue;
            }
        };
        if applied.as_deref() == Some(text.as_str()) {
            continue;
        }
        let models = match crate::config::model_server_config::parse_model_config_text(&text, &working_dir) {
            Ok(models) => models,
            Err(error) => {
                warn!(path = %path.display(), error = %error, "ignoring the changed model config file");
                continue;
            }
        };
        info!(path = %path.display(), models = ?models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            "model config file changed, reloading");
        // NOTE: the file is in force once `begin` returns; the wait for its new models runs
        // on its own, so a model that never settles does not stop later edits from applying.
        let pending = match core.begin(models.clone()).await {
            Ok(pending) => pending,
            Err(error) => {
                warn!(path = %path.display(), error = %error, "the changed model config file did not apply");
                continue;
            }
        };
        applied = Some(text);
        let (waiter, file) = (Arc::clone(&core), path.clone());
        tokio::spawn(async move {
            let outcome = match waiter.finish(pending, None).await {
                Ok(settlement) => waiter.outcome(&models, &settlement),
                Err(error) => Err(error),
            };
            if let Err(error) = outcome {
                warn!(path = %file.display(), error = %error, "the changed model config file applied, with problems");
            }
        });
    }
}

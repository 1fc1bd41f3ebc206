//! The AspiredVersionsManager: loads aspired versions, retires old ones, hands out handles.
//!
//! One task owns the lifecycle (`ManagerState`), driven by commands; loads and unloads run on
//! blocking threads. Requests never touch that task: they read an immutable serving map.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::error::{ServingError, ServingResult};
use super::handle::{DrainLease, ServableHandle};
use super::loader::{AspiredVersion, AspiredVersionsSink, Loader, SourceAdapter};
use super::policy::{availability_preserving_action, PolicyAction, PolicyVersion};
use super::servable::{Servable, ServableId, ServableState, VersionRequest};

/// Retry behaviour for loads, as TF Serving's `--max_num_load_retries` and
/// `--load_retry_interval_micros`.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    pub max_num_load_retries: u32,
    pub load_retry_interval: Duration,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        Self { max_num_load_retries: 5, load_retry_interval: Duration::from_secs(60) }
    }
}

/// The state of one version as GetModelStatus reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStatus {
    pub version: i64,
    pub state: ServableState,
    /// Set when the version ended because of an error.
    pub error: Option<ServingError>,
    /// The execution providers of an AVAILABLE (or UNLOADING) version; empty otherwise.
    pub execution_providers: Vec<String>,
}

/// Every version the manager has ever tracked, per model. END entries are kept forever.
pub type StatusSnapshot = HashMap<String, BTreeMap<i64, VersionStatus>>;

#[derive(Clone)]
struct ServingVersion {
    servable: Arc<dyn Servable>,
    lease: Arc<DrainLease>,
}

#[derive(Default, Clone)]
struct ServingModel {
    versions: BTreeMap<i64, ServingVersion>,
    labels: HashMap<String, i64>,
}

type ServingMap = HashMap<String, ServingModel>;

enum ManagerCommand {
    RegisterModel { name: String, adapter: Arc<dyn SourceAdapter> },
    SetAspired { name: String, versions: Vec<AspiredVersion> },
    LoadDone { id: ServableId, result: ServingResult<Arc<dyn Servable>> },
    RetryLoad { id: ServableId },
    UnloadDone { id: ServableId },
    SetLabels { name: String, labels: HashMap<String, i64> },
}

/// A cheap, cloneable handle to the manager.
#[derive(Clone)]
pub struct AspiredVersionsManager {
    shared: Arc<Shared>,
}

struct Shared {
    command_tx: mpsc::UnboundedSender<ManagerCommand>,
    serving: RwLock<Arc<ServingMap>>,
    status_rx: watch::Receiver<StatusSnapshot>,
}

impl AspiredVersionsManager {
    /// Starts the manager task on the current tokio runtime.
    pub fn spawn(options: ManagerOptions) -> Self {
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = watch::channel(StatusSnapshot::new());
        let weak_command_tx = command_tx.downgrade();
        let shared = Arc::new(Shared { command_tx, serving: RwLock::new(Arc::new(ServingMap::new())), status_rx });
        let task = ManagerTask {
            state: ManagerState::new(options),
            command_tx: weak_command_tx,
            status_tx,
            shared: Arc::downgrade(&shared),
        };
        tokio::spawn(task.run(command_rx));
        Self { shared }
    }

    /// Registers a model and the adapter that turns its version paths into loaders.
    pub fn register_model(&self, name: &str, adapter: Arc<dyn SourceAdapter>) {
        self.send(ManagerCommand::RegisterModel { name: name.to_string(), adapter });
    }

    /// Replaces the version labels of a model.
    pub fn set_labels(&self, name: &str, labels: HashMap<String, i64>) {
        self.send(ManagerCommand::SetLabels { name: name.to_string(), labels });
    }

    fn send(&self, command: ManagerCommand) {
        // NOTE: the task only stops when every handle is gone, so a failed send cannot
        // happen while `self` exists.
        let _ = self.shared.command_tx.send(command);
    }

    /// Returns a handle to the version a request asks for.
    pub fn handle(&self, name: &str, request: &VersionRequest) -> ServingResult<ServableHandle> {
        let serving = match self.shared.serving.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        let model = serving.get(name);
        let not_found = |what: String| ServingError::not_found(format!("Servable not found for request: {what}"));
        let (version, entry) = match request {
            VersionRequest::Latest => {
                model.and_then(|m| m.versions.iter().next_back()).ok_or_else(|| not_found(format!("Latest({name})")))?
            }
            VersionRequest::Specific(v) => model
                .and_then(|m| m.versions.get_key_value(v))
                .ok_or_else(|| not_found(format!("Specific({name}, {v})")))?,
            VersionRequest::Label(label) => {
                let version = model.and_then(|m| m.labels.get(label)).ok_or_else(|| {
                    ServingError::invalid_argument(format!("Unrecognized servable version label: {label}"))
                })?;
                model
                    .and_then(|m| m.versions.get_key_value(version))
                    .ok_or_else(|| not_found(format!("Specific({name}, {version})")))?
            }
        };
        Ok(ServableHandle {
            id: ServableId { name: name.to_string(), version: *version },
            servable: Arc::clone(&entry.servable),
            _lease: Arc::clone(&entry.lease),
        })
    }

    /// Returns the tracked versions of a model, highest first, or `None` for an unknown model.
    pub fn version_statuses(&self, name: &str) -> Option<Vec<VersionStatus>> {
        let snapshot = self.shared.status_rx.borrow();
        let versions = snapshot.get(name)?;
        if versions.is_empty() {
            return None;
        }
        Some(versions.values().rev().cloned().collect())
    }

    /// Returns what TF's GetModelStatus reports: every tracked version of a model (highest
    /// first), or only `version` when given, with TF's NOT_FOUND messages otherwise.
    pub fn model_status(&self, name: &str, version: Option<i64>) -> ServingResult<Vec<VersionStatus>> {
        let statuses = self
            .version_statuses(name)
            .ok_or_else(|| ServingError::not_found(format!("Could not find any versions of model {name}")))?;
        let Some(version) = version else { return Ok(statuses) };
        let found: Vec<VersionStatus> = statuses.into_iter().filter(|s| s.version == version).collect();
        if found.is_empty() {
            return Err(ServingError::not_found(format!("Could not find version {version} of model {name}")));
        }
        Ok(found)
    }

    /// Returns the names of every model the manager tracks, sorted.
    pub fn model_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.shared.status_rx.borrow().keys().cloned().collect();
        names.sort();
        names
    }

    /// Returns a receiver that sees every state change.
    pub fn subscribe(&self) -> watch::Receiver<StatusSnapshot> {
        self.shared.status_rx.clone()
    }

    /// Waits until each named model has aspired versions and every one of them is
    /// AVAILABLE or END. Returns the versions that ended in error.
    pub async fn wait_until_settled(&self, names: &[String]) -> Vec<(ServableId, ServingError)> {
        let mut status_rx = self.subscribe();
        loop {
            let failures = {
                let snapshot = status_rx.borrow_and_update();
                settled_failures(&snapshot, names)
            };
            if let Some(failures) = failures {
                return failures;
            }
            if status_rx.changed().await.is_err() {
                return Vec::new();
            }
        }
    }
}

/// Returns `Some(failures)` once every named model has settled.
fn settled_failures(snapshot: &StatusSnapshot, names: &[String]) -> Option<Vec<(ServableId, ServingError)>> {
    let mut failures = Vec::new();
    for name in names {
        let versions = snapshot.get(name)?;
        let mut settled_any = false;
        for status in versions.values() {
            match status.state {
                ServableState::Available => settled_any = true,
                ServableState::End => {
                    if let Some(error) = &status.error {
                        settled_any = true;
                        failures.push((ServableId { name: name.clone(), version: status.version }, error.clone()));
                    }
                }
                ServableState::Start | ServableState::Loading => return None,
                ServableState::Unloading => {}
            }
        }
        if !settled_any {
            return None;
        }
    }
    Some(failures)
}

impl AspiredVersionsSink for AspiredVersionsManager {
    fn set_aspired_versions(&self, servable_name: &str, versions: Vec<AspiredVersion>) {
        self.send(ManagerCommand::SetAspired { name: servable_name.to_string(), versions });
    }
}

enum Phase {
    New,
    Loading,
    RetryWait,
    Available(ServingVersion),
    Unloading,
    /// Ended in error. Kept while aspired so it is not reloaded on every poll, as in TF Serving.
    Failed,
}

struct VersionEntry {
    path: PathBuf,
    aspired: bool,
    phase: Phase,
    attempts: u32,
    loader: Option<Arc<dyn Loader>>,
}

struct ModelEntry {
    adapter: Arc<dyn SourceAdapter>,
    versions: BTreeMap<i64, VersionEntry>,
    labels: HashMap<String, i64>,
}

/// What the manager task must do after a state transition.
enum Effect {
    Load { id: ServableId, loader: Arc<dyn Loader> },
    ScheduleRetry { id: ServableId, delay: Duration },
    Unload { id: ServableId, serving: ServingVersion, drained_rx: oneshot::Receiver<()> },
}

/// The manager's decisions, kept free of channels so tests can drive it directly.
struct ManagerState {
    options: ManagerOptions,
    models: HashMap<String, ModelEntry>,
    status: StatusSnapshot,
    drain_rx: HashMap<ServableId, oneshot::Receiver<()>>,
}

impl ManagerState {
    fn new(options: ManagerOptions) -> Self {
        Self { options, models: HashMap::new(), status: StatusSnapshot::new(), drain_rx: HashMap::new() }
    }

    fn set_status(&mut self, id: &ServableId, state: ServableState, error: Option<ServingError>) {
        let versions = self.status.entry(id.name.clone()).or_default();
        let execution_providers = match state {
            ServableState::Unloading => versions.get(&id.version).map(|s| s.execution_providers.clone()),
            _ => None,
        };
        let status = VersionStatus {
            version: id.version,
            state,
            error,
            execution_providers: execution_providers.unwrap_or_default(),
        };
        versions.insert(id.version, status);
    }

    fn register_model(&mut self, name: String, adapter: Arc<dyn SourceAdapter>) {
        match self.models.get_mut(&name) {
            Some(model) => model.adapter = adapter,
            None => {
                self.models.insert(name, ModelEntry { adapter, versions: BTreeMap::new(), labels: HashMap::new() });
            }
        }
    }

    fn set_aspired(&mut self, name: &str, aspired: Vec<AspiredVersion>) -> Vec<Effect> {
        let Some(model) = self.models.get_mut(name) else {
            warn!(model = name, "ignoring aspired versions of an unregistered model");
            return Vec::new();
        };
        let wanted: BTreeMap<i64, PathBuf> = aspired.into_iter().map(|a| (a.version, a.path)).collect();
        let mut dropped = Vec::new();
        for (version, entry) in model.versions.iter_mut() {
            entry.aspired = wanted.contains_key(version);
            if !entry.aspired && matches!(entry.phase, Phase::New | Phase::RetryWait | Phase::Failed) {
                dropped.push(*version);
            }
        }
        for version in &dropped {
            model.versions.remove(version);
        }
        let mut started = Vec::new();
        for (version, path) in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = model.versions.entry(version) {
                slot.insert(VersionEntry { path, aspired: true, phase: Phase::New, attempts: 0, loader: None });
                started.push(version);
            }
        }
        for version in dropped {
            let id = ServableId { name: name.to_string(), version };
            let last_error = self.status.get(name).and_then(|v| v.get(&version)).and_then(|s| s.error.clone());
            self.set_status(&id, ServableState::End, last_error);
        }
        for version in started {
            self.set_status(&ServableId { name: name.to_string(), version }, ServableState::Start, None);
        }
        self.next_actions(name)
    }

    /// Applies the availability-preserving policy until it has nothing more to start.
    fn next_actions(&mut self, name: &str) -> Vec<Effect> {
        let mut effects = Vec::new();
        loop {
            let Some(model) = self.models.get(name) else { return effects };
            let view: Vec<PolicyVersion> = model
                .versions
                .iter()
                .map(|(&version, e)| PolicyVersion {
                    version,
                    aspired: e.aspired,
                    available: matches!(e.phase, Phase::Available(_)),
                    new: matches!(e.phase, Phase::New),
                })
                .collect();
            let Some(action) = availability_preserving_action(&view) else { return effects };
            match action {
                PolicyAction::Load(version) => effects.extend(self.start_load(name, version)),
                PolicyAction::Unload(version) => effects.extend(self.start_unload(name, version)),
            }
        }
    }

    fn start_load(&mut self, name: &str, version: i64) -> Option<Effect> {
        let id = ServableId { name: name.to_string(), version };
        let model = self.models.get_mut(name)?;
        let entry = model.versions.get_mut(&version)?;
        entry.phase = Phase::Loading;
        entry.attempts += 1;
        let loader = match &entry.loader {
            Some(loader) => Ok(Arc::clone(loader)),
            None => model.adapter.adapt(&id, entry.path.clone()).map(Arc::from),
        };
        match loader {
            Ok(loader) => {
                entry.loader = Some(Arc::clone(&loader));
                info!(model = name, version, path = %entry.path.display(), "loading servable version");
                self.set_status(&id, ServableState::Loading, None);
                Some(Effect::Load { id, loader })
            }
            Err(error) => {
                // NOTE: an adapter error (such as a directory without a model file) is not
                // transient, so it is not retried.
                warn!(model = name, version, error = %error, "failed to load servable version");
                entry.phase = Phase::Failed;
                self.set_status(&id, ServableState::End, Some(error));
                None
            }
        }
    }

    fn start_unload(&mut self, name: &str, version: i64) -> Option<Effect> {
        let id = ServableId { name: name.to_string(), version };
        let entry = self.models.get_mut(name)?.versions.get_mut(&version)?;
        let Phase::Available(serving) = std::mem::replace(&mut entry.phase, Phase::Unloading) else {
            return None;
        };
        info!(model = name, version, "unloading servable version");
        self.set_status(&id, ServableState::Unloading, None);
        let drained_rx = self.drain_rx.remove(&id)?;
        Some(Effect::Unload { id, serving, drained_rx })
    }

    fn load_done(&mut self, id: ServableId, result: ServingResult<Arc<dyn Servable>>) -> Vec<Effect> {
        let retries = self.options.max_num_load_retries;
        let delay = self.options.load_retry_interval;
        let Some(entry) = self.models.get_mut(&id.name).and_then(|m| m.versions.get_mut(&id.version)) else {
            return Vec::new();
        };
        match result {
            Ok(servable) => {
                let (drained_tx, drained_rx) = oneshot::channel();
                let lease = Arc::new(DrainLease::new(drained_tx));
                let providers = servable.execution_providers();
                entry.phase = Phase::Available(ServingVersion { servable, lease });
                entry.loader = None;
                self.drain_rx.insert(id.clone(), drained_rx);
                info!(model = %id.name, version = id.version, execution_providers = ?providers,
                    "servable version is available");
                self.set_status(&id, ServableState::Available, None);
                if let Some(status) = self.status.get_mut(&id.name).and_then(|v| v.get_mut(&id.version)) {
                    status.execution_providers = providers;
                }
            }
            Err(error) if entry.aspired && entry.attempts <= retries => {
                warn!(model = %id.name, version = id.version, attempt = entry.attempts, error = %error,
                    "failed to load servable version, retrying");
                entry.phase = Phase::RetryWait;
                return vec![Effect::ScheduleRetry { id, delay }];
            }
            Err(error) => {
                warn!(model = %id.name, version = id.version, error = %error, "failed to load servable version");
                entry.phase = Phase::Failed;
                entry.loader = None;
                self.set_status(&id, ServableState::End, Some(error));
            }
        }
        self.next_actions(&id.name)
    }

    fn retry_load(&mut self, id: ServableId) -> Vec<Effect> {
        let Some(entry) = self.models.get_mut(&id.name).and_then(|m| m.versions.get_mut(&id.version)) else {
            return Vec::new();
        };
        if !matches!(entry.phase, Phase::RetryWait) {
            return Vec::new();
        }
        entry.phase = Phase::New;
        self.start_load(&id.name, id.version).into_iter().collect()
    }

    fn unload_done(&mut self, id: ServableId) -> Vec<Effect> {
        if let Some(model) = self.models.get_mut(&id.name) {
            model.versions.remove(&id.version);
        }
        info!(model = %id.name, version = id.version, "servable version unloaded");
        self.set_status(&id, ServableState::End, None);
        self.next_actions(&id.name)
    }

    /// Returns the map that requests read: available versions and labels per model.
    fn serving_map(&self) -> ServingMap {
        self.models
            .iter()
            .map(|(name, model)| {
                let versions = model
                    .versions
                    .iter()
                    .filter_map(|(&v, e)| match &e.phase {
                        Phase::Available(serving) => Some((v, serving.clone())),
                        _ => None,
                    })
                    .collect();
                (name.clone(), ServingModel { versions, labels: model.labels.clone() })
            })
            .collect()
    }
}

struct ManagerTask {
    state: ManagerState,
    /// Weak, so the task ends once every manager handle and pending effect is gone.
    command_tx: mpsc::WeakUnboundedSender<ManagerCommand>,
    status_tx: watch::Sender<StatusSnapshot>,
    shared: std::sync::Weak<Shared>,
}

impl ManagerTask {
    async fn run(mut self, mut command_rx: mpsc::UnboundedReceiver<ManagerCommand>) {
        while let Some(command) = command_rx.recv().await {
            let effects = match command {
                ManagerCommand::RegisterModel { name, adapter } => {
                    self.state.register_model(name, adapter);
                    Vec::new()
                }
                ManagerCommand::SetAspired { name, versions } => self.state.set_aspired(&name, versions),
                ManagerCommand::LoadDone { id, result } => self.state.load_done(id, result),
                ManagerCommand::RetryLoad { id } => self.state.retry_load(id),
                ManagerCommand::UnloadDone { id } => self.state.unload_done(id),
                ManagerCommand::SetLabels { name, labels } => {
                    if let Some(model) = self.state.models.get_mut(&name) {
                        model.labels = labels;
                    }
                    Vec::new()
                }
            };
            // NOTE: publish before running effects, so a retiring version leaves the serving
            // map before we start waiting for its handles to drain.
            self.publish();
            for effect in effects {
                self.run_effect(effect);
            }
        }
    }

    fn publish(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            let map = Arc::new(self.state.serving_map());
            match shared.serving.write() {
                Ok(mut guard) => *guard = map,
                Err(poisoned) => *poisoned.into_inner() = map,
            }
        }
        let status = self.state.status.clone();
        self.status_tx.send_if_modified(|current| {
            if *current == status {
                false
            } else {
                *current = status;
                true
            }
        });
    }

    fn run_effect(&self, effect: Effect) {
        let Some(command_tx) = self.command_tx.upgrade() else { return };
        match effect {
            Effect::Load { id, loader } => {
                tokio::task::spawn_blocking(move || {
                    let result = loader.load();
                    let _ = command_tx.send(ManagerCommand::LoadDone { id, result });
                });
            }
            Effect::ScheduleRetry { id, delay } => {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = command_tx.send(ManagerCommand::RetryLoad { id });
                });
            }
            Effect::Unload { id, serving, drained_rx } => {
                let ServingVersion { servable, lease } = serving;
                drop(lease);
                tokio::spawn(async move {
                    // NOTE: the lease fires once every request holding a handle has finished.
                    let _ = drained_rx.await;
                    let _ = tokio::task::spawn_blocking(move || drop(servable)).await;
                    let _ = command_tx.send(ManagerCommand::UnloadDone { id });
                });
            }
        }
    }
}

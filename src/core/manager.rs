//! The AspiredVersionsManager: loads aspired versions, retires old ones, hands out handles.
//!
//! One task owns the lifecycle (`ManagerState`), driven by commands; loads and unloads run on
//! blocking threads. Requests never touch that task: they read an immutable serving map.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use super::error::{ServingError, ServingResult};
use super::handle::ServableHandle;
use super::loader::{AspiredVersion, AspiredVersionsSink, SourceAdapter};
pub use super::manager_state::{
    AspiredSet, AspiredSnapshot, ManagerOptions, StatusSnapshot, VersionStatus, MAX_ENDED_VERSIONS,
};
use super::manager_state::{Effect, ManagerState, ServingMap, ServingVersion};
use super::servable::{Servable, ServableId, ServableState, VersionRequest};

enum ManagerCommand {
    RegisterModel {
        name: String,
        adapter: Arc<dyn SourceAdapter>,
    },
    SetAspired {
        name: String,
        versions: Vec<AspiredVersion>,
    },
    LoadDone {
        id: ServableId,
        result: ServingResult<Arc<dyn Servable>>,
    },
    RetryLoad {
        id: ServableId,
        ticket: u64,
    },
    UnloadDone {
        id: ServableId,
    },
    SetLabels {
        name: String,
        labels: HashMap<String, i64>,
    },
    /// Answers once every command sent before it has been applied.
    Sync {
        done: oneshot::Sender<AspiredSnapshot>,
    },
    SetLoadThreads {
        threads: usize,
    },
}

/// The most loads that may run at once, whatever `--num_load_threads` says.
const MAX_LOAD_THREADS: usize = 1024;

/// How the models a config reload waits for turned out.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Settlement {
    /// Versions that ended in error.
    pub failures: Vec<(ServableId, ServingError)>,
    /// Models whose source found no version to serve.
    pub without_versions: Vec<String>,
    /// Models still not settled when the deadline passed, each with why.
    pub unsettled: Vec<(String, String)>,
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
    aspired_rx: watch::Receiver<AspiredSnapshot>,
}

impl AspiredVersionsManager {
    /// Starts the manager task on the current tokio runtime.
    pub fn spawn(options: ManagerOptions) -> Self {
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = watch::channel(StatusSnapshot::new());
        let (aspired_tx, aspired_rx) = watch::channel(AspiredSnapshot::new());
        let weak_command_tx = command_tx.downgrade();
        let serving = RwLock::new(Arc::new(ServingMap::new()));
        let shared = Arc::new(Shared { command_tx, serving, status_rx, aspired_rx });
        let load_threads = options.num_load_threads.clamp(1, MAX_LOAD_THREADS);
        let task = ManagerTask {
            loads: Arc::new(Semaphore::new(load_threads)),
            load_threads,
            state: ManagerState::new(options),
            command_tx: weak_command_tx,
            status_tx,
            aspired_tx,
            shared: Arc::downgrade(&shared),
        };
        tokio::spawn(task.run(command_rx));
        Self { shared }
    }

    /// Registers a model and the adapter that turns its version paths into loaders.
    pub fn register_model(&self, name: &str, adapter: Arc<dyn SourceAdapter>) {
        self.send(ManagerCommand::RegisterModel { name: name.to_string(), adapter });
    }

    /// Changes how many versions may load at once (0 counts as 1). Loads already running
    /// finish; the new bound applies to the next ones.
    pub fn set_load_threads(&self, threads: usize) {
        self.send(ManagerCommand::SetLoadThreads { threads });
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

    /// Returns the models' aspired sets once every command sent before this call has been
    /// applied: the mark `wait_until_settled` measures news against.
    pub async fn aspired_marks(&self) -> AspiredSnapshot {
        let (done, reply) = oneshot::channel();
        self.send(ManagerCommand::Sync { done });
        reply.await.unwrap_or_default()
    }

    /// Waits until the source has sent each named model an aspired set newer than `since`
    /// and every aspired version is AVAILABLE or ended in error; a model whose new set is
    /// empty has no version to serve. Stops waiting at `deadline`, reporting what is left.
    pub async fn wait_until_settled(
        &self,
        names: &[String],
        since: &AspiredSnapshot,
        deadline: Option<Instant>,
    ) -> Settlement {
        let mut status_rx = self.subscribe();
        let mut aspired_rx = self.shared.aspired_rx.clone();
        loop {
            let settlement = {
                let statuses = status_rx.borrow_and_update();
                let aspired = aspired_rx.borrow_and_update();
                settle(&statuses, &aspired, since, names)
            };
            if settlement.unsettled.is_empty() {
                return settlement;
            }
            let changed = async {
                tokio::select! {
                    changed = status_rx.changed() => changed.is_ok(),
                    changed = aspired_rx.changed() => changed.is_ok(),
                }
            };
            let running = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline.into(), changed).await {
                    Ok(running) => running,
                    Err(_) => return settlement,
                },
                None => changed.await,
            };
            if !running {
                return settlement;
            }
        }
    }
}

/// Works out how the named models stand: settled (with their failures, or without versions)
/// or not yet, with why.
fn settle(
    statuses: &StatusSnapshot,
    aspired: &AspiredSnapshot,
    since: &AspiredSnapshot,
    names: &[String],
) -> Settlement {
    let mut settlement = Settlement::default();
    for name in names {
        let before = since.get(name).map_or(0, |set| set.generation);
        let Some(set) = aspired.get(name).filter(|set| set.generation > before) else {
            let why = "its source has not reported its versions yet (a version directory still being written?)";
            settlement.unsettled.push((name.clone(), why.to_string()));
            continue;
        };
        if set.versions.is_empty() {
            settlement.without_versions.push(name.clone());
            continue;
        }
        let versions = statuses.get(name);
        let mut pending = Vec::new();
        for &version in &set.versions {
            // NOTE: a status pruned from the history counts as settled.
            if let Some(status) = versions.and_then(|v| v.get(&version)) {
                match (&status.state, &status.error) {
                    (ServableState::Available, _) => {}
                    (ServableState::End, Some(error)) => {
                        settlement.failures.push((ServableId { name: name.clone(), version }, error.clone()));
                    }
                    (state, _) => pending.push(format!("version {version} is {}", state.name())),
                }
            }
        }
        if !pending.is_empty() {
            settlement.unsettled.push((name.clone(), pending.join(", ")));
        }
    }
    settlement
}

impl AspiredVersionsSink for AspiredVersionsManager {
    fn set_aspired_versions(&self, servable_name: &str, versions: Vec<AspiredVersion>) {
        self.send(ManagerCommand::SetAspired { name: servable_name.to_string(), versions });
    }
}

struct ManagerTask {
    state: ManagerState,
    /// Weak, so the task ends once every manager handle and pending effect is gone.
    command_tx: mpsc::WeakUnboundedSender<ManagerCommand>,
    status_tx: watch::Sender<StatusSnapshot>,
    aspired_tx: watch::Sender<AspiredSnapshot>,
    shared: std::sync::Weak<Shared>,
    /// One permit per load that may run at once.
    loads: Arc<Semaphore>,
    load_threads: usize,
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
                ManagerCommand::RetryLoad { id, ticket } => self.state.retry_load(id, ticket),
                ManagerCommand::UnloadDone { id } => self.state.unload_done(id),
                ManagerCommand::SetLabels { name, labels } => {
                    if let Some(model) = self.state.models.get_mut(&name) {
                        model.labels = labels;
                    }
                    Vec::new()
                }
                ManagerCommand::Sync { done } => {
                    let _ = done.send(self.state.aspired_snapshot());
                    continue;
                }
                ManagerCommand::SetLoadThreads { threads } => {
                    self.set_load_threads(threads.clamp(1, MAX_LOAD_THREADS));
                    continue;
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
        let aspired = self.state.aspired_snapshot();
        self.aspired_tx.send_if_modified(|current| {
            if *current == aspired {
                false
            } else {
                *current = aspired;
                true
            }
        });
    }

    fn set_load_threads(&mut self, threads: usize) {
        if threads > self.load_threads {
            self.loads.add_permits(threads - self.load_threads);
        } else if threads < self.load_threads {
            // NOTE: permits held by running loads are taken back as those loads end.
            let (loads, fewer) = (Arc::clone(&self.loads), threads.abs_diff(self.load_threads));
            tokio::spawn(async move {
                if let Ok(permits) = loads.acquire_many_owned(u32::try_from(fewer).unwrap_or(u32::MAX)).await {
                    permits.forget();
                }
            });
        }
        self.load_threads = threads;
    }

    fn run_effect(&self, effect: Effect) {
        let Some(command_tx) = self.command_tx.upgrade() else { return };
        match effect {
            Effect::Load { id, loader } => {
                let loads = Arc::clone(&self.loads);
                tokio::spawn(async move {
                    let permit = loads.acquire_owned().await;
                    let result = tokio::task::spawn_blocking(move || loader.load()).await.unwrap_or_else(|_| {
                        Err(ServingError::internal("the load stopped unexpectedly (a panic in the loader)"))
                    });
                    drop(permit);
                    let _ = command_tx.send(ManagerCommand::LoadDone { id, result });
                });
            }
            Effect::ScheduleRetry { id, delay, ticket } => {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = command_tx.send(ManagerCommand::RetryLoad { id, ticket });
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

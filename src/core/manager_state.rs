//! The manager's plain state: every model's versions and their phases, the decisions of the
//! availability-preserving policy, load retries and statuses. No channels or tasks, so the
//! decisions are driven directly; `manager.rs` runs the effects it returns.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::error::{ServingError, ServingResult};
use super::handle::DrainLease;
use super::loader::{AspiredVersion, Loader, SourceAdapter};
use super::policy::{availability_preserving_action, PolicyAction, PolicyVersion};
use super::servable::{Servable, ServableId, ServableState};

/// Load behaviour, as TF Serving's `--max_num_load_retries`, `--load_retry_interval_micros`
/// and `--num_load_threads`.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    pub max_num_load_retries: u32,
    pub load_retry_interval: Duration,
    /// How many versions load at once (0 counts as 1: one at a time, as TF Serving's 0).
    pub num_load_threads: usize,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        Self { max_num_load_retries: 5, load_retry_interval: Duration::from_secs(60), num_load_threads: 1 }
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

/// The versions the manager tracks, per model: every live one and the most recent
/// `MAX_ENDED_VERSIONS` that ended.
pub type StatusSnapshot = HashMap<String, BTreeMap<i64, VersionStatus>>;

/// How many ended (END) versions' statuses a model keeps; the lowest-numbered go first. An
/// older version's status then answers NOT_FOUND, as a version never seen does.
pub const MAX_ENDED_VERSIONS: usize = 16;

/// What the source last said a model should serve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AspiredSet {
    /// Counts the aspired sets received for the model, so a waiter can tell a new one.
    pub generation: u64,
    pub versions: std::collections::BTreeSet<i64>,
}

/// The last aspired set of each model that has received one.
pub type AspiredSnapshot = HashMap<String, AspiredSet>;

#[derive(Clone)]
pub(super) struct ServingVersion {
    pub(super) servable: Arc<dyn Servable>,
    pub(super) lease: Arc<DrainLease>,
}

#[derive(Default, Clone)]
pub(super) struct ServingModel {
    pub(super) versions: BTreeMap<i64, ServingVersion>,
    pub(super) labels: HashMap<String, i64>,
}

pub(super) type ServingMap = HashMap<String, ServingModel>;

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
    /// The ticket of the retry timer this entry waits for (see `ManagerState::tickets`).
    retry_ticket: u64,
    loader: Option<Arc<dyn Loader>>,
}

pub(super) struct ModelEntry {
    adapter: Arc<dyn SourceAdapter>,
    versions: BTreeMap<i64, VersionEntry>,
    pub(super) labels: HashMap<String, i64>,
    /// The number of aspired sets received; 0 while the source has said nothing.
    aspired_generation: u64,
}

/// What the manager task must do after a state transition.
pub(super) enum Effect {
    Load {
        id: ServableId,
        loader: Arc<dyn Loader>,
    },
    /// `ticket` names this timer: a timer whose ticket the entry no longer waits for is stale.
    ScheduleRetry {
        id: ServableId,
        delay: Duration,
        ticket: u64,
    },
    Unload {
        id: ServableId,
        serving: ServingVersion,
        drained_rx: oneshot::Receiver<()>,
    },
}

/// The manager's decisions, kept free of channels so tests can drive it directly.
pub(super) struct ManagerState {
    options: ManagerOptions,
    pub(super) models: HashMap<String, ModelEntry>,
    pub(super) status: StatusSnapshot,
    drain_rx: HashMap<ServableId, oneshot::Receiver<()>>,
    /// Retry timers scheduled so far: each gets the next number as its ticket.
    tickets: u64,
}

impl ManagerState {
    pub(super) fn new(options: ManagerOptions) -> Self {
        Self { options, models: HashMap::new(), status: StatusSnapshot::new(), drain_rx: HashMap::new(), tickets: 0 }
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
        if state == ServableState::End {
            let ended: Vec<i64> =
                versions.iter().filter(|(_, s)| s.state == ServableState::End).map(|(&v, _)| v).collect();
            for version in ended.iter().take(ended.len().saturating_sub(MAX_ENDED_VERSIONS)) {
                versions.remove(version);
            }
        }
    }

    pub(super) fn register_model(&mut self, name: String, adapter: Arc<dyn SourceAdapter>) {
        match self.models.get_mut(&name) {
            Some(model) => model.adapter = adapter,
            None => {
                let entry =
                    ModelEntry { adapter, versions: BTreeMap::new(), labels: HashMap::new(), aspired_generation: 0 };
                self.models.insert(name, entry);
            }
        }
    }

    pub(super) fn set_aspired(&mut self, name: &str, aspired: Vec<AspiredVersion>) -> Vec<Effect> {
        let Some(model) = self.models.get_mut(name) else {
            warn!(model = name, "ignoring aspired versions of an unregistered model");
            return Vec::new();
        };
        let wanted: BTreeMap<i64, PathBuf> = aspired.into_iter().map(|a| (a.version, a.path)).collect();
        model.aspired_generation += 1;
        let mut dropped = Vec::new();
        for (version, entry) in model.versions.iter_mut() {
            entry.aspired = wanted.contains_key(version);
            if let (Phase::Unloading, Some(path)) = (&entry.phase, wanted.get(version)) {
                // NOTE: re-aspired while it unloads: it loads again, from here, once unloaded.
                entry.path = path.clone();
            }
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
                slot.insert(VersionEntry {
                    path,
                    aspired: true,
                    phase: Phase::New,
                    attempts: 0,
                    retry_ticket: 0,
                    loader: None,
                });
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

    pub(super) fn load_done(&mut self, id: ServableId, result: ServingResult<Arc<dyn Servable>>) -> Vec<Effect> {
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
            Err(error) if entry.aspired && entry.attempts <= retries && error.is_transient() => {
                warn!(model = %id.name, version = id.version, attempt = entry.attempts, error = %error,
                    "failed to load servable version, retrying");
                entry.phase = Phase::RetryWait;
                self.tickets += 1;
                entry.retry_ticket = self.tickets;
                return vec![Effect::ScheduleRetry { id, delay, ticket: self.tickets }];
            }
            Err(error) => {
                warn!(model = %id.name, version = id.version, error = %error, "failed to load servable version");
                entry.phase = Phase::Failed;
                entry.loader = None;
                if !entry.aspired {
                    // NOTE: un-aspired while it loaded: dropped, as a failed version that is
                    // un-aspired is, so that aspiring it again loads it afresh.
                    if let Some(model) = self.models.get_mut(&id.name) {
                        model.versions.remove(&id.version);
                    }
                }
                self.set_status(&id, ServableState::End, Some(error));
            }
        }
        self.next_actions(&id.name)
    }

    pub(super) fn retry_load(&mut self, id: ServableId, ticket: u64) -> Vec<Effect> {
        let Some(entry) = self.models.get_mut(&id.name).and_then(|m| m.versions.get_mut(&id.version)) else {
            return Vec::new();
        };
        // NOTE: a timer of an entry that was dropped and aspired anew is stale.
        if !matches!(entry.phase, Phase::RetryWait) || entry.retry_ticket != ticket {
            return Vec::new();
        }
        entry.phase = Phase::New;
        self.start_load(&id.name, id.version).into_iter().collect()
    }

    pub(super) fn unload_done(&mut self, id: ServableId) -> Vec<Effect> {
        info!(model = %id.name, version = id.version, "servable version unloaded");
        self.set_status(&id, ServableState::End, None);
        let Some(model) = self.models.get_mut(&id.name) else { return Vec::new() };
        match model.versions.get_mut(&id.version) {
            // NOTE: aspired again while it unloaded (a directory moved away and back, a model
            // removed and re-added): it starts over instead of being lost.
            Some(entry) if entry.aspired => {
                *entry = VersionEntry {
                    path: entry.path.clone(),
                    aspired: true,
                    phase: Phase::New,
                    attempts: 0,
                    retry_ticket: 0,
                    loader: None,
                };
                self.set_status(&id, ServableState::Start, None);
            }
            _ => {
                model.versions.remove(&id.version);
            }
        }
        self.next_actions(&id.name)
    }

    /// Returns the last aspired set of each model the source has spoken of.
    pub(super) fn aspired_snapshot(&self) -> AspiredSnapshot {
        self.models
            .iter()
            .filter(|(_, model)| model.aspired_generation > 0)
            .map(|(name, model)| {
                let versions = model.versions.iter().filter(|(_, e)| e.aspired).map(|(&v, _)| v).collect();
                (name.clone(), AspiredSet { generation: model.aspired_generation, versions })
            })
            .collect()
    }

    /// Returns the map that requests read: available versions and labels per model.
    pub(super) fn serving_map(&self) -> ServingMap {
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

//! The file-system storage path source: numeric version directories under a base path,
//! found by `notify` events plus a polling fallback.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::core::{AspiredVersion, AspiredVersionsSink, VersionPolicy};

/// One model that the source watches.
#[derive(Debug, Clone)]
pub struct WatchedModel {
    pub name: String,
    pub base_path: PathBuf,
    pub policy: VersionPolicy,
}

/// The fingerprint of a version directory: every file's relative path, size and mtime.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

enum SourceCommand {
    SetModels { models: Vec<WatchedModel>, done_tx: oneshot::Sender<()> },
}

/// Changes the watched models of a running source.
#[derive(Clone)]
pub struct FileSystemSourceHandle {
    command_tx: mpsc::UnboundedSender<SourceCommand>,
}

impl FileSystemSourceHandle {
    /// Replaces the watched models. Models that are gone get an empty aspired set (so they
    /// unload). Returns once the new set has been scanned.
    pub async fn set_models(&self, models: Vec<WatchedModel>) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.command_tx.send(SourceCommand::SetModels { models, done_tx }).is_ok() {
            let _ = done_rx.await;
        }
    }
}

/// Emits the aspired versions of each watched model whenever its base path changes.
pub struct FileSystemSource {
    models: Vec<WatchedModel>,
    command_rx: Option<mpsc::UnboundedReceiver<SourceCommand>>,
    poll_wait: Option<Duration>,
    sink: Arc<dyn AspiredVersionsSink>,
    /// Versions seen last round, with their fingerprint: a version is aspired only once its
    /// contents stop changing between two scans (so half-copied directories are not loaded).
    seen: HashMap<String, BTreeMap<i64, Fingerprint>>,
    stable: HashMap<String, BTreeSet<i64>>,
    emitted: HashMap<String, Vec<AspiredVersion>>,
}

/// Parses a directory name as a version, as TF Serving does (`00000123` is 123).
pub fn parse_version(name: &str) -> Option<i64> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return None;
    }
    trimmed.parse::<i64>().ok()
}

/// Checks that each base path exists, so a typo fails at startup instead of hanging.
pub fn check_base_paths(models: &[WatchedModel]) -> Result<(), String> {
    for model in models {
        if !model.base_path.is_dir() {
            return Err(format!("Could not find base path {} for servable {}", model.base_path.display(), model.name));
        }
    }
    Ok(())
}

impl FileSystemSource {
    /// `poll_wait` is `--file_system_poll_wait_seconds`: `None` means scan only on events.
    pub fn new(models: Vec<WatchedModel>, poll_wait: Option<Duration>, sink: Arc<dyn AspiredVersionsSink>) -> Self {
        Self {
            models,
            command_rx: None,
            poll_wait,
            sink,
            seen: HashMap::new(),
            stable: HashMap::new(),
            emitted: HashMap::new(),
        }
    }

    /// Returns a handle that changes the watched models while the source runs.
    pub fn handle(&mut self) -> FileSystemSourceHandle {
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        self.command_rx = Some(command_rx);
        FileSystemSourceHandle { command_tx }
    }

    /// Replaces the watched models; models no longer watched are told to unload everything.
    pub fn set_models(&mut self, models: Vec<WatchedModel>) {
        for old in &self.models {
            if !models.iter().any(|m| m.name == old.name) {
                info!(model = %old.name, "model removed from the config, unloading its versions");
                self.sink.set_aspired_versions(&old.name, Vec::new());
                self.seen.remove(&old.name);
                self.stable.remove(&old.name);
                self.emitted.remove(&old.name);
            }
        }
        for model in &models {
            // NOTE: a changed base path or policy starts from scratch, like a new model.
            if let Some(old) = self.models.iter().find(|m| m.name == model.name) {
                if old.base_path != model.base_path {
                    self.seen.remove(&model.name);
                    self.stable.remove(&model.name);
                }
            }
        }
        self.models = models;
    }

    /// Scans every model once, on the caller's thread, and emits what changed. Returns whether
    /// some version directory is still settling, in which case another scan should follow soon.
    pub fn scan_once(&mut self) -> bool {
        let scans = read_models(&self.models);
        self.apply_scans(scans)
    }

    /// `scan_once` with the file-system work (listing and fingerprinting) on a blocking thread.
    async fn scan_off_runtime(&mut self) -> bool {
        let models = self.models.clone();
        match tokio::task::spawn_blocking(move || read_models(&models)).await {
            Ok(scans) => self.apply_scans(scans),
            Err(error) => {
                warn!(error = %error, "file system scan failed; retrying on the next poll or event");
                false
            }
        }
    }

    fn apply_scans(&mut self, scans: Vec<(WatchedModel, Option<ModelScan>)>) -> bool {
        let mut settling = false;
        for (model, scan) in scans {
            if let Some(scan) = scan {
                settling |= self.apply_scan(&model, scan);
            }
        }
        settling
    }

    /// Updates a model's settling state from one scan and emits its aspired versions when
    /// they changed. Plain state: no file-system access.
    fn apply_scan(&mut self, model: &WatchedModel, scan: ModelScan) -> bool {
        let ModelScan { found, wanted: wanted_versions, fingerprints } = scan;
        let previous = self.seen.remove(&model.name).unwrap_or_default();
        let mut current = BTreeMap::new();
        let stable = self.stable.entry(model.name.clone()).or_default();
        let mut settling = false;
        for (version, fingerprint) in fingerprints {
            let unchanged = previous.get(&version) == Some(&fingerprint) && !fingerprint.is_empty();
            if unchanged {
                stable.insert(version);
            } else if !stable.contains(&version) && !fingerprint.is_empty() {
                settling = true;
                debug!(model = %model.name, version, "version directory is still changing");
            }
            // NOTE: an empty version directory is never aspired (its files may be on their
            // way), but it does not hold back the model's answer either: a model whose only
            // versions are empty directories has no version yet, and says so.
            current.insert(version, fingerprint);
        }
        stable.retain(|v| wanted_versions.contains(v) && found.contains_key(v));
        self.seen.insert(model.name.clone(), current);

        let aspired: Vec<AspiredVersion> = stable
            .iter()
            .filter_map(|v| found.get(v).map(|path| AspiredVersion { version: *v, path: path.clone() }))
            .collect();
        if found.is_empty() && !self.emitted.contains_key(&model.name) {
            warn!(model = %model.name, base_path = %model.base_path.display(),
                "No versions of servable {} found under base path {}. Did you forget to name your leaf directory as a number (eg. '/1/')?",
                model.name, model.base_path.display());
        }
        // NOTE: while a version settles, keep emitting the previous set so nothing unloads early.
        let changed = self.emitted.get(&model.name) != Some(&aspired);
        if changed && !(aspired.is_empty() && settling) {
            info!(model = %model.name, versions = ?aspired.iter().map(|a| a.version).collect::<Vec<_>>(),
                "aspired versions changed");
            self.sink.set_aspired_versions(&model.name, aspired.clone());
            self.emitted.insert(model.name.clone(), aspired);
        }
        settling
    }

    /// Runs until `shutdown` fires: scans on file events, on every poll tick, and quickly
    /// again while a version directory is settling.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let (event_tx, mut event_rx) = mpsc::unbounded_channel::<()>();
        let mut watcher = self.start_watcher(event_tx.clone());
        let mut command_rx = self.command_rx.take();
        let mut poll = self.poll_wait.map(|wait| {
            let mut interval = tokio::time::interval(wait.max(Duration::from_millis(10)));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        let settle_delay = Duration::from_millis(200);
        let mut settling = self.scan_off_runtime().await;
        loop {
            let settle = async {
                if settling {
                    tokio::time::sleep(settle_delay).await
                } else {
                    std::future::pending::<()>().await
                }
            };
            let tick = async {
                match poll.as_mut() {
                    Some(interval) => {
                        interval.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let command = async {
                match command_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(SourceCommand::SetModels { models, done_tx }) = command => {
                    self.set_models(models);
                    drop(watcher);
                    watcher = self.start_watcher(event_tx.clone());
                    settling = self.scan_off_runtime().await;
                    let _ = done_tx.send(());
                    continue;
                }
                Some(()) = event_rx.recv() => {
                    // NOTE: events only trigger a rescan; let a burst of them settle first.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while event_rx.try_recv().is_ok() {}
                }
                _ = tick => {}
                _ = settle => {}
            }
            settling = self.scan_off_runtime().await;
        }
        drop(watcher);
    }

    fn start_watcher(&self, event_tx: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
        let handler = move |result: notify::Result<notify::Event>| {
            if result.is_ok() {
                let _ = event_tx.send(());
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(watcher) => watcher,
            Err(error) => {
                warn!(error = %error, "file watching is unavailable, relying on polling");
                return None;
            }
        };
        for model in &self.models {
            if let Err(error) = watcher.watch(&model.base_path, RecursiveMode::Recursive) {
                warn!(model = %model.name, error = %error, "cannot watch base path, relying on polling");
            }
        }
        Some(watcher)
    }
}

/// What one scan of a base path found: its version directories, the versions the policy
/// wants, and their fingerprints.
struct ModelScan {
    found: BTreeMap<i64, PathBuf>,
    wanted: BTreeSet<i64>,
    fingerprints: BTreeMap<i64, Fingerprint>,
}

/// Reads every model's base path: all the file-system work of a scan, blocking. A base path
/// that cannot be read is logged and gives `None`.
fn read_models(models: &[WatchedModel]) -> Vec<(WatchedModel, Option<ModelScan>)> {
    models.iter().map(|model| (model.clone(), read_model(model))).collect()
}

fn read_model(model: &WatchedModel) -> Option<ModelScan> {
    let entries = match std::fs::read_dir(&model.base_path) {
        Ok(entries) => entries,
        Err(error) => {
            warn!(model = %model.name, base_path = %model.base_path.display(), error = %error,
                "file system source cannot read the base path");
            return None;
        }
    };
    let mut found: BTreeMap<i64, PathBuf> = BTreeMap::new();
    for entry in entries.flatten() {
        let Some(version) = entry.file_name().to_str().and_then(parse_version) else { continue };
        if entry.path().is_dir() {
            found.insert(version, entry.path());
        }
    }
    let wanted = model.policy.select(&found.keys().copied().collect());
    let fingerprints =
        wanted.iter().filter_map(|version| found.get(version).map(|path| (*version, fingerprint(path)))).collect();
    Some(ModelScan { found, wanted, fingerprints })
}

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
                files.push((relative, meta.len(), meta.modified().ok()));
            }
        }
    }
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct RecordingSink {
        calls: Mutex<Vec<(String, Vec<i64>)>>,
    }

    impl AspiredVersionsSink for RecordingSink {
        fn set_aspired_versions(&self, name: &str, versions: Vec<AspiredVersion>) {
            let versions = versions.iter().map(|v| v.version).collect();
            self.calls.lock().expect("lock").push((name.to_string(), versions));
        }
    }

    fn write_version(base: &Path, dir: &str) {
        std::fs::create_dir_all(base.join(dir)).expect("mkdir");
        std::fs::write(base.join(dir).join("model.onnx"), b"x").expect("write");
    }

    #[test]
    fn parses_versions_like_tf_serving() {
        assert_eq!(parse_version("00000123"), Some(123));
        assert_eq!(parse_version("7"), Some(7));
        assert_eq!(parse_version("v1"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn versions_are_aspired_once_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_version(dir.path(), "1");
        write_version(dir.path(), "00000002");
        std::fs::create_dir_all(dir.path().join("tmp")).expect("mkdir");
        let sink = Arc::new(RecordingSink::default());
        let model = WatchedModel { name: "m".into(), base_path: dir.path().into(), policy: VersionPolicy::Latest(1) };
        let mut source = FileSystemSource::new(vec![model], None, sink.clone());
        assert!(source.scan_once(), "first sighting is still settling");
        assert!(sink.calls.lock().expect("lock").is_empty());
        assert!(!source.scan_once());
        assert_eq!(sink.calls.lock().expect("lock").clone(), vec![("m".to_string(), vec![2])]);
        std::fs::remove_dir_all(dir.path().join("00000002")).expect("rm");
        source.scan_once();
        source.scan_once();
        let calls = sink.calls.lock().expect("lock").clone();
        assert_eq!(calls.last().expect("call").1, vec![1]);
    }

    #[test]
    fn empty_version_directories_are_not_aspired_and_do_not_hold_the_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("1")).expect("mkdir");
        let sink = Arc::new(RecordingSink::default());
        let model = WatchedModel { name: "m".into(), base_path: dir.path().into(), policy: VersionPolicy::Latest(1) };
        let mut source = FileSystemSource::new(vec![model], None, sink.clone());
        assert!(!source.scan_once(), "an empty directory is not a version settling");
        assert_eq!(sink.calls.lock().expect("lock").clone(), vec![("m".to_string(), vec![])], "no version yet");
        // Its files arrive: aspired once they stop changing.
        write_version(dir.path(), "1");
        assert!(source.scan_once());
        assert!(!source.scan_once());
        assert_eq!(sink.calls.lock().expect("lock").last().expect("call").1, vec![1]);
    }

    #[test]
    fn empty_base_path_unloads_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_version(dir.path(), "3");
        let sink = Arc::new(RecordingSink::default());
        let model = WatchedModel { name: "m".into(), base_path: dir.path().into(), policy: VersionPolicy::All };
        let mut source = FileSystemSource::new(vec![model], None, sink.clone());
        source.scan_once();
        source.scan_once();
        std::fs::remove_dir_all(dir.path().join("3")).expect("rm");
        source.scan_once();
        let calls = sink.calls.lock().expect("lock").clone();
        assert_eq!(calls, vec![("m".to_string(), vec![3]), ("m".to_string(), vec![])]);
    }

    #[test]
    fn removed_models_unload_and_new_ones_are_scanned() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        write_version(a.path(), "1");
        write_version(b.path(), "4");
        let sink = Arc::new(RecordingSink::default());
        let watched = |name: &str, dir: &Path| WatchedModel {
            name: name.into(),
            base_path: dir.into(),
            policy: VersionPolicy::Latest(1),
        };
        let mut source = FileSystemSource::new(vec![watched("a", a.path())], None, sink.clone());
        source.scan_once();
        source.scan_once();
        source.set_models(vec![watched("b", b.path())]);
        source.scan_once();
        source.scan_once();
        let calls = sink.calls.lock().expect("lock").clone();
        assert_eq!(calls, vec![("a".to_string(), vec![1]), ("a".to_string(), vec![]), ("b".to_string(), vec![4])]);
    }

    #[test]
    fn missing_base_path_is_an_error() {
        let model =
            WatchedModel { name: "m".into(), base_path: "/nonexistent/base".into(), policy: VersionPolicy::All };
        let error = check_base_paths(&[model]).expect_err("missing");
        assert!(error.contains("Could not find base path /nonexistent/base for servable m"));
    }
}

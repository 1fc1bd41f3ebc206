//! SavedModel conversions to ONNX: where they are found (beside the SavedModel, in the
//! content-keyed cache) and how they are made (the converter compiled into the binary).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::manifest::{read_manifest, MANIFEST, MANIFEST_FORMAT};
use super::precondition;
use crate::core::{ServingError, ServingResult};

/// The converter, compiled into the binary so that it always matches the server.
pub const CONVERTER_SCRIPT: &str = include_str!("../../../python/savedmodel_to_onnx.py");

/// The conversion's directory inside a version directory (written by `onnx-serving convert`).
pub const LOCAL_CONVERSION_DIR: &str = "onnx";

/// How long a conversion may run by default: large SavedModels take minutes.
pub const DEFAULT_CONVERSION_TIMEOUT_SECONDS: u64 = 1800;

/// How many of the converter's last stderr lines an error quotes.
const STDERR_TAIL_LINES: usize = 12;

/// Where conversions come from when a version has none beside it.
#[derive(Debug, Clone)]
pub struct ConversionOptions {
    /// `--conversion_cache_dir`: conversions keyed by the SavedModel's content hash.
    pub cache_dir: PathBuf,
    /// `--conversion_python`: the interpreter that runs the converter.
    pub python: String,
    /// `--conversion_timeout_seconds`: a converter still running then is stopped.
    pub timeout: Option<Duration>,
    /// `--max_concurrent_conversions`: converters running at once in this process (each can
    /// take gigabytes: TensorFlow plus the graph, about 9 GB for Keras ResNet50).
    pub max_concurrent: usize,
}

impl Default for ConversionOptions {
    fn default() -> Self {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        Self {
            cache_dir: cache.join("onnx-serving").join("conversions"),
            python: "python3".into(),
            timeout: Some(Duration::from_secs(DEFAULT_CONVERSION_TIMEOUT_SECONDS)),
            max_concurrent: 1,
        }
    }
}

/// Returns the exact command that converts a SavedModel by hand.
pub fn convert_command(saved_model_dir: &Path) -> String {
    format!(
        "pip install -r python/requirements-convert.txt && onnx-serving convert --saved_model_dir={}",
        saved_model_dir.display()
    )
}

/// SHA-256 over `saved_model.pb` and `variables/*`, each preceded by its relative path: the
/// converter computes the same digest, and the cache is keyed by it.
pub fn content_digest(saved_model_dir: &Path) -> std::io::Result<String> {
    let mut paths = vec![PathBuf::from("saved_model.pb")];
    let variables = saved_model_dir.join("variables");
    if variables.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(&variables)?
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        paths.extend(names.into_iter().map(|n| Path::new("variables").join(n)));
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    for relative in paths {
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        let mut file = std::fs::File::open(saved_model_dir.join(&relative))?;
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A number unique to this process for each call, for file names that must not collide.
fn next_attempt() -> usize {
    static ATTEMPTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    ATTEMPTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Why a conversion did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConverterError {
    /// The converter could not be started (no such Python, no room for its script).
    #[error("{0}")]
    Environment(String),
    /// It ran past its time and was stopped.
    #[error("{0}")]
    TimedOut(String),
    /// It ran and said the SavedModel cannot be converted: the same content fails again.
    #[error("{0}")]
    Failed(String),
}

/// Runs the converter into `output_dir`, stopping it after `timeout`. The error carries the
/// converter's own message, or the end of its stderr when it gave none.
pub fn run_converter(
    python: &str,
    saved_model_dir: &Path,
    output_dir: &Path,
    keep_declared_shapes: bool,
    timeout: Option<Duration>,
) -> Result<(), ConverterError> {
    let script =
        std::env::temp_dir().join(format!("onnx-serving-converter-{}-{}.py", std::process::id(), next_attempt()));
    std::fs::write(&script, CONVERTER_SCRIPT)
        .map_err(|e| ConverterError::Environment(format!("cannot write the converter: {e}")))?;
    let mut command = Command::new(python);
    command
        .arg(&script)
        .arg(format!("--saved_model_dir={}", saved_model_dir.display()))
        .arg(format!("--output_dir={}", output_dir.display()));
    if keep_declared_shapes {
        command.arg("--keep_declared_shapes");
    }
    let outcome = run_to_end(&mut command, timeout);
    let _ = std::fs::remove_file(&script);
    let (status, stderr) = outcome.map_err(|e| ConverterError::Environment(format!("cannot run {python}: {e}")))?;
    let tail = || {
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
        if tail.is_empty() {
            "no output".to_string()
        } else {
            tail
        }
    };
    match status {
        None => Err(ConverterError::TimedOut(format!(
            "the converter was stopped after {} s (--conversion_timeout_seconds); its last output:\n{}",
            timeout.map_or(0, |t| t.as_secs()),
            tail()
        ))),
        Some(status) if status.success() => Ok(()),
        Some(_) => Err(ConverterError::Failed(
            stderr
                .lines()
                .rev()
                .find(|l| l.starts_with("error: "))
                .map_or_else(tail, |l| l.trim_start_matches("error: ").to_string()),
        )),
    }
}

/// Runs `command` to its end or until `timeout`, when it is killed. Returns its exit status
/// (`None` when it was stopped) and its stderr; stdout is discarded.
fn run_to_end(
    command: &mut Command,
    timeout: Option<Duration>,
) -> std::io::Result<(Option<std::process::ExitStatus>, String)> {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    });
    let deadline = timeout.map(|t| Instant::now() + t);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        // NOTE: polling a child process; std has no wait with a timeout.
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = reader.join().unwrap_or_default();
    Ok((status, stderr))
}

/// What identifies the converter a failure was remembered for: its script, compiled in.
fn converter_identity() -> String {
    Sha256::digest(CONVERTER_SCRIPT.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Writes `note`: the converter's identity on the first line, then its reason.
fn remember_failure(note: &Path, reason: &str) {
    let partial = note.with_extension(format!("failed.partial-{}", next_attempt()));
    if std::fs::write(&partial, format!("{}\n{reason}", converter_identity())).is_ok() {
        let _ = std::fs::rename(&partial, note);
    }
}

/// Returns the reason remembered in `note`, when this converter wrote it.
fn remembered_failure(note: &Path) -> Option<String> {
    let text = std::fs::read_to_string(note).ok()?;
    let (identity, reason) = text.split_once('\n')?;
    (identity == converter_identity()).then(|| reason.to_string())
}

/// Converters running in this process.
static RUNNING_CONVERSIONS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// A place among the converters allowed to run at once, held while one runs (on a load's
/// blocking thread; the wait is for memory, not for the async runtime).
struct ConversionSlot;

impl ConversionSlot {
    fn take(limit: usize) -> Self {
        let (running, freed) = &RUNNING_CONVERSIONS;
        if let Ok(mut count) = running.lock() {
            while *count >= limit.max(1) {
                count = match freed.wait(count) {
                    Ok(count) => count,
                    Err(_) => return ConversionSlot,
                };
            }
            *count += 1;
        }
        ConversionSlot
    }
}

impl Drop for ConversionSlot {
    fn drop(&mut self) {
        let (running, freed) = &RUNNING_CONVERSIONS;
        if let Ok(mut count) = running.lock() {
            *count = count.saturating_sub(1);
        }
        freed.notify_one();
    }
}

/// One conversion in progress: the loads that want the same content wait for its result.
#[derive(Default)]
struct InFlight {
    result: Mutex<Option<ServingResult<PathBuf>>>,
    done: Condvar,
}

/// The conversions running in this process, by content digest.
static IN_FLIGHT: LazyLock<Mutex<HashMap<String, Arc<InFlight>>>> = LazyLock::new(Mutex::default);

/// Runs `convert` for `digest` unless a conversion of the same content is already running,
/// in which case this waits for that one's result instead.
fn once_per_digest(digest: &str, convert: impl FnOnce() -> ServingResult<PathBuf>) -> ServingResult<PathBuf> {
    let poisoned = || ServingError::internal("the conversion registry is poisoned");
    let (flight, leader) = {
        let mut running = IN_FLIGHT.lock().map_err(|_| poisoned())?;
        match running.get(digest) {
            Some(flight) => (Arc::clone(flight), false),
            None => {
                let flight = Arc::new(InFlight::default());
                running.insert(digest.to_string(), Arc::clone(&flight));
                (flight, true)
            }
        }
    };
    if !leader {
        let mut result = flight.result.lock().map_err(|_| poisoned())?;
        while result.is_none() {
            result = flight.done.wait(result).map_err(|_| poisoned())?;
        }
        return result.clone().unwrap_or_else(|| Err(poisoned()));
    }
    // NOTE: removed from the registry even if `convert` unwinds, so no waiter of a later
    // load hangs on a leader that is gone.
    struct Leave<'a>(&'a str, &'a InFlight);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            if let Ok(mut running) = IN_FLIGHT.lock() {
                running.remove(self.0);
            }
            if let Ok(mut result) = self.1.result.lock() {
                result.get_or_insert_with(|| Err(ServingError::internal("the conversion stopped unexpectedly")));
            }
            self.1.done.notify_all();
        }
    }
    let leave = Leave(digest, &flight);
    let result = convert();
    if let Ok(mut slot) = leave.1.result.lock() {
        *slot = Some(result.clone());
    }
    drop(leave);
    result
}

/// Finds the conversion of a SavedModel version, or makes one in the cache.
pub fn find_conversion(version_dir: &Path, options: &ConversionOptions, log_context: &str) -> ServingResult<PathBuf> {
    let digest = content_digest(version_dir)
        .map_err(|e| precondition(format!("cannot read the SavedModel in {}: {e}", version_dir.display())))?;
    let local = version_dir.join(LOCAL_CONVERSION_DIR);
    if local.join(MANIFEST).is_file() {
        match read_manifest(&local) {
            Ok(manifest) if manifest.source_sha256 == digest => {
                if manifest.format < MANIFEST_FORMAT {
                    info!(model = log_context, dir = %local.display(),
                        "the conversion beside the SavedModel is from an older onnx-serving: its inputs keep their \
                         declared shapes; run `onnx-serving convert` again for TF's leniency");
                }
                return Ok(local);
            }
            Ok(_) => warn!(model = log_context, dir = %local.display(),
                "the conversion beside the SavedModel is stale (the SavedModel changed); not using it"),
            Err(error) => warn!(model = log_context, error = %error, "ignoring the conversion beside the SavedModel"),
        }
    }
    once_per_digest(&digest, || convert_into_cache(version_dir, &digest, options, log_context))
}

/// Returns the cached conversion of `digest`, converting the SavedModel first if there is none.
fn convert_into_cache(
    version_dir: &Path,
    digest: &str,
    options: &ConversionOptions,
    log_context: &str,
) -> ServingResult<PathBuf> {
    // NOTE: keyed by the format too, so a conversion by an older converter is made again.
    let cached = options.cache_dir.join(format!("{digest}-f{MANIFEST_FORMAT}"));
    if cached.join(MANIFEST).is_file() {
        info!(model = log_context, dir = %cached.display(), "using the cached SavedModel conversion");
        return Ok(cached);
    }
    let failure_note = options.cache_dir.join(format!("{digest}-f{MANIFEST_FORMAT}.failed"));
    if let Some(reason) = remembered_failure(&failure_note) {
        return Err(precondition(format!(
            "the SavedModel in {} has no ONNX conversion, and converting it failed: {reason} (remembered from an \
             earlier attempt by this converter; delete {} to try again). Convert it with: {}",
            version_dir.display(),
            failure_note.display(),
            convert_command(version_dir)
        )));
    }
    std::fs::create_dir_all(&options.cache_dir).map_err(|e| {
        precondition(format!("cannot create --conversion_cache_dir {}: {e}", options.cache_dir.display()))
    })?;
    // NOTE: unique per attempt, so another process converting the same content never
    // writes into or deletes this one's staging directory.
    let staging = options.cache_dir.join(format!("{digest}.partial-{}-{}", std::process::id(), next_attempt()));
    let _slot = ConversionSlot::take(options.max_concurrent);
    info!(model = log_context, python = %options.python, "converting the SavedModel to ONNX (tf2onnx)");
    let started = Instant::now();
    if let Err(reason) = run_converter(&options.python, version_dir, &staging, false, options.timeout) {
        let _ = std::fs::remove_dir_all(&staging);
        if let ConverterError::Failed(text) = &reason {
            // NOTE: the same content fails the same way with this converter; a restart or a
            // copy of the model under another name does not pay for the attempt again.
            remember_failure(&failure_note, text);
        }
        return Err(precondition(format!(
            "the SavedModel in {} has no ONNX conversion, and converting it failed: {reason}. Convert it with: {}",
            version_dir.display(),
            convert_command(version_dir)
        )));
    }
    // NOTE: renamed into place whole, so a reader never sees a half-written conversion.
    if let Err(error) = std::fs::rename(&staging, &cached) {
        let _ = std::fs::remove_dir_all(&staging);
        if !cached.join(MANIFEST).is_file() {
            return Err(precondition(format!("cannot store the conversion in {}: {error}", cached.display())));
        }
    }
    info!(model = log_context, seconds = started.elapsed().as_secs_f64(), dir = %cached.display(), "SavedModel converted");
    Ok(cached)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::tensorflow::saved_model::tests::saved_model;

    #[test]
    fn the_digest_follows_content_not_place() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        for dir in [a.path(), b.path()] {
            std::fs::create_dir_all(dir.join("variables")).expect("mkdir");
            std::fs::write(dir.join("saved_model.pb"), saved_model()).expect("pb");
            std::fs::write(dir.join("variables/variables.index"), b"index").expect("index");
        }
        assert_eq!(content_digest(a.path()).expect("a"), content_digest(b.path()).expect("b"));
        std::fs::write(b.path().join("variables/variables.index"), b"other").expect("index");
        assert_ne!(content_digest(a.path()).expect("a"), content_digest(b.path()).expect("b"));
    }
}

#[cfg(test)]
mod process_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_process_past_its_timeout_is_stopped_and_stderr_is_kept() {
        let started = Instant::now();
        let (status, _) =
            run_to_end(Command::new("sleep").arg("30"), Some(Duration::from_millis(200))).expect("sleep runs");
        assert_eq!(status, None, "stopped");
        assert!(started.elapsed() < Duration::from_secs(20), "not left to run its 30 s");
        let (status, stderr) =
            run_to_end(Command::new("sh").args(["-c", "echo first >&2; echo second >&2; exit 3"]), None).expect("sh");
        assert_eq!(status.and_then(|s| s.code()), Some(3));
        assert_eq!(stderr, "first\nsecond\n");
    }

    #[test]
    fn one_conversion_per_content_at_a_time() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let digest = format!("test-digest-{}", next_attempt());
        std::thread::scope(|scope| {
            let leader = scope.spawn(|| {
                once_per_digest(&digest, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // Held until the test has seen the second load wait.
                    let _ = release_rx.lock().expect("lock").recv();
                    Err(ServingError::failed_precondition("tf2onnx failed"))
                })
            });
            // NOTE: the leader is registered once it is in the registry.
            while !IN_FLIGHT.lock().expect("registry").contains_key(&digest) {
                std::thread::yield_now();
            }
            let follower = scope.spawn(|| {
                once_per_digest(&digest, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(PathBuf::from("/never"))
                })
            });
            // NOTE: the follower holds the in-flight entry once it waits on it.
            while IN_FLIGHT.lock().expect("registry").get(&digest).map(Arc::strong_count) != Some(3) {
                std::thread::yield_now();
            }
            release_tx.send(()).expect("release");
            let leader = leader.join().expect("leader");
            let follower = follower.join().expect("follower");
            assert_eq!(leader, follower, "the waiting load gets the running conversion's result");
        });
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the SavedModel was converted once");
        assert!(!IN_FLIGHT.lock().expect("registry").contains_key(&digest), "the registry is left clean");
    }
}

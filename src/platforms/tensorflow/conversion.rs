//! SavedModel conversions to ONNX: where they are found (beside the SavedModel, in the
//! content-keyed cache) and how they are made (the converter compiled into the binary).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::manifest::{read_manifest, MANIFEST};
use super::precondition;
use crate::core::ServingResult;

/// The converter, compiled into the binary so that it always matches the server.
pub const CONVERTER_SCRIPT: &str = include_str!("../../../python/savedmodel_to_onnx.py");

/// The conversion's directory inside a version directory (written by `onnx-serving convert`).
pub const LOCAL_CONVERSION_DIR: &str = "onnx";

/// Where conversions come from when a version has none beside it.
#[derive(Debug, Clone)]
pub struct ConversionOptions {
    /// `--conversion_cache_dir`: conversions keyed by the SavedModel's content hash.
    pub cache_dir: PathBuf,
    /// `--conversion_python`: the interpreter that runs the converter.
    pub python: String,
}

impl Default for ConversionOptions {
    fn default() -> Self {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        Self { cache_dir: cache.join("onnx-serving").join("conversions"), python: "python3".into() }
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

/// Runs the converter into `output_dir`. The error carries the converter's own message.
pub fn run_converter(python: &str, saved_model_dir: &Path, output_dir: &Path) -> Result<(), String> {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let script = std::env::temp_dir().join(format!("onnx-serving-converter-{}-{run}.py", std::process::id()));
    std::fs::write(&script, CONVERTER_SCRIPT).map_err(|e| format!("cannot write the converter: {e}"))?;
    let output = Command::new(python)
        .arg(&script)
        .arg(format!("--saved_model_dir={}", saved_model_dir.display()))
        .arg(format!("--output_dir={}", output_dir.display()))
        .output();
    let _ = std::fs::remove_file(&script);
    let output = output.map_err(|e| format!("cannot run {python}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reason = stderr.lines().rev().find(|l| l.starts_with("error: ")).map_or_else(
        || stderr.lines().last().unwrap_or("no output").to_string(),
        |l| l.trim_start_matches("error: ").to_string(),
    );
    Err(reason)
}

/// Finds the conversion of a SavedModel version, or makes one in the cache.
pub fn find_conversion(version_dir: &Path, options: &ConversionOptions, log_context: &str) -> ServingResult<PathBuf> {
    let digest = content_digest(version_dir)
        .map_err(|e| precondition(format!("cannot read the SavedModel in {}: {e}", version_dir.display())))?;
    let local = version_dir.join(LOCAL_CONVERSION_DIR);
    if local.join(MANIFEST).is_file() {
        match read_manifest(&local) {
            Ok(manifest) if manifest.source_sha256 == digest => return Ok(local),
            Ok(_) => warn!(model = log_context, dir = %local.display(),
                "the conversion beside the SavedModel is stale (the SavedModel changed); not using it"),
            Err(error) => warn!(model = log_context, error = %error, "ignoring the conversion beside the SavedModel"),
        }
    }
    let cached = options.cache_dir.join(&digest);
    if cached.join(MANIFEST).is_file() {
        info!(model = log_context, dir = %cached.display(), "using the cached SavedModel conversion");
        return Ok(cached);
    }
    std::fs::create_dir_all(&options.cache_dir).map_err(|e| {
        precondition(format!("cannot create --conversion_cache_dir {}: {e}", options.cache_dir.display()))
    })?;
    let staging = options.cache_dir.join(format!("{digest}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    info!(model = log_context, python = %options.python, "converting the SavedModel to ONNX (tf2onnx)");
    let started = std::time::Instant::now();
    if let Err(reason) = run_converter(&options.python, version_dir, &staging) {
        let _ = std::fs::remove_dir_all(&staging);
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

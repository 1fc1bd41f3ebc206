//! Platform detection: a model served without `--model_platform` takes the platform each
//! version directory's contents name (a SavedModel is `tensorflow`, an `.onnx` file is
//! `onnx`), as TF Serving users never pass the flag.

use std::path::{Path, PathBuf};

use tracing::info;

use super::PlatformRegistry;
use crate::core::{Loader, ServableId, ServingError, ServingResult, SourceAdapter};

/// The platform name that asks for detection.
pub const DETECT: &str = "";

/// Returns the platform a version directory's contents name, and why.
pub fn detect(version_dir: &Path) -> ServingResult<(&'static str, String)> {
    for name in ["saved_model.pb", "saved_model.pbtxt"] {
        if version_dir.join(name).is_file() {
            return Ok(("tensorflow", format!("{name} is a SavedModel")));
        }
    }
    let entries = std::fs::read_dir(version_dir).map_err(|e| {
        ServingError::not_found(format!("cannot read version directory {}: {e}", version_dir.display()))
    })?;
    let onnx = entries
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "onnx"));
    match onnx {
        Some(file) => Ok(("onnx", format!("{} is an ONNX model", file_name(&file)))),
        None => Err(ServingError::not_found(format!(
            "cannot tell the platform of {}: it holds no saved_model.pb (tensorflow) and no ONNX model (onnx: \
             expected model.onnx or exactly one *.onnx file); give --model_platform or model_platform in the \
             model config file",
            version_dir.display()
        ))),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A SourceAdapter that picks, per version, the adapter of the platform its directory holds.
pub struct DetectingAdapter {
    registry: PlatformRegistry,
}

impl DetectingAdapter {
    pub fn new(registry: PlatformRegistry) -> Self {
        Self { registry }
    }
}

impl SourceAdapter for DetectingAdapter {
    fn platform(&self) -> &str {
        DETECT
    }

    fn adapt(&self, id: &ServableId, path: PathBuf) -> ServingResult<Box<dyn Loader>> {
        let (platform, why) = detect(&path)?;
        info!(model = %id.name, version = id.version, platform, reason = %why, "model platform detected");
        let adapter = self.registry.adapter(platform).map_err(|e| ServingError::internal(e.to_string()))?;
        adapter.adapt(id, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_names_the_platform() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = detect(dir.path()).expect_err("empty");
        assert!(error.message.contains("no saved_model.pb (tensorflow) and no ONNX model"), "{}", error.message);
        std::fs::write(dir.path().join("exported.onnx"), b"x").expect("write");
        assert_eq!(detect(dir.path()).expect("onnx"), ("onnx", "exported.onnx is an ONNX model".to_string()));
        // A SavedModel with a conversion beside it is still a SavedModel.
        std::fs::write(dir.path().join("saved_model.pb"), b"x").expect("write");
        assert_eq!(detect(dir.path()).expect("tf").0, "tensorflow");
    }
}

//! The seams of the lifecycle: sources emit aspired versions, adapters turn them into loaders.

use std::path::PathBuf;
use std::sync::Arc;

use super::error::ServingResult;
use super::servable::{Servable, ServableId};

/// Loads one servable version. Called on a blocking thread; may be called again to retry.
pub trait Loader: Send + Sync {
    fn load(&self) -> ServingResult<Arc<dyn Servable>>;
}

/// Turns a version's storage path into a loader (TF's SourceAdapter).
pub trait SourceAdapter: Send + Sync {
    /// Returns the platform name this adapter serves (`onnx`, ...).
    fn platform(&self) -> &str;

    fn adapt(&self, id: &ServableId, path: PathBuf) -> ServingResult<Box<dyn Loader>>;
}

/// One version that a source wants loaded, with where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AspiredVersion {
    pub version: i64,
    pub path: PathBuf,
}

/// Receives the complete set of versions a source wants for one model. An empty set
/// means every version of that model should be unloaded.
pub trait AspiredVersionsSink: Send + Sync {
    fn set_aspired_versions(&self, servable_name: &str, versions: Vec<AspiredVersion>);
}

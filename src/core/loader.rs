//! The seams of the lifecycle: sources emit aspired versions, adapters turn them into loaders.

use std::path::PathBuf;
use std::sync::Arc;

use super::error::ServingResult;
use super::servable::{Servable, ServableId};

/// What the layer that will call a servable tells the loader beneath it, so the servable is
/// built for that use (a batcher: its threads and its largest batch). Empty when nothing is
/// known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadHints {
    /// How many calls the caller makes at once.
    pub concurrent_calls: Option<usize>,
    /// The most rows one call carries.
    pub max_rows: Option<usize>,
}

/// Loads one servable version. Called on a blocking thread; may be called again to retry.
pub trait Loader: Send + Sync {
    fn load(&self) -> ServingResult<Arc<dyn Servable>>;

    /// Loads for a caller that uses the servable as `hints` say. Loaders that can build for
    /// a use (sessions, engine profiles) override it; the rest load as usual.
    fn load_with(&self, hints: &LoadHints) -> ServingResult<Arc<dyn Servable>> {
        let _ = hints;
        self.load()
    }
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

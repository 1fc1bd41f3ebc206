//! Servables and how requests reach them: ids, version requests, states, handles.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::error::ServingResult;
use super::signature::SignatureMap;
use super::tensor::Tensor;

/// A model name plus one of its versions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServableId {
    pub name: String,
    pub version: i64,
}

impl fmt::Display for ServableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{name: {} version: {}}}", self.name, self.version)
    }
}

/// Which version of a model a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionRequest {
    /// The highest available version.
    Latest,
    Specific(i64),
    Label(String),
}

/// The lifecycle states that GetModelStatus reports, with TF Serving's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServableState {
    Start = 10,
    Loading = 20,
    Available = 30,
    Unloading = 40,
    End = 50,
}

impl ServableState {
    pub fn name(self) -> &'static str {
        match self {
            ServableState::Start => "START",
            ServableState::Loading => "LOADING",
            ServableState::Available => "AVAILABLE",
            ServableState::Unloading => "UNLOADING",
            ServableState::End => "END",
        }
    }
}

/// One model run: inputs keyed by the model's own tensor names, and the outputs wanted.
#[derive(Debug)]
pub struct RunRequest {
    pub inputs: Vec<(String, Tensor)>,
    pub output_names: Vec<String>,
    /// The request is dropped, not run, once this passes.
    pub deadline: Option<Instant>,
}

/// Outputs keyed by the model's own tensor names, in the requested order.
pub type RunOutputs = Vec<(String, Tensor)>;

/// A loaded model version. Implementations run the model on threads of their own.
pub trait Servable: Send + Sync + 'static {
    /// Returns the signatures, keyed by signature name.
    fn signatures(&self) -> &SignatureMap;

    /// Queues one run and returns where its result will arrive. Never blocks.
    fn submit(&self, request: RunRequest) -> oneshot::Receiver<ServingResult<RunOutputs>>;

    /// Returns the execution providers the model runs on, in priority order (e.g. `["CPU"]`).
    fn execution_providers(&self) -> Vec<String>;
}

/// A short-lived reference to a loaded version. The version cannot finish unloading while
/// any handle to it is alive.
#[derive(Clone)]
pub struct ServableHandle {
    pub id: ServableId,
    pub servable: Arc<dyn Servable>,
    pub(crate) _lease: Arc<super::manager::DrainLease>,
}

impl fmt::Debug for ServableHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServableHandle").field("id", &self.id).finish()
    }
}

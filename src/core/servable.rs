//! Servables and how requests reach them: ids, version requests, states, handles.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

impl VersionRequest {
    /// Reads a version number given as text (surrounding blanks allowed), with TF's
    /// INVALID_ARGUMENT `Failed to convert version: <text> to numeric.` otherwise.
    pub fn specific(text: &str) -> ServingResult<VersionRequest> {
        text.trim().parse::<i64>().map(VersionRequest::Specific).map_err(|_| {
            super::error::ServingError::invalid_argument(format!("Failed to convert version: {text} to numeric."))
        })
    }
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
    /// The signature the request is for; servables made of one model per signature (a
    /// converted SavedModel) route by it, others ignore it.
    pub signature: String,
    pub inputs: Vec<(String, Tensor)>,
    pub output_names: Vec<String>,
    /// The request is dropped, not run, once this passes.
    pub deadline: Option<Instant>,
    /// Fired by the caller when it stops waiting; a run in progress is then stopped.
    pub cancel: CancelSignal,
}

type CancelHook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct CancelInner {
    cancelled: AtomicBool,
    hook: Mutex<Option<CancelHook>>,
}

/// A one-shot cancellation shared by a caller and the worker running its request.
///
/// The worker installs a hook (such as "terminate this ONNX Runtime run") while it runs the
/// request; `cancel` sets the flag and fires the hook, at most once.
#[derive(Clone, Default)]
pub struct CancelSignal {
    inner: Arc<CancelInner>,
}

impl fmt::Debug for CancelSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelSignal").field("cancelled", &self.is_cancelled()).finish()
    }
}

impl CancelSignal {
    /// Marks the request cancelled and fires the installed hook, if any.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        let hook = self.inner.hook.lock().ok().and_then(|mut slot| slot.take());
        if let Some(hook) = hook {
            hook();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Installs the hook that stops the run. Fires it at once if already cancelled.
    pub fn set_hook(&self, hook: impl FnOnce() + Send + 'static) {
        let pending = match self.inner.hook.lock() {
            Ok(mut slot) => {
                *slot = Some(Box::new(hook));
                // NOTE: checked under the lock, so a concurrent `cancel` either sees the hook
                // or set the flag before we look at it.
                if self.is_cancelled() {
                    slot.take()
                } else {
                    None
                }
            }
            Err(_) => None,
        };
        if let Some(hook) = pending {
            hook();
        }
    }

    /// Removes the hook once the run is over.
    pub fn clear_hook(&self) {
        if let Ok(mut slot) = self.inner.hook.lock() {
            slot.take();
        }
    }
}

/// Cancels the signal when dropped unless disarmed: a caller that stops waiting (a client
/// that went away, a timeout) stops the work it asked for.
pub struct CancelOnDrop {
    signal: Option<CancelSignal>,
}

impl CancelOnDrop {
    pub fn new(signal: CancelSignal) -> Self {
        Self { signal: Some(signal) }
    }

    /// Keeps the signal from firing: the work finished.
    pub fn disarm(mut self) {
        self.signal = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(signal) = self.signal.take() {
            signal.cancel();
        }
    }
}

/// Outputs keyed by the model's own tensor names, in the requested order.
pub type RunOutputs = Vec<(String, Tensor)>;

/// A loaded model version. Implementations run the model on threads of their own.
pub trait Servable: Send + Sync + 'static {
    /// Returns the signatures, keyed by signature name.
    fn signatures(&self) -> &SignatureMap;

    /// Queues one run and returns where its result will arrive. Never blocks.
    fn submit(&self, request: RunRequest) -> oneshot::Receiver<ServingResult<RunOutputs>>;

    /// Runs one request and waits for it. Only for dedicated threads (such as the batcher's),
    /// never on the async runtime. Servables that can run on the caller's thread override
    /// this to skip the hand-off to their own threads.
    fn run_blocking(&self, request: RunRequest) -> ServingResult<RunOutputs> {
        self.submit(request)
            .blocking_recv()
            .map_err(|_| super::error::ServingError::unavailable("the model worker stopped before answering"))?
    }

    /// Refuses at once, with the error `submit` would answer, when the queue in front of the
    /// model is full now. Transports ask before reading a request's body, so a flood is
    /// refused without the cost of reading and decoding it. Advisory (another request may
    /// take the last place meanwhile): `submit` still checks.
    fn admission(&self) -> ServingResult<()> {
        Ok(())
    }

    /// Returns the execution providers the model runs on, in priority order (e.g. `["CPU"]`).
    fn execution_providers(&self) -> Vec<String>;

    /// Returns what the loader step attached for the layers above core (see `Extensions`).
    /// Decorators that wrap a servable forward it.
    fn extensions(&self) -> &super::extensions::Extensions {
        super::extensions::Extensions::empty()
    }
}

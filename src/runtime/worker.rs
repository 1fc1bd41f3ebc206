//! Model versions served from dedicated worker threads that own their ONNX Runtime sessions.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use ort::session::{RunOptions, Session};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::convert::{from_output, to_input};
use super::model_io::{model_io, ModelIo};
use super::options::SessionOptions;
use super::OrtRuntime;
use crate::core::{RunOutputs, RunRequest, Servable, ServingError, ServingResult, SignatureMap};

/// What a refused request is told when a version's queue is full.
pub const QUEUE_FULL_MESSAGE: &str = "The model's request queue is full";

struct Job {
    request: RunRequest,
    reply_tx: oneshot::Sender<ServingResult<RunOutputs>>,
    span: tracing::Span,
}

/// The sessions of one version. A run takes one, so each session serves one run at a time.
struct SessionPool {
    sessions: Mutex<Vec<Session>>,
    returned: Condvar,
    /// The model name, for the runtime latency metric.
    model_name: String,
    /// The keys of score-map outputs, by output name, as the signatures declare them.
    map_keys: HashMap<String, Arc<[String]>>,
}

impl SessionPool {
    /// Runs `f` with a free session, waiting for one if all are busy.
    fn with_session<T>(&self, f: impl FnOnce(&mut Session) -> T) -> ServingResult<T> {
        let mut session = {
            let mut sessions = self.sessions.lock().map_err(|_| ServingError::internal("session pool poisoned"))?;
            loop {
                if let Some(session) = sessions.pop() {
                    break session;
                }
                sessions = self.returned.wait(sessions).map_err(|_| ServingError::internal("session pool poisoned"))?;
            }
        };
        let started = Instant::now();
        let result = f(&mut session);
        super::record_runtime(&self.model_name, started.elapsed());
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.push(session);
        }
        self.returned.notify_one();
        Ok(result)
    }
}

/// A loaded ONNX model: its signatures, its sessions and the worker threads that run them.
pub struct OrtServable {
    signatures: SignatureMap,
    providers: Vec<String>,
    pool: Arc<SessionPool>,
    /// Jobs submitted and not yet taken by a worker, and how many may be.
    queued: Arc<AtomicUsize>,
    queue_bound: usize,
    job_tx: Mutex<Option<mpsc::Sender<Job>>>,
    workers: Vec<JoinHandle<()>>,
}

impl OrtServable {
    /// Loads the model at `model_path` into one session per worker thread. `signatures`
    /// derives the signature map from the model's inputs and outputs.
    pub fn load(
        runtime: &OrtRuntime,
        model_path: &Path,
        options: &SessionOptions,
        workers: usize,
        log_context: &str,
        signatures: impl FnOnce(&[ModelIo], &[ModelIo]) -> ServingResult<SignatureMap>,
    ) -> ServingResult<Self> {
        let workers = workers.max(1);
        let options = &runtime.with_tensorrt_profile(model_path, options)?;
        let mut sessions = Vec::with_capacity(workers);
        let mut providers = Vec::new();
        for index in 0..workers {
            let built = runtime.build_session(model_path, options, log_context)?;
            if index == 0 {
                // NOTE: every session of a version meets the same providers; say it once.
                for fallback in &built.fallbacks {
                    warn!(
                        model = log_context,
                        provider = fallback.provider.ort_name(),
                        reason = %fallback.reason,
                        "execution provider unavailable, falling back to the next one"
                    );
                }
                info!(model = log_context, providers = ?built.active, sessions = workers, "sessions created");
            }
            providers = built.active;
            sessions.push(built.session);
        }
        let (inputs, outputs) = match sessions.first() {
            Some(session) => model_io(session),
            None => return Err(ServingError::internal("no session was created")),
        };
        let signatures = signatures(&inputs, &outputs)?;
        let queued = Arc::new(AtomicUsize::new(0));
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let model_name = log_context.rsplit_once(':').map_or(log_context, |(name, _)| name).to_string();
        let map_keys = signatures
            .values()
            .flat_map(|signature| signature.outputs.values())
            .filter_map(|info| Some((info.name.clone(), info.map_keys.clone()?)))
            .collect();
        let pool =
            Arc::new(SessionPool { sessions: Mutex::new(sessions), returned: Condvar::new(), model_name, map_keys });
        let mut handles = Vec::with_capacity(workers);
        for index in 0..workers {
            let job_rx = Arc::clone(&job_rx);
            let pool = Arc::clone(&pool);
            let queued = Arc::clone(&queued);
            let handle = std::thread::Builder::new()
                .name(format!("model-{index}"))
                .spawn(move || worker_loop(&pool, job_rx, &queued))
                .map_err(|e| ServingError::internal(format!("cannot start a model worker thread: {e}")))?;
            handles.push(handle);
        }
        let queue_bound = options.queue_bound();
        Ok(Self {
            signatures,
            providers,
            pool,
            queued,
            queue_bound,
            job_tx: Mutex::new(Some(job_tx)),
            workers: handles,
        })
    }
}

fn worker_loop(pool: &SessionPool, job_rx: Arc<Mutex<mpsc::Receiver<Job>>>, queued: &AtomicUsize) {
    loop {
        let job = {
            let Ok(receiver) = job_rx.lock() else { return };
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        queued.fetch_sub(1, Ordering::SeqCst);
        let _entered = job.span.enter();
        if job.reply_tx.is_closed() || job.request.cancel.is_cancelled() {
            debug!("dropping a run whose caller has gone away");
            continue;
        }
        if job.request.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            let _ = job
                .reply_tx
                .send(Err(ServingError::deadline_exceeded("Deadline exceeded while the request was queued")));
            continue;
        }
        let result = pool.with_session(|session| run(session, &job.request, &pool.map_keys)).and_then(|r| r);
        let _ = job.reply_tx.send(result);
    }
}

fn run(
    session: &mut Session,
    request: &RunRequest,
    map_keys: &HashMap<String, Arc<[String]>>,
) -> ServingResult<RunOutputs> {
    debug!(inputs = request.inputs.len(), "running a model call");
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for (name, tensor) in &request.inputs {
        inputs.push((name.as_str(), to_input(name, tensor)?));
    }
    let run_options =
        Arc::new(RunOptions::new().map_err(|e| ServingError::internal(format!("cannot create run options: {e}")))?);
    let terminate = Arc::clone(&run_options);
    request.cancel.set_hook(move || {
        // NOTE: returns at once; ONNX Runtime stops the run at its next check.
        let _ = terminate.terminate();
    });
    let outputs = session.run_with_options(inputs, &*run_options);
    request.cancel.clear_hook();
    if request.cancel.is_cancelled() {
        return Err(ServingError::cancelled("the model run was cancelled: its caller stopped waiting"));
    }
    let outputs = outputs.map_err(|e| ServingError::invalid_argument(format!("model run failed: {}", e.message())))?;
    let mut result = Vec::with_capacity(request.output_names.len());
    for name in &request.output_names {
        let value = outputs
            .get(name.as_str())
            .ok_or_else(|| ServingError::internal(format!("the model produced no output named '{name}'")))?;
        result.push((name.clone(), from_output(name, value, map_keys.get(name).map(|keys| &keys[..]))?));
    }
    Ok(result)
}

impl OrtServable {
    /// Whether a request submitted now would find a place in the queue (no refusal counted).
    pub fn has_room(&self) -> bool {
        self.queued.load(Ordering::SeqCst) < self.queue_bound
    }

    /// Counts a refusal for a full queue and returns its error.
    fn refuse(&self) -> ServingError {
        metrics::counter!(super::REJECTED, "model_name" => self.pool.model_name.clone(), "reason" => "queue_full")
            .increment(1);
        ServingError::unavailable(format!(
            "{}: {} requests are already waiting for this model; retry later",
            QUEUE_FULL_MESSAGE, self.queue_bound
        ))
    }
}

impl Servable for OrtServable {
    fn signatures(&self) -> &SignatureMap {
        &self.signatures
    }

    fn submit(&self, request: RunRequest) -> oneshot::Receiver<ServingResult<RunOutputs>> {
        let (reply_tx, reply_rx) = oneshot::channel();
        // NOTE: refused at once when full, so a flood is answered fast instead of waiting
        // without bound (and holding its inputs) behind the sessions.
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.queue_bound {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            let _ = reply_tx.send(Err(self.refuse()));
            return reply_rx;
        }
        let job = Job { request, reply_tx, span: tracing::Span::current() };
        let sent = match self.job_tx.lock() {
            Ok(guard) => guard.as_ref().map(|tx| tx.send(job).map_err(|e| Box::new(e.0))),
            Err(_) => None,
        };
        match sent {
            Some(Ok(())) => {}
            Some(Err(job)) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                let _ = job.reply_tx.send(Err(ServingError::unavailable("the model is unloading")));
            }
            None => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                warn!("submit after shutdown");
            }
        }
        reply_rx
    }

    fn run_blocking(&self, request: RunRequest) -> ServingResult<RunOutputs> {
        // NOTE: the caller's thread runs the session itself: no hand-off to a worker.
        self.pool.with_session(|session| run(session, &request, &self.pool.map_keys))?
    }

    fn admission(&self) -> ServingResult<()> {
        if !self.has_room() {
            return Err(self.refuse());
        }
        Ok(())
    }

    fn execution_providers(&self) -> Vec<String> {
        self.providers.clone()
    }
}

impl Drop for OrtServable {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.job_tx.lock() {
            guard.take();
        }
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

//! The dynamic batcher: a servable decorator that queues requests, merges them along
//! dimension 0 on its own batch threads, runs one model call per batch and splits the
//! outputs back (TF Serving's batching session, with its `BatchingParameters`).

pub mod merge;
pub mod params;
pub mod params_file;
pub mod queue;
#[cfg(test)]
mod queue_tests;
#[cfg(test)]
mod servable_tests;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::core::{
    CancelSignal, LoadDecorator, LoadHints, Loader, RunOutputs, RunRequest, Servable, ServableId, ServingError,
    ServingResult, SignatureMap,
};
use merge::{concat_rows, rows, split_rows};
pub use params::BatchingParameters;
use queue::{Admission, Batch, BatchQueue, NextBatch, Rejected, Task, TaskReply, QUEUE_FULL_MESSAGE};

/// TF Serving's batching metric names.
pub mod metric_names {
    pub const QUEUING_LATENCY: &str = ":tensorflow:serving:batching_session:queuing_latency";
    pub const WRAPPED_RUN_COUNT: &str = ":tensorflow:serving:batching_session:wrapped_run_count";
    pub const INPUT_BATCH_SIZE: &str = ":tensorflow:serving:batching_session:input_batch_size";
    pub const PROCESSED_BATCH_SIZE: &str = ":tensorflow:serving:batching_session:processed_batch_size";
    pub const PADDING_SIZE: &str = ":tensorflow:serving:batching_session:padding_size";
    pub const REJECTED: &str = "onnx_serving_batching_rejected_requests_total";
    pub const QUEUE_DEPTH: &str = "onnx_serving_batching_queue_rows";
}

struct Shared {
    /// The queue's parameters, read without its lock.
    params: BatchingParameters,
    queue: Mutex<BatchQueue>,
    work: Condvar,
    /// Set under the queue's lock, so a batch thread between its check and its wait cannot
    /// miss the wake-up.
    stopping: AtomicBool,
    model: String,
}

/// A servable whose requests run in batches.
pub struct BatchingServable {
    inner: Arc<dyn Servable>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Returns why a servable's signatures cannot be batched, if they cannot: an input or
/// output whose dimension 0 is fixed, or a scalar.
pub fn unbatchable_reason(signatures: &SignatureMap) -> Option<String> {
    for signature in signatures.values() {
        for (kind, infos) in [("input", &signature.inputs), ("output", &signature.outputs)] {
            for (alias, info) in infos {
                match info.shape.as_deref() {
                    Some([]) => return Some(format!("{kind} '{alias}' is a scalar")),
                    Some([first, ..]) if *first >= 0 => {
                        return Some(format!("{kind} '{alias}' has a fixed batch dimension of {first}"));
                    }
                    _ => {}
                }
            }
        }
    }
    None
}

impl BatchingServable {
    /// Wraps `inner` with a batcher, or returns `inner` unchanged when its signatures cannot
    /// be batched (logged).
    pub fn wrap(
        id: &ServableId,
        inner: Arc<dyn Servable>,
        params: BatchingParameters,
    ) -> ServingResult<Arc<dyn Servable>> {
        params.validate()?;
        if let Some(reason) = unbatchable_reason(inner.signatures()) {
            info!(model = %id.name, version = id.version, reason = %reason, "batching bypassed for this model");
            return Ok(inner);
        }
        let threads_wanted = params.num_batch_threads;
        let shared = Arc::new(Shared {
            queue: Mutex::new(BatchQueue::new(params.clone())),
            params,
            work: Condvar::new(),
            stopping: AtomicBool::new(false),
            model: id.name.clone(),
        });
        let mut threads = Vec::with_capacity(threads_wanted);
        for index in 0..threads_wanted {
            let shared = Arc::clone(&shared);
            let inner = Arc::clone(&inner);
            let handle = std::thread::Builder::new()
                .name(format!("batch-{index}"))
                .spawn(move || batch_loop(&shared, inner.as_ref()))
                .map_err(|e| ServingError::internal(format!("cannot start a batch thread: {e}")))?;
            threads.push(handle);
        }
        info!(model = %id.name, version = id.version, threads = threads_wanted, "batching enabled");
        Ok(Arc::new(Self { inner, shared, threads }))
    }
}

/// Returns the rows of a request, or `None` when it cannot join a batch (a scalar input,
/// inputs that disagree on dimension 0, or no rows).
fn request_rows(request: &RunRequest) -> Option<usize> {
    let mut found = None;
    for (_, tensor) in &request.inputs {
        let rows = rows(tensor)?;
        if found.is_some_and(|r| r != rows) {
            return None;
        }
        found = Some(rows);
    }
    found.filter(|&r| r > 0)
}

impl BatchingServable {
    /// Checks a task and splits a large one before the queue's lock is taken, so the copy
    /// never holds up the batch threads. A task that will not fit is refused before any copy.
    fn admit(&self, task: Task) -> Result<Option<Admission>, Rejected> {
        let params = &self.shared.params;
        if task.rows > params.execution_batch_size() && task.rows <= params.max_batch_size {
            let room = self.shared.queue.lock().map(|queue| queue.has_room(task.rows)).unwrap_or(true);
            if !room {
                return Err(Rejected::Full(ServingError::unavailable(QUEUE_FULL_MESSAGE), task.reply));
            }
        }
        queue::admit(params, task)
    }

    /// Queues an admitted task under the lock; the room check there is the exact one.
    fn enqueue(&self, admission: Admission) -> Result<(), Rejected> {
        match self.shared.queue.lock() {
            Ok(mut queue) => {
                let result = queue.enqueue(admission);
                metrics::gauge!(metric_names::QUEUE_DEPTH, "model_name" => self.shared.model.clone())
                    .set(queue.queued_rows() as f64);
                result
            }
            Err(_) => admission.reject(ServingError::internal("the batch queue is poisoned")),
        }
    }
}

impl Servable for BatchingServable {
    fn signatures(&self) -> &SignatureMap {
        self.inner.signatures()
    }

    fn submit(&self, request: RunRequest) -> oneshot::Receiver<ServingResult<RunOutputs>> {
        let Some(rows) = request_rows(&request) else {
            return self.inner.submit(request);
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let RunRequest { signature, inputs, output_names, deadline, cancel } = request;
        let task = Task {
            signature,
            inputs,
            output_names,
            rows,
            deadline,
            cancel,
            enqueued_at: Instant::now(),
            reply: TaskReply::Direct(reply_tx),
        };
        let pushed = self.admit(task).and_then(|admission| match admission {
            Some(admission) => self.enqueue(admission),
            None => Ok(()),
        });
        match pushed {
            Ok(()) => self.shared.work.notify_one(),
            Err(Rejected::Full(error, reply)) => {
                metrics::counter!(metric_names::REJECTED, "model_name" => self.shared.model.clone(), "reason" => "queue_full")
                    .increment(1);
                reply.send(Err(error));
            }
            Err(Rejected::Invalid(error, reply)) => {
                metrics::counter!(metric_names::REJECTED, "model_name" => self.shared.model.clone(), "reason" => "too_large")
                    .increment(1);
                reply.send(Err(error));
            }
        }
        reply_rx
    }

    fn admission(&self) -> ServingResult<()> {
        let room = self.shared.queue.lock().map(|queue| queue.has_room(1)).unwrap_or(true);
        if !room {
            metrics::counter!(metric_names::REJECTED, "model_name" => self.shared.model.clone(), "reason" => "queue_full")
                .increment(1);
            return Err(ServingError::unavailable(QUEUE_FULL_MESSAGE));
        }
        Ok(())
    }

    fn execution_providers(&self) -> Vec<String> {
        self.inner.execution_providers()
    }

    fn extensions(&self) -> &crate::core::Extensions {
        self.inner.extensions()
    }
}

impl Drop for BatchingServable {
    fn drop(&mut self) {
        {
            let _queue = self.shared.queue.lock();
            self.shared.stopping.store(true, Ordering::SeqCst);
        }
        self.shared.work.notify_all();
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
        if let Ok(mut queue) = self.shared.queue.lock() {
            queue.drain(&ServingError::unavailable("the model is unloading"));
        }
    }
}

fn stopping(shared: &Shared) -> bool {
    shared.stopping.load(Ordering::SeqCst)
}

/// A formed batch and the parameters its run needs.
struct ReadyBatch {
    batch: Batch,
    thread_pool_name: String,
    pad_variable_length: bool,
}

/// Waits for a batch; returns `None` when the servable is unloading.
fn wait_for_batch(shared: &Shared) -> Option<ReadyBatch> {
    let mut queue = shared.queue.lock().ok()?;
    loop {
        if stopping(shared) {
            return None;
        }
        let now = Instant::now();
        match queue.next_batch(now) {
            NextBatch::Ready(batch) => {
                metrics::gauge!(metric_names::QUEUE_DEPTH, "model_name" => shared.model.clone())
                    .set(queue.queued_rows() as f64);
                let params = queue.params();
                return Some(ReadyBatch {
                    batch,
                    thread_pool_name: params.thread_pool_name.clone(),
                    pad_variable_length: params.pad_variable_length_inputs,
                });
            }
            NextBatch::WaitUntil(at) => {
                let (guard, _) = shared.work.wait_timeout(queue, at.saturating_duration_since(now)).ok()?;
                queue = guard;
            }
            NextBatch::Empty => queue = shared.work.wait(queue).ok()?,
        }
    }
}

fn batch_loop(shared: &Shared, inner: &dyn Servable) {
    while let Some(ready) = wait_for_batch(shared) {
        // NOTE: another thread may form the next batch while this one runs.
        shared.work.notify_one();
        run_batch(inner, ready.batch, &ready.thread_pool_name, ready.pad_variable_length);
    }
}

fn run_batch(inner: &dyn Servable, batch: Batch, pool: &str, pad_variable_length: bool) {
    let now = Instant::now();
    for task in &batch.tasks {
        let queued = now.saturating_duration_since(task.enqueued_at).as_secs_f64() * 1e6;
        metrics::histogram!(metric_names::QUEUING_LATENCY, "thread_pool_name" => pool.to_string()).record(queued);
    }
    metrics::counter!(metric_names::WRAPPED_RUN_COUNT).increment(1);
    metrics::histogram!(metric_names::INPUT_BATCH_SIZE).record(batch.rows as f64);
    metrics::histogram!(metric_names::PROCESSED_BATCH_SIZE).record(batch.padded_rows as f64);
    metrics::histogram!(metric_names::PADDING_SIZE, "execution_batch_size" => batch.padded_rows.to_string())
        .record((batch.padded_rows - batch.rows) as f64);

    if !merge_fits(&batch, pad_variable_length) {
        // NOTE: merging would allocate more than a padded input may take; each request runs
        // alone instead, so none is refused for another's shape.
        warn!(rows = batch.rows, "a batch would pad past the input limit; running its requests one by one");
        for task in batch.tasks {
            let request = RunRequest {
                signature: task.signature,
                inputs: task.inputs,
                output_names: task.output_names,
                deadline: task.deadline,
                cancel: task.cancel,
            };
            task.reply.send(inner.run_blocking(request));
        }
        return;
    }
    let result = merged_request(&batch, pad_variable_length).and_then(|request| inner.run_blocking(request));
    let sizes: Vec<usize> = batch.tasks.iter().map(|t| t.rows).collect();
    let split = result.and_then(|outputs| {
        let mut per_task: Vec<RunOutputs> = vec![Vec::with_capacity(outputs.len()); sizes.len()];
        for (name, tensor) in &outputs {
            for (slot, part) in per_task.iter_mut().zip(split_rows(name, tensor, &sizes)?) {
                slot.push((name.clone(), part));
            }
        }
        Ok(per_task)
    });
    match split {
        Ok(per_task) => {
            for (task, outputs) in batch.tasks.into_iter().zip(per_task) {
                task.reply.send(Ok(outputs));
            }
        }
        Err(error) => {
            warn!(error = %error, rows = batch.rows, "batched run failed");
            for task in batch.tasks {
                task.reply.send(Err(error.clone()));
            }
        }
    }
}

/// True when every merged input of the batch stays within `MAX_PADDED_INPUT_BYTES`.
fn merge_fits(batch: &Batch, pad_variable_length: bool) -> bool {
    let Some(head) = batch.tasks.first() else { return true };
    (0..head.inputs.len()).all(|index| {
        merge::merged_bytes(&input_parts(batch, index), batch.padded_rows, pad_variable_length)
            .is_some_and(|bytes| bytes <= merge::MAX_PADDED_INPUT_BYTES)
    })
}

/// The tensors of input `index` of every task of the batch, in order.
fn input_parts(batch: &Batch, index: usize) -> Vec<&crate::core::Tensor> {
    batch.tasks.iter().filter_map(|t| t.inputs.get(index).map(|(_, tensor)| tensor)).collect()
}

/// Builds the one model call of a batch. The call is not cancellable on its own: it
/// serves every task in it.
fn merged_request(batch: &Batch, pad_variable_length: bool) -> ServingResult<RunRequest> {
    let head = batch.tasks.first().ok_or_else(|| ServingError::internal("empty batch"))?;
    let mut inputs = Vec::with_capacity(head.inputs.len());
    for (index, (name, _)) in head.inputs.iter().enumerate() {
        inputs.push((name.clone(), concat_rows(&input_parts(batch, index), batch.padded_rows, pad_variable_length)?));
    }
    Ok(RunRequest {
        signature: head.signature.clone(),
        inputs,
        output_names: head.output_names.clone(),
        deadline: None,
        cancel: CancelSignal::default(),
    })
}

/// Wraps every loaded version with a batcher (a `LoadDecorator`).
pub struct BatchingDecorator {
    global: BatchingParameters,
    per_model_files: bool,
}

impl BatchingDecorator {
    /// With `per_model_files` (`--enable_per_model_batching_parameters`),
    /// `<version>/batching_params.pbtxt` replaces `global` for that version.
    pub fn new(global: BatchingParameters, per_model_files: bool) -> Self {
        Self { global, per_model_files }
    }
}

impl LoadDecorator for BatchingDecorator {
    fn load(&self, id: &ServableId, path: &Path, inner: &dyn Loader) -> ServingResult<Arc<dyn Servable>> {
        let per_model = if self.per_model_files { params_file::read_per_model(path)? } else { None };
        let params = per_model.unwrap_or_else(|| self.global.clone());
        params.validate()?;
        // NOTE: the version's own parameters decide its sessions (one per batch thread, so that
        // many batches run at once) and its TensorRT profile (up to the largest batch formed).
        let hints =
            LoadHints { concurrent_calls: Some(params.num_batch_threads), max_rows: Some(params.largest_batch()) };
        let servable = inner.load_with(&hints)?;
        BatchingServable::wrap(id, servable, params)
    }
}

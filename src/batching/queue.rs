//! The batching state: queued tasks, batch formation, splitting and rejection. Plain data,
//! driven by the batch threads under a lock and by unit tests without any thread.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

use super::merge::{compatible, concat_rows, split_rows};
use super::params::BatchingParameters;
use crate::core::{CancelSignal, RunOutputs, ServingError, ServingResult, Tensor};

/// The message TF Serving returns when the queue is full.
pub const QUEUE_FULL_MESSAGE: &str = "The batch scheduling queue to which this task was submitted is full";

type ReplyTx = oneshot::Sender<ServingResult<RunOutputs>>;

/// Collects the parts of a split request and answers once every part is back, in order.
pub struct Assembler {
    state: Mutex<AssemblerState>,
}

struct AssemblerState {
    parts: Vec<Option<RunOutputs>>,
    remaining: usize,
    reply_tx: Option<ReplyTx>,
}

impl Assembler {
    fn new(parts: usize, reply_tx: ReplyTx) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(AssemblerState { parts: vec![None; parts], remaining: parts, reply_tx: Some(reply_tx) }),
        })
    }

    fn is_closed(&self) -> bool {
        self.state.lock().map(|s| s.reply_tx.as_ref().is_none_or(|tx| tx.is_closed())).unwrap_or(true)
    }

    fn complete(&self, index: usize, result: ServingResult<RunOutputs>) {
        let Ok(mut state) = self.state.lock() else { return };
        let outputs = match result {
            Ok(outputs) => outputs,
            Err(error) => {
                // NOTE: the first failed part fails the request; later parts are ignored.
                if let Some(tx) = state.reply_tx.take() {
                    let _ = tx.send(Err(error));
                }
                return;
            }
        };
        if let Some(slot) = state.parts.get_mut(index) {
            if slot.replace(outputs).is_none() {
                state.remaining -= 1;
            }
        }
        if state.remaining > 0 {
            return;
        }
        let Some(tx) = state.reply_tx.take() else { return };
        let parts: Vec<RunOutputs> = state.parts.iter_mut().filter_map(Option::take).collect();
        let _ = tx.send(join_parts(&parts));
    }
}

fn join_parts(parts: &[RunOutputs]) -> ServingResult<RunOutputs> {
    let first = parts.first().ok_or_else(|| ServingError::internal("no parts to join"))?;
    let mut joined = Vec::with_capacity(first.len());
    for (index, (name, _)) in first.iter().enumerate() {
        let tensors: Vec<&Tensor> = parts.iter().filter_map(|p| p.get(index).map(|(_, t)| t)).collect();
        let rows = tensors.iter().map(|t| t.shape.first().copied().unwrap_or(0)).sum();
        joined.push((name.clone(), concat_rows(&tensors, rows, false)?));
    }
    Ok(joined)
}

/// Where a task's outputs go.
pub enum TaskReply {
    Direct(ReplyTx),
    Part { assembler: Arc<Assembler>, index: usize },
}

impl TaskReply {
    /// Sends the task's result.
    pub fn send(self, result: ServingResult<RunOutputs>) {
        match self {
            TaskReply::Direct(tx) => {
                let _ = tx.send(result);
            }
            TaskReply::Part { assembler, index } => assembler.complete(index, result),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            TaskReply::Direct(tx) => tx.is_closed(),
            TaskReply::Part { assembler, .. } => assembler.is_closed(),
        }
    }
}

/// One request (or part of a split one) waiting for a batch.
pub struct Task {
    pub signature: String,
    pub inputs: Vec<(String, Tensor)>,
    pub output_names: Vec<String>,
    pub rows: usize,
    pub deadline: Option<Instant>,
    pub cancel: CancelSignal,
    pub enqueued_at: Instant,
    pub reply: TaskReply,
}

impl Task {
    fn fits_with(&self, head: &Task, pad_variable_length: bool) -> bool {
        self.signature == head.signature
            && self.output_names == head.output_names
            && self.inputs.len() == head.inputs.len()
            && self.inputs.iter().zip(&head.inputs).all(|((name, tensor), (head_name, head_tensor))| {
                name == head_name && compatible(tensor, head_tensor, pad_variable_length)
            })
    }

    fn is_abandoned(&self) -> bool {
        self.cancel.is_cancelled() || self.reply.is_closed()
    }
}

/// Tasks merged into one model call.
pub struct Batch {
    pub tasks: Vec<Task>,
    pub rows: usize,
    /// `rows` padded up to an allowed batch size.
    pub padded_rows: usize,
}

/// What a batch thread should do next.
pub enum NextBatch {
    Ready(Batch),
    /// The oldest task's batch closes at this instant unless it fills up first.
    WaitUntil(Instant),
    Empty,
}

/// Why a task was not queued.
pub enum Rejected {
    /// The queue is full: UNAVAILABLE, given back with the task's reply.
    Full(ServingError, TaskReply),
    /// The task can never run in a batch.
    Invalid(ServingError, TaskReply),
}

/// A task ready to queue: whole, or split into parts of at most the execution batch size.
pub struct Admission {
    parts: Vec<Task>,
    rows: usize,
}

impl Admission {
    /// Returns the rejection that answers the whole task with `error`.
    pub fn reject(self, error: ServingError) -> Result<(), Rejected> {
        // NOTE: a split task's parts share one reply; failing the first answers it.
        match self.parts.into_iter().next() {
            Some(first) => Err(Rejected::Full(error, first.reply)),
            None => Ok(()),
        }
    }
}

/// Checks a task against `max_batch_size` and splits it when it exceeds the execution batch
/// size and splitting is on. Copies the rows of a split task, so it runs outside the queue's
/// lock. Returns `None` when the task was already answered (its split failed).
pub fn admit(params: &BatchingParameters, task: Task) -> Result<Option<Admission>, Rejected> {
    if task.rows > params.max_batch_size {
        let message =
            format!("Task size {} is larger than maximum input batch size {}", task.rows, params.max_batch_size);
        return Err(Rejected::Invalid(ServingError::invalid_argument(message), task.reply));
    }
    let limit = params.execution_batch_size();
    if task.rows <= limit {
        let rows = task.rows;
        return Ok(Some(Admission { parts: vec![task], rows }));
    }
    let Task { signature, inputs, output_names, rows, deadline, cancel, enqueued_at, reply } = task;
    let TaskReply::Direct(reply_tx) = reply else {
        return Err(Rejected::Invalid(ServingError::internal("a part cannot be split again"), reply));
    };
    let sizes: Vec<usize> = (0..rows).step_by(limit).map(|start| limit.min(rows - start)).collect();
    let mut split_inputs: Vec<Vec<(String, Tensor)>> = vec![Vec::with_capacity(inputs.len()); sizes.len()];
    for (name, tensor) in &inputs {
        let parts = match split_rows(name, tensor, &sizes) {
            Ok(parts) => parts,
            Err(error) => {
                let _ = reply_tx.send(Err(error));
                return Ok(None);
            }
        };
        for (slot, part) in split_inputs.iter_mut().zip(parts) {
            slot.push((name.clone(), part));
        }
    }
    let assembler = Assembler::new(sizes.len(), reply_tx);
    let parts = split_inputs
        .into_iter()
        .zip(sizes)
        .enumerate()
        .map(|(index, (inputs, rows))| Task {
            signature: signature.clone(),
            inputs,
            output_names: output_names.clone(),
            rows,
            deadline,
            cancel: cancel.clone(),
            enqueued_at,
            reply: TaskReply::Part { assembler: Arc::clone(&assembler), index },
        })
        .collect();
    Ok(Some(Admission { parts, rows }))
}

/// The queue of one servable.
pub struct BatchQueue {
    params: BatchingParameters,
    tasks: VecDeque<Task>,
    queued_rows: usize,
}

impl BatchQueue {
    pub fn new(params: BatchingParameters) -> Self {
        Self { params, tasks: VecDeque::new(), queued_rows: 0 }
    }

    pub fn params(&self) -> &BatchingParameters {
        &self.params
    }

    pub fn queued_rows(&self) -> usize {
        self.queued_rows
    }

    /// Whether `rows` more rows fit the queue now.
    pub fn has_room(&self, rows: usize) -> bool {
        self.queued_rows + rows <= self.params.capacity_rows()
    }

    /// Checks and splits a task (`admit`), then queues it (`enqueue`): the two steps a
    /// servable runs apart, the copy outside its lock.
    pub fn push(&mut self, task: Task) -> Result<(), Rejected> {
        match admit(&self.params, task)? {
            Some(admission) => self.enqueue(admission),
            None => Ok(()),
        }
    }

    /// Queues an admitted task, all its parts or none: a task that does not fit the queue is
    /// rejected whole, at once.
    pub fn enqueue(&mut self, admission: Admission) -> Result<(), Rejected> {
        if !self.has_room(admission.rows) {
            return admission.reject(ServingError::unavailable(QUEUE_FULL_MESSAGE));
        }
        self.queued_rows += admission.rows;
        self.tasks.extend(admission.parts);
        Ok(())
    }

    /// Removes abandoned tasks (client gone) and expired ones, which are answered with
    /// DEADLINE_EXCEEDED. Returns how many were dropped.
    fn drop_dead(&mut self, now: Instant) -> usize {
        let before = self.tasks.len();
        let mut kept = VecDeque::with_capacity(self.tasks.len());
        for task in self.tasks.drain(..) {
            if task.is_abandoned() {
                self.queued_rows -= task.rows;
            } else if task.deadline.is_some_and(|d| now >= d) {
                self.queued_rows -= task.rows;
                task.reply.send(Err(ServingError::deadline_exceeded("Deadline exceeded while the request was queued")));
            } else {
                kept.push_back(task);
            }
        }
        self.tasks = kept;
        before - self.tasks.len()
    }

    /// Forms the next batch: at once when the oldest task's batch can be filled, or when its
    /// timeout has passed; otherwise says how long to wait.
    pub fn next_batch(&mut self, now: Instant) -> NextBatch {
        self.drop_dead(now);
        let Some(head) = self.tasks.front() else { return NextBatch::Empty };
        let limit = self.params.execution_batch_size();
        let pad = self.params.pad_variable_length_inputs;
        let available: usize = self.tasks.iter().filter(|t| t.fits_with(head, pad)).map(|t| t.rows).sum();
        let closes_at = head.enqueued_at + self.params.batch_timeout;
        if available < limit && now < closes_at {
            return NextBatch::WaitUntil(closes_at);
        }
        let mut taken = Vec::new();
        let mut rows = 0;
        let mut index = 0;
        while index < self.tasks.len() && rows < limit {
            let fits = {
                let task = &self.tasks[index];
                rows + task.rows <= limit && (taken.is_empty() || task.fits_with(&taken[0], pad))
            };
            if fits {
                if let Some(task) = self.tasks.remove(index) {
                    rows += task.rows;
                    taken.push(task);
                }
            } else {
                index += 1;
            }
        }
        self.queued_rows -= rows;
        NextBatch::Ready(Batch { tasks: taken, rows, padded_rows: self.params.padded_size(rows) })
    }

    /// Empties the queue, answering every task with `error` (the servable is unloading).
    pub fn drain(&mut self, error: &ServingError) {
        for task in self.tasks.drain(..) {
            task.reply.send(Err(error.clone()));
        }
        self.queued_rows = 0;
    }
}

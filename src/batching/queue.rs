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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn params(max: usize, timeout_ms: u64) -> BatchingParameters {
        BatchingParameters {
            max_batch_size: max,
            batch_timeout: Duration::from_millis(timeout_ms),
            max_enqueued_batches: 2,
            max_execution_batch_size: max,
            ..Default::default()
        }
    }

    /// Splits tasks into parts of 2 rows, and holds `enqueued` batches of 2.
    fn splitting(max: usize, enqueued: usize) -> BatchingParameters {
        BatchingParameters {
            enable_large_batch_splitting: true,
            max_execution_batch_size: 2,
            max_enqueued_batches: enqueued,
            ..params(max, 0)
        }
    }

    fn task(rows: usize, at: Instant) -> (Task, oneshot::Receiver<ServingResult<RunOutputs>>) {
        let (tx, rx) = oneshot::channel();
        let values: Vec<f32> = (0..rows * 2).map(|v| v as f32).collect();
        let task = Task {
            signature: String::new(),
            inputs: vec![("x".into(), Tensor::from_vec(vec![rows, 2], values))],
            output_names: vec!["y".into()],
            rows,
            deadline: None,
            cancel: CancelSignal::default(),
            enqueued_at: at,
            reply: TaskReply::Direct(tx),
        };
        (task, rx)
    }

    fn ready(next: NextBatch) -> Batch {
        match next {
            NextBatch::Ready(batch) => batch,
            NextBatch::WaitUntil(_) => panic!("expected a batch, got a wait"),
            NextBatch::Empty => panic!("expected a batch, got nothing"),
        }
    }

    #[test]
    fn a_full_batch_closes_at_once_and_a_partial_one_at_its_timeout() {
        let start = Instant::now();
        let mut queue = BatchQueue::new(params(4, 10));
        let mut replies = Vec::new();
        for _ in 0..3 {
            let (t, rx) = task(1, start);
            assert!(queue.push(t).is_ok());
            replies.push(rx);
        }
        match queue.next_batch(start) {
            NextBatch::WaitUntil(at) => assert_eq!(at, start + Duration::from_millis(10)),
            _ => panic!("three of four rows: wait for the timeout"),
        }
        let (t, _rx) = task(2, start);
        assert!(queue.push(t).is_ok());
        let batch = ready(queue.next_batch(start));
        assert_eq!((batch.tasks.len(), batch.rows), (3, 3), "the 2-row task does not fit beside three rows");
        let later = start + Duration::from_millis(10);
        let batch = ready(queue.next_batch(later));
        assert_eq!(batch.rows, 2, "the timeout closes the partial batch");
        assert!(matches!(queue.next_batch(later), NextBatch::Empty));
    }

    #[test]
    fn a_zero_timeout_never_waits() {
        let start = Instant::now();
        let mut queue = BatchQueue::new(params(8, 0));
        let (t, _rx) = task(1, start);
        assert!(queue.push(t).is_ok());
        assert_eq!(ready(queue.next_batch(start)).rows, 1);
    }

    #[test]
    fn batches_pad_to_allowed_sizes() {
        let start = Instant::now();
        let mut queue = BatchQueue::new(BatchingParameters { allowed_batch_sizes: vec![2, 4, 8], ..params(8, 0) });
        let mut replies = Vec::new();
        for rows in [1, 2] {
            let (t, rx) = task(rows, start);
            assert!(queue.push(t).is_ok());
            replies.push(rx);
        }
        let batch = ready(queue.next_batch(start));
        assert_eq!((batch.rows, batch.padded_rows), (3, 4));
    }

    #[test]
    fn a_full_queue_rejects_at_once() {
        let start = Instant::now();
        let mut queue = BatchQueue::new(params(2, 1000));
        for _ in 0..2 {
            let (t, _rx) = task(2, start);
            assert!(queue.push(t).is_ok());
        }
        let (t, _rx) = task(1, start);
        match queue.push(t) {
            Err(Rejected::Full(error, _)) => {
                assert_eq!(error.message, QUEUE_FULL_MESSAGE);
                assert_eq!(error.code, crate::core::Code::Unavailable);
            }
            _ => panic!("the queue holds two batches of two rows"),
        }
        assert_eq!(queue.queued_rows(), 4);
    }

    #[test]
    fn oversized_tasks_fail_without_splitting_and_split_with_it() {
        let start = Instant::now();
        let mut queue = BatchQueue::new(params(4, 0));
        let (t, _rx) = task(5, start);
        match queue.push(t) {
            Err(Rejected::Invalid(error, _)) => {
                assert_eq!(error.message, "Task size 5 is larger than maximum input batch size 4")
            }
            _ => panic!("5 rows exceed the limit of 4"),
        }

        let mut queue = BatchQueue::new(splitting(16, 8));
        let (t, mut rx) = task(5, start);
        assert!(queue.push(t).is_ok());
        let mut batches = Vec::new();
        while let NextBatch::Ready(batch) = queue.next_batch(start) {
            batches.push(batch);
        }
        assert_eq!(batches.iter().map(|b| b.rows).collect::<Vec<_>>(), vec![2, 2, 1]);
        // Answer the parts out of order; the request gets its rows back in order.
        for batch in batches.into_iter().rev() {
            for task in batch.tasks {
                let x = task.inputs[0].1.clone();
                task.reply.send(Ok(vec![("y".into(), x)]));
            }
        }
        let outputs = rx.try_recv().expect("answered").expect("ok");
        let y = &outputs[0].1;
        assert_eq!(y.shape, vec![5, 2]);
        assert_eq!(&*y.values::<f32>().expect("f32"), &(0..10).map(|v| v as f32).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn a_split_task_is_admitted_apart_and_queued_whole_or_not_at_all() {
        let start = Instant::now();
        let split = splitting(8, 3);
        let mut queue = BatchQueue::new(split.clone());
        let (t, _rx) = task(2, start);
        assert!(queue.push(t).is_ok());
        let (big, mut big_rx) = task(5, start);
        let Ok(Some(admission)) = admit(&split, big) else { panic!("five rows split into three parts") };
        match queue.enqueue(admission) {
            Err(Rejected::Full(error, reply)) => reply.send(Err(error)),
            _ => panic!("2 + 5 rows exceed the room for 6"),
        }
        assert_eq!(queue.queued_rows(), 2, "no part of the refused task stays queued");
        let error = big_rx.try_recv().expect("answered").expect_err("full");
        assert_eq!(error.message, QUEUE_FULL_MESSAGE);
        let (fits, _rx) = task(4, start);
        let Ok(Some(admission)) = admit(&split, fits) else { panic!("four rows split into two parts") };
        assert!(queue.enqueue(admission).is_ok());
        assert_eq!(queue.queued_rows(), 6);
    }

    #[test]
    fn abandoned_and_expired_tasks_are_dropped_before_running() {
        let start = Instant::now();
        let mut queue = BatchQueue::new(params(4, 0));
        let (gone, rx) = task(1, start);
        drop(rx);
        assert!(queue.push(gone).is_ok());
        let (cancelled, _rx) = task(1, start);
        cancelled.cancel.cancel();
        assert!(queue.push(cancelled).is_ok());
        let (mut expired, mut expired_rx) = task(1, start);
        expired.deadline = Some(start);
        assert!(queue.push(expired).is_ok());
        let (alive, _rx) = task(1, start);
        assert!(queue.push(alive).is_ok());
        let batch = ready(queue.next_batch(start + Duration::from_millis(1)));
        assert_eq!(batch.rows, 1, "only the live task runs");
        let error = expired_rx.try_recv().expect("answered").expect_err("deadline");
        assert_eq!(error.code, crate::core::Code::DeadlineExceeded);
        assert_eq!(queue.queued_rows(), 0);
    }

    #[test]
    fn incompatible_tasks_wait_for_their_own_batch() {
        let start = Instant::now();
        let mut queue = BatchQueue::new(params(8, 0));
        let (a, _a) = task(1, start);
        let (mut b, _b) = task(1, start);
        b.inputs = vec![("x".into(), Tensor::from_vec(vec![1, 3], vec![0.0f32; 3]))];
        let (c, _c) = task(1, start);
        for t in [a, b, c] {
            assert!(queue.push(t).is_ok());
        }
        assert_eq!(ready(queue.next_batch(start)).tasks.len(), 2, "the [1,3] task cannot join [1,2] ones");
        assert_eq!(ready(queue.next_batch(start)).tasks.len(), 1);
    }
}

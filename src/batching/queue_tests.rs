//! Tests of the batch queue's decisions: admission, batch formation, splitting, deadlines.

use std::time::Duration;

use std::time::Instant;

use tokio::sync::oneshot;

use super::params::BatchingParameters;
use super::queue::*;
use crate::core::{CancelSignal, RunOutputs, ServingResult, Tensor};

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

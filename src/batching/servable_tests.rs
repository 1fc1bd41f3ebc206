//! Tests of the batching servable: stopping under load, the hints it gives its loader, and
//! batches that padding would grow too large.

use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::core::testing::HalfPlusTwo;
use crate::core::{CancelSignal, Tensor};

/// A request for `y` with the float input `x` of `shape`, every value 2.0.
fn request(shape: Vec<usize>) -> RunRequest {
    let count = shape.iter().product();
    RunRequest {
        signature: crate::core::DEFAULT_SIGNATURE.into(),
        inputs: vec![("x".into(), Tensor::from_vec(shape, vec![2.0f32; count]))],
        output_names: vec!["y".into()],
        deadline: None,
        cancel: CancelSignal::default(),
    }
}

#[test]
fn stopping_under_load_never_hangs_and_answers_every_request() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let id = ServableId { name: "m".into(), version: 1 };
        let params = BatchingParameters {
            max_batch_size: 2,
            max_execution_batch_size: 2,
            batch_timeout: Duration::from_micros(50),
            num_batch_threads: 2,
            max_enqueued_batches: 64,
            ..Default::default()
        };
        for round in 0..2000 {
            let servable = BatchingServable::wrap(&id, Arc::new(HalfPlusTwo), params.clone()).expect("wraps");
            let replies: Vec<_> = (0..round % 5).map(|_| servable.submit(request(vec![1, 1]))).collect();
            drop(servable);
            for reply in replies {
                // Answered (run, or refused as unloading), never dropped unanswered.
                assert!(reply.blocking_recv().is_ok(), "round {round}: a request was never answered");
            }
        }
        let _ = done_tx.send(());
    });
    done_rx.recv_timeout(Duration::from_secs(120)).expect("2000 batcher stops finished without a hang");
}

/// Records the hints it was loaded with.
#[derive(Default)]
struct Recording(Mutex<Vec<LoadHints>>);

impl Loader for Recording {
    fn load(&self) -> ServingResult<Arc<dyn Servable>> {
        self.load_with(&LoadHints::default())
    }

    fn load_with(&self, hints: &LoadHints) -> ServingResult<Arc<dyn Servable>> {
        if let Ok(mut seen) = self.0.lock() {
            seen.push(*hints);
        }
        Ok(Arc::new(HalfPlusTwo))
    }
}

#[test]
fn the_versions_own_parameters_size_its_sessions_and_batches() {
    let id = ServableId { name: "m".into(), version: 1 };
    let global = BatchingParameters { max_batch_size: 8, num_batch_threads: 2, ..Default::default() };
    let dir = tempfile::tempdir().expect("tempdir");
    let loader = Recording::default();
    let decorator = BatchingDecorator::new(global, true);
    decorator.load(&id, dir.path(), &loader).expect("global parameters");
    std::fs::write(
        dir.path().join(params_file::PER_MODEL_FILE),
        "max_batch_size { value: 64 } num_batch_threads { value: 6 } allowed_batch_sizes: 16 allowed_batch_sizes: 64",
    )
    .expect("write");
    decorator.load(&id, dir.path(), &loader).expect("per-model parameters");
    let seen = loader.0.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![
            LoadHints { concurrent_calls: Some(2), max_rows: Some(8) },
            LoadHints { concurrent_calls: Some(6), max_rows: Some(64) },
        ]
    );
}

#[test]
fn a_batch_that_would_pad_to_terabytes_runs_its_requests_alone() {
    let id = ServableId { name: "m".into(), version: 1 };
    let params = BatchingParameters {
        max_batch_size: 2,
        max_execution_batch_size: 2,
        // Long enough that the two requests always form one batch.
        batch_timeout: Duration::from_secs(10),
        num_batch_threads: 1,
        pad_variable_length_inputs: true,
        ..Default::default()
    };
    let servable = BatchingServable::wrap(&id, Arc::new(HalfPlusTwo), params).expect("wraps");
    // 4 MB each; padded together, 2 x 10^12 floats.
    let tall = servable.submit(request(vec![1, 1_000_000, 1]));
    let wide = servable.submit(request(vec![1, 1, 1_000_000]));
    for (reply, shape) in [(tall, vec![1, 1_000_000, 1]), (wide, vec![1, 1, 1_000_000])] {
        let outputs = reply.blocking_recv().expect("answered").expect("ran");
        assert_eq!(outputs[0].1.shape, shape);
        assert_eq!(outputs[0].1.values::<f32>().expect("floats")[0], 3.0);
    }
}

#[test]
fn merged_sizes_are_computed_without_overflow() {
    let tall = Tensor::from_vec(vec![1, 3, 1], vec![0f32; 3]);
    let wide = Tensor::from_vec(vec![1, 1, 3], vec![0f32; 3]);
    assert_eq!(merge::merged_bytes(&[&tall, &wide], 2, true), Some(2 * 3 * 3 * 4));
    assert_eq!(merge::merged_bytes(&[&tall, &tall], 4, false), Some(4 * 3 * 4));
    let huge = Tensor { dtype: crate::core::DType::Float, shape: vec![1, usize::MAX / 2], data: tall.data.clone() };
    assert_eq!(merge::merged_bytes(&[&huge], 4, false), None);
}

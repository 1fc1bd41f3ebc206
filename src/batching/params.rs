//! TF Serving's `BatchingParameters`, with its defaults and validation.

use std::time::Duration;

use crate::core::{ServingError, ServingResult};

/// How one servable batches, as TF Serving's `BatchingParameters` (unset fields take TF's
/// defaults when these are built from a config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchingParameters {
    /// The largest request (with splitting) or batch (without) in rows.
    pub max_batch_size: usize,
    /// How long a batch waits for more requests after its first one.
    pub batch_timeout: Duration,
    /// Queue bound, in batches of the execution size.
    pub max_enqueued_batches: usize,
    /// Batches that run at once; each has its own session.
    pub num_batch_threads: usize,
    pub thread_pool_name: String,
    /// Batches are padded up to the next of these sizes.
    pub allowed_batch_sizes: Vec<usize>,
    /// Pads differing non-batch dimensions to the largest in the batch.
    pub pad_variable_length_inputs: bool,
    /// Splits requests larger than `max_execution_batch_size` across batches.
    pub enable_large_batch_splitting: bool,
    pub max_execution_batch_size: usize,
}

impl Default for BatchingParameters {
    fn default() -> Self {
        Self {
            max_batch_size: 1000,
            batch_timeout: Duration::ZERO,
            max_enqueued_batches: 10,
            num_batch_threads: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
            thread_pool_name: "batch_threads".to_string(),
            allowed_batch_sizes: Vec::new(),
            pad_variable_length_inputs: false,
            enable_large_batch_splitting: false,
            max_execution_batch_size: 1000,
        }
    }
}

impl BatchingParameters {
    /// Returns the most rows one model call may take.
    pub fn execution_batch_size(&self) -> usize {
        if self.enable_large_batch_splitting {
            self.max_execution_batch_size
        } else {
            self.max_batch_size
        }
    }

    /// Returns the size a batch of `rows` is padded to.
    pub fn padded_size(&self, rows: usize) -> usize {
        self.allowed_batch_sizes.iter().copied().find(|&size| size >= rows).unwrap_or(rows)
    }

    /// Returns the queue bound in rows.
    pub fn capacity_rows(&self) -> usize {
        self.max_enqueued_batches.saturating_mul(self.execution_batch_size())
    }

    /// The most rows a batch formed with these parameters carries (after padding).
    pub fn largest_batch(&self) -> usize {
        let formed =
            if self.enable_large_batch_splitting { self.max_execution_batch_size } else { self.max_batch_size };
        self.allowed_batch_sizes.last().copied().unwrap_or(formed).max(1)
    }

    /// Checks the rules TF Serving enforces when a model loads.
    pub fn validate(&self) -> ServingResult<()> {
        let positive = [
            ("max_batch_size", self.max_batch_size),
            ("max_enqueued_batches", self.max_enqueued_batches),
            ("num_batch_threads", self.num_batch_threads),
            ("max_execution_batch_size", self.execution_batch_size()),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ServingError::invalid_argument(format!("{name} must be positive; was 0")));
            }
        }
        if self.enable_large_batch_splitting && self.max_execution_batch_size > self.max_batch_size {
            return Err(ServingError::invalid_argument(format!(
                "max_execution_batch_size ({}) must not exceed max_batch_size ({})",
                self.max_execution_batch_size, self.max_batch_size
            )));
        }
        if let Some(&last) = self.allowed_batch_sizes.last() {
            if self.allowed_batch_sizes.windows(2).any(|w| w[0] >= w[1]) || self.allowed_batch_sizes[0] == 0 {
                return Err(ServingError::invalid_argument(
                    "allowed_batch_sizes entries must be positive and monotonically increasing",
                ));
            }
            let expected = self.execution_batch_size();
            if last != expected {
                return Err(ServingError::invalid_argument(format!(
                    "Last entry in allowed_batch_sizes must match max_batch_size; last entry was {last}; expected {expected}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_tf_serving() {
        let params = BatchingParameters::default();
        assert_eq!((params.max_batch_size, params.max_enqueued_batches), (1000, 10));
        assert_eq!(params.batch_timeout, Duration::ZERO);
        assert!(params.validate().is_ok());
    }

    #[test]
    fn allowed_sizes_pad_up_and_must_end_at_the_limit() {
        let params = BatchingParameters { max_batch_size: 8, allowed_batch_sizes: vec![2, 4, 8], ..Default::default() };
        assert!(params.validate().is_ok());
        assert_eq!((params.padded_size(1), params.padded_size(3), params.padded_size(8)), (2, 4, 8));
        let wrong = BatchingParameters { max_batch_size: 16, ..params.clone() };
        assert_eq!(
            wrong.validate().expect_err("last entry").message,
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 8; expected 16"
        );
        let unsorted = BatchingParameters { allowed_batch_sizes: vec![4, 2, 8], ..params };
        assert!(unsorted.validate().is_err());
    }

    #[test]
    fn splitting_uses_the_execution_size() {
        let params = BatchingParameters {
            max_batch_size: 64,
            enable_large_batch_splitting: true,
            max_execution_batch_size: 16,
            max_enqueued_batches: 3,
            ..Default::default()
        };
        assert_eq!(params.execution_batch_size(), 16);
        assert_eq!(params.capacity_rows(), 48);
        let too_big = BatchingParameters { max_execution_batch_size: 128, ..params };
        assert!(too_big.validate().is_err());
    }
}

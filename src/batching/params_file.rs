//! TF Serving's text-format `BatchingParameters` files as batcher parameters.

use std::path::Path;
use std::time::Duration;

use super::BatchingParameters;
use crate::core::{ServingError, ServingResult};
use crate::proto::tensorflow::serving::BatchingParameters as BatchingParametersProto;
use crate::proto::text_format::{parse_text_proto, read_text_file, TextFormatError};

/// The per-model file read from a version directory with `--enable_per_model_batching_parameters`.
pub const PER_MODEL_FILE: &str = "batching_params.pbtxt";

const MESSAGE: &str = "tensorflow.serving.BatchingParameters";

fn non_negative(name: &str, value: Option<i64>, default: usize) -> Result<usize, TextFormatError> {
    match value {
        None => Ok(default),
        Some(v) => {
            usize::try_from(v).map_err(|_| TextFormatError::Invalid(format!("{name} must not be negative; was {v}")))
        }
    }
}

/// Converts the proto, applying TF Serving's defaults to unset fields.
pub fn from_proto(
    proto: &BatchingParametersProto,
    default_pool_name: &str,
) -> Result<BatchingParameters, TextFormatError> {
    let defaults = BatchingParameters::default();
    let max_batch_size = non_negative("max_batch_size", proto.max_batch_size, defaults.max_batch_size)?;
    let timeout = non_negative("batch_timeout_micros", proto.batch_timeout_micros, 0)?;
    let allowed_batch_sizes = proto
        .allowed_batch_sizes
        .iter()
        .map(|&v| {
            usize::try_from(v)
                .map_err(|_| TextFormatError::Invalid(format!("allowed_batch_sizes must not be negative; was {v}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BatchingParameters {
        max_batch_size,
        batch_timeout: Duration::from_micros(timeout as u64),
        max_enqueued_batches: non_negative(
            "max_enqueued_batches",
            proto.max_enqueued_batches,
            defaults.max_enqueued_batches,
        )?,
        num_batch_threads: non_negative("num_batch_threads", proto.num_batch_threads, defaults.num_batch_threads)?,
        thread_pool_name: proto.thread_pool_name.clone().unwrap_or_else(|| default_pool_name.to_string()),
        allowed_batch_sizes,
        pad_variable_length_inputs: proto.pad_variable_length_inputs,
        enable_large_batch_splitting: proto.enable_large_batch_splitting.unwrap_or(false),
        max_execution_batch_size: non_negative(
            "max_execution_batch_size",
            proto.max_execution_batch_size,
            max_batch_size,
        )?,
    })
}

/// Parses and validates text-format `BatchingParameters`.
pub fn parse(text: &str, default_pool_name: &str) -> Result<BatchingParameters, TextFormatError> {
    let proto: BatchingParametersProto = parse_text_proto(text, MESSAGE)?;
    let params = from_proto(&proto, default_pool_name)?;
    params.validate().map_err(|e| TextFormatError::Invalid(e.message))?;
    Ok(params)
}

/// Reads `--batching_parameters_file`.
pub fn read_file(path: &Path, default_pool_name: &str) -> Result<BatchingParameters, TextFormatError> {
    let text = read_text_file(path, None)?;
    parse(&text, default_pool_name).map_err(|e| e.in_file(path))
}

/// Reads `<version>/batching_params.pbtxt`; `Ok(None)` when the version has none. A bad
/// file fails the version's load.
pub fn read_per_model(version_dir: &Path) -> ServingResult<Option<BatchingParameters>> {
    let path = version_dir.join(PER_MODEL_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    read_file(&path, "batch_threads").map(Some).map_err(|e| ServingError::invalid_argument(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_fields_take_tf_defaults() {
        let params = parse("max_batch_size { value: 8 }", "model_server_batch_threads").expect("parse");
        assert_eq!(params.max_batch_size, 8);
        assert_eq!(params.max_execution_batch_size, 8, "defaults to max_batch_size");
        assert_eq!(params.max_enqueued_batches, 10);
        assert_eq!(params.thread_pool_name, "model_server_batch_threads");
        assert!(!params.enable_large_batch_splitting);
    }

    #[test]
    fn every_field_parses() {
        let text = r#"
            # comments are allowed, as in protobuf's text format
            max_batch_size { value: 32 }  # trailing too
            batch_timeout_micros { value: 5000 }
            max_enqueued_batches { value: 4 }
            num_batch_threads { value: 2 }
            thread_pool_name { value: "pool" }
            allowed_batch_sizes: 8
            allowed_batch_sizes: 16
            pad_variable_length_inputs: true
            enable_large_batch_splitting { value: true }
            max_execution_batch_size { value: 16 }
        "#;
        let params = parse(text, "x").expect("parse");
        assert_eq!(params.batch_timeout, Duration::from_millis(5));
        assert_eq!(params.allowed_batch_sizes, vec![8, 16]);
        assert_eq!(params.thread_pool_name, "pool");
        assert!(params.pad_variable_length_inputs && params.enable_large_batch_splitting);
        assert_eq!(params.execution_batch_size(), 16);
    }

    #[test]
    fn validation_and_syntax_errors_are_reported() {
        let error =
            parse("max_batch_size { value: 16 }\nallowed_batch_sizes: 8", "x").expect_err("last entry").to_string();
        assert!(error.contains("Last entry in allowed_batch_sizes must match max_batch_size"), "{error}");
        let error = parse("max_batch_size { value: -1 }", "x").expect_err("negative").to_string();
        assert!(error.contains("must not be negative"), "{error}");
        let error = parse("max_batch_size {", "x").expect_err("syntax").to_string();
        assert!(error.starts_with("Error parsing text-format tensorflow.serving.BatchingParameters: 1:"), "{error}");
    }

    #[test]
    fn tf_servings_own_test_file_parses() {
        let Some(path) = crate::tfs_testdata("batching_config.txt") else { return };
        let params = read_file(&path, "x").expect("TF Serving's batching_config.txt parses");
        assert_eq!((params.max_batch_size, params.max_enqueued_batches, params.num_batch_threads), (128, 1_000_000, 8));
        assert_eq!(params.batch_timeout, Duration::ZERO);
    }
}

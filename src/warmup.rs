//! Model warmup, as TF Serving's: before a version becomes AVAILABLE, the requests recorded in
//! `<version>/assets.extra/tf_serving_warmup_requests` (a TFRecord file of `PredictionLog`s)
//! are run against it. Any failure fails the load, so the previous version keeps serving.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use tracing::info;

use crate::codec::tensor_proto::decode_inputs_within;
use crate::core::example::ExampleMethod;
use crate::core::{Code, LoadDecorator, Loader, Servable, ServableId, ServingError, ServingResult, DEFAULT_SIGNATURE};
use crate::inference::predict;
use crate::proto::tensorflow::serving::{prediction_log, PredictRequest, PredictionLog};

/// Where TF Serving keeps warmup data inside a version directory.
pub const WARMUP_FILE: &str = "assets.extra/tf_serving_warmup_requests";
/// TF Serving's limit on warmup records.
pub const MAX_WARMUP_RECORDS: usize = 1000;

pub const WARMUP_LATENCY: &str = ":tensorflow:serving:model_warmup_latency";
pub const WARMUP_RECORDS_READ: &str = ":tensorflow:serving:model_warmup_records_read";

fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// Splits a TFRecord file into its records, checking both checksums of each.
pub fn read_tfrecords(data: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut records = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let corrupt = |what: &str| format!("record {} is corrupt ({what})", records.len());
        if rest.len() < 12 {
            return Err(corrupt("truncated header"));
        }
        let (header, tail) = rest.split_at(12);
        let length_bytes = &header[..8];
        let length = u64::from_le_bytes(length_bytes.try_into().map_err(|_| corrupt("header"))?);
        let length_crc = u32::from_le_bytes(header[8..12].try_into().map_err(|_| corrupt("header"))?);
        if masked_crc(length_bytes) != length_crc {
            return Err(corrupt("length checksum mismatch"));
        }
        let length = usize::try_from(length).map_err(|_| corrupt("length"))?;
        if tail.len() < length.saturating_add(4) {
            return Err(corrupt("truncated data"));
        }
        let (record, tail) = tail.split_at(length);
        let data_crc = u32::from_le_bytes(tail[..4].try_into().map_err(|_| corrupt("data checksum"))?);
        if masked_crc(record) != data_crc {
            return Err(corrupt("data checksum mismatch"));
        }
        records.push(record);
        rest = &tail[4..];
    }
    Ok(records)
}

/// Frames records as TFRecord (for tests and tools that write warmup files).
pub fn write_tfrecords(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        let length = (record.len() as u64).to_le_bytes();
        out.extend_from_slice(&length);
        out.extend_from_slice(&masked_crc(&length).to_le_bytes());
        out.extend_from_slice(record);
        out.extend_from_slice(&masked_crc(record).to_le_bytes());
    }
    out
}

fn run_predict(servable: &dyn Servable, request: PredictRequest) -> ServingResult<()> {
    let signature = request.model_spec.as_ref().map(|s| s.signature_name.as_str()).unwrap_or_default();
    let signature = if signature.is_empty() { DEFAULT_SIGNATURE } else { signature };
    let inputs = decode_inputs_within(request.inputs, usize::MAX)?;
    // NOTE: loads run on blocking threads, where waiting on the runtime is allowed.
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| ServingError::internal("warmup needs the server's async runtime"))?;
    handle.block_on(predict(servable, signature, inputs, &request.output_filter, None)).map(|_| ())
}

/// Runs a Classify or Regress warmup request `times` times.
fn run_examples(
    servable: &dyn Servable,
    spec: Option<&crate::proto::tensorflow::serving::ModelSpec>,
    input: Option<&crate::proto::tensorflow::serving::Input>,
    method: ExampleMethod,
    times: usize,
) -> ServingResult<()> {
    let signature = spec.map(|s| s.signature_name.as_str()).unwrap_or_default();
    let input = crate::codec::example_proto::input_from_proto(input)?;
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| ServingError::internal("warmup needs the server's async runtime"))?;
    for _ in 0..times {
        handle
            .block_on(crate::inference::run_example_method(servable, method, signature, &input, None))
            .map_err(|e| ServingError::new(e.code, format!("warmup request failed: {}", e.message)))?;
    }
    Ok(())
}

/// Runs the warmup file of `version_dir` against `servable`, `iterations` times per record.
/// No file is fine; a bad file or a failing request is an error.
pub fn run_warmup(servable: &dyn Servable, version_dir: &Path, iterations: usize) -> ServingResult<usize> {
    let path = version_dir.join(WARMUP_FILE);
    let Ok(data) = std::fs::read(&path) else {
        info!(path = %path.display(), "No warmup data file found at {}", path.display());
        return Ok(0);
    };
    let started = Instant::now();
    let model_path = version_dir.display().to_string();
    let result = (|| {
        let records = read_tfrecords(&data).map_err(|e| {
            ServingError::new(
                Code::DataLoss,
                format!("{e} in {}. Please verify your warmup data is in TFRecord format.", path.display()),
            )
        })?;
        if records.len() > MAX_WARMUP_RECORDS {
            return Err(ServingError::invalid_argument(format!(
                "Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {}",
                path.display()
            )));
        }
        for record in &records {
            let log = PredictionLog::decode(*record)
                .map_err(|e| ServingError::invalid_argument(format!("Failed to parse warmup record: {e}")))?;
            match log.log_type {
                Some(prediction_log::LogType::PredictLog(predict_log)) => {
                    let request = predict_log.request.unwrap_or_default();
                    for _ in 0..iterations.max(1) {
                        run_predict(servable, request.clone())
                            .map_err(|e| ServingError::new(e.code, format!("warmup request failed: {}", e.message)))?;
                    }
                }
                Some(prediction_log::LogType::ClassifyLog(log)) => {
                    let request = log.request.unwrap_or_default();
                    let (spec, input) = (request.model_spec.as_ref(), request.input.as_ref());
                    run_examples(servable, spec, input, ExampleMethod::Classify, iterations.max(1))?;
                }
                Some(prediction_log::LogType::RegressLog(log)) => {
                    let request = log.request.unwrap_or_default();
                    let (spec, input) = (request.model_spec.as_ref(), request.input.as_ref());
                    run_examples(servable, spec, input, ExampleMethod::Regress, iterations.max(1))?;
                }
                Some(prediction_log::LogType::MultiInferenceLog(log)) => {
                    let request = log.request.unwrap_or_default();
                    for _ in 0..iterations.max(1) {
                        for task in &request.tasks {
                            // NOTE: any method other than classify runs as regress, as before.
                            let method =
                                ExampleMethod::from_method_name(&task.method_name).unwrap_or(ExampleMethod::Regress);
                            run_examples(servable, task.model_spec.as_ref(), request.input.as_ref(), method, 1)?;
                        }
                    }
                }
                Some(prediction_log::LogType::PredictStreamedLog(_)) => {
                    return Err(ServingError::unimplemented("Unsupported log_type for warmup: 7"));
                }
                None => return Err(ServingError::unimplemented(
                    "Unsupported log_type for warmup: the record holds no known log (session_run_log is not supported)",
                )),
            }
        }
        Ok(records.len())
    })();
    let status = match &result {
        Ok(_) => "OK".to_string(),
        Err(error) => error.to_status_string(),
    };
    metrics::histogram!(WARMUP_LATENCY, "model_path" => model_path.clone(), "status" => status.clone())
        .record(started.elapsed().as_secs_f64() * 1e6);
    if let Ok(count) = &result {
        metrics::counter!(WARMUP_RECORDS_READ, "model_path" => model_path, "status" => status).increment(*count as u64);
        info!(path = %path.display(), records = count, "warmup finished");
    }
    result
}

/// Warms up every loaded version before it serves (a `LoadDecorator`).
pub struct WarmupDecorator {
    iterations: usize,
}

impl WarmupDecorator {
    /// `iterations` is `--num_request_iterations_for_warmup` (0 means 1).
    pub fn new(iterations: usize) -> Self {
        Self { iterations }
    }
}

impl LoadDecorator for WarmupDecorator {
    fn load(&self, _id: &ServableId, path: &Path, inner: &dyn Loader) -> ServingResult<Arc<dyn Servable>> {
        let servable = inner.load()?;
        run_warmup(servable.as_ref(), path, self.iterations)?;
        Ok(servable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tfrecords_round_trip_and_detect_corruption() {
        let records = vec![b"first".to_vec(), Vec::new(), vec![7u8; 300]];
        let file = write_tfrecords(&records);
        let read = read_tfrecords(&file).expect("valid");
        assert_eq!(read, records.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let mut flipped = file.clone();
        flipped[14] ^= 1;
        assert!(read_tfrecords(&flipped).expect_err("data crc").contains("data checksum mismatch"));
        let mut bad_length = file.clone();
        bad_length[0] ^= 1;
        assert!(read_tfrecords(&bad_length).expect_err("length crc").contains("length checksum"));
        assert!(read_tfrecords(&file[..file.len() - 2]).expect_err("truncated").contains("truncated"));
    }

    #[test]
    fn framing_matches_tensorflows_writer() {
        // NOTE: the bytes tf.io.TFRecordWriter (TensorFlow 2.21) writes for the one record b"first".
        let tensorflow: [u8; 21] =
            [0x05, 0, 0, 0, 0, 0, 0, 0, 0xea, 0xb2, 0x04, 0x3e, b'f', b'i', b'r', b's', b't', 0x55, 0xff, 0x23, 0xe5];
        assert_eq!(write_tfrecords(&[b"first".to_vec()]), tensorflow);
    }
}

//! Warmup files: TFRecord framing, then each record as a `PredictionLog` whose request is
//! decoded as a warmup would. Checked: framing round-trips byte for byte, the allocation
//! bound, and predict inputs within the decode budget.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onnx_serving::codec::example_proto::input_from_proto;
use onnx_serving::codec::tensor_proto::decode_inputs_within;
use onnx_serving::proto::tensorflow::serving::{prediction_log::LogType, PredictionLog};
use onnx_serving::warmup::{read_tfrecords, write_tfrecords};
use onnx_serving_fuzz::{decoded_bytes, measure, Bound, DECODE_BUDGET};
use prost::Message;

/// prost's logs and, per record in turn, its decoded inputs and a copy.
const BOUND: Bound = Bound { per_input_byte: 96, budget_factor: 2, budget: DECODE_BUDGET, constant: 64 << 10 };

fuzz_target!(|data: &[u8]| {
    let (records, peak) = measure(|| read_tfrecords(data));
    BOUND.check("TFRecord framing", data.len(), peak);
    let records = match records {
        Err(error) => {
            assert!(error.starts_with("record "), "{error}");
            return;
        }
        Ok(records) => records,
    };
    let owned: Vec<Vec<u8>> = records.iter().map(|r| r.to_vec()).collect();
    assert!(write_tfrecords(&owned) == data, "the records framed again differ from the file");
    for record in records {
        let (_, peak) = measure(|| {
            let Ok(log) = PredictionLog::decode(record) else { return };
            match log.log_type {
                Some(LogType::PredictLog(log)) => {
                    let inputs = log.request.unwrap_or_default().inputs;
                    if let Ok(inputs) = decode_inputs_within(inputs, DECODE_BUDGET) {
                        assert!(inputs.values().map(decoded_bytes).sum::<usize>() <= DECODE_BUDGET);
                    }
                }
                Some(LogType::ClassifyLog(log)) => {
                    let _ = input_from_proto(log.request.unwrap_or_default().input.as_ref());
                }
                Some(LogType::RegressLog(log)) => {
                    let _ = input_from_proto(log.request.unwrap_or_default().input.as_ref());
                }
                _ => {}
            }
        });
        BOUND.check("warmup record", record.len(), peak);
    }
});

//! tf.Example protos (`tensorflow.Example`, `tensorflow.serving.Input`) to core Examples, and
//! classification and regression results to TF Serving's result protos.

use bytes::Bytes;

use crate::core::example::{Example, ExampleInput, ExampleResults, Feature};
use crate::core::{ServingError, ServingResult};
use crate::proto::tensorflow as tf;
use crate::proto::tensorflow::serving as tfs;

/// Converts one `tensorflow.Example`.
pub fn example_from_proto(example: &tf::Example) -> Example {
    let Some(features) = &example.features else { return Example::new() };
    features
        .feature
        .iter()
        .map(|(key, feature)| {
            let value = match &feature.kind {
                None => Feature::Empty,
                Some(tf::feature::Kind::FloatList(list)) => Feature::Floats(list.value.clone()),
                Some(tf::feature::Kind::Int64List(list)) => Feature::Int64s(list.value.clone()),
                Some(tf::feature::Kind::BytesList(list)) => Feature::Bytes(list.value.clone()),
            };
            (key.clone(), value)
        })
        .collect()
}

/// Converts a request's `Input`. A missing input, or one with no examples, is TF's
/// INVALID_ARGUMENT `Input is empty.`
pub fn input_from_proto(input: Option<&tfs::Input>) -> ServingResult<ExampleInput> {
    let empty = || ServingError::invalid_argument("Input is empty.");
    let input = match input.and_then(|i| i.kind.as_ref()) {
        None => return Err(empty()),
        Some(tfs::input::Kind::ExampleList(list)) => {
            ExampleInput { examples: list.examples.iter().map(example_from_proto).collect(), context: None }
        }
        Some(tfs::input::Kind::ExampleListWithContext(list)) => ExampleInput {
            examples: list.examples.iter().map(example_from_proto).collect(),
            context: list.context.as_ref().map(example_from_proto),
        },
    };
    if input.examples.is_empty() {
        return Err(empty());
    }
    Ok(input)
}

/// One `Classifications` per example.
pub fn classification_result(results: &[Vec<(Bytes, f32)>]) -> tfs::ClassificationResult {
    tfs::ClassificationResult {
        classifications: results
            .iter()
            .map(|classes| tfs::Classifications {
                classes: classes
                    .iter()
                    .map(|(label, score)| tfs::Class {
                        label: String::from_utf8_lossy(label).into_owned(),
                        score: *score,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// One `Regression` per example.
pub fn regression_result(values: &[f32]) -> tfs::RegressionResult {
    tfs::RegressionResult { regressions: values.iter().map(|&value| tfs::Regression { value }).collect() }
}

/// The result of one MultiInference task.
pub fn inference_result(results: &ExampleResults) -> tfs::inference_result::Result {
    match results {
        ExampleResults::Classes(classes) => {
            tfs::inference_result::Result::ClassificationResult(classification_result(classes))
        }
        ExampleResults::Values(values) => tfs::inference_result::Result::RegressionResult(regression_result(values)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn float_feature(values: &[f32]) -> tf::Feature {
        tf::Feature { kind: Some(tf::feature::Kind::FloatList(tf::FloatList { value: values.to_vec() })) }
    }

    #[test]
    fn examples_and_context_convert() {
        let example = tf::Example {
            features: Some(tf::Features {
                feature: [("x".to_string(), float_feature(&[2.0])), ("e".to_string(), tf::Feature { kind: None })]
                    .into_iter()
                    .collect(),
            }),
        };
        let input = tfs::Input {
            kind: Some(tfs::input::Kind::ExampleListWithContext(tfs::ExampleListWithContext {
                examples: vec![example.clone()],
                context: Some(example),
            })),
        };
        let converted = input_from_proto(Some(&input)).expect("convert");
        assert_eq!(converted.examples[0]["x"], Feature::Floats(vec![2.0]));
        assert_eq!(converted.examples[0]["e"], Feature::Empty);
        assert!(converted.context.is_some());
        assert_eq!(input_from_proto(None).expect_err("none").message, "Input is empty.");
        let empty = tfs::Input { kind: Some(tfs::input::Kind::ExampleList(tfs::ExampleList { examples: vec![] })) };
        assert_eq!(input_from_proto(Some(&empty)).expect_err("empty").message, "Input is empty.");
    }

    #[test]
    fn hostile_example_bytes_fail_to_decode_cleanly() {
        let good = tf::Example {
            features: Some(tf::Features {
                feature: [("x".to_string(), float_feature(&[1.0; 8]))].into_iter().collect(),
            }),
        }
        .encode_to_vec();
        // Every truncation is an error or a shorter valid message, never a panic.
        for cut in 0..good.len() {
            let _ = tf::Example::decode(&good[..cut]);
        }
        assert!(tf::Example::decode(&good[..good.len() - 3]).is_err());
        // A length prefix far beyond the buffer is refused without allocating it.
        let huge = [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(tf::Example::decode(&huge[..]).is_err());
        // A float list field given as a varint (wrong wire type) is refused.
        let wrong_kind = [0x0a, 0x08, 0x0a, 0x06, 0x0a, 0x01, b'x', 0x12, 0x01, 0x10];
        assert!(tf::Example::decode(&wrong_kind[..]).is_err());
    }
}

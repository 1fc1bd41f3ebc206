//! tf.Example parsing as TF's `ParseExample` op does it inside a SavedModel: a request's
//! Examples (merged with their context) become the signature's input tensors, with TF's
//! checks and error strings.

use bytes::Bytes;

use crate::core::example::{Example, ExampleInput, ExampleSpec, Feature, FeatureShape, FeatureSpec};
use crate::core::{DType, ServingError, ServingResult, SignatureDef, Tensor};

/// The spec that turns Examples into this signature's inputs: the one its parse op had (a
/// converted SavedModel), or one feature per input, keyed by the input's alias.
pub fn spec_of(signature_name: &str, signature: &SignatureDef) -> ServingResult<ExampleSpec> {
    if let Some(spec) = &signature.example_spec {
        return Ok(spec.clone());
    }
    spec_from_signature(signature).map_err(|why| {
        ServingError::invalid_argument(format!(
            "signature {signature_name} cannot be fed from tf.Example features: {why}"
        ))
    })
}

fn type_name(dtype: DType) -> &'static str {
    match dtype {
        DType::Float => "float",
        DType::Int64 => "int64",
        _ => "string",
    }
}

fn kind_matches(feature: &Feature, dtype: DType) -> bool {
    matches!(
        (feature, dtype),
        (Feature::Floats(_), DType::Float) | (Feature::Int64s(_), DType::Int64) | (Feature::Bytes(_), DType::String)
    )
}

/// Finds a feature of one example, merged with the context as TF Serving's
/// `serialize(context) ++ serialize(example)` parses: the example wins; a key present with an
/// empty Feature counts as missing, except that TF's parser then takes a dense feature from
/// the context.
fn lookup<'a>(example: &'a Example, context: Option<&'a Example>, key: &str) -> Option<&'a Feature> {
    let from_context = || context.and_then(|c| c.get(key)).filter(|f| !matches!(f, Feature::Empty));
    match example.get(key) {
        Some(Feature::Empty) | None => from_context(),
        Some(feature) => Some(feature),
    }
}

fn dims_text(dims: &[i64]) -> String {
    format!("[{}]", dims.iter().map(i64::to_string).collect::<Vec<_>>().join(","))
}

/// Values of one feature column, across the batch.
enum Column {
    Floats(Vec<f32>),
    Int64s(Vec<i64>),
    Bytes(Vec<Bytes>),
}

impl Column {
    fn new(dtype: DType) -> Self {
        match dtype {
            DType::Float => Column::Floats(Vec::new()),
            DType::Int64 => Column::Int64s(Vec::new()),
            _ => Column::Bytes(Vec::new()),
        }
    }

    fn extend(&mut self, feature: &Feature) {
        match (self, feature) {
            (Column::Floats(out), Feature::Floats(v)) => out.extend_from_slice(v),
            (Column::Int64s(out), Feature::Int64s(v)) => out.extend_from_slice(v),
            (Column::Bytes(out), Feature::Bytes(v)) => out.extend_from_slice(v),
            _ => {}
        }
    }

    /// Appends `count` copies of the scalar `pad` (the type's zero when absent).
    fn pad(&mut self, pad: Option<&Feature>, count: usize) {
        match self {
            Column::Floats(out) => {
                let value = match pad {
                    Some(Feature::Floats(v)) => v.first().copied().unwrap_or(0.0),
                    _ => 0.0,
                };
                out.extend(std::iter::repeat_n(value, count));
            }
            Column::Int64s(out) => {
                let value = match pad {
                    Some(Feature::Int64s(v)) => v.first().copied().unwrap_or(0),
                    _ => 0,
                };
                out.extend(std::iter::repeat_n(value, count));
            }
            Column::Bytes(out) => {
                let value = match pad {
                    Some(Feature::Bytes(v)) => v.first().cloned().unwrap_or_default(),
                    _ => Bytes::new(),
                };
                out.extend(std::iter::repeat_n(value, count));
            }
        }
    }

    fn into_tensor(self, shape: Vec<usize>) -> Tensor {
        match self {
            Column::Floats(v) => Tensor::from_vec(shape, v),
            Column::Int64s(v) => Tensor::from_vec(shape, v),
            Column::Bytes(v) => Tensor::from_strings(shape, v),
        }
    }
}

/// Checks a present feature's list type and value count against its spec.
fn check_present(spec: &FeatureSpec, index: usize, feature: &Feature) -> ServingResult<()> {
    let kind = type_name(spec.dtype);
    if !kind_matches(feature, spec.dtype) {
        return Err(ServingError::invalid_argument(format!(
            "Name: <unknown>, Key: {}, Index: {index}.  Data types don't match. Data type: {} but expected type: {kind}",
            spec.key,
            feature.kind_name()
        )));
    }
    match &spec.shape {
        FeatureShape::Fixed(dims) => {
            if feature.len() != element_count(dims) {
                return Err(ServingError::invalid_argument(format!(
                    "Name: <unknown>, Key: {}, Index: {index}.  Number of {kind} values != expected.  Values size: {} \
                     but output shape: {}",
                    spec.key,
                    feature.len(),
                    dims_text(dims)
                )));
            }
        }
        FeatureShape::Sequence(block) => {
            let stride = element_count(block).max(1);
            if !feature.len().is_multiple_of(stride) {
                return Err(ServingError::invalid_argument(format!(
                    "Name: <unknown>, Key: {}, Index: {index}.  Number of {kind} values is not a multiple of stride \
                     length. Saw {} values but output shape is: [?,{}]",
                    spec.key,
                    feature.len(),
                    block.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
                )));
            }
        }
    }
    Ok(())
}

/// The number of values in one block of `dims` (negative dims count as 0). Saturates, so a
/// hostile shape in a model or manifest cannot overflow.
fn element_count(dims: &[i64]) -> usize {
    dims.iter().fold(1usize, |count, &d| count.saturating_mul(d.max(0) as usize))
}

/// Builds one feature's column across the batch. Present features were already checked by
/// `check_present`; only the defaults that fill in are checked here.
fn parse_feature(spec: &FeatureSpec, input: &ExampleInput) -> ServingResult<Tensor> {
    let batch = input.examples.len();
    let mut column = Column::new(spec.dtype);
    match &spec.shape {
        FeatureShape::Fixed(dims) => {
            for (index, example) in input.examples.iter().enumerate() {
                let feature = match lookup(example, input.context.as_ref(), &spec.key) {
                    Some(feature) => feature,
                    None => {
                        let default = spec.default.as_ref().ok_or_else(|| {
                            ServingError::invalid_argument(format!(
                                "Name: <unknown>, Feature: {} (data type: {}) is required but could not be found.",
                                spec.key,
                                type_name(spec.dtype)
                            ))
                        })?;
                        check_present(spec, index, default)?;
                        default
                    }
                };
                column.extend(feature);
            }
            let mut shape = vec![batch];
            shape.extend(dims.iter().map(|&d| d.max(0) as usize));
            Ok(column.into_tensor(shape))
        }
        FeatureShape::Sequence(block) => {
            let stride = element_count(block).max(1);
            let found: Vec<Option<&Feature>> =
                input.examples.iter().map(|example| lookup(example, input.context.as_ref(), &spec.key)).collect();
            let blocks = |feature: &Option<&Feature>| feature.map_or(0, |f| f.len() / stride);
            let longest = found.iter().map(blocks).max().unwrap_or(0);
            for feature in &found {
                if let Some(feature) = feature {
                    column.extend(feature);
                }
                column.pad(spec.default.as_ref(), (longest - blocks(feature)) * stride);
            }
            let mut shape = vec![batch, longest];
            shape.extend(block.iter().map(|&d| d.max(0) as usize));
            Ok(column.into_tensor(shape))
        }
    }
}

/// Turns the Examples into the model inputs the spec feeds (keyed by the model's input
/// names). Every feature of the spec is validated, used or not, as TF's parse op does.
pub fn examples_to_inputs(input: &ExampleInput, spec: &ExampleSpec) -> ServingResult<Vec<(String, Tensor)>> {
    if input.examples.is_empty() {
        return Err(ServingError::invalid_argument("Input is empty."));
    }
    // NOTE: as TF's parser, each example's present features are checked (type, count) before
    // any missing required one is reported.
    for (index, example) in input.examples.iter().enumerate() {
        for feature in &spec.features {
            if let Some(found) = lookup(example, input.context.as_ref(), &feature.key) {
                check_present(feature, index, found)?;
            }
        }
    }
    let mut inputs = Vec::new();
    for feature in &spec.features {
        let tensor = parse_feature(feature, input)?;
        if let Some(name) = &feature.model_input {
            inputs.push((name.clone(), tensor));
        }
    }
    Ok(inputs)
}

/// Derives the spec that feeds each input of a plain signature from the feature of the
/// same name (its alias): dtype and per-example shape from the input, every feature
/// required. Inputs that cannot come from a feature (unknown rank, a dynamic inner
/// dimension, a type no feature list holds) are an error naming the input.
fn spec_from_signature(signature: &SignatureDef) -> Result<ExampleSpec, String> {
    let mut features = Vec::new();
    for (alias, info) in &signature.inputs {
        let dtype = match info.dtype {
            DType::Float | DType::Int64 | DType::String => info.dtype,
            other => {
                return Err(format!(
                    "input '{alias}' is {other}; tf.Example features feed only float, int64 and string inputs"
                ))
            }
        };
        let Some(dims) = &info.shape else {
            return Err(format!("input '{alias}' has an unknown rank, so no feature shape follows from it"));
        };
        let inner: Vec<i64> = dims.iter().skip(1).copied().collect();
        if inner.iter().any(|&d| d < 0) {
            return Err(format!(
                "input '{alias}' has a dynamic dimension after the batch ({dims:?}); a feature needs fixed ones"
            ));
        }
        features.push(FeatureSpec {
            key: alias.clone(),
            dtype,
            shape: FeatureShape::Fixed(inner),
            default: None,
            model_input: Some(info.name.clone()),
        });
    }
    Ok(ExampleSpec { features })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(values: &[f32]) -> Feature {
        Feature::Floats(values.to_vec())
    }

    fn example(pairs: &[(&str, Feature)]) -> Example {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn half_plus_two_spec() -> ExampleSpec {
        // As TF Serving's half_plus_two parses: x required, x2 defaulted and unused.
        ExampleSpec {
            features: vec![
                FeatureSpec {
                    key: "x".into(),
                    dtype: DType::Float,
                    shape: FeatureShape::Fixed(vec![1]),
                    default: None,
                    model_input: Some("x".into()),
                },
                FeatureSpec {
                    key: "x2".into(),
                    dtype: DType::Float,
                    shape: FeatureShape::Fixed(vec![1]),
                    default: Some(floats(&[0.0])),
                    model_input: None,
                },
            ],
        }
    }

    fn values(inputs: &[(String, Tensor)]) -> Vec<f32> {
        inputs[0].1.values::<f32>().expect("f32").into_owned()
    }

    #[test]
    fn features_become_batched_tensors_and_unused_ones_are_still_checked() {
        let input = ExampleInput {
            examples: vec![
                example(&[("x", floats(&[2.0]))]),
                example(&[("x", floats(&[3.0])), ("x2", floats(&[1.0]))]),
            ],
            context: None,
        };
        let inputs = examples_to_inputs(&input, &half_plus_two_spec()).expect("parse");
        assert_eq!(inputs.len(), 1, "x2 is parsed but not fed");
        assert_eq!(inputs[0].1.shape, vec![2, 1]);
        assert_eq!(values(&inputs), vec![2.0, 3.0]);
        // x2 is validated even though no input takes it.
        let bad = ExampleInput {
            examples: vec![example(&[("x", floats(&[2.0])), ("x2", Feature::Int64s(vec![1]))])],
            context: None,
        };
        let error = examples_to_inputs(&bad, &half_plus_two_spec()).expect_err("x2 type").message;
        assert_eq!(
            error,
            "Name: <unknown>, Key: x2, Index: 0.  Data types don't match. Data type: int64 but expected type: float"
        );
    }

    #[test]
    fn tf_parser_errors_are_reproduced() {
        let spec = half_plus_two_spec();
        let run = |examples: Vec<Example>| {
            examples_to_inputs(&ExampleInput { examples, context: None }, &spec).expect_err("error").message
        };
        assert_eq!(
            run(vec![Example::new()]),
            "Name: <unknown>, Feature: x (data type: float) is required but could not be found."
        );
        assert_eq!(
            run(vec![example(&[("x", Feature::Empty)])]),
            "Name: <unknown>, Feature: x (data type: float) is required but could not be found.",
            "an empty Feature counts as missing"
        );
        assert_eq!(
            run(vec![example(&[("x", floats(&[1.0, 2.0]))])]),
            "Name: <unknown>, Key: x, Index: 0.  Number of float values != expected.  Values size: 2 but output shape: [1]"
        );
        assert_eq!(run(vec![]), "Input is empty.");
    }

    #[test]
    fn hostile_shapes_are_errors_not_overflows() {
        let spec = ExampleSpec {
            features: vec![FeatureSpec {
                key: "x".into(),
                dtype: DType::Float,
                shape: FeatureShape::Fixed(vec![i64::MAX, i64::MAX]),
                default: Some(floats(&[0.0])),
                model_input: Some("x".into()),
            }],
        };
        let present = ExampleInput { examples: vec![example(&[("x", floats(&[1.0]))])], context: None };
        assert!(examples_to_inputs(&present, &spec).expect_err("present").message.contains("Number of float values"));
        let defaulted = ExampleInput { examples: vec![Example::new()], context: None };
        assert!(examples_to_inputs(&defaulted, &spec).expect_err("default").message.contains("Number of float values"));
    }

    #[test]
    fn context_merges_and_the_example_wins() {
        let spec = half_plus_two_spec();
        let context = Some(example(&[("x", floats(&[7.0]))]));
        let input = ExampleInput {
            examples: vec![
                example(&[("x", floats(&[3.0]))]),
                Example::new(),
                // TF's quirk: an empty dense Feature falls back to the context.
                example(&[("x", Feature::Empty)]),
            ],
            context,
        };
        assert_eq!(values(&examples_to_inputs(&input, &spec).expect("parse")), vec![3.0, 7.0, 7.0]);
    }

    #[test]
    fn sequence_features_pad_to_the_longest() {
        let spec = ExampleSpec {
            features: vec![FeatureSpec {
                key: "seq".into(),
                dtype: DType::Float,
                shape: FeatureShape::Sequence(vec![2]),
                default: Some(floats(&[0.5])),
                model_input: Some("seq".into()),
            }],
        };
        let input = ExampleInput {
            examples: vec![example(&[("seq", floats(&[1.0, 2.0, 3.0, 4.0]))]), Example::new()],
            context: None,
        };
        let inputs = examples_to_inputs(&input, &spec).expect("parse");
        assert_eq!(inputs[0].1.shape, vec![2, 2, 2]);
        assert_eq!(values(&inputs), vec![1.0, 2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5]);
        let odd = ExampleInput { examples: vec![example(&[("seq", floats(&[1.0, 2.0, 3.0]))])], context: None };
        assert!(examples_to_inputs(&odd, &spec).expect_err("stride").message.contains("multiple of stride"));
    }
}

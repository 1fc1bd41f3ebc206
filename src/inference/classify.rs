//! Classify and Regress over tf.Example inputs: the signature runs on the parsed Examples
//! (`example_parse`), and its `classes` / `scores` or `outputs` tensors become results, with
//! TF Serving's checks and error strings.

use std::time::Instant;

use bytes::Bytes;

use super::example_parse::{examples_to_inputs, spec_of};
use super::predict::run_model;
pub use crate::core::example::Class;
use crate::core::example::{ExampleInput, ExampleMethod, ExampleResults};
use crate::core::{DType, Servable, ServingError, ServingResult, SignatureDef, Tensor, DEFAULT_SIGNATURE};

/// Looks up a Classify/Regress signature (INVALID_ARGUMENT when missing, as TF says it).
pub fn example_signature<'a>(servable: &'a dyn Servable, name: &str) -> ServingResult<(String, &'a SignatureDef)> {
    let name = if name.is_empty() { DEFAULT_SIGNATURE } else { name };
    let signature = servable
        .signatures()
        .get(name)
        .ok_or_else(|| ServingError::invalid_argument(format!("No signature was found with the name: {name}")))?;
    Ok((name.to_string(), signature))
}

/// The signature outputs (by alias) a method's results come from.
fn output_aliases(method: ExampleMethod) -> &'static [&'static str] {
    match method {
        ExampleMethod::Classify => &["classes", "scores"],
        ExampleMethod::Regress => &["outputs"],
    }
}

/// The method's outputs (by alias) that the signature has, as the model produced them.
struct MethodOutputs(Vec<(&'static str, Tensor)>);

impl MethodOutputs {
    fn get(&self, alias: &str) -> Option<&Tensor> {
        self.0.iter().find(|(a, _)| *a == alias).map(|(_, tensor)| tensor)
    }
}

/// Runs a signature on Examples; returns the signature name used and the method's outputs.
async fn run_examples(
    servable: &dyn Servable,
    signature_name: &str,
    input: &ExampleInput,
    method: ExampleMethod,
    deadline: Option<Instant>,
) -> ServingResult<(String, MethodOutputs)> {
    let (name, signature) = example_signature(servable, signature_name)?;
    let spec = spec_of(&name, signature)?;
    let inputs = examples_to_inputs(input, &spec)?;
    let present: Vec<(&'static str, String)> = output_aliases(method)
        .iter()
        .filter_map(|&alias| signature.outputs.get(alias).map(|info| (alias, info.name.clone())))
        .collect();
    let output_names = present.iter().map(|(_, name)| name.clone()).collect();
    let tensors = run_model(servable, &name, inputs, output_names, deadline).await?;
    let outputs = present.into_iter().map(|(alias, _)| alias).zip(tensors).collect();
    Ok((name, MethodOutputs(outputs)))
}

fn shape_text(shape: &[usize]) -> String {
    format!("[{}]", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(","))
}

fn batch_and_width(tensor: &Tensor) -> ServingResult<(usize, usize)> {
    match tensor.shape.as_slice() {
        [batch, width] => Ok((*batch, *width)),
        _ => Err(ServingError::invalid_argument(format!(
            "Expected Tensor shape: [batch_size num_classes] but got {}",
            shape_text(&tensor.shape)
        ))),
    }
}

/// Checks a `classes` or `scores` output's type, rank and batch as TF does; returns its width.
fn checked_columns(tensor: &Tensor, what: &str, dtype: DType, batch: usize) -> ServingResult<usize> {
    if tensor.dtype != dtype {
        return Err(ServingError::invalid_argument(format!(
            "Expected {what} Tensor of {}. Got: {}",
            dtype.enum_name(),
            tensor.dtype.enum_name()
        )));
    }
    let (rows, columns) = batch_and_width(tensor)?;
    if rows != batch {
        return Err(ServingError::invalid_argument(format!(
            "Expected {what} output batch size of {batch}. Got: {rows}"
        )));
    }
    Ok(columns)
}

/// Builds TF's classification results from the `classes` and `scores` outputs.
pub fn classifications(
    classes: Option<&Tensor>,
    scores: Option<&Tensor>,
    batch: usize,
) -> ServingResult<Vec<Vec<Class>>> {
    if classes.is_none() && scores.is_none() {
        return Err(ServingError::invalid_argument(
            "Expected classification signature outputs to contain at least one of \"classes\" or \"scores\"",
        ));
    }
    let mut width = None;
    let labels = match classes {
        Some(tensor) => {
            width = Some(checked_columns(tensor, "classes", DType::String, batch)?);
            tensor.strings().map(<[Bytes]>::to_vec)
        }
        None => None,
    };
    let values = match scores {
        Some(tensor) => {
            let columns = checked_columns(tensor, "scores", DType::Float, batch)?;
            if let Some(classes_width) = width {
                if classes_width != columns {
                    return Err(ServingError::invalid_argument(format!(
                        "Tensors class and score should match in dim_size(1). Got {classes_width} vs. {columns}"
                    )));
                }
            }
            width = Some(columns);
            tensor.values::<f32>().map(|v| v.into_owned())
        }
        None => None,
    };
    let width = width.unwrap_or(0);
    Ok((0..batch)
        .map(|row| {
            (0..width)
                .map(|column| {
                    let at = row * width + column;
                    let label = labels.as_ref().and_then(|l| l.get(at).cloned()).unwrap_or_default();
                    let score = values.as_ref().and_then(|v| v.get(at).copied()).unwrap_or(0.0);
                    (label, score)
                })
                .collect()
        })
        .collect())
}

/// Builds TF's regression results from the `outputs` output.
pub fn regressions(outputs: Option<&Tensor>, batch: usize) -> ServingResult<Vec<f32>> {
    let tensor = outputs.ok_or_else(|| {
        ServingError::invalid_argument("Expected regression signature to have an output named 'outputs'")
    })?;
    if tensor.dtype != DType::Float {
        return Err(ServingError::invalid_argument(format!(
            "Expected output Tensor of DT_FLOAT.  Got: {}",
            tensor.dtype.enum_name()
        )));
    }
    let rows = match tensor.shape.as_slice() {
        [rows] | [rows, 1] => *rows,
        other => {
            return Err(ServingError::invalid_argument(format!(
                "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {}",
                shape_text(other)
            )))
        }
    };
    if rows != batch {
        return Err(ServingError::invalid_argument(format!(
            "Input batch size did not match output batch size: {batch} vs. {rows}"
        )));
    }
    Ok(tensor.values::<f32>().map(|v| v.into_owned()).unwrap_or_default())
}

/// Runs Classify (one list of classes per example) or Regress (one value per example) on
/// Examples. Returns the signature name used.
pub async fn run_example_method(
    servable: &dyn Servable,
    method: ExampleMethod,
    signature_name: &str,
    input: &ExampleInput,
    deadline: Option<Instant>,
) -> ServingResult<(String, ExampleResults)> {
    let (name, outputs) = run_examples(servable, signature_name, input, method, deadline).await?;
    let batch = input.examples.len();
    let results = match method {
        ExampleMethod::Classify => {
            ExampleResults::Classes(classifications(outputs.get("classes"), outputs.get("scores"), batch)?)
        }
        ExampleMethod::Regress => ExampleResults::Values(regressions(outputs.get("outputs"), batch)?),
    };
    Ok((name, results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_outputs_are_checked_as_tf_does() {
        let scores = Tensor::from_vec(vec![2, 1], vec![3.0f32, 3.5]);
        let classes = Tensor::from_strings(vec![2, 1], vec![Bytes::from("a"), Bytes::from("b")]);
        let results = classifications(Some(&classes), Some(&scores), 2).expect("ok");
        assert_eq!(results, vec![vec![(Bytes::from("a"), 3.0)], vec![(Bytes::from("b"), 3.5)]]);
        assert_eq!(classifications(None, Some(&scores), 2).expect("scores only")[1], vec![(Bytes::new(), 3.5)]);
        let error = |c: Option<&Tensor>, s: Option<&Tensor>, b: usize| classifications(c, s, b).expect_err("e").message;
        assert_eq!(error(None, Some(&scores), 3), "Expected scores output batch size of 3. Got: 2");
        let flat = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]);
        assert_eq!(error(None, Some(&flat), 2), "Expected Tensor shape: [batch_size num_classes] but got [2]");
        let wide = Tensor::from_vec(vec![2, 2], vec![1.0f32; 4]);
        assert_eq!(
            error(Some(&classes), Some(&wide), 2),
            "Tensors class and score should match in dim_size(1). Got 1 vs. 2"
        );
        let doubles = Tensor::from_vec(vec![2, 1], vec![1.0f64, 2.0]);
        assert_eq!(error(None, Some(&doubles), 2), "Expected scores Tensor of DT_FLOAT. Got: DT_DOUBLE");
    }

    #[test]
    fn regression_outputs_are_checked_as_tf_does() {
        let column = Tensor::from_vec(vec![2, 1], vec![3.0f32, 3.5]);
        assert_eq!(regressions(Some(&column), 2).expect("ok"), vec![3.0, 3.5]);
        assert_eq!(regressions(Some(&Tensor::from_vec(vec![2], vec![1.0f32, 2.0])), 2).expect("ok"), vec![1.0, 2.0]);
        let wide = Tensor::from_vec(vec![1, 2], vec![1.0f32, 2.0]);
        assert_eq!(
            regressions(Some(&wide), 1).expect_err("shape").message,
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got [1,2]"
        );
        assert_eq!(
            regressions(Some(&column), 3).expect_err("batch").message,
            "Input batch size did not match output batch size: 3 vs. 2"
        );
    }
}

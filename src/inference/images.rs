//! Predictions on images: decoded and laid out by the plan the version worked out when it
//! loaded, run through `predict`, and labelled with the top-k class names.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;

use super::blocking::inline_or_blocking;
use super::predict::{predict, PredictOutcome};
use crate::codec::image::plan::{ImageInputs, Labels, TopLabel};
use crate::codec::image::{images_to_tensor, ImageLimits};
use crate::core::{find_signature, DType, MemoryBudget, Servable, ServingError, ServingResult, Tensor};

/// What an image prediction returns: the outputs, and per image its top classes when the
/// model has labels.
pub struct ImagePrediction {
    pub outcome: PredictOutcome,
    pub labels: Option<Vec<Vec<TopLabel>>>,
}

/// Returns the alias of the image input of `signature_name`, when it has one.
pub fn image_input_alias(servable: &dyn Servable, signature_name: &str) -> Option<String> {
    let inputs = servable.extensions().get::<ImageInputs>()?;
    inputs.signatures.get(signature_name)?.as_ref().ok().map(|input| input.alias.clone())
}

/// Runs `images` through the image input of `signature_name`, decoded within `limits`; the
/// decoded tensor is counted in the in-flight `budget` while it runs.
pub async fn predict_images(
    servable: &dyn Servable,
    signature_name: &str,
    images: Vec<Bytes>,
    limits: ImageLimits,
    budget: &MemoryBudget,
    deadline: Option<Instant>,
) -> ServingResult<ImagePrediction> {
    find_signature(servable.signatures(), signature_name)?;
    let image_inputs = servable
        .extensions()
        .get::<ImageInputs>()
        .ok_or_else(|| ServingError::invalid_argument("this model version takes no image uploads"))?;
    let input = match image_inputs.signatures.get(signature_name) {
        Some(Ok(input)) => input.clone(),
        Some(Err(error)) => return Err(error.clone()),
        None => return Err(ServingError::invalid_argument(format!("signature {signature_name} takes no images"))),
    };
    // NOTE: decoding and resizing are CPU work, kept off the async runtime.
    let plan = input.plan;
    let tensor = inline_or_blocking(false, "image decoding", move || images_to_tensor(&images, &plan, &limits)).await?;
    // NOTE: the decoded pixels are held until the answer is built.
    let _permit = budget.try_take(tensor.held_bytes())?;
    let inputs = BTreeMap::from([(input.alias, tensor)]);
    let outcome = predict(servable, signature_name, inputs, &[], deadline).await?;
    let labels = match &image_inputs.labels {
        Some(labels) => Some(top_labels(labels, &outcome.outputs)?),
        None => None,
    };
    Ok(ImagePrediction { outcome, labels })
}

/// Returns, per image, the `top_k` classes of the scores output, highest first. The scores
/// output is `labels.output`, or the only output of rank 2.
pub fn top_labels(labels: &Labels, outputs: &[(String, Tensor)]) -> ServingResult<Vec<Vec<TopLabel>>> {
    let scores = match &labels.output {
        Some(name) => outputs.iter().find(|(alias, _)| alias == name),
        None => {
            let ranked: Vec<&(String, Tensor)> = outputs.iter().filter(|(_, t)| t.shape.len() == 2).collect();
            match ranked.as_slice() {
                [one] => Some(*one),
                _ => None,
            }
        }
    };
    let Some((alias, tensor)) = scores else {
        return Err(ServingError::failed_precondition(
            "model_options.pbtxt labels: no scores output; name it with labels.output (the model has no single \
             output of rank 2)",
        ));
    };
    let values: Vec<f32> = match tensor.dtype {
        DType::Float => tensor.values::<f32>().map(|v| v.into_owned()),
        DType::Double => tensor.values::<f64>().map(|v| v.iter().map(|&x| x as f32).collect()),
        DType::Half => tensor.values::<half::f16>().map(|v| v.iter().map(|x| x.to_f32()).collect()),
        _ => None,
    }
    .ok_or_else(|| {
        ServingError::failed_precondition(format!(
            "model_options.pbtxt labels: output '{alias}' is {}, not floating-point scores",
            tensor.dtype
        ))
    })?;
    let classes = tensor.shape.get(1).copied().unwrap_or(0).max(1);
    let rows = values
        .chunks(classes)
        .map(|row| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            order
                .into_iter()
                .take(labels.top_k)
                .map(|index| TopLabel {
                    label: labels.names.get(index).cloned().unwrap_or_else(|| index.to_string()),
                    index,
                    score: row[index],
                })
                .collect()
        })
        .collect();
    Ok(rows)
}

//! Predict: feeds signature inputs by alias and returns signature outputs by alias.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::core::{
    CancelOnDrop, CancelSignal, OutputKeys, RunRequest, Servable, ServingError, ServingResult, SignatureDef, Tensor,
    TensorInfo,
};

/// The outputs of one predict call, keyed by alias, in signature order.
#[derive(Debug)]
pub struct PredictOutcome {
    pub outputs: Vec<(String, Tensor)>,
    /// The keys of the score-map outputs among `outputs`, as the signature declares them.
    pub map_keys: OutputKeys,
}

/// Looks up a signature as the gRPC Predict path does (FAILED_PRECONDITION when missing).
pub fn signature<'a>(servable: &'a dyn Servable, name: &str) -> ServingResult<&'a SignatureDef> {
    servable
        .signatures()
        .get(name)
        .ok_or_else(|| ServingError::failed_precondition(format!("Serving signature key \"{name}\" not found.")))
}

fn names(set: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    set.into_iter().map(|s| s.as_ref().to_string()).collect::<Vec<_>>().join(",")
}

/// Runs `signature_name` on `inputs` (keyed by alias). An empty `output_filter` returns
/// every output. The run is abandoned, with DEADLINE_EXCEEDED, once `deadline` passes.
pub async fn predict(
    servable: &dyn Servable,
    signature_name: &str,
    mut inputs: BTreeMap<String, Tensor>,
    output_filter: &[String],
    deadline: Option<Instant>,
) -> ServingResult<PredictOutcome> {
    let signature = signature(servable, signature_name)?;
    if signature.example_spec.is_some() {
        // NOTE: TF would parse serialized Examples fed to this signature inside its graph; the
        // conversion starts after the parse op, so the Examples must come the Classify way.
        return Err(ServingError::invalid_argument(format!(
            "signature {signature_name} parses serialized tf.Example inputs, which onnx-serving parses \
             itself: send the examples with Classify, Regress or MultiInference (REST :classify or :regress)"
        )));
    }
    if inputs.len() != signature.inputs.len() {
        let sent: BTreeSet<&String> = inputs.keys().collect();
        let expected: BTreeSet<&String> = signature.inputs.keys().collect();
        return Err(ServingError::invalid_argument(format!(
            "input size does not match signature: {}!={} len({{{}}}) != len({{{}}}). Sent extra: {{{}}}. Missing but required: {{{}}}.",
            inputs.len(),
            signature.inputs.len(),
            names(&sent),
            names(&expected),
            names(sent.difference(&expected)),
            names(expected.difference(&sent)),
        )));
    }
    let mut run_inputs = Vec::with_capacity(inputs.len());
    for (alias, info) in &signature.inputs {
        let tensor = inputs.remove(alias).ok_or_else(|| {
            ServingError::invalid_argument(format!(
                "Signature input alias: {alias}(feed name: {}) not found in request and no default value provided. Inputs expected to be in the request {{{}}}",
                info.name,
                names(signature.inputs.keys())
            ))
        })?;
        if tensor.dtype != info.dtype {
            return Err(ServingError::invalid_argument(format!(
                "Expects arg for input '{alias}' to be {} but {} is provided",
                info.dtype, tensor.dtype
            )));
        }
        if !signature.lenient_shapes {
            check_shape(alias, info, &tensor.shape)?;
        }
        run_inputs.push((info.name.clone(), tensor));
    }
    let mut wanted: Vec<(&String, &String)> = Vec::new();
    if output_filter.is_empty() {
        wanted.extend(signature.outputs.iter().map(|(alias, info)| (alias, &info.name)));
    } else {
        let mut seen = BTreeSet::new();
        for alias in output_filter {
            let info = signature.outputs.get(alias).ok_or_else(|| {
                ServingError::invalid_argument(format!(
                    "output tensor alias not found in signature: {alias} Outputs expected to be in the set {{{}}}.",
                    names(signature.outputs.keys())
                ))
            })?;
            if !seen.insert(alias) {
                return Err(ServingError::invalid_argument(format!("duplicate output tensor alias: {alias}")));
            }
            wanted.push((alias, &info.name));
        }
    }
    let output_names: Vec<String> = wanted.iter().map(|(_, name)| (*name).clone()).collect();
    let outputs = run_model(servable, signature_name, run_inputs, output_names, deadline).await?;
    let map_keys = wanted
        .iter()
        .filter_map(|(alias, _)| signature.outputs.get(*alias)?.map_keys.clone().map(|keys| ((*alias).clone(), keys)))
        .collect();
    let outputs = wanted.iter().zip(outputs).map(|((alias, _), tensor)| ((*alias).clone(), tensor)).collect();
    Ok(PredictOutcome { outputs, map_keys })
}

/// Checks a request tensor's shape against the one the model declares: the same rank, and
/// every fixed dimension equal. An input declared without a shape takes any.
fn check_shape(alias: &str, info: &TensorInfo, shape: &[usize]) -> ServingResult<()> {
    let Some(declared) = &info.shape else { return Ok(()) };
    if declared.len() != shape.len() {
        return Err(ServingError::invalid_argument(format!(
            "input '{alias}' has shape {shape:?} (rank {}), but the model takes rank {} (shape {declared:?})",
            shape.len(),
            declared.len()
        )));
    }
    for (index, (&want, &got)) in declared.iter().zip(shape).enumerate() {
        if want >= 0 && usize::try_from(want).ok() != Some(got) {
            return Err(ServingError::invalid_argument(format!(
                "input '{alias}' has shape {shape:?}, but the model takes {want} in dimension {index} (shape {declared:?})"
            )));
        }
    }
    Ok(())
}

/// Runs the model on inputs keyed by the model's own names and returns the outputs named,
/// in order. A passed deadline or a dropped future stops the queued or running call.
pub async fn run_model(
    servable: &dyn Servable,
    signature: &str,
    inputs: Vec<(String, Tensor)>,
    output_names: Vec<String>,
    deadline: Option<Instant>,
) -> ServingResult<Vec<Tensor>> {
    let cancel = CancelSignal::default();
    // NOTE: if this future is dropped (the client went away) or times out, the queued or
    // running model call is stopped instead of finishing for nobody.
    let cancel_on_drop = CancelOnDrop::new(cancel.clone());
    let reply_rx =
        servable.submit(RunRequest { signature: signature.to_string(), inputs, output_names, deadline, cancel });
    let reply = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline.into(), reply_rx).await {
            Ok(reply) => reply,
            Err(_) => return Err(ServingError::deadline_exceeded("Deadline Exceeded")),
        },
        None => reply_rx.await,
    };
    cancel_on_drop.disarm();
    let outputs = reply.map_err(|_| ServingError::unavailable("the model worker stopped before answering"))??;
    Ok(outputs.into_iter().map(|(_, tensor)| tensor).collect())
}

//! The loader step after a version's model loads: `model_options.pbtxt`'s aliases applied to
//! the signatures, and its image and label options resolved against them once, attached to
//! the servable as `ImageInputs` for every platform.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::version_options::{VersionOptions, FILE_NAME};
use crate::codec::image::plan::{image_plan, ImageInput, ImageInputs, ImageOptions};
use crate::core::{
    ExtendedServable, Extensions, Servable, ServingError, ServingResult, SignatureDef, SignatureMap, TensorInfo,
    DEFAULT_SIGNATURE,
};

/// Renames signature inputs and outputs as `input_aliases` and `output_aliases` say, all at
/// once (so aliases may swap names). A name that is not in the model, or an alias that would
/// give two tensors one name, is an error naming it.
pub fn apply_aliases(signatures: &mut SignatureMap, options: &VersionOptions) -> ServingResult<()> {
    for signature in signatures.values_mut() {
        for (what, aliases, tensors) in [
            ("input_aliases", &options.input_aliases, &mut signature.inputs),
            ("output_aliases", &options.output_aliases, &mut signature.outputs),
        ] {
            if let Some(name) = aliases.keys().find(|name| !tensors.contains_key(*name)) {
                let known: Vec<&str> = tensors.keys().map(String::as_str).collect();
                return Err(ServingError::failed_precondition(format!(
                    "{FILE_NAME}: {what} names `{name}`, which the model does not have (it has: {})",
                    known.join(", ")
                )));
            }
            let mut renamed = BTreeMap::new();
            for (name, info) in std::mem::take(tensors) {
                let key = aliases.get(&name).cloned().unwrap_or(name);
                if renamed.contains_key(&key) {
                    return Err(ServingError::failed_precondition(format!(
                        "{FILE_NAME}: {what} would give two tensors the name `{key}`"
                    )));
                }
                renamed.insert(key, info);
            }
            *tensors = renamed;
        }
    }
    Ok(())
}

/// Returns the alias of `name` among `tensors`, which may give it by alias or by the
/// model's own name.
fn resolve_alias(name: &str, tensors: &BTreeMap<String, TensorInfo>, what: &str) -> ServingResult<String> {
    if tensors.contains_key(name) {
        return Ok(name.to_string());
    }
    if let Some((alias, _)) = tensors.iter().find(|(_, info)| info.name == name) {
        return Ok(alias.clone());
    }
    let known: Vec<&str> = tensors.keys().map(String::as_str).collect();
    Err(ServingError::failed_precondition(format!(
        "{FILE_NAME}: {what} `{name}` is not in the model (it has: {})",
        known.join(", ")
    )))
}

/// Works out how images feed one signature, or the error an image request to it gets.
fn image_input(name: &str, signature: &SignatureDef, options: Option<&ImageOptions>) -> ServingResult<ImageInput> {
    let inputs: Vec<(&String, &TensorInfo)> = signature.inputs.iter().collect();
    let wanted = options.and_then(|o| o.input.as_ref());
    let (alias, info) = match (inputs.as_slice(), wanted) {
        ([(alias, info)], None) => (*alias, *info),
        ([(alias, info)], Some(wanted)) if *alias == wanted => (*alias, *info),
        (_, Some(wanted)) if !signature.inputs.contains_key(wanted) => {
            return Err(ServingError::invalid_argument(format!(
                "signature {name} has no input '{wanted}' (model_options.pbtxt image.input)"
            )))
        }
        (inputs, _) => {
            return Err(ServingError::invalid_argument(format!(
                "signature {name} takes {} inputs; image uploads need a signature with exactly one",
                inputs.len()
            )))
        }
    };
    let plan = image_plan(info, options)
        .map_err(|e| ServingError::failed_precondition(format!("{FILE_NAME}: {e}")))?
        .ok_or_else(|| {
        ServingError::invalid_argument(format!(
            "input '{alias}' of signature {name} is not an image input: it needs uint8, float or half \
                 of shape [batch, height, width, 1|3] or [batch, 1|3, height, width], and has {} {:?}",
            info.dtype, info.shape
        ))
    })?;
    Ok(ImageInput { alias: alias.clone(), plan })
}

/// Resolves the image and label options against the signatures. The image input and the
/// scores output may be named by alias or by the model's own name; options that contradict
/// `serving_default`'s image input fail the load rather than each request.
pub fn image_inputs(signatures: &SignatureMap, options: &VersionOptions) -> ServingResult<ImageInputs> {
    let mut image = options.image.clone();
    let mut labels = options.labels.clone();
    if let Some(default) = signatures.get(DEFAULT_SIGNATURE) {
        if let Some(image) = image.as_mut() {
            if let Some(input) = &image.input {
                image.input = Some(resolve_alias(input, &default.inputs, "image.input")?);
            }
            let target = match &image.input {
                Some(alias) => default.inputs.get(alias),
                None if default.inputs.len() == 1 => default.inputs.values().next(),
                None => None,
            };
            if let Some(info) = target {
                image_plan(info, Some(image))
                    .map_err(|e| ServingError::failed_precondition(format!("{FILE_NAME}: {e}")))?;
            }
        }
        if let Some(labels) = labels.as_mut() {
            if let Some(output) = &labels.output {
                labels.output = Some(resolve_alias(output, &default.outputs, "labels.output")?);
            }
        }
    }
    let signatures = signatures
        .iter()
        .map(|(name, signature)| (name.clone(), image_input(name, signature, image.as_ref())))
        .collect();
    Ok(ImageInputs { signatures, labels })
}

/// Attaches the version's `ImageInputs` to its servable.
pub fn attach(servable: Arc<dyn Servable>, options: &VersionOptions) -> ServingResult<Arc<dyn Servable>> {
    let inputs = image_inputs(servable.signatures(), options)?;
    let mut extensions = Extensions::default();
    extensions.insert(inputs);
    Ok(ExtendedServable::wrap(servable, extensions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::DType;

    fn signatures(names: &[&str]) -> SignatureMap {
        let info = |name: &str| TensorInfo {
            name: name.to_string(),
            dtype: DType::Float,
            shape: Some(vec![-1]),
            map_keys: None,
        };
        let inputs = names.iter().map(|n| (n.to_string(), info(n))).collect();
        SignatureMap::from([(DEFAULT_SIGNATURE.to_string(), SignatureDef { inputs, ..SignatureDef::default() })])
    }

    fn aliases(pairs: &[(&str, &str)]) -> VersionOptions {
        VersionOptions {
            input_aliases: pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            ..VersionOptions::default()
        }
    }

    #[test]
    fn aliases_rename_at_once_and_never_merge_tensors() {
        let mut map = signatures(&["a", "b"]);
        apply_aliases(&mut map, &aliases(&[("a", "b"), ("b", "a")])).expect("a swap");
        let inputs = &map[DEFAULT_SIGNATURE].inputs;
        assert_eq!((inputs["a"].name.as_str(), inputs["b"].name.as_str()), ("b", "a"));

        let mut map = signatures(&["a", "b"]);
        let error = apply_aliases(&mut map, &aliases(&[("a", "b")])).expect_err("a collision");
        assert!(error.message.contains("would give two tensors the name `b`"), "{}", error.message);

        let mut map = signatures(&["a"]);
        let error = apply_aliases(&mut map, &aliases(&[("zz", "x")])).expect_err("unknown");
        assert!(error.message.contains("names `zz`, which the model does not have (it has: a)"), "{}", error.message);
    }
}

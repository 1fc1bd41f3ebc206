//! The conversion's `manifest.json`: which ONNX file serves each signature, the renaming
//! of its tensors, and the tf.Example feature specs of parsing signatures.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use serde::Deserialize;

use super::precondition;
use crate::core::example::{ExampleSpec, Feature, FeatureShape, FeatureSpec};
use crate::core::{DType, ServingResult};

pub(super) const MANIFEST: &str = "manifest.json";
/// The format the converter writes. 2: plain signatures' graphs declare no input or output
/// shapes (TF's rank leniency); 1: they declare the SavedModel's, and are still read.
pub(super) const MANIFEST_FORMAT: u32 = 2;
const OLDEST_FORMAT: u32 = 1;

#[derive(Debug, Deserialize)]
pub(super) struct Manifest {
    /// See `MANIFEST_FORMAT`.
    pub(super) format: u32,
    pub(super) source_sha256: String,
    pub(super) signatures: BTreeMap<String, ManifestSignature>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ManifestSignature {
    pub(super) file: String,
    /// Whether the graph declares no input shapes (format 2; absent in format 1, which keeps
    /// the declared ones).
    #[serde(default)]
    pub(super) lenient_shapes: bool,
    /// Signature input alias -> ONNX input name (plain signatures).
    #[serde(default)]
    pub(super) inputs: BTreeMap<String, String>,
    /// Signature output alias -> ONNX output name.
    pub(super) outputs: BTreeMap<String, String>,
    pub(super) example_spec: Option<ManifestExampleSpec>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ManifestExampleSpec {
    pub(super) features: Vec<ManifestFeature>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ManifestFeature {
    pub(super) key: String,
    pub(super) kind: String,
    pub(super) dtype: String,
    #[serde(default)]
    shape: Vec<i64>,
    #[serde(default)]
    variable_length: bool,
    default: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    used: bool,
    onnx_input: Option<String>,
}

fn feature_values(dtype: DType, values: &[serde_json::Value]) -> Result<Feature, String> {
    match dtype {
        DType::Float => {
            values.iter().map(|v| v.as_f64().map(|f| f as f32)).collect::<Option<Vec<_>>>().map(Feature::Floats)
        }
        DType::Int64 => values.iter().map(serde_json::Value::as_i64).collect::<Option<Vec<_>>>().map(Feature::Int64s),
        _ => values
            .iter()
            .map(|v| {
                use base64::Engine;
                let text = v.as_str()?;
                base64::engine::general_purpose::STANDARD.decode(text).ok().map(Bytes::from)
            })
            .collect::<Option<Vec<_>>>()
            .map(Feature::Bytes),
    }
    .ok_or_else(|| format!("a default does not match its dtype {dtype}"))
}

pub(super) fn example_spec(manifest: &ManifestExampleSpec) -> Result<ExampleSpec, String> {
    let mut features = Vec::new();
    for feature in &manifest.features {
        if feature.kind != "dense" {
            if feature.used {
                return Err(format!(
                    "feature {} is {} and used; only dense features are parsed",
                    feature.key, feature.kind
                ));
            }
            continue;
        }
        let dtype = match feature.dtype.as_str() {
            "float32" => DType::Float,
            "int64" => DType::Int64,
            "string" => DType::String,
            other => return Err(format!("feature {} has dtype {other}", feature.key)),
        };
        let shape = if feature.variable_length {
            FeatureShape::Sequence(feature.shape.iter().skip(1).copied().collect())
        } else {
            FeatureShape::Fixed(feature.shape.clone())
        };
        let default = feature.default.as_deref().map(|values| feature_values(dtype, values)).transpose()?;
        let model_input = if feature.used {
            Some(feature.onnx_input.clone().ok_or_else(|| format!("used feature {} has no onnx_input", feature.key))?)
        } else {
            None
        };
        features.push(FeatureSpec { key: feature.key.clone(), dtype, shape, default, model_input });
    }
    Ok(ExampleSpec { features })
}

pub(super) fn read_manifest(dir: &Path) -> ServingResult<Manifest> {
    let path = dir.join(MANIFEST);
    let text =
        std::fs::read_to_string(&path).map_err(|e| precondition(format!("cannot read {}: {e}", path.display())))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| precondition(format!("{} is not a conversion manifest: {e}", path.display())))?;
    if !(OLDEST_FORMAT..=MANIFEST_FORMAT).contains(&manifest.format) {
        return Err(precondition(format!(
            "{} has format {}, this server reads formats {OLDEST_FORMAT} to {MANIFEST_FORMAT}; convert again",
            path.display(),
            manifest.format
        )));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_specs_become_example_specs() {
        let manifest: ManifestExampleSpec = serde_json::from_str(
            r#"{"features": [
                {"key": "x", "kind": "dense", "dtype": "float32", "shape": [1], "default": null, "used": true, "onnx_input": "x"},
                {"key": "x2", "kind": "dense", "dtype": "float32", "shape": [1], "default": [0.0], "used": false},
                {"key": "seq", "kind": "dense", "dtype": "int64", "shape": [-1, 2], "variable_length": true, "default": [7], "used": true, "onnx_input": "seq"},
                {"key": "ids", "kind": "sparse", "dtype": "int64", "used": false}]}"#,
        )
        .expect("json");
        let spec = example_spec(&manifest).expect("spec");
        assert_eq!(spec.features.len(), 3, "the unused sparse feature is dropped");
        assert_eq!(spec.features[0].model_input.as_deref(), Some("x"));
        assert_eq!(spec.features[1].default, Some(Feature::Floats(vec![0.0])));
        assert_eq!(spec.features[2].shape, FeatureShape::Sequence(vec![2]));
        assert_eq!(spec.features[2].default, Some(Feature::Int64s(vec![7])));
    }
}

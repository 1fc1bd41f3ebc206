//! Signatures: the named inputs and outputs a servable exposes, as TF's SignatureDef.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::error::{ServingError, ServingResult};
use super::tensor::DType;

/// The signature used when a request names none.
pub const DEFAULT_SIGNATURE: &str = "serving_default";

/// TF's method name for predict signatures.
pub const PREDICT_METHOD_NAME: &str = "tensorflow/serving/predict";

/// One input or output of a signature, as TF's `TensorInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor name inside the model (for ONNX, the graph input or output name).
    pub name: String,
    pub dtype: DType,
    /// Dimensions with -1 for unknown ones; `None` when even the rank is unknown.
    pub shape: Option<Vec<i64>>,
    /// Set on a score-map output (a classifier's ZipMap, which the model makes as one
    /// `{key: score}` map per row): the keys, in column order. Such an output is served as a
    /// `[batch, keys]` float tensor; REST writes each row back as a `{key: score}` object and
    /// gRPC adds the keys as `<alias>_classes`.
    pub map_keys: Option<Arc<[String]>>,
}

/// The keys of the score-map outputs among a response's outputs, by alias.
pub type OutputKeys = BTreeMap<String, Arc<[String]>>;

/// A signature, as TF's `SignatureDef`. Maps are keyed by alias, sorted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SignatureDef {
    pub method_name: String,
    pub inputs: BTreeMap<String, TensorInfo>,
    pub outputs: BTreeMap<String, TensorInfo>,
    /// For a signature that parses tf.Example (a converted SavedModel's classify or regress
    /// signature): how Examples become the model's inputs. Its `inputs` then show TF's
    /// serialized-Example input, which the model never sees.
    pub example_spec: Option<super::example::ExampleSpec>,
    /// The model accepts inputs of any shape, as a TF graph does (it does not check a fed
    /// tensor against its placeholder; the ops decide): the declared shapes are what the
    /// signature documents, not checks. Otherwise a request must match them.
    pub lenient_shapes: bool,
}

/// All signatures of a servable, keyed by signature name.
pub type SignatureMap = BTreeMap<String, SignatureDef>;

/// Returns the signature `name`, or TF's INVALID_ARGUMENT
/// `Serving signature name: "<name>" not found in signature def`.
pub fn find_signature<'a>(signatures: &'a SignatureMap, name: &str) -> ServingResult<&'a SignatureDef> {
    signatures.get(name).ok_or_else(|| {
        ServingError::invalid_argument(format!("Serving signature name: \"{name}\" not found in signature def"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_signature_gets_tf_message() {
        let signatures: SignatureMap = [(DEFAULT_SIGNATURE.to_string(), SignatureDef::default())].into();
        assert!(find_signature(&signatures, DEFAULT_SIGNATURE).is_ok());
        let error = find_signature(&signatures, "nope").expect_err("missing");
        assert_eq!(error.code, super::super::error::Code::InvalidArgument);
        assert_eq!(error.message, r#"Serving signature name: "nope" not found in signature def"#);
    }
}

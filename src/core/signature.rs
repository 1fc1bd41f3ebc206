//! Signatures: the named inputs and outputs a servable exposes, as TF's SignatureDef.

use std::collections::BTreeMap;

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
}

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
}

/// All signatures of a servable, keyed by signature name.
pub type SignatureMap = BTreeMap<String, SignatureDef>;

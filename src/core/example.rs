//! tf.Example as plain data (features by key), and the feature spec that says how a
//! signature's Examples become tensors: what TF's `ParseExample` op does inside a SavedModel,
//! which an ONNX model cannot do for itself.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::DType;

/// One feature's values, as `tensorflow.Feature`. `Empty` is a key present with no list set.
#[derive(Debug, Clone, PartialEq)]
pub enum Feature {
    Empty,
    Floats(Vec<f32>),
    Int64s(Vec<i64>),
    Bytes(Vec<Bytes>),
}

impl Feature {
    /// TF's name of the list kind, for errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Feature::Empty => "empty",
            Feature::Floats(_) => "float",
            Feature::Int64s(_) => "int64",
            Feature::Bytes(_) => "string",
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Feature::Empty => 0,
            Feature::Floats(v) => v.len(),
            Feature::Int64s(v) => v.len(),
            Feature::Bytes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `tensorflow.Example`: features by key.
pub type Example = BTreeMap<String, Feature>;

/// The Examples of a Classify or Regress request, with the optional shared context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExampleInput {
    pub examples: Vec<Example>,
    pub context: Option<Example>,
}

/// How one parsed feature is shaped.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureShape {
    /// `FixedLenFeature`: exactly `dims` (product) values per example.
    Fixed(Vec<i64>),
    /// `FixedLenSequenceFeature`: any number of `dims`-shaped blocks, padded to the batch's
    /// longest with the scalar default.
    Sequence(Vec<i64>),
}

/// One feature that the signature's parse op reads.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    pub key: String,
    /// Float, Int64 or String.
    pub dtype: DType,
    pub shape: FeatureShape,
    /// `None`: the feature is required. For a sequence feature, one scalar.
    pub default: Option<Feature>,
    /// The model input (its name inside the model) this feature feeds; `None` when the parse
    /// op reads it but the signature does not use it (it is still validated, as TF does).
    pub model_input: Option<String>,
}

/// Every feature a tf.Example signature parses, in the op's key order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExampleSpec {
    pub features: Vec<FeatureSpec>,
}

/// A tf.Example method: Classify or Regress, as TF's signature method names say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExampleMethod {
    Classify,
    Regress,
}

impl ExampleMethod {
    /// Returns the method of TF's signature method name (`tensorflow/serving/classify` or
    /// `tensorflow/serving/regress`).
    pub fn from_method_name(name: &str) -> Option<Self> {
        match name {
            CLASSIFY_METHOD_NAME => Some(ExampleMethod::Classify),
            REGRESS_METHOD_NAME => Some(ExampleMethod::Regress),
            _ => None,
        }
    }
}

/// TF's method name for classify signatures.
pub const CLASSIFY_METHOD_NAME: &str = "tensorflow/serving/classify";

/// TF's method name for regress signatures.
pub const REGRESS_METHOD_NAME: &str = "tensorflow/serving/regress";

/// One class of one example: its label (`""` without a `classes` output) and score (`0.0`
/// without a `scores` output).
pub type Class = (Bytes, f32);

/// The results of a Classify or Regress call, one entry per example.
#[derive(Debug, Clone, PartialEq)]
pub enum ExampleResults {
    /// Classify: the classes of each example.
    Classes(Vec<Vec<Class>>),
    /// Regress: one value per example.
    Values(Vec<f32>),
}

impl ExampleResults {
    /// Returns Classify's classes, or `None` for Regress results.
    pub fn classes(&self) -> Option<&[Vec<Class>]> {
        match self {
            ExampleResults::Classes(classes) => Some(classes),
            ExampleResults::Values(_) => None,
        }
    }

    /// Returns Regress's values, or `None` for Classify results.
    pub fn values(&self) -> Option<&[f32]> {
        match self {
            ExampleResults::Values(values) => Some(values),
            ExampleResults::Classes(_) => None,
        }
    }
}

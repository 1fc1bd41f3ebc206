//! A session's graph inputs and outputs as ONNX Runtime reports them.

use ort::session::Session;
use ort::value::ValueType;

use super::convert::{dtype_from_ort, is_score_map};
use crate::core::DType;

/// One graph input or output as ONNX Runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIo {
    pub name: String,
    /// `None` for non-tensor values (sequences, maps) and element types TF has no name for.
    pub dtype: Option<DType>,
    /// Dimensions with -1 for symbolic ones. ONNX Runtime reports a missing shape as `[]`.
    pub dims: Vec<i64>,
    /// A sequence of `{key: float}` maps (a classifier's ZipMap), served as the dense
    /// `[batch, keys]` float tensor it holds once the signature declares its keys.
    pub score_map: bool,
}

/// Returns the inputs and outputs of a session.
pub(crate) fn model_io(session: &Session) -> (Vec<ModelIo>, Vec<ModelIo>) {
    let describe = |name: &str, value_type: &ValueType| match value_type {
        ValueType::Tensor { ty, shape, .. } => {
            ModelIo { name: name.to_string(), dtype: dtype_from_ort(*ty), dims: shape.to_vec(), score_map: false }
        }
        ValueType::Sequence(inner) if is_score_map(inner) => {
            ModelIo { name: name.to_string(), dtype: Some(DType::Float), dims: vec![-1, -1], score_map: true }
        }
        _ => ModelIo { name: name.to_string(), dtype: None, dims: Vec::new(), score_map: false },
    };
    let inputs = session.inputs().iter().map(|o| describe(o.name(), o.dtype())).collect();
    let outputs = session.outputs().iter().map(|o| describe(o.name(), o.dtype())).collect();
    (inputs, outputs)
}

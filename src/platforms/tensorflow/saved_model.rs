//! SavedModel signatures read in Rust: the SignatureDefs of `saved_model.pb`'s `serve`
//! MetaGraph, as TF Serving reports them.

use std::path::Path;

use prost::Message;

use super::precondition;
use crate::core::{DType, ServingError, ServingResult, SignatureDef, SignatureMap, TensorInfo};
use crate::proto::tensorflow as tf;

/// saved_model.pb may not be larger than this (TF's own limit is 2 GiB; ours is tighter).
const MAX_SAVED_MODEL_BYTES: u64 = 1 << 30;

/// Reads the SignatureDefs of the MetaGraph tagged `serve` (else the first), as TF Serving
/// reports them, `__saved_model_init_op` included.
pub fn read_signatures(saved_model_pb: &Path) -> ServingResult<SignatureMap> {
    let size = std::fs::metadata(saved_model_pb)
        .map_err(|e| ServingError::not_found(format!("cannot read {}: {e}", saved_model_pb.display())))?
        .len();
    if size > MAX_SAVED_MODEL_BYTES {
        return Err(precondition(format!(
            "{} is {size} bytes, more than {MAX_SAVED_MODEL_BYTES}",
            saved_model_pb.display()
        )));
    }
    let bytes = std::fs::read(saved_model_pb)
        .map_err(|e| ServingError::not_found(format!("cannot read {}: {e}", saved_model_pb.display())))?;
    signatures_from_bytes(&bytes).map_err(|e| precondition(format!("{}: {e}", saved_model_pb.display())))
}

/// Parses `saved_model.pb` bytes into signatures.
pub fn signatures_from_bytes(bytes: &[u8]) -> Result<SignatureMap, String> {
    let saved_model = tf::SavedModel::decode(bytes).map_err(|e| format!("not a SavedModel: {e}"))?;
    let meta = saved_model
        .meta_graphs
        .iter()
        .find(|m| m.meta_info_def.as_ref().is_some_and(|i| i.tags.iter().any(|t| t == "serve")))
        .or_else(|| saved_model.meta_graphs.first())
        .ok_or("the SavedModel holds no MetaGraph")?;
    let info = |proto: &tf::TensorInfo| -> TensorInfo {
        let name = match &proto.encoding {
            Some(tf::tensor_info::Encoding::Name(name)) => name.clone(),
            _ => String::new(),
        };
        let shape = proto
            .tensor_shape
            .as_ref()
            .and_then(|shape| (!shape.unknown_rank).then(|| shape.dim.iter().map(|d| d.size).collect::<Vec<i64>>()));
        let shape = if proto.tensor_shape.is_none() { None } else { shape };
        TensorInfo { name, dtype: DType::from_number(proto.dtype).unwrap_or(DType::Invalid), shape, map_keys: None }
    };
    Ok(meta
        .signature_def
        .iter()
        .map(|(name, signature)| {
            let def = SignatureDef {
                method_name: signature.method_name.clone(),
                inputs: signature.inputs.iter().map(|(alias, t)| (alias.clone(), info(t))).collect(),
                outputs: signature.outputs.iter().map(|(alias, t)| (alias.clone(), info(t))).collect(),
                example_spec: None,
                lenient_shapes: false,
            };
            (name.clone(), def)
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn tensor_info(name: &str, dtype: i32, dims: Option<&[i64]>) -> tf::TensorInfo {
        tf::TensorInfo {
            encoding: Some(tf::tensor_info::Encoding::Name(name.into())),
            dtype,
            tensor_shape: Some(match dims {
                Some(dims) => tf::TensorShapeProto {
                    dim: dims.iter().map(|&size| tf::tensor_shape_proto::Dim { size, name: String::new() }).collect(),
                    unknown_rank: false,
                },
                None => tf::TensorShapeProto { dim: vec![], unknown_rank: true },
            }),
        }
    }

    pub(crate) fn saved_model() -> Vec<u8> {
        let classify = tf::SignatureDef {
            inputs: [("inputs".to_string(), tensor_info("tf_example:0", 7, None))].into_iter().collect(),
            outputs: [("scores".to_string(), tensor_info("y:0", 1, Some(&[-1, 1])))].into_iter().collect(),
            method_name: "tensorflow/serving/classify".into(),
            defaults: Default::default(),
        };
        let meta = tf::MetaGraphDef {
            meta_info_def: Some(tf::meta_graph_def::MetaInfoDef { tags: vec!["serve".into()], ..Default::default() }),
            signature_def: [("classify_x_to_y".to_string(), classify)].into_iter().collect(),
        };
        tf::SavedModel { saved_model_schema_version: 1, meta_graphs: vec![meta] }.encode_to_vec()
    }

    #[test]
    fn signatures_come_from_saved_model_pb() {
        let signatures = signatures_from_bytes(&saved_model()).expect("parse");
        let classify = &signatures["classify_x_to_y"];
        assert_eq!(classify.method_name, "tensorflow/serving/classify");
        assert_eq!(
            classify.inputs["inputs"],
            TensorInfo { name: "tf_example:0".into(), dtype: DType::String, shape: None, map_keys: None }
        );
        assert_eq!(classify.outputs["scores"].shape, Some(vec![-1, 1]));
    }

    #[test]
    fn hostile_saved_models_are_refused() {
        let good = saved_model();
        assert!(signatures_from_bytes(&good[..good.len() - 5]).is_err(), "truncated");
        // A length prefix of 2^35 bytes on the meta_graphs field.
        assert!(signatures_from_bytes(&[0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err(), "huge length");
        assert!(signatures_from_bytes(b"not a protobuf at all").is_err());
        assert_eq!(signatures_from_bytes(&[]).expect_err("empty"), "the SavedModel holds no MetaGraph");
    }
}

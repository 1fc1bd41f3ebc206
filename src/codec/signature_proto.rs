//! Core signatures as TF's `SignatureDef` protos, for GetModelMetadata over gRPC.

use crate::core::{SignatureDef, SignatureMap, TensorInfo};
use crate::proto::tensorflow::serving::SignatureDefMap;
use crate::proto::tensorflow::{self as tf, tensor_info};

use super::tensor_proto::{dtype_to_proto, shape_to_proto};

/// The `type_url` of the metadata `Any`, as TF Serving writes it.
pub const SIGNATURE_DEF_MAP_TYPE_URL: &str = "type.googleapis.com/tensorflow.serving.SignatureDefMap";

fn tensor_info_proto(info: &TensorInfo) -> tf::TensorInfo {
    tf::TensorInfo {
        encoding: Some(tensor_info::Encoding::Name(info.name.clone())),
        dtype: dtype_to_proto(info.dtype),
        tensor_shape: Some(shape_to_proto(info.shape.as_deref())),
    }
}

fn signature_def_proto(signature: &SignatureDef) -> tf::SignatureDef {
    tf::SignatureDef {
        inputs: signature.inputs.iter().map(|(alias, info)| (alias.clone(), tensor_info_proto(info))).collect(),
        outputs: signature.outputs.iter().map(|(alias, info)| (alias.clone(), tensor_info_proto(info))).collect(),
        method_name: signature.method_name.clone(),
        defaults: Default::default(),
    }
}

/// Returns every signature of a servable as a `SignatureDefMap`.
pub fn signature_def_map(signatures: &SignatureMap) -> SignatureDefMap {
    SignatureDefMap {
        signature_def: signatures.iter().map(|(name, sig)| (name.clone(), signature_def_proto(sig))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::core::DType;

    #[test]
    fn tensor_infos_keep_names_dtypes_and_shapes() {
        let mut inputs = BTreeMap::new();
        inputs.insert(
            "x".to_string(),
            TensorInfo { name: "x:0".into(), dtype: DType::Float, shape: Some(vec![-1, 1]), map_keys: None },
        );
        inputs.insert(
            "e".to_string(),
            TensorInfo { name: "tf_example:0".into(), dtype: DType::String, shape: None, map_keys: None },
        );
        let signature = SignatureDef {
            method_name: "tensorflow/serving/predict".into(),
            inputs,
            outputs: BTreeMap::new(),
            example_spec: None,
            lenient_shapes: false,
        };
        let map = signature_def_map(&BTreeMap::from([("serving_default".to_string(), signature)]));
        let def = &map.signature_def["serving_default"];
        assert_eq!(def.method_name, "tensorflow/serving/predict");
        let x = &def.inputs["x"];
        assert_eq!(x.encoding, Some(tensor_info::Encoding::Name("x:0".into())));
        assert_eq!(x.dtype, 1);
        let dims: Vec<i64> =
            x.tensor_shape.as_ref().map(|s| s.dim.iter().map(|d| d.size).collect()).unwrap_or_default();
        assert_eq!(dims, vec![-1, 1]);
        assert!(def.inputs["e"].tensor_shape.as_ref().is_some_and(|s| s.unknown_rank && s.dim.is_empty()));
    }
}

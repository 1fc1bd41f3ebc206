//! Wire formats to and from core tensors: TF Serving JSON, `TensorProto`, SignatureDef protos.

pub mod json;
pub mod signature_proto;
pub mod tensor_proto;

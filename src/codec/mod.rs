//! Wire formats to and from core tensors: TF Serving JSON, `TensorProto`, SignatureDef protos,
//! images, and TF's base64.

pub mod base64;
pub mod example_proto;
pub mod image;
pub mod json;
pub mod signature_proto;
pub mod tensor_proto;

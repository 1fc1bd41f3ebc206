//! Wire formats to and from core tensors: TF Serving JSON, `TensorProto`, SignatureDef protos,
//! and images.

pub mod example_proto;
pub mod image;
pub mod json;
pub mod signature_proto;
pub mod tensor_proto;

//! Wire formats to and from core tensors.

pub mod json;

//! onnx-serving: TensorFlow Serving's APIs, served from ONNX Runtime.

pub mod auth;
pub mod batching;
pub mod codec;
pub mod config;
pub mod core;
pub mod grpc;
pub mod http;
pub mod inference;
pub mod observability;
pub mod platforms;
pub mod proto;
pub mod runtime;
pub mod server;
pub mod sources;
pub mod warmup;

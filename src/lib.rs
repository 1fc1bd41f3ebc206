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

/// Returns a file of TF Serving's own test data, which the shared references keep beside the
/// repository (`../shared/tfs-testdata`, or `$TFS_TESTDATA_DIR`). It is read, never copied in.
#[cfg(test)]
pub(crate) fn tfs_testdata(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("TFS_TESTDATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tfs-testdata"));
    dir.join(name)
}

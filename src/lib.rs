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

/// Returns a file of TF Serving's own test data, which the project's shared references keep
/// beside the repository (`../shared/tfs-testdata`, or `$TFS_TESTDATA_DIR`); it is read, never
/// copied in. A clone without them has `None`, and the test that asked says it skipped, unless
/// `ONNX_SERVING_REQUIRE_ALL_TESTS=1` (CI) makes the absence a failure.
#[cfg(test)]
pub(crate) fn tfs_testdata(name: &str) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("TFS_TESTDATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tfs-testdata"));
    let path = dir.join(name);
    if path.is_file() {
        return Some(path);
    }
    let required = std::env::var("ONNX_SERVING_REQUIRE_ALL_TESTS").is_ok_and(|v| v == "1");
    assert!(!required, "TF Serving's test file {} is missing (ONNX_SERVING_REQUIRE_ALL_TESTS=1)", path.display());
    eprintln!("skipped: TF Serving's test file {} is not beside this clone", path.display());
    None
}

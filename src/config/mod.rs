//! Configuration: the command line with TF Serving's flag names, and TF Serving's config
//! messages turned into core model configs.

pub mod cli;
pub mod model_server_config;
pub mod monitoring;
pub mod ssl;

pub use cli::{Cli, Command, ServeArgs};

/// Returns a file of TF Serving's own test data, which the shared references keep beside the
/// repository (`../shared/tfs-testdata`, or `$TFS_TESTDATA_DIR`). It is read, never copied in.
#[cfg(test)]
pub(crate) fn tfs_testdata(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("TFS_TESTDATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tfs-testdata"));
    dir.join(name)
}

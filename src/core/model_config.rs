//! The models a server is asked to serve, and the seam through which that set changes at
//! run time (TF Serving's `ServerCore::ReloadConfig`).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use super::error::ServingResult;
use super::policy::VersionPolicy;

/// One served model, as an entry of TF Serving's `model_config_list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    pub name: String,
    pub base_path: PathBuf,
    /// The platform whose SourceAdapter loads the versions (`onnx`, `pytorch`, ...); empty
    /// detects it from each version directory.
    pub platform: String,
    pub policy: VersionPolicy,
    /// Version labels (`stable`, `canary`, ...) to version numbers.
    pub labels: BTreeMap<String, i64>,
}

/// A boxed future, so the trait stays object-safe.
pub type ReloadFuture = Pin<Box<dyn Future<Output = ServingResult<()>> + Send>>;

/// Replaces the set of served models: models that are new are loaded (and waited for, until
/// `deadline` at most), models that are gone are unloaded, and the others get their new
/// policy and labels.
pub trait ConfigReloader: Send + Sync {
    fn reload(&self, models: Vec<ModelConfig>, deadline: Option<std::time::Instant>) -> ReloadFuture;
}

//! The platform registry: a platform name maps to the factory of its SourceAdapter.

pub mod detect;
pub mod onnx;
pub mod onnx_graph;
pub mod resolve;
pub mod tensorflow;
pub mod version_options;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::core::SourceAdapter;

/// A model names a platform no adapter is registered for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model platform `{platform}`; known platforms: {}", known.join(", "))]
pub struct UnknownPlatform {
    pub platform: String,
    pub known: Vec<String>,
}

/// Builds the adapter of one platform.
pub type AdapterFactory = Arc<dyn Fn() -> Arc<dyn SourceAdapter> + Send + Sync>;

/// Maps platform names (`onnx`, `pytorch`, ...) to adapter factories.
#[derive(Default, Clone)]
pub struct PlatformRegistry {
    factories: BTreeMap<String, AdapterFactory>,
}

impl PlatformRegistry {
    pub fn register(&mut self, platform: &str, factory: AdapterFactory) {
        self.factories.insert(platform.to_string(), factory);
    }

    /// Returns the adapter for `platform`, or an error that lists the known platforms.
    /// The empty name (`detect::DETECT`) gives the adapter that detects each version's platform.
    pub fn adapter(&self, platform: &str) -> Result<Arc<dyn SourceAdapter>, UnknownPlatform> {
        if platform == detect::DETECT {
            return Ok(Arc::new(detect::DetectingAdapter::new(self.clone())));
        }
        match self.factories.get(platform) {
            Some(factory) => Ok(factory()),
            None => Err(UnknownPlatform { platform: platform.to_string(), known: self.platforms() }),
        }
    }

    pub fn platforms(&self) -> Vec<String> {
        self.factories.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::core::{Loader, ServableId, ServingError, ServingResult};

    struct FakeAdapter;

    impl SourceAdapter for FakeAdapter {
        fn platform(&self) -> &str {
            "fake"
        }
        fn adapt(&self, _id: &ServableId, _path: PathBuf) -> ServingResult<Box<dyn Loader>> {
            Err(ServingError::unimplemented("fake"))
        }
    }

    #[test]
    fn unknown_platform_lists_the_known_ones() {
        let mut registry = PlatformRegistry::default();
        registry.register("onnx", Arc::new(|| Arc::new(FakeAdapter) as Arc<dyn SourceAdapter>));
        registry.register("pytorch", Arc::new(|| Arc::new(FakeAdapter) as Arc<dyn SourceAdapter>));
        assert!(registry.adapter("onnx").is_ok());
        let error = registry.adapter("caffe").err().expect("unknown");
        assert_eq!(error.to_string(), "unknown model platform `caffe`; known platforms: onnx, pytorch");
    }
}

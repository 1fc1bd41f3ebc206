//! `Extensions`: what a loader attaches to a version for the layers above core (how images
//! feed an input, say), one value per type, and the servable that carries them.

use std::any::Any;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::error::ServingResult;
use super::servable::{RunOutputs, RunRequest, Servable};
use super::signature::SignatureMap;

/// Values keyed by their type. Core never looks inside; the layer that owns a type attaches
/// it at load time and reads it per request. Cloning shares the values.
#[derive(Default, Clone)]
pub struct Extensions {
    values: Vec<Arc<dyn Any + Send + Sync>>,
}

static EMPTY: Extensions = Extensions { values: Vec::new() };

impl Extensions {
    /// Returns the shared empty set.
    pub fn empty() -> &'static Extensions {
        &EMPTY
    }

    /// Attaches `value`, replacing an earlier value of the same type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.values.retain(|v| !v.is::<T>());
        self.values.push(Arc::new(value));
    }

    /// Returns the value of type `T`, if one is attached.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.values.iter().find_map(|v| v.downcast_ref::<T>())
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions").field("len", &self.values.len()).finish()
    }
}

/// A servable with extensions attached by the loader step; everything else is the inner
/// servable's.
pub struct ExtendedServable {
    inner: Arc<dyn Servable>,
    extensions: Extensions,
}

impl ExtendedServable {
    /// Returns `inner` itself when there is nothing to attach.
    pub fn wrap(inner: Arc<dyn Servable>, extensions: Extensions) -> Arc<dyn Servable> {
        if extensions.is_empty() {
            return inner;
        }
        Arc::new(Self { inner, extensions })
    }
}

impl Servable for ExtendedServable {
    fn signatures(&self) -> &SignatureMap {
        self.inner.signatures()
    }

    fn submit(&self, request: RunRequest) -> oneshot::Receiver<ServingResult<RunOutputs>> {
        self.inner.submit(request)
    }

    fn run_blocking(&self, request: RunRequest) -> ServingResult<RunOutputs> {
        self.inner.run_blocking(request)
    }

    fn execution_providers(&self) -> Vec<String> {
        self.inner.execution_providers()
    }

    fn extensions(&self) -> &Extensions {
        &self.extensions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_type() {
        let mut extensions = Extensions::default();
        assert!(extensions.get::<u32>().is_none());
        extensions.insert(7u32);
        extensions.insert(String::from("x"));
        extensions.insert(9u32);
        assert_eq!(extensions.get::<u32>(), Some(&9));
        assert_eq!(extensions.get::<String>().map(String::as_str), Some("x"));
        assert!(Extensions::empty().get::<u32>().is_none());
    }
}

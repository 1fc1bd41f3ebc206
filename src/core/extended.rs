//! `ExtendedServable`: a servable with `Extensions` attached by the loader step.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::error::ServingResult;
use super::extensions::Extensions;
use super::servable::{RunOutputs, RunRequest, Servable};
use super::signature::SignatureMap;

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

    fn admission(&self) -> ServingResult<()> {
        self.inner.admission()
    }

    fn execution_providers(&self) -> Vec<String> {
        self.inner.execution_providers()
    }

    fn extensions(&self) -> &Extensions {
        &self.extensions
    }
}

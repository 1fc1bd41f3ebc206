//! `ServableHandle`: a short-lived reference to a loaded version, and the `DrainLease` that
//! tells the manager when the last one to a retiring version is gone.

use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::servable::{Servable, ServableId};

/// Fires when the last handle to a retiring version is dropped.
pub struct DrainLease {
    drained_tx: Mutex<Option<oneshot::Sender<()>>>,
}

impl DrainLease {
    /// Returns a lease that sends on `drained_tx` when dropped.
    pub fn new(drained_tx: oneshot::Sender<()>) -> Self {
        Self { drained_tx: Mutex::new(Some(drained_tx)) }
    }
}

impl Drop for DrainLease {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.drained_tx.lock() {
            if let Some(tx) = slot.take() {
                let _ = tx.send(());
            }
        }
    }
}

/// A short-lived reference to a loaded version. The version cannot finish unloading while
/// any handle to it is alive.
#[derive(Clone)]
pub struct ServableHandle {
    pub id: ServableId,
    pub servable: Arc<dyn Servable>,
    pub(crate) _lease: Arc<DrainLease>,
}

impl fmt::Debug for ServableHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServableHandle").field("id", &self.id).finish()
    }
}

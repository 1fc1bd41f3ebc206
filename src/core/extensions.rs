//! `Extensions`: what a loader attaches to a version for the layers above core (how images
//! feed an input, say), one value per type.

use std::any::Any;
use std::sync::Arc;

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

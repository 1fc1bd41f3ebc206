//! Decorating every version a platform loads: a `LoadDecorator` says what to do around one
//! load, and `Decorated` applies it to every loader an adapter makes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::ServingResult;
use super::loader::{Loader, SourceAdapter};
use super::servable::{Servable, ServableId};

/// Wraps one load: runs `inner` (once, or not at all when it refuses first) and may wrap or
/// check the servable it returns. A decorator that wraps the servable forwards
/// `Servable::extensions`.
pub trait LoadDecorator: Send + Sync + 'static {
    fn load(&self, id: &ServableId, path: &Path, inner: &dyn Loader) -> ServingResult<Arc<dyn Servable>>;
}

/// A `SourceAdapter` whose loaders go through `decorator`.
pub struct Decorated<D> {
    inner: Arc<dyn SourceAdapter>,
    decorator: Arc<D>,
}

impl<D: LoadDecorator> Decorated<D> {
    /// Returns `inner` with every load going through `decorator`.
    pub fn wrap(inner: Arc<dyn SourceAdapter>, decorator: D) -> Arc<dyn SourceAdapter> {
        Arc::new(Self { inner, decorator: Arc::new(decorator) })
    }
}

impl<D: LoadDecorator> SourceAdapter for Decorated<D> {
    fn platform(&self) -> &str {
        self.inner.platform()
    }

    fn adapt(&self, id: &ServableId, path: PathBuf) -> ServingResult<Box<dyn Loader>> {
        let inner = self.inner.adapt(id, path.clone())?;
        Ok(Box::new(DecoratedLoader { id: id.clone(), path, inner, decorator: Arc::clone(&self.decorator) }))
    }
}

struct DecoratedLoader<D> {
    id: ServableId,
    path: PathBuf,
    inner: Box<dyn Loader>,
    decorator: Arc<D>,
}

impl<D: LoadDecorator> Loader for DecoratedLoader<D> {
    fn load(&self) -> ServingResult<Arc<dyn Servable>> {
        self.decorator.load(&self.id, &self.path, self.inner.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::core::testing::FakeAdapter;
    use crate::core::ServingError;

    /// Records the order of loads it sees, under its name.
    struct Trace {
        name: &'static str,
        seen: Arc<Mutex<Vec<String>>>,
        refuse: bool,
    }

    impl LoadDecorator for Trace {
        fn load(&self, id: &ServableId, path: &Path, inner: &dyn Loader) -> ServingResult<Arc<dyn Servable>> {
            if self.refuse {
                return Err(ServingError::invalid_argument(format!("{} refused", self.name)));
            }
            let servable = inner.load()?;
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(format!("{} {} {}", self.name, id.version, path.display()));
            }
            Ok(servable)
        }
    }

    #[test]
    fn decorators_run_innermost_first_and_keep_the_platform() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let fake: Arc<dyn SourceAdapter> =
            Arc::new(FakeAdapter { attempts: Arc::clone(&attempts), ..FakeAdapter::healthy() });
        let trace = |name, refuse| Trace { name, seen: Arc::clone(&seen), refuse };
        let adapter = Decorated::wrap(Decorated::wrap(fake, trace("inner", false)), trace("outer", false));
        assert_eq!(adapter.platform(), "fake");
        let id = ServableId { name: "m".into(), version: 3 };
        let servable = adapter.adapt(&id, PathBuf::from("/m/3")).expect("adapt").load().expect("load");
        assert_eq!(servable.execution_providers(), vec!["CPU".to_string()]);
        assert_eq!(seen.lock().expect("lock").clone(), vec!["inner 3 /m/3", "outer 3 /m/3"]);

        let refusing = Decorated::wrap(adapter, trace("refusing", true));
        let error = refusing.adapt(&id, PathBuf::from("/m/3")).expect("adapt").load().err().expect("refused");
        assert_eq!(error.message, "refusing refused");
        assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 1, "a refused load never reaches the platform");
    }
}

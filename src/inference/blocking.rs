//! CPU work kept off the async runtime: decoding, encoding and image work that is too large
//! to run inline goes to a blocking thread.

use crate::core::{ServingError, ServingResult};

/// Runs `work` on the caller's thread when `inline` (small work: cheaper than a hand-off),
/// else on a blocking thread. `what` names the work in the error of a panicked thread
/// (`"request decoding failed: ..."`).
pub async fn inline_or_blocking<T: Send + 'static>(
    inline: bool,
    what: &'static str,
    work: impl FnOnce() -> ServingResult<T> + Send + 'static,
) -> ServingResult<T> {
    if inline {
        return work();
    }
    tokio::task::spawn_blocking(work).await.map_err(|e| ServingError::internal(format!("{what} failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_work_runs_inline_and_large_work_on_a_blocking_thread() {
        let caller = std::thread::current().id();
        let inline = inline_or_blocking(true, "work", move || Ok(std::thread::current().id() == caller)).await;
        assert!(inline.expect("ran"), "inline work stays on the caller's thread");
        let moved = inline_or_blocking(false, "work", move || Ok(std::thread::current().id() == caller)).await;
        assert!(!moved.expect("ran"), "large work leaves the caller's thread");
        let panicked = inline_or_blocking(false, "request decoding", || -> ServingResult<()> { panic!("boom") }).await;
        assert!(panicked.expect_err("panic").message.starts_with("request decoding failed: "));
    }
}

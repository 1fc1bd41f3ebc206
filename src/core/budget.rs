//! The memory budget of requests in flight: bytes decoded and not yet answered, across every
//! request, so that many large requests at once are refused instead of adding up to an OOM.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::error::{Code, ServingError, ServingResult};

/// A process-wide budget of request bytes. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    used: AtomicUsize,
}

/// Bytes taken from the budget, given back when dropped (once the answer is written).
#[derive(Debug)]
pub struct BudgetPermit {
    inner: Arc<Inner>,
    bytes: usize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Self {
        Self { inner: Arc::new(Inner { limit, used: AtomicUsize::new(0) }) }
    }

    /// The bytes in flight now.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::SeqCst)
    }

    /// Takes `bytes` for one request, or refuses at once with RESOURCE_EXHAUSTED (REST 429
    /// with `Retry-After`, gRPC RESOURCE_EXHAUSTED) when the budget cannot hold them now.
    pub fn try_take(&self, bytes: usize) -> ServingResult<BudgetPermit> {
        let limit = self.inner.limit;
        let taken = self.inner.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
            used.checked_add(bytes).filter(|&total| total <= limit)
        });
        match taken {
            Ok(_) => Ok(BudgetPermit { inner: Arc::clone(&self.inner), bytes }),
            Err(used) => Err(ServingError::new(
                Code::ResourceExhausted,
                format!(
                    "this request needs {bytes} bytes and {used} of the {limit} bytes that requests in flight may \
                     hold (--max_inflight_request_bytes) are taken; retry later"
                ),
            )),
        }
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.inner.used.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_hold_bytes_until_dropped_and_refuse_past_the_limit() {
        let budget = MemoryBudget::new(100);
        let a = budget.try_take(60).expect("fits");
        let refused = budget.try_take(50).expect_err("over");
        assert_eq!(refused.code, Code::ResourceExhausted);
        assert!(refused.message.contains("needs 50 bytes and 60 of the 100 bytes"), "{}", refused.message);
        let b = budget.try_take(40).expect("fits exactly");
        assert_eq!(budget.used(), 100);
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0);
        assert!(budget.try_take(101).is_err(), "larger than the whole budget");
        assert!(budget.try_take(usize::MAX).is_err(), "no overflow");
    }
}

//! A global allocator that counts the bytes the process holds and the peak a piece of code
//! reaches above where it started. The fuzz targets check their allocation bounds with it, and
//! `tests/fuzz_regressions.rs` includes this file to replay what they found with the same
//! measure. The includer installs it: `#[global_allocator] static A: Counting = Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Forwards to the system allocator and counts.
pub struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Tests run on several threads: one measures at a time.
static MEASURING: Mutex<()> = Mutex::new(());

fn grew(bytes: usize) {
    let held = HELD.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(held, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            // NOTE: counted as the new block on top of the old one, which a moving realloc
            // holds for a moment, then the old one released.
            grew(new_size);
            HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        moved
    }
}

/// Runs `code` and returns its result with the most memory it held at once, above what was
/// held when it started.
pub fn measure<T>(code: impl FnOnce() -> T) -> (T, usize) {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let base = HELD.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let result = code();
    (result, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

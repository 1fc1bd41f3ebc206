//! Inputs the fuzzers (`fuzz/`, `scripts/fuzz.sh`) found, replayed with the invariant each
//! broke: every one failed before its fix. Allocation bounds are checked with a counting
//! allocator, as the fuzz targets check them.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use onnx_serving::codec::image::{image_target, images_to_tensor, ImageLimits};
use onnx_serving::core::{DType, TensorInfo};

struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Tests run on several threads; one measures at a time.
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

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            grew(new_size);
            HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most it held at once above where it started.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let base = HELD.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let result = f();
    (result, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

fn regression(name: &str) -> Bytes {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz_regressions").join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

#[test]
fn a_gif_whose_frame_is_larger_than_its_image_is_refused_before_the_frame_is_allocated() {
    // A 6x4 GIF whose frame declares 14648x1633 pixels: 54 bytes that made the decoder
    // allocate 95 MB before finding the frame's data missing.
    let gif = regression("gif_frame_larger_than_image.gif");
    let info =
        TensorInfo { name: "image".into(), dtype: DType::Half, shape: Some(vec![-1, -1, -1, 3]), map_keys: None };
    let plan = image_target(&info, None).expect("valid").expect("an image input");
    let (result, peak) = peak_of(|| images_to_tensor(&[gif.clone(), gif], &plan, &ImageLimits::default()));
    let error = result.expect_err("refused").message;
    assert!(error.starts_with("image 0: cannot decode the image"), "{error}");
    assert!(peak < 4 << 20, "decoding held {peak} bytes");
}

#[test]
fn a_graph_length_near_the_largest_integer_is_garbage_not_an_overflow() {
    // Field 7 (the graph) with a length of almost 2^64: adding the reader's position to it
    // overflowed (a panic with overflow checks, a wrapped end without).
    let model = [0x3a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03];
    assert_eq!(onnx_serving::platforms::onnx_graph::graph_facts_from_bytes(&model), None);
}

//! Inputs the fuzzers (`fuzz/`, `scripts/fuzz.sh`) found, replayed with the invariant each
//! broke: every one failed before its fix. Allocation bounds are checked with the fuzz
//! targets' own counting allocator (`fuzz/src/counting_alloc.rs`).
#![allow(unsafe_code)]

use std::path::Path;

use bytes::Bytes;
use onnx_serving::codec::image::{image_target, images_to_tensor, ImageLimits};
use onnx_serving::core::{DType, TensorInfo};

#[path = "../fuzz/src/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::measure as peak_of;

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

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

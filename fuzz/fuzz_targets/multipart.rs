//! `multipart/form-data` image uploads. Checked: the allocation bound, and that the images
//! taken from a body are no larger than the body.
#![no_main]

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use onnx_serving::http::image_upload::read_upload;
use onnx_serving_fuzz::{measure, Bound};

/// The body's copy, the fields and the images taken from it.
const BOUND: Bound = Bound { per_input_byte: 8, budget_factor: 0, budget: 0, constant: 64 << 10 };

fuzz_target!(|bytes: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("multipart/form-data; boundary=fuzz"));
    let body = Bytes::copy_from_slice(bytes);
    let (upload, peak) = measure(|| runtime.block_on(read_upload(&headers, body)));
    BOUND.check("multipart", bytes.len(), peak);
    match upload {
        Err(error) => assert!(!error.message.is_empty()),
        Ok(upload) => {
            assert!(!upload.images.is_empty(), "an upload without images");
            assert!(upload.images.iter().map(|image| image.len()).sum::<usize>() <= bytes.len());
        }
    }
});

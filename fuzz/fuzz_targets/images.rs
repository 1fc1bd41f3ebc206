//! Uploaded images through preprocessing: the first byte picks the model's image input (size
//! fixed or dynamic, layout, color, resize mode, element type) and how many copies are sent,
//! the rest is the image file. Checked: no decode holds more than the pixel and tensor limits
//! allow, and a decoded batch has the plan's shape.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use onnx_serving::codec::image::plan::ImageOptions;
use onnx_serving::codec::image::{image_target, images_to_tensor, ImageLimits, ResizeMode};
use onnx_serving::core::{DType, TensorInfo};
use onnx_serving_fuzz::{measure, Bound};

const LIMITS: ImageLimits = ImageLimits { max_pixels: 1 << 20, max_images: 4, max_tensor_bytes: 4 << 20 };

/// What the decoder may allocate (16 bytes a pixel plus 64 MiB, see `decode_one`), the
/// image's conversion, the resizer's scratch, the 8-bit pixels of the batch and the tensor
/// (within its limit).
const BOUND: Bound =
    Bound { per_input_byte: 4, budget_factor: 3, budget: LIMITS.max_tensor_bytes, constant: 112 << 20 };

fuzz_target!(|bytes: &[u8]| {
    let Some((&choice, image)) = bytes.split_first() else { return };
    let dims: &[i64] = match choice & 3 {
        0 => &[-1, 8, 8, 3],
        1 => &[-1, 3, 16, 12],
        2 => &[-1, -1, -1, 3],
        _ => &[-1, 1, -1, -1],
    };
    let dtype = [DType::Float, DType::UInt8, DType::Half][usize::from(choice >> 2 & 3) % 3];
    let resize = [ResizeMode::Stretch, ResizeMode::Letterbox, ResizeMode::CenterCrop][usize::from(choice >> 4 & 3) % 3];
    let copies = usize::from(choice >> 6) + 1;
    let info = TensorInfo { name: "image".into(), dtype, shape: Some(dims.to_vec()), map_keys: None };
    let options = ImageOptions { resize, ..ImageOptions::default() };
    let plan = image_target(&info, Some(&options)).expect("a valid plan").expect("an image input");
    let images = vec![Bytes::copy_from_slice(image); copies];
    let (result, peak) = measure(|| images_to_tensor(&images, &plan, &LIMITS));
    BOUND.check("image", image.len() * copies, peak);
    match result {
        Err(error) => {
            assert!(error.message.starts_with("image ") || error.message.contains("limit"), "{}", error.message)
        }
        Ok(tensor) => {
            assert_eq!(tensor.shape.first().copied(), Some(copies));
            assert_eq!(tensor.shape.len(), 4);
            for (got, wanted) in tensor.shape.iter().zip(dims).skip(1) {
                assert!(*wanted < 0 || *got as i64 == *wanted, "shape {:?} for the input {dims:?}", tensor.shape);
            }
            assert!(tensor.held_bytes() <= LIMITS.max_tensor_bytes);
        }
    }
});

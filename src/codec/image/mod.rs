//! Images to tensors: formats decoded with `image` (sizes bounded before decoding), brought
//! to the input's size with `fast_image_resize` (stretch, letterbox or center crop), and laid
//! out as the model's image input and its image options ask (NCHW or NHWC, gray, RGB or BGR,
//! uint8 0..255 or float/half scaled and normalised per channel).

pub mod plan;

use std::io::Cursor;

use bytes::Bytes;
use fast_image_resize::images::Image;
use fast_image_resize::{PixelType, ResizeOptions, Resizer};
use image::{DynamicImage, ImageReader};

use crate::core::{DType, ServingError, ServingResult, Tensor, TensorInfo};
use plan::{image_plan, ImageOptions};

/// Bounds on what one request may upload.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    /// Width × height of one image, checked from its header before it is decoded.
    pub max_pixels: u64,
    pub max_images: usize,
    /// What the request's images may decode to, as the model's input tensor: checked once
    /// the size they are brought to is known (from the plan, or from the first image's header
    /// when the input's size is dynamic), before the others are decoded.
    pub max_tensor_bytes: usize,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self { max_pixels: 40_000_000, max_images: 64, max_tensor_bytes: 1 << 30 }
    }
}

/// What a decoder may allocate beyond the pixels of the image it decodes: its tables,
/// buffers and the image's metadata (PNG counts text and ICC chunks against the limit).
const DECODER_SCRATCH_BYTES: u64 = 64 << 20;

/// Refuses a batch of `count` images brought to `width` × `height` when the tensor they make
/// is over `limits.max_tensor_bytes`.
fn check_tensor_bytes(
    count: usize,
    width: u32,
    height: u32,
    plan: &ImagePlan,
    limits: &ImageLimits,
) -> ServingResult<()> {
    let bytes = [width as usize, height as usize, plan.channels(), plan.dtype.element_size().unwrap_or(4)]
        .iter()
        .try_fold(count, |acc, &n| acc.checked_mul(n))
        .unwrap_or(usize::MAX);
    if bytes > limits.max_tensor_bytes {
        return Err(ServingError::invalid_argument(format!(
            "{count} image(s) at {width}x{height} with {} channel(s) make a tensor of {bytes} bytes, more than the \
             limit of {} bytes (--max_decoded_request_bytes)",
            plan.channels(),
            limits.max_tensor_bytes
        )));
    }
    Ok(())
}

pub use plan::{ColorOrder, ImagePlan, Layout, PixelScale, ResizeMode};

/// Returns how images feed `info` (see `plan::image_plan`), or `None` when it
/// is not an image input. Options that contradict the input are FAILED_PRECONDITION.
pub fn image_target(info: &TensorInfo, options: Option<&ImageOptions>) -> ServingResult<Option<ImagePlan>> {
    image_plan(info, options).map_err(|e| ServingError::failed_precondition(format!("model_options.pbtxt: {e}")))
}

fn decode_one(index: usize, data: &[u8], limits: &ImageLimits) -> ServingResult<DynamicImage> {
    let bad = |what: String| ServingError::invalid_argument(format!("image {index}: {what}"));
    if data.is_empty() {
        return Err(bad("the upload is empty".into()));
    }
    let reader = || -> ServingResult<ImageReader<Cursor<&[u8]>>> {
        let reader = ImageReader::new(Cursor::new(data)).with_guessed_format().map_err(|e| bad(e.to_string()))?;
        if reader.format().is_none() {
            return Err(bad("unknown image format (JPEG, PNG, WebP, GIF and BMP are supported)".into()));
        }
        Ok(reader)
    };
    // NOTE: the header is read first, so a decompression bomb is refused before any pixel
    // buffer is allocated.
    let (width, height) = reader()?.into_dimensions().map_err(|e| bad(format!("cannot read the image header: {e}")))?;
    if width == 0 || height == 0 {
        return Err(bad(format!("the image is {width}x{height} pixels")));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(bad(format!(
            "the image is {width}x{height} pixels, more than the limit of {} pixels",
            limits.max_pixels
        )));
    }
    let mut reader = reader()?;
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(width);
    decoder_limits.max_image_height = Some(height);
    // NOTE: a GIF frame may declare a size far larger than the image's own; what the PNG
    // and GIF decoders may allocate is bounded by the header's size (twice the largest pixel,
    // RGBA at 16 bits a channel) plus room for metadata (ICC profiles, text chunks).
    decoder_limits.max_alloc = Some(u64::from(width) * u64::from(height) * 16 + DECODER_SCRATCH_BYTES);
    reader.limits(decoder_limits);
    reader.decode().map_err(|e| bad(format!("cannot decode the image: {e}")))
}

/// Returns the interleaved (HWC) 8-bit pixels of `image` in the plan's color order, brought
/// to `width` × `height` by the plan's resize mode.
fn pixels(image: DynamicImage, plan: &ImagePlan, width: u32, height: u32) -> ServingResult<Vec<u8>> {
    let (source_width, source_height) = (image.width(), image.height());
    // NOTE: `into_*` keeps the decoded buffer when it already has the wanted channels.
    let (mut buffer, pixel_type) = if plan.color == ColorOrder::Gray {
        (image.into_luma8().into_raw(), PixelType::U8)
    } else {
        (image.into_rgb8().into_raw(), PixelType::U8x3)
    };
    if plan.color == ColorOrder::Bgr {
        for pixel in buffer.chunks_exact_mut(3) {
            pixel.swap(0, 2);
        }
    }
    if (source_width, source_height) == (width, height) {
        return Ok(buffer);
    }
    let internal = |e: String| ServingError::internal(format!("image resize failed: {e}"));
    let source =
        Image::from_vec_u8(source_width, source_height, buffer, pixel_type).map_err(|e| internal(e.to_string()))?;
    let mut resizer = Resizer::new();
    match plan.resize {
        ResizeMode::Stretch => {
            let mut target = Image::new(width, height, pixel_type);
            resizer.resize(&source, &mut target, None).map_err(|e| internal(e.to_string()))?;
            Ok(target.into_vec())
        }
        ResizeMode::CenterCrop => {
            let mut target = Image::new(width, height, pixel_type);
            let options = ResizeOptions::new().fit_into_destination(Some((0.5, 0.5)));
            resizer.resize(&source, &mut target, &options).map_err(|e| internal(e.to_string()))?;
            Ok(target.into_vec())
        }
        ResizeMode::Letterbox => {
            let scale =
                f64::min(f64::from(width) / f64::from(source_width), f64::from(height) / f64::from(source_height));
            let fitted_width = ((f64::from(source_width) * scale).round() as u32).clamp(1, width);
            let fitted_height = ((f64::from(source_height) * scale).round() as u32).clamp(1, height);
            let mut fitted = Image::new(fitted_width, fitted_height, pixel_type);
            resizer.resize(&source, &mut fitted, None).map_err(|e| internal(e.to_string()))?;
            let channels = plan.channels();
            let mut canvas = vec![plan.pad_value; width as usize * height as usize * channels];
            let (left, top) = ((width - fitted_width) / 2, (height - fitted_height) / 2);
            let row_bytes = fitted_width as usize * channels;
            for (row, line) in fitted.buffer().chunks_exact(row_bytes).enumerate() {
                let start = ((top as usize + row) * width as usize + left as usize) * channels;
                canvas[start..start + row_bytes].copy_from_slice(line);
            }
            Ok(canvas)
        }
    }
}

/// Decodes `images` into one `[batch, ...]` tensor for `plan`. Every error is
/// INVALID_ARGUMENT and names the image.
pub fn images_to_tensor(images: &[Bytes], plan: &ImagePlan, limits: &ImageLimits) -> ServingResult<Tensor> {
    if images.is_empty() {
        return Err(ServingError::invalid_argument("the request carries no image"));
    }
    if images.len() > limits.max_images {
        return Err(ServingError::invalid_argument(format!(
            "the request carries {} images, more than the limit of {}",
            images.len(),
            limits.max_images
        )));
    }
    let mut size: Option<(u32, u32)> = plan.width.zip(plan.height);
    if let Some((width, height)) = size {
        check_tensor_bytes(images.len(), width, height, plan, limits)?;
    }
    let mut all = Vec::new();
    for (index, data) in images.iter().enumerate() {
        let image = decode_one(index, data, limits)?;
        // NOTE: a dynamic size takes the first image's; later images are resized to it, so
        // the batch stays one tensor.
        let (width, height) = match size {
            Some(size) => size,
            None => {
                let first = (plan.width.unwrap_or(image.width()), plan.height.unwrap_or(image.height()));
                check_tensor_bytes(images.len(), first.0, first.1, plan, limits)?;
                *size.insert(first)
            }
        };
        all.push(pixels(image, plan, width, height)?);
    }
    let (width, height) = size.unwrap_or_default();
    let (w, h, c) = (width as usize, height as usize, plan.channels());
    let shape = match plan.layout {
        Layout::Nhwc => vec![all.len(), h, w, c],
        Layout::Nchw => vec![all.len(), c, h, w],
    };
    let count = all.len() * w * h * c;
    if plan.dtype == DType::UInt8 {
        return Ok(Tensor::from_vec(shape, in_tensor_order(&all, plan.layout, c, count, |v, _| v)));
    }
    // NOTE: one lookup table per channel: 256 entries cover every pixel value.
    let tables: Vec<[f32; 256]> = (0..c)
        .map(|channel| {
            let mut table = [0f32; 256];
            for (pixel, slot) in table.iter_mut().enumerate() {
                *slot = (plan.scale.apply(pixel as u8) - plan.mean[channel]) / plan.std[channel];
            }
            table
        })
        .collect();
    if plan.dtype == DType::Half {
        let halves: Vec<[half::f16; 256]> =
            tables.iter().map(|table| std::array::from_fn(|i| half::f16::from_f32(table[i]))).collect();
        let values = in_tensor_order(&all, plan.layout, c, count, |v, channel| halves[channel][v as usize]);
        return Ok(Tensor::from_vec(shape, values));
    }
    let values = in_tensor_order(&all, plan.layout, c, count, |v, channel| tables[channel][v as usize]);
    Ok(Tensor::from_vec(shape, values))
}

/// Maps every pixel value of the HWC images with `f(value, channel)`, in tensor order.
fn in_tensor_order<T>(
    images: &[Vec<u8>],
    layout: Layout,
    channels: usize,
    count: usize,
    f: impl Fn(u8, usize) -> T,
) -> Vec<T> {
    let mut out = Vec::with_capacity(count);
    for hwc in images {
        match (layout, channels) {
            (_, 1) => out.extend(hwc.iter().map(|&v| f(v, 0))),
            (Layout::Nhwc, 3) => {
                for pixel in hwc.chunks_exact(3) {
                    out.extend([f(pixel[0], 0), f(pixel[1], 1), f(pixel[2], 2)]);
                }
            }
            (Layout::Nhwc, _) => {
                out.extend(hwc.iter().enumerate().map(|(i, &v)| f(v, i % channels)));
            }
            (Layout::Nchw, _) => {
                for channel in 0..channels {
                    out.extend(hwc.iter().skip(channel).step_by(channels).map(|&v| f(v, channel)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Bytes {
        let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb(pixel(x, y)));
        let mut out = Vec::new();
        image.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).expect("encode");
        Bytes::from(out)
    }

    fn info(dtype: DType, dims: &[i64]) -> TensorInfo {
        TensorInfo { name: "x".into(), dtype, shape: Some(dims.to_vec()), map_keys: None }
    }

    #[test]
    fn layouts_are_inferred_from_the_channel_dimension() {
        let nhwc = image_target(&info(DType::Float, &[-1, 28, 28, 1]), None).expect("ok").expect("NHWC");
        assert_eq!((nhwc.layout, nhwc.channels(), nhwc.height, nhwc.width), (Layout::Nhwc, 1, Some(28), Some(28)));
        let nchw = image_target(&info(DType::UInt8, &[-1, 3, 224, 224]), None).expect("ok").expect("NCHW");
        assert_eq!((nchw.layout, nchw.channels()), (Layout::Nchw, 3));
        let dynamic = image_target(&info(DType::Float, &[-1, -1, -1, 3]), None).expect("ok").expect("dynamic");
        assert_eq!((dynamic.height, dynamic.width), (None, None));
        assert!(image_target(&info(DType::Float, &[-1, 784]), None).expect("ok").is_none());
        assert!(image_target(&info(DType::Int64, &[-1, 28, 28, 1]), None).expect("ok").is_none());
        assert!(image_target(&info(DType::Float, &[-1, 5, 7, 9]), None).expect("ok").is_none());
    }

    #[test]
    fn pixels_land_where_the_layout_puts_them() {
        // A 5x4 image whose red is x, green y, blue 200.
        let image = png(5, 4, |x, y| [x as u8, y as u8, 200]);
        let nchw = image_target(&info(DType::Float, &[-1, 3, 4, 5]), None).expect("ok").expect("target");
        let tensor = images_to_tensor(std::slice::from_ref(&image), &nchw, &ImageLimits::default()).expect("decode");
        assert_eq!(tensor.shape, vec![1, 3, 4, 5]);
        let values = tensor.values::<f32>().expect("f32");
        let at = |c: usize, y: usize, x: usize| values[c * 20 + y * 5 + x];
        assert_eq!((at(0, 2, 3), at(1, 2, 3), at(2, 2, 3)), (3.0 / 255.0, 2.0 / 255.0, 200.0 / 255.0));
        let nhwc = image_target(&info(DType::UInt8, &[-1, 4, 5, 3]), None).expect("ok").expect("target");
        let tensor = images_to_tensor(&[image], &nhwc, &ImageLimits::default()).expect("decode");
        let values = tensor.values::<u8>().expect("u8");
        assert_eq!(&values[(2 * 5 + 3) * 3..(2 * 5 + 3) * 3 + 3], &[3, 2, 200]);
    }

    #[test]
    fn images_are_resized_and_batched() {
        let target = image_target(&info(DType::Float, &[-1, 8, 8, 1]), None).expect("ok").expect("target");
        let gray = png(32, 16, |_, _| [90, 90, 90]);
        let tensor = images_to_tensor(&[gray.clone(), gray], &target, &ImageLimits::default()).expect("decode");
        assert_eq!(tensor.shape, vec![2, 8, 8, 1]);
        assert!(tensor.values::<f32>().expect("f32").iter().all(|&v| (v - 90.0 / 255.0).abs() < 1e-6));
    }

    #[test]
    fn hostile_uploads_are_refused_with_a_reason() {
        let target = image_target(&info(DType::Float, &[-1, 8, 8, 3]), None).expect("ok").expect("target");
        let limits = ImageLimits { max_pixels: 100, max_images: 2, max_tensor_bytes: 1 << 20 };
        let error = |images: &[Bytes]| images_to_tensor(images, &target, &limits).expect_err("refused").message;
        assert!(error(&[png(20, 20, |_, _| [0; 3])]).contains("more than the limit of 100 pixels"));
        assert!(error(&[Bytes::from_static(b"not an image at all")]).contains("unknown image format"));
        let truncated = png(8, 8, |x, _| [x as u8; 3]);
        assert!(error(&[truncated.slice(..truncated.len() / 2)]).starts_with("image 0: "));
        assert!(error(&[Bytes::new()]).contains("empty"));
        let one = png(2, 2, |_, _| [1; 3]);
        assert!(error(&[one.clone(), one.clone(), one]).contains("more than the limit of 2"));
    }

    #[test]
    fn images_that_would_make_too_large_a_tensor_are_refused_before_decoding() {
        let limits = ImageLimits { max_pixels: 1 << 20, max_images: 64, max_tensor_bytes: 64 * 64 * 3 * 4 * 2 };
        let fixed = image_target(&info(DType::Float, &[-1, 64, 64, 3]), None).expect("ok").expect("target");
        let two = vec![png(4, 4, |_, _| [1; 3]); 2];
        assert_eq!(images_to_tensor(&two, &fixed, &limits).expect("two fit").shape, vec![2, 64, 64, 3]);
        // NOTE: three garbage images: refused on the fixed size before any is decoded.
        let three = vec![Bytes::from_static(b"not an image"); 3];
        let error = images_to_tensor(&three, &fixed, &limits).expect_err("refused").message;
        assert!(error.contains("3 image(s) at 64x64 with 3 channel(s) make a tensor of 147456 bytes"), "{error}");
        // A dynamic size is known from the first image; the rest are not decoded.
        let dynamic = image_target(&info(DType::Float, &[-1, -1, -1, 3]), None).expect("ok").expect("target");
        let large = png(128, 128, |_, _| [1; 3]);
        let images = [large, Bytes::from_static(b"never decoded")];
        let error = images_to_tensor(&images, &dynamic, &limits).expect_err("refused").message;
        assert!(error.contains("2 image(s) at 128x128") && error.contains("--max_decoded_request_bytes"), "{error}");
    }

    fn plan(dims: &[i64], options: ImageOptions) -> ImagePlan {
        image_target(&info(DType::Float, dims), Some(&options)).expect("valid").expect("image")
    }

    #[test]
    fn bgr_scale_mean_and_std_are_applied_per_channel() {
        use super::plan::PixelScale;
        let image = png(2, 1, |x, _| if x == 0 { [10, 20, 30] } else { [255, 0, 128] });
        let options = ImageOptions {
            color: Some(ColorOrder::Bgr),
            scale: Some(PixelScale::Symmetric),
            mean: vec![0.1, 0.2, 0.3],
            std: vec![0.5, 0.25, 2.0],
            ..ImageOptions::default()
        };
        let tensor = images_to_tensor(&[image], &plan(&[-1, 1, 2, 3], options), &ImageLimits::default()).expect("ok");
        let values = tensor.values::<f32>().expect("f32");
        let expected = |pixel: u8, c: usize| {
            let (mean, std) = ([0.1f32, 0.2, 0.3][c], [0.5f32, 0.25, 2.0][c]);
            (f32::from(pixel) / 127.5 - 1.0 - mean) / std
        };
        // BGR: the first value of each pixel is its blue.
        let want =
            [expected(30, 0), expected(20, 1), expected(10, 2), expected(128, 0), expected(0, 1), expected(255, 2)];
        for (got, want) in values.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{values:?} vs {want}");
        }
    }

    #[test]
    fn letterbox_pads_and_center_crop_cuts() {
        // A 4x2 image into 4x4: scaled by 1, centred, one padded row above and below.
        let wide = png(4, 2, |_, _| [200, 200, 200]);
        let options = ImageOptions { resize: ResizeMode::Letterbox, pad_value: 7, ..ImageOptions::default() };
        let uint8 = |options: &ImageOptions, dims: &[i64]| {
            image_target(&info(DType::UInt8, dims), Some(options)).expect("valid").expect("image")
        };
        let tensor = images_to_tensor(&[wide], &uint8(&options, &[-1, 4, 4, 1]), &ImageLimits::default()).expect("ok");
        let rows: Vec<Vec<u8>> = tensor.values::<u8>().expect("u8").chunks(4).map(|r| r.to_vec()).collect();
        assert_eq!(rows, vec![vec![7; 4], vec![200; 4], vec![200; 4], vec![7; 4]]);
        // A 6x2 image whose middle two columns are white, cropped to 2x2: only white is left.
        let striped = png(6, 2, |x, _| if (2..4).contains(&x) { [255; 3] } else { [0; 3] });
        let options = ImageOptions { resize: ResizeMode::CenterCrop, ..ImageOptions::default() };
        let tensor =
            images_to_tensor(std::slice::from_ref(&striped), &uint8(&options, &[-1, 2, 2, 1]), &ImageLimits::default())
                .expect("ok");
        assert_eq!(tensor.values::<u8>().expect("u8").to_vec(), vec![255; 4]);
        // Stretched instead, the black columns show.
        let stretched =
            images_to_tensor(&[striped], &uint8(&ImageOptions::default(), &[-1, 2, 2, 1]), &ImageLimits::default())
                .expect("ok");
        assert!(stretched.values::<u8>().expect("u8").iter().any(|&v| v < 200));
    }

    #[test]
    fn half_outputs_carry_the_same_values() {
        let image = png(1, 1, |_, _| [51, 102, 255]);
        let target = image_target(&info(DType::Half, &[-1, 1, 1, 3]), None).expect("valid").expect("image");
        let tensor = images_to_tensor(&[image], &target, &ImageLimits::default()).expect("ok");
        let values: Vec<f32> = tensor.values::<half::f16>().expect("f16").iter().map(|v| v.to_f32()).collect();
        assert_eq!(values, vec![half::f16::from_f32(0.2).to_f32(), half::f16::from_f32(0.4).to_f32(), 1.0]);
    }
}

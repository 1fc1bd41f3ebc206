//! Images to tensors: formats decoded with `image` (sizes bounded before decoding), resized
//! with `fast_image_resize`, and laid out as the model's image input asks (NCHW or NHWC,
//! gray or RGB, uint8 0..255 or float/half 0..1).

use std::io::Cursor;

use bytes::Bytes;
use fast_image_resize::images::Image;
use fast_image_resize::{PixelType, Resizer};
use image::{DynamicImage, ImageReader};

use crate::core::{DType, ServingError, ServingResult, Tensor, TensorInfo};

/// Bounds on what one request may upload.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    /// Width × height of one image, checked from its header before it is decoded.
    pub max_pixels: u64,
    pub max_images: usize,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self { max_pixels: 40_000_000, max_images: 64 }
    }
}

/// Where the channels sit in the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[batch, channels, height, width]`.
    Nchw,
    /// `[batch, height, width, channels]`.
    Nhwc,
}

/// What the model's image input wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageTarget {
    pub layout: Layout,
    /// `None` when the dimension is dynamic: the image keeps its own size.
    pub height: Option<u32>,
    pub width: Option<u32>,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// UInt8 keeps 0..255; Float and Half scale to 0..1.
    pub dtype: DType,
}

fn fixed(dim: i64) -> Option<u32> {
    u32::try_from(dim).ok().filter(|&d| d > 0)
}

/// Returns the image target of an input, or `None` when it is not image-shaped: rank 4 with
/// 1 or 3 channels first (NCHW) or last (NHWC), and a uint8, float or half element type.
pub fn image_target(info: &TensorInfo) -> Option<ImageTarget> {
    if !matches!(info.dtype, DType::UInt8 | DType::Float | DType::Half) {
        return None;
    }
    let dims = info.shape.as_deref()?;
    let [_, a, b, c] = *dims else { return None };
    let is_channels = |d: i64| d == 1 || d == 3;
    let (layout, channels, height, width) = if is_channels(c) {
        (Layout::Nhwc, c, a, b)
    } else if is_channels(a) {
        (Layout::Nchw, a, b, c)
    } else {
        return None;
    };
    Some(ImageTarget {
        layout,
        height: fixed(height),
        width: fixed(width),
        channels: channels as usize,
        dtype: info.dtype,
    })
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
    reader.limits(decoder_limits);
    reader.decode().map_err(|e| bad(format!("cannot decode the image: {e}")))
}

/// Returns `channels`-channel pixels of `image`, resized to `width` × `height` (stretched).
fn pixels(image: DynamicImage, channels: usize, width: u32, height: u32) -> ServingResult<Vec<u8>> {
    let (source_width, source_height) = (image.width(), image.height());
    // NOTE: `into_*` keeps the decoded buffer when it already has the wanted channels.
    let (buffer, pixel_type) = if channels == 1 {
        (image.into_luma8().into_raw(), PixelType::U8)
    } else {
        (image.into_rgb8().into_raw(), PixelType::U8x3)
    };
    if (source_width, source_height) == (width, height) {
        return Ok(buffer);
    }
    let internal = |e: String| ServingError::internal(format!("image resize failed: {e}"));
    let source =
        Image::from_vec_u8(source_width, source_height, buffer, pixel_type).map_err(|e| internal(e.to_string()))?;
    let mut target = Image::new(width, height, pixel_type);
    Resizer::new().resize(&source, &mut target, None).map_err(|e| internal(e.to_string()))?;
    Ok(target.into_vec())
}

/// Decodes `images` into one `[batch, ...]` tensor for `target`. Every error is
/// INVALID_ARGUMENT and names the image.
pub fn images_to_tensor(images: &[Bytes], target: &ImageTarget, limits: &ImageLimits) -> ServingResult<Tensor> {
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
    let mut size: Option<(u32, u32)> = target.width.zip(target.height);
    let mut all = Vec::new();
    for (index, data) in images.iter().enumerate() {
        let image = decode_one(index, data, limits)?;
        // NOTE: a dynamic size takes the first image's; later images are resized to it, so
        // the batch stays one tensor.
        let (width, height) =
            *size.get_or_insert((target.width.unwrap_or(image.width()), target.height.unwrap_or(image.height())));
        all.push(pixels(image, target.channels, width, height)?);
    }
    let (width, height) = size.unwrap_or_default();
    let (w, h, c) = (width as usize, height as usize, target.channels);
    let mut ordered = Vec::with_capacity(all.len() * w * h * c);
    for hwc in &all {
        match target.layout {
            Layout::Nhwc => ordered.extend_from_slice(hwc),
            Layout::Nchw => {
                for channel in 0..c {
                    ordered.extend(hwc.iter().skip(channel).step_by(c));
                }
            }
        }
    }
    let shape = match target.layout {
        Layout::Nhwc => vec![all.len(), h, w, c],
        Layout::Nchw => vec![all.len(), c, h, w],
    };
    Ok(match target.dtype {
        DType::UInt8 => Tensor::from_vec(shape, ordered),
        DType::Half => {
            Tensor::from_vec(shape, ordered.iter().map(|&v| half::f16::from_f32(f32::from(v) / 255.0)).collect())
        }
        _ => Tensor::from_vec(shape, ordered.iter().map(|&v| f32::from(v) / 255.0).collect::<Vec<f32>>()),
    })
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
        TensorInfo { name: "x".into(), dtype, shape: Some(dims.to_vec()) }
    }

    #[test]
    fn layouts_are_inferred_from_the_channel_dimension() {
        let nhwc = image_target(&info(DType::Float, &[-1, 28, 28, 1])).expect("NHWC");
        assert_eq!((nhwc.layout, nhwc.channels, nhwc.height, nhwc.width), (Layout::Nhwc, 1, Some(28), Some(28)));
        let nchw = image_target(&info(DType::UInt8, &[-1, 3, 224, 224])).expect("NCHW");
        assert_eq!((nchw.layout, nchw.channels), (Layout::Nchw, 3));
        let dynamic = image_target(&info(DType::Float, &[-1, -1, -1, 3])).expect("dynamic");
        assert_eq!((dynamic.height, dynamic.width), (None, None));
        assert!(image_target(&info(DType::Float, &[-1, 784])).is_none());
        assert!(image_target(&info(DType::Int64, &[-1, 28, 28, 1])).is_none());
        assert!(image_target(&info(DType::Float, &[-1, 5, 7, 9])).is_none());
    }

    #[test]
    fn pixels_land_where_the_layout_puts_them() {
        // A 5x4 image whose red is x, green y, blue 200.
        let image = png(5, 4, |x, y| [x as u8, y as u8, 200]);
        let nchw = image_target(&info(DType::Float, &[-1, 3, 4, 5])).expect("target");
        let tensor = images_to_tensor(std::slice::from_ref(&image), &nchw, &ImageLimits::default()).expect("decode");
        assert_eq!(tensor.shape, vec![1, 3, 4, 5]);
        let values = tensor.values::<f32>().expect("f32");
        let at = |c: usize, y: usize, x: usize| values[c * 20 + y * 5 + x];
        assert_eq!((at(0, 2, 3), at(1, 2, 3), at(2, 2, 3)), (3.0 / 255.0, 2.0 / 255.0, 200.0 / 255.0));
        let nhwc = image_target(&info(DType::UInt8, &[-1, 4, 5, 3])).expect("target");
        let tensor = images_to_tensor(&[image], &nhwc, &ImageLimits::default()).expect("decode");
        let values = tensor.values::<u8>().expect("u8");
        assert_eq!(&values[(2 * 5 + 3) * 3..(2 * 5 + 3) * 3 + 3], &[3, 2, 200]);
    }

    #[test]
    fn images_are_resized_and_batched() {
        let target = image_target(&info(DType::Float, &[-1, 8, 8, 1])).expect("target");
        let gray = png(32, 16, |_, _| [90, 90, 90]);
        let tensor = images_to_tensor(&[gray.clone(), gray], &target, &ImageLimits::default()).expect("decode");
        assert_eq!(tensor.shape, vec![2, 8, 8, 1]);
        assert!(tensor.values::<f32>().expect("f32").iter().all(|&v| (v - 90.0 / 255.0).abs() < 1e-6));
    }

    #[test]
    fn hostile_uploads_are_refused_with_a_reason() {
        let target = image_target(&info(DType::Float, &[-1, 8, 8, 3])).expect("target");
        let limits = ImageLimits { max_pixels: 100, max_images: 2 };
        let error = |images: &[Bytes]| images_to_tensor(images, &target, &limits).expect_err("refused").message;
        assert!(error(&[png(20, 20, |_, _| [0; 3])]).contains("more than the limit of 100 pixels"));
        assert!(error(&[Bytes::from_static(b"not an image at all")]).contains("unknown image format"));
        let truncated = png(8, 8, |x, _| [x as u8; 3]);
        assert!(error(&[truncated.slice(..truncated.len() / 2)]).starts_with("image 0: "));
        assert!(error(&[Bytes::new()]).contains("empty"));
        let one = png(2, 2, |_, _| [1; 3]);
        assert!(error(&[one.clone(), one.clone(), one]).contains("more than the limit of 2"));
    }
}

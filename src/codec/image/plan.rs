//! How images become one model input: the image options a model gives (layout, color,
//! resize, scale, mean/std, dtype) laid over the input's own shape and type, as an
//! `ImagePlan` worked out once when a version loads.

use std::str::FromStr;

use crate::core::error::unknown_choice as unknown;
use crate::core::{DType, TensorInfo};

/// Where the channels sit in an image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[batch, channels, height, width]`.
    Nchw,
    /// `[batch, height, width, channels]`.
    Nhwc,
}

impl FromStr for Layout {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_uppercase().as_str() {
            "NCHW" => Ok(Self::Nchw),
            "NHWC" => Ok(Self::Nhwc),
            _ => Err(unknown("layout", value, &["NHWC", "NCHW"])),
        }
    }
}

/// The channel order of an image tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorOrder {
    Rgb,
    Bgr,
    Gray,
}

impl ColorOrder {
    pub fn channels(self) -> usize {
        if self == ColorOrder::Gray {
            1
        } else {
            3
        }
    }
}

impl FromStr for ColorOrder {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "rgb" => Ok(Self::Rgb),
            "bgr" => Ok(Self::Bgr),
            "gray" | "grey" => Ok(Self::Gray),
            other => Err(unknown("color", other, &["rgb", "bgr", "gray"])),
        }
    }
}

/// How an image is brought to the input's height and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeMode {
    /// Scale both axes to the target, ignoring the aspect ratio.
    #[default]
    Stretch,
    /// Fit inside the target keeping the aspect ratio, and pad the rest.
    Letterbox,
    /// Fill the target keeping the aspect ratio, and crop the centre.
    CenterCrop,
}

impl FromStr for ResizeMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "stretch" => Ok(Self::Stretch),
            "letterbox" => Ok(Self::Letterbox),
            "center_crop" => Ok(Self::CenterCrop),
            other => Err(unknown("resize mode", other, &["stretch", "letterbox", "center_crop"])),
        }
    }
}

/// The range 0..255 pixels are mapped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelScale {
    UnitInterval,
    Symmetric,
    Bytes,
}

impl PixelScale {
    /// Maps a 0..255 pixel into the range.
    pub fn apply(self, pixel: u8) -> f32 {
        match self {
            PixelScale::UnitInterval => f32::from(pixel) / 255.0,
            PixelScale::Symmetric => f32::from(pixel) / 127.5 - 1.0,
            PixelScale::Bytes => f32::from(pixel),
        }
    }
}

impl FromStr for PixelScale {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "0..1" => Ok(Self::UnitInterval),
            "-1..1" => Ok(Self::Symmetric),
            "0..255" => Ok(Self::Bytes),
            other => Err(unknown("scale", other, &["0..1", "-1..1", "0..255"])),
        }
    }
}

/// How uploaded images become an input tensor; `None` fields are inferred from the input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageOptions {
    pub input: Option<String>,
    pub layout: Option<Layout>,
    pub color: Option<ColorOrder>,
    pub resize: ResizeMode,
    pub scale: Option<PixelScale>,
    /// Empty, one value for every channel, or one per channel.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub dtype: Option<DType>,
    pub pad_value: u8,
}

/// Everything needed to turn images into one input: the input's own shape and type with the
/// model's image options laid over them.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePlan {
    pub layout: Layout,
    /// `None` when the dimension is dynamic: the first image's size is kept.
    pub height: Option<u32>,
    pub width: Option<u32>,
    pub color: ColorOrder,
    pub resize: ResizeMode,
    pub scale: PixelScale,
    /// Per channel, in the order of `color`.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// UInt8, Half or Float.
    pub dtype: DType,
    pub pad_value: u8,
}

impl ImagePlan {
    pub fn channels(&self) -> usize {
        self.color.channels()
    }

    /// True when pixels go through unchanged (uint8 0..255, no mean/std).
    pub fn is_identity(&self) -> bool {
        self.scale == PixelScale::Bytes && self.mean == [0.0; 3] && self.std == [1.0; 3]
    }
}

fn fixed_dim(dim: i64) -> Option<u32> {
    u32::try_from(dim).ok().filter(|&d| d > 0)
}

/// Returns how images feed `info`, or `Ok(None)` when it is not an image input: rank 4 with
/// 1 or 3 channels first (NCHW) or last (NHWC), and a uint8, float or half element type. The
/// image options may name the layout and color where the shape leaves them open. Options that
/// contradict the input are an error naming both.
pub fn image_plan(info: &TensorInfo, options: Option<&ImageOptions>) -> Result<Option<ImagePlan>, String> {
    let default_options = ImageOptions::default();
    let options = options.unwrap_or(&default_options);
    if !matches!(info.dtype, DType::UInt8 | DType::Float | DType::Half) {
        return Ok(None);
    }
    let Some([_, a, b, c]) = info.shape.as_deref().and_then(|d| <[i64; 4]>::try_from(d).ok()) else {
        return Ok(None);
    };
    let is_channels = |d: i64| d == 1 || d == 3;
    let layout = match options.layout {
        Some(layout) => layout,
        None if is_channels(c) => Layout::Nhwc,
        None if is_channels(a) => Layout::Nchw,
        None => return Ok(None),
    };
    let (channel_dim, height, width) = match layout {
        Layout::Nhwc => (c, a, b),
        Layout::Nchw => (a, b, c),
    };
    let color = match (options.color, channel_dim) {
        (Some(color), d) if d < 0 || d as usize == color.channels() => color,
        (Some(color), d) => {
            return Err(format!(
                "image.color {color:?} makes {} channel(s), but input `{}` has {d} in its {layout:?} shape",
                color.channels(),
                info.name
            ))
        }
        (None, 1) => ColorOrder::Gray,
        (None, 3) | (None, -1) => ColorOrder::Rgb,
        (None, d) => {
            return Err(format!("input `{}` has {d} channels in its {layout:?} shape; images have 1 or 3", info.name))
        }
    };
    if let Some(dtype) = options.dtype {
        if dtype != info.dtype {
            return Err(format!("image.dtype is {dtype} but input `{}` is {}; they must agree", info.name, info.dtype));
        }
    }
    let scale =
        options.scale.unwrap_or(if info.dtype == DType::UInt8 { PixelScale::Bytes } else { PixelScale::UnitInterval });
    let per_channel = |name: &str, values: &[f32], neutral: f32| -> Result<[f32; 3], String> {
        match values {
            [] => Ok([neutral; 3]),
            [v] => Ok([*v; 3]),
            [r, g, b] if color.channels() == 3 => Ok([*r, *g, *b]),
            _ => Err(format!("image.{name} has {} values for {} channel(s)", values.len(), color.channels())),
        }
    };
    let plan = ImagePlan {
        layout,
        height: fixed_dim(height),
        width: fixed_dim(width),
        color,
        resize: options.resize,
        scale,
        mean: per_channel("mean", &options.mean, 0.0)?,
        std: per_channel("std", &options.std, 1.0)?,
        dtype: info.dtype,
        pad_value: options.pad_value,
    };
    if info.dtype == DType::UInt8 && !plan.is_identity() {
        return Err(format!(
            "input `{}` is uint8, which takes 0..255 pixels as they are; scale, mean and std need a float input",
            info.name
        ));
    }
    Ok(Some(plan))
}

/// A classifier's class names, read from the labels file at load time.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    pub names: Vec<String>,
    pub top_k: usize,
    /// The output alias that holds the scores; `None` picks the only rank-2 output.
    pub output: Option<String>,
}

/// One of the highest-scoring classes of an image.
#[derive(Debug, Clone, PartialEq)]
pub struct TopLabel {
    pub label: String,
    pub index: usize,
    pub score: f32,
}

/// The input of a signature that images feed, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInput {
    pub alias: String,
    pub plan: ImagePlan,
}

/// How a version takes images, worked out once when it loads: per signature, its image
/// input or why it has none (the error an image request to it gets), and the class names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageInputs {
    pub signatures: std::collections::BTreeMap<String, crate::core::ServingResult<ImageInput>>,
    pub labels: Option<Labels>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_the_known_ones() {
        let error = "fit".parse::<ResizeMode>().expect_err("unknown");
        assert_eq!(error, "unknown resize mode `fit` (known: stretch, letterbox, center_crop)");
        assert_eq!("nchw".parse::<Layout>(), Ok(Layout::Nchw));
    }

    fn info(dtype: DType, dims: &[i64]) -> TensorInfo {
        TensorInfo { name: "x".into(), dtype, shape: Some(dims.to_vec()), map_keys: None }
    }

    #[test]
    fn image_plans_follow_the_shape_and_the_options() {
        let plan = image_plan(&info(DType::Float, &[-1, 28, 28, 1]), None).expect("ok").expect("image");
        assert_eq!(
            (plan.layout, plan.color, plan.height, plan.scale),
            (Layout::Nhwc, ColorOrder::Gray, Some(28), PixelScale::UnitInterval)
        );
        let plan = image_plan(&info(DType::UInt8, &[-1, 3, 224, 224]), None).expect("ok").expect("image");
        assert_eq!((plan.layout, plan.color, plan.scale), (Layout::Nchw, ColorOrder::Rgb, PixelScale::Bytes));
        assert!(image_plan(&info(DType::Float, &[-1, 784]), None).expect("ok").is_none());
        assert!(image_plan(&info(DType::Int64, &[-1, 28, 28, 1]), None).expect("ok").is_none());
        // A fully dynamic shape needs the layout from the options.
        assert!(image_plan(&info(DType::Float, &[-1, -1, -1, -1]), None).expect("ok").is_none());
        let options = ImageOptions {
            layout: Some(Layout::Nchw),
            color: Some(ColorOrder::Bgr),
            mean: vec![0.5, 0.4, 0.3],
            std: vec![0.25],
            scale: Some(PixelScale::Symmetric),
            ..ImageOptions::default()
        };
        let plan = image_plan(&info(DType::Float, &[-1, -1, -1, -1]), Some(&options)).expect("ok").expect("image");
        assert_eq!((plan.layout, plan.color, plan.height), (Layout::Nchw, ColorOrder::Bgr, None));
        assert_eq!((plan.mean, plan.std), ([0.5, 0.4, 0.3], [0.25; 3]));
    }

    #[test]
    fn image_options_that_contradict_the_input_are_refused() {
        let gray = ImageOptions { color: Some(ColorOrder::Gray), ..ImageOptions::default() };
        let error = image_plan(&info(DType::Float, &[-1, 8, 8, 3]), Some(&gray)).expect_err("gray into 3");
        assert!(error.contains("makes 1 channel(s), but input `x` has 3"), "{error}");
        let half = ImageOptions { dtype: Some(DType::Half), ..ImageOptions::default() };
        assert!(image_plan(&info(DType::Float, &[-1, 8, 8, 3]), Some(&half))
            .expect_err("dtype")
            .contains("must agree"));
        let scaled = ImageOptions { scale: Some(PixelScale::UnitInterval), ..ImageOptions::default() };
        assert!(image_plan(&info(DType::UInt8, &[-1, 8, 8, 3]), Some(&scaled))
            .expect_err("u8")
            .contains("need a float input"));
        let three = ImageOptions { mean: vec![1.0, 2.0, 3.0], ..ImageOptions::default() };
        assert!(image_plan(&info(DType::Float, &[-1, 8, 8, 1]), Some(&three))
            .expect_err("mean")
            .contains("3 values for 1 channel"));
    }

    #[test]
    fn scales_map_the_pixel_range() {
        assert_eq!(PixelScale::UnitInterval.apply(255), 1.0);
        assert_eq!(PixelScale::Symmetric.apply(0), -1.0);
        assert_eq!(PixelScale::Symmetric.apply(255), 1.0);
        assert_eq!(PixelScale::Bytes.apply(7), 7.0);
    }
}

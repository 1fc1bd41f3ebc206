//! The per-model options file, `model_options.pbtxt` (message `onnx_serving.ModelOptions`),
//! read once when a version loads, from its directory or else from the model's base path,
//! and split into each owner's typed part: aliases for the signatures, `ExecutionSettings`
//! for the runtime, image options and labels for the image codec.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::codec::image::plan::{ImageOptions, Labels, ResizeMode};
use crate::core::{DType, ServingError, ServingResult};
use crate::proto::onnx_serving as pb;
use crate::proto::text_format::{parse_text_proto, TextFormatError};
use crate::runtime::options::{CpuSettings, CudaSettings, ExecutionSettings, TensorRtSettings};

/// The file name, in a version directory or in the model's base path.
pub const FILE_NAME: &str = "model_options.pbtxt";

const MESSAGE: &str = "onnx_serving.ModelOptions";

/// A labels file may not be larger than this.
const MAX_LABELS_BYTES: u64 = 16 << 20;

/// Everything `model_options.pbtxt` says about a model version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionOptions {
    /// ONNX name -> alias.
    pub input_aliases: BTreeMap<String, String>,
    pub output_aliases: BTreeMap<String, String>,
    pub image: Option<ImageOptions>,
    pub labels: Option<Labels>,
    pub execution: ExecutionSettings,
}

/// Returns the options file that applies to `version_dir`: its own, else its base path's.
pub fn options_file(version_dir: &Path) -> Option<PathBuf> {
    let own = version_dir.join(FILE_NAME);
    if own.is_file() {
        return Some(own);
    }
    let shared = version_dir.parent()?.join(FILE_NAME);
    shared.is_file().then_some(shared)
}

/// Reads the options of a version directory; no file means default options. Every problem
/// is FAILED_PRECONDITION and names the file.
pub fn read_for_version(version_dir: &Path) -> ServingResult<VersionOptions> {
    let Some(path) = options_file(version_dir) else { return Ok(VersionOptions::default()) };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ServingError::failed_precondition(format!("cannot read {}: {e}", path.display())))?;
    // NOTE: relative paths inside the file are taken from the model's base path, wherever the
    // file itself sits.
    let base = version_dir.parent().unwrap_or(version_dir);
    parse(&text, base).map_err(|e| ServingError::failed_precondition(format!("{}: {e}", path.display())))
}

/// Parses the text of an options file; `base` resolves relative paths.
pub fn parse(text: &str, base: &Path) -> Result<VersionOptions, TextFormatError> {
    let proto: pb::ModelOptions = parse_text_proto(text, MESSAGE)?;
    from_proto(proto, base).map_err(TextFormatError::Invalid)
}

fn choice<T: FromStr<Err = String>>(field: &str, value: &str) -> Result<Option<T>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    value.parse::<T>().map(Some).map_err(|e| format!("{field}: {e}"))
}

/// Resolves a path of the file against the model's base path (an absolute one stays as it is).
fn resolve(base: &Path, path: &str) -> PathBuf {
    base.join(path)
}

fn image_dtype(value: &str) -> Result<Option<DType>, String> {
    match value {
        "" => Ok(None),
        "u8" | "uint8" => Ok(Some(DType::UInt8)),
        "f16" | "half" | "float16" => Ok(Some(DType::Half)),
        "f32" | "float" | "float32" => Ok(Some(DType::Float)),
        other => Err(format!("image.dtype: unknown dtype `{other}` (known: u8, f16, f32)")),
    }
}

fn image_options(proto: pb::ImageOptions) -> Result<ImageOptions, String> {
    for (name, values) in [("mean", &proto.mean), ("std", &proto.std)] {
        if values.len() > 3 {
            return Err(format!("image.{name} has {} values; give one, or one per channel (3)", values.len()));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(format!("image.{name} must be finite numbers"));
        }
    }
    if proto.std.contains(&0.0) {
        return Err("image.std must not be 0".into());
    }
    let pad_value = match proto.pad_value {
        None => 0,
        Some(v) => u8::try_from(v).map_err(|_| format!("image.pad_value must be 0..255; was {v}"))?,
    };
    Ok(ImageOptions {
        input: Some(proto.input).filter(|s| !s.is_empty()),
        layout: choice("image.layout", &proto.layout)?,
        color: choice("image.color", &proto.color)?,
        resize: choice::<ResizeMode>("image.resize", &proto.resize)?.unwrap_or_default(),
        scale: choice("image.scale", &proto.scale)?,
        mean: proto.mean,
        std: proto.std,
        dtype: image_dtype(&proto.dtype)?,
        pad_value,
    })
}

fn labels(proto: pb::LabelOptions, base: &Path) -> Result<Labels, String> {
    if proto.file.is_empty() {
        return Err("labels.file is required: a file with one label per line".into());
    }
    let path = resolve(base, &proto.file);
    let size = std::fs::metadata(&path).map_err(|e| format!("labels.file {}: {e}", path.display()))?.len();
    if size > MAX_LABELS_BYTES {
        return Err(format!("labels.file {} is {size} bytes, more than {MAX_LABELS_BYTES}", path.display()));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("labels.file {}: {e}", path.display()))?;
    let names: Vec<String> = text.lines().map(|line| line.trim_end_matches('\r').to_string()).collect();
    if names.is_empty() {
        return Err(format!("labels.file {} is empty", path.display()));
    }
    let top_k = match proto.top_k {
        None => 5,
        Some(0) => return Err("labels.top_k must be at least 1".into()),
        Some(k) => k as usize,
    };
    Ok(Labels { names, top_k, output: Some(proto.output).filter(|s| !s.is_empty()) })
}

fn execution(proto: pb::ExecutionOptions, base: &Path) -> Result<ExecutionSettings, String> {
    let providers = if proto.providers.is_empty() {
        None
    } else {
        Some(
            proto
                .providers
                .iter()
                .map(|name| name.parse().map_err(|e| format!("execution.providers: {e}")))
                .collect::<Result<Vec<_>, String>>()?,
        )
    };
    let cpu = proto.cpu.unwrap_or_default();
    let cuda = proto.cuda.unwrap_or_default();
    let trt = proto.tensorrt.unwrap_or_default();
    let builder_optimization_level = match trt.builder_optimization_level {
        None => None,
        Some(level @ 0..=5) => Some(level as u8),
        Some(level) => return Err(format!("execution.tensorrt.builder_optimization_level must be 0..5; was {level}")),
    };
    for (name, shapes) in [
        ("profile_min_shapes", &trt.profile_min_shapes),
        ("profile_opt_shapes", &trt.profile_opt_shapes),
        ("profile_max_shapes", &trt.profile_max_shapes),
    ] {
        validate_profile_shapes(shapes).map_err(|e| format!("execution.tensorrt.{name}: {e}"))?;
    }
    let profiles_set = [&trt.profile_min_shapes, &trt.profile_opt_shapes, &trt.profile_max_shapes]
        .iter()
        .filter(|s| !s.is_empty())
        .count();
    if profiles_set != 0 && profiles_set != 3 {
        return Err("execution.tensorrt: give all of profile_min_shapes, profile_opt_shapes and \
                    profile_max_shapes, or none"
            .into());
    }
    let text = |s: String| Some(s).filter(|s| !s.is_empty());
    Ok(ExecutionSettings {
        providers,
        require_provider: choice("execution.require_provider", &proto.require_provider)?,
        graph_optimization: choice("execution.graph_optimization_level", &proto.graph_optimization_level)?,
        custom_op_libraries: proto.custom_op_libraries.iter().map(|p| resolve(base, p)).collect(),
        cpu: CpuSettings {
            intra_op_threads: cpu.intra_op_threads.map(|n| n as usize),
            inter_op_threads: cpu.inter_op_threads.map(|n| n as usize),
            arena: cpu.arena,
        },
        cuda: CudaSettings {
            device_id: cuda.device_id,
            gpu_mem_limit: cuda.gpu_mem_limit,
            arena_extend_strategy: choice("execution.cuda.arena_extend_strategy", &cuda.arena_extend_strategy)?,
            cudnn_conv_algo_search: choice("execution.cuda.cudnn_conv_algo_search", &cuda.cudnn_conv_algo_search)?,
            cuda_graph: cuda.cuda_graph,
            tf32: cuda.tf32,
        },
        tensorrt: TensorRtSettings {
            device_id: trt.device_id,
            fp16: trt.fp16,
            int8: trt.int8,
            int8_calibration_table: text(trt.int8_calibration_table).map(|p| resolve(base, &p)),
            max_workspace_size: trt.max_workspace_size,
            builder_optimization_level,
            timing_cache: trt.timing_cache,
            engine_cache: trt.engine_cache,
            cuda_graph: trt.cuda_graph,
            profile_min_shapes: text(trt.profile_min_shapes),
            profile_opt_shapes: text(trt.profile_opt_shapes),
            profile_max_shapes: text(trt.profile_max_shapes),
        },
        max_queued_requests: match proto.max_queued_requests {
            Some(0) => return Err("execution.max_queued_requests must be at least 1".into()),
            other => other.map(|n| n as usize),
        },
    })
}

/// Checks ONNX Runtime's profile syntax: `name:1x3x224x224,other:1x10`.
fn validate_profile_shapes(shapes: &str) -> Result<(), String> {
    if shapes.is_empty() {
        return Ok(());
    }
    for entry in shapes.split(',') {
        let (name, dims) = entry
            .rsplit_once(':')
            .ok_or_else(|| format!("`{entry}` is not `input:d0xd1x...` (e.g. `x:1x3x224x224`)"))?;
        if name.is_empty() || dims.split('x').any(|d| d.parse::<u64>().is_err()) {
            return Err(format!("`{entry}` is not `input:d0xd1x...` (e.g. `x:1x3x224x224`)"));
        }
    }
    Ok(())
}

fn from_proto(proto: pb::ModelOptions, base: &Path) -> Result<VersionOptions, String> {
    for (what, aliases) in [("input_aliases", &proto.input_aliases), ("output_aliases", &proto.output_aliases)] {
        let mut seen = std::collections::BTreeSet::new();
        for (name, alias) in aliases {
            if alias.is_empty() {
                return Err(format!("{what}: the alias of `{name}` is empty"));
            }
            if !seen.insert(alias) {
                return Err(format!("{what}: the alias `{alias}` is given twice"));
            }
        }
    }
    Ok(VersionOptions {
        input_aliases: proto.input_aliases,
        output_aliases: proto.output_aliases,
        image: proto.image.map(image_options).transpose()?,
        labels: proto.labels.map(|l| labels(l, base)).transpose()?,
        execution: proto.execution.map(|e| execution(e, base)).transpose()?.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::image::plan::{ColorOrder, Layout, PixelScale};
    use crate::runtime::options::{ConvAlgoSearch, ExecutionProviderKind};

    #[test]
    fn parses_every_section() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("labels.txt"), "zero\none\r\ntwo\n").expect("labels");
        let text = r#"
            input_aliases { key: "input.1" value: "image" }
            output_aliases { key: "14" value: "scores" }
            image { layout: "NCHW" color: "bgr" resize: "letterbox" scale: "-1..1"
                    mean: [0.5, 0.4, 0.3] std: 0.25 dtype: "f16" pad_value: 114 }
            labels { file: "labels.txt" top_k: 2 }
            execution {
              providers: ["tensorrt", "cuda", "cpu"]
              require_provider: "cuda"
              graph_optimization_level: "basic"
              custom_op_libraries: "ops/libcustom.so"
              cpu { intra_op_threads: 2 arena: false }
              cuda { device_id: 1 gpu_mem_limit: 1073741824 cudnn_conv_algo_search: "heuristic" tf32: false }
              tensorrt { fp16: true max_workspace_size: 2147483648 builder_optimization_level: 5
                         profile_min_shapes: "x:1x3" profile_opt_shapes: "x:8x3" profile_max_shapes: "x:32x3" }
            }"#;
        let options = parse(text, dir.path()).expect("parse");
        assert_eq!(options.input_aliases["input.1"], "image");
        let image = options.image.expect("image");
        assert_eq!(
            (image.layout, image.color, image.resize, image.scale),
            (Some(Layout::Nchw), Some(ColorOrder::Bgr), ResizeMode::Letterbox, Some(PixelScale::Symmetric))
        );
        assert_eq!(
            (image.mean.len(), image.std.clone(), image.dtype, image.pad_value),
            (3, vec![0.25], Some(DType::Half), 114)
        );
        let labels = options.labels.expect("labels");
        assert_eq!((labels.names, labels.top_k), (vec!["zero".to_string(), "one".into(), "two".into()], 2));
        let execution = options.execution;
        assert_eq!(
            execution.providers,
            Some(vec![ExecutionProviderKind::TensorRt, ExecutionProviderKind::Cuda, ExecutionProviderKind::Cpu])
        );
        assert_eq!(execution.require_provider, Some(ExecutionProviderKind::Cuda));
        assert_eq!(execution.custom_op_libraries, vec![dir.path().join("ops/libcustom.so")]);
        assert_eq!((execution.cpu.intra_op_threads, execution.cpu.arena), (Some(2), Some(false)));
        assert_eq!(execution.cuda.cudnn_conv_algo_search, Some(ConvAlgoSearch::Heuristic));
        assert_eq!(execution.tensorrt.builder_optimization_level, Some(5));
        assert_eq!(execution.tensorrt.profile_max_shapes.as_deref(), Some("x:32x3"));
    }

    #[test]
    fn unknown_keys_list_the_known_ones() {
        let error = parse("execution { cuda { devcie_id: 1 } }", Path::new("/")).expect_err("typo").to_string();
        assert!(error.contains("devcie_id"), "{error}");
        assert!(error.contains("known fields of onnx_serving.CudaOptions: device_id, gpu_mem_limit"), "{error}");
        let error = parse("bogus: 1", Path::new("/")).expect_err("unknown").to_string();
        assert!(error.contains("input_aliases, output_aliases, image, labels, execution"), "{error}");
    }

    #[test]
    fn bad_values_are_named() {
        let error = |text: &str| parse(text, Path::new("/nonexistent")).expect_err(text).to_string();
        assert!(error(r#"image { resize: "fit" }"#).contains("image.resize: unknown resize mode `fit`"));
        assert!(error(r#"image { std: 0 }"#).contains("image.std must not be 0"));
        assert!(error(r#"image { mean: [1, 2, 3, 4] }"#).contains("image.mean has 4 values"));
        assert!(error(r#"execution { providers: "rocm" }"#).contains("unknown execution provider `rocm`"));
        assert!(error(r#"execution { tensorrt { profile_min_shapes: "x:1x3" } }"#).contains("or none"));
        assert!(error(r#"execution { tensorrt { profile_min_shapes: "x1x3" } }"#).contains("is not `input:"));
        assert!(error(r#"labels { file: "missing.txt" }"#).contains("missing.txt"));
        assert!(error(r#"input_aliases { key: "a" value: "x" } input_aliases { key: "b" value: "x" }"#)
            .contains("the alias `x` is given twice"));
    }

    #[test]
    fn a_version_file_wins_over_the_base_path_file() {
        let base = tempfile::tempdir().expect("tempdir");
        let version = base.path().join("1");
        std::fs::create_dir(&version).expect("mkdir");
        assert!(options_file(&version).is_none());
        assert_eq!(read_for_version(&version).expect("none"), VersionOptions::default());
        std::fs::write(base.path().join(FILE_NAME), r#"input_aliases { key: "a" value: "b" }"#).expect("write");
        assert_eq!(read_for_version(&version).expect("base").input_aliases["a"], "b");
        std::fs::write(version.join(FILE_NAME), r#"input_aliases { key: "a" value: "c" }"#).expect("write");
        assert_eq!(read_for_version(&version).expect("own").input_aliases["a"], "c");
        std::fs::write(version.join(FILE_NAME), "image {").expect("write");
        let error = read_for_version(&version).expect_err("syntax");
        assert!(error.message.contains(FILE_NAME) && error.message.contains("1:8"), "{}", error.message);
    }
}

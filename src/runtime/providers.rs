//! The execution providers' option tables: CUDA's and TensorRT's settings as the (key,
//! value) pairs ONNX Runtime takes, and TensorRT's batch profile from the batcher's sizes.

use super::gpu::GpuInfo;
use super::model_io::ModelIo;
use super::options::{ArenaExtendStrategy, BatchProfile, ConvAlgoSearch, SessionOptions};
use crate::core::{ServingError, ServingResult};

/// Refuses an option value ONNX Runtime cannot take.
pub(crate) fn check_value(key: &str, value: &str) -> ServingResult<()> {
    // NOTE: ort panics on a NUL inside an option value; a config file can contain one.
    if value.contains('\0') {
        return Err(ServingError::failed_precondition(format!("the value of provider option {key} contains NUL")));
    }
    Ok(())
}

fn flag(enable: bool) -> String {
    if enable { "1" } else { "0" }.to_string()
}

/// The CUDA provider's options as ONNX Runtime takes them (key, value).
pub fn cuda_provider_options(options: &SessionOptions, gpu: Option<&GpuInfo>) -> Vec<(&'static str, String)> {
    let cuda = &options.cuda;
    let mut pairs = vec![("device_id", cuda.device_id.unwrap_or(options.gpu_device_id).to_string())];
    let from_fraction = options
        .gpu_memory_fraction
        .zip(gpu)
        .map(|(fraction, gpu)| (gpu.total_memory_bytes as f64 * fraction.clamp(0.0, 1.0)) as u64);
    if let Some(limit) = cuda.gpu_mem_limit.or(from_fraction) {
        pairs.push(("gpu_mem_limit", limit.to_string()));
    }
    if let Some(strategy) = cuda.arena_extend_strategy {
        let value = match strategy {
            ArenaExtendStrategy::NextPowerOfTwo => "kNextPowerOfTwo",
            ArenaExtendStrategy::SameAsRequested => "kSameAsRequested",
        };
        pairs.push(("arena_extend_strategy", value.to_string()));
    }
    if let Some(search) = cuda.cudnn_conv_algo_search {
        let value = match search {
            ConvAlgoSearch::Exhaustive => "EXHAUSTIVE",
            ConvAlgoSearch::Heuristic => "HEURISTIC",
            ConvAlgoSearch::Default => "DEFAULT",
        };
        pairs.push(("cudnn_conv_algo_search", value.to_string()));
    }
    if let Some(enable) = cuda.cuda_graph {
        pairs.push(("enable_cuda_graph", flag(enable)));
    }
    if let Some(enable) = cuda.tf32 {
        pairs.push(("use_tf32", flag(enable)));
    }
    pairs
}

/// TensorRT's optimization profile (min, opt, max shapes) for a batching model: the batch
/// dimension spans 1..=max and is tuned for `opt`. `None` when an input has another dynamic
/// dimension, which no batch setting can fix; TensorRT then profiles at run time.
pub fn batch_profile_shapes(inputs: &[ModelIo], profile: BatchProfile) -> Option<(String, String, String)> {
    let mut shapes = (Vec::new(), Vec::new(), Vec::new());
    for input in inputs {
        let (first, rest) = input.dims.split_first()?;
        if *first >= 0 || rest.iter().any(|&d| d < 0) {
            if *first >= 0 && rest.iter().all(|&d| d >= 0) {
                continue;
            }
            return None;
        }
        let tail: String = rest.iter().map(|d| format!("x{d}")).collect();
        shapes.0.push(format!("{}:1{tail}", input.name));
        shapes.1.push(format!("{}:{}{tail}", input.name, profile.opt.max(1)));
        shapes.2.push(format!("{}:{}{tail}", input.name, profile.max.max(1)));
    }
    if shapes.0.is_empty() {
        return None;
    }
    Some((shapes.0.join(","), shapes.1.join(","), shapes.2.join(",")))
}

/// The TensorRT provider's options as ONNX Runtime takes them, without the cache paths.
/// `profile` is the batch profile derived from the model's inputs, used when the model's
/// options give none.
pub fn tensorrt_provider_options(
    options: &SessionOptions,
    profile: Option<(String, String, String)>,
) -> Vec<(&'static str, String)> {
    let trt = &options.tensorrt;
    let mut pairs = vec![("device_id", trt.device_id.unwrap_or(options.gpu_device_id).to_string())];
    let mut push_flag = |key: &'static str, value: Option<bool>| {
        if let Some(enable) = value {
            pairs.push((key, flag(enable)));
        }
    };
    push_flag("trt_fp16_enable", trt.fp16);
    push_flag("trt_int8_enable", trt.int8);
    push_flag("trt_cuda_graph_enable", trt.cuda_graph);
    if let Some(table) = &trt.int8_calibration_table {
        pairs.push(("trt_int8_calibration_table_name", table.display().to_string()));
    }
    if let Some(size) = trt.max_workspace_size {
        pairs.push(("trt_max_workspace_size", size.to_string()));
    }
    if let Some(level) = trt.builder_optimization_level {
        pairs.push(("trt_builder_optimization_level", level.to_string()));
    }
    let explicit =
        trt.profile_min_shapes.clone().zip(trt.profile_opt_shapes.clone()).zip(trt.profile_max_shapes.clone());
    let profile = explicit.map(|((min, opt), max)| (min, opt, max)).or(profile);
    if let Some((min, opt, max)) = profile {
        pairs.push(("trt_profile_min_shapes", min));
        pairs.push(("trt_profile_opt_shapes", opt));
        pairs.push(("trt_profile_max_shapes", max));
    }
    pairs
}

/// The TensorRT options that change a built engine, for the cache key.
pub(crate) fn engine_shaping(pairs: &[(&'static str, String)]) -> Vec<String> {
    pairs.iter().filter(|(key, _)| *key != "device_id").map(|(key, value)| format!("{key}={value}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::DType;
    use std::path::PathBuf;

    use crate::runtime::options::{CudaSettings, TensorRtSettings};

    fn io(name: &str, dims: &[i64]) -> ModelIo {
        ModelIo { name: name.into(), dtype: Some(DType::Float), dims: dims.to_vec(), score_map: false }
    }

    fn value<'a>(pairs: &'a [(&'static str, String)], key: &str) -> Option<&'a str> {
        pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn cuda_options_reach_onnx_runtime_by_its_names() {
        let mut options = SessionOptions { gpu_device_id: 1, ..SessionOptions::default() };
        assert_eq!(cuda_provider_options(&options, None), vec![("device_id", "1".to_string())]);
        options.cuda = CudaSettings {
            device_id: Some(2),
            gpu_mem_limit: None,
            arena_extend_strategy: Some(ArenaExtendStrategy::SameAsRequested),
            cudnn_conv_algo_search: Some(ConvAlgoSearch::Heuristic),
            cuda_graph: Some(true),
            tf32: Some(false),
        };
        options.gpu_memory_fraction = Some(0.25);
        let gpu = GpuInfo { name: "T4".into(), compute_capability: "7.5".into(), total_memory_bytes: 16 << 30 };
        let pairs = cuda_provider_options(&options, Some(&gpu));
        assert_eq!(value(&pairs, "device_id"), Some("2"));
        assert_eq!(value(&pairs, "gpu_mem_limit"), Some((4u64 << 30).to_string().as_str()), "a quarter of 16 GiB");
        assert_eq!(value(&pairs, "arena_extend_strategy"), Some("kSameAsRequested"));
        assert_eq!(value(&pairs, "cudnn_conv_algo_search"), Some("HEURISTIC"));
        assert_eq!(value(&pairs, "enable_cuda_graph"), Some("1"));
        assert_eq!(value(&pairs, "use_tf32"), Some("0"));
        // An explicit limit wins over the fraction; without device facts the fraction is dropped.
        options.cuda.gpu_mem_limit = Some(1000);
        assert_eq!(value(&cuda_provider_options(&options, Some(&gpu)), "gpu_mem_limit"), Some("1000"));
        options.cuda.gpu_mem_limit = None;
        assert_eq!(value(&cuda_provider_options(&options, None), "gpu_mem_limit"), None);
    }

    #[test]
    fn tensorrt_options_reach_onnx_runtime_by_its_names() {
        let options = SessionOptions {
            tensorrt: TensorRtSettings {
                fp16: Some(true),
                int8: Some(true),
                int8_calibration_table: Some(PathBuf::from("/m/calibration.flatbuffers")),
                max_workspace_size: Some(1 << 31),
                builder_optimization_level: Some(5),
                cuda_graph: Some(false),
                ..TensorRtSettings::default()
            },
            ..SessionOptions::default()
        };
        let pairs = tensorrt_provider_options(&options, None);
        assert_eq!(value(&pairs, "device_id"), Some("0"));
        assert_eq!(value(&pairs, "trt_fp16_enable"), Some("1"));
        assert_eq!(value(&pairs, "trt_int8_enable"), Some("1"));
        assert_eq!(value(&pairs, "trt_int8_calibration_table_name"), Some("/m/calibration.flatbuffers"));
        assert_eq!(value(&pairs, "trt_max_workspace_size"), Some("2147483648"));
        assert_eq!(value(&pairs, "trt_builder_optimization_level"), Some("5"));
        assert_eq!(value(&pairs, "trt_cuda_graph_enable"), Some("0"));
        assert_eq!(value(&pairs, "trt_profile_min_shapes"), None);
        // The engine key leaves the device out: the GPU model is keyed on its own.
        assert!(engine_shaping(&pairs).iter().all(|p| !p.starts_with("device_id")));
        assert!(engine_shaping(&pairs).contains(&"trt_fp16_enable=1".to_string()));
    }

    #[test]
    fn batching_shapes_the_tensorrt_profile() {
        let inputs = [io("image", &[-1, 3, 224, 224]), io("scale", &[-1, 1])];
        let profile = batch_profile_shapes(&inputs, BatchProfile { opt: 16, max: 32 }).expect("profile");
        assert_eq!(profile.0, "image:1x3x224x224,scale:1x1");
        assert_eq!(profile.1, "image:16x3x224x224,scale:16x1");
        assert_eq!(profile.2, "image:32x3x224x224,scale:32x1");
        let options = SessionOptions::default();
        let pairs = tensorrt_provider_options(&options, Some(profile.clone()));
        assert_eq!(value(&pairs, "trt_profile_max_shapes"), Some(profile.2.as_str()));
        // A model's own profile wins over the derived one.
        let mut own = SessionOptions::default();
        own.tensorrt.profile_min_shapes = Some("image:1x3x224x224".into());
        own.tensorrt.profile_opt_shapes = Some("image:4x3x224x224".into());
        own.tensorrt.profile_max_shapes = Some("image:8x3x224x224".into());
        let pairs = tensorrt_provider_options(&own, Some(profile));
        assert_eq!(value(&pairs, "trt_profile_max_shapes"), Some("image:8x3x224x224"));
        // Other dynamic dimensions leave the profile to TensorRT; fixed inputs need none.
        assert!(batch_profile_shapes(&[io("text", &[-1, -1])], BatchProfile { opt: 8, max: 8 }).is_none());
        assert!(batch_profile_shapes(&[io("fixed", &[1, 10])], BatchProfile { opt: 8, max: 8 }).is_none());
        let mixed = batch_profile_shapes(&[io("x", &[-1, 4]), io("fixed", &[2])], BatchProfile { opt: 2, max: 4 });
        assert_eq!(mixed.expect("mixed").2, "x:4x4");
    }

    #[test]
    fn nul_bytes_never_reach_onnx_runtime() {
        assert!(check_value("trt_engine_cache_path", "/tmp/a\0b").is_err());
        assert!(check_value("trt_engine_cache_path", "/tmp/ab").is_ok());
    }
}

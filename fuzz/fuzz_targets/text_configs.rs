//! The text-format files a deployment hands the server: the model config, batching
//! parameters, monitoring, SSL and per-model `model_options.pbtxt`. The first byte picks the
//! file, the rest is its text. Checked: the allocation bound, and that a refusal says why.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use onnx_serving::batching::params_file;
use onnx_serving::config::{model_server_config, monitoring, ssl};
use onnx_serving::platforms::version_options;
use onnx_serving_fuzz::{measure, Bound};

/// The parsed message and prost-reflect's dynamic copy of it.
const BOUND: Bound = Bound { per_input_byte: 256, budget_factor: 0, budget: 0, constant: 256 << 10 };

fn parse(which: u8, text: &str) -> Option<String> {
    let base = Path::new("/models/fuzz");
    match which % 5 {
        0 => model_server_config::parse_model_config_text(text, base).err().map(|e| e.to_string()),
        1 => params_file::parse(text, "fuzz").err().map(|e| e.to_string()),
        2 => monitoring::prometheus_path(text).err().map(|e| e.to_string()),
        3 => ssl::parse(text).err().map(|e| e.to_string()),
        _ => version_options::parse(text, base).err().map(|e| e.to_string()),
    }
}

static DESCRIPTORS: std::sync::Once = std::sync::Once::new();

fuzz_target!(|bytes: &[u8]| {
    // NOTE: the descriptor pool is built on first use, once per process: not the input's cost.
    DESCRIPTORS.call_once(|| (0..5).for_each(|which| drop(parse(which, ""))));
    let Some((&which, text)) = bytes.split_first() else { return };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let (error, peak) = measure(|| parse(which, text));
    BOUND.check("text config", bytes.len(), peak);
    if let Some(message) = error {
        assert!(!message.trim().is_empty(), "a refusal without a reason");
    }
});

//! What the fuzz targets share: an allocator that measures the peak a decode reaches, the
//! bounds a decode must stay within, and the signatures the request decoders decode against.
//!
//! Every target checks invariants, not only the absence of panics: a decode stays within a
//! stated allocation bound (so a few input bytes can never ask for gigabytes), errors say
//! what was wrong, and decode-encode round trips give back what went in.

use std::collections::BTreeMap;

use onnx_serving::core::{DType, SignatureDef, SignatureMap, TensorInfo, DEFAULT_SIGNATURE};

/// The budget the targets give a decode that takes one (`--max_decoded_request_bytes` in
/// the server): small, so that going over it is found in a short run.
pub const DECODE_BUDGET: usize = 1 << 20;

mod counting_alloc;

pub use counting_alloc::measure;

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

/// What a decode of `input_len` bytes may allocate at most: `per_input_byte` bytes for each
/// byte it read (parsed structure, copies), `budget_factor` times the budget it was given,
/// and a constant.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub per_input_byte: usize,
    pub budget_factor: usize,
    pub budget: usize,
    pub constant: usize,
}

impl Bound {
    pub fn limit(&self, input_len: usize) -> usize {
        self.per_input_byte * input_len + self.budget_factor * self.budget + self.constant
    }

    /// Fails the run when `peak` is over the bound for an input of `input_len` bytes.
    pub fn check(&self, what: &str, input_len: usize, peak: usize) {
        let limit = self.limit(input_len);
        assert!(
            peak <= limit,
            "{what}: a {input_len}-byte input made the decoder hold {peak} bytes at once, more than its bound \
             of {limit} ({self:?})"
        );
    }
}

/// What decoding added for `tensor`: its dense bytes, or for strings one handle each (their
/// bytes stay in the request's buffer, shared, which `Tensor::held_bytes` counts per string).
pub fn decoded_bytes(tensor: &onnx_serving::core::Tensor) -> usize {
    match tensor.strings() {
        Some(strings) => std::mem::size_of_val(strings),
        None => tensor.held_bytes(),
    }
}

fn info(name: &str, dtype: DType, shape: Option<&[i64]>) -> TensorInfo {
    TensorInfo { name: name.into(), dtype, shape: shape.map(<[i64]>::to_vec), map_keys: None }
}

/// The signatures REST predict bodies are decoded against: `serving_default` with an input
/// of each kind the JSON decoder treats differently (a float matrix, int64 of unknown rank, a
/// string vector, a `_bytes` input that takes base64, a bool scalar per row), `one` with a
/// single input, `halves` with a half-float input, and `images` with an image input.
pub fn predict_signatures() -> SignatureMap {
    let predict = |inputs: Vec<(&str, TensorInfo)>| SignatureDef {
        method_name: "tensorflow/serving/predict".into(),
        inputs: inputs.into_iter().map(|(alias, info)| (alias.to_string(), info)).collect(),
        outputs: BTreeMap::from([("y".to_string(), info("y", DType::Float, Some(&[-1])))]),
        ..SignatureDef::default()
    };
    BTreeMap::from([
        (
            DEFAULT_SIGNATURE.to_string(),
            predict(vec![
                ("x", info("x", DType::Float, Some(&[-1, 3]))),
                ("ids", info("ids", DType::Int64, None)),
                ("words", info("words", DType::String, Some(&[-1]))),
                ("blob_bytes", info("blob_bytes", DType::String, Some(&[-1]))),
                ("flag", info("flag", DType::Bool, Some(&[-1]))),
            ]),
        ),
        ("one".to_string(), predict(vec![("x", info("x", DType::Double, None))])),
        // NOTE: half floats decode from JSON but are not written back: apart, so that the
        // round trip covers the others.
        ("halves".to_string(), predict(vec![("h", info("h", DType::Half, Some(&[-1, 2])))])),
        ("images".to_string(), predict(vec![("image", info("image", DType::Float, Some(&[-1, 8, 8, 3])))])),
    ])
}

/// The signature tf.Example requests are parsed for: a float feature of two values per
/// example, an int64 feature and a variable-length string feature.
pub fn example_signature() -> SignatureDef {
    SignatureDef {
        method_name: "tensorflow/serving/regress".into(),
        inputs: BTreeMap::from([
            ("x".to_string(), info("x", DType::Float, Some(&[-1, 2]))),
            ("ids".to_string(), info("ids", DType::Int64, Some(&[-1]))),
            ("words".to_string(), info("words", DType::String, Some(&[-1, 2]))),
        ]),
        outputs: BTreeMap::from([("y".to_string(), info("y", DType::Float, Some(&[-1])))]),
        ..SignatureDef::default()
    }
}

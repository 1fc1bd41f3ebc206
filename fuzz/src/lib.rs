//! What the fuzz targets share: an allocator that measures the peak a decode reaches, the
//! bounds a decode must stay within, and the signatures the request decoders decode against.
//!
//! Every target checks invariants, not only the absence of panics: a decode stays within a
//! stated allocation bound (so a few input bytes can never ask for gigabytes), errors say
//! what was wrong, and decode-encode round trips give back what went in.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use onnx_serving::core::{DType, SignatureDef, SignatureMap, TensorInfo, DEFAULT_SIGNATURE};

/// The budget the targets give a decode that takes one (`--max_decoded_request_bytes` in
/// the server): small, so that going over it is found in a short run.
pub const DECODE_BUDGET: usize = 1 << 20;

/// Counts the bytes the process holds and the peak since the last `measure`.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let held = HELD.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(held, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            // NOTE: counted as the new block on top of the old one, which a moving realloc
            // holds for a moment, then the old one released.
            grew(new_size);
            HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `decode` and returns its result with the most memory it held at once, above what
/// was held when it started.
pub fn measure<T>(decode: impl FnOnce() -> T) -> (T, usize) {
    let base = HELD.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let result = decode();
    (result, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

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
        Some(strings) => strings.len() * std::mem::size_of::<bytes::Bytes>(),
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

//! In-process fakes for unit tests: a half-plus-two servable and the adapter and loader that
//! hand it to a real `AspiredVersionsManager`, so tests run without ONNX Runtime or sockets.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::sync::oneshot;

use super::signature::PREDICT_METHOD_NAME;
use super::{
    AspiredVersion, AspiredVersionsManager, AspiredVersionsSink, DType, Loader, ManagerOptions, RunOutputs, RunRequest,
    Servable, ServableId, ServingError, ServingResult, SignatureDef, SignatureMap, SourceAdapter, Tensor, TensorInfo,
    DEFAULT_SIGNATURE,
};

/// Computes `y = x * 0.5 + 2` on a float input `x` of shape `[-1, 1]`, as TF Serving's
/// `half_plus_two` example model does, on the caller's thread.
pub(crate) struct HalfPlusTwo;

static HALF_PLUS_TWO_SIGNATURES: LazyLock<SignatureMap> = LazyLock::new(|| {
    let info = |name: &str| TensorInfo {
        name: name.to_string(),
        dtype: DType::Float,
        shape: Some(vec![-1, 1]),
        map_keys: None,
    };
    let signature = SignatureDef {
        method_name: PREDICT_METHOD_NAME.to_string(),
        inputs: [("x".to_string(), info("x"))].into(),
        outputs: [("y".to_string(), info("y"))].into(),
        example_spec: None,
        // NOTE: as TF runs half_plus_two: x of any shape, y of the same.
        lenient_shapes: true,
    };
    [(DEFAULT_SIGNATURE.to_string(), signature)].into()
});

impl HalfPlusTwo {
    fn run(request: RunRequest) -> ServingResult<RunOutputs> {
        let (_, x) = request
            .inputs
            .iter()
            .find(|(name, _)| name == "x")
            .ok_or_else(|| ServingError::invalid_argument("half_plus_two needs the input x"))?;
        let values =
            x.values::<f32>().ok_or_else(|| ServingError::invalid_argument("half_plus_two needs a float input x"))?;
        let y: Vec<f32> = values.iter().map(|v| v * 0.5 + 2.0).collect();
        let y = Tensor::from_vec(x.shape.clone(), y);
        request
            .output_names
            .iter()
            .map(|name| match name.as_str() {
                "y" => Ok((name.clone(), y.clone())),
                other => Err(ServingError::invalid_argument(format!("half_plus_two has no output {other}"))),
            })
            .collect()
    }
}

impl Servable for HalfPlusTwo {
    fn signatures(&self) -> &SignatureMap {
        &HALF_PLUS_TWO_SIGNATURES
    }

    fn submit(&self, request: RunRequest) -> oneshot::Receiver<ServingResult<RunOutputs>> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let _ = reply_tx.send(Self::run(request));
        reply_rx
    }

    fn run_blocking(&self, request: RunRequest) -> ServingResult<RunOutputs> {
        Self::run(request)
    }

    fn execution_providers(&self) -> Vec<String> {
        vec!["CPU".into()]
    }
}

/// Loads `HalfPlusTwo` for every version, except the versions listed in `broken`, which fail
/// with "corrupt model" (a permanent error), or with "model store unreachable" (a transient
/// one) when `transient`. Counts load attempts.
pub(crate) struct FakeAdapter {
    pub broken: Vec<i64>,
    pub transient: bool,
    pub attempts: Arc<AtomicUsize>,
}

impl FakeAdapter {
    /// An adapter whose every version loads.
    pub(crate) fn healthy() -> Self {
        Self { broken: Vec::new(), transient: false, attempts: Arc::default() }
    }
}

struct FakeLoader {
    fail: bool,
    transient: bool,
    attempts: Arc<AtomicUsize>,
}

impl Loader for FakeLoader {
    fn load(&self) -> ServingResult<Arc<dyn Servable>> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.fail && self.transient {
            Err(ServingError::unavailable("model store unreachable"))
        } else if self.fail {
            Err(ServingError::invalid_argument("corrupt model"))
        } else {
            Ok(Arc::new(HalfPlusTwo))
        }
    }
}

impl SourceAdapter for FakeAdapter {
    fn platform(&self) -> &str {
        "fake"
    }

    fn adapt(&self, id: &ServableId, _path: PathBuf) -> ServingResult<Box<dyn Loader>> {
        Ok(Box::new(FakeLoader {
            fail: self.broken.contains(&id.version),
            transient: self.transient,
            attempts: Arc::clone(&self.attempts),
        }))
    }
}

/// Returns aspired versions with made-up paths (the fake adapter ignores them).
pub(crate) fn aspired(versions: &[i64]) -> Vec<AspiredVersion> {
    versions.iter().map(|&version| AspiredVersion { version, path: PathBuf::from(format!("/m/{version}")) }).collect()
}

/// Starts a real manager serving `HalfPlusTwo` as version 1 of `name`, and returns once that
/// version is AVAILABLE (as the manager reports it).
pub(crate) async fn serve_half_plus_two(name: &str) -> AspiredVersionsManager {
    let manager = AspiredVersionsManager::spawn(ManagerOptions {
        num_load_threads: 1,
        max_num_load_retries: 0,
        load_retry_interval: Duration::from_millis(1),
    });
    manager.register_model(name, Arc::new(FakeAdapter::healthy()));
    manager.set_aspired_versions(name, aspired(&[1]));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let settled = manager.wait_until_settled(&[name.to_string()], &Default::default(), Some(deadline)).await;
    assert_eq!(settled, Default::default(), "the fake version did not load");
    manager
}

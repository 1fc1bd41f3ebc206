//! The `tensorflow` platform: a version directory is a SavedModel. Its SignatureDefs are read
//! from `saved_model.pb` in Rust and shown as TF Serving shows them; requests run on the ONNX
//! conversion of each signature (`python/savedmodel_to_onnx.py`), found beside the SavedModel
//! (`<version>/onnx/`), in the content-keyed conversion cache, or made on the spot when
//! Python with TensorFlow and tf2onnx is installed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::core::example::{ExampleSpec, Feature, FeatureShape, FeatureSpec};
use crate::core::{
    DType, Loader, RunOutputs, RunRequest, Servable, ServableId, ServingError, ServingResult, SignatureDef,
    SignatureMap, SourceAdapter, TensorInfo,
};
use crate::proto::tensorflow as tf;
use crate::runtime::{OrtRuntime, OrtServable, SessionOptions};

/// The converter, compiled into the binary so that it always matches the server.
pub const CONVERTER_SCRIPT: &str = include_str!("../../python/savedmodel_to_onnx.py");

/// The conversion's directory inside a version directory (written by `onnx-serving convert`).
pub const LOCAL_CONVERSION_DIR: &str = "onnx";

const MANIFEST: &str = "manifest.json";
const MANIFEST_FORMAT: u32 = 1;
/// saved_model.pb may not be larger than this (TF's own limit is 2 GiB; ours is tighter).
const MAX_SAVED_MODEL_BYTES: u64 = 1 << 30;

/// Where conversions come from when a version has none beside it.
#[derive(Debug, Clone)]
pub struct ConversionOptions {
    /// `--conversion_cache_dir`: conversions keyed by the SavedModel's content hash.
    pub cache_dir: PathBuf,
    /// `--conversion_python`: the interpreter that runs the converter.
    pub python: String,
}

impl Default for ConversionOptions {
    fn default() -> Self {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        Self { cache_dir: cache.join("onnx-serving").join("conversions"), python: "python3".into() }
    }
}

/// Returns the exact command that converts a SavedModel by hand.
pub fn convert_command(saved_model_dir: &Path) -> String {
    format!(
        "pip install -r python/requirements-convert.txt && onnx-serving convert --saved_model_dir={}",
        saved_model_dir.display()
    )
}

fn precondition(message: impl Into<String>) -> ServingError {
    ServingError::failed_precondition(message)
}

/// Reads the SignatureDefs of the MetaGraph tagged `serve` (else the first), as TF Serving
/// reports them, `__saved_model_init_op` included.
pub fn read_signatures(saved_model_pb: &Path) -> ServingResult<SignatureMap> {
    let size = std::fs::metadata(saved_model_pb)
        .map_err(|e| ServingError::not_found(format!("cannot read {}: {e}", saved_model_pb.display())))?
        .len();
    if size > MAX_SAVED_MODEL_BYTES {
        return Err(precondition(format!(
            "{} is {size} bytes, more than {MAX_SAVED_MODEL_BYTES}",
            saved_model_pb.display()
        )));
    }
    let bytes = std::fs::read(saved_model_pb)
        .map_err(|e| ServingError::not_found(format!("cannot read {}: {e}", saved_model_pb.display())))?;
    signatures_from_bytes(&bytes).map_err(|e| precondition(format!("{}: {e}", saved_model_pb.display())))
}

/// Parses `saved_model.pb` bytes into signatures.
pub fn signatures_from_bytes(bytes: &[u8]) -> Result<SignatureMap, String> {
    let saved_model = tf::SavedModel::decode(bytes).map_err(|e| format!("not a SavedModel: {e}"))?;
    let meta = saved_model
        .meta_graphs
        .iter()
        .find(|m| m.meta_info_def.as_ref().is_some_and(|i| i.tags.iter().any(|t| t == "serve")))
        .or_else(|| saved_model.meta_graphs.first())
        .ok_or("the SavedModel holds no MetaGraph")?;
    let info = |proto: &tf::TensorInfo| -> TensorInfo {
        let name = match &proto.encoding {
            Some(tf::tensor_info::Encoding::Name(name)) => name.clone(),
            _ => String::new(),
        };
        let shape = proto
            .tensor_shape
            .as_ref()
            .and_then(|shape| (!shape.unknown_rank).then(|| shape.dim.iter().map(|d| d.size).collect::<Vec<i64>>()));
        let shape = if proto.tensor_shape.is_none() { None } else { shape };
        TensorInfo { name, dtype: DType::from_number(proto.dtype).unwrap_or(DType::Invalid), shape }
    };
    Ok(meta
        .signature_def
        .iter()
        .map(|(name, signature)| {
            let def = SignatureDef {
                method_name: signature.method_name.clone(),
                inputs: signature.inputs.iter().map(|(alias, t)| (alias.clone(), info(t))).collect(),
                outputs: signature.outputs.iter().map(|(alias, t)| (alias.clone(), info(t))).collect(),
                example_spec: None,
            };
            (name.clone(), def)
        })
        .collect())
}

/// SHA-256 over `saved_model.pb` and `variables/*`, each preceded by its relative path: the
/// converter computes the same digest, and the cache is keyed by it.
pub fn content_digest(saved_model_dir: &Path) -> std::io::Result<String> {
    let mut paths = vec![PathBuf::from("saved_model.pb")];
    let variables = saved_model_dir.join("variables");
    if variables.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(&variables)?
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        paths.extend(names.into_iter().map(|n| Path::new("variables").join(n)));
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    for relative in paths {
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        let mut file = std::fs::File::open(saved_model_dir.join(&relative))?;
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[derive(Debug, Deserialize)]
struct Manifest {
    format: u32,
    source_sha256: String,
    signatures: BTreeMap<String, ManifestSignature>,
}

#[derive(Debug, Deserialize)]
struct ManifestSignature {
    file: String,
    /// Signature input alias -> ONNX input name (plain signatures).
    #[serde(default)]
    inputs: BTreeMap<String, String>,
    /// Signature output alias -> ONNX output name.
    outputs: BTreeMap<String, String>,
    example_spec: Option<ManifestExampleSpec>,
}

#[derive(Debug, Deserialize)]
struct ManifestExampleSpec {
    features: Vec<ManifestFeature>,
}

#[derive(Debug, Deserialize)]
struct ManifestFeature {
    key: String,
    kind: String,
    dtype: String,
    #[serde(default)]
    shape: Vec<i64>,
    #[serde(default)]
    variable_length: bool,
    default: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    used: bool,
    onnx_input: Option<String>,
}

fn feature_values(dtype: DType, values: &[serde_json::Value]) -> Result<Feature, String> {
    match dtype {
        DType::Float => {
            values.iter().map(|v| v.as_f64().map(|f| f as f32)).collect::<Option<Vec<_>>>().map(Feature::Floats)
        }
        DType::Int64 => values.iter().map(serde_json::Value::as_i64).collect::<Option<Vec<_>>>().map(Feature::Int64s),
        _ => values
            .iter()
            .map(|v| {
                use base64::Engine;
                let text = v.as_str()?;
                base64::engine::general_purpose::STANDARD.decode(text).ok().map(Bytes::from)
            })
            .collect::<Option<Vec<_>>>()
            .map(Feature::Bytes),
    }
    .ok_or_else(|| format!("a default does not match its dtype {dtype}"))
}

fn example_spec(manifest: &ManifestExampleSpec) -> Result<ExampleSpec, String> {
    let mut features = Vec::new();
    for feature in &manifest.features {
        if feature.kind != "dense" {
            if feature.used {
                return Err(format!(
                    "feature {} is {} and used; only dense features are parsed",
                    feature.key, feature.kind
                ));
            }
            continue;
        }
        let dtype = match feature.dtype.as_str() {
            "float32" => DType::Float,
            "int64" => DType::Int64,
            "string" => DType::String,
            other => return Err(format!("feature {} has dtype {other}", feature.key)),
        };
        let shape = if feature.variable_length {
            FeatureShape::Sequence(feature.shape.iter().skip(1).copied().collect())
        } else {
            FeatureShape::Fixed(feature.shape.clone())
        };
        let default = feature.default.as_deref().map(|values| feature_values(dtype, values)).transpose()?;
        let model_input = if feature.used {
            Some(feature.onnx_input.clone().ok_or_else(|| format!("used feature {} has no onnx_input", feature.key))?)
        } else {
            None
        };
        features.push(FeatureSpec { key: feature.key.clone(), dtype, shape, default, model_input });
    }
    Ok(ExampleSpec { features })
}

fn read_manifest(dir: &Path) -> ServingResult<Manifest> {
    let path = dir.join(MANIFEST);
    let text =
        std::fs::read_to_string(&path).map_err(|e| precondition(format!("cannot read {}: {e}", path.display())))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| precondition(format!("{} is not a conversion manifest: {e}", path.display())))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(precondition(format!(
            "{} has format {}, this server reads format {MANIFEST_FORMAT}; convert again",
            path.display(),
            manifest.format
        )));
    }
    Ok(manifest)
}

/// Runs the converter into `output_dir`. The error carries the converter's own message.
pub fn run_converter(python: &str, saved_model_dir: &Path, output_dir: &Path) -> Result<(), String> {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let script = std::env::temp_dir().join(format!("onnx-serving-converter-{}-{run}.py", std::process::id()));
    std::fs::write(&script, CONVERTER_SCRIPT).map_err(|e| format!("cannot write the converter: {e}"))?;
    let output = Command::new(python)
        .arg(&script)
        .arg(format!("--saved_model_dir={}", saved_model_dir.display()))
        .arg(format!("--output_dir={}", output_dir.display()))
        .output();
    let _ = std::fs::remove_file(&script);
    let output = output.map_err(|e| format!("cannot run {python}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reason = stderr.lines().rev().find(|l| l.starts_with("error: ")).map_or_else(
        || stderr.lines().last().unwrap_or("no output").to_string(),
        |l| l.trim_start_matches("error: ").to_string(),
    );
    Err(reason)
}

/// Finds the conversion of a SavedModel version, or makes one in the cache.
pub fn find_conversion(version_dir: &Path, options: &ConversionOptions, log_context: &str) -> ServingResult<PathBuf> {
    let digest = content_digest(version_dir)
        .map_err(|e| precondition(format!("cannot read the SavedModel in {}: {e}", version_dir.display())))?;
    let local = version_dir.join(LOCAL_CONVERSION_DIR);
    if local.join(MANIFEST).is_file() {
        match read_manifest(&local) {
            Ok(manifest) if manifest.source_sha256 == digest => return Ok(local),
            Ok(_) => warn!(model = log_context, dir = %local.display(),
                "the conversion beside the SavedModel is stale (the SavedModel changed); not using it"),
            Err(error) => warn!(model = log_context, error = %error, "ignoring the conversion beside the SavedModel"),
        }
    }
    let cached = options.cache_dir.join(&digest);
    if cached.join(MANIFEST).is_file() {
        info!(model = log_context, dir = %cached.display(), "using the cached SavedModel conversion");
        return Ok(cached);
    }
    std::fs::create_dir_all(&options.cache_dir).map_err(|e| {
        precondition(format!("cannot create --conversion_cache_dir {}: {e}", options.cache_dir.display()))
    })?;
    let staging = options.cache_dir.join(format!("{digest}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    info!(model = log_context, python = %options.python, "converting the SavedModel to ONNX (tf2onnx)");
    let started = std::time::Instant::now();
    if let Err(reason) = run_converter(&options.python, version_dir, &staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(precondition(format!(
            "the SavedModel in {} has no ONNX conversion, and converting it failed: {reason}. Convert it with: {}",
            version_dir.display(),
            convert_command(version_dir)
        )));
    }
    // NOTE: renamed into place whole, so a reader never sees a half-written conversion.
    if let Err(error) = std::fs::rename(&staging, &cached) {
        let _ = std::fs::remove_dir_all(&staging);
        if !cached.join(MANIFEST).is_file() {
            return Err(precondition(format!("cannot store the conversion in {}: {error}", cached.display())));
        }
    }
    info!(model = log_context, seconds = started.elapsed().as_secs_f64(), dir = %cached.display(), "SavedModel converted");
    Ok(cached)
}

/// One signature's model and the renaming from TF tensor names to ONNX names.
struct Route {
    servable: OrtServable,
    /// TF tensor name (`x:0`) -> ONNX input name, for plain signatures.
    inputs: BTreeMap<String, String>,
    /// TF tensor name (`y:0`) -> ONNX output name.
    outputs: BTreeMap<String, String>,
}

/// A SavedModel version: TF's signatures, each run by its own ONNX model.
pub struct SavedModelServable {
    signatures: SignatureMap,
    routes: BTreeMap<String, Route>,
}

impl SavedModelServable {
    fn route(&self, request: RunRequest) -> ServingResult<(&Route, RunRequest)> {
        let signature = if request.signature.is_empty() { crate::core::DEFAULT_SIGNATURE } else { &request.signature };
        let Some(route) = self.routes.get(signature) else {
            return Err(ServingError::failed_precondition(format!(
                "signature {signature} has no ONNX conversion (converted: {})",
                self.routes.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        };
        let RunRequest { signature, inputs, output_names, deadline, cancel } = request;
        let inputs = inputs
            .into_iter()
            .map(|(name, tensor)| (route.inputs.get(&name).cloned().unwrap_or(name), tensor))
            .collect();
        let output_names =
            output_names.into_iter().map(|name| route.outputs.get(&name).cloned().unwrap_or(name)).collect();
        Ok((route, RunRequest { signature, inputs, output_names, deadline, cancel }))
    }
}

impl Servable for SavedModelServable {
    fn signatures(&self) -> &SignatureMap {
        &self.signatures
    }

    fn submit(&self, request: RunRequest) -> oneshot::Receiver<ServingResult<RunOutputs>> {
        match self.route(request) {
            Ok((route, request)) => route.servable.submit(request),
            Err(error) => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(Err(error));
                rx
            }
        }
    }

    fn run_blocking(&self, request: RunRequest) -> ServingResult<RunOutputs> {
        match self.route(request) {
            Ok((route, request)) => route.servable.run_blocking(request),
            Err(error) => Err(error),
        }
    }

    fn execution_providers(&self) -> Vec<String> {
        self.routes.values().next().map(|r| r.servable.execution_providers()).unwrap_or_default()
    }
}

/// Turns SavedModel version directories into loaders of their ONNX conversions.
pub struct TensorFlowAdapter {
    runtime: &'static OrtRuntime,
    session_options: SessionOptions,
    conversion: ConversionOptions,
}

impl TensorFlowAdapter {
    pub fn new(runtime: &'static OrtRuntime, session_options: SessionOptions, conversion: ConversionOptions) -> Self {
        Self { runtime, session_options, conversion }
    }
}

impl SourceAdapter for TensorFlowAdapter {
    fn platform(&self) -> &str {
        "tensorflow"
    }

    fn adapt(&self, id: &ServableId, path: PathBuf) -> ServingResult<Box<dyn Loader>> {
        if !path.join("saved_model.pb").is_file() {
            return Err(ServingError::not_found(format!(
                "{} holds no saved_model.pb (the tensorflow platform serves SavedModels)",
                path.display()
            )));
        }
        Ok(Box::new(SavedModelLoader {
            id: id.clone(),
            version_dir: path,
            runtime: self.runtime,
            session_options: self.session_options.clone(),
            conversion: self.conversion.clone(),
        }))
    }
}

struct SavedModelLoader {
    id: ServableId,
    version_dir: PathBuf,
    runtime: &'static OrtRuntime,
    session_options: SessionOptions,
    conversion: ConversionOptions,
}

impl Loader for SavedModelLoader {
    fn load(&self) -> ServingResult<Arc<dyn Servable>> {
        let context = format!("{}:{}", self.id.name, self.id.version);
        let mut signatures = read_signatures(&self.version_dir.join("saved_model.pb"))?;
        let options = super::version_options::read_for_version(&self.version_dir)?;
        let session_options = self.session_options.with_model_settings(&options.execution);
        let conversion_dir = find_conversion(&self.version_dir, &self.conversion, &context)?;
        let manifest = read_manifest(&conversion_dir)?;
        let mut routes = BTreeMap::new();
        for (name, entry) in &manifest.signatures {
            let Some(signature) = signatures.get_mut(name) else {
                warn!(model = %context, signature = %name, "the conversion has a signature the SavedModel lacks");
                continue;
            };
            if entry.file.contains('/') || entry.file.contains("..") {
                return Err(precondition(format!("manifest file name `{}` leaves the conversion", entry.file)));
            }
            let servable = OrtServable::load(
                self.runtime,
                &conversion_dir.join(&entry.file),
                &session_options,
                session_options.sessions_per_version,
                &format!("{context}/{name}"),
                |_, _| Ok(SignatureMap::new()),
            )?;
            let rename = |tensors: &BTreeMap<String, TensorInfo>, map: &BTreeMap<String, String>| {
                tensors
                    .iter()
                    .filter_map(|(alias, info)| map.get(alias).map(|onnx| (info.name.clone(), onnx.clone())))
                    .collect::<BTreeMap<_, _>>()
            };
            let route = Route {
                servable,
                inputs: rename(&signature.inputs, &entry.inputs),
                outputs: rename(&signature.outputs, &entry.outputs),
            };
            if let Some(spec) = &entry.example_spec {
                signature.example_spec = Some(
                    example_spec(spec).map_err(|e| precondition(format!("signature {name} in the manifest: {e}")))?,
                );
            }
            routes.insert(name.clone(), route);
        }
        if routes.is_empty() {
            return Err(precondition(format!("the conversion in {} has no signature", conversion_dir.display())));
        }
        info!(model = %context, signatures = ?routes.keys().collect::<Vec<_>>(), dir = %conversion_dir.display(),
            "SavedModel signatures served from their ONNX conversions");
        super::resolve::attach(Arc::new(SavedModelServable { signatures, routes }), &options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor_info(name: &str, dtype: i32, dims: Option<&[i64]>) -> tf::TensorInfo {
        tf::TensorInfo {
            encoding: Some(tf::tensor_info::Encoding::Name(name.into())),
            dtype,
            tensor_shape: Some(match dims {
                Some(dims) => tf::TensorShapeProto {
                    dim: dims.iter().map(|&size| tf::tensor_shape_proto::Dim { size, name: String::new() }).collect(),
                    unknown_rank: false,
                },
                None => tf::TensorShapeProto { dim: vec![], unknown_rank: true },
            }),
        }
    }

    fn saved_model() -> Vec<u8> {
        let classify = tf::SignatureDef {
            inputs: [("inputs".to_string(), tensor_info("tf_example:0", 7, None))].into_iter().collect(),
            outputs: [("scores".to_string(), tensor_info("y:0", 1, Some(&[-1, 1])))].into_iter().collect(),
            method_name: "tensorflow/serving/classify".into(),
            defaults: Default::default(),
        };
        let meta = tf::MetaGraphDef {
            meta_info_def: Some(tf::meta_graph_def::MetaInfoDef { tags: vec!["serve".into()], ..Default::default() }),
            signature_def: [("classify_x_to_y".to_string(), classify)].into_iter().collect(),
        };
        tf::SavedModel { saved_model_schema_version: 1, meta_graphs: vec![meta] }.encode_to_vec()
    }

    #[test]
    fn signatures_come_from_saved_model_pb() {
        let signatures = signatures_from_bytes(&saved_model()).expect("parse");
        let classify = &signatures["classify_x_to_y"];
        assert_eq!(classify.method_name, "tensorflow/serving/classify");
        assert_eq!(
            classify.inputs["inputs"],
            TensorInfo { name: "tf_example:0".into(), dtype: DType::String, shape: None }
        );
        assert_eq!(classify.outputs["scores"].shape, Some(vec![-1, 1]));
    }

    #[test]
    fn hostile_saved_models_are_refused() {
        let good = saved_model();
        assert!(signatures_from_bytes(&good[..good.len() - 5]).is_err(), "truncated");
        // A length prefix of 2^35 bytes on the meta_graphs field.
        assert!(signatures_from_bytes(&[0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err(), "huge length");
        assert!(signatures_from_bytes(b"not a protobuf at all").is_err());
        assert_eq!(signatures_from_bytes(&[]).expect_err("empty"), "the SavedModel holds no MetaGraph");
    }

    #[test]
    fn the_digest_follows_content_not_place() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        for dir in [a.path(), b.path()] {
            std::fs::create_dir_all(dir.join("variables")).expect("mkdir");
            std::fs::write(dir.join("saved_model.pb"), saved_model()).expect("pb");
            std::fs::write(dir.join("variables/variables.index"), b"index").expect("index");
        }
        assert_eq!(content_digest(a.path()).expect("a"), content_digest(b.path()).expect("b"));
        std::fs::write(b.path().join("variables/variables.index"), b"other").expect("index");
        assert_ne!(content_digest(a.path()).expect("a"), content_digest(b.path()).expect("b"));
    }

    #[test]
    fn manifest_specs_become_example_specs() {
        let manifest: ManifestExampleSpec = serde_json::from_str(
            r#"{"features": [
                {"key": "x", "kind": "dense", "dtype": "float32", "shape": [1], "default": null, "used": true, "onnx_input": "x"},
                {"key": "x2", "kind": "dense", "dtype": "float32", "shape": [1], "default": [0.0], "used": false},
                {"key": "seq", "kind": "dense", "dtype": "int64", "shape": [-1, 2], "variable_length": true, "default": [7], "used": true, "onnx_input": "seq"},
                {"key": "ids", "kind": "sparse", "dtype": "int64", "used": false}]}"#,
        )
        .expect("json");
        let spec = example_spec(&manifest).expect("spec");
        assert_eq!(spec.features.len(), 3, "the unused sparse feature is dropped");
        assert_eq!(spec.features[0].model_input.as_deref(), Some("x"));
        assert_eq!(spec.features[1].default, Some(Feature::Floats(vec![0.0])));
        assert_eq!(spec.features[2].shape, FeatureShape::Sequence(vec![2]));
        assert_eq!(spec.features[2].default, Some(Feature::Int64s(vec![7])));
    }
}

//! The `onnx` platform: a version directory holds `model.onnx` (or exactly one `*.onnx`),
//! whose graph inputs and outputs form the `serving_default` signature.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use super::onnx_graph::{read_graph_facts, GraphFacts};
use super::resolve::{apply_aliases, attach};
use super::version_options;
use crate::core::{
    DType, LoadHints, Loader, Servable, ServableId, ServingError, ServingResult, SignatureDef, SignatureMap,
    SourceAdapter, TensorInfo, DEFAULT_SIGNATURE,
};
use crate::runtime::{ModelIo, OrtRuntime, OrtServable, SessionOptions};

/// Turns version directories into loaders of ONNX Runtime sessions.
pub struct OnnxAdapter {
    platform: String,
    runtime: &'static OrtRuntime,
    session_options: SessionOptions,
}

impl OnnxAdapter {
    pub fn new(platform: &str, runtime: &'static OrtRuntime, session_options: SessionOptions) -> Self {
        Self { platform: platform.to_string(), runtime, session_options }
    }
}

/// Returns the model file of a version directory.
pub fn find_model_file(dir: &Path) -> ServingResult<PathBuf> {
    let preferred = dir.join("model.onnx");
    if preferred.is_file() {
        return Ok(preferred);
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ServingError::not_found(format!("cannot read version directory {}: {e}", dir.display())))?;
    let mut candidates: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "onnx"))
        .collect();
    match candidates.len() {
        1 => Ok(candidates.remove(0)),
        0 => Err(ServingError::not_found(format!(
            "no ONNX model in {}: expected model.onnx or exactly one *.onnx file",
            dir.display()
        ))),
        _ => {
            candidates.sort();
            let names: Vec<String> =
                candidates.iter().filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
            Err(ServingError::failed_precondition(format!(
                "{} holds several ONNX files ({}); name the one to serve model.onnx",
                dir.display(),
                names.join(", ")
            )))
        }
    }
}

impl SourceAdapter for OnnxAdapter {
    fn platform(&self) -> &str {
        &self.platform
    }

    fn adapt(&self, id: &ServableId, path: PathBuf) -> ServingResult<Box<dyn Loader>> {
        let model_file = find_model_file(&path)?;
        Ok(Box::new(OnnxLoader {
            id: id.clone(),
            model_file,
            runtime: self.runtime,
            session_options: self.session_options.clone(),
        }))
    }
}

struct OnnxLoader {
    id: ServableId,
    model_file: PathBuf,
    runtime: &'static OrtRuntime,
    session_options: SessionOptions,
}

impl Loader for OnnxLoader {
    fn load(&self) -> ServingResult<Arc<dyn Servable>> {
        self.load_with(&LoadHints::default())
    }

    fn load_with(&self, hints: &LoadHints) -> ServingResult<Arc<dyn Servable>> {
        let version_dir = self.model_file.parent().unwrap_or(&self.model_file);
        let options = version_options::read_for_version(version_dir)?;
        let session_options = self.session_options.with_hints(hints).with_model_settings(&options.execution);
        let facts = read_graph_facts(&self.model_file);
        if facts.is_none() {
            warn!(model = %self.id.name, version = self.id.version, file = %self.model_file.display(),
                "cannot read the graph's declared shapes and class labels; inputs ONNX Runtime reports \
                 without dimensions take any rank, and ZipMap outputs cannot be served");
        }
        let context = format!("{}:{}", self.id.name, self.id.version);
        let servable = OrtServable::load(
            self.runtime,
            &self.model_file,
            &session_options,
            session_options.sessions_per_version,
            &context,
            |inputs, outputs| {
                // NOTE: unread facts: a value ONNX Runtime shows without dimensions may have no
                // shape at all, so it is not checked as a scalar.
                let facts = facts.clone().unwrap_or_else(|| GraphFacts {
                    unshaped: inputs
                        .iter()
                        .chain(outputs)
                        .filter(|io| io.dims.is_empty())
                        .map(|io| io.name.clone())
                        .collect(),
                    ..GraphFacts::default()
                });
                let mut signatures = signature_from_io(inputs, outputs, &facts)?;
                apply_aliases(&mut signatures, &options)?;
                Ok(signatures)
            },
        )?;
        attach(Arc::new(servable), &options)
    }
}

/// Builds the `serving_default` signature from a model's inputs and outputs, using each
/// tensor name as its alias; `facts` adds what the file declares beyond ONNX Runtime's view.
pub fn signature_from_io(inputs: &[ModelIo], outputs: &[ModelIo], facts: &GraphFacts) -> ServingResult<SignatureMap> {
    let info = |io: &ModelIo, is_input: bool| -> ServingResult<TensorInfo> {
        let dtype = match io.dtype {
            Some(dtype) => dtype,
            None if is_input => {
                return Err(ServingError::unimplemented(format!(
                    "model input '{}' is not a tensor of a supported type",
                    io.name
                )))
            }
            None => DType::Invalid,
        };
        if io.score_map {
            // NOTE: a score map is served as [batch, keys] scores, so its keys must be known
            // before any request: they come from the ZipMap that makes it.
            return Ok(match facts.score_maps.get(&io.name) {
                Some(keys) => TensorInfo {
                    name: io.name.clone(),
                    dtype,
                    shape: Some(vec![-1, i64::try_from(keys.len()).unwrap_or(-1)]),
                    map_keys: Some(keys.clone().into()),
                },
                None => TensorInfo { name: io.name.clone(), dtype: DType::Invalid, shape: None, map_keys: None },
            });
        }
        let shape = if facts.unshaped.contains(&io.name) { None } else { Some(io.dims.clone()) };
        Ok(TensorInfo { name: io.name.clone(), dtype, shape, map_keys: None })
    };
    let mut signature = SignatureDef {
        method_name: crate::core::signature::PREDICT_METHOD_NAME.to_string(),
        ..SignatureDef::default()
    };
    for io in inputs {
        signature.inputs.insert(io.name.clone(), info(io, true)?);
    }
    for io in outputs {
        signature.outputs.insert(io.name.clone(), info(io, false)?);
    }
    let mut map = SignatureMap::new();
    map.insert(DEFAULT_SIGNATURE.to_string(), signature);
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_model_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(find_model_file(dir.path()).is_err());
        std::fs::write(dir.path().join("exported.onnx"), b"x").expect("write");
        assert!(find_model_file(dir.path()).expect("one").ends_with("exported.onnx"));
        std::fs::write(dir.path().join("other.onnx"), b"x").expect("write");
        let error = find_model_file(dir.path()).expect_err("two");
        assert!(error.message.contains("exported.onnx, other.onnx"), "{}", error.message);
        std::fs::write(dir.path().join("model.onnx"), b"x").expect("write");
        assert!(find_model_file(dir.path()).expect("preferred").ends_with("model.onnx"));
    }

    #[test]
    fn signature_uses_names_as_aliases() {
        let io = |name: &str, dims: Vec<i64>, score_map: bool| ModelIo {
            name: name.into(),
            dtype: Some(DType::Float),
            dims,
            score_map,
        };
        let inputs = [io("x", vec![], false)];
        let outputs = [io("y", vec![-1, 1], false), io("zipped", vec![-1, -1], true), io("maps", vec![-1, -1], true)];
        let facts = GraphFacts {
            unshaped: ["x".to_string(), "zipped".into(), "maps".into()].into(),
            score_maps: [("zipped".to_string(), vec!["0".to_string(), "1".into()])].into(),
        };
        let map = signature_from_io(&inputs, &outputs, &facts).expect("signature");
        let signature = &map[DEFAULT_SIGNATURE];
        assert_eq!(signature.inputs["x"].shape, None);
        assert_eq!(signature.outputs["y"].shape, Some(vec![-1, 1]));
        // A ZipMap's output is declared as its scores, with the keys in column order; a
        // sequence of maps nothing declares the keys of is not servable as a tensor.
        let zipped = &signature.outputs["zipped"];
        assert_eq!((zipped.dtype, zipped.shape.clone()), (DType::Float, Some(vec![-1, 2])));
        assert_eq!(zipped.map_keys.as_deref(), Some(&["0".to_string(), "1".into()][..]));
        assert_eq!(signature.outputs["maps"].dtype, DType::Invalid);
        assert_eq!(signature.method_name, "tensorflow/serving/predict");
    }
}

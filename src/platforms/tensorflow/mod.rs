//! The `tensorflow` platform: a version directory is a SavedModel. Its SignatureDefs are read
//! from `saved_model.pb` in Rust and shown as TF Serving shows them; requests run on the ONNX
//! conversion of each signature (`python/savedmodel_to_onnx.py`), found beside the SavedModel
//! (`<version>/onnx/`), in the content-keyed conversion cache, or made on the spot when
//! Python with TensorFlow and tf2onnx is installed.

mod conversion;
mod manifest;
mod saved_model;
mod servable;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::{info, warn};

pub use conversion::{
    content_digest, convert_command, find_conversion, run_converter, ConversionOptions, CONVERTER_SCRIPT,
    LOCAL_CONVERSION_DIR,
};
use manifest::{example_spec, read_manifest};
pub use saved_model::{read_signatures, signatures_from_bytes};
use servable::{Route, SavedModelServable};

use crate::core::{Loader, Servable, ServableId, ServingError, ServingResult, SignatureMap, SourceAdapter, TensorInfo};
use crate::runtime::{OrtRuntime, OrtServable, SessionOptions};

fn precondition(message: impl Into<String>) -> ServingError {
    ServingError::failed_precondition(message)
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
        self.load_with(&crate::core::LoadHints::default())
    }

    fn load_with(&self, hints: &crate::core::LoadHints) -> ServingResult<Arc<dyn Servable>> {
        let context = format!("{}:{}", self.id.name, self.id.version);
        let mut signatures = read_signatures(&self.version_dir.join("saved_model.pb"))?;
        let options = super::version_options::read_for_version(&self.version_dir)?;
        let session_options = self.session_options.with_hints(hints).with_model_settings(&options.execution);
        let conversion_dir = find_conversion(&self.version_dir, &self.conversion, &context)?;
        let manifest = read_manifest(&conversion_dir)?;
        let mut routes = BTreeMap::new();
        let mut loaded: BTreeMap<String, Arc<OrtServable>> = BTreeMap::new();
        for (name, entry) in &manifest.signatures {
            let Some(signature) = signatures.get_mut(name) else {
                warn!(model = %context, signature = %name, "the conversion has a signature the SavedModel lacks");
                continue;
            };
            if entry.file.contains('/') || entry.file.contains("..") {
                return Err(precondition(format!("manifest file name `{}` leaves the conversion", entry.file)));
            }
            let servable = match loaded.get(&entry.file) {
                Some(servable) => Arc::clone(servable),
                None => {
                    let servable = Arc::new(OrtServable::load(
                        self.runtime,
                        &conversion_dir.join(&entry.file),
                        &session_options,
                        session_options.sessions_per_version,
                        &format!("{context}/{name}"),
                        |_, _| Ok(SignatureMap::new()),
                    )?);
                    loaded.insert(entry.file.clone(), Arc::clone(&servable));
                    servable
                }
            };
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
            // NOTE: the converter leaves plain signatures' graphs without declared shapes
            // (unless asked to keep them), so they take any rank, as TF does.
            signature.lenient_shapes = entry.lenient_shapes && entry.example_spec.is_none();
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

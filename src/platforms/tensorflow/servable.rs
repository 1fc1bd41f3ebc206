//! The servable of a converted SavedModel: one ONNX Runtime model per signature, routed by
//! the request's signature, with TF tensor names renamed to ONNX ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::core::{RunOutputs, RunRequest, Servable, ServingError, ServingResult, SignatureMap};
use crate::runtime::OrtServable;

/// One signature's model and the renaming from TF tensor names to ONNX names.
pub(super) struct Route {
    /// Shared by the signatures whose conversion is one file (Keras 3's `serve` and
    /// `serving_default`), so its weights are loaded once.
    pub(super) servable: Arc<OrtServable>,
    /// TF tensor name (`x:0`) -> ONNX input name, for plain signatures.
    pub(super) inputs: BTreeMap<String, String>,
    /// TF tensor name (`y:0`) -> ONNX output name.
    pub(super) outputs: BTreeMap<String, String>,
}

/// A SavedModel version: TF's signatures, each run by its own ONNX model.
pub struct SavedModelServable {
    pub(super) signatures: SignatureMap,
    pub(super) routes: BTreeMap<String, Route>,
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

    /// Refuses only when every signature's model is full: the signature a request names is
    /// in its body, not read yet (`submit` still checks the one it names).
    fn admission(&self) -> ServingResult<()> {
        if self.routes.values().any(|route| route.servable.has_room()) {
            return Ok(());
        }
        self.routes.values().next().map_or(Ok(()), |route| route.servable.admission())
    }

    fn execution_providers(&self) -> Vec<String> {
        self.routes.values().next().map(|r| r.servable.execution_providers()).unwrap_or_default()
    }
}

//! The status and metadata JSON documents of TF Serving's REST API, field for field, and our
//! one extension document beside them.

use serde_json::{json, Map, Value};

use crate::core::{ServingError, SignatureMap, TensorInfo, VersionStatus};

/// Serializes with TF's protobuf-JSON whitespace (one-space indent).
pub fn to_pretty_bytes(value: &Value) -> Result<Vec<u8>, ServingError> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut serializer)
        .map_err(|e| ServingError::internal(format!("cannot write JSON: {e}")))?;
    out.push(b'\n');
    Ok(out)
}

/// Builds the GetModelStatus response: versions highest first, errors with their code.
pub fn status_json(statuses: &[VersionStatus]) -> Value {
    let versions: Vec<Value> = statuses
        .iter()
        .map(|status| {
            let (code, message) = match &status.error {
                Some(error) => (error.code.name(), error.message.as_str()),
                None => ("OK", ""),
            };
            json!({
                "version": status.version.to_string(),
                "state": status.state.name(),
                "status": { "error_code": code, "error_message": message },
            })
        })
        .collect();
    json!({ "model_version_status": versions })
}

/// Builds our extension document (`.../execution_providers`, which TF Serving does not have):
/// the execution providers each version runs on, empty for versions not loaded.
pub fn execution_providers_json(statuses: &[VersionStatus]) -> Value {
    let versions: Vec<Value> = statuses
        .iter()
        .map(|status| {
            json!({
                "version": status.version.to_string(),
                "state": status.state.name(),
                "execution_providers": status.execution_providers,
            })
        })
        .collect();
    json!({ "model_version_status": versions })
}

fn tensor_info_json(info: &TensorInfo) -> Value {
    let shape = match &info.shape {
        Some(dims) => json!({
            "dim": dims.iter().map(|d| json!({"size": d.to_string(), "name": ""})).collect::<Vec<_>>(),
            "unknown_rank": false,
        }),
        None => json!({ "dim": [], "unknown_rank": true }),
    };
    json!({ "dtype": info.dtype.enum_name(), "tensor_shape": shape, "name": info.name })
}

/// Builds the GetModelMetadata response, with TF's double-nested `signature_def`.
pub fn metadata_json(name: &str, version: i64, signatures: &SignatureMap) -> Value {
    let mut defs = Map::new();
    for (signature_name, signature) in signatures {
        let inputs: Map<String, Value> =
            signature.inputs.iter().map(|(alias, info)| (alias.clone(), tensor_info_json(info))).collect();
        let outputs: Map<String, Value> =
            signature.outputs.iter().map(|(alias, info)| (alias.clone(), tensor_info_json(info))).collect();
        // NOTE: TF Serving prints `defaults: {}` on every signature but the init op's (empty
        // method name), as its golden metadata for TF2 SavedModels shows.
        let def = if signature.method_name.is_empty() {
            json!({ "inputs": inputs, "outputs": outputs, "method_name": signature.method_name })
        } else {
            json!({ "inputs": inputs, "outputs": outputs, "method_name": signature.method_name, "defaults": {} })
        };
        defs.insert(signature_name.clone(), def);
    }
    json!({
        "model_spec": { "name": name, "signature_name": "", "version": version.to_string() },
        "metadata": { "signature_def": { "signature_def": defs } },
    })
}

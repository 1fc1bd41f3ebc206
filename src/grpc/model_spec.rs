//! `ModelSpec` resolution and echo, and the client deadline, shared by every gRPC method.

use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;

use crate::core::{ServingError, ServingResult, VersionRequest, DEFAULT_SIGNATURE};
use crate::proto::tensorflow::serving::{model_spec, ModelSpec};

/// What a request's `ModelSpec` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSpec {
    pub name: String,
    pub version: VersionRequest,
    /// The signature, with `serving_default` for an empty one.
    pub signature_name: String,
}

/// Resolves a `ModelSpec` as TF Serving's `ServableRequestFromModelSpec`.
pub fn resolve(spec: Option<&ModelSpec>) -> ServingResult<ResolvedSpec> {
    let spec = spec.ok_or_else(|| ServingError::invalid_argument("Missing ModelSpec"))?;
    if spec.name.is_empty() {
        return Err(ServingError::invalid_argument("ModelSpec has no name specified."));
    }
    let version = match &spec.version_choice {
        Some(model_spec::VersionChoice::Version(version)) => VersionRequest::Specific(*version),
        Some(model_spec::VersionChoice::VersionLabel(label)) => VersionRequest::Label(label.clone()),
        None => VersionRequest::Latest,
    };
    let signature_name =
        if spec.signature_name.is_empty() { DEFAULT_SIGNATURE.to_string() } else { spec.signature_name.clone() };
    Ok(ResolvedSpec { name: spec.name.clone(), version, signature_name })
}

/// Returns the response `model_spec`: the name, the signature and the version that served.
pub fn echo(name: &str, version: i64, signature_name: &str) -> ModelSpec {
    ModelSpec {
        name: name.to_string(),
        signature_name: signature_name.to_string(),
        version_choice: Some(model_spec::VersionChoice::Version(version)),
    }
}

/// Returns the client's deadline from the `grpc-timeout` header (`<digits><H|M|S|m|u|n>`).
pub fn deadline(metadata: &MetadataMap) -> Option<Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let timeout = parse_grpc_timeout(value)?;
    Instant::now().checked_add(timeout)
}

fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_tf_serving() {
        assert_eq!(resolve(None).expect_err("missing").message, "Missing ModelSpec");
        let empty = ModelSpec::default();
        assert_eq!(resolve(Some(&empty)).expect_err("no name").message, "ModelSpec has no name specified.");
        let latest = ModelSpec { name: "m".into(), ..Default::default() };
        let resolved = resolve(Some(&latest)).expect("latest");
        assert_eq!(resolved.version, VersionRequest::Latest);
        assert_eq!(resolved.signature_name, "serving_default");
        let labelled = ModelSpec {
            name: "m".into(),
            signature_name: "predict_images".into(),
            version_choice: Some(model_spec::VersionChoice::VersionLabel("canary".into())),
        };
        let resolved = resolve(Some(&labelled)).expect("label");
        assert_eq!(resolved.version, VersionRequest::Label("canary".into()));
        assert_eq!(resolved.signature_name, "predict_images");
    }

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None, "at most 8 digits");
    }
}

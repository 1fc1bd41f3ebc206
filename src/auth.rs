//! HTTP basic authentication, shared by REST (a middleware) and gRPC (an interceptor):
//! constant-time checks, and failures that never say which part was wrong.

use std::sync::Arc;

use base64::Engine;
use subtle::ConstantTimeEq;

use crate::core::Secret;

/// The one accepted username and password.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// The message of every authentication failure.
pub const UNAUTHENTICATED_MESSAGE: &str = "Authentication required: missing or invalid credentials";

impl Credentials {
    /// Checks an `Authorization` header value (`Basic base64(user:password)`). Both parts
    /// are compared in constant time, and both always are.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else { return false };
        let Some(encoded) = value.strip_prefix(b"Basic ").or_else(|| value.strip_prefix(b"basic ")) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii()) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else { return false };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let user_ok = user.ct_eq(self.username.as_bytes());
        let password_ok = password.ct_eq(self.password.0.as_bytes());
        bool::from(user_ok & password_ok)
    }
}

/// Paths that stay open for orchestrator probes; they reveal nothing about the models.
pub fn is_probe_path(path: &str) -> bool {
    path == "/v1/health/live" || path == "/v1/health/ready"
}

/// Builds the gRPC interceptor for `credentials`.
pub fn grpc_interceptor(
    credentials: Arc<Credentials>,
) -> impl Fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |request: tonic::Request<()>| {
        let header = request.metadata().get("authorization").map(|v| v.as_bytes());
        if credentials.accepts(header) {
            Ok(request)
        } else {
            Err(tonic::Status::unauthenticated(UNAUTHENTICATED_MESSAGE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(text: &str) -> Vec<u8> {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(text)).into_bytes()
    }

    #[test]
    fn accepts_only_the_exact_pair() {
        let credentials = Credentials { username: "ops".into(), password: Secret("s3cr:t".into()) };
        assert!(credentials.accepts(Some(&basic("ops:s3cr:t"))), "a colon in the password is fine");
        assert!(!credentials.accepts(Some(&basic("ops:wrong"))));
        assert!(!credentials.accepts(Some(&basic("op:s3cr:t"))));
        assert!(!credentials.accepts(Some(&basic("ops"))));
        assert!(!credentials.accepts(Some(b"Bearer abc")));
        assert!(!credentials.accepts(Some(b"Basic !!!")));
        assert!(!credentials.accepts(None));
        assert_eq!(format!("{credentials:?}"), "Credentials { username: \"ops\", password: Secret(***) }");
    }
}

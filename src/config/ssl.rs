//! TF Serving's text-format `SSLConfig` (`--ssl_config_file`), which secures gRPC.

use std::path::Path;

use crate::proto::tensorflow::serving::SslConfig;
use crate::proto::text_format::{parse_text_proto, read_text_file, TextFormatError};

/// The PEM contents an `SSLConfig` gives, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct SslSettings {
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// The CA that signs client certificates.
    pub client_ca_pem: Option<String>,
    /// Clients must present a certificate signed by `client_ca_pem` (mutual TLS).
    pub client_verify: bool,
}

impl std::fmt::Debug for SslSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SslSettings")
            .field("server_key_pem", &"***")
            .field("client_ca", &self.client_ca_pem.is_some())
            .field("client_verify", &self.client_verify)
            .finish()
    }
}

/// Parses an `SSLConfig`: PEM contents of the server key and certificate, an optional CA
/// for client certificates, and whether clients must present one (`client_verify`).
pub fn parse(text: &str) -> Result<SslSettings, TextFormatError> {
    let config: SslConfig = parse_text_proto(text, "tensorflow.serving.SSLConfig")?;
    if config.server_key.trim().is_empty() || config.server_cert.trim().is_empty() {
        return Err(TextFormatError::Invalid("SSLConfig needs server_key and server_cert (PEM contents)".into()));
    }
    if config.client_verify && config.custom_ca.trim().is_empty() {
        return Err(TextFormatError::Invalid(
            "SSLConfig client_verify needs custom_ca, the CA that signs client certificates".into(),
        ));
    }
    Ok(SslSettings {
        server_cert_pem: config.server_cert,
        server_key_pem: config.server_key,
        client_ca_pem: Some(config.custom_ca).filter(|ca| !ca.trim().is_empty()),
        client_verify: config.client_verify,
    })
}

/// Reads `--ssl_config_file`.
pub fn read_file(path: &Path) -> Result<SslSettings, TextFormatError> {
    let text = read_text_file(path, Some("--ssl_config_file"))?;
    parse(&text).map_err(|e| e.in_file(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let tls =
            parse("server_key: \"KEY\"\nserver_cert: \"CERT\"\ncustom_ca: \"CA\"\nclient_verify: true").expect("parse");
        assert_eq!(
            (tls.server_key_pem.as_str(), tls.client_ca_pem.as_deref(), tls.client_verify),
            ("KEY", Some("CA"), true)
        );
        assert!(parse("server_cert: \"CERT\"").expect_err("no key").to_string().contains("server_key"));
        assert!(parse("server_key: \"K\" server_cert: \"C\" client_verify: true")
            .expect_err("no ca")
            .to_string()
            .contains("custom_ca"));
        assert!(parse("server_kee: \"K\"")
            .expect_err("typo")
            .to_string()
            .starts_with("Error parsing text-format tensorflow.serving.SSLConfig"));
    }
}

//! TF Serving's text-format `MonitoringConfig` (`--monitoring_config_file`).

use std::path::Path;

use crate::proto::tensorflow::serving::MonitoringConfig;
use crate::proto::text_format::{parse_text_proto, read_text_file, TextFormatError};

/// The Prometheus path when the config leaves it empty.
pub const DEFAULT_PROMETHEUS_PATH: &str = "/monitoring/prometheus/metrics";

/// Returns the path to serve Prometheus metrics at, or `None` when it is not enabled.
pub fn prometheus_path(text: &str) -> Result<Option<String>, TextFormatError> {
    let config: MonitoringConfig = parse_text_proto(text, "tensorflow.serving.MonitoringConfig")?;
    Ok(config.prometheus_config.filter(|p| p.enable).map(|p| {
        if p.path.is_empty() {
            DEFAULT_PROMETHEUS_PATH.to_string()
        } else {
            p.path
        }
    }))
}

/// Reads `--monitoring_config_file`.
pub fn read_file(path: &Path) -> Result<Option<String>, TextFormatError> {
    let text = read_text_file(path, Some("--monitoring_config_file"))?;
    prometheus_path(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf_servings_own_monitoring_config_parses() {
        assert_eq!(
            prometheus_path("prometheus_config { enable: true }").expect("parse").as_deref(),
            Some(DEFAULT_PROMETHEUS_PATH)
        );
        assert_eq!(prometheus_path("prometheus_config { enable: false path: \"/m\" }").expect("parse"), None);
        assert!(prometheus_path("prometheus_config { enabled: true }").expect_err("typo").to_string().contains("1:"));
        let Some(file) = crate::tfs_testdata("monitoring_config.txt") else { return };
        let path = read_file(&file).expect("parses");
        assert_eq!(path.as_deref(), Some("/monitoring/prometheus/metrics"));
    }
}

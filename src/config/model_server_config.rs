//! TF Serving's `ModelServerConfig` (from a file or `HandleReloadConfigRequest`) as core
//! model configs, validated with TF Serving's messages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::core::{ModelConfig, ServingError, ServingResult, VersionPolicy};
use crate::proto::tensorflow::serving::file_system_storage_path_source_config::servable_version_policy::PolicyChoice;
use crate::proto::tensorflow::serving::{model_server_config, ModelConfigList, ModelServerConfig};
use crate::proto::text_format::{parse_text_proto, read_text_file, TextFormatError};

/// The message name in text-format errors.
pub const MODEL_SERVER_CONFIG: &str = "tensorflow.serving.ModelServerConfig";

/// Parses a text-format `ModelServerConfig` into model configs.
pub fn parse_model_config_text(text: &str, working_dir: &Path) -> Result<Vec<ModelConfig>, TextFormatError> {
    let config: ModelServerConfig = parse_text_proto(text, MODEL_SERVER_CONFIG)?;
    let list = match &config.config {
        Some(model_server_config::Config::ModelConfigList(list)) => list,
        Some(model_server_config::Config::CustomModelConfig(_)) => {
            return Err(TextFormatError::Invalid("custom_model_config is not supported; use model_config_list".into()))
        }
        None => return Ok(Vec::new()),
    };
    model_configs(list, working_dir).map_err(|e| TextFormatError::Invalid(e.message))
}

/// Reads `--model_config_file`. Relative base paths resolve against `working_dir` (the
/// server's working directory), as for `--model_base_path`.
pub fn read_model_config_file(path: &Path, working_dir: &Path) -> Result<Vec<ModelConfig>, TextFormatError> {
    let text = read_text_file(path, Some("--model_config_file"))?;
    parse_model_config_text(&text, working_dir)
}

/// Returns the `model_config_list` of a config, or the error TF Serving gives for any
/// other kind of config.
pub fn model_config_list(config: &ModelServerConfig) -> ServingResult<&ModelConfigList> {
    match &config.config {
        Some(model_server_config::Config::ModelConfigList(list)) => Ok(list),
        _ => Err(ServingError::invalid_argument(
            "ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList is currently supported",
        )),
    }
}

/// Converts a `model_config_list`. Relative base paths are resolved against `working_dir`
/// (TF Serving refuses them). Platforms are checked later, against the registry.
pub fn model_configs(list: &ModelConfigList, working_dir: &Path) -> ServingResult<Vec<ModelConfig>> {
    let mut seen = BTreeSet::new();
    let mut models = Vec::with_capacity(list.config.len());
    for entry in &list.config {
        if entry.name.is_empty() {
            return Err(ServingError::invalid_argument("Illegal to list a model without a name in the config list"));
        }
        if !seen.insert(entry.name.clone()) {
            return Err(ServingError::invalid_argument(format!(
                "Illegal to list model {} multiple times in config list",
                entry.name
            )));
        }
        if entry.model_platform.is_empty() {
            return Err(ServingError::invalid_argument(format!(
                "Illegal setting neither ModelServerConfig::model_type (deprecated) nor ModelServerConfig::model_platform, model name is {}",
                entry.name
            )));
        }
        if entry.base_path.is_empty() {
            return Err(ServingError::invalid_argument(format!(
                "Expected model {} to have an absolute path or URI; got base_path()=",
                entry.name
            )));
        }
        let base_path = PathBuf::from(&entry.base_path);
        let base_path = working_dir.join(base_path);
        let policy = match entry.model_version_policy.as_ref().and_then(|p| p.policy_choice.as_ref()) {
            None => VersionPolicy::Latest(1),
            Some(PolicyChoice::Latest(latest)) => VersionPolicy::Latest(latest.num_versions.max(1)),
            Some(PolicyChoice::All(_)) => VersionPolicy::All,
            Some(PolicyChoice::Specific(specific)) => {
                if specific.versions.is_empty() {
                    return Err(ServingError::invalid_argument(format!(
                        "Model {} has a specific version policy without versions",
                        entry.name
                    )));
                }
                VersionPolicy::Specific(specific.versions.iter().copied().collect())
            }
        };
        let labels: BTreeMap<String, i64> = entry.version_labels.iter().map(|(k, v)| (k.clone(), *v)).collect();
        models.push(ModelConfig {
            name: entry.name.clone(),
            base_path,
            platform: entry.model_platform.clone(),
            policy,
            labels,
        });
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tensorflow::serving::file_system_storage_path_source_config::{
        servable_version_policy, ServableVersionPolicy,
    };
    use crate::proto::tensorflow::serving::ModelConfig as ModelConfigProto;

    fn entry(name: &str, base_path: &str, platform: &str) -> ModelConfigProto {
        ModelConfigProto {
            name: name.into(),
            base_path: base_path.into(),
            model_platform: platform.into(),
            ..Default::default()
        }
    }

    #[test]
    fn converts_policies_labels_and_paths() {
        let mut specific = entry("b", "/models/b", "pytorch");
        specific.model_version_policy = Some(ServableVersionPolicy {
            policy_choice: Some(PolicyChoice::Specific(servable_version_policy::Specific { versions: vec![1, 3] })),
        });
        specific.version_labels.insert("stable".into(), 1);
        let mut latest = entry("a", "relative/a", "onnx");
        latest.model_version_policy = Some(ServableVersionPolicy {
            policy_choice: Some(PolicyChoice::Latest(servable_version_policy::Latest { num_versions: 0 })),
        });
        let list = ModelConfigList { config: vec![latest, specific] };
        let models = model_configs(&list, Path::new("/work")).expect("valid");
        assert_eq!(models[0].base_path, PathBuf::from("/work/relative/a"));
        assert_eq!(models[0].policy, VersionPolicy::Latest(1), "0 versions means 1");
        assert_eq!(models[1].policy, VersionPolicy::Specific([1, 3].into()));
        assert_eq!(models[1].labels.get("stable"), Some(&1));
    }

    #[test]
    fn text_files_parse_with_policies_and_labels() {
        let text = r#"
            model_config_list {
              config {
                name: "mnist"
                base_path: "/models/mnist_onnx"
                model_platform: "onnx"
                model_version_policy { specific { versions: 1 versions: 2 } }
                version_labels { key: "stable" value: 1 }
                version_labels { key: "canary" value: 2 }
              }
              config: { name: "half", base_path: "half", model_platform: "pytorch",
                        model_version_policy: { all: {} } }
            }
        "#;
        let models = parse_model_config_text(text, Path::new("/srv")).expect("parse");
        assert_eq!(models.len(), 2);
        assert_eq!(models[0].policy, VersionPolicy::Specific([1, 2].into()));
        assert_eq!(models[0].labels.get("canary"), Some(&2));
        assert_eq!(models[1].base_path, PathBuf::from("/srv/half"));
        assert_eq!(models[1].policy, VersionPolicy::All);
    }

    #[test]
    fn tf_servings_own_config_files_parse_and_fail() {
        let (Some(good), Some(bad)) =
            (crate::tfs_testdata("good_model_config.txt"), crate::tfs_testdata("bad_model_config.txt"))
        else {
            return;
        };
        let good = std::fs::read_to_string(good).expect("good_model_config.txt");
        let good =
            good.replace("${TEST_HALF_PLUS_TWO_DIR}", "/m/two").replace("${TEST_HALF_PLUS_THREE_DIR}", "/m/three");
        let models = parse_model_config_text(&good, Path::new("/")).expect("good_model_config.txt parses");
        let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["half_plus_two", "half_plus_three"]);
        assert_eq!(models[0].platform, "tensorflow");
        assert_eq!(models[1].base_path, PathBuf::from("/m/three"));
        let bad = read_model_config_file(&bad, Path::new("/")).expect_err("bad");
        match bad {
            TextFormatError::Syntax { .. } => {
                let message = bad.to_string();
                assert!(
                    message.starts_with("Error parsing text-format tensorflow.serving.ModelServerConfig: 1:"),
                    "{message}"
                )
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn rejects_what_tf_serving_rejects() {
        let duplicate = ModelConfigList { config: vec![entry("a", "/a", "onnx"), entry("a", "/b", "onnx")] };
        let error = model_configs(&duplicate, Path::new("/")).expect_err("duplicate");
        assert_eq!(error.message, "Illegal to list model a multiple times in config list");
        let no_platform = ModelConfigList { config: vec![entry("a", "/a", "")] };
        let error = model_configs(&no_platform, Path::new("/")).expect_err("platform");
        assert!(error.message.contains("nor ModelServerConfig::model_platform, model name is a"));
        let custom =
            ModelServerConfig { config: Some(model_server_config::Config::CustomModelConfig(Default::default())) };
        assert!(model_config_list(&custom)
            .expect_err("custom")
            .message
            .starts_with("ServerModelConfig type not supported"));
        assert!(model_config_list(&ModelServerConfig::default()).is_err());
    }
}

//! Execution providers and custom operator libraries against the real binary and the real
//! ONNX Runtime: GPU providers requested on a machine without a GPU fall back to CPU and say
//! so (log, REST and gRPC status, metadata), a required provider fails the load, and a custom
//! op library is registered per model or globally.
//!
//! Two tests need parts that `.ci/run` installs; elsewhere they say why they skip, unless
//! `ONNX_SERVING_REQUIRE_ALL_TESTS=1` (set by `.ci/run`) turns the skip into a failure:
//! - `ONNX_SERVING_GPU_ORT_LIBRARY`: libonnxruntime.so from the `onnxruntime-gpu` wheel;
//! - the `onnxruntime-extensions` Python package, for its custom op library.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{copy_dir, repo_path, run_to_exit, skip_unless, ServerProcess};
use onnx_serving::proto::onnx_serving::ExecutionProviders;
use onnx_serving::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use onnx_serving::proto::tensorflow::serving::{GetModelMetadataRequest, ModelSpec};
use prost::Message;
use serde_json::{json, Value};

const CPU: &str = "CPUExecutionProvider";

fn half_plus_two() -> String {
    repo_path("models/half_plus_two").display().to_string()
}

async fn predict(server: &ServerProcess, model: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(server.url(&format!("/v1/models/{model}:predict")))
        .json(&body)
        .send()
        .await
        .expect("predict");
    response.json().await.expect("json")
}

async fn get(server: &ServerProcess, path: &str) -> Value {
    reqwest::get(server.url(path)).await.expect("get").json().await.expect("json")
}

async fn check_cpu_fallback(server: &ServerProcess, reason: &str) {
    // The answers are right on the CPU.
    let answer = predict(server, "hpt", json!({"instances": [1.0, 2.0, 5.0]})).await;
    assert_eq!(answer, json!({"predictions": [2.5, 3.0, 4.5]}));
    // Each skipped provider is logged once per version, with its reason.
    for provider in ["TensorrtExecutionProvider", "CUDAExecutionProvider"] {
        let lines: Vec<String> =
            server.log_lines_with("falling back").into_iter().filter(|l| l.contains(provider)).collect();
        assert_eq!(lines.len(), 1, "one fallback line for {provider}: {lines:?}");
        assert!(lines[0].contains(reason), "{provider} fallback names its reason `{reason}`: {}", lines[0]);
    }
    let available = server.log_lines_with("servable version is available");
    assert!(available.iter().any(|l| l.contains(CPU)), "the status log line shows the providers: {available:?}");
    // TF Serving's documents stay exactly its own; the providers in use are in our extension
    // document and, over gRPC, in the opt-in `execution_providers` metadata field.
    let status = get(server, "/v1/models/hpt").await;
    assert!(status["model_version_status"][0].get("execution_providers").is_none(), "{status}");
    let metadata = get(server, "/v1/models/hpt/metadata").await;
    assert!(metadata["metadata"].get("execution_providers").is_none(), "{metadata}");
    let providers = get(server, "/v1/models/hpt/execution_providers").await;
    assert_eq!(providers["model_version_status"][0]["execution_providers"], json!([CPU]), "{providers}");
    let address = server.grpc_address.expect("gRPC address");
    let mut client = PredictionServiceClient::connect(format!("http://{address}")).await.expect("connect");
    let spec = ModelSpec { name: "hpt".into(), ..Default::default() };
    let response = client
        .get_model_metadata(GetModelMetadataRequest {
            model_spec: Some(spec),
            metadata_field: vec!["execution_providers".into()],
        })
        .await
        .expect("GetModelMetadata")
        .into_inner();
    let any = response.metadata.get("execution_providers").expect("the asked-for field");
    let providers = ExecutionProviders::decode(any.value.as_slice()).expect("ExecutionProviders");
    assert_eq!(providers.providers, vec![CPU.to_string()]);
}

#[tokio::test]
async fn gpu_providers_missing_from_the_library_fall_back_to_cpu_and_say_so() {
    // The CPU wheel has neither TensorRT nor CUDA; batching makes two sessions per version,
    // which must still log each fallback once.
    let server = ServerProcess::start_logged(
        &[
            "--model_name=hpt",
            &format!("--model_base_path={}", half_plus_two()),
            "--execution_providers=tensorrt,cuda,cpu",
            "--enable_batching",
        ],
        &[],
    );
    check_cpu_fallback(&server, "built without it").await;
}

#[tokio::test]
async fn gpu_providers_that_fail_to_register_fall_back_to_cpu() {
    // The onnxruntime-gpu wheel has both providers, and registering them fails for a real
    // reason here: no CUDA libraries, no driver, no device.
    let library = std::env::var("ONNX_SERVING_GPU_ORT_LIBRARY").ok().filter(|p| Path::new(p).is_file());
    if skip_unless("ONNX_SERVING_GPU_ORT_LIBRARY (the onnxruntime-gpu wheel's libonnxruntime.so)", library.is_some()) {
        return;
    }
    let library = library.unwrap_or_default();
    let server = ServerProcess::start_logged(
        &[
            "--model_name=hpt",
            &format!("--model_base_path={}", half_plus_two()),
            "--execution_providers=tensorrt,cuda,cpu",
            &format!("--ort_library_path={library}"),
        ],
        &[],
    );
    assert!(!server.log_lines_with(&library).is_empty(), "the GPU build was loaded");
    check_cpu_fallback(&server, "Failed to load library").await;
}

#[test]
fn a_required_provider_that_is_missing_fails_the_load() {
    let (code, output) = run_to_exit(
        &[
            "--model_name=hpt",
            &format!("--model_base_path={}", half_plus_two()),
            "--execution_providers=cuda,cpu",
            "--require_execution_provider=cuda",
            "--max_num_load_retries=0",
        ],
        &[],
    );
    assert_ne!(code, Some(0), "{output}");
    assert!(
        output.contains("the required execution provider CUDAExecutionProvider is not available: the loaded ONNX Runtime library was built without it"),
        "{output}"
    );
    // Requiring a provider that is not even asked for is refused just as clearly.
    let (_, output) = run_to_exit(
        &[
            "--model_name=hpt",
            &format!("--model_base_path={}", half_plus_two()),
            "--require_execution_provider=tensorrt",
            "--max_num_load_retries=0",
        ],
        &[],
    );
    assert!(output.contains("TensorrtExecutionProvider is not in the provider list"), "{output}");
    let (code, output) = run_to_exit(&["--model_base_path=/x", "--execution_providers=rocm"], &[]);
    assert_ne!(code, Some(0));
    assert!(output.contains("unknown execution provider `rocm` (known: tensorrt, cuda, cpu)"), "{output}");
}

#[tokio::test]
async fn a_version_whose_options_require_a_missing_provider_ends_and_the_rest_keeps_serving() {
    let base = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_path("models/half_plus_two/1"), &base.path().join("1"));
    let server = ServerProcess::start_logged(
        &[
            "--model_name=hpt",
            &format!("--model_base_path={}", base.path().display()),
            "--file_system_poll_wait_seconds=1",
            "--max_num_load_retries=0",
            "--model_version_policy=all",
        ],
        &[],
    );
    // Version 2 carries its own options, which only it obeys.
    let staging = tempfile::tempdir().expect("staging");
    let version = staging.path().join("2");
    copy_dir(&repo_path("models/half_plus_two/1"), &version);
    std::fs::write(
        version.join("model_options.pbtxt"),
        "execution { providers: [\"cuda\", \"cpu\"] require_provider: \"cuda\" }\n",
    )
    .expect("options");
    std::fs::rename(&version, base.path().join("2")).expect("publish version 2");
    let client = reqwest::Client::new();
    let status = common::wait_for_status(&client, &server.url("/v1/models/hpt"), "version 2 to end", |s| {
        common::state_of(s, 2).as_deref() == Some("END")
    })
    .await;
    let entry = status["model_version_status"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["version"] == "2"))
        .cloned()
        .unwrap_or_default();
    let message = entry["status"]["error_message"].as_str().unwrap_or_default();
    assert!(message.contains("required execution provider CUDAExecutionProvider"), "{status}");
    assert_eq!(common::state_of(&status, 1).as_deref(), Some("AVAILABLE"));
    let answer = predict(&server, "hpt", json!({"instances": [2.0]})).await;
    assert_eq!(answer, json!({"predictions": [3.0]}));
}

/// The custom op library that onnxruntime-extensions ships, and the libpython it needs.
fn extensions_library() -> Option<(PathBuf, PathBuf)> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import onnxruntime_extensions as e, sysconfig, os; print(e.get_library_path()); \
             print(os.path.join(sysconfig.get_config_var('LIBDIR'), sysconfig.get_config_var('LDLIBRARY')))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines = text.lines();
    let library = PathBuf::from(lines.next()?);
    let libpython = PathBuf::from(lines.next()?);
    (library.is_file() && libpython.is_file()).then_some((library, libpython))
}

#[tokio::test]
async fn custom_op_libraries_are_registered_globally_or_per_model() {
    let model = repo_path("tests/fixtures/string_upper").display().to_string();
    // Without the library the model cannot load, and the error says what to do.
    let (code, output) =
        run_to_exit(&["--model_name=upper", &format!("--model_base_path={model}"), "--max_num_load_retries=0"], &[]);
    assert_ne!(code, Some(0));
    assert!(output.contains("StringUpper") && output.contains("--custom_op_paths"), "{output}");
    // A library that does not exist ends the version with its path.
    let (_, output) = run_to_exit(
        &[
            "--model_name=upper",
            &format!("--model_base_path={model}"),
            "--custom_op_paths=/nonexistent/libcustom_ops.so",
            "--max_num_load_retries=0",
        ],
        &[],
    );
    assert!(output.contains("custom op library /nonexistent/libcustom_ops.so does not exist"), "{output}");

    let Some((library, libpython)) = extensions_library() else {
        skip_unless("the onnxruntime-extensions Python package", false);
        return;
    };
    let library = library.display().to_string();
    let libpython = libpython.display().to_string();
    // A library that fails to load names the loader's error (and the fix, for this one).
    let (_, output) = run_to_exit(
        &[
            "--model_name=upper",
            &format!("--model_base_path={model}"),
            &format!("--custom_op_paths={library}"),
            "--max_num_load_retries=0",
        ],
        &[],
    );
    assert!(output.contains(&format!("custom op library {library} failed to load")), "{output}");
    assert!(output.contains("LD_PRELOAD"), "{output}");

    // Registered globally, the operator runs.
    let preload = [("LD_PRELOAD", libpython.as_str())];
    let server = ServerProcess::start_logged(
        &["--model_name=upper", &format!("--model_base_path={model}"), &format!("--custom_op_paths={library}")],
        &preload,
    );
    let answer = predict(&server, "upper", json!({"instances": ["abc", "Serving 42"]})).await;
    assert_eq!(answer, json!({"predictions": ["ABC", "SERVING 42"]}));
    drop(server);

    // Registered per model, from model_options.pbtxt beside the version directories.
    let base = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_path("tests/fixtures/string_upper"), base.path());
    std::fs::write(
        base.path().join("model_options.pbtxt"),
        format!("execution {{ custom_op_libraries: \"{library}\" }}\n"),
    )
    .expect("options");
    let server = ServerProcess::start_logged(
        &["--model_name=upper", &format!("--model_base_path={}", base.path().display())],
        &preload,
    );
    let answer = predict(&server, "upper", json!({"instances": ["per model"]})).await;
    assert_eq!(answer, json!({"predictions": ["PER MODEL"]}));
}

//! Model warmup through the real lifecycle: TFRecord files of PredictionLogs run before a
//! version serves, and a failing warmup leaves the version END while the old one serves.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::{base_url, copy_dir, repo_path, state_of, test_config, wait_for_status};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use onnx_serving::proto::tensorflow::serving::{prediction_log, ModelSpec, PredictLog, PredictRequest, PredictionLog};
use onnx_serving::proto::tensorflow::{tensor_shape_proto, TensorProto, TensorShapeProto};
use onnx_serving::server::start;
use onnx_serving::warmup::{write_tfrecords, WARMUP_FILE, WARMUP_RECORDS_READ};
use prost::Message;

fn predict_record(alias: &str) -> Vec<u8> {
    let content: Vec<u8> = (0..784).flat_map(|i| (i as f32 / 784.0).to_le_bytes()).collect();
    let dims = [1, 784].map(|size| tensor_shape_proto::Dim { size, name: String::new() });
    let tensor = TensorProto {
        dtype: 1,
        tensor_shape: Some(TensorShapeProto { dim: dims.to_vec(), unknown_rank: false }),
        tensor_content: Bytes::from(content),
        ..Default::default()
    };
    let request = PredictRequest {
        model_spec: Some(ModelSpec { name: "mnist".into(), ..Default::default() }),
        inputs: [(alias.to_string(), tensor)].into(),
        ..Default::default()
    };
    let log = PredictionLog {
        log_metadata: None,
        log_type: Some(prediction_log::LogType::PredictLog(PredictLog { request: Some(request), response: None })),
    };
    log.encode_to_vec()
}

fn version_with_warmup(dir: &Path, file: &[u8]) {
    copy_dir(&repo_path("models/mnist_onnx/2"), dir);
    std::fs::create_dir_all(dir.join("assets.extra")).expect("mkdir");
    std::fs::write(dir.join(WARMUP_FILE), file).expect("write warmup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_runs_before_serving_and_failures_fail_the_load() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder of this test binary");

    // Two records, three iterations each, run before the version serves.
    let good = tempfile::tempdir().expect("tempdir");
    version_with_warmup(
        &good.path().join("1"),
        &write_tfrecords(&[predict_record("images"), predict_record("images")]),
    );
    let mut config = test_config(&[("mnist", good.path().to_path_buf())]);
    config.warmup_iterations = Some(3);
    let server = start(config).await.expect("warm version loads");
    let mut records_read = 0;
    let mut runs = 0;
    // NOTE: the recorder is process-wide; other tests of this binary record too, so only
    // this model's series count.
    let good_path = good.path().display().to_string();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let label = |name: &str| key.key().labels().find(|l| l.key() == name).map(|l| l.value().to_string());
        match (key.key().name(), value) {
            (WARMUP_RECORDS_READ, DebugValue::Counter(count))
                if label("model_path").is_some_and(|p| p.starts_with(&good_path)) =>
            {
                records_read += count
            }
            (":tensorflow:serving:runtime_latency", DebugValue::Histogram(values))
                if label("model_name").as_deref() == Some("mnist") =>
            {
                runs += values.len()
            }
            _ => {}
        }
    }
    assert_eq!(records_read, 2);
    assert_eq!(runs, 6, "each record ran three times before the version served");

    // A record whose input the signature lacks fails the load with the reason.
    let bad = tempfile::tempdir().expect("tempdir");
    version_with_warmup(&bad.path().join("1"), &write_tfrecords(&[predict_record("pixels")]));
    let error = start(test_config(&[("mnist", bad.path().to_path_buf())])).await.err().expect("warmup fails");
    let error = error.to_string();
    assert!(error.contains("warmup request failed: Signature input alias: images"), "{error}");

    // A corrupt file is DATA_LOSS.
    let corrupt = tempfile::tempdir().expect("tempdir");
    let mut file = write_tfrecords(&[predict_record("images")]);
    let last = file.len() - 1;
    file[last] ^= 0xff;
    version_with_warmup(&corrupt.path().join("1"), &file);
    let error = start(test_config(&[("mnist", corrupt.path().to_path_buf())])).await.err().expect("corrupt");
    let error = error.to_string();
    assert!(
        error.contains("DATA_LOSS") && error.contains("Please verify your warmup data is in TFRecord format."),
        "{error}"
    );

    // A new version whose warmup fails ends in error; the served one keeps serving.
    let staging = tempfile::tempdir().expect("tempdir");
    version_with_warmup(&staging.path().join("2"), &write_tfrecords(&[predict_record("pixels")]));
    std::fs::rename(staging.path().join("2"), good.path().join("2")).expect("move version 2 in");
    let client = reqwest::Client::new();
    let status_url = format!("{}/v1/models/mnist", base_url(&server));
    let status =
        wait_for_status(&client, &status_url, "version 2 to fail", |s| state_of(s, 2).as_deref() == Some("END")).await;
    let entry = &status["model_version_status"][0];
    assert!(entry["status"]["error_message"].as_str().is_some_and(|m| m.contains("warmup request failed")), "{status}");
    assert_eq!(state_of(&status, 1).as_deref(), Some("AVAILABLE"));
    let predict = client
        .post(format!("{}/v1/models/mnist:predict", base_url(&server)))
        .body(serde_json::json!({"instances": [vec![0.5f32; 784]]}).to_string())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("predict");
    assert_eq!(predict.status(), 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_and_regress_records_warm_up_tf_example_signatures() {
    use onnx_serving::proto::tensorflow::serving::{
        input, ClassificationRequest, ClassifyLog, ExampleList, Input, RegressLog, RegressionRequest,
    };
    use onnx_serving::proto::tensorflow::{feature, Example, Feature, Features, FloatList};
    let example = |key: &str| Example {
        features: Some(Features {
            feature: [(
                key.to_string(),
                Feature { kind: Some(feature::Kind::FloatList(FloatList { value: vec![2.0] })) },
            )]
            .into_iter()
            .collect(),
        }),
    };
    let input =
        |key: &str| Some(Input { kind: Some(input::Kind::ExampleList(ExampleList { examples: vec![example(key)] })) });
    let spec = Some(ModelSpec { name: "hpt".into(), ..Default::default() });
    let classify = PredictionLog {
        log_type: Some(prediction_log::LogType::ClassifyLog(ClassifyLog {
            request: Some(ClassificationRequest { model_spec: spec.clone(), input: input("x") }),
            response: None,
        })),
        ..Default::default()
    };
    let regress = |key: &str| PredictionLog {
        log_type: Some(prediction_log::LogType::RegressLog(RegressLog {
            request: Some(RegressionRequest { model_spec: spec.clone(), input: input(key) }),
            response: None,
        })),
        ..Default::default()
    };
    let with_warmup = |dir: &Path, file: &[u8]| {
        copy_dir(&repo_path("tests/fixtures/example_half_plus_two/1"), dir);
        std::fs::create_dir_all(dir.join("assets.extra")).expect("mkdir");
        std::fs::write(dir.join(WARMUP_FILE), file).expect("write warmup");
    };
    let good = tempfile::tempdir().expect("tempdir");
    with_warmup(&good.path().join("1"), &write_tfrecords(&[classify.encode_to_vec(), regress("x").encode_to_vec()]));
    let server = start(test_config(&[("hpt", good.path().to_path_buf())])).await.expect("warm version loads");
    server.shutdown().await;
    // A record whose Examples lack the feature fails the load with TF's parser error.
    let bad = tempfile::tempdir().expect("tempdir");
    with_warmup(&bad.path().join("1"), &write_tfrecords(&[regress("y").encode_to_vec()]));
    let error = start(test_config(&[("hpt", bad.path().to_path_buf())])).await.err().expect("warmup fails").to_string();
    assert!(
        error.contains("warmup request failed: Name: <unknown>, Feature: x (data type: float) is required"),
        "{error}"
    );
}

//! Writes the seed corpora of the fuzz targets (`fuzz/seeds/<target>/`) from the encoders
//! and test fixtures of this repository: `cargo run --example fuzz_seeds`. The seeds are
//! committed; run this again when a decoder learns a new kind of input.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use onnx_serving::codec::tensor_proto::encode_tensor;
use onnx_serving::core::Tensor;
use onnx_serving::proto::tensorflow as tf;
use onnx_serving::proto::tensorflow::serving as tfs;
use onnx_serving::warmup::write_tfrecords;
use prost::Message;

fn write(target: &str, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = repo().join("fuzz/seeds").join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn image(format: image::ImageFormat, width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    let pixels = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8 * 40, y as u8 * 40, 128]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(pixels).write_to(&mut Cursor::new(&mut out), format)?;
    Ok(out)
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn tensors() -> Vec<(&'static str, tf::TensorProto)> {
    let dims = |sizes: &[i64]| tf::TensorShapeProto {
        dim: sizes.iter().map(|&size| tf::tensor_shape_proto::Dim { size, name: String::new() }).collect(),
        unknown_rank: false,
    };
    let floats = Tensor::from_vec(vec![2, 3], vec![1.0f32, -2.5, 3.25, f32::NAN, 0.0, 1e30]);
    let strings = Tensor::from_strings(vec![2], vec![Bytes::from_static(b"hello"), Bytes::from_static(b"\xff\x00")]);
    vec![
        ("float_content", encode_tensor(&floats, true)),
        ("float_values", encode_tensor(&floats, false)),
        ("strings", encode_tensor(&strings, false)),
        ("int64", encode_tensor(&Tensor::from_vec(vec![3], vec![1i64, -7, i64::MAX]), false)),
        ("bool", encode_tensor(&Tensor::from_bools(vec![2], vec![true, false]), false)),
        ("double", encode_tensor(&Tensor::from_vec(vec![1, 1], vec![0.5f64]), false)),
        (
            "fill_rule",
            tf::TensorProto { dtype: 1, tensor_shape: Some(dims(&[4, 4])), float_val: vec![7.0], ..Default::default() },
        ),
        (
            "half",
            tf::TensorProto {
                dtype: 19,
                tensor_shape: Some(dims(&[2])),
                half_val: vec![15360, 16384],
                ..Default::default()
            },
        ),
        ("scalar", tf::TensorProto { dtype: 3, int_val: vec![42], ..Default::default() }),
    ]
}

fn example(x: &[f32], id: i64, words: &[&str]) -> tf::Example {
    let feature = |kind| tf::Feature { kind: Some(kind) };
    let features = [
        ("x".to_string(), feature(tf::feature::Kind::FloatList(tf::FloatList { value: x.to_vec() }))),
        ("ids".to_string(), feature(tf::feature::Kind::Int64List(tf::Int64List { value: vec![id] }))),
        (
            "words".to_string(),
            feature(tf::feature::Kind::BytesList(tf::BytesList {
                value: words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect(),
            })),
        ),
    ];
    tf::Example { features: Some(tf::Features { feature: features.into_iter().collect() }) }
}

fn example_input() -> tfs::Input {
    tfs::Input {
        kind: Some(tfs::input::Kind::ExampleListWithContext(tfs::ExampleListWithContext {
            examples: vec![example(&[1.0, 2.0], 3, &["a", "b"]), example(&[3.0, 4.0], 5, &[])],
            context: Some(example(&[0.0, 0.0], 0, &["context"])),
        })),
    }
}

fn main() -> anyhow::Result<()> {
    let png = image(image::ImageFormat::Png, 5, 3)?;
    let rest = [
        ("row", r#"{"instances": [{"x": [1, 2, 3], "ids": [[1]], "words": "a", "blob_bytes": {"b64": "aGk="}, "flag": true}]}"#.to_string()),
        ("columnar", r#"{"inputs": {"x": [[1.0, 2e-3, -3]], "ids": 5, "words": ["a", "\u00e9\n"], "blob_bytes": [{"b64": "AA=="}], "flag": [false]}}"#.to_string()),
        ("one_row", r#"{"signature_name": "one", "instances": [1.5, 2.5, NaN, -Infinity]}"#.to_string()),
        ("halves", r#"{"signature_name": "halves", "inputs": {"h": [[0.5, -1], [65504, 1e-8]]}}"#.to_string()),
        ("one_columnar", r#"{"signature_name": "one", "inputs": [[[1e300], [4.9e-324]]]}"#.to_string()),
        ("image_b64", format!(r#"{{"signature_name": "images", "instances": [{{"b64": "{}"}}]}}"#, base64(&png))),
    ];
    for (name, body) in &rest {
        write("rest_predict", name, body.as_bytes())?;
    }
    let examples = r#"{"signature_name": "regress", "context": {"words": ["c"]}, "examples": [{"x": [1.0, 2.0], "ids": 3, "words": ["x", "y"]}, {"x": [3, 4], "ids": [4]}]}"#;
    write("rest_examples", "context", examples.as_bytes())?;
    write("rest_examples", "plain", br#"{"examples": [{"x": [0.5, 1], "ids": 1, "words": "w"}]}"#)?;

    let tensors = tensors();
    for (name, proto) in &tensors {
        write("tensor_proto", name, &proto.encode_to_vec())?;
    }
    let request = tfs::PredictRequest {
        model_spec: Some(tfs::ModelSpec { name: "m".into(), ..Default::default() }),
        inputs: tensors.iter().take(3).map(|(name, proto)| (name.to_string(), proto.clone())).collect(),
        output_filter: vec!["y".into()],
        ..Default::default()
    };
    write("predict_request", "three_inputs", &request.encode_to_vec())?;

    write("example_proto", "with_context", &example_input().encode_to_vec())?;
    let list = tfs::Input {
        kind: Some(tfs::input::Kind::ExampleList(tfs::ExampleList { examples: vec![example(&[1.0, 1.0], 1, &["z"])] })),
    };
    write("example_proto", "list", &list.encode_to_vec())?;

    let configs = [
        (0u8, "model_config", "model_config_list { config { name: \"m\" base_path: \"/models/m\" model_platform: \"onnx\" model_version_policy { specific { versions: 1 versions: 2 } } version_labels { key: \"stable\" value: 1 } } }"),
        (1, "batching", "max_batch_size { value: 8 } batch_timeout_micros { value: 1000 } num_batch_threads { value: 2 } allowed_batch_sizes: [2, 4, 8] pad_variable_length_inputs: true"),
        (2, "monitoring", "prometheus_config { enable: true path: \"/metrics\" }"),
        (3, "ssl", "server_key: \"-----BEGIN PRIVATE KEY-----\" server_cert: \"c\" custom_ca: \"ca\" client_verify: true"),
        (4, "model_options", "input_aliases { key: \"x\" value: \"image\" } image { color: \"bgr\" resize: \"letterbox\" scale: \"-1..1\" mean: [0.1, 0.2, 0.3] } execution { max_queued_requests: 4 }"),
    ];
    for (which, name, text) in configs {
        write("text_configs", name, &[&[which][..], text.as_bytes()].concat())?;
    }

    let formats = [
        ("png", image::ImageFormat::Png),
        ("jpeg", image::ImageFormat::Jpeg),
        ("gif", image::ImageFormat::Gif),
        ("bmp", image::ImageFormat::Bmp),
        ("webp", image::ImageFormat::WebP),
    ];
    for (index, (name, format)) in formats.into_iter().enumerate() {
        // NOTE: the first byte picks the image input (see fuzz_targets/images.rs).
        let choice = (index as u8).wrapping_mul(0x35);
        write("images", name, &[&[choice][..], &image(format, 6, 4)?].concat())?;
    }

    let multipart = [
        "--fuzz\r\nContent-Disposition: form-data; name=\"model_name\"\r\n\r\nm\r\n".as_bytes(),
        b"--fuzz\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n",
        &png,
        b"\r\n--fuzz--\r\n",
    ]
    .concat();
    write("multipart", "image_and_field", &multipart)?;

    let predict_log = tfs::PredictionLog {
        log_metadata: None,
        log_type: Some(tfs::prediction_log::LogType::PredictLog(tfs::PredictLog {
            request: Some(request.clone()),
            response: None,
        })),
    };
    let classify_log = tfs::PredictionLog {
        log_metadata: None,
        log_type: Some(tfs::prediction_log::LogType::ClassifyLog(tfs::ClassifyLog {
            request: Some(tfs::ClassificationRequest { model_spec: None, input: Some(example_input()) }),
            response: None,
        })),
    };
    let records = write_tfrecords(&[predict_log.encode_to_vec(), classify_log.encode_to_vec()]);
    write("tfrecord_warmup", "predict_and_classify", &records)?;

    let fixtures = repo().join("tests/fixtures");
    for model in ["dtypes", "iris_zipmap", "iris_tensor", "string_upper", "scalar_out", "example_half_plus_two"] {
        write("onnx_graph", model, &std::fs::read(fixtures.join(model).join("1/model.onnx"))?)?;
    }
    for (name, path) in [
        ("half_plus_two", Path::new("models/half_plus_two_tf/123/saved_model.pb")),
        ("counter", Path::new("tests/fixtures/saved_model_counter/1/saved_model.pb")),
        ("image", Path::new("tests/fixtures/image_savedmodel/1/saved_model.pb")),
    ] {
        write("saved_model", name, &std::fs::read(repo().join(path))?)?;
    }
    println!("seeds written to {}", repo().join("fuzz/seeds").display());
    Ok(())
}

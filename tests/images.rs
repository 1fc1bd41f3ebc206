//! Image uploads over a real socket: multipart files, raw image bodies and `POST /`, checked
//! numerically against the JSON path and a reference layout computed here.

mod common;

use std::io::Cursor;

use common::{base_url, repo_path, start_server};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

fn encode(image: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    image.write_to(&mut Cursor::new(&mut out), format).expect("encode");
    out
}

/// A 28x28 "digit": a bright vertical bar on black.
fn digit() -> image::GrayImage {
    image::GrayImage::from_fn(28, 28, |x, y| {
        image::Luma([if (12..16).contains(&x) && (4..24).contains(&y) { 255 } else { 0 }])
    })
}

fn png_part(bytes: Vec<u8>) -> Part {
    Part::bytes(bytes).file_name("digit.png").mime_str("image/png").expect("mime")
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.text().await.expect("body")).expect("json"))
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A valid PNG whose header claims 100000 x 100000 pixels: a decompression bomb's header.
fn bomb_png() -> Vec<u8> {
    let mut png = encode(image::DynamicImage::ImageLuma8(image::GrayImage::new(1, 1)), image::ImageFormat::Png);
    // IHDR data starts after the 8-byte signature, 4-byte length and 4-byte type.
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

#[tokio::test]
async fn uploads_match_the_json_path_and_respect_the_layout() {
    let server = start_server(&[
        ("mnist_image", repo_path("models/mnist_image")),
        ("nchw", repo_path("tests/fixtures/image_nchw")),
        ("nhwc_u8", repo_path("tests/fixtures/image_nhwc_u8")),
        ("mnist", repo_path("models/mnist_onnx")),
    ])
    .await;
    let base = base_url(&server);
    let client = reqwest::Client::new();
    let png = encode(image::DynamicImage::ImageLuma8(digit()), image::ImageFormat::Png);

    // The same pixels as TF Serving JSON, scaled to 0..1 as the upload path does.
    let pixels: Vec<Vec<Vec<f32>>> =
        (0..28).map(|y| (0..28).map(|x| vec![f32::from(digit().get_pixel(x, y)[0]) / 255.0]).collect()).collect();
    let (status, expected) = json_of(
        client
            .post(format!("{base}/v1/models/mnist_image:predict"))
            .body(json!({"instances": [pixels]}).to_string())
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 200, "{expected}");

    let form = Form::new().part("image", png_part(png.clone()));
    let (status, body) = json_of(
        client.post(format!("{base}/v1/models/mnist_image:predict")).multipart(form).send().await.expect("send"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, expected, "a multipart upload equals the same pixels sent as JSON");

    let raw = client
        .post(format!("{base}/v1/models/mnist_image:predict"))
        .header("content-type", "image/png")
        .body(png.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(json_of(raw).await.1, expected, "a raw image body too");

    // Base64 in TF Serving JSON, and Simple TF Serving's JSON on POST / (URL-safe alphabet).
    use base64::Engine;
    let standard = base64::engine::general_purpose::STANDARD.encode(&png);
    let url_safe = base64::engine::general_purpose::URL_SAFE.encode(&png);
    let b64 = json!({"instances": [{"b64": standard}]}).to_string();
    let (status, body) =
        json_of(client.post(format!("{base}/v1/models/mnist_image:predict")).body(b64).send().await.expect("send"))
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, expected, "{{\"b64\": ...}} images in TF Serving JSON");
    let simple = json!({"model_name": "mnist_image", "data": {"image": [url_safe]}}).to_string();
    let (status, body) = json_of(client.post(format!("{base}/")).body(simple).send().await.expect("send")).await;
    assert_eq!((status, &body), (200, &expected), "Simple TF Serving JSON");
    let numeric =
        json!({"model_name": "mnist", "model_version": 2, "data": {"images": [vec![0.0f32; 784]]}}).to_string();
    let (status, body) = json_of(client.post(format!("{base}/")).body(numeric).send().await.expect("send")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0].as_array().map(Vec::len), Some(10), "numbers go through TF's columnar format");

    // A batch of files, a JPEG among them, and the Simple TF Serving form on POST /.
    let jpeg = encode(image::DynamicImage::ImageLuma8(digit()).to_rgb8().into(), image::ImageFormat::Jpeg);
    let form = Form::new()
        .part("images", png_part(png.clone()))
        .part("images", Part::bytes(jpeg).file_name("d.jpg").mime_str("image/jpeg").expect("mime"))
        .text("model_name", "mnist_image")
        .text("model_version", "1");
    let (status, body) = json_of(client.post(format!("{base}/")).multipart(form).send().await.expect("send")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["predictions"][0], expected["predictions"][0]);
    let form = Form::new().part("image", png_part(png.clone())).text("model_version", "9");
    let (status, body) = json_of(
        client.post(format!("{base}/v1/models/mnist_image:predict")).multipart(form).send().await.expect("send"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("Servable not found for request: Specific(mnist_image, 9)"))
    );

    // Layout: a 5x4 RGB image whose red is x, green y and blue 200, into NCHW float and
    // NHWC uint8 inputs of [*, 3, 4, 5] and [*, 4, 5, 3].
    let rgb = image::RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8, y as u8, 200]));
    let rgb_png = encode(image::DynamicImage::ImageRgb8(rgb), image::ImageFormat::Png);
    let send_raw = |model: &str| {
        client
            .post(format!("{base}/v1/models/{model}:predict"))
            .header("content-type", "image/png")
            .body(rgb_png.clone())
            .send()
    };
    let (status, nchw) = json_of(send_raw("nchw").await.expect("send")).await;
    assert_eq!(status, 200, "{nchw}");
    let reference: Vec<Vec<Vec<f32>>> = (0..3)
        .map(|c| (0..4).map(|y| (0..5).map(|x| [x as f32, y as f32, 200.0][c] / 255.0).collect()).collect())
        .collect();
    let got: Vec<Vec<Vec<f32>>> = serde_json::from_value(nchw["predictions"][0].clone()).expect("[3][4][5] floats");
    assert_eq!(got, reference, "channel-major planes, each row by row");
    let (_, nhwc) = json_of(send_raw("nhwc_u8").await.expect("send")).await;
    assert_eq!(nhwc["predictions"][0][2][3], json!([3, 2, 200]));

    // The helpers behind the web page: the model list, an example request that runs as it is,
    // and generated clients.
    let models: Value =
        client.get(format!("{base}/ui/models")).send().await.expect("models").json().await.expect("json");
    assert!(models
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["name"] == "mnist_image" && m["versions"][0]["state"] == "AVAILABLE")));
    let example = client.get(format!("{base}/v1/models/mnist_image/gen_json")).send().await.expect("gen_json");
    let example = example.text().await.expect("text");
    let (status, body) =
        json_of(client.post(format!("{base}/v1/models/mnist_image:predict")).body(example).send().await.expect("send"))
            .await;
    assert_eq!(status, 200, "the example request runs: {body}");
    let python =
        client.get(format!("{base}/v1/models/mnist_image/gen_client?language=python")).send().await.expect("client");
    assert!(python.text().await.expect("text").contains("urllib.request.urlopen"));
    let unknown =
        client.get(format!("{base}/v1/models/mnist_image/gen_client?language=cobol")).send().await.expect("client");
    assert_eq!(unknown.status(), 400);
    let page = client.get(format!("{base}/")).send().await.expect("page");
    assert!(page.headers()["content-type"].to_str().is_ok_and(|t| t.starts_with("text/html")));

    // Hostile and unsuitable uploads get a 400 that names the problem.
    let refuse = |body: Vec<u8>, model: &'static str| {
        client.post(format!("{base}/v1/models/{model}:predict")).header("content-type", "image/png").body(body).send()
    };
    let (status, body) = json_of(refuse(png[..png.len() / 2].to_vec(), "mnist_image").await.expect("send")).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|m| m.starts_with("image 0: ")), "{body}");
    let (status, body) = json_of(refuse(b"GIF? no, text".to_vec(), "mnist_image").await.expect("send")).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|m| m.contains("unknown image format")), "{body}");
    let (status, body) = json_of(refuse(bomb_png(), "mnist_image").await.expect("send")).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|m| m.contains("100000x100000 pixels, more than the limit")), "{body}");
    let (status, body) = json_of(refuse(png.clone(), "mnist").await.expect("send")).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|m| m.contains("is not an image input")), "{body}");
    let form = Form::new().text("model_name", "mnist_image");
    let (status, body) = json_of(client.post(format!("{base}/")).multipart(form).send().await.expect("send")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("the form has no 'image' or 'images' file field")));
    server.shutdown().await;
}

#[tokio::test]
async fn per_model_image_options_shape_the_tensor() {
    // The image_nchw fixture echoes its float [batch, 3, 4, 5] input, so the response is the
    // preprocessed tensor itself.
    let base = tempfile::tempdir().expect("tempdir");
    common::copy_dir(&repo_path("tests/fixtures/image_nchw"), base.path());
    std::fs::write(
        base.path().join("model_options.pbtxt"),
        r#"image { color: "bgr" resize: "letterbox" scale: "-1..1" mean: [0.1, 0.2, 0.3] std: [0.5, 0.25, 2.0] pad_value: 0 }"#,
    )
    .expect("options");
    let server = start_server(&[("echo", base.path().to_path_buf())]).await;
    let client = reqwest::Client::new();
    // 10x4 of one colour: letterboxed into 5x4 it becomes 5x2 with a padded row above and below.
    let rgb = [10u8, 100, 250];
    let image = image::RgbImage::from_fn(10, 4, |_, _| image::Rgb(rgb));
    let png = encode(image::DynamicImage::ImageRgb8(image), image::ImageFormat::Png);
    let form = Form::new().part("image", png_part(png));
    let (status, body) = json_of(
        client
            .post(format!("{}/v1/models/echo:predict", base_url(&server)))
            .multipart(form)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let got: Vec<Vec<Vec<f64>>> = serde_json::from_value(body["predictions"][0].clone()).expect("[3][4][5]");
    let (mean, std) = ([0.1f64, 0.2, 0.3], [0.5f64, 0.25, 2.0]);
    let bgr = [rgb[2], rgb[1], rgb[0]];
    for (channel, plane) in got.iter().enumerate() {
        for (row, values) in plane.iter().enumerate() {
            let pixel = if row == 0 || row == 3 { 0 } else { bgr[channel] };
            let want = (f64::from(pixel) / 127.5 - 1.0 - mean[channel]) / std[channel];
            for value in values {
                assert!((value - want).abs() < 1e-5, "channel {channel} row {row}: {value} vs {want}: {body}");
            }
            assert_eq!(values.len(), 5);
        }
        assert_eq!(plane.len(), 4);
    }
    assert_eq!(got.len(), 3);
    server.shutdown().await;

    // Options that contradict the input fail the load, naming the file and the conflict.
    std::fs::write(base.path().join("model_options.pbtxt"), r#"image { color: "gray" }"#).expect("options");
    let error = match onnx_serving::server::start(common::test_config(&[("echo", base.path().to_path_buf())])).await {
        Ok(_) => panic!("a gray image option on a 3-channel input must not load"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("model_options.pbtxt") && error.contains("makes 1 channel(s), but input"), "{error}");
}

#[tokio::test]
async fn a_labels_file_adds_the_top_classes_to_image_responses() {
    let base = tempfile::tempdir().expect("tempdir");
    common::copy_dir(&repo_path("models/mnist_image"), base.path());
    let names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
    std::fs::write(base.path().join("labels.txt"), names.join("\n") + "\n").expect("labels");
    std::fs::write(base.path().join("model_options.pbtxt"), "labels { file: \"labels.txt\" top_k: 3 }\n")
        .expect("options");
    let server = start_server(&[("digits", base.path().to_path_buf())]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/models/digits:predict", base_url(&server));
    let png = encode(image::DynamicImage::ImageLuma8(digit()), image::ImageFormat::Png);
    let form = Form::new().part("image", png_part(png.clone())).part("image", png_part(png.clone()));
    let (status, body) = json_of(client.post(&url).multipart(form).send().await.expect("send")).await;
    assert_eq!(status, 200, "{body}");
    let labels = body["labels"].as_array().expect("labels").clone();
    assert_eq!(labels.len(), 2, "one list per image: {body}");
    for (row, top) in labels.iter().enumerate() {
        let scores: Vec<f64> = serde_json::from_value(body["predictions"][row].clone()).expect("scores");
        let mut order: Vec<usize> = (0..10).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let top = top.as_array().expect("top-k");
        assert_eq!(top.len(), 3);
        for (rank, entry) in top.iter().enumerate() {
            let index = order[rank];
            assert_eq!(entry["index"], json!(index), "{body}");
            assert_eq!(entry["label"], json!(names[index]));
            assert!((entry["score"].as_f64().expect("score") - scores[index]).abs() < 1e-6);
        }
    }
    // The base64 JSON path carries them too; plain tensor requests keep TF Serving's shape.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let (_, body) =
        json_of(client.post(&url).body(json!({"instances": [{"b64": b64}]}).to_string()).send().await.expect("send"))
            .await;
    assert_eq!(body["labels"][0].as_array().map(Vec::len), Some(3), "{body}");
    let pixels = vec![vec![vec![0.0f32; 1]; 28]; 28];
    let (_, body) =
        json_of(client.post(&url).body(json!({"instances": [pixels]}).to_string()).send().await.expect("send")).await;
    assert!(body.get("labels").is_none() && body["predictions"][0].as_array().map(Vec::len) == Some(10), "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn image_options_and_labels_apply_on_the_tensorflow_platform() {
    // The fixture's SavedModel answers the mean of each channel of its float [-1, 4, 4, 3]
    // `images`; served from its committed conversion, so no TensorFlow is needed.
    let base = tempfile::tempdir().expect("tempdir");
    common::copy_dir(&repo_path("tests/fixtures/image_savedmodel"), base.path());
    std::fs::write(base.path().join("labels.txt"), "blue\ngreen\nred\n").expect("labels");
    std::fs::write(
        base.path().join("model_options.pbtxt"),
        "image { color: \"bgr\" scale: \"0..255\" }\nlabels { file: \"labels.txt\" top_k: 1 }\n",
    )
    .expect("options");
    let mut config = common::test_config(&[("colors", base.path().to_path_buf())]);
    config.models[0].platform = "tensorflow".into();
    let server = onnx_serving::server::start(config).await.expect("server starts");
    let rgb = [10u8, 20, 200];
    let image = image::RgbImage::from_fn(4, 4, |_, _| image::Rgb(rgb));
    let png = encode(image::DynamicImage::ImageRgb8(image), image::ImageFormat::Png);
    let form = Form::new().part("image", png_part(png));
    let url = format!("{}/v1/models/colors:predict", base_url(&server));
    let (status, body) = json_of(reqwest::Client::new().post(&url).multipart(form).send().await.expect("send")).await;
    assert_eq!(status, 200, "{body}");
    // BGR order and 0..255 pixels, as the options ask (RGB 0..1 if they were ignored).
    let scores: Vec<f64> = serde_json::from_value(body["predictions"][0].clone()).expect("scores");
    let want = [f64::from(rgb[2]), f64::from(rgb[1]), f64::from(rgb[0])];
    assert!(scores.iter().zip(want).all(|(got, want)| (got - want).abs() < 1e-4), "{body}");
    assert_eq!(body["labels"], json!([[{"label": "blue", "index": 0, "score": want[0]}]]), "{body}");
    server.shutdown().await;
}

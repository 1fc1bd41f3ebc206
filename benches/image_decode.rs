//! Image preprocessing per image on one core: decode + resize + scale to f32, for a 640×480
//! JPEG going to 224×224×3 and a 28×28 PNG going to 28×28×1, against Pillow doing the same
//! in Python (`benches/peer/pillow_preprocess.py`), in one run. `cargo bench --bench image_decode`.

use std::io::Cursor;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use bytes::Bytes;
use onnx_serving::codec::image::{image_target, images_to_tensor, ImageLimits};
use onnx_serving::core::{DType, TensorInfo};

const ROUNDS: usize = 5;

fn photo() -> Vec<u8> {
    // NOTE: smooth gradients plus a deterministic texture, so the JPEG has photo-like entropy.
    let image = image::RgbImage::from_fn(640, 480, |x, y| {
        let noise = ((x * 7919 + y * 104_729) % 97) as u8;
        image::Rgb([(x / 3) as u8 ^ noise, (y / 2) as u8, ((x + y) / 5) as u8 ^ (noise / 2)])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image).write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg).expect("jpeg");
    out
}

fn digit() -> Vec<u8> {
    let image = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([((x * y) % 256) as u8]));
    let mut out = Vec::new();
    image::DynamicImage::ImageLuma8(image).write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).expect("png");
    out
}

/// Median microseconds per image over `ROUNDS` rounds of `iterations`.
fn ours(data: &[u8], dims: [i64; 4], iterations: usize) -> f64 {
    let info = TensorInfo { name: "x".into(), dtype: DType::Float, shape: Some(dims.to_vec()), map_keys: None };
    let target = image_target(&info, None).expect("valid").expect("image target");
    let images = [Bytes::copy_from_slice(data)];
    let mut per_image = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(images_to_tensor(&images, &target, &ImageLimits::default()).expect("decode"));
        }
        per_image.push(started.elapsed().as_secs_f64() / iterations as f64 * 1e6);
    }
    per_image.sort_by(f64::total_cmp);
    per_image[ROUNDS / 2]
}

fn pillow(path: &Path, width: u32, height: u32, mode: &str, iterations: usize) -> Option<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer/pillow_preprocess.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(path)
        .args([width.to_string(), height.to_string(), mode.to_string(), iterations.to_string(), ROUNDS.to_string()])
        .env("OMP_NUM_THREADS", "1")
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    println!("| image → tensor | onnx-serving µs/image | Pillow µs/image | speed-up |");
    println!("|---|---:|---:|---:|");
    for (label, data, dims, mode, iterations) in [
        ("640×480 JPEG → 224×224×3 f32", photo(), [-1i64, 224, 224, 3], "RGB", 100),
        ("28×28 PNG → 28×28×1 f32", digit(), [-1, 28, 28, 1], "L", 2000),
    ] {
        let path = dir.path().join("input");
        std::fs::write(&path, &data).expect("write");
        let rust = ours(&data, dims, iterations);
        let (width, height) = (dims[2] as u32, dims[1] as u32);
        match pillow(&path, width, height, mode, iterations) {
            Some(python) => println!("| {label} | {rust:.1} | {python:.1} | {:.1}× |", python / rust),
            None => println!("| {label} | {rust:.1} | (pip install -r benches/peer/requirements.txt) | |"),
        }
    }
    println!();
    println!("Medians of {ROUNDS} rounds, one core each, in the same run (target: at least 3x Pillow).");

    // Where the JPEG's time goes, step by step, for both sides.
    let data = photo();
    let path = dir.path().join("photo.jpg");
    std::fs::write(&path, &data).expect("write");
    let decode = median_us(100, || {
        std::hint::black_box(image::load_from_memory(&data).expect("decode").into_rgb8());
    });
    let rgb = image::load_from_memory(&data).expect("decode").into_rgb8().into_raw();
    let resize = median_us(100, || {
        use fast_image_resize::{images::Image, PixelType, Resizer};
        let source = Image::from_vec_u8(640, 480, rgb.clone(), PixelType::U8x3).expect("source");
        let mut target = Image::new(224, 224, PixelType::U8x3);
        Resizer::new().resize(&source, &mut target, None).expect("resize");
        std::hint::black_box(target);
    });
    let total = ours(&data, [-1, 224, 224, 3], 100);
    println!();
    println!("| 640×480 JPEG step | onnx-serving µs | Pillow µs |");
    println!("|---|---:|---:|");
    let peer = |step: &str| {
        pillow(&path, 224, 224, step, 100).map_or_else(|| "(Pillow missing)".to_string(), |v| format!("{v:.1}"))
    };
    println!("| decode to RGB | {decode:.1} | {} |", peer("decode"));
    println!("| resize to 224×224 (Lanczos3) | {resize:.1} | {} |", peer("resize"));
    println!("| whole pipeline (also scaling to f32) | {total:.1} | {} |", peer("RGB"));
}

/// Median microseconds of one call of `f` over `ROUNDS` rounds of `iterations`.
fn median_us(iterations: usize, mut f: impl FnMut()) -> f64 {
    let mut per_call = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..iterations {
            f();
        }
        per_call.push(started.elapsed().as_secs_f64() / iterations as f64 * 1e6);
    }
    per_call.sort_by(f64::total_cmp);
    per_call[ROUNDS / 2]
}

//! Benchmarks the REST JSON tensor codec against a serde_json `Value` baseline, 1M floats.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use onnx_serving::codec::json::{parse_predict_request, write_predict_response, JsonFormat};
use onnx_serving::core::signature::{SignatureDef, SignatureMap, TensorInfo, DEFAULT_SIGNATURE};
use onnx_serving::core::tensor::{DType, Tensor};

const ELEMENTS: usize = 1_000_000;

/// A deterministic xorshift64* generator, so every run measures the same data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Returns a value in [-100, 100).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 200.0 - 100.0
    }
}

/// `{"instances": [...]}` with 1M floats printed with 6 to 9 significant digits.
fn request_body() -> Vec<u8> {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut body = String::with_capacity(ELEMENTS * 12);
    body.push_str("{\"instances\": [");
    for i in 0..ELEMENTS {
        if i > 0 {
            body.push_str(", ");
        }
        let value = rng.next_f64();
        let decimals = 4 + (rng.next_u64() % 4) as usize;
        body.push_str(&format!("{value:.decimals$}"));
    }
    body.push_str("]}");
    body.into_bytes()
}

fn signatures() -> SignatureMap {
    let info = TensorInfo { name: "x:0".to_owned(), dtype: DType::Float, shape: Some(vec![-1]), map_keys: None };
    let signature = SignatureDef {
        method_name: "tensorflow/serving/predict".to_owned(),
        inputs: BTreeMap::from([("x".to_owned(), info)]),
        outputs: BTreeMap::new(),
        example_spec: None,
        lenient_shapes: false,
    };
    BTreeMap::from([(DEFAULT_SIGNATURE.to_owned(), signature)])
}

fn serde_decode(body: &[u8]) -> Vec<f32> {
    let value: serde_json::Value = serde_json::from_slice(body).expect("valid JSON");
    value["instances"].as_array().expect("instances array").iter().map(|v| v.as_f64().expect("number") as f32).collect()
}

fn serde_encode(values: &[f32]) -> Vec<u8> {
    let array = values.iter().map(|&v| serde_json::Value::from(v)).collect();
    let mut object = serde_json::Map::new();
    object.insert("predictions".to_owned(), serde_json::Value::Array(array));
    serde_json::to_vec(&serde_json::Value::Object(object)).expect("serializable")
}

fn bench_decode(c: &mut Criterion) {
    let body = request_body();
    let signatures = signatures();
    let ours = parse_predict_request(&body, &signatures).expect("decodes");
    let theirs = serde_decode(&body);
    let tensor = &ours.inputs["x"];
    assert_eq!(tensor.values::<f32>().expect("floats").as_ref(), theirs.as_slice());

    let mut group = c.benchmark_group("decode_1m_floats");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5)).throughput(Throughput::Elements(ELEMENTS as u64));
    group.bench_function("onnx_serving", |b| {
        b.iter(|| parse_predict_request(black_box(&body), &signatures).expect("decodes"))
    });
    group.bench_function("serde_json_value", |b| b.iter(|| serde_decode(black_box(&body))));
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut rng = Rng(0xF00D_5EED_0000_0002);
    let values: Vec<f32> = (0..ELEMENTS).map(|_| (rng.next_f64() / 100.0) as f32).collect();
    let outputs = vec![("y".to_owned(), Tensor::from_vec(vec![ELEMENTS], values.clone()))];

    let mut group = c.benchmark_group("encode_1m_floats");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5)).throughput(Throughput::Elements(ELEMENTS as u64));
    group.bench_function("onnx_serving", |b| {
        b.iter(|| write_predict_response(JsonFormat::Row, black_box(&outputs), &Default::default()).expect("encodes"))
    });
    group.bench_function("serde_json_value", |b| b.iter(|| serde_encode(black_box(&values))));
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);

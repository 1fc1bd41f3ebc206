//! TLS on both transports with certificates made for the test: REST checked with
//! `curl --cacert`, gRPC (mutual TLS from TF Serving's SSLConfig) with Python's grpcio.

mod common;

use std::path::Path;
use std::process::Command;

use common::{repo_path, ServerProcess};
use onnx_serving::proto::tensorflow::serving::{GetModelStatusRequest, GetModelStatusResponse, ModelSpec};
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn make_pki() -> Pki {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "onnx-serving test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names.clone()).expect("params");
        // NOTE: a subject equal to the issuer's would make the leaf look self-signed.
        params.distinguished_name.push(DnType::CommonName, names[0].clone());
        let cert = params.signed_by(&key, &issuer).expect("cert");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["client.test".into()]);
    Pki { ca: ca_cert.pem(), server_cert, server_key, client_cert, client_key }
}

fn text_format_string(pem: &str) -> String {
    format!("\"{}\"", pem.replace('\n', "\\n"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

#[test]
fn rest_and_grpc_serve_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki();
    let ca = write(dir.path(), "ca.pem", &pki.ca);
    let server_cert = write(dir.path(), "server.pem", &pki.server_cert);
    let server_key = write(dir.path(), "server.key", &pki.server_key);
    let client_cert = write(dir.path(), "client.pem", &pki.client_cert);
    let client_key = write(dir.path(), "client.key", &pki.client_key);
    let ssl_config = write(
        dir.path(),
        "ssl.config",
        &format!(
            "server_key: {}\nserver_cert: {}\ncustom_ca: {}\nclient_verify: true\n",
            text_format_string(&pki.server_key),
            text_format_string(&pki.server_cert),
            text_format_string(&pki.ca)
        ),
    );
    let server = ServerProcess::start(&[
        "--model_name=half_plus_two",
        &format!("--model_base_path={}", repo_path("models/half_plus_two").display()),
        &format!("--ssl_config_file={ssl_config}"),
        &format!("--rest_ssl_cert_file={server_cert}"),
        &format!("--rest_ssl_key_file={server_key}"),
    ]);

    let rest_port = server.rest_address.port();
    let curl = Command::new("curl")
        .args(["-sS", "--cacert", &ca, &format!("https://localhost:{rest_port}/v1/models/half_plus_two")])
        .output()
        .expect("curl");
    assert!(curl.status.success(), "curl: {}", String::from_utf8_lossy(&curl.stderr));
    let status: serde_json::Value = serde_json::from_slice(&curl.stdout).expect("status JSON");
    assert_eq!(status["model_version_status"][0]["state"], "AVAILABLE");
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "10", &format!("http://127.0.0.1:{rest_port}/v1/models/half_plus_two")])
        .output()
        .expect("curl");
    assert!(!plain.status.success(), "plain HTTP is not served on the TLS port");

    let grpc_port = server.grpc_address.expect("gRPC").port();
    let request =
        GetModelStatusRequest { model_spec: Some(ModelSpec { name: "half_plus_two".into(), ..Default::default() }) };
    let probe = |cert: &str, key: &str| {
        Command::new("python3")
            .arg(repo_path("tests/python/grpc_tls_probe.py"))
            .args([
                &format!("localhost:{grpc_port}"),
                &ca,
                cert,
                key,
                "/tensorflow.serving.ModelService/GetModelStatus",
                &hex(&request.encode_to_vec()),
            ])
            .output()
            .expect("python3 with grpcio (pip install -r tests/python/requirements.txt)")
    };
    let answered = probe(&client_cert, &client_key);
    assert!(answered.status.success(), "grpcio over mutual TLS: {}", String::from_utf8_lossy(&answered.stderr));
    let bytes = unhex(String::from_utf8_lossy(&answered.stdout).trim());
    let response = GetModelStatusResponse::decode(bytes.as_slice()).expect("GetModelStatusResponse");
    assert_eq!(response.model_version_status[0].state, 30, "AVAILABLE");
    let refused = probe("-", "-");
    assert!(!refused.status.success(), "client_verify refuses a client without a certificate");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

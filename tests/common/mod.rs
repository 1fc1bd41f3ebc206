//! Shared helpers of the integration tests: servers on 127.0.0.1:0 and model directories.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use onnx_serving::core::{ManagerOptions, VersionPolicy};
use onnx_serving::runtime::SessionOptions;
use onnx_serving::server::{start, ModelConfig, RunningServer, ServerConfig};

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Starts the server in-process with one model per `(name, base_path)`.
pub async fn start_server(models: &[(&str, PathBuf)]) -> RunningServer {
    start(test_config(models)).await.expect("server starts")
}

/// The config of `start_server`: REST and gRPC on 127.0.0.1:0, fast polling, no retries.
pub fn test_config(models: &[(&str, PathBuf)]) -> ServerConfig {
    let models = models
        .iter()
        .map(|(name, base_path)| ModelConfig {
            name: name.to_string(),
            base_path: base_path.clone(),
            platform: "onnx".into(),
            policy: VersionPolicy::Latest(1),
            labels: Default::default(),
        })
        .collect();
    let mut config = ServerConfig::for_models(models);
    config.rest_api_address = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.grpc_address = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.file_system_poll_wait = Some(Duration::from_millis(100));
    config.manager = ManagerOptions {
        max_num_load_retries: 0,
        load_retry_interval: Duration::from_millis(10),
        ..Default::default()
    };
    config.session = SessionOptions { intra_op_threads: 1, ..SessionOptions::default() };
    config
}

pub fn base_url(server: &RunningServer) -> String {
    format!("http://{}", server.rest_address.expect("REST is on"))
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The real binary, killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub rest_address: SocketAddr,
    pub grpc_address: Option<SocketAddr>,
    /// The log lines (stderr) so far, when started with `start_logged`.
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Returns true (and says why) when a part a test needs is missing, so that the test skips;
/// with `ONNX_SERVING_REQUIRE_ALL_TESTS=1` (set by `.ci/run`) a missing part fails instead.
pub fn skip_unless(what: &str, present: bool) -> bool {
    if !present {
        assert!(
            std::env::var("ONNX_SERVING_REQUIRE_ALL_TESTS").as_deref() != Ok("1"),
            "{what} is missing, and ONNX_SERVING_REQUIRE_ALL_TESTS=1"
        );
        eprintln!("skipped: {what} is missing");
    }
    !present
}

/// `onnx-serving serve` with `args`, `envs`, ephemeral ports and plain-text logs.
fn serve_command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_onnx-serving"));
    command
        .arg("serve")
        .args(args)
        .arg("--rest_api_address=127.0.0.1:0")
        .arg("--grpc_address=127.0.0.1:0")
        .envs(envs.iter().copied())
        .env("NO_COLOR", "1");
    command
}

/// Runs `onnx-serving serve` with `args` and `envs` until it exits (for startup failures).
/// Returns the exit code and stdout + stderr.
pub fn run_to_exit(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = serve_command(args, envs).output().expect("run onnx-serving");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

impl ServerProcess {
    /// Starts `onnx-serving serve` with `args` plus an ephemeral REST address, and waits
    /// for the line that announces the bound address.
    pub fn start(args: &[&str]) -> Self {
        Self::spawn(args, &[], false)
    }

    /// Like `start`, with extra environment variables, keeping the log lines in `logs`.
    pub fn start_logged(args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::spawn(args, envs, true)
    }

    /// Returns the log lines that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        self.logs.lock().expect("logs").iter().filter(|l| l.contains(needle)).cloned().collect()
    }

    /// Returns the first log line that contains `needle`, once the log reader has seen it
    /// (stderr is read on its own thread), or panics after 10 s.
    pub async fn wait_for_log_line(&self, needle: &str) -> String {
        self.wait_for_log_line_count(needle, 1).await
    }

    /// Returns the `count`-th log line that contains `needle`, once the log reader has seen
    /// it, or panics after 10 s.
    pub async fn wait_for_log_line_count(&self, needle: &str, count: usize) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.log_lines_with(needle).into_iter().nth(count.saturating_sub(1)) {
                return line;
            }
            assert!(tokio::time::Instant::now() < deadline, "fewer than {count} log lines contain {needle:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn spawn(args: &[&str], envs: &[(&str, &str)], keep_logs: bool) -> Self {
        let mut child = serve_command(args, envs)
            .stdout(Stdio::piped())
            .stderr(if keep_logs { Stdio::piped() } else { Stdio::inherit() })
            .spawn()
            .expect("spawn onnx-serving");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let logs = std::sync::Arc::clone(&logs);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    logs.lock().expect("logs").push(line);
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut grpc_address = None;
        let rest_address = loop {
            let Some(Ok(line)) = lines.next() else {
                let status = child.wait().expect("wait");
                panic!("onnx-serving exited before opening its port: {status}");
            };
            if let Some(rest) = line.strip_prefix("Running gRPC ModelServer at ") {
                grpc_address = rest.trim_end_matches(" ...").trim().parse().ok();
            }
            if let Some(rest) = line.strip_prefix("Exporting HTTP/REST API at:") {
                let address = rest.trim_end_matches(" ...").trim();
                break address.parse().expect("address");
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServerProcess { child, rest_address, grpc_address, logs }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.rest_address, path)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls the status endpoint until `predicate` holds for the version states, or panics.
pub async fn wait_for_status(
    client: &reqwest::Client,
    url: &str,
    what: &str,
    predicate: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = serde_json::Value::Null;
    while tokio::time::Instant::now() < deadline {
        if let Ok(response) = client.get(url).send().await {
            if let Ok(value) = response.json::<serde_json::Value>().await {
                if predicate(&value) {
                    return value;
                }
                last = value;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}; last status: {last}");
}

/// Returns the state of `version` in a status document.
pub fn state_of(status: &serde_json::Value, version: i64) -> Option<String> {
    status["model_version_status"].as_array()?.iter().find_map(|entry| {
        (entry["version"].as_str() == Some(version.to_string().as_str()))
            .then(|| entry["state"].as_str().unwrap_or_default().to_string())
    })
}

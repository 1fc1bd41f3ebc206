//! Memory across the lifecycle: the server's RSS with both MNIST versions loaded, and after
//! 100 unload/reload cycles of version 2 driven through the file system.
//! `cargo bench --bench lifecycle_memory`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

async fn state_of(client: &reqwest::Client, url: &str, version: &str) -> Option<String> {
    let status: serde_json::Value = client.get(url).send().await.ok()?.json().await.ok()?;
    status["model_version_status"]
        .as_array()?
        .iter()
        .find(|e| e["version"] == version)
        .and_then(|e| e["state"].as_str().map(str::to_string))
}

async fn wait_state(client: &reqwest::Client, url: &str, version: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while state_of(client, url, version).await.as_deref() != Some(state) {
        assert!(Instant::now() < deadline, "version {version} never became {state}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let cycles: usize = std::env::var("MEMORY_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let base = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_path("models/mnist_onnx/1"), &base.path().join("1"));
    copy_dir(&repo_path("models/mnist_onnx/2"), &base.path().join("2"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_onnx-serving"))
        .args([
            "serve",
            "--model_name=mnist",
            "--model_version_policy=all",
            "--rest_api_address=127.0.0.1:0",
            "--port=0",
        ])
        .arg(format!("--model_base_path={}", base.path().display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let address = loop {
        let line = lines.next().expect("address line").expect("line");
        if let Some(rest) = line.strip_prefix("Exporting HTTP/REST API at:") {
            break rest.trim_end_matches(" ...").trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let pid = child.id();
    let url = format!("http://{address}/v1/models/mnist");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let client = reqwest::Client::new();

    runtime.block_on(async {
        wait_state(&client, &url, "1", "AVAILABLE").await;
        wait_state(&client, &url, "2", "AVAILABLE").await;
    });
    let loaded = rss_kib(pid);
    let mut after_ten = loaded;
    let started = Instant::now();
    runtime.block_on(async {
        for cycle in 1..=cycles {
            std::fs::remove_dir_all(base.path().join("2")).expect("rm");
            wait_state(&client, &url, "2", "END").await;
            copy_dir(&repo_path("models/mnist_onnx/2"), &base.path().join("2"));
            wait_state(&client, &url, "2", "AVAILABLE").await;
            if cycle == 10 {
                after_ten = rss_kib(pid);
            }
        }
    });
    let after = rss_kib(pid);
    println!("| measurement | RSS MiB |");
    println!("|---|---:|");
    println!("| both MNIST versions loaded | {:.1} |", loaded as f64 / 1024.0);
    println!("| after 10 unload/reload cycles | {:.1} |", after_ten as f64 / 1024.0);
    println!("| after {cycles} unload/reload cycles | {:.1} |", after as f64 / 1024.0);
    println!();
    println!(
        "growth over {cycles} cycles: {:.2} MiB (target < 10 MB); after the first 10: {:.2} MiB; {:.1} s",
        (after as f64 - loaded as f64) / 1024.0,
        (after as f64 - after_ten as f64) / 1024.0,
        started.elapsed().as_secs_f64()
    );
    let _ = child.kill();
    let _ = child.wait();
}

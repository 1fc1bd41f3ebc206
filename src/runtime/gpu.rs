//! What the runtime knows of a GPU: its name, compute capability and memory, read from
//! `nvidia-smi` at run time (the engine cache key and `--per_process_gpu_memory_fraction`).

use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;

/// One device as `nvidia-smi` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    pub name: String,
    /// e.g. `8.6`.
    pub compute_capability: String,
    pub total_memory_bytes: u64,
}

/// Parses one line of `nvidia-smi --query-gpu=name,compute_cap,memory.total
/// --format=csv,noheader,nounits` (memory in MiB).
pub fn parse_query_line(line: &str) -> Option<GpuInfo> {
    let mut fields = line.split(',').map(str::trim);
    let name = fields.next().filter(|s| !s.is_empty())?.to_string();
    let compute_capability = fields.next().filter(|s| !s.is_empty())?.to_string();
    let mebibytes: u64 = fields.next()?.parse().ok()?;
    Some(GpuInfo { name, compute_capability, total_memory_bytes: mebibytes.checked_mul(1 << 20)? })
}

/// Returns device `device_id`, or `None` when there is no such device or no driver. The
/// answer is kept per device for the life of the process.
pub fn query(device_id: i32) -> Option<GpuInfo> {
    static CACHE: Mutex<Option<HashMap<i32, Option<GpuInfo>>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    cache
        .get_or_insert_with(HashMap::new)
        .entry(device_id)
        .or_insert_with(|| {
            let output = Command::new("nvidia-smi")
                .args([
                    "--query-gpu=name,compute_cap,memory.total",
                    "--format=csv,noheader,nounits",
                    &format!("--id={device_id}"),
                ])
                .output()
                .ok()
                .filter(|output| output.status.success())?;
            String::from_utf8_lossy(&output.stdout).lines().find_map(parse_query_line)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nvidia_smi_lines() {
        let info = parse_query_line("NVIDIA A10G, 8.6, 23028").expect("parse");
        assert_eq!(info.name, "NVIDIA A10G");
        assert_eq!(info.compute_capability, "8.6");
        assert_eq!(info.total_memory_bytes, 23028 << 20);
        assert!(parse_query_line("No devices were found").is_none());
        assert!(parse_query_line("A, 8.6, [N/A]").is_none());
    }

    #[test]
    fn a_machine_without_a_gpu_has_none() {
        // NOTE: holds on any machine without an NVIDIA driver (ours); with one, device
        // 9999 still does not exist.
        assert!(query(9999).is_none());
    }
}

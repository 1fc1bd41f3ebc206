//! The TensorRT engine cache under `--tensorrt_cache_dir`: one directory per key built from
//! the model's content, the engine-shaping options, the ONNX Runtime build and the GPU, so
//! that any copy or reload of a model reuses its engines. A manifest of checksums detects a
//! stale or corrupt entry, which is wiped and rebuilt, never fatal.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::gpu::GpuInfo;

/// Written last, once the engines are built: `<size> <crc32c> <file>` per line.
const MANIFEST: &str = "MANIFEST";

/// Returns the SHA-256 of a file's content, in hex. Digests are remembered by path, size and
/// modification time, so the sessions of one version hash their model once.
pub fn file_digest(path: &Path) -> std::io::Result<String> {
    type Seen = std::collections::HashMap<(PathBuf, u64, Option<std::time::SystemTime>), String>;
    static SEEN: std::sync::Mutex<Option<Seen>> = std::sync::Mutex::new(None);
    let metadata = std::fs::metadata(path)?;
    let key = (path.to_path_buf(), metadata.len(), metadata.modified().ok());
    if let Some(digest) = SEEN.lock().ok().and_then(|seen| seen.as_ref().and_then(|s| s.get(&key).cloned())) {
        return Ok(digest);
    }
    let digest = hash_file(path)?;
    if let Ok(mut seen) = SEEN.lock() {
        seen.get_or_insert_with(Seen::new).insert(key, digest.clone());
    }
    Ok(digest)
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What an engine depends on. Two loads with equal parts share one cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineKey {
    /// SHA-256 of the model file (and of its external data file, when there is one).
    pub model_digest: String,
    /// The provider options that change the engine, as `key=value` lines, sorted.
    pub engine_options: Vec<String>,
    /// ONNX Runtime's version and build.
    pub runtime: String,
    /// GPU name and compute capability, or `unknown-gpu` when none can be read.
    pub gpu: String,
}

impl EngineKey {
    pub fn new(model_digest: String, mut engine_options: Vec<String>, runtime: String, gpu: Option<&GpuInfo>) -> Self {
        engine_options.sort();
        let gpu = gpu.map_or_else(|| "unknown-gpu".to_string(), |g| format!("{} sm{}", g.name, g.compute_capability));
        Self { model_digest, engine_options, runtime, gpu }
    }

    /// The directory name: a digest of every part, 32 hex characters.
    pub fn directory_name(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [&self.model_digest, &self.runtime, &self.gpu] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        for option in &self.engine_options {
            hasher.update(option.as_bytes());
            hasher.update([0]);
        }
        hex(&hasher.finalize()[..16])
    }
}

/// One entry of the cache, ready for ONNX Runtime to read or fill.
#[derive(Debug)]
pub struct EngineCacheEntry {
    pub dir: PathBuf,
    /// True when the entry held engines that passed the manifest check.
    pub reused: bool,
}

fn file_crc(path: &Path) -> std::io::Result<u32> {
    let mut file = std::fs::File::open(path)?;
    let mut crc = 0u32;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(crc);
        }
        crc = crc32c::crc32c_append(crc, &buffer[..read]);
    }
}

/// Checks an entry against its manifest; `Err` says what is wrong.
fn verify(dir: &Path) -> Result<(), String> {
    let manifest = std::fs::read_to_string(dir.join(MANIFEST))
        .map_err(|_| "no manifest: an earlier build did not finish".to_string())?;
    let mut listed = 0;
    for line in manifest.lines().filter(|l| !l.is_empty()) {
        let mut parts = line.splitn(3, ' ');
        let (Some(size), Some(crc), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("malformed manifest line `{line}`"));
        };
        if name.contains('/') || name.contains("..") {
            return Err(format!("manifest names `{name}` outside the entry"));
        }
        let path = dir.join(name);
        let metadata = std::fs::metadata(&path).map_err(|e| format!("{name}: {e}"))?;
        if size.parse::<u64>().ok() != Some(metadata.len()) {
            return Err(format!("{name} is {} bytes, the manifest says {size}", metadata.len()));
        }
        let actual = file_crc(&path).map_err(|e| format!("{name}: {e}"))?;
        if crc.parse::<u32>().ok() != Some(actual) {
            return Err(format!("{name} fails its checksum"));
        }
        listed += 1;
    }
    if listed == 0 {
        return Err("the manifest lists no engine".into());
    }
    Ok(())
}

/// Opens (or creates) the entry for `key` under `cache_dir`. A stale or corrupt entry is
/// wiped so that ONNX Runtime builds it again.
pub fn open(cache_dir: &Path, key: &EngineKey, log_context: &str) -> std::io::Result<EngineCacheEntry> {
    let dir = cache_dir.join(key.directory_name());
    if dir.is_dir() {
        match verify(&dir) {
            Ok(()) => {
                info!(model = log_context, dir = %dir.display(), "reusing cached TensorRT engines");
                return Ok(EngineCacheEntry { dir, reused: true });
            }
            Err(reason) => {
                warn!(model = log_context, dir = %dir.display(), reason = %reason,
                    "TensorRT engine cache entry is stale or corrupt; rebuilding it");
                std::fs::remove_dir_all(&dir)?;
            }
        }
    }
    std::fs::create_dir_all(&dir)?;
    // NOTE: the key material sits beside the engines, for whoever inspects the cache.
    let description = format!(
        "model_sha256 {}\nruntime {}\ngpu {}\n{}\n",
        key.model_digest,
        key.runtime,
        key.gpu,
        key.engine_options.join("\n")
    );
    std::fs::write(dir.join("KEY"), description)?;
    Ok(EngineCacheEntry { dir, reused: false })
}

/// Records the files of a freshly built entry in its manifest, so that later loads trust it.
pub fn seal(entry: &EngineCacheEntry) -> std::io::Result<()> {
    if entry.reused {
        return Ok(());
    }
    let mut lines = String::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&entry.dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != MANIFEST && n != "KEY"))
        .collect();
    names.sort();
    for path in names {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let size = std::fs::metadata(&path)?.len();
        lines.push_str(&format!("{size} {} {name}\n", file_crc(&path)?));
    }
    if lines.is_empty() {
        // NOTE: no engine was written (TensorRT took no part of the graph); an empty entry is
        // left unsealed and tried again next time.
        return Ok(());
    }
    let temporary = entry.dir.join(format!("{MANIFEST}.tmp"));
    std::fs::write(&temporary, lines)?;
    std::fs::rename(temporary, entry.dir.join(MANIFEST))
}

/// Wipes an entry whose engines ONNX Runtime refused.
pub fn discard(entry: &EngineCacheEntry) {
    if let Err(error) = std::fs::remove_dir_all(&entry.dir) {
        warn!(dir = %entry.dir.display(), error = %error, "cannot remove the TensorRT engine cache entry");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(digest: &str, options: &[&str], gpu: Option<&GpuInfo>) -> EngineKey {
        EngineKey::new(digest.into(), options.iter().map(|s| s.to_string()).collect(), "ort 1.31.1".into(), gpu)
    }

    #[test]
    fn the_key_follows_content_options_runtime_and_gpu() {
        let a10 = GpuInfo { name: "NVIDIA A10G".into(), compute_capability: "8.6".into(), total_memory_bytes: 1 };
        let t4 = GpuInfo { name: "Tesla T4".into(), compute_capability: "7.5".into(), total_memory_bytes: 1 };
        let base = key("abc", &["trt_fp16_enable=1", "trt_max_workspace_size=1"], Some(&a10));
        assert_eq!(base.directory_name().len(), 32);
        // The option order does not matter; everything else does.
        assert_eq!(
            base.directory_name(),
            key("abc", &["trt_max_workspace_size=1", "trt_fp16_enable=1"], Some(&a10)).directory_name()
        );
        assert_ne!(base.directory_name(), key("abd", &["trt_fp16_enable=1"], Some(&a10)).directory_name());
        assert_ne!(base.directory_name(), key("abc", &["trt_fp16_enable=0"], Some(&a10)).directory_name());
        assert_ne!(base.directory_name(), key("abc", &["trt_fp16_enable=1"], Some(&t4)).directory_name());
        let mut other_runtime = base.clone();
        other_runtime.runtime = "ort 1.32.0".into();
        assert_ne!(base.directory_name(), other_runtime.directory_name());
    }

    #[test]
    fn copies_of_a_model_share_a_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.onnx"), b"same bytes").expect("write");
        std::fs::write(dir.path().join("b.onnx"), b"same bytes").expect("write");
        std::fs::write(dir.path().join("c.onnx"), b"other bytes").expect("write");
        let digest = |name: &str| file_digest(&dir.path().join(name)).expect("digest");
        assert_eq!(digest("a.onnx"), digest("b.onnx"));
        assert_ne!(digest("a.onnx"), digest("c.onnx"));
    }

    #[test]
    fn entries_are_sealed_reused_and_rebuilt_when_corrupt() {
        let cache = tempfile::tempdir().expect("tempdir");
        let key = key("abc", &["trt_fp16_enable=1"], None);
        let entry = open(cache.path(), &key, "m:1").expect("open");
        assert!(!entry.reused);
        // Interrupted build: engine written, no manifest. The next open starts again.
        std::fs::write(entry.dir.join("model_fp16.engine"), b"engine bytes").expect("engine");
        let entry = open(cache.path(), &key, "m:1").expect("reopen");
        assert!(!entry.reused && !entry.dir.join("model_fp16.engine").exists());
        std::fs::write(entry.dir.join("model_fp16.engine"), b"engine bytes").expect("engine");
        std::fs::write(entry.dir.join("timing.cache"), b"timings").expect("timing");
        seal(&entry).expect("seal");
        let again = open(cache.path(), &key, "m:2").expect("reuse");
        assert!(again.reused);
        assert_eq!(std::fs::read(again.dir.join("model_fp16.engine")).expect("kept"), b"engine bytes");
        // A flipped byte of the same length fails the checksum; a truncated file its size.
        std::fs::write(again.dir.join("model_fp16.engine"), b"engine bytez").expect("corrupt");
        assert!(verify(&again.dir).expect_err("crc").contains("checksum"));
        std::fs::write(again.dir.join("model_fp16.engine"), b"engine").expect("truncate");
        assert!(verify(&again.dir).expect_err("size").contains("bytes"));
        let rebuilt = open(cache.path(), &key, "m:3").expect("rebuild");
        assert!(!rebuilt.reused && !rebuilt.dir.join("model_fp16.engine").exists());
        assert!(std::fs::read_to_string(rebuilt.dir.join("KEY")).expect("key").contains("trt_fp16_enable=1"));
    }

    #[test]
    fn a_manifest_cannot_point_outside_its_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(MANIFEST), "4 0 ../../etc/passwd\n").expect("write");
        assert!(verify(dir.path()).expect_err("escape").contains("outside"));
    }
}

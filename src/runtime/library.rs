//! Finding the ONNX Runtime shared library: flag, `ORT_DYLIB_PATH`, beside the executable,
//! the `onnxruntime` Python package, then the system library paths.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a library path came from, for the startup log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibrarySource {
    Flag,
    Environment,
    BesideExecutable,
    PythonPackage,
    SystemPath,
}

/// Returns the library to load and where it was found, or the places searched.
pub fn find_library(flag: Option<&Path>) -> Result<(PathBuf, LibrarySource), Vec<String>> {
    // NOTE: an explicit choice is final: a wrong path is an error, not a reason to pick
    // some other library the user did not ask for.
    if let Some(path) = flag {
        if path.is_file() {
            return Ok((path.to_path_buf(), LibrarySource::Flag));
        }
        return Err(vec![format!("--ort_library_path={} (not a file)", path.display())]);
    }
    if let Some(value) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        if path.is_file() {
            return Ok((path, LibrarySource::Environment));
        }
        return Err(vec![format!("ORT_DYLIB_PATH={} (not a file)", path.display())]);
    }
    let mut searched = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)) {
        if let Some(found) = library_in_dir(&dir) {
            return Ok((found, LibrarySource::BesideExecutable));
        }
        searched.push(format!("{} (beside the executable)", dir.display()));
    }
    for dir in python_package_dirs() {
        if let Some(found) = library_in_dir(&dir.join("capi")) {
            return Ok((found, LibrarySource::PythonPackage));
        }
        searched.push(format!("{} (python package)", dir.join("capi").display()));
    }
    let mut system_dirs: Vec<PathBuf> =
        std::env::var_os("LD_LIBRARY_PATH").map(|value| std::env::split_paths(&value).collect()).unwrap_or_default();
    system_dirs.extend(
        ["/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib"]
            .iter()
            .map(PathBuf::from),
    );
    for dir in system_dirs {
        if let Some(found) = library_in_dir(&dir) {
            return Ok((found, LibrarySource::SystemPath));
        }
    }
    searched.push("the system library paths".to_string());
    Err(searched)
}

/// Returns `libonnxruntime.so` (or a versioned `libonnxruntime.so.1.x.y`) inside `dir`.
fn library_in_dir(dir: &Path) -> Option<PathBuf> {
    let plain = dir.join(format!("{}onnxruntime{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
    if plain.is_file() {
        return Some(plain);
    }
    let prefix = format!("{}onnxruntime{}.", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let mut versioned: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with(&prefix) && n[prefix.len()..].chars().all(|c| c.is_ascii_digit() || c == '.')
                })
        })
        .collect();
    versioned.sort();
    versioned.pop()
}

/// Asks the Python interpreters on PATH where their `onnxruntime` package lives.
fn python_package_dirs() -> Vec<PathBuf> {
    let probe = "import importlib.util as u; s = u.find_spec('onnxruntime'); print(s.submodule_search_locations[0] if s else '')";
    let mut dirs = Vec::new();
    for python in ["python3", "python"] {
        let Ok(output) = Command::new(python).args(["-c", probe]).output() else { continue };
        if !output.status.success() {
            continue;
        }
        let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if !text.is_empty() && !dirs.contains(&PathBuf::from(&text)) {
            dirs.push(PathBuf::from(text));
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_versioned_library_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(library_in_dir(dir.path()).is_none());
        std::fs::write(dir.path().join("libonnxruntime.so.1.31.1"), b"").expect("write");
        std::fs::write(dir.path().join("libonnxruntime_providers_shared.so"), b"").expect("write");
        let found = library_in_dir(dir.path()).expect("found");
        assert!(found.ends_with("libonnxruntime.so.1.31.1"));
    }

    #[test]
    fn a_missing_flag_path_is_final() {
        let searched = find_library(Some(Path::new("/nonexistent/libonnxruntime.so"))).expect_err("missing");
        assert_eq!(searched, vec!["--ort_library_path=/nonexistent/libonnxruntime.so (not a file)".to_string()]);
    }
}

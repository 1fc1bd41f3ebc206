//! The rules of dependency between the crate's modules (ARCHITECTURE.md), checked on the
//! source: a module that imports a layer it may not fails this test instead of waiting for
//! review. Test-only files (`tests.rs`, `*_tests.rs`, `tests/` folders) are exempt.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may import (itself always allowed).
const RULES: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("proto", &[]),
    ("config", &["core", "proto"]),
    ("codec", &["core", "proto"]),
    ("runtime", &["core"]),
    ("batching", &["core", "proto"]),
    ("sources", &["core"]),
    ("inference", &["core", "codec"]),
    ("platforms", &["core", "proto", "codec", "runtime"]),
    ("auth", &["core"]),
    ("observability", &["core", "batching", "runtime"]),
    ("warmup", &["core", "proto", "codec", "inference"]),
    ("http", &["core", "codec", "inference", "auth", "observability"]),
    ("grpc", &["core", "proto", "codec", "inference", "auth", "observability"]),
];

/// Crate-root items any module may use (test helpers).
const ANYWHERE: &[&str] = &["tfs_testdata"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "tests") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name != "tests.rs" && !name.ends_with("_tests.rs") {
                out.push(path);
            }
        }
    }
}

/// Returns the top-level modules a file names through `crate::`, including inside
/// `use crate::{a::.., b::..}` groups.
fn crate_imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (index, _) in text.match_indices("crate::") {
        let rest = &text[index + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = group.split('}').next().unwrap_or_default();
            for item in body.split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                found.insert(name);
            }
        } else {
            found.insert(rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect());
        }
    }
    found.retain(|name| !name.is_empty());
    found
}

#[test]
fn modules_import_only_the_layers_they_may() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rules: BTreeMap<&str, &[&str]> = RULES.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative.components().next().and_then(|c| c.as_os_str().to_str()).unwrap_or_default();
        let module = top.trim_end_matches(".rs");
        let Some(allowed) = rules.get(module) else { continue };
        let text = std::fs::read_to_string(file).expect("read");
        for import in crate_imports(&text) {
            if import != module && !allowed.contains(&import.as_str()) && !ANYWHERE.contains(&import.as_str()) {
                broken.push(format!("{} imports crate::{import}", relative.display()));
            }
        }
    }
    assert!(broken.is_empty(), "imports that break ARCHITECTURE.md's rules:\n{}", broken.join("\n"));
    assert!(files.len() > 50, "the scan found only {} files", files.len());
}

#[test]
fn the_import_scanner_sees_grouped_imports() {
    let found = crate_imports("use crate::{core::Tensor, codec::json};\nlet x = crate::runtime::X;");
    assert_eq!(found, ["codec", "core", "runtime"].into_iter().map(String::from).collect());
}

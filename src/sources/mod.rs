//! Sources of aspired versions: where model versions are discovered.

pub mod file_system;

pub use file_system::{FileSystemSource, FileSystemSourceHandle, WatchedModel};

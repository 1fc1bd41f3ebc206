//! Protobuf text format (TF Serving's config files), parsed with `prost-reflect` against the
//! descriptors of our own `proto/`, with protobuf's `<line>:<col>: <message>` errors.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage};

use crate::proto::FILE_DESCRIPTOR_SET;

/// Why a text-format config file was not taken.
#[derive(Debug, thiserror::Error)]
pub enum TextFormatError {
    /// The file cannot be read (TF Serving: NOT_FOUND).
    #[error("cannot read {}{}: {source}", flag.map(|f| format!("{f} ")).unwrap_or_default(), path.display())]
    Read {
        /// The flag that named the file, when one did.
        flag: Option<&'static str>,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text does not parse: `Error parsing text-format <message>: <line>:<col>: <why>`, as
    /// TF Serving prints it, with the message's known fields after an unknown one.
    #[error("Error parsing text-format {message}: {line}:{column}: {reason}{hint}")]
    Syntax { message: String, line: usize, column: usize, reason: String, hint: String },
    /// It parses, but a value is not allowed.
    #[error("{0}")]
    Invalid(String),
    /// One of the above, in the file named.
    #[error("{source} (in {})", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<TextFormatError>,
    },
    /// The built-in descriptors cannot parse it (a bug, not a user error).
    #[error("{0}")]
    Internal(String),
}

impl TextFormatError {
    /// Names the file the error is in.
    pub fn in_file(self, path: &Path) -> Self {
        TextFormatError::InFile { path: path.to_path_buf(), source: Box::new(self) }
    }

    /// True when the text itself did not parse (wherever the file is).
    pub fn is_syntax(&self) -> bool {
        match self {
            TextFormatError::Syntax { .. } => true,
            TextFormatError::InFile { source, .. } => source.is_syntax(),
            _ => false,
        }
    }
}

/// Reads a file for `flag` (when a flag names it).
pub fn read_text_file(path: &Path, flag: Option<&'static str>) -> Result<String, TextFormatError> {
    std::fs::read_to_string(path).map_err(|source| TextFormatError::Read { flag, path: path.to_path_buf(), source })
}

fn pool() -> Result<&'static DescriptorPool, TextFormatError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(FILE_DESCRIPTOR_SET).map_err(|e| format!("the built-in descriptors are invalid: {e}"))
    })
    .as_ref()
    .map_err(|e| TextFormatError::Internal(e.clone()))
}

/// Returns the 1-based line and column of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

/// For "field 'x' not found for message 'M'", returns "; known fields of M: a, b, c".
fn known_fields_hint(error: &str) -> Option<String> {
    let (_, rest) = error.split_once("not found for message '")?;
    let message_name = rest.split('\'').next()?;
    let descriptor = pool().ok()?.get_message_by_name(message_name)?;
    let names: Vec<String> = descriptor.fields().map(|f| f.name().to_string()).collect();
    Some(format!("; known fields of {message_name}: {}", names.join(", ")))
}

/// Parses `text` as the message `full_name` (e.g. `tensorflow.serving.BatchingParameters`).
/// The error reads `Error parsing text-format <full_name>: <line>:<col>: <message>`, as TF
/// Serving prints it.
pub fn parse_text_proto<T: prost::Message + Default>(text: &str, full_name: &str) -> Result<T, TextFormatError> {
    let descriptor = pool()?.get_message_by_name(full_name).ok_or_else(|| {
        TextFormatError::Internal(format!("message type {full_name} is not among the built-in protos"))
    })?;
    let message = DynamicMessage::parse_text_format(descriptor, text).map_err(|error| {
        // NOTE: only errors at the end of the input come without a span.
        let offset = miette::Diagnostic::labels(&error)
            .and_then(|mut labels| labels.next())
            .map_or(text.len(), |label| label.offset());
        let (line, column) = line_and_column(text, offset);
        let reason = error.to_string();
        let hint = known_fields_hint(&reason).unwrap_or_default();
        TextFormatError::Syntax { message: full_name.to_string(), line, column, reason, hint }
    })?;
    message.transcode_to::<T>().map_err(|e| TextFormatError::Internal(format!("cannot convert {full_name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tensorflow::serving::BatchingParameters;

    #[test]
    fn parses_tf_serving_batching_config() {
        let text = "max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n\
                    max_enqueued_batches { value: 1000000 }\nnum_batch_threads { value: 8 }\n";
        let params: BatchingParameters =
            parse_text_proto(text, "tensorflow.serving.BatchingParameters").expect("parse");
        assert_eq!(params.max_batch_size, Some(128));
        assert_eq!(params.batch_timeout_micros, Some(0), "set to 0 differs from unset");
        assert_eq!(params.max_enqueued_batches, Some(1_000_000));
        assert_eq!(params.num_batch_threads, Some(8));
        assert_eq!(params.max_execution_batch_size, None);
    }

    #[test]
    fn errors_name_line_and_column() {
        let text = "max_batch_size { value: 128 }\nbogus_field { value: 1 }\n";
        let error = parse_text_proto::<BatchingParameters>(text, "tensorflow.serving.BatchingParameters")
            .expect_err("unknown field")
            .to_string();
        assert!(error.starts_with("Error parsing text-format tensorflow.serving.BatchingParameters: 2:1: "), "{error}");
        assert!(error.contains("bogus_field"), "{error}");
        assert_eq!(line_and_column("ab\ncd", 4), (2, 2));
    }
}

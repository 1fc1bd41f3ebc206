//! Protobuf text format (TF Serving's config files), parsed with `prost-reflect` against the
//! descriptors of our own `proto/`, with protobuf's `<line>:<col>: <message>` errors.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage};

use crate::proto::FILE_DESCRIPTOR_SET;

fn pool() -> Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(FILE_DESCRIPTOR_SET).map_err(|e| format!("the built-in descriptors are invalid: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
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
pub fn parse_text_proto<T: prost::Message + Default>(text: &str, full_name: &str) -> Result<T, String> {
    let descriptor = pool()?
        .get_message_by_name(full_name)
        .ok_or_else(|| format!("message type {full_name} is not among the built-in protos"))?;
    let message = DynamicMessage::parse_text_format(descriptor, text).map_err(|error| {
        // NOTE: only errors at the end of the input come without a span.
        let offset = miette::Diagnostic::labels(&error)
            .and_then(|mut labels| labels.next())
            .map_or(text.len(), |label| label.offset());
        let (line, column) = line_and_column(text, offset);
        let mut message = format!("Error parsing text-format {full_name}: {line}:{column}: {error}");
        if let Some(known) = known_fields_hint(&error.to_string()) {
            message.push_str(&known);
        }
        message
    })?;
    message.transcode_to::<T>().map_err(|e| format!("cannot convert {full_name}: {e}"))
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
            .expect_err("unknown field");
        assert!(error.starts_with("Error parsing text-format tensorflow.serving.BatchingParameters: 2:1: "), "{error}");
        assert!(error.contains("bogus_field"), "{error}");
        assert_eq!(line_and_column("ab\ncd", 4), (2, 2));
    }
}

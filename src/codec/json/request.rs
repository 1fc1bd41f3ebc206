//! The request envelope predict, classify and regress bodies share: TF's `ParseJson` (the body
//! to a tape whose root is an object) and `FillSignature` (the optional `signature_name`).

use super::lexer;
use super::tape::{Tag, Tape};
use crate::core::error::{ServingError, ServingResult};

/// The tape index of the document root.
pub(crate) const ROOT: usize = 0;

pub(crate) fn invalid(message: impl Into<String>) -> ServingError {
    ServingError::invalid_argument(message)
}

/// TF's `FormatError`: the value's debug text followed by the message.
pub(crate) fn format_error(tape: &Tape<'_>, idx: usize, message: &str) -> ServingError {
    invalid(format!("JSON Value: {} {message}", tape.debug_string(idx)))
}

/// Parses a request body, as TF's `ParseJson`: rapidjson's message and offset for malformed
/// JSON, and an error unless the root is an object.
pub(crate) fn parse_request(body: &[u8]) -> ServingResult<Tape<'_>> {
    if body.is_empty() {
        return Err(invalid("JSON Parse error: The document is empty"));
    }
    let tape =
        lexer::parse(body).map_err(|e| invalid(format!("JSON Parse error: {} at offset: {}", e.message, e.offset)))?;
    if tape.tag(ROOT) != Tag::Object {
        return Err(format_error(&tape, ROOT, "Is not object"));
    }
    Ok(tape)
}

/// Returns the request's `signature_name` (empty when absent), as TF's `FillSignature`.
pub(crate) fn requested_signature(tape: &Tape<'_>) -> ServingResult<String> {
    match tape.find_member(ROOT, b"signature_name") {
        None => Ok(String::new()),
        Some(idx) if tape.tag(idx) == Tag::Str => Ok(String::from_utf8_lossy(tape.str_bytes(idx)).into_owned()),
        Some(_) => {
            Err(format_error(tape, ROOT, "not formatted correctly. 'signature_name' key must be a string value."))
        }
    }
}

//! Parse errors of the tape parser: rapidjson's English messages and the offset they point at.

pub(crate) const DOCUMENT_EMPTY: &str = "The document is empty.";
pub(crate) const INVALID_VALUE: &str = "Invalid value.";
pub(crate) const MISSING_NAME: &str = "Missing a name for object member.";
pub(crate) const MISSING_COLON: &str = "Missing a colon after a name of object member.";
pub(crate) const MISSING_COMMA_OR_CURLY: &str = "Missing a comma or '}' after an object member.";
pub(crate) const MISSING_COMMA_OR_SQUARE: &str = "Missing a comma or ']' after an array element.";
pub(crate) const INVALID_HEX: &str = "Incorrect hex digit after \\u escape in string.";
pub(crate) const INVALID_SURROGATE: &str = "The surrogate pair in string is invalid.";
pub(crate) const INVALID_ESCAPE: &str = "Invalid escape character in string.";
pub(crate) const MISSING_QUOTE: &str = "Missing a closing quotation mark in string.";
pub(crate) const INVALID_ENCODING: &str = "Invalid encoding in string.";
pub(crate) const NUMBER_TOO_BIG: &str = "Number too big to be stored in double.";
pub(crate) const MISS_FRACTION: &str = "Miss fraction part in number.";
pub(crate) const MISS_EXPONENT: &str = "Miss exponent in number.";

/// A parse error: rapidjson's English message and its byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub message: &'static str,
    pub offset: usize,
}

impl SyntaxError {
    #[inline]
    pub(crate) fn at(message: &'static str, offset: usize) -> Self {
        SyntaxError { message, offset }
    }
}

//! Unit tests for the JSON codec, split by concept.

pub(crate) mod decode_tests;
mod encode_tests;
mod float_tests;
mod lexer_tests;

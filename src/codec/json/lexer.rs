//! The validating JSON parser: bytes to a tape, with rapidjson's iterative-parser errors.
//!
//! It follows rapidjson with `kParseIterativeFlag | kParseNanAndInfFlag |
//! kParseStopWhenDoneFlag`: NaN/Inf tokens are numbers, parsing stops after the root value
//! (trailing bytes are ignored), a NUL byte reads as the end of input, string bytes are not
//! UTF-8 validated, and nesting depth is bounded only by memory (an explicit stack).

use super::error::{
    SyntaxError, DOCUMENT_EMPTY, INVALID_ENCODING, INVALID_ESCAPE, INVALID_HEX, INVALID_SURROGATE, INVALID_VALUE,
    MISSING_COLON, MISSING_COMMA_OR_CURLY, MISSING_COMMA_OR_SQUARE, MISSING_NAME, MISSING_QUOTE,
};
use super::number::{scan_number, scan_short_number};
use super::tape::{Node, Tag, Tape};

/// An open array or object.
struct Frame {
    node: usize,
    count: u32,
    is_object: bool,
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
    arena: Vec<u8>,
    stack: Vec<Frame>,
}

/// Parses one JSON value from the start of `src` into a tape.
pub(crate) fn parse(src: &[u8]) -> Result<Tape<'_>, SyntaxError> {
    let mut parser =
        Parser { src, pos: 0, nodes: Vec::with_capacity(src.len() / 8 + 4), arena: Vec::new(), stack: Vec::new() };
    parser.run()?;
    Ok(Tape { src, nodes: parser.nodes, arena: parser.arena })
}

impl Parser<'_> {
    fn peek(&self) -> u8 {
        self.src.get(self.pos).copied().unwrap_or(0)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\n' | b'\r' | b'\t') {
            self.pos += 1;
        }
    }

    fn run(&mut self) -> Result<(), SyntaxError> {
        self.skip_ws();
        if matches!(self.peek(), 0 | b']' | b'}' | b',' | b':') {
            return Err(SyntaxError::at(DOCUMENT_EMPTY, self.pos));
        }
        'value: loop {
            // A value starts at `pos` (whitespace already skipped).
            match self.peek() {
                b'{' => {
                    self.pos += 1;
                    self.open(Tag::Object);
                    self.skip_ws();
                    match self.peek() {
                        b'"' => {
                            self.member_key()?;
                            continue 'value;
                        }
                        b'}' => {
                            self.pos += 1;
                            self.close();
                        }
                        _ => return Err(SyntaxError::at(MISSING_NAME, self.pos)),
                    }
                }
                b'[' => {
                    self.pos += 1;
                    self.open(Tag::Array);
                    self.skip_ws();
                    if self.peek() != b']' {
                        continue 'value;
                    }
                    self.pos += 1;
                    self.close();
                }
                b'"' => self.string()?,
                b't' => self.literal(b"true", Tag::True)?,
                b'f' => self.literal(b"false", Tag::False)?,
                b'n' => self.literal(b"null", Tag::Null)?,
                0 | b']' | b'}' | b',' | b':' => return Err(SyntaxError::at(INVALID_VALUE, self.pos)),
                _ => {
                    let (node, end) = scan_number(self.src, self.pos)?;
                    self.nodes.push(node);
                    self.pos = end;
                }
            }
            // A value is complete: count it in its container and look for what follows.
            loop {
                let Some(top) = self.stack.last_mut() else {
                    return Ok(());
                };
                top.count = top.count.wrapping_add(1);
                let is_object = top.is_object;
                self.skip_ws();
                match (self.peek(), is_object) {
                    (b',', false) => {
                        self.pos += 1;
                        self.skip_ws();
                        if let Some((node, end)) = scan_short_number(self.src, self.pos) {
                            // Hot path: a short number element skips the value dispatch.
                            self.nodes.push(node);
                            self.pos = end;
                            continue;
                        }
                        continue 'value;
                    }
                    (b',', true) => {
                        self.pos += 1;
                        self.skip_ws();
                        if self.peek() != b'"' {
                            return Err(SyntaxError::at(MISSING_NAME, self.pos));
                        }
                        self.member_key()?;
                        continue 'value;
                    }
                    (b']', false) | (b'}', true) => {
                        self.pos += 1;
                        self.close();
                    }
                    (_, false) => return Err(SyntaxError::at(MISSING_COMMA_OR_SQUARE, self.pos)),
                    (_, true) => return Err(SyntaxError::at(MISSING_COMMA_OR_CURLY, self.pos)),
                }
            }
        }
    }

    fn open(&mut self, tag: Tag) {
        self.stack.push(Frame { node: self.nodes.len(), count: 0, is_object: tag == Tag::Object });
        self.nodes.push(Node { tag, len: 0, val: 0 });
    }

    fn close(&mut self) {
        if let Some(frame) = self.stack.pop() {
            let end = self.nodes.len() as u64;
            let node = &mut self.nodes[frame.node];
            node.len = frame.count;
            node.val = end;
        }
    }

    /// Parses a member name, the colon after it and the whitespace before its value.
    fn member_key(&mut self) -> Result<(), SyntaxError> {
        self.string()?;
        self.skip_ws();
        if self.peek() != b':' {
            return Err(SyntaxError::at(MISSING_COLON, self.pos));
        }
        self.pos += 1;
        self.skip_ws();
        Ok(())
    }

    fn literal(&mut self, word: &[u8], tag: Tag) -> Result<(), SyntaxError> {
        self.pos += 1;
        for &c in &word[1..] {
            if self.peek() != c {
                return Err(SyntaxError::at(INVALID_VALUE, self.pos));
            }
            self.pos += 1;
        }
        self.nodes.push(Node { tag, len: 0, val: 0 });
        Ok(())
    }

    /// Parses the string at `pos` (on its opening quote) and pushes its node.
    fn string(&mut self) -> Result<(), SyntaxError> {
        self.pos += 1;
        let start = self.pos;
        let src = self.src;
        let plain_len =
            src[start..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(src.len() - start);
        self.pos = start + plain_len;
        if self.peek() == b'"' {
            self.pos += 1;
            self.push_string(start, plain_len, false);
            return Ok(());
        }
        // Escapes or an error: unescape into the arena.
        let arena_start = self.arena.len();
        self.arena.extend_from_slice(&src[start..self.pos]);
        loop {
            let c = self.peek();
            match c {
                b'"' => {
                    self.pos += 1;
                    let len = self.arena.len() - arena_start;
                    self.push_string(arena_start, len, true);
                    return Ok(());
                }
                b'\\' => self.escape()?,
                0 => return Err(SyntaxError::at(MISSING_QUOTE, self.pos)),
                0x01..=0x1F => return Err(SyntaxError::at(INVALID_ENCODING, self.pos)),
                _ => {
                    self.arena.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn push_string(&mut self, offset: usize, len: usize, in_arena: bool) {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        let val = (offset as u64) << 1 | u64::from(in_arena);
        self.nodes.push(Node { tag: Tag::Str, len, val });
    }

    /// Unescapes one escape sequence at `pos` (on its backslash) into the arena.
    fn escape(&mut self) -> Result<(), SyntaxError> {
        let escape_offset = self.pos;
        self.pos += 1;
        let simple = match self.peek() {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0C),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => return Err(SyntaxError::at(INVALID_ESCAPE, escape_offset)),
        };
        self.pos += 1;
        if let Some(byte) = simple {
            self.arena.push(byte);
            return Ok(());
        }
        let mut code = self.hex4(escape_offset)?;
        if (0xD800..=0xDBFF).contains(&code) {
            if self.peek() != b'\\' {
                return Err(SyntaxError::at(INVALID_SURROGATE, escape_offset));
            }
            self.pos += 1;
            if self.peek() != b'u' {
                return Err(SyntaxError::at(INVALID_SURROGATE, escape_offset));
            }
            self.pos += 1;
            let low = self.hex4(escape_offset)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return Err(SyntaxError::at(INVALID_SURROGATE, escape_offset));
            }
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        } else if (0xDC00..=0xDFFF).contains(&code) {
            return Err(SyntaxError::at(INVALID_SURROGATE, escape_offset));
        }
        // Every value here is a Unicode scalar: surrogates were combined or rejected above.
        let ch = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
        let mut utf8 = [0u8; 4];
        self.arena.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
        Ok(())
    }

    /// Reads four hex digits; errors point at the escape's backslash, as in rapidjson.
    fn hex4(&mut self, escape_offset: usize) -> Result<u32, SyntaxError> {
        let mut code = 0u32;
        for _ in 0..4 {
            let digit = match self.peek() {
                c @ b'0'..=b'9' => c - b'0',
                c @ b'a'..=b'f' => c - b'a' + 10,
                c @ b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(SyntaxError::at(INVALID_HEX, escape_offset)),
            };
            code = code << 4 | u32::from(digit);
            self.pos += 1;
        }
        Ok(code)
    }
}

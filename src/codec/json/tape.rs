//! The parsed JSON document as a flat pre-order tape, and the debug text TF puts in error messages.

use super::dtoa::write_rapidjson_double;
use super::float::{write_f32, write_f64};
use super::text::{write_i64, write_json_string, write_u64};

/// Longest debug rendering of a JSON value kept in an error message, in bytes.
const MAX_DEBUG_BYTES: usize = 256;

/// Doubles rapidjson's `IsFloat()` accepts: those within this magnitude.
const RAPIDJSON_FLOAT_LIMIT: f64 = 3.4028234e38;

/// The kind of one node, with rapidjson's number split: integers keep their token type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    Null,
    False,
    True,
    /// An integer token that fits `i64`; `val` holds the `i64` bits.
    Int,
    /// An integer token above `i64::MAX` that fits `u64`; `val` holds it.
    Uint,
    /// A token with a fraction or exponent, NaN/Infinity, or an integer too big for 64 bits.
    Double,
    /// A string; `val` is `offset << 1 | in_arena`, `len` the byte length.
    Str,
    /// An array; `len` is the element count, `val` the index just past its subtree.
    Array,
    /// An object; `len` is the member count, `val` the index just past its subtree.
    /// Members follow as key (`Str`) then value subtree.
    Object,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    pub tag: Tag,
    pub len: u32,
    pub val: u64,
}

/// A parsed document: nodes in pre-order, with unescaped strings in `arena` or borrowed from `src`.
pub(crate) struct Tape<'a> {
    pub src: &'a [u8],
    pub nodes: Vec<Node>,
    pub arena: Vec<u8>,
}

impl<'a> Tape<'a> {
    pub fn node(&self, idx: usize) -> Node {
        self.nodes[idx]
    }

    pub fn tag(&self, idx: usize) -> Tag {
        self.nodes[idx].tag
    }

    /// Returns the index of the node after the subtree rooted at `idx`.
    pub fn next(&self, idx: usize) -> usize {
        let node = self.nodes[idx];
        match node.tag {
            Tag::Array | Tag::Object => node.val as usize,
            _ => idx + 1,
        }
    }

    /// Returns the bytes of a `Str` node.
    pub fn str_bytes(&self, idx: usize) -> &[u8] {
        let node = self.nodes[idx];
        let start = (node.val >> 1) as usize;
        let end = start + node.len as usize;
        if node.val & 1 == 1 {
            &self.arena[start..end]
        } else {
            &self.src[start..end]
        }
    }

    /// Returns the indices of an array's elements.
    pub fn elements(&self, idx: usize) -> Siblings<'_, 'a> {
        Siblings { tape: self, next: idx + 1, left: self.nodes[idx].len }
    }

    /// Returns `(key, value)` index pairs of an object's members, in document order.
    pub fn members(&self, idx: usize) -> Members<'_, 'a> {
        Members { tape: self, next: idx + 1, left: self.nodes[idx].len }
    }

    /// Returns the value of the first member named `key`, as rapidjson's `FindMember`.
    pub fn find_member(&self, obj: usize, key: &[u8]) -> Option<usize> {
        self.members(obj).find(|&(k, _)| self.str_bytes(k) == key).map(|(_, v)| v)
    }

    /// Returns true for `{"b64": "<string>"}`: an object whose single member is a string `b64`.
    pub fn is_b64_object(&self, idx: usize) -> bool {
        if self.tag(idx) != Tag::Object || self.nodes[idx].len != 1 {
            return false;
        }
        let key = idx + 1;
        self.str_bytes(key) == b"b64" && self.tag(key + 1) == Tag::Str
    }

    /// Returns rapidjson's type name for a node, as `JsonTypeString` prints it.
    pub fn type_name(&self, idx: usize) -> &'static str {
        match self.tag(idx) {
            Tag::Null => "Null",
            Tag::False => "False",
            Tag::True => "True",
            Tag::Object => "Object",
            Tag::Array => "Array",
            Tag::Str => "String",
            Tag::Int | Tag::Uint | Tag::Double => "Number",
        }
    }

    pub fn as_f64(&self, idx: usize) -> f64 {
        let node = self.nodes[idx];
        match node.tag {
            Tag::Int => node.val as i64 as f64,
            Tag::Uint => node.val as f64,
            _ => f64::from_bits(node.val),
        }
    }

    /// Renders a value as TF's `JsonValueToString` does, cut to 256 bytes.
    ///
    /// A top-level double goes through `WriteDecimal` (as float when rapidjson's `IsFloat()`
    /// holds). Nested values use rapidjson's pretty writer with single-line arrays; as there,
    /// a nested NaN or infinity stops the output.
    pub fn debug_string(&self, idx: usize) -> String {
        let mut out = Vec::new();
        if self.tag(idx) == Tag::Double {
            let v = self.as_f64(idx);
            if (-RAPIDJSON_FLOAT_LIMIT..=RAPIDJSON_FLOAT_LIMIT).contains(&v) {
                write_f32(v as f32, &mut out);
            } else {
                write_f64(v, &mut out);
            }
        } else {
            self.write_pretty(idx, &mut out);
        }
        out.truncate(MAX_DEBUG_BYTES);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Writes the subtree iteratively, stopping once the output exceeds the debug limit.
    fn write_pretty(&self, root: usize, out: &mut Vec<u8>) {
        // Each frame: (is_object, members or elements left, written so far).
        let mut stack: Vec<(bool, u32, u32)> = Vec::new();
        let mut idx = root;
        loop {
            if out.len() > MAX_DEBUG_BYTES {
                return;
            }
            // Prefix for the value at `idx`, following rapidjson's PrettyWriter.
            if let Some(&(is_object, _, written)) = stack.last() {
                if is_object {
                    out.extend_from_slice(if written == 0 { b"\n" } else { b",\n" });
                    indent(out, stack.len());
                    write_json_string(out, self.str_bytes(idx));
                    out.extend_from_slice(b": ");
                    idx += 1;
                } else if written > 0 {
                    out.extend_from_slice(b", ");
                }
            }
            let node = self.nodes[idx];
            let mut opened = false;
            match node.tag {
                Tag::Null => out.extend_from_slice(b"null"),
                Tag::False => out.extend_from_slice(b"false"),
                Tag::True => out.extend_from_slice(b"true"),
                Tag::Int => write_i64(out, node.val as i64),
                Tag::Uint => write_u64(out, node.val),
                Tag::Double => {
                    let v = f64::from_bits(node.val);
                    if !v.is_finite() {
                        // NOTE: rapidjson's writer refuses NaN/Inf and aborts the whole walk.
                        return;
                    }
                    write_rapidjson_double(v, out);
                }
                Tag::Str => write_json_string(out, self.str_bytes(idx)),
                Tag::Array | Tag::Object => {
                    let is_object = node.tag == Tag::Object;
                    out.push(if is_object { b'{' } else { b'[' });
                    if node.len == 0 {
                        out.push(if is_object { b'}' } else { b']' });
                    } else {
                        stack.push((is_object, node.len, 0));
                        opened = true;
                    }
                }
            }
            idx += 1;
            if opened {
                continue;
            }
            // The value is complete: close every container it finished.
            loop {
                let Some(top) = stack.last_mut() else { return };
                top.2 += 1;
                if top.2 < top.1 {
                    break;
                }
                let is_object = top.0;
                stack.pop();
                if is_object {
                    out.push(b'\n');
                    indent(out, stack.len());
                    out.push(b'}');
                } else {
                    out.push(b']');
                }
            }
        }
    }
}

fn indent(out: &mut Vec<u8>, depth: usize) {
    out.resize(out.len() + depth * 4, b' ');
}

/// Iterates over consecutive sibling subtrees.
pub(crate) struct Siblings<'t, 'a> {
    tape: &'t Tape<'a>,
    next: usize,
    left: u32,
}

impl Iterator for Siblings<'_, '_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let idx = self.next;
        self.next = self.tape.next(idx);
        Some(idx)
    }
}

pub(crate) struct Members<'t, 'a> {
    tape: &'t Tape<'a>,
    next: usize,
    left: u32,
}

impl Iterator for Members<'_, '_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = self.next;
        self.next = self.tape.next(key + 1);
        Some((key, key + 1))
    }
}

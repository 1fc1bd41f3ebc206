//! Reads the declared shapes of an ONNX graph's inputs and outputs straight from the file,
//! skipping weights, to tell "no shape" (any rank) from a scalar.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

const MODEL_GRAPH: u64 = 7;
const GRAPH_INPUT: u64 = 11;
const GRAPH_OUTPUT: u64 = 12;
const VALUE_INFO_NAME: u64 = 1;
const VALUE_INFO_TYPE: u64 = 2;
const TYPE_TENSOR: u64 = 1;
const TENSOR_SHAPE: u64 = 2;
/// Value infos are small; a larger one means the file is not what we think.
const MAX_VALUE_INFO_BYTES: u64 = 1 << 20;

struct Reader<R> {
    inner: R,
    position: u64,
}

impl<R: Read + Seek> Reader<R> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let mut byte = [0u8];
            self.inner.read_exact(&mut byte).ok()?;
            self.position += 1;
            value |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn skip(&mut self, wire_type: u64) -> Option<()> {
        let length = match wire_type {
            0 => return self.varint().map(|_| ()),
            1 => 8,
            2 => self.varint()?,
            5 => 4,
            _ => return None,
        };
        self.inner.seek_relative(i64::try_from(length).ok()?).ok()?;
        self.position += length;
        Some(())
    }
}

/// Iterates the fields of an in-memory message: (field number, wire type, payload).
fn fields(mut bytes: &[u8]) -> impl Iterator<Item = (u64, u64, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, rest) = read_varint(bytes)?;
        let wire_type = tag & 7;
        let (payload, rest) = match wire_type {
            0 => {
                let (_, after) = read_varint(rest)?;
                (&rest[..rest.len() - after.len()], after)
            }
            1 => (rest.get(..8)?, rest.get(8..)?),
            2 => {
                let (length, after) = read_varint(rest)?;
                let length = usize::try_from(length).ok()?;
                (after.get(..length)?, after.get(length..)?)
            }
            5 => (rest.get(..4)?, rest.get(4..)?),
            _ => return None,
        };
        bytes = rest;
        Some((tag >> 3, wire_type, payload))
    })
}

fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (index, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[index + 1..]));
        }
    }
    None
}

/// Returns (name, has a tensor shape) for one ValueInfoProto.
fn value_info(bytes: &[u8]) -> Option<(String, bool)> {
    let mut name = None;
    let mut has_shape = false;
    for (field, wire_type, payload) in fields(bytes) {
        match (field, wire_type) {
            (VALUE_INFO_NAME, 2) => name = Some(String::from_utf8_lossy(payload).into_owned()),
            (VALUE_INFO_TYPE, 2) => {
                for (type_field, type_wire, tensor) in fields(payload) {
                    if type_field == TYPE_TENSOR && type_wire == 2 {
                        has_shape = fields(tensor).any(|(f, w, _)| f == TENSOR_SHAPE && w == 2);
                    }
                }
            }
            _ => {}
        }
    }
    Some((name?, has_shape))
}

/// Returns the names of graph inputs and outputs declared without any shape. Returns an
/// empty set when the file cannot be read as a model; ONNX Runtime reports the real error.
pub fn names_without_shape(path: &Path) -> HashSet<String> {
    let Ok(file) = File::open(path) else { return HashSet::new() };
    let mut reader = Reader { inner: BufReader::new(file), position: 0 };
    scan_model(&mut reader).unwrap_or_default()
}

fn scan_model<R: Read + Seek>(reader: &mut Reader<R>) -> Option<HashSet<String>> {
    let mut unshaped = HashSet::new();
    while let Some(tag) = reader.varint() {
        let (field, wire_type) = (tag >> 3, tag & 7);
        if field != MODEL_GRAPH || wire_type != 2 {
            reader.skip(wire_type)?;
            continue;
        }
        let graph_end = reader.varint()? + reader.position;
        while reader.position < graph_end {
            let tag = reader.varint()?;
            let (field, wire_type) = (tag >> 3, tag & 7);
            if (field == GRAPH_INPUT || field == GRAPH_OUTPUT) && wire_type == 2 {
                let length = reader.varint()?;
                if length > MAX_VALUE_INFO_BYTES {
                    return None;
                }
                let mut buffer = vec![0u8; usize::try_from(length).ok()?];
                reader.inner.read_exact(&mut buffer).ok()?;
                reader.position += length;
                if let Some((name, false)) = value_info(&buffer) {
                    unshaped.insert(name);
                }
            } else {
                reader.skip(wire_type)?;
            }
        }
        return Some(unshaped);
    }
    Some(unshaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(field: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((field << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn finds_inputs_without_shape() {
        // tensor_type { elem_type: 1 } with and without a shape.
        let unshaped_type = ld(TYPE_TENSOR, &[0x08, 0x01]);
        let mut shaped_tensor = vec![0x08, 0x01];
        shaped_tensor.extend(ld(TENSOR_SHAPE, &[]));
        let shaped_type = ld(TYPE_TENSOR, &shaped_tensor);
        let mut x = ld(VALUE_INFO_NAME, b"x");
        x.extend(ld(VALUE_INFO_TYPE, &unshaped_type));
        let mut y = ld(VALUE_INFO_NAME, b"y");
        y.extend(ld(VALUE_INFO_TYPE, &shaped_type));
        let mut graph = ld(1, b"node-bytes");
        graph.extend(ld(GRAPH_INPUT, &x));
        graph.extend(ld(GRAPH_OUTPUT, &y));
        let mut model = vec![0x08, 0x08]; // ir_version: 8
        model.extend(ld(MODEL_GRAPH, &graph));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.onnx");
        std::fs::write(&path, &model).expect("write");
        let names = names_without_shape(&path);
        assert!(names.contains("x"));
        assert!(!names.contains("y"));
    }

    #[test]
    fn garbage_yields_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.onnx");
        std::fs::write(&path, [0xffu8; 64]).expect("write");
        assert!(names_without_shape(&path).is_empty());
    }
}

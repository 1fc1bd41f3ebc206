//! Reads what ONNX Runtime does not report straight from a model file, skipping weights: the
//! graph inputs and outputs declared without a shape (any rank, not a scalar), and the class
//! keys of each score-map output (a classifier's ZipMap).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

const MODEL_GRAPH: u64 = 7;
const GRAPH_NODE: u64 = 1;
const GRAPH_INPUT: u64 = 11;
const GRAPH_OUTPUT: u64 = 12;
const VALUE_INFO_NAME: u64 = 1;
const VALUE_INFO_TYPE: u64 = 2;
const TYPE_TENSOR: u64 = 1;
const TENSOR_SHAPE: u64 = 2;
const NODE_INPUT: u64 = 1;
const NODE_OUTPUT: u64 = 2;
const NODE_OP_TYPE: u64 = 4;
const NODE_ATTRIBUTE: u64 = 5;
const ATTRIBUTE_NAME: u64 = 1;
const ATTRIBUTE_INTS: u64 = 8;
const ATTRIBUTE_STRINGS: u64 = 9;
/// Value infos and the nodes looked at are small; a larger one means the file is not what we
/// think, or the node is a constant holding weights.
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
        self.position = self.position.checked_add(length)?;
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

/// What a model file declares that ONNX Runtime's session does not tell.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GraphFacts {
    /// Graph inputs and outputs declared without any shape.
    pub unshaped: HashSet<String>,
    /// Per graph output made by a ZipMap (directly or through Identity nodes): its class keys,
    /// ascending (numeric keys by value, string keys by bytes), the order ONNX Runtime's maps
    /// iterate in.
    pub score_maps: HashMap<String, Vec<String>>,
}

/// Reads the facts of the model at `path`, or `None` when the file cannot be read as a model
/// (ONNX Runtime reports the real error if it cannot load it either).
pub fn read_graph_facts(path: &Path) -> Option<GraphFacts> {
    let file = File::open(path).ok()?;
    let mut reader = Reader { inner: BufReader::new(file), position: 0 };
    scan_model(&mut reader)
}

/// Reads the facts of a model held in memory, as `read_graph_facts`.
pub fn graph_facts_from_bytes(bytes: &[u8]) -> Option<GraphFacts> {
    let mut reader = Reader { inner: std::io::Cursor::new(bytes), position: 0 };
    scan_model(&mut reader)
}

/// The nodes that matter for score maps: ZipMaps (output -> keys) and Identities (output -> input).
#[derive(Default)]
struct Nodes {
    zipmaps: HashMap<String, Vec<String>>,
    identities: HashMap<String, String>,
}

impl Nodes {
    fn read(&mut self, bytes: &[u8]) {
        let (mut op_type, mut inputs, mut outputs, mut keys) = (None, Vec::new(), Vec::new(), None);
        for (field, wire_type, payload) in fields(bytes) {
            match (field, wire_type) {
                (NODE_INPUT, 2) => inputs.push(String::from_utf8_lossy(payload).into_owned()),
                (NODE_OUTPUT, 2) => outputs.push(String::from_utf8_lossy(payload).into_owned()),
                (NODE_OP_TYPE, 2) => op_type = Some(payload),
                (NODE_ATTRIBUTE, 2) => keys = class_labels(payload).or(keys),
                _ => {}
            }
        }
        match (op_type, inputs.as_slice(), outputs.as_slice()) {
            (Some(b"ZipMap"), _, [output]) => {
                if let Some(keys) = keys {
                    self.zipmaps.insert(output.clone(), keys);
                }
            }
            (Some(b"Identity"), [input], [output]) => {
                self.identities.insert(output.clone(), input.clone());
            }
            _ => {}
        }
    }

    /// Returns the keys of the ZipMap behind `output`, following Identity nodes.
    fn keys_of(&self, output: &str) -> Option<Vec<String>> {
        let mut name = output;
        for _ in 0..=self.identities.len() {
            if let Some(keys) = self.zipmaps.get(name) {
                return Some(keys.clone());
            }
            name = self.identities.get(name)?;
        }
        None
    }
}

/// Returns the class keys of a ZipMap attribute (`classlabels_int64s` or
/// `classlabels_strings`), sorted as ONNX Runtime's maps iterate.
fn class_labels(attribute: &[u8]) -> Option<Vec<String>> {
    let mut name = None;
    let mut numbers: Vec<i64> = Vec::new();
    let mut strings: Vec<String> = Vec::new();
    for (field, wire_type, payload) in fields(attribute) {
        match (field, wire_type) {
            (ATTRIBUTE_NAME, 2) => name = Some(payload),
            // Unpacked, one varint per field.
            (ATTRIBUTE_INTS, 0) => numbers.push(read_varint(payload)?.0 as i64),
            // Packed.
            (ATTRIBUTE_INTS, 2) => {
                let mut rest = payload;
                while !rest.is_empty() {
                    let (value, after) = read_varint(rest)?;
                    numbers.push(value as i64);
                    rest = after;
                }
            }
            (ATTRIBUTE_STRINGS, 2) => strings.push(String::from_utf8_lossy(payload).into_owned()),
            _ => {}
        }
    }
    match name? {
        b"classlabels_int64s" => {
            numbers.sort_unstable();
            numbers.dedup();
            Some(numbers.iter().map(i64::to_string).collect())
        }
        b"classlabels_strings" => {
            strings.sort_unstable();
            strings.dedup();
            Some(strings)
        }
        _ => None,
    }
}

fn scan_model<R: Read + Seek>(reader: &mut Reader<R>) -> Option<GraphFacts> {
    let mut facts = GraphFacts::default();
    while let Some(tag) = reader.varint() {
        let (field, wire_type) = (tag >> 3, tag & 7);
        if field != MODEL_GRAPH || wire_type != 2 {
            reader.skip(wire_type)?;
            continue;
        }
        // NOTE: lengths come from the file: any sum may overflow.
        let graph_end = reader.varint()?.checked_add(reader.position)?;
        let mut nodes = Nodes::default();
        let mut outputs = Vec::new();
        while reader.position < graph_end {
            let tag = reader.varint()?;
            let (field, wire_type) = (tag >> 3, tag & 7);
            let wanted = matches!(field, GRAPH_NODE | GRAPH_INPUT | GRAPH_OUTPUT) && wire_type == 2;
            if !wanted {
                reader.skip(wire_type)?;
                continue;
            }
            let length = reader.varint()?;
            if length > MAX_VALUE_INFO_BYTES {
                if field == GRAPH_NODE {
                    // A constant with weights: not a node that matters here.
                    reader.inner.seek_relative(i64::try_from(length).ok()?).ok()?;
                    reader.position = reader.position.checked_add(length)?;
                    continue;
                }
                return None;
            }
            let mut buffer = vec![0u8; usize::try_from(length).ok()?];
            reader.inner.read_exact(&mut buffer).ok()?;
            reader.position = reader.position.checked_add(length)?;
            if field == GRAPH_NODE {
                nodes.read(&buffer);
                continue;
            }
            if let Some((name, has_shape)) = value_info(&buffer) {
                if !has_shape {
                    facts.unshaped.insert(name.clone());
                }
                if field == GRAPH_OUTPUT {
                    outputs.push(name);
                }
            }
        }
        for output in outputs {
            if let Some(keys) = nodes.keys_of(&output) {
                facts.score_maps.insert(output, keys);
            }
        }
        return Some(facts);
    }
    // NOTE: no graph: not a model this reader understands.
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(field: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((field << 3) | 2) as u8];
        let mut length = payload.len();
        while length >= 0x80 {
            out.push((length as u8 & 0x7f) | 0x80);
            length >>= 7;
        }
        out.push(length as u8);
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
        let facts = read_graph_facts(&path).expect("a model");
        assert!(facts.unshaped.contains("x"));
        assert!(!facts.unshaped.contains("y"));
        assert!(facts.score_maps.is_empty());
    }

    fn node(op_type: &[u8], inputs: &[&[u8]], outputs: &[&[u8]], attributes: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for input in inputs {
            out.extend(ld(NODE_INPUT, input));
        }
        for output in outputs {
            out.extend(ld(NODE_OUTPUT, output));
        }
        out.extend(ld(NODE_OP_TYPE, op_type));
        for attribute in attributes {
            out.extend(ld(NODE_ATTRIBUTE, attribute));
        }
        out
    }

    fn output(name: &[u8]) -> Vec<u8> {
        ld(GRAPH_OUTPUT, &ld(VALUE_INFO_NAME, name))
    }

    #[test]
    fn finds_the_keys_of_zipmap_outputs_through_identities() {
        let mut ints = ld(ATTRIBUTE_NAME, b"classlabels_int64s");
        ints.extend(ld(ATTRIBUTE_INTS, &[10, 2, 0x7f])); // packed 10, 2, 127
        let mut strings = ld(ATTRIBUTE_NAME, b"classlabels_strings");
        for label in [b"setosa".as_slice(), b"iris", b"versicolor"] {
            strings.extend(ld(ATTRIBUTE_STRINGS, label));
        }
        let mut graph = Vec::new();
        graph.extend(ld(GRAPH_NODE, &node(b"ZipMap", &[b"p"], &[b"numbers"], &[ints])));
        graph.extend(ld(GRAPH_NODE, &node(b"ZipMap", &[b"q"], &[b"zipped"], &[strings])));
        graph.extend(ld(GRAPH_NODE, &node(b"Identity", &[b"zipped"], &[b"names"], &[])));
        graph.extend(ld(GRAPH_NODE, &node(b"Relu", &[b"x"], &[b"plain"], &[])));
        for name in [b"numbers".as_slice(), b"names", b"plain"] {
            graph.extend(output(name));
        }
        let mut model = vec![0x08, 0x08];
        model.extend(ld(MODEL_GRAPH, &graph));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.onnx");
        std::fs::write(&path, &model).expect("write");
        let facts = read_graph_facts(&path).expect("a model");
        assert_eq!(facts.score_maps["numbers"], vec!["2", "10", "127"]);
        assert_eq!(facts.score_maps["names"], vec!["iris", "setosa", "versicolor"]);
        assert!(!facts.score_maps.contains_key("plain"));
    }

    #[test]
    fn reads_a_scikit_learn_export() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/iris_zipmap/1/model.onnx");
        let facts = read_graph_facts(&path).expect("a model");
        assert_eq!(facts.score_maps.len(), 1, "{facts:?}");
        assert_eq!(facts.score_maps["output_probability"], vec!["0", "1", "2"]);
    }

    #[test]
    fn garbage_yields_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.onnx");
        std::fs::write(&path, [0xffu8; 64]).expect("write");
        assert_eq!(read_graph_facts(&path), None);
    }
}

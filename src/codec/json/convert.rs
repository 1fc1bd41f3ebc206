//! JSON leaf values to typed tensor buffers, as TF's `AddValueToTensor` (and base64 objects).

use bytes::Bytes;

use super::tape::{Node, Tag, Tape};
use crate::codec::base64::base64_unescape;
use crate::core::error::{ServingError, ServingResult};
use crate::core::tensor::{DType, Tensor};

/// The elements of one input tensor being decoded, typed by the signature dtype.
pub(crate) enum Values {
    Float(Vec<f32>),
    Double(Vec<f64>),
    Int32(Vec<i32>),
    Int16(Vec<i16>),
    Int8(Vec<i8>),
    UInt8(Vec<u8>),
    Int64(Vec<i64>),
    UInt32(Vec<u32>),
    UInt64(Vec<u64>),
    Bool(Vec<bool>),
    Str(Vec<Bytes>),
    /// A dtype JSON cannot be converted to (half, bfloat16, uint16, complex, ...).
    Unsupported(DType),
}

impl Values {
    pub fn new(dtype: DType) -> Self {
        match dtype {
            DType::Float => Values::Float(Vec::new()),
            DType::Double => Values::Double(Vec::new()),
            DType::Int32 => Values::Int32(Vec::new()),
            DType::Int16 => Values::Int16(Vec::new()),
            DType::Int8 => Values::Int8(Vec::new()),
            DType::UInt8 => Values::UInt8(Vec::new()),
            DType::Int64 => Values::Int64(Vec::new()),
            DType::UInt32 => Values::UInt32(Vec::new()),
            DType::UInt64 => Values::UInt64(Vec::new()),
            DType::Bool => Values::Bool(Vec::new()),
            DType::String => Values::Str(Vec::new()),
            other => Values::Unsupported(other),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Values::Float(_) => DType::Float,
            Values::Double(_) => DType::Double,
            Values::Int32(_) => DType::Int32,
            Values::Int16(_) => DType::Int16,
            Values::Int8(_) => DType::Int8,
            Values::UInt8(_) => DType::UInt8,
            Values::Int64(_) => DType::Int64,
            Values::UInt32(_) => DType::UInt32,
            Values::UInt64(_) => DType::UInt64,
            Values::Bool(_) => DType::Bool,
            Values::Str(_) => DType::String,
            Values::Unsupported(dtype) => *dtype,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Values::Float(v) => v.len(),
            Values::Double(v) => v.len(),
            Values::Int32(v) => v.len(),
            Values::Int16(v) => v.len(),
            Values::Int8(v) => v.len(),
            Values::UInt8(v) => v.len(),
            Values::Int64(v) => v.len(),
            Values::UInt32(v) => v.len(),
            Values::UInt64(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Str(v) => v.len(),
            Values::Unsupported(_) => 0,
        }
    }

    /// Reserves room for `additional` more elements.
    pub fn reserve(&mut self, additional: usize) {
        match self {
            Values::Float(v) => v.reserve(additional),
            Values::Double(v) => v.reserve(additional),
            Values::Int32(v) => v.reserve(additional),
            Values::Int16(v) => v.reserve(additional),
            Values::Int8(v) => v.reserve(additional),
            Values::UInt8(v) => v.reserve(additional),
            Values::Int64(v) => v.reserve(additional),
            Values::UInt32(v) => v.reserve(additional),
            Values::UInt64(v) => v.reserve(additional),
            Values::Bool(v) => v.reserve(additional),
            Values::Str(v) => v.reserve(additional),
            Values::Unsupported(_) => {}
        }
    }

    /// Appends the leading run of `nodes` that are numbers or bools this dtype accepts, and
    /// returns how many it took; the first node it cannot take is left to `push_leaf`.
    pub fn push_numbers(&mut self, nodes: &[Node]) -> usize {
        fn take<T>(out: &mut Vec<T>, nodes: &[Node], convert: impl Fn(&Node) -> Option<T>) -> usize {
            let before = out.len();
            out.extend(nodes.iter().map_while(convert));
            out.len() - before
        }
        let int = |n: &Node| (n.tag == Tag::Int).then_some(n.val as i64);
        let int32 = |n: &Node| int(n).and_then(|x| i32::try_from(x).ok());
        match self {
            Values::Float(v) => take(v, nodes, |n| number_node(n).map(|x| x as f32)),
            Values::Double(v) => take(v, nodes, number_node),
            Values::Int32(v) => take(v, nodes, int32),
            Values::Int16(v) => take(v, nodes, |n| int32(n).map(|x| x as i16)),
            Values::Int8(v) => take(v, nodes, |n| int32(n).map(|x| x as i8)),
            Values::UInt8(v) => take(v, nodes, |n| int32(n).map(|x| x as u8)),
            Values::Int64(v) => take(v, nodes, int),
            Values::UInt32(v) => take(v, nodes, |n| int(n).and_then(|x| u32::try_from(x).ok())),
            Values::UInt64(v) => take(v, nodes, |n| match n.tag {
                Tag::Uint => Some(n.val),
                Tag::Int => u64::try_from(n.val as i64).ok(),
                _ => None,
            }),
            Values::Bool(v) => take(v, nodes, |n| match n.tag {
                Tag::True => Some(true),
                Tag::False => Some(false),
                _ => None,
            }),
            Values::Str(_) | Values::Unsupported(_) => 0,
        }
    }

    /// Appends the non-array value at `idx`, or returns TF's error for it.
    pub fn push_leaf(&mut self, tape: &Tape<'_>, idx: usize) -> ServingResult<()> {
        let node = tape.node(idx);
        if node.tag == Tag::Object {
            return match self {
                Values::Str(v) => {
                    v.push(decode_b64_object(tape, idx)?);
                    Ok(())
                }
                _ => Err(type_error(tape, idx, self.dtype())),
            };
        }
        let ok = match self {
            Values::Float(v) => number(tape, idx).map(|x| v.push(x as f32)).is_some(),
            Values::Double(v) => number(tape, idx).map(|x| v.push(x)).is_some(),
            Values::Int32(v) => int32(tape, idx).map(|x| v.push(x)).is_some(),
            // NOTE: TF stores 8/16-bit values in `int_val` and narrows them unchecked.
            Values::Int16(v) => int32(tape, idx).map(|x| v.push(x as i16)).is_some(),
            Values::Int8(v) => int32(tape, idx).map(|x| v.push(x as i8)).is_some(),
            Values::UInt8(v) => int32(tape, idx).map(|x| v.push(x as u8)).is_some(),
            Values::Int64(v) => {
                let is_int = node.tag == Tag::Int;
                if is_int {
                    v.push(node.val as i64);
                }
                is_int
            }
            Values::UInt32(v) => {
                let value = (node.tag == Tag::Int).then_some(node.val as i64);
                match value.and_then(|x| u32::try_from(x).ok()) {
                    Some(x) => {
                        v.push(x);
                        true
                    }
                    None => false,
                }
            }
            Values::UInt64(v) => {
                let fits = node.tag == Tag::Uint || (node.tag == Tag::Int && node.val as i64 >= 0);
                if fits {
                    v.push(node.val);
                }
                fits
            }
            Values::Bool(v) => match node.tag {
                Tag::True | Tag::False => {
                    v.push(node.tag == Tag::True);
                    true
                }
                _ => false,
            },
            Values::Str(v) => {
                let is_str = node.tag == Tag::Str;
                if is_str {
                    v.push(Bytes::copy_from_slice(tape.str_bytes(idx)));
                }
                is_str
            }
            Values::Unsupported(dtype) => {
                return Err(ServingError::unimplemented(format!(
                    "Conversion of JSON Value: {} to type: {}",
                    tape.debug_string(idx),
                    dtype.tf_name()
                )));
            }
        };
        if ok {
            Ok(())
        } else {
            Err(type_error(tape, idx, self.dtype()))
        }
    }

    /// Builds the tensor; `shape` must match the element count.
    pub fn into_tensor(self, shape: Vec<usize>) -> Tensor {
        match self {
            Values::Float(v) => Tensor::from_vec(shape, v),
            Values::Double(v) => Tensor::from_vec(shape, v),
            Values::Int32(v) => Tensor::from_vec(shape, v),
            Values::Int16(v) => Tensor::from_vec(shape, v),
            Values::Int8(v) => Tensor::from_vec(shape, v),
            Values::UInt8(v) => Tensor::from_vec(shape, v),
            Values::Int64(v) => Tensor::from_vec(shape, v),
            Values::UInt32(v) => Tensor::from_vec(shape, v),
            Values::UInt64(v) => Tensor::from_vec(shape, v),
            Values::Bool(v) => Tensor::from_bools(shape, v),
            Values::Str(v) => Tensor::from_strings(shape, v),
            Values::Unsupported(dtype) => {
                Tensor { dtype, shape, data: crate::core::tensor::TensorData::Dense(Bytes::new()) }
            }
        }
    }
}

/// Returns any number as f64 (rapidjson's `GetDouble`), or `None` for other types.
fn number_node(node: &Node) -> Option<f64> {
    match node.tag {
        Tag::Int => Some(node.val as i64 as f64),
        Tag::Uint => Some(node.val as f64),
        Tag::Double => Some(f64::from_bits(node.val)),
        _ => None,
    }
}

fn number(tape: &Tape<'_>, idx: usize) -> Option<f64> {
    number_node(&tape.nodes[idx])
}

/// Returns an integer token that fits `i32` (rapidjson's `IsInt`).
fn int32(tape: &Tape<'_>, idx: usize) -> Option<i32> {
    let node = tape.node(idx);
    if node.tag != Tag::Int {
        return None;
    }
    i32::try_from(node.val as i64).ok()
}

pub(crate) fn type_error(tape: &Tape<'_>, idx: usize, dtype: DType) -> ServingError {
    ServingError::invalid_argument(format!(
        "JSON Value: {} Type: {} is not of expected type: {}",
        tape.debug_string(idx),
        tape.type_name(idx),
        dtype.tf_name()
    ))
}

/// Decodes `{"b64": "..."}`, as TF's `JsonDecodeBase64Object`.
pub(crate) fn decode_b64_object(tape: &Tape<'_>, idx: usize) -> ServingResult<Bytes> {
    if !tape.is_b64_object(idx) {
        return Err(ServingError::invalid_argument(format!(
            "JSON Value: {} not formatted correctly for base64 data",
            tape.debug_string(idx)
        )));
    }
    base64_unescape(tape.str_bytes(idx + 2))
        .map(Bytes::from)
        .ok_or_else(|| ServingError::invalid_argument("Unable to base64 decode"))
}

//! TensorFlow's `TensorProto` to and from core tensors: `tensor_content` and the typed
//! `*_val` fields, with TF's fill rule and its validation.

use bytes::Bytes;

use crate::core::tensor::checked_num_elements;
use crate::core::{DType, ServingError, ServingResult, Tensor, TensorData};
use crate::proto::tensorflow::{tensor_shape_proto, TensorProto, TensorShapeProto};

/// A decoded tensor larger than this is refused. It matches gRPC's 2 GiB message limit, and
/// stops a short typed field with a huge shape from allocating without bound.
pub const MAX_DECODED_TENSOR_BYTES: usize = i32::MAX as usize;

/// Maps TF's `DataType` number to a dtype the server handles.
pub fn dtype_from_proto(value: i32) -> Option<DType> {
    DType::from_number(value)
}

/// Returns TF's `DataType` number.
pub fn dtype_to_proto(dtype: DType) -> i32 {
    dtype as i32
}

/// Returns a shape proto; `None` dims means unknown rank.
pub fn shape_to_proto(dims: Option<&[i64]>) -> TensorShapeProto {
    match dims {
        Some(dims) => TensorShapeProto {
            dim: dims.iter().map(|&size| tensor_shape_proto::Dim { size, name: String::new() }).collect(),
            unknown_rank: false,
        },
        None => TensorShapeProto { dim: Vec::new(), unknown_rank: true },
    }
}

/// Decodes a request tensor. Every error is INVALID_ARGUMENT and names the input alias.
pub fn decode_tensor(alias: &str, proto: TensorProto) -> ServingResult<Tensor> {
    decode_tensor_within(alias, proto, MAX_DECODED_TENSOR_BYTES)
}

/// Decodes a request tensor that may take at most `budget` bytes once decoded (TF's fill
/// rule lets a few bytes ask for gigabytes): the cost is computed from the shape before
/// anything is allocated, and a tensor over budget is refused naming its shape and the limit.
pub fn decode_tensor_within(alias: &str, proto: TensorProto, budget: usize) -> ServingResult<Tensor> {
    decode(proto, budget.min(MAX_DECODED_TENSOR_BYTES))
        .map_err(|detail| ServingError::invalid_argument(format!("tensor parsing error: {alias} ({detail})")))
}

/// Decodes a request's input tensors, all of them together within `budget` bytes once decoded
/// (a gRPC Predict, a warmup record): the first input past what is left is refused by name.
/// Each input is also held to `MAX_DECODED_TENSOR_BYTES`.
pub fn decode_inputs_within(
    inputs: std::collections::BTreeMap<String, TensorProto>,
    budget: usize,
) -> ServingResult<std::collections::BTreeMap<String, Tensor>> {
    let mut left = budget;
    let mut decoded = std::collections::BTreeMap::new();
    for (alias, proto) in inputs {
        let tensor = decode_tensor_within(&alias, proto, left)?;
        left = left.saturating_sub(tensor.held_bytes());
        decoded.insert(alias, tensor);
    }
    Ok(decoded)
}

fn decode_shape(shape: Option<&TensorShapeProto>) -> Result<Vec<usize>, String> {
    let Some(shape) = shape else { return Ok(Vec::new()) };
    if shape.unknown_rank {
        return Err("a request tensor must have a known shape, got unknown_rank".into());
    }
    crate::core::tensor::check_rank(shape.dim.len()).map_err(|e| e.message)?;
    shape.dim.iter().map(|d| usize::try_from(d.size).map_err(|_| format!("dimension {} is negative", d.size))).collect()
}

fn decode(proto: TensorProto, budget: usize) -> Result<Tensor, String> {
    let dtype = dtype_from_proto(proto.dtype).ok_or_else(|| match proto.dtype {
        0 => "dtype DT_INVALID is not a tensor type".to_string(),
        other => format!("dtype {other} is not supported"),
    })?;
    let shape = decode_shape(proto.tensor_shape.as_ref())?;
    let count = checked_num_elements(&shape).map_err(|e| e.message)?;
    // NOTE: a string costs at least its handle, even when it repeats one value.
    let element = dtype.element_size().unwrap_or(std::mem::size_of::<Bytes>());
    if count.checked_mul(element).is_none_or(|bytes| bytes > budget) {
        return Err(format!(
            "shape {shape:?} of {dtype} would decode to more than the {budget} bytes this request may decode \
             (--max_decoded_request_bytes)"
        ));
    }
    if dtype == DType::String {
        return decode_strings(shape, count, proto);
    }
    if !proto.tensor_content.is_empty() {
        let mut content = proto.tensor_content;
        if dtype == DType::Bool && content.iter().any(|&byte| byte > 1) {
            // NOTE: a bool is one byte of 0 or 1 for ONNX Runtime; any other byte is true.
            content = content.iter().map(|&byte| u8::from(byte != 0)).collect();
        }
        return Tensor::from_bytes(dtype, shape, content).map_err(|e| e.message);
    }
    let tensor = match dtype {
        DType::Float => Tensor::from_vec(shape, fill(&proto.float_val, count, |v| v)),
        DType::Double => Tensor::from_vec(shape, fill(&proto.double_val, count, |v| v)),
        DType::Int32 => Tensor::from_vec(shape, fill(&proto.int_val, count, |v| v)),
        DType::Int16 => Tensor::from_vec(shape, fill(&proto.int_val, count, |v| v as i16)),
        DType::Int8 => Tensor::from_vec(shape, fill(&proto.int_val, count, |v| v as i8)),
        DType::UInt8 => Tensor::from_vec(shape, fill(&proto.int_val, count, |v| v as u8)),
        DType::UInt16 => Tensor::from_vec(shape, fill(&proto.int_val, count, |v| v as u16)),
        DType::Int64 => Tensor::from_vec(shape, fill(&proto.int64_val, count, |v| v)),
        DType::UInt32 => Tensor::from_vec(shape, fill(&proto.uint32_val, count, |v| v)),
        DType::UInt64 => Tensor::from_vec(shape, fill(&proto.uint64_val, count, |v| v)),
        DType::Bool => Tensor::from_bools(shape, fill(&proto.bool_val, count, |v| v)),
        DType::Half => Tensor::from_vec(shape, fill(&proto.half_val, count, |v| half::f16::from_bits(v as u16))),
        DType::BFloat16 => Tensor::from_vec(shape, fill(&proto.half_val, count, |v| half::bf16::from_bits(v as u16))),
        DType::Complex64 => {
            let pairs: Vec<[f32; 2]> = proto.scomplex_val.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
            let values: Vec<f32> = fill(&pairs, count, |v| v).into_iter().flatten().collect();
            Tensor::from_bytes(dtype, shape, Bytes::from(bytemuck::cast_slice::<f32, u8>(&values).to_vec()))
                .map_err(|e| e.message)?
        }
        DType::Complex128 => {
            let pairs: Vec<[f64; 2]> = proto.dcomplex_val.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
            let values: Vec<f64> = fill(&pairs, count, |v| v).into_iter().flatten().collect();
            Tensor::from_bytes(dtype, shape, Bytes::from(bytemuck::cast_slice::<f64, u8>(&values).to_vec()))
                .map_err(|e| e.message)?
        }
        DType::String | DType::Invalid => return Err(format!("dtype {dtype} is not supported")),
    };
    Ok(tensor)
}

/// TF's fill rule: at least `count` values keep the first `count`; fewer repeat the last;
/// none gives zeros.
fn fill<S: Copy, T: Default + Clone>(values: &[S], count: usize, convert: impl Fn(S) -> T) -> Vec<T> {
    let mut out: Vec<T> = values.iter().take(count).map(|&v| convert(v)).collect();
    let pad = out.last().cloned().unwrap_or_default();
    out.resize(count, pad);
    out
}

fn decode_strings(shape: Vec<usize>, count: usize, proto: TensorProto) -> Result<Tensor, String> {
    if !proto.tensor_content.is_empty() {
        let strings = decode_string_list(&proto.tensor_content, count)?;
        return Ok(Tensor::from_strings(shape, strings));
    }
    let mut strings: Vec<Bytes> = proto.string_val.into_iter().take(count).collect();
    let pad = strings.last().cloned().unwrap_or_default();
    strings.resize(count, pad);
    Ok(Tensor::from_strings(shape, strings))
}

/// Decodes TF's string-list encoding of `tensor_content`: `count` varint lengths, then the bytes.
fn decode_string_list(content: &Bytes, count: usize) -> Result<Vec<Bytes>, String> {
    let truncated = || format!("tensor_content does not hold {count} encoded strings");
    let mut lengths = Vec::with_capacity(count.min(content.len()));
    let mut offset = 0usize;
    for _ in 0..count {
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let byte = *content.get(offset).ok_or_else(truncated)?;
            offset += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err("tensor_content has a malformed string length".into());
            }
        }
        lengths.push(usize::try_from(value).map_err(|_| truncated())?);
    }
    let mut strings = Vec::with_capacity(count);
    for length in lengths {
        let end = offset.checked_add(length).filter(|&e| e <= content.len()).ok_or_else(truncated)?;
        strings.push(content.slice(offset..end));
        offset = end;
    }
    if offset != content.len() {
        return Err(format!("tensor_content has {} bytes after {count} encoded strings", content.len() - offset));
    }
    Ok(strings)
}

fn encode_string_list(strings: &[Bytes]) -> Bytes {
    let total: usize = strings.iter().map(|s| s.len() + 10).sum();
    let mut out = Vec::with_capacity(total);
    for string in strings {
        let mut value = string.len() as u64;
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    for string in strings {
        out.extend_from_slice(string);
    }
    Bytes::from(out)
}

/// Encodes a response tensor. By default values go in the typed fields, which is what TF
/// Serving clients read (`float_val`, ...); `as_tensor_content` packs them into
/// `tensor_content` instead (`--enable_serialization_as_tensor_content`).
pub fn encode_tensor(tensor: &Tensor, as_tensor_content: bool) -> TensorProto {
    let dims: Vec<i64> = tensor.shape.iter().map(|&d| d as i64).collect();
    let mut proto = TensorProto {
        dtype: dtype_to_proto(tensor.dtype),
        tensor_shape: Some(shape_to_proto(Some(&dims))),
        ..Default::default()
    };
    match &tensor.data {
        TensorData::Strings(strings) if as_tensor_content => proto.tensor_content = encode_string_list(strings),
        TensorData::Strings(strings) => proto.string_val = strings.clone(),
        TensorData::Dense(bytes) if as_tensor_content => proto.tensor_content = bytes.clone(),
        TensorData::Dense(_) => fill_typed_fields(tensor, &mut proto),
    }
    proto
}

fn fill_typed_fields(tensor: &Tensor, proto: &mut TensorProto) {
    fn widen<T: crate::core::Element, U>(tensor: &Tensor, convert: impl Fn(T) -> U) -> Vec<U> {
        tensor.values::<T>().map(|v| v.iter().map(|&x| convert(x)).collect()).unwrap_or_default()
    }
    match tensor.dtype {
        DType::Float => proto.float_val = widen::<f32, _>(tensor, |v| v),
        DType::Double => proto.double_val = widen::<f64, _>(tensor, |v| v),
        DType::Int32 => proto.int_val = widen::<i32, _>(tensor, |v| v),
        DType::Int16 => proto.int_val = widen::<i16, _>(tensor, i32::from),
        DType::Int8 => proto.int_val = widen::<i8, _>(tensor, i32::from),
        DType::UInt8 => proto.int_val = widen::<u8, _>(tensor, i32::from),
        DType::UInt16 => proto.int_val = widen::<u16, _>(tensor, i32::from),
        DType::Int64 => proto.int64_val = widen::<i64, _>(tensor, |v| v),
        DType::UInt32 => proto.uint32_val = widen::<u32, _>(tensor, |v| v),
        DType::UInt64 => proto.uint64_val = widen::<u64, _>(tensor, |v| v),
        DType::Half => proto.half_val = widen::<half::f16, _>(tensor, |v| i32::from(v.to_bits())),
        DType::BFloat16 => proto.half_val = widen::<half::bf16, _>(tensor, |v| i32::from(v.to_bits())),
        DType::Bool => proto.bool_val = tensor.bool_values().unwrap_or_default(),
        DType::Complex64 | DType::Complex128 | DType::String | DType::Invalid => {
            // NOTE: complex outputs have no typed Element here; their raw bytes still carry them.
            if let Some(bytes) = tensor.dense_bytes() {
                proto.tensor_content = bytes.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(dims: &[i64]) -> Option<TensorShapeProto> {
        Some(shape_to_proto(Some(dims)))
    }

    fn float_proto(dims: &[i64], values: Vec<f32>) -> TensorProto {
        TensorProto { dtype: 1, tensor_shape: shape(dims), float_val: values, ..Default::default() }
    }

    #[test]
    fn bool_bytes_other_than_zero_and_one_are_true() {
        let proto = TensorProto {
            dtype: dtype_to_proto(DType::Bool),
            tensor_shape: Some(shape_to_proto(Some(&[3]))),
            tensor_content: Bytes::from_static(&[0, 1, 2]),
            ..Default::default()
        };
        let tensor = decode_tensor("b", proto).expect("decodes");
        assert_eq!(tensor.dense_bytes().map(|b| b.to_vec()), Some(vec![0, 1, 1]));
        // Written back as bool_val and read again, it is the same tensor.
        assert!(decode_tensor("b", encode_tensor(&tensor, false)).expect("again") == tensor);
    }

    #[test]
    fn typed_fields_follow_the_fill_rule() {
        let full = decode_tensor("x", float_proto(&[3], vec![1.0, 2.0, 3.0, 9.0])).expect("decode");
        assert_eq!(&*full.values::<f32>().expect("f32"), &[1.0, 2.0, 3.0]);
        let repeated = decode_tensor("x", float_proto(&[2, 2], vec![1.0, 2.0])).expect("decode");
        assert_eq!(&*repeated.values::<f32>().expect("f32"), &[1.0, 2.0, 2.0, 2.0]);
        let zeros = decode_tensor("x", float_proto(&[3], vec![])).expect("decode");
        assert_eq!(&*zeros.values::<f32>().expect("f32"), &[0.0, 0.0, 0.0]);
        let scalar = decode_tensor("x", float_proto(&[], vec![5.0])).expect("decode");
        assert!(scalar.shape.is_empty());
        assert_eq!(&*scalar.values::<f32>().expect("f32"), &[5.0]);
    }

    #[test]
    fn tensor_content_is_used_without_copy_and_size_checked() {
        let content = Bytes::from(bytemuck::cast_slice::<f32, u8>(&[1.0, 2.0]).to_vec());
        let proto =
            TensorProto { dtype: 1, tensor_shape: shape(&[2]), tensor_content: content.clone(), ..Default::default() };
        let tensor = decode_tensor("x", proto).expect("decode");
        assert_eq!(tensor.dense_bytes().map(|b| b.as_ptr()), Some(content.as_ptr()), "no copy");
        let short = TensorProto { dtype: 1, tensor_shape: shape(&[3]), tensor_content: content, ..Default::default() };
        let error = decode_tensor("images", short).expect_err("size mismatch");
        assert!(error.message.starts_with("tensor parsing error: images ("), "{}", error.message);
        assert!(error.message.contains("needs 12 bytes, got 8"), "{}", error.message);
    }

    #[test]
    fn malformed_tensors_name_the_input() {
        let negative = float_proto(&[-1, 2], vec![1.0]);
        let error = decode_tensor("x", negative).expect_err("negative dim");
        assert!(error.message.contains("tensor parsing error: x") && error.message.contains("negative"));
        let overflow = float_proto(&[1 << 62, 1 << 62], vec![1.0]);
        let error = decode_tensor("x", overflow).expect_err("overflow");
        assert!(error.message.contains("too many elements"), "{}", error.message);
        let huge = float_proto(&[1 << 40], vec![1.0]);
        let error = decode_tensor("x", huge).expect_err("too large to fill");
        assert!(error.message.contains("--max_decoded_request_bytes"), "{}", error.message);
        // The fill rule within a budget: a 20-byte request asking for 4 MB is refused, before
        // anything is allocated, naming the shape and the limit.
        let error = decode_tensor_within("x", float_proto(&[1_000_000], vec![1.0]), 1 << 20).expect_err("budget");
        assert_eq!(
            error.message,
            "tensor parsing error: x (shape [1000000] of float would decode to more than the 1048576 bytes this \
             request may decode (--max_decoded_request_bytes))"
        );
        let strings = TensorProto {
            dtype: 7,
            tensor_shape: Some(TensorShapeProto {
                dim: vec![tensor_shape_proto::Dim { size: 1 << 30, name: String::new() }],
                unknown_rank: false,
            }),
            string_val: vec![Bytes::from_static(b"a")],
            ..Default::default()
        };
        assert!(decode_tensor_within("s", strings, 1 << 20).is_err(), "a string handle per element counts");
        let fits = decode_tensor_within("x", float_proto(&[1000], vec![1.0]), 4000).expect("exactly the budget");
        assert_eq!(fits.held_bytes(), 4000);
        let invalid = TensorProto { dtype: 0, ..Default::default() };
        assert!(decode_tensor("x", invalid).expect_err("invalid").message.contains("DT_INVALID"));
        let resource = TensorProto { dtype: 20, ..Default::default() };
        assert!(decode_tensor("x", resource).expect_err("resource").message.contains("dtype 20 is not supported"));
        let unknown_rank = TensorProto {
            dtype: 1,
            tensor_shape: Some(TensorShapeProto { dim: vec![], unknown_rank: true }),
            ..Default::default()
        };
        assert!(decode_tensor("x", unknown_rank).is_err());
        assert_eq!(decode_tensor("x", short_string_content()).expect_err("x").code, crate::core::Code::InvalidArgument);
    }

    fn short_string_content() -> TensorProto {
        TensorProto {
            dtype: 7,
            tensor_shape: shape(&[1]),
            tensor_content: Bytes::from_static(&[5, b'a']),
            ..Default::default()
        }
    }

    #[test]
    fn half_and_narrow_ints_use_their_fields() {
        let proto =
            TensorProto { dtype: 19, tensor_shape: shape(&[2]), half_val: vec![0x3c00, 0xc000], ..Default::default() };
        let tensor = decode_tensor("h", proto).expect("decode");
        let values = tensor.values::<half::f16>().expect("f16");
        assert_eq!(values.iter().map(|v| v.to_f32()).collect::<Vec<_>>(), vec![1.0, -2.0]);
        let encoded = encode_tensor(&tensor, false);
        assert_eq!(encoded.half_val, vec![0x3c00, 0xc000]);

        let proto = TensorProto { dtype: 4, tensor_shape: shape(&[2]), int_val: vec![255, 7], ..Default::default() };
        let tensor = decode_tensor("u", proto).expect("decode");
        assert_eq!(&*tensor.values::<u8>().expect("u8"), &[255, 7]);
        assert_eq!(encode_tensor(&tensor, false).int_val, vec![255, 7]);
    }

    #[test]
    fn strings_decode_from_both_encodings() {
        let typed = TensorProto {
            dtype: 7,
            tensor_shape: shape(&[3]),
            string_val: vec![Bytes::from_static(b"ab"), Bytes::from_static(b"c")],
            ..Default::default()
        };
        let tensor = decode_tensor("s", typed).expect("decode");
        assert_eq!(tensor.strings().expect("strings"), &[&b"ab"[..], b"c", b"c"].map(Bytes::from_static));
        let packed = encode_tensor(&tensor, true);
        assert!(packed.string_val.is_empty());
        let again = decode_tensor("s", packed).expect("decode packed");
        assert_eq!(again, tensor);
        let truncated = TensorProto {
            dtype: 7,
            tensor_shape: shape(&[2]),
            tensor_content: Bytes::from_static(&[1, 1, b'a']),
            ..Default::default()
        };
        assert!(decode_tensor("s", truncated).expect_err("truncated").message.contains("encoded strings"));
    }

    #[test]
    fn outputs_use_typed_fields_unless_asked() {
        let tensor = Tensor::from_vec(vec![1, 2], vec![2.5f32, 3.0]);
        let typed = encode_tensor(&tensor, false);
        assert_eq!(typed.float_val, vec![2.5, 3.0]);
        assert!(typed.tensor_content.is_empty());
        assert_eq!(typed.tensor_shape.as_ref().map(|s| s.dim.len()), Some(2));
        let packed = encode_tensor(&tensor, true);
        assert!(packed.float_val.is_empty());
        assert_eq!(packed.tensor_content.len(), 8);
        let bools = Tensor::from_bools(vec![2], vec![true, false]);
        assert_eq!(encode_tensor(&bools, false).bool_val, vec![true, false]);
        let scalar = Tensor::from_vec(vec![], vec![1i64]);
        let proto = encode_tensor(&scalar, false);
        assert_eq!(proto.tensor_shape, Some(TensorShapeProto::default()), "scalars carry an empty shape");
        assert_eq!(proto.int64_val, vec![1]);
    }
}

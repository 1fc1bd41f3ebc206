//! Conversions between core tensors and ONNX Runtime values.

use std::borrow::Cow;

use bytes::Bytes;
use ort::session::SessionInputValue;
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};

use crate::core::{DType, Element, ServingError, ServingResult, Tensor, TensorData};

/// Reads a sequence of `{class: score}` maps (one per row, as a ZipMap makes them) into a
/// `[rows, keys]` float tensor whose columns follow `keys`, the order the signature declares.
fn map_rows_output(name: &str, value: &DynValue, keys: &[String]) -> ServingResult<Tensor> {
    use ort::value::DynMapValueType;
    let read = |e: ort::Error| ServingError::internal(format!("reading output '{name}': {e}"));
    let column: std::collections::HashMap<&str, usize> =
        keys.iter().enumerate().map(|(index, key)| (key.as_str(), index)).collect();
    let maps = value.try_extract_sequence::<DynMapValueType>().map_err(read)?;
    let mut values = vec![f32::NAN; maps.len() * keys.len()];
    for (index, map) in maps.iter().enumerate() {
        let row: Vec<(String, f32)> = match map.dtype() {
            ValueType::Map { key: TensorElementType::Int64, .. } => map
                .try_extract_key_values::<i64, f32>()
                .map_err(read)?
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            _ => map.try_extract_key_values::<String, f32>().map_err(read)?,
        };
        if row.len() != keys.len() {
            return Err(ServingError::internal(format!(
                "output '{name}': row {index} has {} classes, the signature declares {}",
                row.len(),
                keys.len()
            )));
        }
        let scores = &mut values[index * keys.len()..(index + 1) * keys.len()];
        for (key, score) in row {
            let &at = column.get(key.as_str()).ok_or_else(|| {
                ServingError::internal(format!(
                    "output '{name}': row {index} has class {key}, which the model does not declare"
                ))
            })?;
            scores[at] = score;
        }
    }
    Ok(Tensor::from_vec(vec![maps.len(), keys.len()], values))
}

/// Maps an ONNX element type to TF's dtype, when TF has one.
pub(crate) fn dtype_from_ort(ty: TensorElementType) -> Option<DType> {
    Some(match ty {
        TensorElementType::Float32 => DType::Float,
        TensorElementType::Float64 => DType::Double,
        TensorElementType::Int32 => DType::Int32,
        TensorElementType::Int64 => DType::Int64,
        TensorElementType::Int16 => DType::Int16,
        TensorElementType::Int8 => DType::Int8,
        TensorElementType::Uint8 => DType::UInt8,
        TensorElementType::Uint16 => DType::UInt16,
        TensorElementType::Uint32 => DType::UInt32,
        TensorElementType::Uint64 => DType::UInt64,
        TensorElementType::Bool => DType::Bool,
        TensorElementType::String => DType::String,
        TensorElementType::Float16 => DType::Half,
        TensorElementType::Bfloat16 => DType::BFloat16,
        TensorElementType::Complex64 => DType::Complex64,
        TensorElementType::Complex128 => DType::Complex128,
        _ => return None,
    })
}

fn invalid(name: &str, error: impl std::fmt::Display) -> ServingError {
    ServingError::invalid_argument(format!("input '{name}': {error}"))
}

fn dims_i64(shape: &[usize]) -> Vec<i64> {
    shape.iter().map(|&d| d as i64).collect()
}

fn dense_input<'a, T>(name: &str, tensor: &'a Tensor) -> ServingResult<SessionInputValue<'a>>
where
    T: Element + ort::value::PrimitiveTensorElementType + std::fmt::Debug,
{
    let shape = dims_i64(&tensor.shape);
    match tensor.values::<T>() {
        Some(Cow::Borrowed(slice)) => {
            Ok(TensorRef::from_array_view((shape, slice)).map_err(|e| invalid(name, e))?.into())
        }
        Some(Cow::Owned(values)) => {
            Ok(ort::value::Tensor::from_array((shape, values)).map_err(|e| invalid(name, e))?.into())
        }
        None => Err(invalid(name, format!("expected {} data", T::DTYPE))),
    }
}

/// Builds an input value, borrowing the tensor's bytes where alignment allows.
pub(crate) fn to_input<'a>(name: &str, tensor: &'a Tensor) -> ServingResult<SessionInputValue<'a>> {
    match tensor.dtype {
        DType::Float => dense_input::<f32>(name, tensor),
        DType::Double => dense_input::<f64>(name, tensor),
        DType::Int32 => dense_input::<i32>(name, tensor),
        DType::Int64 => dense_input::<i64>(name, tensor),
        DType::Int16 => dense_input::<i16>(name, tensor),
        DType::Int8 => dense_input::<i8>(name, tensor),
        DType::UInt8 => dense_input::<u8>(name, tensor),
        DType::UInt16 => dense_input::<u16>(name, tensor),
        DType::UInt32 => dense_input::<u32>(name, tensor),
        DType::UInt64 => dense_input::<u64>(name, tensor),
        DType::Half => dense_input::<half::f16>(name, tensor),
        DType::BFloat16 => dense_input::<half::bf16>(name, tensor),
        DType::Bool => {
            let values = tensor.bool_values().ok_or_else(|| invalid(name, "expected bool data"))?;
            let shape = dims_i64(&tensor.shape);
            Ok(ort::value::Tensor::from_array((shape, values)).map_err(|e| invalid(name, e))?.into())
        }
        DType::String => {
            let strings = tensor.strings().ok_or_else(|| invalid(name, "expected string data"))?;
            let mut texts = Vec::with_capacity(strings.len());
            for (index, bytes) in strings.iter().enumerate() {
                // NOTE: ONNX Runtime's string tensors are filled from NUL-terminated UTF-8.
                let text = std::str::from_utf8(bytes).map_err(|_| {
                    invalid(
                        name,
                        format!("string element {index} is not valid UTF-8, which ONNX Runtime string tensors require"),
                    )
                })?;
                if text.contains('\0') {
                    return Err(invalid(name, format!("string element {index} contains a NUL byte")));
                }
                texts.push(text.to_string());
            }
            let shape = dims_i64(&tensor.shape);
            Ok(ort::value::Tensor::from_string_array((shape, texts.as_slice())).map_err(|e| invalid(name, e))?.into())
        }
        other => Err(ServingError::unimplemented(format!("input '{name}': type {other} is not supported"))),
    }
}

fn dense_output<T>(name: &str, value: &DynValue) -> ServingResult<Tensor>
where
    T: Element + ort::value::PrimitiveTensorElementType,
{
    let (shape, data) =
        value.try_extract_tensor::<T>().map_err(|e| ServingError::internal(format!("reading output '{name}': {e}")))?;
    let shape = shape.iter().map(|&d| d.max(0) as usize).collect();
    Ok(Tensor::from_vec(shape, data.to_vec()))
}

/// Copies an output value into a core tensor. `map_keys` are the declared keys of a
/// score-map output.
pub(crate) fn from_output(name: &str, value: &DynValue, map_keys: Option<&[String]>) -> ServingResult<Tensor> {
    let ty = match value.dtype() {
        ValueType::Tensor { ty, .. } => *ty,
        ValueType::Sequence(inner) if is_score_map(inner) => {
            return match map_keys {
                Some(keys) => map_rows_output(name, value, keys),
                None => Err(ServingError::unimplemented(format!(
                    "output '{name}' is a sequence of maps whose keys the model does not declare (no ZipMap with \
                     class labels makes it), so it cannot be returned as a tensor"
                ))),
            }
        }
        other => {
            return Err(ServingError::unimplemented(format!(
                "output '{name}' is a {other:?}, which cannot be returned as a tensor yet"
            )))
        }
    };
    match dtype_from_ort(ty) {
        Some(DType::Float) => dense_output::<f32>(name, value),
        Some(DType::Double) => dense_output::<f64>(name, value),
        Some(DType::Int32) => dense_output::<i32>(name, value),
        Some(DType::Int64) => dense_output::<i64>(name, value),
        Some(DType::Int16) => dense_output::<i16>(name, value),
        Some(DType::Int8) => dense_output::<i8>(name, value),
        Some(DType::UInt8) => dense_output::<u8>(name, value),
        Some(DType::UInt16) => dense_output::<u16>(name, value),
        Some(DType::UInt32) => dense_output::<u32>(name, value),
        Some(DType::UInt64) => dense_output::<u64>(name, value),
        Some(DType::Half) => dense_output::<half::f16>(name, value),
        Some(DType::BFloat16) => dense_output::<half::bf16>(name, value),
        Some(DType::Bool) => {
            let (shape, data) = value
                .try_extract_tensor::<bool>()
                .map_err(|e| ServingError::internal(format!("reading output '{name}': {e}")))?;
            let shape = shape.iter().map(|&d| d.max(0) as usize).collect();
            Ok(Tensor::from_bools(shape, data.to_vec()))
        }
        Some(DType::String) => {
            let (shape, strings) = value
                .try_extract_strings()
                .map_err(|e| ServingError::internal(format!("reading output '{name}': {e}")))?;
            let shape = shape.iter().map(|&d| d.max(0) as usize).collect();
            Ok(Tensor {
                dtype: DType::String,
                shape,
                data: TensorData::Strings(strings.into_iter().map(Bytes::from).collect()),
            })
        }
        _ => {
            Err(ServingError::unimplemented(format!("output '{name}' has element type {ty:?}, which is not supported")))
        }
    }
}

/// True for `map(int64|string, float)`, the element of a ZipMap output.
pub(crate) fn is_score_map(value_type: &ValueType) -> bool {
    matches!(
        value_type,
        ValueType::Map {
            key: ort::value::TensorElementType::Int64 | ort::value::TensorElementType::String,
            value: ort::value::TensorElementType::Float32
        }
    )
}

//! Merging request tensors along dimension 0 (with padding) and splitting outputs back.

use bytes::{Bytes, BytesMut};

use crate::core::tensor::checked_num_elements;
use crate::core::{ServingError, ServingResult, Tensor, TensorData};

/// Returns the number of rows (dimension 0), or `None` for a scalar.
pub fn rows(tensor: &Tensor) -> Option<usize> {
    tensor.shape.first().copied()
}

/// Returns whether two tensors can share a batch: same dtype and rank, and the same
/// trailing dimensions unless variable-length padding is on.
pub fn compatible(a: &Tensor, b: &Tensor, pad_variable_length: bool) -> bool {
    a.dtype == b.dtype
        && a.shape.len() == b.shape.len()
        && !a.shape.is_empty()
        && (pad_variable_length || a.shape[1..] == b.shape[1..])
}

fn row_len(shape: &[usize]) -> usize {
    shape[1..].iter().product()
}

/// Copies `tensor` into a tensor of trailing shape `target` (each dimension ≥ the tensor's),
/// filling the new positions with the tensor's first element, as TF Serving pads.
fn pad_trailing(tensor: &Tensor, target: &[usize]) -> ServingResult<Tensor> {
    if tensor.shape[1..] == *target {
        return Ok(tensor.clone());
    }
    let mut shape = vec![tensor.shape[0]];
    shape.extend_from_slice(target);
    let count = checked_num_elements(&shape)?;
    // Maps an element of the padded layout to its source element, or None for padding.
    let source_shape = &tensor.shape;
    let source_index = |mut flat: usize| -> Option<usize> {
        let mut index = 0;
        let mut source_stride = 1;
        for axis in (0..shape.len()).rev() {
            let coordinate = flat % shape[axis];
            flat /= shape[axis];
            if coordinate >= source_shape[axis] {
                return None;
            }
            index += coordinate * source_stride;
            source_stride *= source_shape[axis];
        }
        Some(index)
    };
    let data = match &tensor.data {
        TensorData::Dense(bytes) => {
            let size = tensor.dtype.element_size().unwrap_or(1);
            let fill = bytes.get(..size).map(<[u8]>::to_vec).unwrap_or_else(|| vec![0; size]);
            let mut out = BytesMut::with_capacity(count * size);
            for flat in 0..count {
                match source_index(flat) {
                    Some(i) => out.extend_from_slice(&bytes[i * size..(i + 1) * size]),
                    None => out.extend_from_slice(&fill),
                }
            }
            TensorData::Dense(out.freeze())
        }
        TensorData::Strings(strings) => {
            let fill = strings.first().cloned().unwrap_or_default();
            TensorData::Strings(
                (0..count).map(|flat| source_index(flat).map_or(fill.clone(), |i| strings[i].clone())).collect(),
            )
        }
    };
    Ok(Tensor { dtype: tensor.dtype, shape, data })
}

/// Concatenates `parts` along dimension 0 and pads the result to `padded_rows` rows with
/// copies of the first row (as TF Serving does). With `pad_variable_length`, trailing
/// dimensions are first padded to the largest of each.
/// The most bytes one merged (padded) input may take. Padding to the largest trailing
/// dimensions of a batch can multiply its size without bound ([1, 1000000, 1] and
/// [1, 1, 1000000] pad to a terabyte), so a batch over this runs its requests one by one.
pub const MAX_PADDED_INPUT_BYTES: usize = 1 << 30;

/// Returns the bytes the merged input of `parts` would take padded to `padded_rows` (strings
/// count a handle each), or `None` when that overflows.
pub fn merged_bytes(parts: &[&Tensor], padded_rows: usize, pad_variable_length: bool) -> Option<usize> {
    let first = parts.first()?;
    let mut trailing = first.shape.get(1..)?.to_vec();
    if pad_variable_length {
        for part in parts {
            for (axis, &dim) in part.shape.get(1..)?.iter().enumerate() {
                let slot = trailing.get_mut(axis)?;
                *slot = (*slot).max(dim);
            }
        }
    }
    let element = first.dtype.element_size().unwrap_or(std::mem::size_of::<bytes::Bytes>());
    trailing.iter().try_fold(padded_rows, |acc, &d| acc.checked_mul(d))?.checked_mul(element)
}

pub fn concat_rows(parts: &[&Tensor], padded_rows: usize, pad_variable_length: bool) -> ServingResult<Tensor> {
    let first = parts.first().ok_or_else(|| ServingError::internal("cannot merge an empty batch"))?;
    let mut trailing = first.shape[1..].to_vec();
    for part in parts {
        if !compatible(first, part, pad_variable_length) {
            return Err(ServingError::internal("batched tensors do not share dtype and shape"));
        }
        for (axis, &dim) in part.shape[1..].iter().enumerate() {
            trailing[axis] = trailing[axis].max(dim);
        }
    }
    let padded: Vec<Tensor> = parts.iter().map(|p| pad_trailing(p, &trailing)).collect::<ServingResult<_>>()?;
    let rows: usize = padded.iter().map(|p| p.shape[0]).sum();
    if padded_rows < rows {
        return Err(ServingError::internal("padded batch size is smaller than the batch"));
    }
    let mut shape = vec![padded_rows];
    shape.extend_from_slice(&trailing);
    let per_row = row_len(&shape);
    let data = match &first.data {
        TensorData::Dense(_) => {
            let size = first.dtype.element_size().unwrap_or(1);
            let row_bytes = per_row * size;
            let mut out = BytesMut::with_capacity(padded_rows * row_bytes);
            for part in &padded {
                out.extend_from_slice(part.dense_bytes().map(|b| b.as_ref()).unwrap_or_default());
            }
            let first_row: Vec<u8> = out.get(..row_bytes).map(<[u8]>::to_vec).unwrap_or_default();
            for _ in rows..padded_rows {
                out.extend_from_slice(&first_row);
            }
            TensorData::Dense(out.freeze())
        }
        TensorData::Strings(_) => {
            let mut out: Vec<Bytes> = Vec::with_capacity(padded_rows * per_row);
            for part in &padded {
                out.extend(part.strings().unwrap_or_default().iter().cloned());
            }
            let first_row: Vec<Bytes> = out.iter().take(per_row).cloned().collect();
            for _ in rows..padded_rows {
                out.extend(first_row.iter().cloned());
            }
            TensorData::Strings(out)
        }
    };
    Ok(Tensor { dtype: first.dtype, shape, data })
}

/// Splits `tensor` into consecutive row ranges of `sizes`; rows past their sum (padding)
/// are dropped. Dense parts share the tensor's buffer.
pub fn split_rows(name: &str, tensor: &Tensor, sizes: &[usize]) -> ServingResult<Vec<Tensor>> {
    let total: usize = sizes.iter().sum();
    let Some(&available) = tensor.shape.first() else {
        return Err(ServingError::internal(format!(
            "output '{name}' of a batched run is a scalar, so it cannot be split per request; disable batching for this model"
        )));
    };
    if available < total {
        return Err(ServingError::internal(format!(
            "output '{name}' of a batched run has {available} rows for {total} requested; disable batching for this model"
        )));
    }
    let per_row = row_len(&tensor.shape);
    let mut parts = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for &size in sizes {
        let mut shape = tensor.shape.clone();
        shape[0] = size;
        let data = match &tensor.data {
            TensorData::Dense(bytes) => {
                let row_bytes = per_row * tensor.dtype.element_size().unwrap_or(1);
                TensorData::Dense(bytes.slice(start * row_bytes..(start + size) * row_bytes))
            }
            TensorData::Strings(strings) => {
                TensorData::Strings(strings[start * per_row..(start + size) * per_row].to_vec())
            }
        };
        parts.push(Tensor { dtype: tensor.dtype, shape, data });
        start += size;
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(shape: Vec<usize>, values: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape, values)
    }

    fn values(tensor: &Tensor) -> Vec<f32> {
        tensor.values::<f32>().expect("f32").to_vec()
    }

    #[test]
    fn concatenates_pads_with_the_first_row_and_splits_back() {
        let a = floats(vec![1, 2], vec![1.0, 2.0]);
        let b = floats(vec![2, 2], vec![3.0, 4.0, 5.0, 6.0]);
        let merged = concat_rows(&[&a, &b], 4, false).expect("merge");
        assert_eq!(merged.shape, vec![4, 2]);
        assert_eq!(values(&merged), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 2.0]);
        let parts = split_rows("y", &merged, &[1, 2]).expect("split");
        assert_eq!(values(&parts[0]), vec![1.0, 2.0]);
        assert_eq!(parts[1].shape, vec![2, 2]);
        assert_eq!(values(&parts[1]), vec![3.0, 4.0, 5.0, 6.0]);
        let merged_ptr = merged.dense_bytes().map(|b| b.as_ptr() as usize);
        let part_ptr = parts[1].dense_bytes().map(|b| b.as_ptr() as usize);
        assert_eq!(part_ptr, merged_ptr.map(|p| p + 8), "splitting shares the buffer");
    }

    #[test]
    fn variable_length_inputs_pad_with_the_first_element() {
        let short = floats(vec![1, 2], vec![7.0, 8.0]);
        let long = floats(vec![1, 3], vec![1.0, 2.0, 3.0]);
        assert!(!compatible(&short, &long, false));
        assert!(compatible(&short, &long, true));
        let merged = concat_rows(&[&short, &long], 2, true).expect("merge");
        assert_eq!(merged.shape, vec![2, 3]);
        assert_eq!(values(&merged), vec![7.0, 8.0, 7.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn strings_merge_and_split() {
        let a = Tensor::from_strings(vec![1], vec![Bytes::from_static(b"a")]);
        let b = Tensor::from_strings(vec![1], vec![Bytes::from_static(b"b")]);
        let merged = concat_rows(&[&a, &b], 3, false).expect("merge");
        assert_eq!(merged.strings().expect("strings").len(), 3);
        let parts = split_rows("s", &merged, &[1, 1]).expect("split");
        assert_eq!(parts[1].strings().expect("strings"), &[Bytes::from_static(b"b")]);
    }

    #[test]
    fn outputs_without_enough_rows_are_errors() {
        let scalar = floats(vec![], vec![1.0]);
        assert!(split_rows("total", &scalar, &[1]).expect_err("scalar").message.contains("scalar"));
        let short = floats(vec![1], vec![1.0]);
        assert!(split_rows("y", &short, &[1, 1]).expect_err("rows").message.contains("1 rows for 2"));
    }
}

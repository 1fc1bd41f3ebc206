//! Predict responses and error bodies: TF's `MakeJsonFromTensors` layouts, written compactly.

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;

use super::float::{format_f32, format_f64, FLOAT_BUF};
use super::text::{write_i64, write_json_string, write_u64};
use super::JsonFormat;
use crate::core::error::{ServingError, ServingResult};
use crate::core::signature::OutputKeys;
use crate::core::tensor::{checked_num_elements, DType, Element, Tensor};

/// Writes `{"error": "<message>"}` as rapidjson's PrettyWriter lays it out.
pub(crate) fn write_error_body(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 24);
    out.extend_from_slice(b"{\n    \"error\": ");
    write_json_string(&mut out, message.as_bytes());
    out.extend_from_slice(b"\n}");
    out
}

/// Writes a predict response; the outputs named in `map_keys` are score maps, written as one
/// `{key: score}` object per row.
pub(crate) fn write_predict_response(
    format: JsonFormat,
    outputs: &[(String, Tensor)],
    map_keys: &OutputKeys,
) -> ServingResult<Vec<u8>> {
    if outputs.is_empty() {
        return Err(ServingError::invalid_argument("Cannot convert empty tensor map to JSON"));
    }
    let views = outputs
        .iter()
        .map(|(alias, t)| OutputView::new(alias, t, map_keys.get(alias).map(|keys| &keys[..])))
        .collect::<Result<Vec<_>, _>>()?;
    let total = views.iter().fold(0usize, |acc, v| acc.saturating_add(v.len));
    let mut out = Vec::with_capacity(total.saturating_mul(12).saturating_add(64));
    match format {
        JsonFormat::Row => write_rows(&views, &mut out)?,
        JsonFormat::Columnar => write_columns(&views, &mut out)?,
    }
    Ok(out)
}

/// The elements of one output, borrowed where the tensor's bytes allow.
enum Elements<'a> {
    Float(Cow<'a, [f32]>),
    Double(Cow<'a, [f64]>),
    Int8(Cow<'a, [i8]>),
    Int16(Cow<'a, [i16]>),
    Int32(Cow<'a, [i32]>),
    Int64(Cow<'a, [i64]>),
    UInt8(Cow<'a, [u8]>),
    UInt32(Cow<'a, [u32]>),
    UInt64(Cow<'a, [u64]>),
    Bool(&'a [u8]),
    /// Strings, and whether they are written as `{"b64": ...}` (alias ends in `_bytes`).
    Str(&'a [Bytes], bool),
    /// A type TF cannot write as JSON (half, bfloat16, uint16, complex, ...).
    Unwritable(DType),
}

struct OutputView<'a> {
    alias: &'a str,
    shape: &'a [usize],
    len: usize,
    elements: Elements<'a>,
    /// A score-map output: its innermost lists are written as `{key: value}` objects.
    map_keys: Option<&'a [String]>,
}

fn typed<'a, T: Element>(tensor: &'a Tensor, alias: &str) -> ServingResult<Cow<'a, [T]>> {
    tensor.values::<T>().ok_or_else(|| mismatch(alias, tensor))
}

fn mismatch(alias: &str, tensor: &Tensor) -> ServingError {
    ServingError::internal(format!("output tensor {alias} of type {} holds data of another kind", tensor.dtype))
}

impl<'a> OutputView<'a> {
    fn new(alias: &'a str, tensor: &'a Tensor, map_keys: Option<&'a [String]>) -> ServingResult<Self> {
        let len = checked_num_elements(&tensor.shape)?;
        let elements = match tensor.dtype {
            DType::Float => Elements::Float(typed(tensor, alias)?),
            DType::Double => Elements::Double(typed(tensor, alias)?),
            DType::Int8 => Elements::Int8(typed(tensor, alias)?),
            DType::Int16 => Elements::Int16(typed(tensor, alias)?),
            DType::Int32 => Elements::Int32(typed(tensor, alias)?),
            DType::Int64 => Elements::Int64(typed(tensor, alias)?),
            DType::UInt8 => Elements::UInt8(typed(tensor, alias)?),
            DType::UInt32 => Elements::UInt32(typed(tensor, alias)?),
            DType::UInt64 => Elements::UInt64(typed(tensor, alias)?),
            DType::Bool => Elements::Bool(tensor.dense_bytes().ok_or_else(|| mismatch(alias, tensor))?),
            DType::String => {
                Elements::Str(tensor.strings().ok_or_else(|| mismatch(alias, tensor))?, alias.ends_with("_bytes"))
            }
            other => Elements::Unwritable(other),
        };
        let held = match &elements {
            Elements::Float(v) => v.len(),
            Elements::Double(v) => v.len(),
            Elements::Int8(v) => v.len(),
            Elements::Int16(v) => v.len(),
            Elements::Int32(v) => v.len(),
            Elements::Int64(v) => v.len(),
            Elements::UInt8(v) => v.len(),
            Elements::UInt32(v) => v.len(),
            Elements::UInt64(v) => v.len(),
            Elements::Bool(v) => v.len(),
            Elements::Str(v, _) => v.len(),
            Elements::Unwritable(_) => len,
        };
        if held != len {
            return Err(ServingError::internal(format!(
                "output tensor {alias} has {held} elements but its shape {:?} needs {len}",
                tensor.shape
            )));
        }
        if let Some(keys) = map_keys {
            if tensor.shape.last() != Some(&keys.len()) {
                return Err(ServingError::internal(format!(
                    "score-map output {alias} has shape {:?}, not one column per key ({})",
                    tensor.shape,
                    keys.len()
                )));
            }
        }
        Ok(OutputView { alias, shape: &tensor.shape, len, elements, map_keys })
    }

    /// Writes elements `start..start + count`, comma separated.
    fn write_run(&self, start: usize, count: usize, out: &mut Vec<u8>) -> ServingResult<()> {
        let range = start..start + count;
        match &self.elements {
            Elements::Float(v) => write_floats(out, &v[range], format_f32),
            Elements::Double(v) => write_floats(out, &v[range], format_f64),
            Elements::Int8(v) => write_list(out, v[range].iter().copied(), |x, out| write_i64(out, x.into())),
            Elements::Int16(v) => write_list(out, v[range].iter().copied(), |x, out| write_i64(out, x.into())),
            Elements::Int32(v) => write_list(out, v[range].iter().copied(), |x, out| write_i64(out, x.into())),
            Elements::Int64(v) => write_list(out, v[range].iter().copied(), |x, out| write_i64(out, x)),
            Elements::UInt8(v) => write_list(out, v[range].iter().copied(), |x, out| write_u64(out, x.into())),
            Elements::UInt32(v) => write_list(out, v[range].iter().copied(), |x, out| write_u64(out, x.into())),
            Elements::UInt64(v) => write_list(out, v[range].iter().copied(), |x, out| write_u64(out, x)),
            Elements::Bool(v) => write_list(out, v[range].iter().copied(), |x, out| {
                out.extend_from_slice(if x != 0 { b"true" } else { b"false" });
            }),
            Elements::Str(v, false) => {
                write_list(out, v[range].iter(), |s: &Bytes, out| write_json_string(out, s));
            }
            Elements::Str(v, true) => write_list(out, v[range].iter(), |s: &Bytes, out| {
                out.extend_from_slice(b"{\"b64\":\"");
                let start = out.len();
                out.resize(start + base64::encoded_len(s.len(), true).unwrap_or(0), 0);
                let written = base64::engine::general_purpose::STANDARD.encode_slice(s, &mut out[start..]).unwrap_or(0);
                out.truncate(start + written);
                out.extend_from_slice(b"\"}");
            }),
            Elements::Unwritable(dtype) => {
                if count > 0 {
                    return Err(ServingError::invalid_argument(format!(
                        "Failed to write JSON value for tensor type: {}",
                        dtype.tf_name()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Writes the elements from `start` nested as `dims` (a bare value when `dims` is empty).
    fn write_nested(&self, dims: &[usize], start: usize, out: &mut Vec<u8>) -> ServingResult<()> {
        let Some((&inner, outer)) = dims.split_last() else {
            return self.write_run(start, 1, out);
        };
        let mut next = start;
        // Writes one innermost list and returns where the next one starts.
        let mut innermost = |out: &mut Vec<u8>| -> ServingResult<()> {
            match self.map_keys {
                Some(keys) => {
                    out.push(b'{');
                    for (i, key) in keys.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        write_key(out, key);
                        self.write_run(next + i, 1, out)?;
                    }
                    out.push(b'}');
                }
                None => {
                    out.push(b'[');
                    self.write_run(next, inner, out)?;
                    out.push(b']');
                }
            }
            next += inner;
            Ok(())
        };
        if outer.is_empty() {
            return innermost(out);
        }
        // Lists opened at each outer level, and how many children each has written.
        let mut written: Vec<usize> = Vec::with_capacity(outer.len());
        out.push(b'[');
        written.push(0);
        while let Some(&count) = written.last() {
            let level = written.len() - 1;
            if count == outer[level] {
                out.push(b']');
                written.pop();
                if let Some(parent) = written.last_mut() {
                    *parent += 1;
                }
                continue;
            }
            if count > 0 {
                out.push(b',');
            }
            if level + 1 == outer.len() {
                innermost(out)?;
                if let Some(top) = written.last_mut() {
                    *top += 1;
                }
            } else {
                out.push(b'[');
                written.push(0);
            }
        }
        Ok(())
    }
}

fn write_list<I: IntoIterator>(out: &mut Vec<u8>, items: I, mut write: impl FnMut(I::Item, &mut Vec<u8>)) {
    let mut iter = items.into_iter();
    if let Some(first) = iter.next() {
        write(first, out);
    }
    for item in iter {
        out.push(b',');
        write(item, out);
    }
}

/// Writes floats comma separated, formatting each in place in a stack block that is appended
/// to `out` whenever it fills.
fn write_floats<T: Copy>(out: &mut Vec<u8>, items: &[T], format: impl Fn(T, &mut [u8; FLOAT_BUF]) -> usize) {
    if items.len() < 32 {
        // Short runs (row-format slices of multi-output responses): no block to clear.
        let mut buf = [0u8; FLOAT_BUF];
        for (i, &item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let len = format(item, &mut buf);
            out.extend_from_slice(&buf[..len]);
        }
        return;
    }
    let mut block = [0u8; 8192];
    let mut used = 0;
    for (i, &item) in items.iter().enumerate() {
        if used + FLOAT_BUF + 1 > block.len() {
            out.extend_from_slice(&block[..used]);
            used = 0;
        }
        if i > 0 {
            block[used] = b',';
            used += 1;
        }
        let Ok(window) = <&mut [u8; FLOAT_BUF]>::try_from(&mut block[used..used + FLOAT_BUF]) else {
            break;
        };
        used += format(item, window);
    }
    out.extend_from_slice(&block[..used]);
}

fn write_key(out: &mut Vec<u8>, key: &str) {
    write_json_string(out, key.as_bytes());
    out.push(b':');
}

/// Row format: `{"predictions": [...]}`, one entry per batch row.
fn write_rows(views: &[OutputView<'_>], out: &mut Vec<u8>) -> ServingResult<()> {
    let mut batch: Option<usize> = None;
    for view in views {
        let Some(&rows) = view.shape.first() else {
            return Err(ServingError::invalid_argument(format!(
                "Tensor name: {} has no shape information ",
                view.alias
            )));
        };
        match batch {
            Some(expected) if expected != rows => {
                return Err(ServingError::invalid_argument(format!(
                    "Tensor name: {} has inconsistent batch size: {rows} expecting: {expected}",
                    view.alias
                )));
            }
            _ => batch = Some(rows),
        }
    }
    let rows = batch.unwrap_or(0);
    if let [view] = views {
        // One output: the list of its row slices is exactly the whole tensor, nested.
        out.extend_from_slice(b"{\"predictions\":");
        view.write_nested(view.shape, 0, out)?;
        out.push(b'}');
        return Ok(());
    }
    out.extend_from_slice(b"{\"predictions\":[");
    for row in 0..rows {
        if row > 0 {
            out.push(b',');
        }
        out.push(b'{');
        for (i, view) in views.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_key(out, view.alias);
            let dims = &view.shape[1..];
            view.write_nested(dims, row * dims.iter().product::<usize>(), out)?;
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// Columnar format: `{"outputs": ...}`, each tensor whole.
fn write_columns(views: &[OutputView<'_>], out: &mut Vec<u8>) -> ServingResult<()> {
    out.extend_from_slice(b"{\"outputs\":");
    if let [view] = views {
        view.write_nested(view.shape, 0, out)?;
    } else {
        out.push(b'{');
        for (i, view) in views.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_key(out, view.alias);
            view.write_nested(view.shape, 0, out)?;
        }
        out.push(b'}');
    }
    out.push(b'}');
    Ok(())
}

//! Predict request bodies to input tensors: TF's `FillPredictRequestFromJson` rules.

use std::collections::BTreeMap;

use super::convert::Values;
use super::request::{format_error, invalid, parse_request, requested_signature, ROOT};
use super::tape::{Tag, Tape};
use super::{JsonFormat, PredictJsonRequest};
use crate::core::error::{ServingError, ServingResult};
use crate::core::signature::{find_signature, SignatureDef, SignatureMap, DEFAULT_SIGNATURE};
use crate::core::tensor::{DType, Tensor};

pub(crate) fn parse_predict_request(body: &[u8], signatures: &SignatureMap) -> ServingResult<PredictJsonRequest> {
    let tape = parse_request(body)?;
    let requested = requested_signature(&tape)?;
    decode_predict_request(&tape, &requested, signatures)
}

/// Decodes a parsed predict request; `requested` is its `signature_name` (empty when absent).
pub(crate) fn decode_predict_request(
    tape: &Tape<'_>,
    requested: &str,
    signatures: &SignatureMap,
) -> ServingResult<PredictJsonRequest> {
    let (signature_name, signature) = predict_signature(signatures, requested)?;
    let instances = tape.find_member(ROOT, b"instances");
    let inputs = tape.find_member(ROOT, b"inputs");
    let (format, inputs) = match (instances, inputs) {
        (Some(_), Some(_)) => {
            return Err(format_error(
                tape,
                ROOT,
                "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to \
                 exist ",
            ));
        }
        (Some(list), None) => (JsonFormat::Row, decode_instances(tape, list, signature)?),
        (None, Some(value)) => (JsonFormat::Columnar, decode_inputs(tape, value, signature)?),
        (None, None) => return Err(invalid("Missing 'inputs' or 'instances' key")),
    };
    Ok(PredictJsonRequest { signature_name, format, inputs })
}

/// Returns the signature a predict request runs (`serving_default` when `requested` is empty)
/// and checks it has inputs, with TF's messages.
pub(crate) fn predict_signature<'s>(
    signatures: &'s SignatureMap,
    requested: &str,
) -> ServingResult<(String, &'s SignatureDef)> {
    let signature_name = if requested.is_empty() { DEFAULT_SIGNATURE } else { requested };
    let signature = find_signature(signatures, signature_name)?;
    if signature.inputs.is_empty() {
        let shown = if requested.is_empty() { "DEFAULT" } else { requested };
        return Err(invalid(format!("Failed to get input map for signature: {shown}")));
    }
    Ok((signature_name.to_owned(), signature))
}

/// Reusable buffers for shape detection and the fill walk.
#[derive(Default)]
struct Scratch {
    shape: Vec<usize>,
    stack: Vec<u32>,
}

/// One signature input being filled from the rows of `instances`.
struct RowInput<'s> {
    alias: &'s str,
    values: Values,
    /// Element count and shape of the first instance, which later ones must match.
    first: Option<(usize, Vec<usize>)>,
}

/// TF's `IsElementObject`: an object that is not a `{"b64": ...}` value.
fn is_element_object(tape: &Tape<'_>, idx: usize) -> bool {
    tape.tag(idx) == Tag::Object && !tape.is_b64_object(idx)
}

fn decode_instances(tape: &Tape<'_>, list: usize, signature: &SignatureDef) -> ServingResult<BTreeMap<String, Tensor>> {
    if tape.tag(list) != Tag::Array {
        return Err(format_error(tape, ROOT, "Expecting 'instances' to be an list/array"));
    }
    let rows = tape.node(list).len as usize;
    if rows == 0 {
        return Err(format_error(tape, ROOT, "No values in 'instances' array"));
    }
    let first_row = list + 1;
    if tape.tag(first_row) != Tag::Object && signature.inputs.len() > 1 {
        return Err(invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors \
             required as per tensorinfo_map",
        ));
    }
    let mut inputs: Vec<RowInput<'_>> = signature
        .inputs
        .iter()
        .map(|(alias, info)| RowInput { alias, values: Values::new(info.dtype), first: None })
        .collect();
    let objects = is_element_object(tape, first_row);
    let mut scratch = Scratch::default();
    let mut present = vec![false; inputs.len()];
    let mut start_row = 0;
    if !objects && !matches!(tape.tag(first_row), Tag::Array | Tag::Object) {
        // Fast path: a leading run of scalar instances, each one node, shape [] and size 1.
        let input = &mut inputs[0];
        input.values.reserve(rows);
        let end = tape.next(list);
        start_row = input.values.push_numbers(&tape.nodes[first_row..end]);
        if start_row > 0 {
            input.first = Some((1, Vec::new()));
        }
    }
    let mut next = first_row + start_row;
    for row in start_row..rows {
        let elem = next;
        next = tape.next(elem);
        if objects {
            if !is_element_object(tape, elem) {
                return Err(invalid(format!("Expecting object but got list at item {row} of input list")));
            }
            present.iter_mut().for_each(|p| *p = false);
            for (key_idx, value) in tape.members(elem) {
                let key = tape.str_bytes(key_idx);
                let wrap = |status: ServingError| {
                    invalid(format!(
                        "Failed to process element: {row} key: {} of 'instances' list. Error: {}",
                        String::from_utf8_lossy(key),
                        status.to_status_string()
                    ))
                };
                let Some(pos) = inputs.iter().position(|input| input.alias.as_bytes() == key) else {
                    return Err(wrap(invalid(format!(
                        "JSON object: does not have named input: {}",
                        String::from_utf8_lossy(key)
                    ))));
                };
                present[pos] = true;
                add_instance_item(tape, value, &mut inputs[pos], rows, &mut scratch).map_err(wrap)?;
            }
            if present.iter().any(|p| !p) {
                let names: Vec<&str> = inputs.iter().map(|input| input.alias).collect();
                return Err(invalid(format!(
                    "Failed to process element: {row} of 'instances' list. JSON object: {} keys \
                     must be equal to: {}",
                    tape.debug_string(elem),
                    names.join(",")
                )));
            }
        } else {
            if is_element_object(tape, elem) {
                return Err(invalid(format!("Expecting value/list but got object at item {row} of input list")));
            }
            // NOTE: the check above only rejects a plain first element with several inputs; a
            // b64 first element still lands here, and like TF fills only the first input.
            add_instance_item(tape, elem, &mut inputs[0], rows, &mut scratch).map_err(|status| {
                invalid(format!(
                    "Failed to process element: {row} of 'instances' list. Error: {}",
                    status.to_status_string()
                ))
            })?;
        }
    }
    let mut tensors = BTreeMap::new();
    for input in inputs {
        let Some((_, element_shape)) = input.first else { continue };
        let mut shape = Vec::with_capacity(element_shape.len() + 1);
        shape.push(rows);
        shape.extend_from_slice(&element_shape);
        let expected = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if expected != Some(input.values.len()) {
            // NOTE: only a key repeated inside one instance object gets here; TF then fails to
            // turn the over-filled TensorProto into a tensor.
            return Err(invalid(format!("tensor parsing error: {}", input.alias)));
        }
        tensors.insert(input.alias.to_owned(), input.values.into_tensor(shape));
    }
    Ok(tensors)
}

/// TF's `AddInstanceItem`: appends one instance and checks it matches the first one.
fn add_instance_item(
    tape: &Tape<'_>,
    item: usize,
    input: &mut RowInput<'_>,
    rows: usize,
    scratch: &mut Scratch,
) -> ServingResult<()> {
    scratch.shape.clear();
    let size = if tape.tag(item) == Tag::Array {
        dense_shape(tape, item, &mut scratch.shape)?;
        let before = input.values.len();
        fill(tape, item, &scratch.shape, &mut input.values, &mut scratch.stack)?;
        input.values.len() - before
    } else {
        // A scalar instance: shape [] and one value (the common `[1.0, 2.0, ...]` case).
        input.values.push_leaf(tape, item)?;
        1
    };
    match &input.first {
        None => {
            let wanted = size.saturating_mul(rows.saturating_sub(1)).min(tape.nodes.len());
            input.values.reserve(wanted);
            input.first = Some((size, scratch.shape.clone()));
        }
        Some((first_size, _)) if *first_size != size => {
            return Err(invalid(format!("Expecting tensor size: {first_size} but got: {size}")));
        }
        Some((_, first_shape)) if *first_shape != scratch.shape => {
            return Err(invalid(format!(
                "Expecting shape {} but got: {}",
                shape_string(first_shape),
                shape_string(&scratch.shape)
            )));
        }
        Some(_) => {}
    }
    Ok(())
}

fn shape_string(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join(","))
}

/// Decodes columnar `inputs`: a plain value for a single input, else an object by alias.
pub(crate) fn decode_inputs(
    tape: &Tape<'_>,
    value: usize,
    signature: &SignatureDef,
) -> ServingResult<BTreeMap<String, Tensor>> {
    let mut tensors = BTreeMap::new();
    let mut scratch = Scratch::default();
    if tape.tag(value) != Tag::Object || tape.is_b64_object(value) {
        if signature.inputs.len() > 1 {
            return Err(invalid(
                "inputs is a plain value/list, but expecting an object as multiple input tensors \
                 required as per tensorinfo_map",
            ));
        }
        for (alias, info) in &signature.inputs {
            let tensor = decode_whole(tape, value, info.dtype, &mut scratch)?;
            tensors.insert(alias.clone(), tensor);
        }
        return Ok(tensors);
    }
    for (alias, info) in &signature.inputs {
        let Some(item) = tape.find_member(value, alias.as_bytes()) else {
            return Err(invalid(format!("Missing named input: {alias} in 'inputs' object.")));
        };
        let tensor = decode_whole(tape, item, info.dtype, &mut scratch)?;
        tensors.insert(alias.clone(), tensor);
    }
    Ok(tensors)
}

/// Decodes one value into a tensor of its natural nested shape.
fn decode_whole(tape: &Tape<'_>, item: usize, dtype: DType, scratch: &mut Scratch) -> ServingResult<Tensor> {
    let mut shape = Vec::new();
    dense_shape(tape, item, &mut shape)?;
    let mut values = Values::new(dtype);
    let expected = shape.iter().fold(1usize, |acc, &d| acc.saturating_mul(d));
    values.reserve(expected.min(tape.nodes.len()));
    fill(tape, item, &shape, &mut values, &mut scratch.stack)?;
    Ok(values.into_tensor(shape))
}

/// TF's `GetDenseTensorShape`: each dimension is the length of the first list at that level,
/// up to TF's limit on dimensions (a deeply nested value is refused, not made a tensor).
fn dense_shape(tape: &Tape<'_>, mut idx: usize, shape: &mut Vec<usize>) -> ServingResult<()> {
    while tape.tag(idx) == Tag::Array {
        let len = tape.node(idx).len as usize;
        shape.push(len);
        crate::core::tensor::check_rank(shape.len())?;
        if len == 0 {
            break;
        }
        idx += 1;
    }
    Ok(())
}

/// TF's `FillTensorProto`, walked iteratively: every list must sit above the leaves with the
/// size `shape` gives its level, and every leaf must sit at level `shape.len()`.
fn fill(tape: &Tape<'_>, root: usize, shape: &[usize], values: &mut Values, stack: &mut Vec<u32>) -> ServingResult<()> {
    let rank = shape.len();
    stack.clear();
    let mut idx = root;
    loop {
        let node = tape.node(idx);
        let level = stack.len();
        if node.tag == Tag::Array {
            let Some(&expected) = shape.get(level) else {
                return Err(invalid(format!("Encountered list at unexpected level: {level} expected < {rank}")));
            };
            if node.len as usize != expected {
                return Err(invalid(format!(
                    "Encountered list at unexpected size: {} at level: {level} expected size: \
                     {expected}",
                    node.len
                )));
            }
            idx += 1;
            let mut left = node.len;
            if level + 1 == rank {
                // Innermost list: take its leading run of plain numbers in one go.
                let end = (idx + left as usize).min(tape.nodes.len());
                let taken = values.push_numbers(&tape.nodes[idx..end]);
                idx += taken;
                left -= taken as u32;
            }
            if left > 0 {
                stack.push(left);
                continue;
            }
        } else {
            if level != rank {
                return Err(invalid(format!(
                    "JSON Value: {} found at incorrect level: {} in the JSON DOM. Expected at \
                     level: {rank}",
                    tape.debug_string(idx),
                    level + 1
                )));
            }
            values.push_leaf(tape, idx)?;
            idx = tape.next(idx);
        }
        // A value finished: pop every list it completed.
        loop {
            let Some(left) = stack.last_mut() else { return Ok(()) };
            *left -= 1;
            if *left > 0 {
                break;
            }
            stack.pop();
        }
    }
}

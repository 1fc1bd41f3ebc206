//! Float text as TF Serving's `WriteDecimal` writes it: `%.6g`, else `%.9g` (f32) or `%.17g`
//! (f64) when the short text would not read back as the same value.
//!
//! This module owns the writers and the special values (NaN, infinities, zeros);
//! `float_round` decides the digits and `float_layout` lays them out as `%g` text.

use super::float_layout::format_g;
pub(crate) use super::float_layout::FLOAT_BUF;
use super::float_round::{exact_g, exact_round, fast_f32, fast_six, Rounded, Width};

/// Writes an f32 exactly as TF Serving's `WriteDecimal<float>`.
///
/// NaN is `NaN`, infinities are `Infinity`/`-Infinity`; a finite value is `%.6g` when that reads
/// back as the same f32, else `%.9g`; `.0` is appended when there is neither `.` nor `e`.
pub fn write_f32(value: f32, out: &mut Vec<u8>) {
    let mut buf = [0u8; FLOAT_BUF];
    let len = format_f32(value, &mut buf);
    out.extend_from_slice(&buf[..len]);
}

/// Writes an f64 exactly as TF Serving's `WriteDecimal<double>` (`%.6g`, else `%.17g`).
pub fn write_f64(value: f64, out: &mut Vec<u8>) {
    let mut buf = [0u8; FLOAT_BUF];
    let len = format_f64(value, &mut buf);
    out.extend_from_slice(&buf[..len]);
}

/// Formats as `write_f32` into `buf` and returns the length.
// NOTE: always inlined into the encoder's loop, where it is the whole per-element cost.
#[inline(always)]
pub(crate) fn format_f32(value: f32, buf: &mut [u8; FLOAT_BUF]) -> usize {
    // One compare catches zero (the subtraction wraps) and NaN/Inf (exponent bits all set).
    if (value.to_bits() & 0x7FFF_FFFF).wrapping_sub(1) >= 0x7F7F_FFFF {
        if let Some(len) = format_special(f64::from(value), buf) {
            return len;
        }
    }
    let sign = usize::from(value.is_sign_negative());
    buf[0] = b'-';
    let v = value.abs();
    // NOTE: separate calls per precision let each be specialised, and make the 6-or-9 choice a
    // predictable branch instead of a data dependency in front of the digit writing.
    match fast_f32(v) {
        Some(r) if r.precision == 9 => format_g::<9>(r.digits, r.exp10, buf, sign),
        Some(r) => format_g::<6>(r.digits, r.exp10, buf, sign),
        None => format_rounded(exact_g(f64::from(v), Width::F32), buf, sign),
    }
}

/// Writes a rounding with its precision picked at run time.
fn format_rounded(rounded: Rounded, buf: &mut [u8; FLOAT_BUF], pos: usize) -> usize {
    match rounded.precision {
        6 => format_g::<6>(rounded.digits, rounded.exp10, buf, pos),
        9 => format_g::<9>(rounded.digits, rounded.exp10, buf, pos),
        _ => format_g::<17>(rounded.digits, rounded.exp10, buf, pos),
    }
}

/// Formats as `write_f64` into `buf` and returns the length.
pub(crate) fn format_f64(value: f64, buf: &mut [u8; FLOAT_BUF]) -> usize {
    if let Some(len) = format_special(value, buf) {
        return len;
    }
    let sign = usize::from(value.is_sign_negative());
    buf[0] = b'-';
    let v = value.abs();
    let rounded = match fast_six(v) {
        Some((six, back)) if back == v => six,
        Some(_) => exact_round(v, 17),
        None => exact_g(v, Width::F64),
    };
    format_rounded(rounded, buf, sign)
}

/// Formats NaN, infinities and zeros; returns `None` for other values.
fn format_special(value: f64, buf: &mut [u8; FLOAT_BUF]) -> Option<usize> {
    let text: &[u8] = if value.is_nan() {
        b"NaN"
    } else if value.is_infinite() {
        if value > 0.0 {
            b"Infinity"
        } else {
            b"-Infinity"
        }
    } else if value == 0.0 {
        if value.is_sign_negative() {
            b"-0.0"
        } else {
            b"0.0"
        }
    } else {
        return None;
    };
    buf[..text.len()].copy_from_slice(text);
    Some(text.len())
}

#[cfg(test)]
pub(crate) mod reference {
    //! Exact reference formatting for tests: always takes the slow path.

    use super::*;

    pub fn write_f32_exact(value: f32, out: &mut Vec<u8>) {
        write_exact(f64::from(value), Width::F32, out);
    }

    pub fn write_f64_exact(value: f64, out: &mut Vec<u8>) {
        write_exact(value, Width::F64, out);
    }

    fn write_exact(value: f64, width: Width, out: &mut Vec<u8>) {
        let mut buf = [0u8; FLOAT_BUF];
        let len = match format_special(value, &mut buf) {
            Some(len) => len,
            None => {
                buf[0] = b'-';
                let sign = usize::from(value.is_sign_negative());
                format_rounded(exact_g(value.abs(), width), &mut buf, sign)
            }
        };
        out.extend_from_slice(&buf[..len]);
    }
}

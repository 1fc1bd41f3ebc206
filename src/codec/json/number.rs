//! Number tokens: rapidjson's grammar with NaN/Infinity, its error offsets, and exact values.
//!
//! Values are exact: Clinger's fast path (an exact mantissa times an exact power of ten, one
//! rounding) or, failing that, Rust's correctly rounded `str::parse`. rapidjson without
//! `kParseFullPrecisionFlag` may be off by an ulp on long doubles; this parser never is.

use super::error::{SyntaxError, INVALID_VALUE, MISS_EXPONENT, MISS_FRACTION, NUMBER_TOO_BIG};
use super::tape::{Node, Tag};

static POW10_F64: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

static POW10_U64: [u64; 9] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];

/// Returns the value and count (0 to 8) of the ASCII digits starting at `pos`, reading eight
/// bytes at once where the input allows.
#[inline(always)]
fn leading_digits(src: &[u8], pos: usize) -> (u64, usize) {
    let Some(bytes) = src.get(pos..pos + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
        let mut value = 0;
        let mut count = 0;
        while count < 8 {
            let d = peek(src, pos + count);
            if !d.is_ascii_digit() {
                break;
            }
            value = value * 10 + u64::from(d - b'0');
            count += 1;
        }
        return (value, count);
    };
    let chunk = u64::from_le_bytes(bytes);
    // A digit byte has high nibble 3, and still has it after adding 6. Carries only move
    // towards later bytes, so every byte up to the first non-digit is judged correctly.
    let high = chunk & 0xF0F0_F0F0_F0F0_F0F0;
    let shifted = chunk.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0;
    let mismatch = (high ^ 0x3030_3030_3030_3030) | (shifted ^ 0x3030_3030_3030_3030);
    let count = (mismatch.trailing_zeros() / 8) as usize;
    if count == 0 {
        return (0, 0);
    }
    // Keep the digit bytes, as values 0-9, moved up so missing digits read as leading zeros.
    let mut v = chunk.wrapping_sub(0x3030_3030_3030_3030);
    if count < 8 {
        v = (v & (u64::MAX >> (64 - 8 * count))) << (8 * (8 - count));
    }
    v = v.wrapping_mul(10).wrapping_add(v >> 8);
    v = ((v & 0x0000_00FF_0000_00FF)
        .wrapping_mul(100 + (1_000_000 << 32))
        .wrapping_add(((v >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32))))
        >> 32;
    (v, count)
}

/// Appends `count` digits of value `value` to `mantissa`, or marks it inexact on overflow.
#[inline(always)]
fn accumulate(mantissa: &mut u64, inexact: &mut bool, value: u64, count: usize) {
    if *inexact || count == 0 {
        return;
    }
    match mantissa.checked_mul(POW10_U64[count]).and_then(|m| m.checked_add(value)) {
        Some(m) => *mantissa = m,
        None => *inexact = true,
    }
}

fn peek(src: &[u8], pos: usize) -> u8 {
    src.get(pos).copied().unwrap_or(0)
}

/// Scans the common short forms, `-?D(.D)?` with 1 to 7 digits in each part and no exponent,
/// or returns `None` for `scan_number` to handle (including every error).
#[inline(always)]
pub(crate) fn scan_short_number(src: &[u8], start: usize) -> Option<(Node, usize)> {
    let negative = peek(src, start) == b'-';
    let mut pos = start + usize::from(negative);
    let (int_value, int_count) = leading_digits(src, pos);
    if int_count == 0 || int_count == 8 || (int_count > 1 && peek(src, pos) == b'0') {
        return None;
    }
    pos += int_count;
    let node = if peek(src, pos) == b'.' {
        let (frac_value, frac_count) = leading_digits(src, pos + 1);
        if frac_count == 0 || frac_count == 8 {
            return None;
        }
        pos += 1 + frac_count;
        // Both parts have at most 7 digits, so the mantissa is exact and below 2^53.
        let mantissa = int_value * POW10_U64[frac_count] + frac_value;
        let magnitude = mantissa as i64 as f64 / POW10_F64[frac_count];
        double_node(if negative { -magnitude } else { magnitude })
    } else {
        let value = if negative { -(int_value as i64) } else { int_value as i64 };
        Node { tag: Tag::Int, len: 0, val: value as u64 }
    };
    if matches!(peek(src, pos), b'e' | b'E' | b'.') {
        return None;
    }
    Some((node, pos))
}

/// Scans the number token at `start` and returns its node and the offset just past it.
// NOTE: always inlined: returning the node through memory stalls on store forwarding.
#[inline(always)]
pub(crate) fn scan_number(src: &[u8], start: usize) -> Result<(Node, usize), SyntaxError> {
    let mut pos = start;
    let negative = peek(src, pos) == b'-';
    if negative {
        pos += 1;
    }
    let int_start = pos;
    let mut mantissa: u64 = 0;
    let mut power: i64 = 0;
    // Set when digits were dropped from the mantissa: the value then comes from `str::parse`.
    let mut inexact = false;
    let mut special: Option<f64> = None;
    match peek(src, pos) {
        b'0' => pos += 1,
        b'1'..=b'9' => loop {
            let (value, count) = leading_digits(src, pos);
            accumulate(&mut mantissa, &mut inexact, value, count);
            pos += count;
            if count < 8 {
                break;
            }
        },
        b'N' => {
            pos += 1;
            if peek(src, pos) == b'a' {
                pos += 1;
                if peek(src, pos) == b'N' {
                    pos += 1;
                    special = Some(f64::NAN);
                }
            }
            if special.is_none() {
                return Err(SyntaxError::at(INVALID_VALUE, pos));
            }
        }
        b'I' => {
            pos += 1;
            if peek(src, pos) == b'n' {
                pos += 1;
                if peek(src, pos) == b'f' {
                    pos += 1;
                    special = Some(if negative { f64::NEG_INFINITY } else { f64::INFINITY });
                    if peek(src, pos) == b'i' {
                        for &c in b"inity" {
                            if peek(src, pos) != c {
                                return Err(SyntaxError::at(INVALID_VALUE, pos));
                            }
                            pos += 1;
                        }
                    }
                }
            }
            if special.is_none() {
                return Err(SyntaxError::at(INVALID_VALUE, pos));
            }
        }
        _ => return Err(SyntaxError::at(INVALID_VALUE, pos)),
    }
    let int_end = pos;

    let mut has_fraction = false;
    if peek(src, pos) == b'.' {
        pos += 1;
        if !peek(src, pos).is_ascii_digit() {
            return Err(SyntaxError::at(MISS_FRACTION, pos));
        }
        has_fraction = true;
        loop {
            let (value, count) = leading_digits(src, pos);
            accumulate(&mut mantissa, &mut inexact, value, count);
            power -= count as i64;
            pos += count;
            if count < 8 {
                break;
            }
        }
    }
    let frac_end = pos;

    let mut has_exponent = false;
    let mut exp_negative = false;
    let mut exp_value: i64 = 0;
    if matches!(peek(src, pos), b'e' | b'E') {
        pos += 1;
        match peek(src, pos) {
            b'+' => pos += 1,
            b'-' => {
                exp_negative = true;
                pos += 1;
            }
            _ => {}
        }
        if !peek(src, pos).is_ascii_digit() {
            return Err(SyntaxError::at(MISS_EXPONENT, pos));
        }
        has_exponent = true;
        while let d @ b'0'..=b'9' = peek(src, pos) {
            exp_value = (exp_value * 10 + i64::from(d - b'0')).min(1 << 40);
            pos += 1;
        }
    }
    let end = pos;

    if !has_fraction && !has_exponent {
        if let Some(value) = special {
            return Ok((double_node(value), end));
        }
        if let Some(node) = integer_node(src, start, end, negative, mantissa, inexact) {
            return Ok((node, end));
        }
    }

    if has_exponent && !exp_negative && exp_value > 308 {
        // NOTE: rapidjson rejects a positive exponent above 308 plus the fraction digits it
        // folded into its significand, even when the value itself would be finite or zero.
        let int_digits: &[u8] = if special.is_some() { b"0" } else { &src[int_start..int_end] };
        let frac_digits = if has_fraction { &src[int_end + 1..frac_end] } else { &[][..] };
        let absorbed = rapidjson_fraction_digits(int_digits, frac_digits, negative);
        if exp_value > 308 + absorbed {
            return Err(SyntaxError::at(NUMBER_TOO_BIG, start));
        }
    }

    let exp10 = power + if exp_negative { -exp_value } else { exp_value };
    let magnitude = if mantissa == 0 && !inexact {
        0.0
    } else if !inexact && mantissa <= 1 << 53 && exp10.unsigned_abs() < POW10_F64.len() as u64 {
        let pow = POW10_F64[exp10.unsigned_abs() as usize];
        // The mantissa is at most 2^53: the signed conversion is exact and cheaper.
        let mantissa = mantissa as i64 as f64;
        if exp10 >= 0 {
            mantissa * pow
        } else {
            mantissa / pow
        }
    } else {
        // NOTE: NaN/Infinity followed by a fraction or exponent reads as an integer part of 0,
        // as in rapidjson.
        let int_text: &[u8] = if special.is_some() { b"0" } else { &src[int_start..int_end] };
        let mut text = String::with_capacity(end - start + 1);
        text.extend(int_text.iter().map(|&b| char::from(b)));
        text.extend(src[int_end..end].iter().map(|&b| char::from(b)));
        text.parse::<f64>().unwrap_or(f64::INFINITY)
    };
    if magnitude.is_infinite() {
        return Err(SyntaxError::at(NUMBER_TOO_BIG, start));
    }
    Ok((double_node(if negative { -magnitude } else { magnitude }), end))
}

fn double_node(value: f64) -> Node {
    Node { tag: Tag::Double, len: 0, val: value.to_bits() }
}

/// Returns the node of an integer token, or `None` when it does not fit 64 bits (rapidjson
/// then stores a double).
fn integer_node(src: &[u8], start: usize, end: usize, negative: bool, mantissa: u64, inexact: bool) -> Option<Node> {
    let magnitude = if inexact {
        // More than 19 digits: only a 20-digit value up to u64::MAX still fits.
        let text = std::str::from_utf8(&src[start + usize::from(negative)..end]).ok()?;
        text.parse::<u64>().ok()?
    } else {
        mantissa
    };
    if negative {
        if magnitude > 1 << 63 {
            return None;
        }
        let value = 0i64.wrapping_sub(magnitude as i64);
        Some(Node { tag: Tag::Int, len: 0, val: value as u64 })
    } else if magnitude <= i64::MAX as u64 {
        Some(Node { tag: Tag::Int, len: 0, val: magnitude })
    } else {
        Some(Node { tag: Tag::Uint, len: 0, val: magnitude })
    }
}

/// Returns how many fraction digits rapidjson's `ParseNumber` folds into its significand
/// (`-expFrac`), which sets the largest positive exponent it accepts.
fn rapidjson_fraction_digits(int_digits: &[u8], frac_digits: &[u8], negative: bool) -> i64 {
    let limit: u64 = if negative { 1 << 63 } else { u64::MAX };
    let mut significant: u32 = 0;
    let mut value: u64 = 0;
    let mut use_double = false;
    if let Some((&first, rest)) = int_digits.split_first() {
        value = u64::from(first - b'0');
        for &d in rest {
            let next = value.checked_mul(10).and_then(|v| v.checked_add(u64::from(d - b'0')));
            match next {
                Some(v) if v <= limit => {
                    value = v;
                    significant += 1;
                }
                _ => {
                    use_double = true;
                    break;
                }
            }
        }
    }
    let mut absorbed: i64 = 0;
    let mut rest = frac_digits;
    let mut nonzero = value != 0;
    if !use_double {
        while let Some((&d, tail)) = rest.split_first() {
            if value > (1 << 53) - 1 {
                break;
            }
            value = value * 10 + u64::from(d - b'0');
            absorbed += 1;
            if value != 0 {
                significant += 1;
            }
            rest = tail;
        }
        nonzero = value != 0;
    }
    for &d in rest {
        if significant < 17 {
            absorbed += 1;
            nonzero |= d != b'0';
            if nonzero {
                significant += 1;
            }
        }
    }
    absorbed
}

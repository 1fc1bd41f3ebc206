//! rapidjson's `Writer::Double` text, for numbers nested inside the value dumps of error messages.

use super::text::write_u64;

/// Writes a finite f64 as rapidjson's `Writer::Double` (Grisu shortest digits, `Prettify`
/// layout), used for numbers nested inside debug text. Shortest digits come from ryu.
pub(crate) fn write_rapidjson_double(v: f64, out: &mut Vec<u8>) {
    if v == 0.0 {
        out.extend_from_slice(if v.is_sign_negative() { b"-0.0" } else { b"0.0" });
        return;
    }
    if v < 0.0 {
        out.push(b'-');
    }
    let mut buffer = ryu::Buffer::new();
    let (digits, k) = shortest_digits(buffer.format_finite(v.abs()));
    let length = digits.len() as i32;
    let kk = length + k;
    if (0..=21).contains(&kk) && k >= 0 {
        out.extend_from_slice(&digits);
        out.resize(out.len() + k as usize, b'0');
        out.extend_from_slice(b".0");
    } else if 0 < kk && kk <= 21 {
        out.extend_from_slice(&digits[..kk as usize]);
        out.push(b'.');
        out.extend_from_slice(&digits[kk as usize..]);
    } else if -6 < kk && kk <= 0 {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + (-kk) as usize, b'0');
        out.extend_from_slice(&digits);
    } else {
        out.push(digits[0]);
        if length > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        let exp = kk - 1;
        if exp < 0 {
            out.push(b'-');
        }
        write_u64(out, u64::from(exp.unsigned_abs()));
    }
}

/// Splits ryu's text into significant digits (no leading or trailing zeros) and the power of
/// ten of the last digit.
fn shortest_digits(text: &str) -> (Vec<u8>, i32) {
    let (mantissa, exponent) = match text.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let mut digits = Vec::with_capacity(20);
    let mut k = exponent;
    let mut after_point = false;
    for b in mantissa.bytes() {
        match b {
            b'.' => after_point = true,
            b'0'..=b'9' => {
                if !(digits.is_empty() && b == b'0') {
                    digits.push(b);
                }
                if after_point {
                    k -= 1;
                }
            }
            _ => {}
        }
    }
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
        k += 1;
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    (digits, k)
}

//! Laying out rounded digits as `%g` text: trailing zeros stripped, exponent form outside
//! 1e-4..10^precision, `.0` appended to bare integers, digits written without divisions.

use super::text::DIGIT_PAIRS;

/// Room for the longest text `format_f32`/`format_f64` write (24 bytes) plus the slack their
/// fixed-size copies overwrite.
pub(crate) const FLOAT_BUF: usize = 40;

/// Writes a rounded value in `%g` style at `buf[pos..]` and returns the end: trailing zeros
/// stripped, exponent form when the exponent is below -4 or at least the precision, and `.0`
/// appended to bare integers.
///
/// Digits are moved with fixed 17-byte copies and the end advanced by the real length, which
/// avoids length-dependent branches and `memcpy` calls; `buf` has room for the overshoot.
#[inline(always)]
pub(super) fn format_g<const P: usize>(digits: u64, exp10: i32, buf: &mut [u8; FLOAT_BUF], mut pos: usize) -> usize {
    if (-4..0).contains(&exp10) && P <= 9 {
        // The common case of values in [1e-4, 1): "0." and zeros, then the digits in place.
        buf[pos..pos + 6].copy_from_slice(b"0.0000");
        let start = pos + 1 + exp10.unsigned_abs() as usize;
        let Ok(slot) = <&mut [u8; 9]>::try_from(&mut buf[start..start + 9]) else {
            return pos;
        };
        return start + write_stripped::<P>(digits, slot);
    }
    let mut text = [b'0'; 40];
    let count = match <&mut [u8; 9]>::try_from(&mut text[..9]) {
        Ok(slot) if P <= 9 => write_stripped::<P>(digits, slot),
        _ => {
            write_digits(digits, &mut text[..P]);
            let mut count = P;
            while count > 1 && text[count - 1] == b'0' {
                count -= 1;
            }
            count
        }
    };
    if exp10 < -4 || exp10 >= P as i32 {
        buf[pos] = text[0];
        buf[pos + 1] = b'.';
        buf[pos + 2..pos + 19].copy_from_slice(&text[1..18]);
        pos += if count > 1 { count + 1 } else { 1 };
        buf[pos] = b'e';
        buf[pos + 1] = if exp10 < 0 { b'-' } else { b'+' };
        pos += 2;
        let magnitude = exp10.unsigned_abs() as usize;
        if magnitude >= 100 {
            buf[pos] = b'0' + (magnitude / 100) as u8;
            pos += 1;
        }
        let pair = (magnitude % 100) * 2;
        buf[pos..pos + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        pos + 2
    } else if exp10 >= 0 {
        let int_len = exp10 as usize + 1;
        buf[pos..pos + 17].copy_from_slice(&text[..17]);
        buf[pos + int_len] = b'.';
        if count > int_len {
            buf[pos + int_len + 1..pos + int_len + 18].copy_from_slice(&text[int_len..int_len + 17]);
            pos + count + 1
        } else {
            buf[pos + int_len + 1] = b'0';
            pos + int_len + 2
        }
    } else {
        buf[pos..pos + 6].copy_from_slice(b"0.0000");
        pos += 1 + exp10.unsigned_abs() as usize;
        buf[pos..pos + 17].copy_from_slice(&text[..17]);
        pos + count
    }
}

/// Writes the `P` (6 or 9) digits of `digits` to `slot` and returns the count without
/// trailing zeros.
#[inline(always)]
fn write_stripped<const P: usize>(digits: u64, slot: &mut [u8; 9]) -> usize {
    if P == 9 {
        write_nine_digits(digits, slot);
    } else {
        write_six_digits(digits, slot);
    }
    let mut count = P;
    while count > 1 && slot[count - 1] == b'0' {
        count -= 1;
    }
    count
}

/// Mask of the fraction bits of the Q57 fixed-point values below.
const Q57_MASK: u64 = (1 << 57) - 1;

/// Writes the 9 digits of `v < 10^9` to `text[..9]` without divisions: `v / 10^8` in Q57 fixed
/// point gives the first digit, and each multiply by 100 of the fraction the next pair. The
/// constant is rounded up, and the error stays below one digit for every `v` (checked
/// exhaustively when written).
#[inline(always)]
fn write_nine_digits(v: u64, text: &mut [u8; 9]) {
    let mut f = v * ((1 << 57) / 100_000_000 + 1);
    text[0] = b'0' + (f >> 57) as u8;
    for i in 0..4 {
        f = (f & Q57_MASK) * 100;
        let pair = (f >> 57) as usize * 2;
        text[1 + 2 * i..3 + 2 * i].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
}

/// Writes the 6 digits of `v < 10^6` to `text[..6]`, as `write_nine_digits` does.
#[inline(always)]
fn write_six_digits(v: u64, text: &mut [u8; 9]) {
    let mut f = v * ((1 << 57) / 10_000 + 1);
    for i in 0..3 {
        let pair = (f >> 57) as usize * 2;
        text[2 * i..2 + 2 * i].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        f = (f & Q57_MASK) * 100;
    }
}

/// Fills `buf` with the decimal digits of `v`, right-aligned, two at a time.
fn write_digits(mut v: u64, buf: &mut [u8]) {
    let mut pos = buf.len();
    while pos >= 2 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        buf[pos - 2..pos].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        pos -= 2;
    }
    if pos == 1 {
        buf[0] = b'0' + (v % 10) as u8;
    }
}

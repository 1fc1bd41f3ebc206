//! Rounding a positive float to the significant digits `WriteDecimal` prints: the `%.6g`
//! round-trip test and the `%.9g`/`%.17g` fallback.
//!
//! f32 goes through an exact integer fast path (`fast_f32`); f64's `%.6g` check uses Clinger's
//! fast path (one correctly rounded multiply or divide by an exact power of ten). What neither
//! can settle (subnormals, extreme magnitudes, near ties) takes Rust's exact `{:.Ne}`
//! formatting, which rounds half to even like glibc's `printf`.

use std::fmt::Write as _;

static POW10_U64: [u64; 18] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
    10_000_000_000_000_000,
    100_000_000_000_000_000,
];

static POW10_F64: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// The float type a printed value must read back as.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Width {
    F32,
    F64,
}

/// A positive value rounded to `precision` significant digits: `digits` has exactly that many
/// digits and its first digit has weight 10^`exp10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rounded {
    pub digits: u64,
    pub exp10: i32,
    pub precision: u32,
}

impl Rounded {
    /// Builds a rounding whose digits may have carried to `10^precision`.
    fn carry(digits: u64, exp10: i32, precision: u32) -> Self {
        if digits == POW10_U64[precision as usize] {
            Rounded { digits: digits / 10, exp10: exp10 + 1, precision }
        } else {
            Rounded { digits, exp10, precision }
        }
    }
}

/// Returns `x * 10^k` with a single rounding, or `None` when 10^|k| is not exact in f64.
fn scale(x: f64, k: i32) -> Option<f64> {
    let power = *POW10_F64.get(k.unsigned_abs() as usize)?;
    Some(if k >= 0 { x * power } else { x / power })
}

/// Returns floor(log10(x)) or one less, from the binary exponent of a normal `x`.
fn estimate_exp10(x: f64) -> i32 {
    let binary_exp = ((x.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    // NOTE: 78913 / 2^18 is log10(2) to within 2e-7, exact enough for |exponent| < 1650.
    (binary_exp * 78913) >> 18
}

/// Rounds a normal positive `x` to `precision` digits, or `None` when the fast path cannot be
/// sure of the rounding.
fn round_fast(x: f64, estimate: i32, precision: u32) -> Option<Rounded> {
    let p = precision as usize;
    let low = POW10_F64[p - 1];
    let high = POW10_F64[p];
    let mut exp10 = estimate;
    for _ in 0..2 {
        let scaled = scale(x, precision as i32 - 1 - exp10)?;
        if scaled >= high {
            exp10 += 1;
            continue;
        }
        if scaled < low {
            return None;
        }
        let floor = scaled as i64;
        let frac = scaled - floor as f64;
        // NOTE: `scaled` carries at most half an ulp of error (< 6e-8 below 1e9), so a
        // fraction this close to one half could round either way: leave it to the exact path.
        if (frac - 0.5).abs() < 1e-6 {
            return None;
        }
        return Some(Rounded::carry((floor + i64::from(frac > 0.5)) as u64, exp10, precision));
    }
    None
}

/// Returns the `%.6g` rounding of a normal positive `x` and the f64 that text reads back as.
pub(super) fn fast_six(x: f64) -> Option<(Rounded, f64)> {
    if !x.is_normal() {
        return None;
    }
    let six = round_fast(x, estimate_exp10(x), 6)?;
    let back = scale(six.digits as i64 as f64, six.exp10 - 5)?;
    Some((six, back))
}

/// Bits of the smallest f32 at or above 10^k, for k in -14..=31: a positive f32 is at least
/// 10^k exactly when its bits are at least these, which settles its decimal exponent.
static POW10_F32_CEIL: [u32; 46] = [
    0x283424DD, 0x29E12E14, 0x2B8CBCCD, 0x2D2FEC00, 0x2EDBE6FF, 0x30897060, 0x322BCC78, 0x33D6BF95, 0x358637BE,
    0x3727C5AD, 0x38D1B718, 0x3A83126F, 0x3C23D70B, 0x3DCCCCCD, 0x3F800000, 0x41200000, 0x42C80000, 0x447A0000,
    0x461C4000, 0x47C35000, 0x49742400, 0x4B189680, 0x4CBEBC20, 0x4E6E6B28, 0x501502F9, 0x51BA43B8, 0x5368D4A6,
    0x551184E8, 0x56B5E621, 0x58635FAA, 0x5A0E1BCA, 0x5BB1A2BD, 0x5D5E0B6C, 0x5F0AC724, 0x60AD78EC, 0x6258D727,
    0x64078679, 0x65A96817, 0x6753C21C, 0x69045952, 0x6AA56FA6, 0x6C4ECB90, 0x6E013F3A, 0x6FA18F08, 0x7149F2CA,
    0x72FC6F7D,
];
const POW10_F32_CEIL_MIN: i32 = -14;

/// What `fast_f32` needs to know about one binary exponent.
#[derive(Clone, Copy)]
struct ExponentEntry {
    /// floor(log10) of the smallest value with this exponent, or one less.
    estimate: i32,
    /// Bits of the smallest f32 at or above 10^(estimate + 1) (never reached: `u32::MAX`).
    threshold: u32,
    /// 10^(8 - estimate) and 10^(7 - estimate) when at most 10^11 (the u64 path), else 0.
    narrow_pow: u64,
    narrow_pow_above: u64,
}

/// `ExponentEntry` for every biased f32 exponent, built at compile time.
static EXPONENTS: [ExponentEntry; 256] = build_exponents();

const fn build_exponents() -> [ExponentEntry; 256] {
    let mut table = [ExponentEntry { estimate: 0, threshold: u32::MAX, narrow_pow: 0, narrow_pow_above: 0 }; 256];
    let mut biased = 1;
    while biased < 255 {
        let estimate = ((biased as i32 - 127) * 78913) >> 18;
        let index = estimate + 1 - POW10_F32_CEIL_MIN;
        let threshold =
            if index >= 0 && index < POW10_F32_CEIL.len() as i32 { POW10_F32_CEIL[index as usize] } else { u32::MAX };
        let power = 8 - estimate;
        let narrow_pow = if power >= 0 && power <= 11 { POW10_U64[power as usize] } else { 0 };
        let narrow_pow_above = if power >= 1 && power <= 12 { POW10_U64[power as usize - 1] } else { 0 };
        table[biased] = ExponentEntry { estimate, threshold, narrow_pow, narrow_pow_above };
        biased += 1;
    }
    table
}

/// Returns the `WriteDecimal<float>` digits of a positive f32, or `None` for subnormals and
/// magnitudes outside 1e-14..2^23, which take the exact path.
///
/// Exact integer arithmetic: with `v = m * 2^e`, `m * 10^k` is the value scaled to nine digits
/// as a fixed-point number with `-e` fraction bits. Both roundings (9 and 6 digits, half to
/// even) and the test whether the 6-digit text reads back as `v` (it must fall strictly inside
/// the half gaps to the neighbouring f32 values, or on one with `v` even) are integer compares.
/// One widening multiply and a few shifts keep the dependency chain short, which is what
/// bounds the speed of a float-heavy response.
#[inline(always)]
pub(super) fn fast_f32(v: f32) -> Option<Rounded> {
    let bits = v.to_bits();
    let biased = (bits >> 23) as i32;
    if biased == 0 || biased == 0xFF {
        return None;
    }
    let mantissa = u64::from(bits & 0x007F_FFFF | 0x0080_0000);
    let shift = u32::try_from(150 - biased).ok().filter(|&s| s >= 1)?;
    // One load gives the candidate exponents and powers; the compare picks one without a
    // dependent second lookup.
    let entry = EXPONENTS[usize::from((bits >> 23) as u8)];
    let above = bits >= entry.threshold;
    let exp10 = entry.estimate + i32::from(above);
    let narrow_pow = if above { entry.narrow_pow_above } else { entry.narrow_pow };
    let (six, nine, reads_back) = if narrow_pow != 0 && shift <= 33 {
        digits_narrow(mantissa, narrow_pow, shift)?
    } else {
        digits_wide(mantissa, *POW10_U128.get(usize::try_from(8 - exp10).ok()?)?, shift)?
    };
    Some(if reads_back { Rounded::carry(six, exp10, 6) } else { Rounded::carry(nine, exp10, 9) })
}

/// `fast_f32` for 0.001 <= v < 2^23, where everything fits in u64: returns the 6-digit and
/// 9-digit roundings and whether the 6-digit text reads back as the value.
#[inline(always)]
fn digits_narrow(mantissa: u64, pow10: u64, shift: u32) -> Option<(u64, u64, bool)> {
    let scaled = mantissa * pow10;
    let whole = scaled >> shift;
    if !(100_000_000..1_000_000_000).contains(&whole) {
        return None;
    }
    let frac = scaled & ((1 << shift) - 1);
    let half = 1u64 << (shift - 1);
    // NOTE: `|` and `&` rather than `||` and `&&`: these outcomes are random for real data,
    // and mispredicted branches would cost more than the whole computation.
    let nine = whole + u64::from((frac > half) | ((frac == half) & (whole & 1 == 1)));
    let upper = whole / 1000;
    let low = whole % 1000;
    // The half gap is below 64 units of the last of nine digits (10^k / 2^(shift+1) < 2^-24 of
    // a value under 1e9), so six digits can only read back when the last three are near 0.
    if (64..936).contains(&low) {
        return Some((0, nine, false));
    }
    let rest = low << shift | frac;
    let half_thousand = 500u64 << shift;
    let six = upper + u64::from((rest > half_thousand) | ((rest == half_thousand) & (upper & 1 == 1)));
    // The half gap to the next f32 up is 10^k / 2 in units of the scaled mantissa; below a
    // power of two the next f32 down is only half as far. Compare 2 * distance with 10^k.
    let target = (six * 1000) << shift;
    let closer_below = (target < scaled) & (mantissa == 1 << 23);
    let distance = (target.abs_diff(scaled) * 2) << u32::from(closer_below);
    let reads_back = (distance < pow10) | ((distance == pow10) & (mantissa & 1 == 0));
    Some((six, nine, reads_back))
}

/// `fast_f32` in u128, for the magnitudes `digits_narrow` cannot hold.
fn digits_wide(mantissa: u64, pow10: u128, shift: u32) -> Option<(u64, u64, bool)> {
    let scaled = u128::from(mantissa) * pow10;
    let whole = u64::try_from(scaled >> shift).ok()?;
    if !(100_000_000..1_000_000_000).contains(&whole) {
        return None;
    }
    let frac = scaled & ((1 << shift) - 1);
    let half = 1u128 << (shift - 1);
    let nine = whole + u64::from((frac > half) | ((frac == half) & (whole & 1 == 1)));
    let upper = whole / 1000;
    let rest = u128::from(whole % 1000) << shift | frac;
    let half_thousand = 500u128 << shift;
    let six = upper + u64::from((rest > half_thousand) | ((rest == half_thousand) & (upper & 1 == 1)));
    // In units of 2^(e-2) after scaling, the half gaps are 2 * 10^k (10^k below a power of 2).
    let target = u128::from(six * 1000) << (shift + 2);
    let value = scaled << 2;
    let distance = target.abs_diff(value);
    let closer_below = (target < value) & (mantissa == 1 << 23);
    let half_gap = pow10 << u32::from(!closer_below);
    let reads_back = (distance < half_gap) | ((distance == half_gap) & (mantissa & 1 == 0));
    Some((six, nine, reads_back))
}

static POW10_U128: [u128; 23] = [
    10u128.pow(0),
    10u128.pow(1),
    10u128.pow(2),
    10u128.pow(3),
    10u128.pow(4),
    10u128.pow(5),
    10u128.pow(6),
    10u128.pow(7),
    10u128.pow(8),
    10u128.pow(9),
    10u128.pow(10),
    10u128.pow(11),
    10u128.pow(12),
    10u128.pow(13),
    10u128.pow(14),
    10u128.pow(15),
    10u128.pow(16),
    10u128.pow(17),
    10u128.pow(18),
    10u128.pow(19),
    10u128.pow(20),
    10u128.pow(21),
    10u128.pow(22),
];

/// The exact `%g` decision: `%.6g` if it reads back at the same width, else full precision.
pub(super) fn exact_g(x: f64, width: Width) -> Rounded {
    let six = exact_round(x, 6);
    let text = format!("{}e{}", six.digits, six.exp10 - 5);
    let round_trips = match width {
        Width::F32 => text.parse::<f32>().is_ok_and(|back| f64::from(back) == x),
        Width::F64 => text.parse::<f64>().is_ok_and(|back| back == x),
    };
    if round_trips {
        six
    } else {
        exact_round(x, if width == Width::F32 { 9 } else { 17 })
    }
}

/// A fixed stack buffer for `write!`, large enough for `{:.16e}` of any f64.
struct StackText {
    buf: [u8; 40],
    len: usize,
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dest = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Rounds a positive finite `x` to `precision` digits exactly (half to even on exact ties).
pub(super) fn exact_round(x: f64, precision: u32) -> Rounded {
    let mut text = StackText { buf: [0; 40], len: 0 };
    // NOTE: cannot fail: the longest output, `{:.16e}` of an f64, is 23 bytes.
    let _ = write!(text, "{:.*e}", precision as usize - 1, x);
    let text = &text.buf[..text.len];
    let mut digits = 0u64;
    let mut exp10 = 0i32;
    let mut exp_negative = false;
    let mut in_exponent = false;
    for &b in text {
        match b {
            b'e' => in_exponent = true,
            b'-' if in_exponent => exp_negative = true,
            b'0'..=b'9' if in_exponent => exp10 = exp10 * 10 + i32::from(b - b'0'),
            b'0'..=b'9' => digits = digits * 10 + u64::from(b - b'0'),
            _ => {}
        }
    }
    if exp_negative {
        exp10 = -exp10;
    }
    Rounded { digits, exp10, precision }
}

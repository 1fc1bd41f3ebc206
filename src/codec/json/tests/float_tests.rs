//! Float printing: TF's `WriteDecimal` examples, special values, and fast path vs exact path.

use crate::codec::json::dtoa::write_rapidjson_double;
use crate::codec::json::float::reference::{write_f32_exact, write_f64_exact};
use crate::codec::json::{write_f32, write_f64};

fn f32_text(v: f32) -> String {
    let mut out = Vec::new();
    write_f32(v, &mut out);
    String::from_utf8(out).expect("ascii")
}

fn f64_text(v: f64) -> String {
    let mut out = Vec::new();
    write_f64(v, &mut out);
    String::from_utf8(out).expect("ascii")
}

#[test]
fn spec_float_examples() {
    let cases: &[(f32, &str)] = &[
        (3.0, "3.0"),
        (2.5, "2.5"),
        (0.1, "0.1"),
        (1.0 / 3.0, "0.333333343"),
        (9000000.0, "9e+06"),
        (999999.0, "999999.0"),
        (0.00003, "3e-05"),
        (555557.5, "555557.5"),
        (123456789.0, "123456792.0"),
        (1e6, "1e+06"),
        (-0.0, "-0.0"),
        // The spec writes 3.14159265f, which is the f32 nearest to pi.
        (std::f32::consts::PI, "3.14159274"),
        (1435774380.0, "1.43577434e+09"),
    ];
    for &(value, expected) in cases {
        assert_eq!(f32_text(value), expected, "value {value:e}");
    }
}

#[test]
fn special_values() {
    assert_eq!(f32_text(f32::NAN), "NaN");
    assert_eq!(f32_text(-f32::NAN), "NaN");
    assert_eq!(f32_text(f32::INFINITY), "Infinity");
    assert_eq!(f32_text(f32::NEG_INFINITY), "-Infinity");
    assert_eq!(f32_text(0.0), "0.0");
    assert_eq!(f64_text(f64::NAN), "NaN");
    assert_eq!(f64_text(f64::INFINITY), "Infinity");
    assert_eq!(f64_text(f64::NEG_INFINITY), "-Infinity");
    assert_eq!(f64_text(-0.0), "-0.0");
}

#[test]
fn more_f32_values() {
    let cases: &[(f32, &str)] = &[
        (-2.5, "-2.5"),
        (100.0, "100.0"),
        (123456.0, "123456.0"),
        (1234567.0, "1234567.0"),
        (0.0001, "0.0001"),
        (0.00012345, "0.00012345"),
        (1e-5, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (1e10, "1e+10"),
        (f32::MAX, "3.40282347e+38"),
        (f32::MIN_POSITIVE, "1.17549435e-38"),
        (1e-45, "1.4013e-45"),
        (-1e38, "-1e+38"),
        (0.3, "0.3"),
        (16777216.0, "16777216.0"),
        // Exact ties at nine digits round half to even, as printf does.
        (12345.0 + 1.0 / 32.0, "12345.0312"),
        (12345.0 + 3.0 / 32.0, "12345.0938"),
    ];
    for &(value, expected) in cases {
        assert_eq!(f32_text(value), expected, "value {value:e}");
    }
}

#[test]
fn f64_values() {
    let cases: &[(f64, &str)] = &[
        (0.1, "0.1"),
        (2.0, "2.0"),
        (1.0 / 3.0, "0.33333333333333331"),
        (1e100, "1e+100"),
        (1e-100, "1e-100"),
        (123456.0, "123456.0"),
        (1234567.0, "1234567.0"),
        (0.662, "0.662"),
        (f64::MAX, "1.7976931348623157e+308"),
        (5e-324, "4.94066e-324"),
        (9007199254740993.0, "9007199254740992.0"),
        (0.1 + 0.2, "0.30000000000000004"),
    ];
    for &(value, expected) in cases {
        assert_eq!(f64_text(value), expected, "value {value:e}");
    }
}

/// A small deterministic generator (xorshift64*), so the property tests are reproducible.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn check_f32(v: f32) {
    let mut fast = Vec::new();
    let mut exact = Vec::new();
    write_f32(v, &mut fast);
    write_f32_exact(v, &mut exact);
    assert_eq!(fast, exact, "bits {:#x}", v.to_bits());
}

#[test]
fn f32_fast_path_matches_exact_path() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..300_000 {
        check_f32(f32::from_bits(rng.next_u64() as u32));
    }
    // Short decimals, where %.6g round-trips and ties are common.
    for _ in 0..200_000 {
        let mantissa = (rng.next_u64() % 2_000_000) as f32;
        let exp = (rng.next_u64() % 20) as i32 - 10;
        check_f32(mantissa * 10f32.powi(exp));
        check_f32(mantissa / 64.0);
        check_f32(mantissa + 0.5);
    }
}

#[test]
fn f64_fast_path_matches_exact_path() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let check = |v: f64| {
        let mut fast = Vec::new();
        let mut exact = Vec::new();
        write_f64(v, &mut fast);
        write_f64_exact(v, &mut exact);
        assert_eq!(fast, exact, "bits {:#x}", v.to_bits());
    };
    for _ in 0..100_000 {
        check(f64::from_bits(rng.next_u64()));
        let mantissa = (rng.next_u64() % 2_000_000) as f64;
        check(mantissa / 1024.0);
        check(mantissa * 1e-3);
    }
}

#[test]
fn edges_near_powers_of_ten_and_two() {
    for k in -46..=39 {
        let v = 10f64.powi(k) as f32;
        for step in -3i32..=3 {
            let bits = v.to_bits().wrapping_add_signed(step);
            check_f32(f32::from_bits(bits));
        }
    }
    for exp in -149..=127 {
        let v = 2f64.powi(exp) as f32;
        for step in -2i32..=2 {
            check_f32(f32::from_bits(v.to_bits().wrapping_add_signed(step)));
        }
    }
    check_f32(f32::MAX);
    check_f32(f32::MIN_POSITIVE);
    check_f32(f32::from_bits(1));
}

#[test]
fn printed_floats_read_back_exactly() {
    let mut rng = Rng(77);
    for _ in 0..50_000 {
        let v = f32::from_bits(rng.next_u64() as u32);
        if !v.is_finite() {
            continue;
        }
        let text = f32_text(v);
        assert_eq!(text.parse::<f32>().ok(), Some(v), "{text}");
    }
}

#[test]
fn rapidjson_double_layout() {
    let cases: &[(f64, &str)] = &[
        (1.0, "1.0"),
        (-0.0, "-0.0"),
        (1.5, "1.5"),
        (100.0, "100.0"),
        (1e21, "1e21"),
        (1e20, "100000000000000000000.0"),
        (123.456, "123.456"),
        (0.001, "0.001"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (1.2345e30, "1.2345e30"),
        (-2.5e-10, "-2.5e-10"),
        (0.000001, "0.000001"),
    ];
    for &(value, expected) in cases {
        let mut out = Vec::new();
        write_rapidjson_double(value, &mut out);
        assert_eq!(String::from_utf8(out).expect("ascii"), expected, "value {value:e}");
    }
}

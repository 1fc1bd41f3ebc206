//! The tape parser: rapidjson's error messages and offsets, tokens, escapes and nesting.

use crate::codec::json::lexer::parse;
use crate::codec::json::tape::Tag;
use crate::codec::json::tests::decode_tests::{float_sig, parse_err};

fn error(body: &[u8]) -> (&'static str, usize) {
    match parse(body) {
        Ok(_) => panic!("parsed: {}", String::from_utf8_lossy(body)),
        Err(e) => (e.message, e.offset),
    }
}

#[test]
fn parse_error_messages_and_offsets() {
    let cases: &[(&[u8], &str, usize)] = &[
        (b"   ", "The document is empty.", 3),
        (b" ]", "The document is empty.", 1),
        (b"x", "Invalid value.", 0),
        (b"{", "Missing a name for object member.", 1),
        (b"{1", "Missing a name for object member.", 1),
        (b"{\"a\":1,}", "Missing a name for object member.", 7),
        (b"{\"a\"", "Missing a colon after a name of object member.", 4),
        (b"{\"a\" 1", "Missing a colon after a name of object member.", 5),
        (b"{\"a\":", "Invalid value.", 5),
        (b"{\"a\":}", "Invalid value.", 5),
        (b"{\"a\":1", "Missing a comma or '}' after an object member.", 6),
        (b"{\"a\":1 2}", "Missing a comma or '}' after an object member.", 7),
        (b"{\"a\":01}", "Missing a comma or '}' after an object member.", 6),
        (b"{\"a\":1\x00}", "Missing a comma or '}' after an object member.", 6),
        (b"[1", "Missing a comma or ']' after an array element.", 2),
        (b"{\"a\":[1 2]}", "Missing a comma or ']' after an array element.", 8),
        (b"{\"a\":[1,]}", "Invalid value.", 8),
        (b"{\"a\":[}", "Invalid value.", 6),
        (b"[", "Invalid value.", 1),
        (b"{\"a\":\"\\x\"}", "Invalid escape character in string.", 6),
        (b"{\"a\":\"\\u12G4\"}", "Incorrect hex digit after \\u escape in string.", 6),
        (b"{\"a\":\"\\uD800\"}", "The surrogate pair in string is invalid.", 6),
        (b"{\"a\":\"\\uD800\\u0041\"}", "The surrogate pair in string is invalid.", 6),
        (b"{\"a\":\"\\uD800\\u00G1\"}", "Incorrect hex digit after \\u escape in string.", 6),
        (b"{\"a\":\"\\uDC00\"}", "The surrogate pair in string is invalid.", 6),
        (b"{\"a\":\"abc", "Missing a closing quotation mark in string.", 9),
        (b"{\"a\":\"ab\x00c\"}", "Missing a closing quotation mark in string.", 8),
        (b"{\"a\":\"a\x01b\"}", "Invalid encoding in string.", 7),
        (b"{\"a\":\"a\\n\x1fb\"}", "Invalid encoding in string.", 9),
        (b"{\"a\":1e400}", "Number too big to be stored in double.", 5),
        (b"{\"a\":-1e400}", "Number too big to be stored in double.", 5),
        (b"{\"a\":0e400}", "Number too big to be stored in double.", 5),
        (b"{\"a\":2e308}", "Number too big to be stored in double.", 5),
        (b"{\"a\":1.}", "Miss fraction part in number.", 7),
        (b"{\"a\":1.e5}", "Miss fraction part in number.", 7),
        (b"{\"a\":1e}", "Miss exponent in number.", 7),
        (b"{\"a\":1e+}", "Miss exponent in number.", 8),
        (b"{\"a\":tru}", "Invalid value.", 8),
        (b"{\"a\":nul}", "Invalid value.", 8),
        (b"{\"a\":fals}", "Invalid value.", 9),
        (b"{\"a\":-}", "Invalid value.", 6),
        (b"{\"a\":+1}", "Invalid value.", 5),
        (b"{\"a\":.5}", "Invalid value.", 5),
        (b"{\"a\":Nan}", "Invalid value.", 7),
        (b"{\"a\":Infinit}", "Invalid value.", 12),
        (b"{\"a\":In}", "Invalid value.", 7),
    ];
    for &(body, message, offset) in cases {
        assert_eq!(error(body), (message, offset), "body {}", String::from_utf8_lossy(body));
    }
}

#[test]
fn parse_errors_reach_the_client_with_prefix() {
    let sigs = float_sig();
    assert_eq!(parse_err(b"", &sigs).message, "JSON Parse error: The document is empty");
    assert_eq!(parse_err(b" \n", &sigs).message, "JSON Parse error: The document is empty. at offset: 2");
    assert_eq!(parse_err(b"x", &sigs).message, "JSON Parse error: Invalid value. at offset: 0");
    assert_eq!(
        parse_err(b"{\"instances\": [1.0, 2.0", &sigs).message,
        "JSON Parse error: Missing a comma or ']' after an array element. at offset: 23"
    );
}

#[test]
fn rapidjson_accepts_fraction_digits_beyond_exponent_308() {
    // 0.1e309 is 1e308: rapidjson counts the fraction digit against the exponent limit.
    let tape = parse(b"[0.1e309, 1.5e308]").expect("valid");
    assert_eq!(tape.as_f64(1), 1e308);
    assert_eq!(tape.as_f64(2), 1.5e308);
}

#[test]
fn number_tokens_keep_integer_and_double_kinds() {
    let tape = parse(
        b"[0, -0, 7, -9223372036854775808, 9223372036854775807, 9223372036854775808, \
          18446744073709551615, 18446744073709551616, -9223372036854775809, 1.0, 1E2, 2e-3, \
          123456789012345678901234567890, 0.1, 3.4028235677973366e38]",
    )
    .expect("valid");
    let kinds: Vec<(Tag, u64)> = tape.elements(0).map(|i| (tape.tag(i), tape.node(i).val)).collect();
    assert_eq!(kinds[0], (Tag::Int, 0));
    assert_eq!(kinds[1], (Tag::Int, 0));
    assert_eq!(kinds[2], (Tag::Int, 7));
    assert_eq!(kinds[3], (Tag::Int, i64::MIN as u64));
    assert_eq!(kinds[4], (Tag::Int, i64::MAX as u64));
    assert_eq!(kinds[5], (Tag::Uint, 1 << 63));
    assert_eq!(kinds[6], (Tag::Uint, u64::MAX));
    assert_eq!(kinds[7], (Tag::Double, 18446744073709551616f64.to_bits()));
    assert_eq!(kinds[8], (Tag::Double, (-9223372036854775809f64).to_bits()));
    assert_eq!(kinds[9], (Tag::Double, 1.0f64.to_bits()));
    assert_eq!(kinds[10], (Tag::Double, 100.0f64.to_bits()));
    assert_eq!(kinds[11], (Tag::Double, 0.002f64.to_bits()));
    assert_eq!(kinds[12], (Tag::Double, 1.2345678901234568e29f64.to_bits()));
    assert_eq!(kinds[13], (Tag::Double, 0.1f64.to_bits()));
    assert_eq!(kinds[14], (Tag::Double, 3.4028235677973366e38f64.to_bits()));
}

#[test]
fn number_values_match_std_parsing() {
    use crate::codec::json::tests::float_tests::Rng;
    let mut rng = Rng(0xDEC0_DE00_1234_5678);
    let mut token = String::new();
    for _ in 0..100_000 {
        token.clear();
        if rng.next_u64().is_multiple_of(4) {
            token.push('-');
        }
        let int_digits = 1 + rng.next_u64() % 22;
        for i in 0..int_digits {
            let d = rng.next_u64() % 10;
            token.push(char::from(b'0' + if i == 0 && int_digits > 1 { 1 + d % 9 } else { d } as u8));
        }
        let has_fraction = !rng.next_u64().is_multiple_of(4);
        if has_fraction {
            token.push('.');
            for _ in 0..1 + rng.next_u64() % 25 {
                token.push(char::from(b'0' + (rng.next_u64() % 10) as u8));
            }
        }
        let has_exponent = rng.next_u64().is_multiple_of(3);
        if has_exponent {
            token.push(if rng.next_u64().is_multiple_of(2) { 'e' } else { 'E' });
            let exp = rng.next_u64() % 60;
            token.push_str(&format!("{}{exp}", if rng.next_u64().is_multiple_of(2) { "-" } else { "+" }));
        }
        let body = format!("[{token}, {token}]");
        let tape = parse(body.as_bytes()).unwrap_or_else(|e| panic!("{token}: {e:?}"));
        let expected: f64 = token.parse().expect("valid float text");
        for idx in [1, 2] {
            if tape.tag(idx) == Tag::Double {
                assert_eq!(tape.as_f64(idx).to_bits(), expected.to_bits(), "{token}");
            } else {
                // Integer tokens, "-0" included, are integers as in rapidjson.
                assert_eq!(tape.as_f64(idx), expected, "{token}");
            }
            let is_integer = !has_fraction && !has_exponent;
            let fits = token.parse::<i64>().is_ok() || token.parse::<u64>().is_ok();
            assert_eq!(tape.tag(idx) != Tag::Double, is_integer && fits, "{token}");
        }
    }
}

#[test]
fn nan_and_infinity_tokens() {
    let tape = parse(b"[NaN, -NaN, Inf, -Inf, Infinity, -Infinity, NaN.5]").expect("valid");
    let values: Vec<f64> = tape.elements(0).map(|i| tape.as_f64(i)).collect();
    assert!(values[0].is_nan() && values[1].is_nan());
    assert_eq!(&values[2..6], &[f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY]);
    // rapidjson reads digits after NaN/Inf with an integer part of zero.
    assert_eq!(values[6], 0.5);
}

#[test]
fn string_escapes_and_raw_bytes() {
    let tape = parse(b"[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"\\u00e9\\uD83D\\uDE00\\u0000\", \"\xff\xfe\", \"\"]")
        .expect("valid");
    let strings: Vec<&[u8]> = tape.elements(0).map(|i| tape.str_bytes(i)).collect();
    assert_eq!(strings[0], b"a\"b\\c/d\x08\x0c\n\r\t");
    assert_eq!(strings[1], "é😀\0".as_bytes());
    assert_eq!(strings[2], b"\xff\xfe");
    assert_eq!(strings[3], b"");
}

#[test]
fn parsing_stops_after_the_root_value() {
    let tape = parse(b"{\"a\": [1, 2]} trailing garbage {").expect("valid");
    assert_eq!(tape.tag(0), Tag::Object);
    assert_eq!(tape.nodes.len(), 5);
    assert!(parse(b"5 6").is_ok());
}

#[test]
fn deep_nesting_uses_no_recursion() {
    let depth = 500_000;
    let mut body = b"{\"junk\": ".to_vec();
    body.extend(std::iter::repeat_n(b'[', depth));
    body.extend(std::iter::repeat_n(b']', depth));
    body.extend_from_slice(b", \"x\": 1}");
    let tape = parse(&body).expect("valid");
    assert_eq!(tape.find_member(0, b"x").map(|i| tape.as_f64(i)), Some(1.0));
    // Unclosed deep nesting reports the end of input.
    let open = vec![b'['; depth];
    assert_eq!(error(&open), ("Invalid value.", depth));
}

#[test]
fn debug_text_is_pretty_with_single_line_arrays_and_truncated() {
    let tape =
        parse(b"{\"a\": [1, 2.5, \"x\"], \"b\": {\"c\": null}, \"d\": [{\"e\": true}], \"f\": {}}").expect("valid");
    assert_eq!(
        tape.debug_string(0),
        "{\n    \"a\": [1, 2.5, \"x\"],\n    \"b\": {\n        \"c\": null\n    },\n    \"d\": \
         [{\n            \"e\": true\n        }],\n    \"f\": {}\n}"
    );
    // A top-level double goes through WriteDecimal; nested NaN stops the text.
    let tape = parse(b"[0.1, [1.0, NaN, 3], 1e300]").expect("valid");
    let items: Vec<usize> = tape.elements(0).collect();
    assert_eq!(tape.debug_string(items[0]), "0.1");
    assert_eq!(tape.debug_string(items[1]), "[1.0, ");
    assert_eq!(tape.debug_string(items[2]), "1e+300");
    let long = format!("[{}]", vec!["12345"; 100].join(","));
    let tape = parse(long.as_bytes()).expect("valid");
    let text = tape.debug_string(0);
    assert_eq!(text.len(), 256);
    assert!(text.starts_with("[12345, 12345, "));
}

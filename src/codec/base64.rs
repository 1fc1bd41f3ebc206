//! Base64 decoding as TF Serving's JSON does it: absl's `Base64Unescape` (and its web-safe twin).
//!
//! TF Serving decodes every `{"b64": "..."}` value (predict inputs and classify/regress
//! features) with `absl::Base64Unescape`, which is more lenient than RFC 4648:
//! - ASCII whitespace (space, `\t`, `\n`, `\v`, `\f`, `\r`) is skipped anywhere before and
//!   among the padding;
//! - padding is optional, but when present it must be complete (`==` after two leftover
//!   characters, `=` after three, none after a multiple of four);
//! - `.` counts as a padding character, the same as `=`;
//! - the unused low bits of the last character are ignored (`aR==` decodes as `aQ==`);
//! - anything else fails: characters outside the alphabet (NUL, non-ASCII, the other
//!   alphabet's `+/` or `-_`), data after padding, or a single leftover character.
//!
//! The standard alphabet (`+/`) is the one TF's JSON accepts; the web-safe one (`-_`,
//! `absl::WebSafeBase64Unescape`) follows the same rules.

/// The base64 alphabet a decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alphabet {
    /// `A-Z a-z 0-9 + /`.
    Standard,
    /// `A-Z a-z 0-9 - _`.
    WebSafe,
}

impl Alphabet {
    fn value(self, c: u8) -> Option<u32> {
        let v = match (c, self) {
            (b'A'..=b'Z', _) => c - b'A',
            (b'a'..=b'z', _) => c - b'a' + 26,
            (b'0'..=b'9', _) => c - b'0' + 52,
            (b'+', Alphabet::Standard) | (b'-', Alphabet::WebSafe) => 62,
            (b'/', Alphabet::Standard) | (b'_', Alphabet::WebSafe) => 63,
            _ => return None,
        };
        Some(u32::from(v))
    }
}

/// Decodes standard base64 with absl `Base64Unescape`'s rules (see the module doc); returns
/// `None` where absl returns false.
pub fn base64_unescape(src: &[u8]) -> Option<Vec<u8>> {
    unescape(src, Alphabet::Standard)
}

/// Decodes web-safe base64 (`-` and `_`) with absl `WebSafeBase64Unescape`'s rules, which are
/// `base64_unescape`'s with the other alphabet.
pub fn web_safe_base64_unescape(src: &[u8]) -> Option<Vec<u8>> {
    unescape(src, Alphabet::WebSafe)
}

fn is_ascii_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

fn unescape(src: &[u8], alphabet: Alphabet) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(src.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut pending = 0;
    let mut rest = src;
    // Data characters and whitespace, up to the first other byte.
    while let Some((&c, tail)) = rest.split_first() {
        if let Some(v) = alphabet.value(c) {
            acc = acc << 6 | v;
            pending += 1;
            if pending == 4 {
                out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
                acc = 0;
                pending = 0;
            }
        } else if !is_ascii_space(c) {
            break;
        }
        rest = tail;
    }
    // The tail may only be padding and whitespace.
    let mut padding = 0;
    for &c in rest {
        if c == b'=' || c == b'.' {
            padding += 1;
        } else if !is_ascii_space(c) {
            return None;
        }
    }
    let expected = match pending {
        0 => 0,
        2 => {
            out.push((acc >> 4) as u8);
            2
        }
        3 => {
            out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]);
            1
        }
        _ => return None,
    };
    (padding == 0 || padding == expected).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(text: &str) -> Option<String> {
        base64_unescape(text.as_bytes()).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    #[test]
    fn padding_is_optional_but_complete_when_present() {
        assert_eq!(decoded("aGVsbG8="), Some("hello".into()));
        assert_eq!(decoded("aGVsbG8"), Some("hello".into()));
        assert_eq!(decoded("aGk="), Some("hi".into()));
        assert_eq!(decoded("aA=="), Some("h".into()));
        assert_eq!(decoded("aA"), Some("h".into()));
        for bad in ["aA=", "aA===", "aGk==", "aGVs=", "=", "===="] {
            assert_eq!(decoded(bad), None, "{bad}");
        }
    }

    #[test]
    fn dot_pads_like_equals() {
        assert_eq!(decoded("aGVsbG8."), Some("hello".into()));
        assert_eq!(decoded("aA.."), Some("h".into()));
        assert_eq!(decoded("aA=."), Some("h".into()));
    }

    #[test]
    fn whitespace_is_skipped_around_data_and_padding() {
        assert_eq!(decoded(" aGVs bG8=\n"), Some("hello".into()));
        assert_eq!(decoded("aG\tk\r\n=\x0b\x0c"), Some("hi".into()));
        assert_eq!(decoded("aA= ="), Some("h".into()));
        assert_eq!(decoded(""), Some(String::new()));
        assert_eq!(decoded(" \n "), Some(String::new()));
    }

    #[test]
    fn unused_trailing_bits_are_ignored() {
        assert_eq!(decoded("aR=="), Some("i".into()));
        assert_eq!(decoded("aGl="), Some("hi".into()));
    }

    #[test]
    fn stray_bytes_fail() {
        for bad in ["a", "aGVsb", "aGVs!G8=", "aGVsbG8=x", "aG=k", "aGk\0", "aGk\u{e9}", "-_8=", "aGk=\u{a0}"] {
            assert_eq!(decoded(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn alphabets_do_not_mix() {
        assert_eq!(base64_unescape(b"+/8="), Some(vec![0xFB, 0xFF]));
        assert_eq!(web_safe_base64_unescape(b"-_8="), Some(vec![0xFB, 0xFF]));
        assert_eq!(web_safe_base64_unescape(b"+/8="), None);
        assert_eq!(web_safe_base64_unescape(b"-_8"), Some(vec![0xFB, 0xFF]));
    }
}

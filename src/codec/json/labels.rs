//! The `labels` field of image responses: per image its top classes as
//! `{"label", "index", "score"}`, highest score first.

use super::text::{write_json_string, write_u64};
use crate::codec::image::plan::TopLabel;

/// Writes `[[{"label":..,"index":..,"score":..},...],...]`; scores print as the shortest
/// decimal that reads back as the same double.
pub fn write_labels(rows: &[Vec<TopLabel>], out: &mut Vec<u8>) {
    let mut buffer = ryu::Buffer::new();
    out.push(b'[');
    for (row_index, row) in rows.iter().enumerate() {
        if row_index > 0 {
            out.push(b',');
        }
        out.push(b'[');
        for (index, top) in row.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"label\":");
            write_json_string(out, top.label.as_bytes());
            out.extend_from_slice(b",\"index\":");
            write_u64(out, top.index as u64);
            out.extend_from_slice(b",\"score\":");
            let score = f64::from(top.score);
            if score.is_finite() {
                out.extend_from_slice(buffer.format_finite(score).as_bytes());
            } else {
                out.extend_from_slice(b"null");
            }
            out.push(b'}');
        }
        out.push(b']');
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_written_as_json() {
        let rows = vec![vec![
            TopLabel { label: "seven \"7\"".into(), index: 7, score: 0.75 },
            TopLabel { label: "one".into(), index: 1, score: 1.0 },
        ]];
        let mut out = Vec::new();
        write_labels(&rows, &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            r#"[[{"label":"seven \"7\"","index":7,"score":0.75},{"label":"one","index":1,"score":1.0}]]"#
        );
    }
}

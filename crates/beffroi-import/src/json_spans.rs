//! Where things are in a JSON text: JSON parsers do not keep positions, so errors about
//! the n-th feature or device, and in-place edits of `sites.geojson`, find them here.
//! Only used on text that a JSON parser accepted; on anything else it returns `None`.

use std::ops::Range;

/// The elements of one array of a JSON text, as byte ranges, and where it closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArraySpans {
    pub elements: Vec<Range<usize>>,
    /// Byte offset of the array's `]`.
    pub close: usize,
}

/// Deeper than this, the scanner gives up (the JSON parser's own limit is 128).
const MAX_DEPTH: usize = 256;

/// The array under `key` of the top-level object, or the top-level array itself when
/// `key` is `None`.
pub fn array_elements(text: &str, key: Option<&str>) -> Option<ArraySpans> {
    let b = text.as_bytes();
    let i = ws(b, 0);
    match key {
        None => array_at(b, i),
        Some(key) => {
            if b.get(i) != Some(&b'{') {
                return None;
            }
            let mut i = ws(b, i + 1);
            loop {
                if b.get(i) == Some(&b'}') {
                    return None;
                }
                let k_end = string_end(b, i)?;
                let name = &text[i + 1..k_end - 1];
                i = ws(b, k_end);
                if b.get(i) != Some(&b':') {
                    return None;
                }
                i = ws(b, i + 1);
                if name == key && b.get(i) == Some(&b'[') {
                    return array_at(b, i);
                }
                i = ws(b, value_end(b, i, 0)?);
                match b.get(i) {
                    Some(b',') => i = ws(b, i + 1),
                    _ => return None,
                }
            }
        }
    }
}

/// Byte offset of the member `"key":` inside `range` of `text` (the first one written).
pub fn key_offset(text: &str, range: Range<usize>, key: &str) -> Option<usize> {
    let hay = text.get(range.clone())?;
    let needle = format!("\"{key}\"");
    let mut from = 0;
    while let Some(found) = hay[from..].find(&needle) {
        let at = from + found;
        let after = hay[at + needle.len()..].trim_start();
        if after.starts_with(':') {
            return Some(range.start + at);
        }
        from = at + needle.len();
    }
    None
}

fn array_at(b: &[u8], i: usize) -> Option<ArraySpans> {
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut elements = Vec::new();
    let mut i = ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Some(ArraySpans { elements, close: i });
    }
    loop {
        let end = value_end(b, i, 1)?;
        elements.push(i..end);
        i = ws(b, end);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b']') => return Some(ArraySpans { elements, close: i }),
            _ => return None,
        }
    }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// End (exclusive) of the string starting at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// End (exclusive) of the value starting at `i`.
fn value_end(b: &[u8], i: usize, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    match b.get(i)? {
        b'"' => string_end(b, i),
        open @ (b'{' | b'[') => {
            let close = if *open == b'{' { b'}' } else { b']' };
            let mut j = ws(b, i + 1);
            if b.get(j) == Some(&close) {
                return Some(j + 1);
            }
            loop {
                if *open == b'{' {
                    j = ws(b, string_end(b, j)?);
                    if b.get(j) != Some(&b':') {
                        return None;
                    }
                    j = ws(b, j + 1);
                }
                j = ws(b, value_end(b, j, depth + 1)?);
                match b.get(j)? {
                    b',' => j = ws(b, j + 1),
                    c if *c == close => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_each_element_of_a_keyed_array() {
        let text = r#"{"type": "FeatureCollection", "x": {"features": [1]}, "features": [
{"a": "b]\"}", "c": [1, {"d": []}]},
 {},
"s"
]}"#;
        let spans = array_elements(text, Some("features")).expect("spans");
        let parts: Vec<_> = spans.elements.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(
            parts,
            [r#"{"a": "b]\"}", "c": [1, {"d": []}]}"#, "{}", "\"s\""]
        );
        assert_eq!(&text[spans.close..], "]}");
        assert_eq!(
            array_elements("[ ]", None),
            Some(ArraySpans {
                elements: vec![],
                close: 2
            })
        );
        assert_eq!(array_elements(r#"{"features": 3}"#, Some("features")), None);
    }

    #[test]
    fn finds_a_member_not_a_value_of_the_same_text() {
        let text = r#"{"name": "kind", "kind": "school"}"#;
        assert_eq!(key_offset(text, 0..text.len(), "kind"), Some(17));
        assert_eq!(key_offset(text, 0..text.len(), "zone"), None);
    }

    proptest! {
        /// Any JSON value the parser writes: the scanner finds the same elements.
        #[test]
        fn agrees_with_the_parser(items in proptest::collection::vec(
            prop_oneof![
                any::<i64>().prop_map(serde_json::Value::from),
                ".{0,8}".prop_map(serde_json::Value::from),
                proptest::collection::vec(".{0,4}", 0..3).prop_map(|v| serde_json::json!({"k": v, "n": null})),
            ], 0..6), pretty in any::<bool>()) {
            let doc = serde_json::json!({"a": {"features": [0]}, "features": items});
            let text = if pretty { serde_json::to_string_pretty(&doc) } else { serde_json::to_string(&doc) }
                .expect("serialise");
            let spans = array_elements(&text, Some("features")).expect("spans");
            let back: Vec<serde_json::Value> = spans.elements.iter()
                .map(|r| serde_json::from_str(&text[r.clone()]).expect("element"))
                .collect();
            prop_assert_eq!(back, items);
        }

        #[test]
        fn never_panics(text in ".{0,64}") {
            let _ = array_elements(&text, Some("features"));
            let _ = array_elements(&text, None);
            let _ = key_offset(&text, 0..text.len(), "id");
        }
    }
}

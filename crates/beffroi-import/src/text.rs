//! Text of an imported file: its encoding, and positions in it.

use crate::error::Loc;

/// How the bytes of a file were read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    /// Not UTF-8: read as Windows-1252, what a French spreadsheet saves as "CSV".
    Windows1252,
}

/// The file's text without a byte order mark, and how it was decoded. Files that are not
/// UTF-8 are read as Windows-1252 (every byte is a character there, so this never fails).
pub fn decode(bytes: &[u8]) -> (String, Encoding) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), Encoding::Utf8),
        Err(_) => (
            bytes.iter().map(|&b| windows_1252(b)).collect(),
            Encoding::Windows1252,
        ),
    }
}

/// The character of a Windows-1252 byte (ISO 8859-1 but for 0x80..=0x9F; the five bytes
/// the code page leaves undefined are read as their C1 control, as browsers do).
fn windows_1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž',
        '\u{8F}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}',
        'ž', 'Ÿ',
    ];
    match b {
        0x80..=0x9F => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

/// Line and column (in characters, both 1-based) of a byte offset of `text`.
pub fn loc_of(text: &str, offset: usize) -> Loc {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Loc::new(line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bom_is_dropped_and_windows_1252_read_when_not_utf8() {
        assert_eq!(
            decode(b"\xEF\xBB\xBFid;nom\n"),
            ("id;nom\n".to_string(), Encoding::Utf8)
        );
        // "Chenôve – 5 €" as a French spreadsheet saves it.
        assert_eq!(
            decode(b"Chen\xF4ve \x96 5 \x80"),
            ("Chenôve – 5 €".to_string(), Encoding::Windows1252)
        );
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let t = "ab\nçé\"x\"";
        assert_eq!(loc_of(t, 0), Loc::new(1, 1));
        assert_eq!(loc_of(t, 3), Loc::new(2, 1));
        assert_eq!(loc_of(t, 7), Loc::new(2, 3));
        assert_eq!(loc_of(t, 99), Loc::new(2, 6));
        assert_eq!(loc_of(t, 4), Loc::new(2, 1), "inside a character");
    }
}

//! Images and video frames are not observations (no biometric identification
//! anywhere, CNIL 2022 position on augmented cameras). A text value that carries one — a
//! `data:` URI or the base64 of a JPEG, PNG, GIF, WebP or MP4 — is refused at ingest, as is a
//! SenML data value (`vd`), whatever the field's declared type.
//!
//! Prefixes only catch the formats someone listed. A biometric template (a face embedding,
//! a fingerprint's minutiae, a voiceprint) has no magic number: it is judged by its
//! structure instead — binary data written as base64 (a long run of the base64 alphabet
//! whose characters change class as often as random bytes do, with the entropy of random
//! bytes), as hexadecimal (32 bytes or more), or as a vector of numbers (16 or more). What people and sensors write (ids, words, serial numbers, versions, a digest)
//! does not look like that.

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// What a text value was recognised as, for the rejection detail (never the value itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    DataUri,
    Jpeg,
    Png,
    Gif,
    Webp,
    Mp4,
    /// Binary data written as base64 or hexadecimal: a template, an image, a file.
    EncodedBinary,
    /// A vector of numbers: an embedding or a template.
    NumberVector,
}

impl Media {
    pub fn as_str(self) -> &'static str {
        match self {
            Media::DataUri => "data URI",
            Media::Jpeg => "base64 JPEG",
            Media::Png => "base64 PNG",
            Media::Gif => "base64 GIF",
            Media::Webp => "base64 WebP",
            Media::Mp4 => "base64 MP4/ISO media",
            Media::EncodedBinary => "encoded binary data (a template, an image or a file)",
            Media::NumberVector => "a vector of numbers (an embedding or a template)",
        }
    }
}

/// Recognises an image or a video carried in a text value. Looks only at the first few
/// dozen characters: cheap on the hot path, whatever the length of the text.
pub fn sniff(text: &str) -> Option<Media> {
    let t = text.trim_start();
    if t.len() >= 5 && t.as_bytes()[..5].eq_ignore_ascii_case(b"data:") {
        return Some(Media::DataUri);
    }
    // The first 32 base64 characters (24 bytes) cover every signature below.
    let head: String = t
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .take(32)
        .collect();
    let usable = head.len() / 4 * 4;
    if usable < 4 {
        return None;
    }
    let prefix = head.get(..usable)?.trim_end_matches('=');
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        if let Some(m) = decode_prefix(engine, prefix).and_then(|b| magic(&b)) {
            return Some(m);
        }
    }
    structure(t)
}

/// Shortest base64 run taken for binary data (32 bytes).
const MIN_BASE64: usize = 43;
/// Shortest hexadecimal run taken for binary data (32 bytes, as for base64: a SHA-256
/// digest is refused too, a firmware is reported by its version).
const MIN_HEX: usize = 64;
/// Fewest numbers taken for a vector.
const MIN_NUMBERS: usize = 16;
/// Only this many characters are looked at (longer text is refused for its length).
const LOOKED_AT: usize = 1024;

/// Binary data or a vector, judged by the shape of the whole value.
fn structure(text: &str) -> Option<Media> {
    let compact: Vec<u8> = text
        .bytes()
        .take(LOOKED_AT)
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if numbers(text) >= MIN_NUMBERS {
        return Some(Media::NumberVector);
    }
    let body = compact
        .iter()
        .rposition(|b| *b != b'=')
        .map_or(&compact[..0], |end| &compact[..=end]);
    if body.len() >= MIN_HEX && body.iter().all(u8::is_ascii_hexdigit) && entropy(body) >= 3.0 {
        return Some(Media::EncodedBinary);
    }
    let base64 = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
    if body.len() >= MIN_BASE64
        && body.iter().all(base64)
        && class_changes(body) >= 0.4
        && entropy(body) >= 4.0
    {
        return Some(Media::EncodedBinary);
    }
    None
}

/// How many numbers the text is made of, when it is only numbers (in brackets or not,
/// separated by commas, semicolons or spaces); 0 otherwise.
fn numbers(text: &str) -> usize {
    let t = text.trim().trim_start_matches('[').trim_end_matches(']');
    let mut n = 0;
    for token in t
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|x| !x.is_empty())
        .take(LOOKED_AT)
    {
        if token.parse::<f64>().is_err() {
            return 0;
        }
        n += 1;
    }
    n
}

/// Shannon entropy of the bytes, in bits per byte.
fn entropy(b: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for x in b {
        counts[usize::from(*x)] += 1;
    }
    let n = b.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The share of neighbouring characters of different classes (upper, lower, digit,
/// other): about 0.65 for random base64, about 0.3 for words and identifiers.
fn class_changes(b: &[u8]) -> f64 {
    let class = |x: &u8| match x {
        b'A'..=b'Z' => 0,
        b'a'..=b'z' => 1,
        b'0'..=b'9' => 2,
        _ => 3,
    };
    let changes = b
        .windows(2)
        .filter(|w| class(&w[0]) != class(&w[1]))
        .count();
    changes as f64 / (b.len().max(2) - 1) as f64
}

fn decode_prefix(engine: &GeneralPurpose, s: &str) -> Option<Vec<u8>> {
    engine.decode(s).ok()
}

fn magic(b: &[u8]) -> Option<Media> {
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Media::Jpeg)
    } else if b.starts_with(&[0x89, b'P', b'N', b'G']) {
        Some(Media::Png)
    } else if b.starts_with(b"GIF8") {
        Some(Media::Gif)
    } else if b.len() >= 12 && b.starts_with(b"RIFF") && &b[8..12] == b"WEBP" {
        Some(Media::Webp)
    } else if b.len() >= 8 && &b[4..8] == b"ftyp" {
        Some(Media::Mp4)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    /// Templates of 32 to 190 random bytes (what face, fingerprint and voice templates are)
    /// written as base64, base64url or hex, from a fixed seed: every one in hex, every one
    /// of 64 bytes or more, and all but a handful of the shortest in base64 are refused. No
    /// prefix is involved.
    #[test]
    fn random_templates_are_refused_whatever_their_encoding() {
        use base64::Engine as _;
        // SplitMix64: deterministic, no dependency.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let (mut missed_short, mut total) = (0, 0);
        for i in 0..10_000u64 {
            let n = 32 + (next() % 159) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            let text = match i % 3 {
                0 => base64::engine::general_purpose::STANDARD.encode(&bytes),
                1 => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes),
                _ => bytes.iter().map(|b| format!("{b:02x}")).collect(),
            };
            total += 1;
            if super::sniff(&text).is_none() {
                assert!(n < 64 && i % 3 != 2, "{n} bytes missed: {text}");
                missed_short += 1;
            }
        }
        assert!(
            missed_short * 1000 <= total,
            "{missed_short} of {total} templates missed"
        );
    }

    use super::*;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn table() {
        let cases: &[(&str, Option<Media>)] = &[
            ("/9j/4AAQSkZJRgABAQ", Some(Media::Jpeg)),
            ("/9j/", Some(Media::Jpeg)),
            ("iVBORw0KGgoAAAANSUhEUgAA", Some(Media::Png)),
            ("R0lGODlhAQABAIAAAP", Some(Media::Gif)),
            ("UklGRiQAAABXRUJQVlA4", Some(Media::Webp)),
            ("AAAAGGZ0eXBtcDQyAAAAAG1wNDI=", Some(Media::Mp4)),
            ("AAAAIGZ0eXBpc29tAAACAGlzb21p", Some(Media::Mp4)),
            ("data:image/png;base64,AAAA", Some(Media::DataUri)),
            ("  DATA:video/mp4,xx", Some(Media::DataUri)),
            ("AB-123-CD", None),
            ("open", None),
            ("badge-4711", None),
            ("", None),
            ("ok", None),
            ("Porte forcée côté cour", None),
            // What people and sensors write is not binary data.
            ("dijon-hotel-de-ville-access-01-Status-Report-OK", None),
            ("CamelCaseIdentifierForSomethingLongerThanForty", None),
            ("ThisIsAVeryLongFirmwareVersionStringV12345678", None),
            ("SN-2026-AB12-CD34-EF56-GH78-IJ90-KL12-MN34", None),
            ("550e8400-e29b-41d4-a716-446655440000", None),
            (
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                Some(Media::EncodedBinary),
            ),
            ("9f86d081884c7d659a2feaa0c55ad015", None),
            ("12.5, 13.0, 12.8", None),
            ("plate:1:abcdefghijklmnopqrst", None),
            // A vector and binary data, whatever else they say.
            (
                "[0.12, -0.5, 0.33, 0.9, 0.01, -0.77, 0.4, 0.2, 0.31, -0.08, 0.6, 0.11, -0.2, 0.05, 0.7, -0.9]",
                Some(Media::NumberVector),
            ),
            (
                "0.12 -0.5 0.33 0.9 0.01 -0.77 0.4 0.2 0.31 -0.08 0.6 0.11 -0.2 0.05 0.7 -0.9 0.3",
                Some(Media::NumberVector),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(sniff(text), *want, "{text}");
        }
    }

    #[test]
    fn encoded_magic_is_found_whatever_follows() {
        for (head, want) in [
            (&b"\xFF\xD8\xFF\xE0\x00\x10JFIF"[..], Media::Jpeg),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Media::Png),
            (b"GIF89a\x01\0\x01\0", Media::Gif),
            (b"RIFF\x24\0\0\0WEBPVP8 ", Media::Webp),
            (b"\0\0\0\x1cftypisom\0\0\x02\0", Media::Mp4),
        ] {
            for tail in 0..40u8 {
                let mut bytes = head.to_vec();
                bytes.extend((0..tail).map(|i| i.wrapping_mul(37)));
                assert_eq!(sniff(&STANDARD.encode(&bytes)), Some(want));
            }
        }
    }
}

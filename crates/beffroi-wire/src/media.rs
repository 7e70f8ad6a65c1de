//! Images and video frames are not observations (no biometric identification
//! anywhere, CNIL 2022 position on augmented cameras). A text value that carries one — a
//! `data:` URI or the base64 of a JPEG, PNG, GIF, WebP or MP4 — is refused at ingest, as is a
//! SenML data value (`vd`), whatever the field's declared type.

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
    let head = head.get(..usable)?.trim_end_matches('=');
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        if let Some(m) = decode_prefix(engine, head).and_then(|b| magic(&b)) {
            return Some(m);
        }
    }
    None
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

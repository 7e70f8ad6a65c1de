//! Subjects and the escaping of ids into subject tokens. Pure.
//!
//! | Subject                                                   | What                         |
//! |-----------------------------------------------------------|------------------------------|
//! | `beffroi.<territory>.in.<commune>.<device>.<kind>`        | a reading to ingest          |
//! | `beffroi.<territory>.part.<p>.<commune>.<device>.<kind>`  | the same, as stored: `<p>` is its partition |
//! | `beffroi.<territory>.live.<token>…`                       | the live events bus          |
//!
//! Publishers write the `in` form; the ingest stream rewrites it to the `part` form on
//! storage (see [`crate::stream`]). MQTT devices publish on the topic
//! `beffroi/<territory>/dev/<commune>/<device>/<kind>`, which the forwarder moves to the `in`
//! form ([`crate::mqtt_forward`]).
//!
//! # Tokens
//!
//! A NATS token may not be empty, nor contain `.`, whitespace, or be a wildcard (`*`, `>`).
//! Ids are free text, so every id goes through [`encode_token`]: the bytes `A–Z a–z 0–9 - _`
//! stand for themselves, every other byte of the UTF-8 form becomes `~XY` (two uppercase hex
//! digits), and the empty id is the lone token `~`. The result uses only characters that are
//! valid in NATS subjects *and* in MQTT topics (so the MQTT listener maps it unchanged), and
//! [`decode_token`] reverses it exactly: each id has exactly one encoding.

use std::fmt;

/// The first token of every Beffroi subject.
pub const NAMESPACE: &str = "beffroi";
/// The kind token of ingest subjects as published.
pub const INGEST: &str = "in";
/// The kind token of ingest subjects as stored (with their partition).
pub const PARTITIONED: &str = "part";
/// The kind token of the live events bus.
pub const LIVE: &str = "live";

/// Why a subject or a token is not one of ours.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("token {0:?} is not a valid escaped id")]
    BadToken(String),
    #[error("subject {0:?} is not `beffroi.<territory>.in.<commune>.<device>.<kind>`")]
    NotIngest(String),
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Escapes an id into one valid subject token (see the module doc).
pub fn encode_token(id: &str) -> String {
    if id.is_empty() {
        return "~".to_owned();
    }
    let mut out = String::with_capacity(id.len());
    for &b in id.as_bytes() {
        if is_plain(b) {
            out.push(char::from(b));
        } else {
            out.push('~');
            out.push_str(&format!("{b:02X}"));
        }
    }
    out
}

/// The id a token stands for; refuses anything [`encode_token`] cannot have produced.
pub fn decode_token(token: &str) -> Result<String, SubjectError> {
    let bad = || SubjectError::BadToken(token.to_owned());
    if token == "~" {
        return Ok(String::new());
    }
    if token.is_empty() {
        return Err(bad());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_plain(b) {
            out.push(b);
            i += 1;
        } else if b == b'~' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let upper = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
            if !hex.iter().all(|&c| upper(c)) {
                return Err(bad());
            }
            let text = std::str::from_utf8(hex).map_err(|_| bad())?;
            let value = u8::from_str_radix(text, 16).map_err(|_| bad())?;
            // A plain byte escaped would be a second encoding of the same id.
            if is_plain(value) {
                return Err(bad());
            }
            out.push(value);
            i += 3;
        } else {
            return Err(bad());
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// Where a reading comes from, as its ingest subject says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IngestSubject {
    pub territory: String,
    pub commune: String,
    pub device: String,
    /// The payload format announced by the publisher (`senml`, `json`…).
    pub kind: String,
}

impl IngestSubject {
    /// `beffroi.<territory>.in.<commune>.<device>.<kind>`, every id escaped.
    pub fn subject(&self) -> String {
        format!(
            "{NAMESPACE}.{}.{INGEST}.{}.{}.{}",
            encode_token(&self.territory),
            encode_token(&self.commune),
            encode_token(&self.device),
            encode_token(&self.kind)
        )
    }

    /// Parses the published form (`…in.<commune>.<device>.<kind>`) or the stored form
    /// (`…part.<p>.<commune>.<device>.<kind>`); returns the partition of the latter.
    pub fn parse(subject: &str) -> Result<(IngestSubject, Option<u32>), SubjectError> {
        let not = || SubjectError::NotIngest(subject.to_owned());
        let tokens: Vec<&str> = subject.split('.').collect();
        let (territory, partition, rest) = match tokens.as_slice() {
            [NAMESPACE, t, INGEST, rest @ ..] => (*t, None, rest),
            [NAMESPACE, t, PARTITIONED, p, rest @ ..] => {
                (*t, Some(p.parse::<u32>().map_err(|_| not())?), rest)
            }
            _ => return Err(not()),
        };
        let [commune, device, kind] = rest else {
            return Err(not());
        };
        let parsed = IngestSubject {
            territory: decode_token(territory)?,
            commune: decode_token(commune)?,
            device: decode_token(device)?,
            kind: decode_token(kind)?,
        };
        Ok((parsed, partition))
    }
}

impl fmt::Display for IngestSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.subject())
    }
}

/// What the ingest stream of a territory listens to: `beffroi.<territory>.in.*.*.*`.
pub fn ingest_filter(territory: &str) -> String {
    format!("{NAMESPACE}.{}.{INGEST}.*.*.*", encode_token(territory))
}

/// The stored subjects of one partition: `beffroi.<territory>.part.<p>.>`.
pub fn partition_filter(territory: &str, partition: u32) -> String {
    format!(
        "{NAMESPACE}.{}.{PARTITIONED}.{partition}.>",
        encode_token(territory)
    )
}

/// A subject of the live events bus: `beffroi.<territory>.live.<id>…`, every id escaped.
pub fn live_subject<'a>(territory: &str, ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut s = format!("{NAMESPACE}.{}.{LIVE}", encode_token(territory));
    for id in ids {
        s.push('.');
        s.push_str(&encode_token(id));
    }
    s
}

/// The ids of a live subject, or `None` if it is not one for this territory.
pub fn parse_live(territory: &str, subject: &str) -> Option<Vec<String>> {
    let prefix = format!("{NAMESPACE}.{}.{LIVE}.", encode_token(territory));
    let rest = subject.strip_prefix(&prefix)?;
    rest.split('.').map(|t| decode_token(t).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What NATS accepts as a literal token, and what the MQTT listener maps unchanged.
    fn valid_token(t: &str) -> bool {
        !t.is_empty()
            && t != "*"
            && t != ">"
            && t.bytes()
                .all(|b| b.is_ascii_graphic() && !b".*>/+#$".contains(&b))
    }

    #[test]
    fn tricky_ids_are_escaped() {
        assert_eq!(encode_token("capteur-12_b"), "capteur-12_b");
        assert_eq!(encode_token("a.b"), "a~2Eb");
        assert_eq!(encode_token("*"), "~2A");
        assert_eq!(encode_token(">"), "~3E");
        assert_eq!(encode_token("rue de la Paix"), "rue~20de~20la~20Paix");
        assert_eq!(encode_token("Évry"), "~C3~89vry");
        assert_eq!(encode_token("~"), "~7E");
        assert_eq!(encode_token(""), "~");
    }

    #[test]
    fn non_canonical_tokens_are_refused() {
        for t in ["", "a.b", "~2e", "~41", "~4", "a b", "~C3", "*"] {
            assert!(decode_token(t).is_err(), "{t:?} accepted");
        }
    }

    #[test]
    fn ingest_subjects_round_trip_in_both_forms() {
        let s = IngestSubject {
            territory: "dijon-metropole".into(),
            commune: "Chenôve".into(),
            device: "river.level/3".into(),
            kind: "senml".into(),
        };
        assert_eq!(
            s.subject(),
            "beffroi.dijon-metropole.in.Chen~C3~B4ve.river~2Elevel~2F3.senml"
        );
        assert_eq!(IngestSubject::parse(&s.subject()), Ok((s.clone(), None)));
        let stored = "beffroi.dijon-metropole.part.7.Chen~C3~B4ve.river~2Elevel~2F3.senml";
        assert_eq!(IngestSubject::parse(stored), Ok((s, Some(7))));
        for bad in [
            "beffroi.t.in.c.d",
            "beffroi.t.in.c.d.k.x",
            "other.t.in.c.d.k",
            "beffroi.t.part.x.c.d.k",
        ] {
            assert!(IngestSubject::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn live_subjects_round_trip() {
        let s = live_subject("t", ["incident", "a.b"]);
        assert_eq!(s, "beffroi.t.live.incident.a~2Eb");
        assert_eq!(
            parse_live("t", &s),
            Some(vec!["incident".into(), "a.b".into()])
        );
        assert_eq!(parse_live("u", &s), None);
    }

    proptest! {
        #[test]
        fn encoding_is_a_valid_token_and_reversible(id in any::<String>()) {
            let token = encode_token(&id);
            prop_assert!(valid_token(&token), "{token:?}");
            prop_assert_eq!(decode_token(&token), Ok(id));
        }

        #[test]
        fn decoding_accepts_only_canonical_tokens(token in "[A-Za-z0-9~_.-]{0,12}") {
            if let Ok(id) = decode_token(&token) {
                prop_assert_eq!(encode_token(&id), token);
            }
        }

        #[test]
        fn ingest_subjects_round_trip(
            territory in any::<String>(),
            commune in any::<String>(),
            device in any::<String>(),
            kind in "[a-z]{1,8}",
        ) {
            let s = IngestSubject { territory, commune, device, kind };
            let subject = s.subject();
            prop_assert_eq!(subject.split('.').count(), 6);
            prop_assert!(subject.split('.').all(valid_token));
            prop_assert_eq!(IngestSubject::parse(&subject), Ok((s, None)));
        }
    }
}

//! Free text people write (incident notes, crisis log, quarantine reasons…): the
//! identifiers it carries are replaced by their pseudonyms before it is stored.
//!
//! Recognised, in this order (an earlier match wins over an overlapping later one):
//! - pseudonyms already there (left as they are: scrubbing twice changes nothing);
//! - names the writer marked, `[[Jean Dupont]]` (unmarked names cannot be told from words);
//! - e-mail addresses;
//! - MAC addresses (`00:1a:2b:3c:4d:5e`, `00-1A-…`, Cisco's `001a.2b3c.4d5e`, and 12 hex
//!   digits written without separators when at least one is a letter);
//! - badge numbers after the word badge (`badge 7731`, `BADGE-7731`, `badge n° A-77`);
//! - phone numbers: French (`06 12 34 56 78`, `06.12.34.56.78`, `06/12/34/56/78`,
//!   `+33 6 12 34 56 78`, `0033 6…`, `33612345678`, and a mobile without its trunk 0,
//!   `6 12 34 56 78`, `612345678`) and E.164 (`+44 20 7946 0958`);
//! - French licence plates, any case, with spaces, hyphens, dots, underscores, slashes or
//!   nothing between the groups: SIV (`AB-123-CD`, `ab 123 cd`, `Ab.123.cD`, `AB123CD`)
//!   and the older FNI (`1234 AB 21`, `123-abc-2a`, `12 ABC 974`).
//!
//! What it does not catch (say so to the people who write): unmarked names, postal
//! addresses, foreign plates, identifiers spelled out in words. The match is on shape: a
//! few technical strings of the same shape are pseudonymised too (`de 100 km` reads as a
//! plate, a 9-digit number starting with 6 or 7 as a mobile number): that errs on the safe
//! side.

use std::sync::LazyLock;

use beffroi_core::Identifier;
use regex::Regex;

use crate::{Pseudonymiser, Sealed};

/// Scrubbed text and the sealed values behind the pseudonyms it now holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scrubbed {
    pub text: String,
    /// One per distinct pseudonym introduced, in order of first appearance.
    pub sealed: Vec<Sealed>,
}

struct Pattern {
    re: Regex,
    /// `None`: a pseudonym already there, kept as it is.
    id: Option<Identifier>,
    /// The capture group holding the value (0: the whole match).
    group: usize,
    /// A further test of the value the expression cannot say.
    check: Option<fn(&str) -> bool>,
}

fn pattern(re: &str, id: Option<Identifier>, group: usize) -> Pattern {
    Pattern {
        // The patterns are constants, tested below: they compile.
        re: Regex::new(re).unwrap_or_else(|e| unreachable!("{e}")),
        id,
        group,
        check: None,
    }
}

/// SIV letters (no I, O, U), any case.
const SIV_I: &str = "[A-HJ-NP-TV-Za-hj-np-tv-z]";

static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    vec![
        pattern(
            r"(?:plate|badge|mac|phone|email|name|id):[0-9]{1,9}:[a-z2-7]{20}",
            None,
            0,
        ),
        pattern(r"\[\[([^\[\]\n]{1,100})\]\]", Some(Identifier::Name), 1),
        pattern(
            r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}",
            Some(Identifier::Email),
            0,
        ),
        pattern(
            r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}",
            Some(Identifier::MacAddress),
            0,
        ),
        // Badge numbers, after the word that says so.
        pattern(
            r"(?i)badge[ \-_:#]*(?:n[°o]\.?[ ]*)?[A-Z0-9\-]{0,15}[0-9][A-Z0-9\-]{0,15}",
            Some(Identifier::Badge),
            0,
        ),
        // French numbers, national or international form, any of the usual separators.
        pattern(
            r"(?:(?:\+|00)?33[ .\-/]?(?:\(0\)[ .\-/]?)?|0)[1-9](?:[ .\-/]?[0-9]{2}){4}",
            Some(Identifier::PhoneNumber),
            0,
        ),
        // A French mobile written without its trunk 0.
        pattern(
            r"[67](?:[ .\-/]?[0-9]{2}){4}",
            Some(Identifier::PhoneNumber),
            0,
        ),
        // E.164: + and 7 to 15 digits, single separators between groups.
        pattern(
            r"\+[1-9](?:[ .\-]?[0-9]){6,14}",
            Some(Identifier::PhoneNumber),
            0,
        ),
        // SIV: two letters, three digits, two letters; any case and separators.
        pattern(
            &format!("{SIV_I}{{2}}[ \\-._/]?[0-9]{{3}}[ \\-._/]?{SIV_I}{{2}}"),
            Some(Identifier::LicencePlate),
            0,
        ),
        // FNI: 1–4 digits, 1–3 letters, the département. A single letter only between
        // separators (`123 A 75`), so that `14H30` stays a time.
        pattern(
            r"[0-9]{1,4}(?:[ \-.]?[A-Z]{2,3}[ \-.]?|[ \-.][A-Z][ \-.])(?:97[1-6]|2[AB]|[0-9]{2})",
            Some(Identifier::LicencePlate),
            0,
        ),
        // 12 hex digits without separators, at least one a letter (a MAC address as
        // equipment labels print it); after the plates and numbers, which win.
        Pattern {
            check: Some(|v| v.bytes().any(|b| b.is_ascii_alphabetic())),
            ..pattern(r"[0-9A-Fa-f]{12}", Some(Identifier::MacAddress), 0)
        },
    ]
});

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// A throwaway key, only to tell whether a text carries an identifier when no key is
/// loaded (its pseudonyms are never kept).
static PROBE: LazyLock<Option<Pseudonymiser>> = LazyLock::new(|| {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = i as u8;
    }
    Pseudonymiser::new(vec![crate::EpochKey::new(0, &k)])
});

/// Whether `text` holds something [`scrub`] would replace (for a caller without keys, which
/// must then refuse the text rather than keep it in clear).
pub fn carries_identifier(text: &str) -> bool {
    PROBE
        .as_ref()
        .is_some_and(|p| !scrub(p, text).sealed.is_empty())
}

/// Replaces the identifiers in `text` by their pseudonyms (current epoch).
pub fn scrub(p: &Pseudonymiser, text: &str) -> Scrubbed {
    // (start, end, what, raw value)
    let mut spans: Vec<(usize, usize, Option<Identifier>, &str)> = Vec::new();
    for pat in PATTERNS.iter() {
        for caps in pat.re.captures_iter(text) {
            let (Some(whole), Some(value)) = (caps.get(0), caps.get(pat.group)) else {
                continue;
            };
            let (s, e) = (whole.start(), whole.end());
            // Whole tokens only: not inside a longer word or number. An e-mail or a name
            // brings its own delimiters.
            let before = text[..s].chars().next_back();
            let after = text[e..].chars().next();
            let delimited = matches!(pat.id, Some(Identifier::Name));
            if !delimited && (is_word(before) || is_word(after)) {
                continue;
            }
            if matches!(pat.id, Some(Identifier::PhoneNumber)) && before == Some('+') {
                continue;
            }
            if spans.iter().any(|(a, b, _, _)| s < *b && *a < e) {
                continue;
            }
            let raw = value.as_str();
            if pat.id == Some(Identifier::Name) && raw.trim().is_empty() {
                continue;
            }
            if pat.check.is_some_and(|ok| !ok(raw)) {
                continue;
            }
            spans.push((s, e, pat.id, raw));
        }
    }
    spans.sort_by_key(|s| s.0);
    let mut out = String::with_capacity(text.len());
    let mut sealed: Vec<Sealed> = Vec::new();
    let mut at = 0;
    for (s, e, id, raw) in spans {
        out.push_str(&text[at..s]);
        match id {
            None => out.push_str(&text[s..e]),
            Some(id) => {
                let v = p.seal_written(id, raw);
                out.push_str(&v.pseudonym.0);
                if !sealed.iter().any(|x| x.pseudonym == v.pseudonym) {
                    sealed.push(v);
                }
            }
        }
        at = e;
    }
    out.push_str(&text[at..]);
    Scrubbed { text: out, sealed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EpochKey, normalise, parse_pseudonym};
    use proptest::prelude::*;

    fn keys() -> Pseudonymiser {
        Pseudonymiser::new(vec![EpochKey::new(2, &[11; 32])]).expect("keys")
    }

    fn kinds(s: &Scrubbed) -> Vec<Identifier> {
        s.sealed.iter().map(|v| v.identifier).collect()
    }

    #[test]
    fn every_kind_is_found_and_replaced() {
        let p = keys();
        let cases = [
            (
                "Véhicule AB-123-CD garé",
                Identifier::LicencePlate,
                "AB123CD",
            ),
            ("plaque ab-123-cd vue", Identifier::LicencePlate, "AB123CD"),
            ("plaque AB 123 CD vue", Identifier::LicencePlate, "AB123CD"),
            ("plaque AB123CD.", Identifier::LicencePlate, "AB123CD"),
            (
                "vieille 1234 AB 21 au parking",
                Identifier::LicencePlate,
                "1234AB21",
            ),
            ("corse 123-ABC-2A", Identifier::LicencePlate, "123ABC2A"),
            ("ancienne 123 A 75", Identifier::LicencePlate, "123A75"),
            ("réunion 12 ABC 974", Identifier::LicencePlate, "12ABC974"),
            (
                "appel du 06 12 34 56 78 reçu",
                Identifier::PhoneNumber,
                "+33612345678",
            ),
            (
                "appel du 06.12.34.56.78",
                Identifier::PhoneNumber,
                "+33612345678",
            ),
            (
                "appel du 0612345678",
                Identifier::PhoneNumber,
                "+33612345678",
            ),
            (
                "appel du +33 6 12 34 56 78",
                Identifier::PhoneNumber,
                "+33612345678",
            ),
            (
                "appel du +33 (0)6 12 34 56 78",
                Identifier::PhoneNumber,
                "+33612345678",
            ),
            (
                "londres +44 20 7946 0958",
                Identifier::PhoneNumber,
                "+442079460958",
            ),
            (
                "écrire à Jean.Dupont@Example.fr svp",
                Identifier::Email,
                "jean.dupont@example.fr",
            ),
            (
                "borne 00:1A:2b:3C:4d:5E",
                Identifier::MacAddress,
                "001a2b3c4d5e",
            ),
            (
                "borne 00-1A-2B-3C-4D-5E",
                Identifier::MacAddress,
                "001a2b3c4d5e",
            ),
            (
                "témoin [[Jean  Dupont]] entendu",
                Identifier::Name,
                "jean dupont",
            ),
            // Spellings a hurried operator types.
            ("plaque ab 123 cd vue", Identifier::LicencePlate, "AB123CD"),
            ("plaque Ab.123.cD vue", Identifier::LicencePlate, "AB123CD"),
            ("plaque AB 123-CD vue", Identifier::LicencePlate, "AB123CD"),
            ("plaque ab_123_cd vue", Identifier::LicencePlate, "AB123CD"),
            (
                "vieille 1234.AB.21 vue",
                Identifier::LicencePlate,
                "1234AB21",
            ),
            ("badge 7731 refusé", Identifier::Badge, "BADGE7731"),
            ("le BADGE-7731 refusé", Identifier::Badge, "BADGE7731"),
            ("Badge n° A-77 refusé", Identifier::Badge, "BADGENA77"),
            (
                "appel du 6 12 34 56 78",
                Identifier::PhoneNumber,
                "+33612345678",
            ),
            (
                "appel du 612345678",
                Identifier::PhoneNumber,
                "+33612345678",
            ),
            (
                "appel du 06/12/34/56/78",
                Identifier::PhoneNumber,
                "+33612345678",
            ),
            (
                "appel du 33612345678",
                Identifier::PhoneNumber,
                "+33612345678",
            ),
            ("borne 001A2B3C4D5E", Identifier::MacAddress, "001a2b3c4d5e"),
            (
                "borne 001a.2b3c.4d5e",
                Identifier::MacAddress,
                "001a2b3c4d5e",
            ),
        ];
        for (text, id, norm) in cases {
            let s = scrub(&p, text);
            assert_eq!(kinds(&s), vec![id], "{text} → {}", s.text);
            let v = &s.sealed[0];
            assert!(s.text.contains(&v.pseudonym.0), "{}", s.text);
            assert_eq!(p.open(&v.pseudonym.0, &v.ciphertext).expect("opens"), norm);
            assert_eq!(normalise(id, norm), norm);
        }
    }

    #[test]
    fn ordinary_text_and_technical_numbers_are_left_alone() {
        let p = keys();
        for text in [
            "Crue de l'Ouche, niveau 3.2 m à 14:05, 12 agents sur place",
            "Incident 42 clos le 2026-11-27, ticket #123456",
            "rappeler le PC à 15h30 (poste 1234), relève à 14H30",
            "température 21.5 °C, débit 120 m3/s",
            "entre 12 et 14 h, le 06/12/2026 à 9 h, horodatage 202612060900",
            "capteur 4f2a9c, lot 1234, commit 0f3e2a1",
            "",
        ] {
            let s = scrub(&p, text);
            assert_eq!(s.text, text);
            assert!(s.sealed.is_empty(), "{text}: {:?}", kinds(&s));
        }
    }

    #[test]
    fn a_value_seen_twice_has_one_pseudonym() {
        let p = keys();
        let s = scrub(&p, "AB-123-CD puis ab123cd puis AB 123 CD");
        assert_eq!(s.sealed.len(), 1);
        let pn = &s.sealed[0].pseudonym.0;
        assert_eq!(s.text, format!("{pn} puis {pn} puis {pn}"));
    }

    fn plate() -> impl Strategy<Value = String> {
        let l = "[A-HJ-NP-TV-Za-hj-np-tv-z]{2}";
        let sep = || prop_oneof![Just("-"), Just(" "), Just(""), Just("."), Just("_")];
        (l, 0u16..1000, l, sep(), sep())
            .prop_map(|(a, n, b, s1, s2)| format!("{a}{s1}{n:03}{s2}{b}"))
    }

    fn phone() -> impl Strategy<Value = String> {
        (
            1u8..10,
            proptest::collection::vec(0u8..100, 4),
            prop_oneof![Just(" "), Just("."), Just(""), Just("/")],
            0u8..4,
        )
            .prop_map(|(first, pairs, sep, form)| {
                let rest: Vec<String> = pairs.iter().map(|p| format!("{p:02}")).collect();
                let head = match form {
                    0 => format!("+33{sep}{first}"),
                    1 => format!("0{first}"),
                    2 => format!("33{first}"),
                    // A mobile without its trunk 0.
                    _ => format!("{}", 6 + first % 2),
                };
                format!("{head}{sep}{}", rest.join(sep))
            })
    }

    fn email() -> impl Strategy<Value = String> {
        ("[a-z][a-z0-9.]{0,10}[a-z]", "[a-z]{2,10}", "(fr|com|org)")
            .prop_map(|(u, d, t)| format!("{u}@{d}.{t}"))
    }

    fn secret() -> impl Strategy<Value = (Identifier, String)> {
        prop_oneof![
            plate().prop_map(|v| (Identifier::LicencePlate, v)),
            phone().prop_map(|v| (Identifier::PhoneNumber, v)),
            email().prop_map(|v| (Identifier::Email, v)),
            "[A-Z][a-z]{2,8} [A-Z][a-z]{2,8}".prop_map(|v| (Identifier::Name, format!("[[{v}]]"))),
        ]
    }

    /// Words of French prose without digits, `@`, `[`, `:` or `-`.
    fn prose() -> impl Strategy<Value = String> {
        proptest::collection::vec("[a-zéèàç]{1,9}[,.!?]?", 0..8).prop_map(|w| w.join(" "))
    }

    proptest! {
        #[test]
        fn no_identifier_survives(
            before in prose(), after in prose(),
            secrets in proptest::collection::vec(secret(), 1..4),
        ) {
            let p = keys();
            let mut text = before.clone();
            for (_, v) in &secrets {
                text.push(' ');
                text.push_str(v);
                text.push_str(" et ");
            }
            text.push_str(&after);
            let s = scrub(&p, &text);
            for (id, v) in &secrets {
                let raw = v.trim_start_matches("[[").trim_end_matches("]]");
                prop_assert!(!s.text.contains(raw), "{} in {}", raw, s.text);
                let n = normalise(*id, raw);
                prop_assert!(!s.text.contains(&n), "{} in {}", n, s.text);
                prop_assert!(s.sealed.iter().any(|x| x.identifier == *id
                    && p.open(&x.pseudonym.0, &x.ciphertext).as_deref() == Ok(n.as_str())));
            }
            // The prose around is kept.
            prop_assert!(s.text.starts_with(&before));
            prop_assert!(s.text.ends_with(&after));
        }

        #[test]
        fn scrubbing_twice_changes_nothing(text in "\\PC{0,80}", secret in secret()) {
            let p = keys();
            let text = format!("{text} {} {text}", secret.1);
            let once = scrub(&p, &text);
            let twice = scrub(&p, &once.text);
            prop_assert_eq!(&twice.text, &once.text);
            prop_assert!(twice.sealed.is_empty());
            for v in &once.sealed {
                prop_assert!(parse_pseudonym(&v.pseudonym.0).is_some());
                prop_assert!(once.text.contains(&v.pseudonym.0));
            }
        }

        #[test]
        fn prose_is_unchanged(text in prose()) {
            let s = scrub(&keys(), &text);
            prop_assert_eq!(s.text, text);
            prop_assert!(s.sealed.is_empty());
        }
    }
}

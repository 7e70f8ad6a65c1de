//! Text that may reach a store, a log line, the audit log, the live stream or an answer.
//!
//! [`SafeText`] is the one type for it: incident titles, evidence and log entries, crisis
//! titles, logs and summaries, the audit log's actor, target and detail. It can only be
//! built by passing the recogniser of this module ([`identifiers`]):
//! - [`SafeText::pseudonymising`]: each identifier replaced by its pseudonym (what
//!   `beffroi_privacy::scrub` does with the keys; a replacement that is not a pseudonym
//!   of the right shape is redacted instead);
//! - [`SafeText::redacting`]: each identifier replaced by a marker (`[plate]`), for text
//!   composed by the program from values that should already be safe (a template filled
//!   with readings, a JSON detail) and for a caller without keys;
//! - `From<&'static str>`: literals written in the code (the trusted-types rule: a
//!   developer does not write a plate into the source; a value read at run time is never
//!   `'static`).
//!
//! So a new field, route or sink that takes a `SafeText` cannot forget to scrub: the
//! compiler refuses a `String`.
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
//! What it does not catch: unmarked names, postal addresses, foreign plates, identifiers
//! spelled out in words. The match is on shape: a few technical strings of the same shape
//! are caught too (`de 100 km` reads as a plate, a 9-digit number starting with 6 or 7 as
//! a mobile number): that errs on the safe side.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::{Arc, LazyLock};

use regex::Regex;

use crate::territory::Identifier;

/// The prefix of a pseudonym of this kind of identifier (`plate:3:…`).
pub fn pseudonym_prefix(id: Identifier) -> &'static str {
    match id {
        Identifier::LicencePlate => "plate",
        Identifier::Badge => "badge",
        Identifier::MacAddress => "mac",
        Identifier::PhoneNumber => "phone",
        Identifier::Email => "email",
        Identifier::Name => "name",
        Identifier::Other => "id",
    }
}

/// Characters of a pseudonym's keyed part (base32, lower case).
pub const PSEUDONYM_CHARS: usize = 20;

/// Whether `s` is, whole, a pseudonym of `id`: `prefix:epoch:20 base32 characters`.
pub fn is_pseudonym_of(s: &str, id: Identifier) -> bool {
    let mut it = s.splitn(3, ':');
    let (Some(p), Some(e), Some(h)) = (it.next(), it.next(), it.next()) else {
        return false;
    };
    p == pseudonym_prefix(id)
        && !e.is_empty()
        && e.len() <= 9
        && e.bytes().all(|b| b.is_ascii_digit())
        && h.len() == PSEUDONYM_CHARS
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

/// One identifier (or pseudonym) found in a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The bytes it occupies, to be replaced whole.
    pub span: Range<usize>,
    /// `None`: a pseudonym already there, to keep as it is.
    pub identifier: Option<Identifier>,
    /// The bytes of the value itself (inside a marked name, without its brackets).
    pub value: Range<usize>,
}

struct Pattern {
    re: Regex,
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

/// The identifiers and pseudonyms in `text`, in order, without overlaps.
pub fn identifiers(text: &str) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
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
            if found.iter().any(|f| s < f.span.end && f.span.start < e) {
                continue;
            }
            let raw = value.as_str();
            if pat.id == Some(Identifier::Name) && raw.trim().is_empty() {
                continue;
            }
            if pat.check.is_some_and(|ok| !ok(raw)) {
                continue;
            }
            found.push(Found {
                span: s..e,
                identifier: pat.id,
                value: value.start()..value.end(),
            });
        }
    }
    found.sort_by_key(|f| f.span.start);
    found
}

/// Whether `text` holds an identifier in clear (pseudonyms do not count).
pub fn carries_identifier(text: &str) -> bool {
    identifiers(text).iter().any(|f| f.identifier.is_some())
}

/// `format!` into a [`SafeText`]: the composed text passes the recogniser
/// ([`SafeText::redacting`]), so a value formatted into it cannot carry an identifier out.
#[macro_export]
macro_rules! safe_format {
    ($($arg:tt)*) => {
        $crate::text::SafeText::redacting(&::std::format!($($arg)*))
    };
}

/// Text with no identifier in clear: see the module's documentation for how one is made.
///
/// A `String` read at run time does not become one without the recogniser:
///
/// ```compile_fail
/// let typed = String::from("AB-123-CD");
/// let t: beffroi_core::SafeText = typed.into();
/// ```
///
/// ```compile_fail
/// fn keep(s: &str) -> beffroi_core::SafeText { s.into() } // not `'static`
/// ```
///
/// ```
/// let t = beffroi_core::SafeText::redacting(&String::from("AB-123-CD vu"));
/// assert_eq!(t, "[plate] vu");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SafeText(Arc<str>);

impl SafeText {
    /// `text` with each identifier replaced by `[plate]`, `[phone]`… (pseudonyms kept).
    pub fn redacting(text: &str) -> SafeText {
        SafeText::pseudonymising(text, |_, _| String::new())
    }

    /// `text` with each identifier replaced by what `pseudonym` gives for it (its kind and
    /// raw value); a replacement that is not a pseudonym of that kind is redacted instead.
    pub fn pseudonymising(
        text: &str,
        mut pseudonym: impl FnMut(Identifier, &str) -> String,
    ) -> SafeText {
        let found = identifiers(text);
        if found.iter().all(|f| f.identifier.is_none()) {
            return SafeText(text.into());
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in found {
            out.push_str(&text[at..f.span.start]);
            match f.identifier {
                None => out.push_str(&text[f.span.clone()]),
                Some(id) => {
                    let p = pseudonym(id, &text[f.value.clone()]);
                    if is_pseudonym_of(&p, id) {
                        out.push_str(&p);
                    } else {
                        out.push('[');
                        out.push_str(pseudonym_prefix(id));
                        out.push(']');
                    }
                }
            }
            at = f.span.end;
        }
        out.push_str(&text[at..]);
        SafeText(out.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Without the white space around it (a trimmed safe text stays safe: white space is
    /// already a token boundary).
    pub fn trimmed(&self) -> SafeText {
        let t = self.0.trim();
        if t.len() == self.0.len() {
            self.clone()
        } else {
            SafeText(t.into())
        }
    }

    /// Shares the text (cheap: reference-counted).
    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }
}

impl From<&'static str> for SafeText {
    /// A literal of the source code (trusted: see the module's documentation).
    fn from(s: &'static str) -> SafeText {
        SafeText(s.into())
    }
}

impl Deref for SafeText {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SafeText {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SafeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SafeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for SafeText {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<String> for SafeText {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<&str> for SafeText {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: &str = "plate:2:abcdefghijklmnopqrst";

    #[test]
    fn redaction_leaves_no_identifier_and_keeps_pseudonyms() {
        let t = SafeText::redacting(&format!(
            "AB-123-CD vu, appeler le 06 12 34 56 78 ou a.b@c.fr, badge 7731, {P}, [[Jean Dupont]]"
        ));
        assert_eq!(
            t.as_str(),
            format!("[plate] vu, appeler le [phone] ou [email], [badge], {P}, [name]")
        );
        assert!(!carries_identifier(&t));
    }

    #[test]
    fn a_replacement_that_is_not_a_pseudonym_is_redacted() {
        // A pseudonymiser that returns the value itself, or a pseudonym of another kind,
        // cannot make a SafeText that carries it.
        let t = SafeText::pseudonymising("AB-123-CD", |_, raw| raw.to_string());
        assert_eq!(t, "[plate]");
        let t = SafeText::pseudonymising("AB-123-CD", |_, _| {
            "phone:2:abcdefghijklmnopqrst".to_string()
        });
        assert_eq!(t, "[plate]");
        let t = SafeText::pseudonymising("AB-123-CD et 0612345678", |id, _| {
            format!("{}:2:abcdefghijklmnopqrst", pseudonym_prefix(id))
        });
        assert_eq!(
            t,
            "plate:2:abcdefghijklmnopqrst et phone:2:abcdefghijklmnopqrst"
        );
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "Crue de l'Ouche, niveau 3.2 m à 14:05, 12 agents sur place",
            "severity major → critical; not acknowledged after 5m",
            "rappeler le PC à 15h30 (poste 1234), relève à 14H30",
            "capteur 4f2a9c, lot 1234, commit 0f3e2a1",
        ] {
            assert_eq!(SafeText::redacting(text), text);
        }
    }

    fn secret() -> impl Strategy<Value = String> {
        let l = "[A-HJ-NP-TV-Za-hj-np-tv-z]{2}";
        let sep = || prop_oneof![Just("-"), Just(" "), Just(""), Just("."), Just("_")];
        prop_oneof![
            (l, 0u16..1000, l, sep(), sep())
                .prop_map(|(a, n, b, s1, s2)| format!("{a}{s1}{n:03}{s2}{b}")),
            (1u8..10, 0u32..100_000_000).prop_map(|(a, b)| format!("0{a}{b:08}")),
            "[a-z]{1,8}@[a-z]{2,8}\\.fr",
            (0u32..100_000).prop_map(|n| format!("badge {n}")),
        ]
    }

    proptest! {
        #[test]
        fn no_safe_text_carries_an_identifier(
            before in "\\PC{0,40}", after in "\\PC{0,40}", s in secret()
        ) {
            let text = format!("{before} {s} {after}");
            let t = SafeText::redacting(&text);
            prop_assert!(!carries_identifier(&t), "{}", t);
            prop_assert!(!t.contains(&s), "{}", t);
            // Idempotent: what passed once passes unchanged.
            prop_assert_eq!(SafeText::redacting(&t), t.clone());
        }
    }
}

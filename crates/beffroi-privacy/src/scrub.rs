//! Free text people write (incident notes, crisis log, quarantine reasons…) and any other
//! text bound for a store, a log or an answer: the identifiers it carries are replaced by
//! their pseudonyms, and the result is a [`SafeText`]. What is recognised (and what is not)
//! is [`beffroi_core::text`]'s recogniser; this module adds the keys.

use beffroi_core::SafeText;

use crate::{Pseudonymiser, Sealed};

/// Scrubbed text and the sealed values behind the pseudonyms it now holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scrubbed {
    pub text: SafeText,
    /// One per distinct pseudonym introduced, in order of first appearance.
    pub sealed: Vec<Sealed>,
}

/// Whether `text` holds something [`scrub`] would replace (for a caller without keys, which
/// must then refuse the text rather than keep it in clear).
pub fn carries_identifier(text: &str) -> bool {
    beffroi_core::text::carries_identifier(text)
}

/// Replaces the identifiers in `text` by their pseudonyms (current epoch, written domain).
pub fn scrub(p: &Pseudonymiser, text: &str) -> Scrubbed {
    let mut sealed: Vec<Sealed> = Vec::new();
    let text = SafeText::pseudonymising(text, |id, raw| {
        let v = p.seal_written(id, raw);
        let pseudonym = v.pseudonym.0.clone();
        if !sealed.iter().any(|x| x.pseudonym == v.pseudonym) {
            sealed.push(v);
        }
        pseudonym
    });
    Scrubbed { text, sealed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EpochKey, normalise, parse_pseudonym};
    use beffroi_core::Identifier;
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

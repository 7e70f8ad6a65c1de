//! Data a Beffroi deployment may not declare at all, whatever its category: biometric or
//! facial data, emotion recognition, and the categorisation of people by age, gender or
//! origin (AI Act art. 5; GDPR art. 9; CNIL's 2022 position on augmented cameras).
//!
//! A field or kind declares what it is by its *name* (and its label, `category` and
//! `identifier` values). Names are split into tokens on `_`, `-`, `.` (labels on any
//! non-letter), so `voltage`, `storage`, `page` and `usage` are not `age`; a token is then
//! compared to two lists:
//! - **always refused**: biometric, facial, fingerprint, iris, emotion, mood, gender, sex,
//!   ethnicity, race, nationality… (and their French forms in labels);
//! - **refused about people**: `age`, `origin`, `male`, `female`, `adult`, `child`, `minor`,
//!   `senior`… — only when the field counts people (`people_count`), is personal or
//!   sensitive, or another token of the name speaks of people or of a breakdown (`people`,
//!   `visitor`, `group`, `range`, `bracket`, `estimated`…). So `battery_age_days` and
//!   `origin_site` stay technical, while `age_group`, `visitor_age` or a people counter's
//!   `adults` are refused.

/// Why a declaration is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prohibited {
    /// Biometric or facial data (face, fingerprint, iris, gait, voiceprint…).
    Biometric,
    /// Emotion recognition (emotion, mood, sentiment).
    Emotion,
    /// Categorising people by age, gender or sex, ethnic origin, race or nationality.
    Categorisation,
}

impl Prohibited {
    /// The reason, with its legal grounds, as shown by `beffroi check`.
    pub fn reason(self) -> &'static str {
        match self {
            Prohibited::Biometric => {
                "biometric or facial data is refused: real-time remote biometric \
                 identification in public spaces is banned (AI Act art. 5(1)(h)), biometric \
                 data are a special category (GDPR art. 9), and augmented cameras may not \
                 identify people (CNIL 2022 position on augmented cameras)"
            }
            Prohibited::Emotion => {
                "emotion recognition is refused: inferring people's emotions is prohibited or \
                 high-risk (AI Act art. 5(1)(f), annex III) and outside what augmented cameras \
                 may do (CNIL 2022 position on augmented cameras)"
            }
            Prohibited::Categorisation => {
                "categorising people by age, gender or origin is refused: biometric \
                 categorisation is prohibited (AI Act art. 5(1)(g)), racial or ethnic origin is a \
                 special category (GDPR art. 9), and augmented cameras may only count, not \
                 characterise, people (CNIL 2022 position on augmented cameras)"
            }
        }
    }
}

const BIOMETRIC: &[&str] = &[
    "face",
    "faces",
    "facial",
    "faceprint",
    "faceid",
    "biometric",
    "biometrics",
    "biometry",
    "fingerprint",
    "fingerprints",
    "iris",
    "retina",
    "retinal",
    "gait",
    "voiceprint",
    "palmprint",
    "facerecognition",
    // French, in labels and values
    "visage",
    "visages",
    "faciale",
    "faciales",
    "biometrique",
    "biométrique",
    "biometriques",
    "biométriques",
    "biométrie",
    "biometrie",
    "empreinte",
    "empreintes",
];

const EMOTION: &[&str] = &[
    "emotion",
    "emotions",
    "emotional",
    "mood",
    "moods",
    "sentiment",
    "émotion",
    "émotions",
    "humeur",
];

const CATEGORY_ALWAYS: &[&str] = &[
    "gender",
    "genders",
    "sex",
    "ethnic",
    "ethnicity",
    "ethnicities",
    "race",
    "races",
    "racial",
    "nationality",
    "nationalities",
    "sexe",
    "ethnique",
    "ethniques",
    "nationalité",
    "nationalite",
];

/// Refused only when the field is about people.
const CATEGORY_ABOUT_PEOPLE: &[&str] = &[
    "age", "ages", "aged", "âge", "origin", "origins", "origine", "male", "males", "female",
    "females", "men", "women", "adult", "adults", "child", "children", "kid", "kids", "minor",
    "minors", "senior", "seniors", "elderly", "teen", "teens", "youth", "homme", "hommes", "femme",
    "femmes", "enfant", "enfants", "genre",
];

/// Tokens that make a name speak of people or of a breakdown.
const PEOPLE_CONTEXT: &[&str] = &[
    "people",
    "person",
    "persons",
    "pedestrian",
    "pedestrians",
    "visitor",
    "visitors",
    "passenger",
    "passengers",
    "crowd",
    "occupant",
    "occupants",
    "user",
    "users",
    "group",
    "groups",
    "range",
    "bracket",
    "band",
    "class",
    "estimate",
    "estimated",
    "category",
    "breakdown",
    "share",
    "ratio",
    "count",
    "personnes",
    "visiteurs",
    "tranche",
];

fn lower_tokens(s: &str, split: fn(char) -> bool) -> Vec<String> {
    s.split(split)
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn id_separator(c: char) -> bool {
    matches!(c, '_' | '-' | '.' | ' ' | '/' | ':')
}

fn any_in(tokens: &[String], list: &[&str]) -> bool {
    tokens.iter().any(|t| list.contains(&t.as_str()))
}

/// Checks tokens: the always-refused ones, then the about-people ones when `about_people`
/// or when another token gives the people context.
fn check_tokens(tokens: &[String], about_people: bool) -> Option<Prohibited> {
    if any_in(tokens, BIOMETRIC) {
        return Some(Prohibited::Biometric);
    }
    if any_in(tokens, EMOTION) {
        return Some(Prohibited::Emotion);
    }
    if any_in(tokens, CATEGORY_ALWAYS) {
        return Some(Prohibited::Categorisation);
    }
    if any_in(tokens, CATEGORY_ABOUT_PEOPLE) && (about_people || any_in(tokens, PEOPLE_CONTEXT)) {
        return Some(Prohibited::Categorisation);
    }
    None
}

/// An identifier (kind id, field name, rule id, `category` or `identifier` value), split on
/// `_`, `-`, `.`. `about_people`: the field counts people or is personal/sensitive.
pub fn prohibited_name(name: &str, about_people: bool) -> Option<Prohibited> {
    check_tokens(&lower_tokens(name, id_separator), about_people)
}

/// A free-text label ("Caméra de reconnaissance faciale"), split on any non-letter; only
/// the always-refused words count (labels are prose, "âge" in a sentence is not a field).
pub fn prohibited_label(label: &str) -> Option<Prohibited> {
    check_tokens(&lower_tokens(label, |c| !c.is_alphanumeric()), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Prohibited::*;

    #[test]
    fn table() {
        let cases: &[(&str, bool, Option<Prohibited>)] = &[
            // refused whatever the context
            ("face_match", false, Some(Biometric)),
            ("facial_recognition", false, Some(Biometric)),
            ("biometric", false, Some(Biometric)),
            ("fingerprint_id", false, Some(Biometric)),
            ("iris-scan", false, Some(Biometric)),
            ("emotion", false, Some(Emotion)),
            ("crowd.mood", false, Some(Emotion)),
            ("gender", false, Some(Categorisation)),
            ("sex_ratio", false, Some(Categorisation)),
            ("ethnicity", false, Some(Categorisation)),
            ("ethnic_origin", false, Some(Categorisation)),
            ("race", false, Some(Categorisation)),
            ("nationality", false, Some(Categorisation)),
            ("FACE", false, Some(Biometric)),
            // about people only
            ("age_group", false, Some(Categorisation)),
            ("visitor_age", false, Some(Categorisation)),
            ("estimated_age", false, Some(Categorisation)),
            ("age", true, Some(Categorisation)),
            ("adults", true, Some(Categorisation)),
            ("people_origin", false, Some(Categorisation)),
            ("children_count", false, Some(Categorisation)),
            // technical: no false positive
            ("voltage", true, None),
            ("storage", true, None),
            ("page", true, None),
            ("usage", true, None),
            ("surface_temp_c", true, None),
            ("interface", true, None),
            ("surface", true, None),
            ("battery_age_days", false, None),
            ("origin_site", false, None),
            ("occupancy", true, None),
            ("firmware", false, None),
            ("fps", false, None),
            ("tracer", false, None),
            ("sextant", false, None),
            ("average", true, None),
            ("message", true, None),
        ];
        for (name, people, want) in cases {
            assert_eq!(
                prohibited_name(name, *people),
                *want,
                "{name} (people={people})"
            );
        }
    }

    #[test]
    fn labels() {
        assert_eq!(
            prohibited_label("Caméra de reconnaissance faciale"),
            Some(Biometric)
        );
        assert_eq!(prohibited_label("Détection d'émotions"), Some(Emotion));
        assert_eq!(
            prohibited_label("Facial recognition camera"),
            Some(Biometric)
        );
        assert_eq!(prohibited_label("People counter"), None);
        assert_eq!(prohibited_label("Video-protection camera health"), None);
        assert_eq!(prohibited_label("Road weather station"), None);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        const FORBIDDEN: &[&str] = &["face", "biometric", "emotion", "gender", "ethnicity"];

        proptest! {
            /// A forbidden token anywhere in a name, between any separators, is refused.
            #[test]
            fn forbidden_token_is_found(
                pre in "[a-z0-9]{0,8}",
                post in "[a-z0-9]{0,8}",
                tok in prop::sample::select(FORBIDDEN.to_vec()),
                sep in prop::sample::select(vec!["_", "-", "."]),
                people in any::<bool>(),
            ) {
                let name = [pre.as_str(), tok, post.as_str()]
                    .iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join(sep);
                prop_assert!(prohibited_name(&name, people).is_some(), "{}", name);
            }

            /// A forbidden word glued inside a longer token is not a token: no false
            /// positive from substrings (`voltage`, `surface`, `courage`).
            #[test]
            fn substrings_are_not_tokens(
                pre in "[b-df-hj-np-tv-z]{1,4}",
                tok in prop::sample::select(vec!["age", "face", "race", "mood", "sex"]),
                people in any::<bool>(),
            ) {
                let name = format!("{pre}{tok}");
                prop_assume!(!FORBIDDEN.contains(&name.as_str()));
                prop_assert!(prohibited_name(&name, people).is_none(), "{}", name);
            }
        }
    }
}

//! OASIS CAP 1.2, the Common Alerting Protocol, as a wire format at the edge.
//!
//! - [`Alert`] and what it holds are the message as types. The element names and the
//!   closed lists of values are those of the standard; what the standard leaves optional
//!   is an `Option` or an empty `Vec`.
//! - [`write::alert_xml`] writes an alert that validates against the OASIS schema. The
//!   elements come in the schema's order, times carry an explicit offset (`+00:00`; the
//!   schema refuses `Z`), and text is escaped.
//! - [`read::parse_alert`] reads an alert from untrusted XML. It refuses any DTD, so no
//!   external entity is fetched and no entity expansion grows (XXE, "billion laughs"). It
//!   also refuses an entity other than XML's five and character references, a document
//!   over [`read::MAX_BYTES`], nesting deeper than [`read::MAX_DEPTH`], and more than
//!   [`read::MAX_ELEMENTS`] elements. An error names the line and the element path.
//! - [`atom`] writes the Atom feed that lists a territory's alerts.
//!
//! **Architecture invariant:** no I/O. Bytes in, types out; types in, text out.

use beffroi_core::time::{civil_from_days, days_from_civil};

pub mod atom;
pub mod read;
pub mod write;

/// The CAP 1.2 namespace.
pub const NAMESPACE: &str = "urn:oasis:names:tc:emergency:cap:1.2";

/// A time as CAP carries it: milliseconds since the Unix epoch (UTC). Written to the
/// second, with the `+00:00` offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CapTime(pub i64);

macro_rules! cap_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// Every value, in the standard's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as the standard spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value spelled as the standard does (case-sensitive).
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

cap_enum!(
    /// `status`: how the alert is to be handled.
    Status { Actual = "Actual", Exercise = "Exercise", System = "System", Test = "Test", Draft = "Draft" }
);
cap_enum!(
    /// `msgType`: what the message is.
    MsgType { Alert = "Alert", Update = "Update", Cancel = "Cancel", Ack = "Ack", Error = "Error" }
);
cap_enum!(
    /// `scope`: who may receive it.
    Scope { Public = "Public", Restricted = "Restricted", Private = "Private" }
);
cap_enum!(
    /// `info/category`.
    Category {
        Geo = "Geo", Met = "Met", Safety = "Safety", Security = "Security", Rescue = "Rescue",
        Fire = "Fire", Health = "Health", Env = "Env", Transport = "Transport", Infra = "Infra",
        Cbrne = "CBRNE", Other = "Other",
    }
);
cap_enum!(
    /// `info/responseType`: the action recommended.
    ResponseType {
        Shelter = "Shelter", Evacuate = "Evacuate", Prepare = "Prepare", Execute = "Execute",
        Avoid = "Avoid", Monitor = "Monitor", Assess = "Assess", AllClear = "AllClear", None = "None",
    }
);
cap_enum!(
    /// `info/urgency`.
    Urgency { Immediate = "Immediate", Expected = "Expected", Future = "Future", Past = "Past", Unknown = "Unknown" }
);
cap_enum!(
    /// `info/severity`.
    Severity { Extreme = "Extreme", Severe = "Severe", Moderate = "Moderate", Minor = "Minor", Unknown = "Unknown" }
);
cap_enum!(
    /// `info/certainty`.
    Certainty { Observed = "Observed", Likely = "Likely", Possible = "Possible", Unlikely = "Unlikely", Unknown = "Unknown" }
);

/// A name and a value (`eventCode`, `parameter`, `geocode`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedValue {
    pub name: String,
    pub value: String,
}

/// A point as CAP writes it: WGS 84 latitude, longitude.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

/// `area/circle`: a centre and a radius in kilometres.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Circle {
    pub centre: LatLon,
    pub radius_km: f64,
}

/// `info/area`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Area {
    pub area_desc: String,
    /// Closed rings: at least four points, the first repeated last.
    pub polygons: Vec<Vec<LatLon>>,
    pub circles: Vec<Circle>,
    pub geocodes: Vec<NamedValue>,
}

/// `alert/info`.
#[derive(Clone, Debug, PartialEq)]
pub struct Info {
    /// RFC 3066 language code (`fr-FR`); `en-US` when absent.
    pub language: Option<String>,
    pub categories: Vec<Category>,
    pub event: String,
    pub response_types: Vec<ResponseType>,
    pub urgency: Urgency,
    pub severity: Severity,
    pub certainty: Certainty,
    pub event_codes: Vec<NamedValue>,
    pub effective: Option<CapTime>,
    pub onset: Option<CapTime>,
    pub expires: Option<CapTime>,
    pub sender_name: Option<String>,
    pub headline: Option<String>,
    pub description: Option<String>,
    pub instruction: Option<String>,
    pub web: Option<String>,
    pub contact: Option<String>,
    pub parameters: Vec<NamedValue>,
    pub areas: Vec<Area>,
}

/// `alert`.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Unique for the sender; no spaces, commas, `<` or `&`.
    pub identifier: String,
    /// The sender's identity; the same restrictions.
    pub sender: String,
    pub sent: CapTime,
    pub status: Status,
    pub msg_type: MsgType,
    pub source: Option<String>,
    pub scope: Scope,
    /// Required when the scope is `Restricted`.
    pub restriction: Option<String>,
    /// Required when the scope is `Private`.
    pub addresses: Option<String>,
    pub codes: Vec<String>,
    pub note: Option<String>,
    /// Earlier messages this one updates or cancels.
    pub references: Vec<Reference>,
    pub incidents: Option<String>,
    pub infos: Vec<Info>,
}

/// One `references` entry: `sender,identifier,sent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub sender: String,
    pub identifier: String,
    pub sent: CapTime,
}

/// Whether `s` may be an `identifier` or a `sender`: not empty, and no white space, comma,
/// `<` or `&` (CAP 1.2, 3.2.1).
pub fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, ',' | '<' | '&'))
}

impl CapTime {
    /// `YYYY-MM-DDThh:mm:ss+00:00`, to the second (the fraction is dropped).
    pub fn to_cap(self) -> String {
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }

    /// Reads `YYYY-MM-DDThh:mm:ss` followed by `+hh:mm`, `-hh:mm` or (leniently, as
    /// some feeds write it) `Z`; a fraction of a second is accepted. `None` otherwise.
    pub fn parse(s: &str) -> Option<CapTime> {
        let b = s.as_bytes();
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let t = s.get(r)?;
            if t.bytes().all(|c| c.is_ascii_digit()) {
                t.parse().ok()
            } else {
                None
            }
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo)
            || d < 1
            || d > days_in_month(y, mo)
            || h > 23
            || mi > 59
            || se > 60
        {
            return None;
        }
        let mut rest = &s[19..];
        let mut ms = 0i64;
        if let Some(frac) = rest.strip_prefix('.') {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            let first3: String = frac[..digits]
                .chars()
                .chain("000".chars())
                .take(3)
                .collect();
            ms = first3.parse().ok()?;
            rest = &frac[digits..];
        }
        let offset_min = match rest {
            "Z" => 0,
            _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
                let sign = match rest.as_bytes()[0] {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                let oh: i64 = rest[1..3]
                    .parse()
                    .ok()
                    .filter(|_| rest[1..3].bytes().all(|c| c.is_ascii_digit()))?;
                let om: i64 = rest[4..6]
                    .parse()
                    .ok()
                    .filter(|_| rest[4..6].bytes().all(|c| c.is_ascii_digit()))?;
                if oh > 14 || om > 59 {
                    return None;
                }
                sign * (oh * 60 + om)
            }
            _ => return None,
        };
        let days = days_from_civil(y, mo as u32, d as u32);
        let secs = days * 86_400 + h * 3600 + mi * 60 + se.min(59) - offset_min * 60;
        Some(CapTime(secs * 1000 + ms))
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_with_an_explicit_offset_and_read_back() {
        let t = CapTime(1_796_000_000_000);
        assert_eq!(t.to_cap(), "2026-11-30T00:53:20+00:00");
        assert_eq!(CapTime::parse(&t.to_cap()), Some(t));
        assert_eq!(
            CapTime::parse("2026-11-30T01:53:20+01:00"),
            Some(t),
            "an offset is applied"
        );
        assert_eq!(CapTime::parse("2026-11-30T00:53:20Z"), Some(t));
        assert_eq!(
            CapTime::parse("2026-11-30T00:53:20.250-00:00"),
            Some(CapTime(t.0 + 250))
        );
        for bad in [
            "2026-11-30T01:33:20",
            "2026-11-30 01:33:20+00:00",
            "2026-02-30T01:33:20+00:00",
            "2026-11-30T24:00:00+00:00",
            "2026-11-30T01:33:20+1:00",
            "2026-11-30T01:33:20+15:00",
            "2026-11-30T01:33:2x+00:00",
            "２026-11-30T01:33:20+00:00",
        ] {
            assert_eq!(CapTime::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn identifiers_refuse_what_the_standard_forbids() {
        assert!(valid_identifier("dijon-metropole.INC-42.3"));
        for bad in ["", "a b", "a,b", "a<b", "a&b", "a\tb"] {
            assert!(!valid_identifier(bad), "{bad:?}");
        }
    }

    #[test]
    fn every_value_reads_back() {
        for v in Category::ALL {
            assert_eq!(Category::parse(v.as_str()), Some(*v));
        }
        assert_eq!(Category::parse("CBRNE"), Some(Category::Cbrne));
        assert_eq!(Urgency::parse("immediate"), None, "case-sensitive");
    }
}

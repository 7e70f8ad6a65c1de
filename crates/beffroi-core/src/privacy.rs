//! The privacy policy of a deployment (`privacy.toml`): who the controller is, how long each
//! category of data is kept, the minimum group size of people counts, and the register of
//! processing activities (GDPR art. 30) that every personal field must belong to.
//!
//! Pure data: loading is `beffroi-territory::privacy`, enforcement is spread over the
//! pipeline (pseudonymisation), the store (purges) and the API (unmasking, suppression).

use std::sync::Arc;

use crate::territory::{DataCategory, Identifier};
use crate::time::Duration;

/// Days, as a [`Duration`].
pub const fn days(n: i64) -> Duration {
    Duration::from_mins(n * 24 * 60)
}

/// The longest a personal datum tied to video may be kept (code de la sécurité
/// intérieure, L252-5: one month).
pub const VIDEO_MAX_RETENTION: Duration = days(30);

/// The data controller, as published in the register and the public notices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Controller {
    pub name: String,
    pub address: String,
    /// Where people exercise their rights (postal address, form, e-mail).
    pub contact: String,
    pub dpo_contact: String,
}

/// How long each category of data is kept, in every store (observations, incidents and
/// their logs, reports, exports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub technical: Duration,
    pub personal: Duration,
    pub sensitive: Duration,
    /// Raw technical measurements, which are voluminous: defaults to `technical`.
    pub technical_observations: Duration,
}

impl Retention {
    pub fn of(&self, c: DataCategory) -> Duration {
        match c {
            DataCategory::Technical => self.technical,
            DataCategory::Personal => self.personal,
            DataCategory::Sensitive => self.sensitive,
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            technical: days(365),
            personal: days(30),
            sensitive: days(7),
            technical_observations: days(30),
        }
    }
}

/// People counts are shown only per zone and time bucket, and not at all below
/// `min_group_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aggregates {
    pub min_group_size: u32,
    pub bucket: Duration,
}

impl Default for Aggregates {
    fn default() -> Self {
        Aggregates {
            min_group_size: 10,
            bucket: Duration::from_mins(5),
        }
    }
}

impl Aggregates {
    /// The count as it may be shown, or `None` when it is below the minimum group size.
    /// **The** suppression rule: every view, export, title and evidence of a people count
    /// goes through it (or through [`Aggregates::shown_text`], which calls it).
    pub fn shown(&self, count: f64) -> Option<f64> {
        (count >= f64::from(self.min_group_size)).then_some(count)
    }

    /// The count as text for titles, evidence and reports: whole people, or `< N` when
    /// suppressed (`N` the minimum group size).
    pub fn shown_text(&self, count: f64) -> String {
        match self.shown(count) {
            Some(n) => format!("{}", n.round()),
            None => format!("< {}", self.min_group_size),
        }
    }

    /// A total of several people counts, each of which is also shown on its own (a
    /// counter's page): shown only when the total is, and the counts withheld on their own
    /// are none or add up to the minimum group size at least — else the total minus the
    /// shown counts would give a withheld figure back (**complementary suppression**).
    /// Zone totals, event occupancies and the sums of capacity rules all go through it.
    pub fn total_shown(&self, counts: &[f64]) -> Option<f64> {
        let total: f64 = counts.iter().sum();
        let (hidden, hidden_sum) = counts
            .iter()
            .filter(|n| self.shown(**n).is_none())
            .fold((0usize, 0.0), |(k, s), n| (k + 1, s + n));
        if hidden > 0 && self.shown(hidden_sum).is_none() {
            return None;
        }
        self.shown(total)
    }

    /// [`Aggregates::total_shown`] as text for titles and evidence: the whole total; when
    /// it is withheld, `< N` if it is below the group size, else `≥ S` with `S` the sum of
    /// the counts shown on their own (which says nothing they do not already say).
    pub fn total_text(&self, counts: &[f64]) -> String {
        if let Some(n) = self.total_shown(counts) {
            return format!("{}", n.round());
        }
        let shown: f64 = counts.iter().filter_map(|n| self.shown(*n)).sum();
        match self.shown(shown) {
            Some(s) => format!("≥ {}", s.round()),
            None => format!("< {}", self.min_group_size),
        }
    }

    /// Start of the time bucket holding `t` (buckets are aligned on the Unix epoch).
    pub fn bucket_start(&self, t: crate::Timestamp) -> crate::Timestamp {
        let b = self.bucket.millis().max(1);
        crate::Timestamp(t.0.div_euclid(b) * b)
    }
}

/// Lawfulness of processing, GDPR art. 6(1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LegalBasis {
    Consent,
    Contract,
    LegalObligation,
    VitalInterests,
    PublicTask,
    LegitimateInterests,
}

impl LegalBasis {
    pub const ALL: [LegalBasis; 6] = [
        LegalBasis::Consent,
        LegalBasis::Contract,
        LegalBasis::LegalObligation,
        LegalBasis::VitalInterests,
        LegalBasis::PublicTask,
        LegalBasis::LegitimateInterests,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            LegalBasis::Consent => "consent",
            LegalBasis::Contract => "contract",
            LegalBasis::LegalObligation => "legal_obligation",
            LegalBasis::VitalInterests => "vital_interests",
            LegalBasis::PublicTask => "public_task",
            LegalBasis::LegitimateInterests => "legitimate_interests",
        }
    }
    pub fn parse(s: &str) -> Option<LegalBasis> {
        LegalBasis::ALL.into_iter().find(|b| b.as_str() == s)
    }
    /// The article, for the register.
    pub fn article(self) -> &'static str {
        match self {
            LegalBasis::Consent => "GDPR art. 6(1)(a)",
            LegalBasis::Contract => "GDPR art. 6(1)(b)",
            LegalBasis::LegalObligation => "GDPR art. 6(1)(c)",
            LegalBasis::VitalInterests => "GDPR art. 6(1)(d)",
            LegalBasis::PublicTask => "GDPR art. 6(1)(e)",
            LegalBasis::LegitimateInterests => "GDPR art. 6(1)(f)",
        }
    }
}

/// One processing activity of the register (GDPR art. 30(1)).
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    pub id: Arc<str>,
    pub name: String,
    pub purposes: Vec<String>,
    pub legal_basis: LegalBasis,
    /// For sensitive data: the condition of GDPR art. 9(2) (or the law of art. 10) relied on.
    pub special_condition: Option<String>,
    /// Categories of people concerned ("agents municipaux", "usagers du parking"…).
    pub data_subjects: Vec<String>,
    pub recipients: Vec<String>,
    /// Shorter than the category's retention when set; never longer.
    pub retention: Option<Duration>,
    pub security_measures: Vec<String>,
    /// Transfers outside the EU ("none" when absent).
    pub transfers: Option<String>,
}

/// Why someone asks to see the value behind a pseudonym; anything else is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnmaskPurpose {
    /// Handling the incident itself (identify the badge that forced a door).
    IncidentResponse,
    /// A requisition from a judicial or police authority.
    JudicialRequisition,
    /// Answering the person's own request (access, erasure).
    SubjectRequest,
}

impl UnmaskPurpose {
    pub const ALL: [UnmaskPurpose; 3] = [
        UnmaskPurpose::IncidentResponse,
        UnmaskPurpose::JudicialRequisition,
        UnmaskPurpose::SubjectRequest,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            UnmaskPurpose::IncidentResponse => "incident_response",
            UnmaskPurpose::JudicialRequisition => "judicial_requisition",
            UnmaskPurpose::SubjectRequest => "subject_request",
        }
    }
    pub fn parse(s: &str) -> Option<UnmaskPurpose> {
        UnmaskPurpose::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The privacy policy of a deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct PrivacyPolicy {
    pub controller: Controller,
    pub retention: Retention,
    pub aggregates: Aggregates,
    pub activities: Vec<Activity>,
}

impl PrivacyPolicy {
    /// The policy of a deployment without `privacy.toml`: default retention and
    /// aggregates, no register. Accepted only when no field is personal.
    pub fn unconfigured() -> Self {
        PrivacyPolicy {
            controller: Controller {
                name: "(privacy.toml absent)".into(),
                address: String::new(),
                contact: String::new(),
                dpo_contact: String::new(),
            },
            retention: Retention::default(),
            aggregates: Aggregates::default(),
            activities: Vec::new(),
        }
    }

    pub fn activity(&self, id: &str) -> Option<&Activity> {
        self.activities.iter().find(|a| &*a.id == id)
    }

    /// How long data of `category` serving `activity` is kept: the activity's own
    /// retention when shorter, else the category's.
    pub fn retention_for(&self, category: DataCategory, activity: Option<&str>) -> Duration {
        let base = self.retention.of(category);
        match activity
            .and_then(|a| self.activity(a))
            .and_then(|a| a.retention)
        {
            Some(r) if r < base => r,
            _ => base,
        }
    }
}

/// A field of Beffroi's own records (incidents, their logs, reports) and its category, as
/// declared here once for the register and the retention purge. Free text written by
/// people is personal: the identifiers it contains are pseudonymised before storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordField {
    pub record: &'static str,
    pub field: &'static str,
    pub category: DataCategory,
    /// What people it is about.
    pub subjects: &'static str,
    pub note: &'static str,
}

/// The record fields Beffroi itself writes.
pub const RECORD_FIELDS: &[RecordField] = &[
    RecordField {
        record: "incident",
        field: "title",
        category: DataCategory::Technical,
        subjects: "",
        note: "from the rule's template: site, device, measured value",
    },
    RecordField {
        record: "incident",
        field: "evidence",
        category: DataCategory::Personal,
        subjects: "people identified by a device (badge holders, drivers)",
        note: "the triggering values; identifiers appear as pseudonyms only",
    },
    RecordField {
        record: "incident",
        field: "owner",
        category: DataCategory::Personal,
        subjects: "staff",
        note: "the account that took the incident",
    },
    RecordField {
        record: "incident_log",
        field: "detail",
        category: DataCategory::Personal,
        subjects: "staff; people named in notes",
        note: "operators' notes; plates, phone numbers, e-mails, MAC addresses and [[names]] are pseudonymised",
    },
    RecordField {
        record: "crisis_log",
        field: "text",
        category: DataCategory::Personal,
        subjects: "staff; people named in entries",
        note: "the crisis log (main courante); identifiers pseudonymised as in notes",
    },
    RecordField {
        record: "audit",
        field: "actor",
        category: DataCategory::Personal,
        subjects: "staff",
        note: "who did what: the tamper-evident audit log",
    },
];

/// The identifiers that the free-text scrubber recognises in notes and logs.
pub const SCRUBBED_IN_TEXT: &[Identifier] = &[
    Identifier::LicencePlate,
    Identifier::PhoneNumber,
    Identifier::Email,
    Identifier::MacAddress,
    Identifier::Name,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// No total minus the counts shown on their own gives back a withheld count.
    #[test]
    fn totals_are_withheld_when_they_would_reveal_a_withheld_count() {
        let a = Aggregates::default();
        assert_eq!(a.total_shown(&[250.0, 4.0]), None, "254 - 250 gives 4");
        assert_eq!(
            a.total_shown(&[250.0, 3.0, 4.0]),
            None,
            "the hidden pair: 7"
        );
        assert_eq!(a.total_shown(&[250.0, 6.0, 7.0]), Some(263.0));
        assert_eq!(a.total_shown(&[250.0, 40.0]), Some(290.0));
        assert_eq!(a.total_shown(&[250.0, 0.0]), None, "a hidden zero too");
        assert_eq!(a.total_shown(&[]), None);
        assert_eq!(a.total_text(&[250.0, 4.0]), "≥ 250");
        assert_eq!(a.total_text(&[3.0, 4.0]), "< 10");
        assert_eq!(a.total_text(&[6.0, 7.0]), "13");
        assert_eq!(a.total_text(&[250.4, 40.0]), "290");
    }

    #[test]
    fn suppression_and_buckets() {
        let a = Aggregates::default();
        assert_eq!(a.shown(9.0), None);
        assert_eq!(a.shown(10.0), Some(10.0));
        assert_eq!(a.shown_text(7.0), "< 10");
        assert_eq!(a.shown_text(240.2), "240");
        let t = crate::Timestamp(1_795_694_400_000 + 7 * 60_000 + 5);
        assert_eq!(
            a.bucket_start(t),
            crate::Timestamp(1_795_694_400_000 + 5 * 60_000)
        );
        assert_eq!(
            a.bucket_start(crate::Timestamp(-1)),
            crate::Timestamp(-300_000)
        );
    }

    #[test]
    fn activity_retention_only_shortens() {
        let mut p = PrivacyPolicy {
            controller: Controller {
                name: String::new(),
                address: String::new(),
                contact: String::new(),
                dpo_contact: String::new(),
            },
            retention: Retention::default(),
            aggregates: Aggregates::default(),
            activities: vec![Activity {
                id: "a".into(),
                name: "A".into(),
                purposes: vec![],
                legal_basis: LegalBasis::PublicTask,
                special_condition: None,
                data_subjects: vec![],
                recipients: vec![],
                retention: Some(days(10)),
                security_measures: vec![],
                transfers: None,
            }],
        };
        assert_eq!(p.retention_for(DataCategory::Personal, Some("a")), days(10));
        assert_eq!(p.retention_for(DataCategory::Personal, None), days(30));
        p.activities[0].retention = Some(days(90));
        assert_eq!(p.retention_for(DataCategory::Personal, Some("a")), days(30));
    }

    #[test]
    fn small_groups_are_suppressed() {
        let a = Aggregates::default();
        assert_eq!(a.shown(9.0), None);
        assert_eq!(a.shown(10.0), Some(10.0));
    }
}

//! The register of processing activities (GDPR art. 30(1)), built from the configuration.

use std::collections::BTreeMap;

use beffroi_core::Timestamp;
use beffroi_core::privacy::{
    Activity, PrivacyPolicy, RECORD_FIELDS, RecordField, VIDEO_MAX_RETENTION,
};
use beffroi_core::territory::{DataCategory, DeviceKind, FieldSpec, FieldType, Territory};
use serde::Serialize;

use crate::fr;

/// The activity Beffroi's own records (incidents, their logs, the crisis log, the audit
/// log) belong to: the handling of incidents by the command post. A configured
/// `privacy.toml` must declare it, since those records always hold personal data (the
/// staff's accounts, the notes).
pub const RECORDS_ACTIVITY: &str = "incident_management";

/// The register.
#[derive(Clone, Debug, Serialize)]
pub struct Register {
    pub territory: TerritoryRef,
    /// When it was generated (RFC 3339).
    pub generated_at: String,
    pub controller: ControllerEntry,
    pub activities: Vec<ActivityEntry>,
    /// Personal data attached to no activity of the register (empty when complete).
    pub unassigned: Vec<DataItem>,
    /// What makes the register incomplete (empty when complete).
    pub problems: Vec<Problem>,
    /// Fields of kinds observing public space whose meaning is outside Beffroi's closed
    /// set, with what the town declared they are and why.
    pub declared_fields: Vec<DeclaredField>,
    pub summary: Summary,
}

/// A field declared outside the closed set of meanings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeclaredField {
    pub kind: String,
    pub field: String,
    pub declaration: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct TerritoryRef {
    pub id: String,
    pub name: String,
}

/// The controller and its DPO (art. 30(1)(a)).
#[derive(Clone, Debug, Serialize)]
pub struct ControllerEntry {
    pub name: String,
    pub address: String,
    /// Where people exercise their rights.
    pub contact: String,
    pub dpo_contact: String,
}

/// One processing activity.
#[derive(Clone, Debug, Serialize)]
pub struct ActivityEntry {
    pub id: String,
    pub name: String,
    pub purposes: Vec<String>,
    pub legal_basis: LegalBasisEntry,
    /// The condition of art. 9(2) (or the law of art. 10) for sensitive data.
    pub special_condition: Option<String>,
    pub data_subjects: Vec<String>,
    /// Every field serving the activity, personal or not.
    pub data: Vec<DataItem>,
    pub recipients: Vec<String>,
    /// Effective retention of each category of data the activity holds.
    pub retention: Vec<RetentionEntry>,
    /// Transfers outside the European Union (`None`: none).
    pub transfers: Option<String>,
    pub security_measures: SecurityMeasures,
    /// The device kinds whose fields serve the activity, with their devices per commune.
    pub kinds: Vec<KindUse>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LegalBasisEntry {
    /// `public_task`, …
    pub code: &'static str,
    /// `GDPR art. 6(1)(e)`
    pub article: &'static str,
    /// The basis in French words.
    pub label_fr: &'static str,
}

/// How a datum is protected in Beffroi.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// A personal identifier (text) replaced by a keyed HMAC-SHA256 pseudonym before
    /// storage; the value is sealed apart, behind purpose-bound unmasking.
    Pseudonymised,
    /// A count of people, kept and shown only per zone and time bucket, suppressed below
    /// the minimum group size.
    Aggregated,
    /// A personal value that is not an identifier text (a number, a flag): stored as is,
    /// behind role- and commune-based access control and the retention purge.
    AccessControlled,
    /// Not personal: a measurement about things.
    Technical,
}

impl Protection {
    pub fn as_str(self) -> &'static str {
        match self {
            Protection::Pseudonymised => "pseudonymised",
            Protection::Aggregated => "aggregated",
            Protection::AccessControlled => "access_controlled",
            Protection::Technical => "technical",
        }
    }
    pub fn label_fr(self) -> &'static str {
        match self {
            Protection::Pseudonymised => "pseudonymisée (HMAC-SHA256 à clé) avant stockage",
            Protection::Aggregated => "agrégée par zone et tranche de temps, masquée sous le seuil",
            Protection::AccessControlled => "accès restreint par rôle et par commune",
            Protection::Technical => "donnée technique, non personnelle",
        }
    }
}

/// Where a datum comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A field of a device kind (`kind.field`).
    Device,
    /// A field of Beffroi's own records (`record.field`).
    Record,
}

/// One category of data: a field of a kind or of a record.
#[derive(Clone, Debug, Serialize)]
pub struct DataItem {
    pub source: Source,
    /// `badge_reader.badge` or `incident_log.detail`.
    pub field: String,
    /// `technical`, `personal`, `sensitive`.
    pub category: &'static str,
    /// What it identifies (`badge`, `licence_plate`…), for identifiers.
    pub identifier: Option<&'static str>,
    pub protection: Protection,
    /// What it is, in French.
    pub description: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RetentionEntry {
    pub category: &'static str,
    pub seconds: i64,
    /// In French words ("30 jours").
    pub label_fr: String,
    /// Why it is what it is, in French (activity's own, category's, video cap).
    pub note: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct SecurityMeasures {
    /// As declared in `privacy.toml`.
    pub declared: Vec<String>,
    /// What Beffroi applies by construction to this activity's data.
    pub by_construction: Vec<Measure>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Measure {
    /// `keyed_pseudonymisation`, `aggregates`, `access_control`, `signed_audit_log`,
    /// `purpose_bound_unmasking`, `retention_purge`, `no_images`.
    pub code: &'static str,
    pub label_fr: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct KindUse {
    pub kind: String,
    pub label: String,
    pub public_space: bool,
    pub video_linked: bool,
    pub devices: usize,
    pub communes: Vec<CommuneCount>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CommuneCount {
    pub commune: String,
    pub name: String,
    pub devices: usize,
}

/// Something that makes the register incomplete or inconsistent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `activity.ID`, `kind.field`, `record.field`.
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "register: `{}`: {}", self.at, self.message)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub activities: usize,
    /// Personal or sensitive fields of device kinds.
    pub personal_device_fields: usize,
    /// Personal fields of Beffroi's own records.
    pub personal_record_fields: usize,
    pub pseudonymised_fields: usize,
    pub aggregated_fields: usize,
    pub public_space_devices: usize,
    pub complete: bool,
}

impl Summary {
    /// One line, for `beffroi check`.
    pub fn line(&self) -> String {
        format!(
            "register of processing: {} activities; {} personal device fields ({} pseudonymised), {} personal record fields, {} people counts as aggregates; {} devices observing public space (public notices); {}",
            self.activities,
            self.personal_device_fields,
            self.pseudonymised_fields,
            self.personal_record_fields,
            self.aggregated_fields,
            self.public_space_devices,
            if self.complete {
                "complete"
            } else {
                "INCOMPLETE"
            }
        )
    }
}

/// The protection Beffroi applies to a field of a kind.
pub fn protection_of(f: &FieldSpec) -> Protection {
    if f.people_count {
        Protection::Aggregated
    } else if !f.category.is_personal() {
        Protection::Technical
    } else if f.ty == FieldType::Text {
        Protection::Pseudonymised
    } else {
        Protection::AccessControlled
    }
}

fn record_protection(r: &RecordField) -> Protection {
    if !r.category.is_personal() {
        Protection::Technical
    } else if matches!(
        (r.record, r.field),
        ("incident", "evidence") | ("incident_log", "detail") | ("crisis_log", "text")
    ) {
        // Free text: the identifiers it carries are pseudonymised before storage.
        Protection::Pseudonymised
    } else {
        Protection::AccessControlled
    }
}

/// The activity id a kind's field serves: its own `purpose`, else its kind's.
pub fn purpose_of<'a>(k: &'a DeviceKind, f: &'a FieldSpec) -> Option<&'a str> {
    f.purpose.as_deref().or(k.purpose.as_deref())
}

fn kind_item(k: &DeviceKind, f: &FieldSpec) -> DataItem {
    let protection = protection_of(f);
    let mut description = format!("{} — {}", k.label, f.name);
    if let Some(u) = &f.unit {
        description.push_str(&format!(" ({u})"));
    }
    if f.people_count {
        description.push_str(" : comptage de personnes, sans image ni identifiant");
    }
    DataItem {
        source: Source::Device,
        field: format!("{}.{}", k.id, f.name),
        category: f.category.as_str(),
        identifier: f.identifier.map(|i| i.as_str()),
        protection,
        description,
    }
}

fn record_item(r: &RecordField) -> DataItem {
    DataItem {
        source: Source::Record,
        field: format!("{}.{}", r.record, r.field),
        category: r.category.as_str(),
        identifier: None,
        protection: record_protection(r),
        description: format!(
            "{} — {}",
            fr::record(r.record),
            fr::record_field(r.record, r.field).unwrap_or(r.note)
        ),
    }
}

fn blank(v: &[String]) -> bool {
    v.iter().all(|s| s.trim().is_empty())
}

fn measures(a: &ActivityEntry, retention_purge: bool) -> Vec<Measure> {
    let m = |code: &'static str, label: &str| Measure {
        code,
        label_fr: label.to_string(),
    };
    let mut out = Vec::new();
    if a.data
        .iter()
        .any(|d| d.protection == Protection::Pseudonymised)
    {
        out.push(m(
            "keyed_pseudonymisation",
            "Identifiants remplacés avant tout stockage par un pseudonyme HMAC-SHA256 à clé propre au territoire, conservée hors de la base, avec rotation et destruction des clés",
        ));
        out.push(m(
            "purpose_bound_unmasking",
            "Ré-identification limitée à un incident, réservée aux rôles habilités, avec finalité déclarée et justification, journalisée",
        ));
    }
    if a.data
        .iter()
        .any(|d| d.protection == Protection::Aggregated)
    {
        out.push(m(
            "aggregates",
            "Comptages de personnes conservés et affichés par zone et tranche de temps seulement, masqués sous le seuil minimal",
        ));
    }
    out.push(m(
        "access_control",
        "Contrôle d'accès par rôle et par commune ; tout refus est journalisé",
    ));
    out.push(m(
        "signed_audit_log",
        "Journal d'audit chaîné (SHA-256) et signé (Ed25519), vérifiable par tous",
    ));
    if retention_purge {
        out.push(m(
            "retention_purge",
            "Effacement automatique à l'échéance de conservation, dans chaque stockage, consigné au journal d'audit",
        ));
    }
    out.push(m(
        "no_images",
        "Aucune image, vidéo ni donnée biométrique n'est acceptée ; pas de reconnaissance faciale ni de catégorisation des personnes",
    ));
    out
}

fn retention_entries(
    p: &PrivacyPolicy,
    a: &Activity,
    data: &[DataItem],
    video: bool,
) -> Vec<RetentionEntry> {
    let mut out = Vec::new();
    for c in DataCategory::ALL {
        if !data.iter().any(|d| d.category == c.as_str()) {
            continue;
        }
        let base = if c == DataCategory::Technical {
            p.retention
                .technical_observations
                .min(p.retention.technical)
        } else {
            p.retention.of(c)
        };
        let effective = if c.is_personal() {
            p.retention_for(c, Some(&a.id))
        } else {
            base
        };
        let mut note = if c.is_personal() && effective < base {
            format!(
                "durée propre à l'activité (catégorie : {})",
                fr::duration(base)
            )
        } else if c == DataCategory::Technical {
            format!(
                "mesures brutes ; autres données techniques : {}",
                fr::duration(p.retention.technical)
            )
        } else {
            "durée de la catégorie".to_string()
        };
        if video && c.is_personal() {
            note.push_str(&format!(
                " ; données liées à la vidéo : {} au plus (CSI, art. L252-5)",
                fr::duration(VIDEO_MAX_RETENTION)
            ));
        }
        out.push(RetentionEntry {
            category: c.as_str(),
            seconds: effective.millis() / 1000,
            label_fr: fr::duration(effective),
            note,
        });
    }
    out
}

fn kind_use(t: &Territory, ki: usize) -> KindUse {
    let k = &t.kinds[ki];
    let mut per: BTreeMap<usize, usize> = BTreeMap::new();
    let devices = t.devices_of_kind(beffroi_core::KindIdx(ki as u32));
    for d in devices {
        let c = t.site(t.device(*d).site).commune;
        *per.entry(c.get()).or_default() += 1;
    }
    KindUse {
        kind: k.id.to_string(),
        label: k.label.to_string(),
        public_space: k.public_space,
        video_linked: k.video_linked,
        devices: devices.len(),
        communes: per
            .into_iter()
            .filter_map(|(c, n)| {
                t.communes.get(c).map(|c| CommuneCount {
                    commune: c.id.to_string(),
                    name: c.name.to_string(),
                    devices: n,
                })
            })
            .collect(),
    }
}

/// Builds the register of `t` under `p`, with Beffroi's record fields `records` (pass
/// [`RECORD_FIELDS`]), generated at `now`.
pub fn build(
    t: &Territory,
    p: &PrivacyPolicy,
    records: &[RecordField],
    now: Timestamp,
) -> Register {
    let mut problems = Vec::new();
    let mut unassigned = Vec::new();
    let configured = !p.activities.is_empty();
    let mut activities: Vec<ActivityEntry> = p
        .activities
        .iter()
        .map(|a| ActivityEntry {
            id: a.id.to_string(),
            name: a.name.clone(),
            purposes: a.purposes.clone(),
            legal_basis: LegalBasisEntry {
                code: a.legal_basis.as_str(),
                article: a.legal_basis.article(),
                label_fr: fr::legal_basis(a.legal_basis),
            },
            special_condition: a.special_condition.clone(),
            data_subjects: a.data_subjects.clone(),
            data: Vec::new(),
            recipients: a.recipients.clone(),
            retention: Vec::new(),
            transfers: a.transfers.clone().filter(|s| !s.trim().is_empty()),
            security_measures: SecurityMeasures {
                declared: a.security_measures.clone(),
                by_construction: Vec::new(),
            },
            kinds: Vec::new(),
        })
        .collect();
    // Completeness of each declared activity.
    for a in &p.activities {
        let at = format!("activity.{}", a.id);
        let mut need = |what: &str, missing: bool| {
            if missing {
                problems.push(Problem {
                    at: at.clone(),
                    message: format!("no {what} declared"),
                });
            }
        };
        need("name", a.name.trim().is_empty());
        need("purpose", blank(&a.purposes));
        need("category of data subjects", blank(&a.data_subjects));
    }
    let idx = |id: &str, acts: &[ActivityEntry]| acts.iter().position(|x| x.id == id);
    let mut video = vec![false; activities.len()];
    let mut kinds_of: Vec<Vec<usize>> = vec![Vec::new(); activities.len()];

    // Fields of the device kinds.
    let mut personal_device_fields = 0;
    for (ki, k) in t.kinds.iter().enumerate() {
        for f in &k.fields {
            let item = kind_item(k, f);
            if f.category.is_personal() {
                personal_device_fields += 1;
            }
            match purpose_of(k, f).and_then(|id| idx(id, &activities)) {
                Some(i) => {
                    if f.category == DataCategory::Sensitive
                        && p.activities[i].special_condition.is_none()
                    {
                        problems.push(Problem {
                            at: item.field.clone(),
                            message: format!(
                                "sensitive, but activity `{}` states no art. 9(2) condition",
                                activities[i].id
                            ),
                        });
                    }
                    activities[i].data.push(item);
                    video[i] |= k.video_linked && f.category.is_personal();
                    if !kinds_of[i].contains(&ki) {
                        kinds_of[i].push(ki);
                    }
                }
                None if f.category.is_personal() || f.people_count => {
                    problems.push(Problem {
                        at: item.field.clone(),
                        message: match purpose_of(k, f) {
                            Some(id) => format!("activity `{id}` is not in the register"),
                            None => "personal data attached to no activity (`purpose`)".into(),
                        },
                    });
                    unassigned.push(item);
                }
                None => {}
            }
        }
    }
    // Beffroi's own records.
    let mut personal_record_fields = 0;
    let records_at = idx(RECORDS_ACTIVITY, &activities);
    for r in records {
        let item = record_item(r);
        if r.category.is_personal() {
            personal_record_fields += 1;
        }
        match records_at {
            Some(i) => activities[i].data.push(item),
            None if r.category.is_personal() => {
                if configured {
                    problems.push(Problem {
                        at: item.field.clone(),
                        message: format!(
                            "Beffroi's own records hold personal data: declare the activity `{RECORDS_ACTIVITY}` in privacy.toml"
                        ),
                    });
                }
                unassigned.push(item);
            }
            None => {}
        }
    }
    for (i, a) in activities.iter_mut().enumerate() {
        let Some(decl) = p.activities.get(i) else {
            continue;
        };
        a.retention = retention_entries(p, decl, &a.data, video[i]);
        let purge = !a.retention.is_empty();
        a.security_measures.by_construction = measures(a, purge);
        a.kinds = kinds_of[i].iter().map(|k| kind_use(t, *k)).collect();
    }
    let all_items = || activities.iter().flat_map(|a| a.data.iter());
    let summary = Summary {
        activities: activities.len(),
        personal_device_fields,
        personal_record_fields,
        pseudonymised_fields: all_items()
            .filter(|d| d.source == Source::Device && d.protection == Protection::Pseudonymised)
            .count(),
        aggregated_fields: all_items()
            .filter(|d| d.protection == Protection::Aggregated)
            .count(),
        public_space_devices: t
            .devices
            .iter()
            .filter(|d| t.kind(d.kind).public_space)
            .count(),
        complete: problems.is_empty() && (!configured || unassigned.is_empty()),
    };
    Register {
        territory: TerritoryRef {
            id: t.id.to_string(),
            name: t.name.to_string(),
        },
        generated_at: now.to_string(),
        controller: ControllerEntry {
            name: p.controller.name.clone(),
            address: p.controller.address.clone(),
            contact: p.controller.contact.clone(),
            dpo_contact: p.controller.dpo_contact.clone(),
        },
        activities,
        unassigned,
        problems,
        declared_fields: t
            .kinds
            .iter()
            .flat_map(|k| {
                k.fields.iter().filter_map(|f| {
                    f.declared.as_ref().map(|d| DeclaredField {
                        kind: k.id.to_string(),
                        field: f.name.to_string(),
                        declaration: d.to_string(),
                    })
                })
            })
            .collect(),
        summary,
    }
}

/// The demo's register with Beffroi's own record fields (a convenience for callers).
pub fn build_default(t: &Territory, p: &PrivacyPolicy, now: Timestamp) -> Register {
    build(t, p, RECORD_FIELDS, now)
}

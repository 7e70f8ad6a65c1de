//! Loading `privacy.toml` (the controller, retention per category, aggregates and the
//! register of processing activities) and checking a territory against it: every personal
//! field must belong to an activity of the register.
//!
//! Format: `docs/formats.md`, "Privacy file"; for a DPO: `docs/privacy.md`.

use beffroi_core::privacy::{
    Activity, Aggregates, Controller, LegalBasis, PrivacyPolicy, Retention, VIDEO_MAX_RETENTION,
};
use beffroi_core::{DataCategory, Duration, Territory};
use serde::Deserialize;
use toml::Spanned;

use crate::error::{ConfigError, ConfigErrors, SourceFile, parse_duration};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivacyFile {
    controller: ControllerRaw,
    #[serde(default)]
    retention: Option<Spanned<RetentionRaw>>,
    #[serde(default)]
    aggregates: Option<Spanned<AggregatesRaw>>,
    #[serde(default)]
    activity: Vec<Spanned<ActivityRaw>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControllerRaw {
    name: String,
    address: String,
    contact: String,
    dpo_contact: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionRaw {
    #[serde(default)]
    technical: Option<String>,
    #[serde(default)]
    personal: Option<String>,
    #[serde(default)]
    sensitive: Option<String>,
    #[serde(default)]
    technical_observations: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AggregatesRaw {
    #[serde(default)]
    min_group_size: Option<u32>,
    #[serde(default)]
    bucket: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivityRaw {
    id: String,
    name: String,
    purposes: Vec<String>,
    legal_basis: String,
    #[serde(default)]
    special_condition: Option<String>,
    data_subjects: Vec<String>,
    #[serde(default)]
    recipients: Vec<String>,
    #[serde(default)]
    retention: Option<String>,
    #[serde(default)]
    security_measures: Vec<String>,
    #[serde(default)]
    transfers: Option<String>,
}

fn err(src: &SourceFile, at: usize, field: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::in_table(src, at, field, msg)
}

/// A positive duration, or `default` after recording the error.
fn dur(
    errors: &mut ConfigErrors,
    src: &SourceFile,
    at: usize,
    field: &str,
    v: &Option<String>,
    default: Duration,
) -> Duration {
    match v {
        None => default,
        Some(s) => match parse_duration(s) {
            Ok(d) if d.millis() > 0 => d,
            Ok(_) => {
                errors.push(err(src, at, field, "must be longer than zero"));
                default
            }
            Err(e) => {
                errors.push(err(src, at, field, e));
                default
            }
        },
    }
}

/// Parses a privacy file. Every problem is reported with its file, line and field.
pub fn load_privacy(src: &SourceFile) -> Result<PrivacyPolicy, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let raw: PrivacyFile = match toml::from_str(&src.text) {
        Ok(r) => r,
        Err(e) => {
            errors.push(ConfigError::from_toml(src, &e));
            return Err(errors);
        }
    };
    let d = Retention::default();
    let retention = match &raw.retention {
        None => d,
        Some(r) => {
            let at = r.span().start;
            let r = r.get_ref();
            let technical = dur(
                &mut errors,
                src,
                at,
                "retention.technical",
                &r.technical,
                d.technical,
            );
            Retention {
                technical,
                personal: dur(
                    &mut errors,
                    src,
                    at,
                    "retention.personal",
                    &r.personal,
                    d.personal,
                ),
                sensitive: dur(
                    &mut errors,
                    src,
                    at,
                    "retention.sensitive",
                    &r.sensitive,
                    d.sensitive,
                ),
                technical_observations: dur(
                    &mut errors,
                    src,
                    at,
                    "retention.technical_observations",
                    &r.technical_observations,
                    technical.min(d.technical_observations),
                ),
            }
        }
    };
    let da = Aggregates::default();
    let aggregates = match &raw.aggregates {
        None => da,
        Some(a) => {
            let at = a.span().start;
            let a = a.get_ref();
            let min_group_size = a.min_group_size.unwrap_or(da.min_group_size);
            let bucket = dur(
                &mut errors,
                src,
                at,
                "aggregates.bucket",
                &a.bucket,
                da.bucket,
            );
            if min_group_size < 2 {
                errors.push(err(
                    src,
                    at,
                    "aggregates.min_group_size",
                    "must be at least 2: a count of one is a person",
                ));
            }
            Aggregates {
                min_group_size,
                bucket,
            }
        }
    };
    let mut activities: Vec<Activity> = Vec::new();
    for a in &raw.activity {
        let at = a.span().start;
        let a = a.get_ref();
        if !crate::load::valid_id(&a.id) {
            errors.push(err(
                src,
                at,
                "activity.id",
                format!("invalid id `{}`", a.id),
            ));
            continue;
        }
        if activities.iter().any(|x| *x.id == *a.id) {
            errors.push(err(
                src,
                at,
                "activity.id",
                format!("duplicate activity `{}`", a.id),
            ));
            continue;
        }
        let Some(legal_basis) = LegalBasis::parse(&a.legal_basis) else {
            let all: Vec<_> = LegalBasis::ALL.iter().map(|b| b.as_str()).collect();
            errors.push(err(
                src,
                at,
                "activity.legal_basis",
                format!(
                    "unknown legal basis `{}` ({})",
                    a.legal_basis,
                    all.join(", ")
                ),
            ));
            continue;
        };
        if a.purposes.is_empty() {
            errors.push(err(
                src,
                at,
                "activity.purposes",
                "declare at least one purpose",
            ));
        }
        if a.data_subjects.is_empty() {
            errors.push(err(
                src,
                at,
                "activity.data_subjects",
                "declare the categories of people concerned",
            ));
        }
        let retention = a.retention.as_ref().map(|_| {
            dur(
                &mut errors,
                src,
                at,
                "activity.retention",
                &a.retention,
                Duration(0),
            )
        });
        activities.push(Activity {
            id: a.id.as_str().into(),
            name: a.name.clone(),
            purposes: a.purposes.clone(),
            legal_basis,
            special_condition: a.special_condition.clone(),
            data_subjects: a.data_subjects.clone(),
            recipients: a.recipients.clone(),
            retention,
            security_measures: a.security_measures.clone(),
            transfers: a.transfers.clone(),
        });
    }
    let policy = PrivacyPolicy {
        controller: Controller {
            name: raw.controller.name,
            address: raw.controller.address,
            contact: raw.controller.contact,
            dpo_contact: raw.controller.dpo_contact,
        },
        retention,
        aggregates,
        activities,
    };
    errors.into_result(policy)
}

/// Checks the territory's fields against the policy: a personal or sensitive field must
/// name (itself or through its kind) an activity of the register; a sensitive one needs
/// the activity's art. 9 condition; personal data of a video-linked kind may not be kept
/// longer than 30 days. `kinds_path` names the kinds file in the errors.
pub fn check_against(t: &Territory, p: &PrivacyPolicy, kinds_path: &str) -> ConfigErrors {
    let mut errors = ConfigErrors::default();
    let mut e = |field: String, msg: String| {
        errors.push(ConfigError::new(kinds_path, None, Some(&field), msg));
    };
    for k in &t.kinds {
        for f in &k.fields {
            let at = format!("{}.{}", k.id, f.name);
            let purpose = f.purpose.as_deref().or(k.purpose.as_deref());
            let activity = purpose.and_then(|id| p.activity(id));
            if let (Some(id), None) = (purpose, activity) {
                e(
                    at.clone(),
                    format!("purpose `{id}` is not an activity of the register"),
                );
                continue;
            }
            if !f.category.is_personal() {
                continue;
            }
            let Some(a) = activity else {
                e(
                    at,
                    format!(
                        "{} field has no entry in the register of processing: give it (or \
                         its kind) a `purpose` naming an activity of privacy.toml",
                        f.category.as_str()
                    ),
                );
                continue;
            };
            if f.category == DataCategory::Sensitive && a.special_condition.is_none() {
                e(
                    at.clone(),
                    format!(
                        "sensitive field, but activity `{}` states no `special_condition` \
                         (GDPR art. 9(2))",
                        a.id
                    ),
                );
            }
            if k.video_linked && p.retention_for(f.category, Some(&a.id)) > VIDEO_MAX_RETENTION {
                e(
                    at,
                    "personal data tied to video may be kept 30 days at most (code de la \
                     sécurité intérieure, L252-5): shorten the retention"
                        .into(),
                );
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_core::privacy::days;

    const MINIMAL: &str = r#"
[controller]
name = "Ville"
address = "1 place"
contact = "mairie@example.org"
dpo_contact = "dpo@example.org"

[retention]
personal = "20d"

[[activity]]
id = "access_control"
name = "Contrôle d'accès"
purposes = ["sécurité des bâtiments"]
legal_basis = "public_task"
data_subjects = ["agents"]
retention = "15d"
"#;

    #[test]
    fn loads_defaults_and_overrides() {
        let p = load_privacy(&SourceFile::new("privacy.toml", MINIMAL)).expect("valid");
        assert_eq!(p.retention.personal, days(20));
        assert_eq!(p.retention.technical, days(365));
        assert_eq!(p.aggregates.min_group_size, 10);
        assert_eq!(
            p.retention_for(DataCategory::Personal, Some("access_control")),
            days(15)
        );
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let text = MINIMAL.replace("public_task", "because");
        let e = load_privacy(&SourceFile::new("privacy.toml", text.as_str())).expect_err("invalid");
        let s = e.to_string();
        let line = text
            .lines()
            .position(|l| l.contains("\"because\""))
            .map(|i| i + 1);
        assert_eq!(e.0[0].line, line, "{s}");
        assert!(s.contains("`activity.legal_basis`"), "{s}");
    }
}

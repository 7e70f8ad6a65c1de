//! Text people type reaches a handler only as `scrub::FreeText`, readable only through the
//! scrubber. This test reads the crate's request types: a `String` field of a request that
//! is not in the list of technical fields below (ids, enumerations, dates, credentials, a
//! pseudonym, the value a DPO searches for) fails it, so a new free-text field cannot be
//! added and stored unscrubbed by mistake.

use std::path::Path;

/// `Struct.field` of request fields that are strings but not free text, and why.
const TECHNICAL: &[&str] = &[
    "LoginRequest.username",      // an account name, kept only if it is one
    "LoginRequest.password",      // never stored
    "LoginRequest.totp",          // six digits, never stored
    "ActionRequest.action",       // an enumeration
    "ActionRequest.unit",         // a unit id of units.toml
    "ActionRequest.owner",        // alias of unit
    "OpenCrisisRequest.kind",     // an enumeration
    "OpenCrisisRequest.communes", // commune ids of the territory
    "CrisisRoleRequest.role",     // a role id of crisis.toml
    "NewEventRequest.id",         // a slug, refused if it carries an identifier
    "NewEventRequest.starts_at",  // RFC 3339
    "NewEventRequest.ends_at",    // RFC 3339
    "NewEventRequest.rules",      // the rule language, refused if it carries an identifier
    "HoldRequest.until",          // RFC 3339
    "SubjectRequest.identifier",  // an enumeration
    "SubjectRequest.value",       // the value searched for: never stored, logged nor echoed
    "UnmaskRequest.pseudonym",    // checked to be a pseudonym
    "UnmaskRequest.purpose",      // an enumeration
    "UnitStatusRequest.status",   // an enumeration
];

#[test]
fn every_free_text_field_of_a_request_is_a_free_text() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut untyped = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let mut current: Option<String> = None;
        for line in text.lines() {
            let t = line.trim();
            if let Some(rest) = t.strip_prefix("pub struct ") {
                let name = rest.split([' ', '{', '(']).next().unwrap_or("");
                current = name.ends_with("Request").then(|| name.to_string());
                continue;
            }
            if t == "}" {
                current = None;
                continue;
            }
            let Some(strukt) = &current else { continue };
            let Some(field) = t.strip_prefix("pub ") else {
                continue;
            };
            let Some((name, ty)) = field.split_once(':') else {
                continue;
            };
            seen += 1;
            let ty = ty.trim().trim_end_matches(',');
            if ty.contains("String") {
                let key = format!("{strukt}.{}", name.trim());
                if !TECHNICAL.contains(&key.as_str()) {
                    untyped.push(format!("{}: {key}: {ty}", path.display()));
                }
            }
        }
    }
    assert!(seen > 20, "the request types were found ({seen} fields)");
    assert!(
        untyped.is_empty(),
        "text people type must be `scrub::FreeText` (or a technical field listed here with \
         why): {untyped:#?}"
    );
}

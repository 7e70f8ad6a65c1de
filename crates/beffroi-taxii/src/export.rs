//! Cyber findings written as STIX 2.1: the crate's own input model, so that the
//! engine's types never reach the wire, and the function that derives the objects.
//!
//! **No personal data.** A finding holds no free text: an opaque incident identifier
//! (used only as a key for identifiers, never written), times, a count, fixed codes
//! (`anomaly`, `device_kind`, ATT&CK technique and tactic), a TLP level, and network
//! addresses. Codes are checked against a narrow alphabet, so a name, a phone number or
//! a note cannot be passed through them. Addresses are the one identifying datum, and
//! they are the point of an indicator (sharing them for network defence); addresses
//! that only mean something inside the territory's own networks (private, loopback,
//! link-local, unique-local, CGNAT shared space, multicast, unspecified, broadcast) are
//! dropped before anything is written.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::id::StixId;
use crate::pattern::{IpPrefix, address_pattern};
use crate::stix::{
    ATTACK_ICS_KILL_CHAIN, ATTACK_SOURCE_NAME, AttackPattern, ExternalReference, Identity,
    IdentityClass, Indicator, IndicatorType, KillChainPhase, PatternType, Relationship, Sighting,
    SpecVersion, StixObject, Tlp,
};
use crate::time::StixTime;

/// The most distinct addresses one indicator lists (its pattern stays well under the
/// reader's [`crate::pattern::MAX_PATTERN_BYTES`]).
pub const MAX_ADDRESSES_PER_INDICATOR: usize = 512;
/// The largest `count` STIX allows on a sighting; larger counts are written as this.
pub const MAX_SIGHTING_COUNT: u32 = 999_999_999;

/// Who exports: the territory, as one organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Producer {
    /// The territory's identifier (a key for every identifier; never written).
    pub territory: String,
    /// The organisation's public name, e.g. "Ville de Beffroi".
    pub name: String,
    /// When the producer's identity was first published (ms since the epoch): the
    /// `created` and `modified` of the identity and of the attack patterns, which do
    /// not change between exports.
    pub since: i64,
    /// How long an indicator stays valid after the incident was last seen (ms); no
    /// `valid_until` when `None`.
    pub indicator_lifetime: Option<i64>,
}

/// An ATT&CK for ICS technique, e.g. `T0814` "Denial of Service", tactic
/// `inhibit-response-function`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Technique {
    /// `T` and four digits, optionally `.` and three digits for a sub-technique.
    pub id: String,
    /// The technique's name as ATT&CK gives it.
    pub name: String,
    /// The tactic's short name (the kill chain phase), lowercase with hyphens.
    pub tactic: Option<String>,
}

/// One cyber incident of the territory, as it may be shared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CyberFinding {
    /// The incident's opaque identifier: only hashed into object identifiers.
    pub incident: String,
    /// When the incident was opened (ms since the epoch).
    pub opened: i64,
    /// When it was last updated; a later value makes a new version of its objects.
    pub updated: i64,
    /// When it was closed, if it is.
    pub closed: Option<i64>,
    pub technique: Option<Technique>,
    /// The anomaly's code, e.g. `brute_force` (lowercase letters, digits, `_`).
    pub anomaly: String,
    /// The kind of device targeted, as a code, e.g. `plc`.
    pub device_kind: Option<String>,
    /// Addresses the attack came from.
    pub addresses: Vec<IpAddr>,
    /// How many times it was seen.
    pub count: u32,
    pub tlp: Tlp,
}

/// Why findings could not be exported.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ExportError {
    #[error("{field} is not a time STIX can write (years 0000 to 9999)")]
    TimeOutOfRange { field: &'static str },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("incident given twice in one export")]
    DuplicateIncident,
    #[error("technique {id} is given two different names or tactics")]
    ConflictingTechnique { id: String },
    #[error("{count} distinct addresses, over the limit of {max} for one indicator")]
    TooManyAddresses { count: usize, max: usize },
}

fn time(ms: i64, field: &'static str) -> Result<StixTime, ExportError> {
    StixTime::from_millis(ms).ok_or(ExportError::TimeOutOfRange { field })
}

fn invalid(field: &'static str, reason: &str) -> ExportError {
    ExportError::Invalid {
        field,
        reason: reason.to_owned(),
    }
}

/// A code: 1 to 64 of `a-z`, `0-9`, `_`.
fn check_code(field: &'static str, code: &str) -> Result<(), ExportError> {
    let ok = (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(field, "a code is 1 to 64 of a-z, 0-9 and '_'"))
    }
}

fn check_technique(t: &Technique) -> Result<(), ExportError> {
    let b = t.id.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let id_ok = match b.len() {
        5 => b[0] == b'T' && digits(&b[1..]),
        9 => b[0] == b'T' && digits(&b[1..5]) && b[5] == b'.' && digits(&b[6..]),
        _ => false,
    };
    if !id_ok {
        return Err(invalid(
            "technique.id",
            "expected T and four digits, e.g. T0814",
        ));
    }
    // A name from the ATT&CK catalogue: letters, digits, spaces and a few signs.
    let name_ok = (1..=100).contains(&t.name.len())
        && t.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " -/()&,.'".contains(c));
    if !name_ok {
        return Err(invalid(
            "technique.name",
            "1 to 100 of letters, digits, spaces and - / ( ) & , . '",
        ));
    }
    if let Some(tactic) = &t.tactic {
        let ok = (1..=64).contains(&tactic.len())
            && tactic.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
            && !tactic.starts_with('-')
            && !tactic.ends_with('-');
        if !ok {
            return Err(invalid(
                "technique.tactic",
                "a tactic short name is lowercase words joined by '-'",
            ));
        }
    }
    Ok(())
}

/// True for an address that is reachable from the Internet and worth sharing.
fn is_shareable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => shareable_v4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => shareable_v4(v4),
            None => shareable_v6(a),
        },
    }
}

fn shareable_v4(a: Ipv4Addr) -> bool {
    let [first, second, ..] = a.octets();
    let shared_cgnat = first == 100 && (64..128).contains(&second);
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_broadcast()
        || shared_cgnat
        || first == 0)
}

fn shareable_v6(a: Ipv6Addr) -> bool {
    let first = a.segments()[0];
    let unique_local = first & 0xfe00 == 0xfc00;
    let link_local = first & 0xffc0 == 0xfe80;
    !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || unique_local || link_local)
}

/// The addresses of a finding that may be shared, canonical (IPv4-mapped IPv6 as
/// IPv4), sorted, without repeats.
pub fn shareable_addresses(addresses: &[IpAddr]) -> Vec<IpAddr> {
    let mut kept: Vec<IpAddr> = addresses
        .iter()
        .map(|ip| ip.to_canonical())
        .filter(|ip| is_shareable(*ip))
        .collect();
    kept.sort();
    kept.dedup();
    kept
}

fn attack_reference(t: &Technique) -> ExternalReference {
    let path = t.id.replace('.', "/");
    ExternalReference {
        source_name: ATTACK_SOURCE_NAME.to_owned(),
        external_id: Some(t.id.clone()),
        url: Some(format!("https://attack.mitre.org/techniques/{path}")),
    }
}

fn kill_chain(t: &Technique) -> Vec<KillChainPhase> {
    t.tactic
        .iter()
        .map(|tactic| KillChainPhase {
            kill_chain_name: ATTACK_ICS_KILL_CHAIN.to_owned(),
            phase_name: tactic.clone(),
        })
        .collect()
}

/// The STIX objects describing `findings`, in an order a reader can follow: the
/// producer's identity, the TLP marking definitions used, the attack patterns, then
/// for each finding its indicator (when it has shareable addresses), the relationship
/// from the indicator to the technique's attack pattern, and its sighting.
///
/// Identifiers are UUIDv5 of (territory, incident, role) or (territory, technique):
/// exporting again gives the same identifiers, and a finding updated since gives
/// objects with the same identifiers and a later `modified`, new versions of the same
/// objects. Each finding's objects carry its TLP marking.
pub fn export_findings(
    producer: &Producer,
    findings: &[CyberFinding],
) -> Result<Vec<StixObject>, ExportError> {
    if producer.territory.is_empty() {
        return Err(invalid("producer.territory", "empty"));
    }
    let name_ok = (1..=200).contains(&producer.name.chars().count())
        && !producer.name.chars().any(char::is_control);
    if !name_ok {
        return Err(invalid(
            "producer.name",
            "1 to 200 characters, no control character",
        ));
    }
    if producer.indicator_lifetime.is_some_and(|l| l <= 0) {
        return Err(invalid("producer.indicator_lifetime", "must be positive"));
    }
    let territory = producer.territory.as_str();
    let since = time(producer.since, "producer.since")?;
    let identity = StixId::derive("identity", &[territory, "identity"]);

    let mut markings: Vec<Tlp> = Vec::new();
    let mut patterns: BTreeMap<StixId, (AttackPattern, &Technique)> = BTreeMap::new();
    let mut anomaly_patterns: BTreeMap<StixId, AttackPattern> = BTreeMap::new();
    let mut per_finding: Vec<StixObject> = Vec::new();
    let mut incidents: Vec<&str> = Vec::new();

    for finding in findings {
        if finding.incident.is_empty() {
            return Err(invalid("incident", "empty"));
        }
        if incidents.contains(&finding.incident.as_str()) {
            return Err(ExportError::DuplicateIncident);
        }
        incidents.push(&finding.incident);
        check_code("anomaly", &finding.anomaly)?;
        if let Some(kind) = &finding.device_kind {
            check_code("device_kind", kind)?;
        }
        let opened = time(finding.opened, "opened")?;
        let modified = time(finding.updated.max(finding.opened), "updated")?;
        let last_seen_ms = finding
            .closed
            .unwrap_or(finding.updated)
            .max(finding.opened);
        let last_seen = time(last_seen_ms, "closed")?;
        let valid_until = match producer.indicator_lifetime {
            Some(lifetime) => Some(time(
                last_seen_ms.saturating_add(lifetime),
                "closed + indicator_lifetime",
            )?),
            None => None,
        };
        let marking = vec![StixId::known(finding.tlp.marking_id())];
        if !markings.contains(&finding.tlp) {
            markings.push(finding.tlp);
        }
        let key = |role: &'static str| [territory, finding.incident.as_str(), role];

        let technique_pattern = match &finding.technique {
            Some(t) => {
                check_technique(t)?;
                let id = StixId::derive("attack-pattern", &[territory, "technique", &t.id]);
                if let Some((_, known)) = patterns.get(&id) {
                    if *known != t {
                        return Err(ExportError::ConflictingTechnique { id: t.id.clone() });
                    }
                } else {
                    let pattern = AttackPattern {
                        spec_version: SpecVersion,
                        id: id.clone(),
                        created_by_ref: identity.clone(),
                        created: since,
                        modified: since,
                        name: t.name.clone(),
                        kill_chain_phases: kill_chain(t),
                        external_references: vec![attack_reference(t)],
                    };
                    patterns.insert(id.clone(), (pattern, t));
                }
                Some(id)
            }
            None => None,
        };

        let addresses = shareable_addresses(&finding.addresses);
        if addresses.len() > MAX_ADDRESSES_PER_INDICATOR {
            return Err(ExportError::TooManyAddresses {
                count: addresses.len(),
                max: MAX_ADDRESSES_PER_INDICATOR,
            });
        }
        let prefixes: Vec<IpPrefix> = addresses.iter().map(|a| IpPrefix::host(*a)).collect();
        let device = finding.device_kind.as_deref();
        let indicator = address_pattern(&prefixes).map(|pattern| Indicator {
            spec_version: SpecVersion,
            id: StixId::derive("indicator", &key("indicator")),
            created_by_ref: identity.clone(),
            created: opened,
            modified,
            name: match device {
                Some(kind) => format!("Sources of {} against {kind}", finding.anomaly),
                None => format!("Sources of {}", finding.anomaly),
            },
            description: format!(
                "Network addresses seen as the source of a {} anomaly{} by {}.",
                finding.anomaly,
                device
                    .map(|k| format!(" on a {k} device"))
                    .unwrap_or_default(),
                producer.name
            ),
            indicator_types: vec![if finding.technique.is_some() {
                IndicatorType::MaliciousActivity
            } else {
                IndicatorType::AnomalousActivity
            }],
            pattern,
            pattern_type: PatternType::Stix,
            pattern_version: SpecVersion,
            valid_from: opened,
            valid_until,
            kill_chain_phases: finding
                .technique
                .as_ref()
                .map(kill_chain)
                .unwrap_or_default(),
            external_references: finding.technique.iter().map(attack_reference).collect(),
            object_marking_refs: marking.clone(),
        });

        let sighted = match (&indicator, &technique_pattern) {
            (Some(indicator), _) => indicator.id.clone(),
            (None, Some(pattern)) => pattern.clone(),
            (None, None) => {
                // Nothing else to point at: an attack pattern naming the anomaly kind.
                let id =
                    StixId::derive("attack-pattern", &[territory, "anomaly", &finding.anomaly]);
                anomaly_patterns
                    .entry(id.clone())
                    .or_insert_with(|| AttackPattern {
                        spec_version: SpecVersion,
                        id: id.clone(),
                        created_by_ref: identity.clone(),
                        created: since,
                        modified: since,
                        name: format!("Beffroi anomaly {}", finding.anomaly),
                        kill_chain_phases: Vec::new(),
                        external_references: Vec::new(),
                    });
                id
            }
        };

        if let Some(indicator) = indicator {
            let source_ref = indicator.id.clone();
            per_finding.push(StixObject::Indicator(indicator));
            if let Some(pattern) = &technique_pattern {
                per_finding.push(StixObject::Relationship(Relationship {
                    spec_version: SpecVersion,
                    id: StixId::derive("relationship", &key("indicates")),
                    created_by_ref: identity.clone(),
                    created: opened,
                    modified,
                    relationship_type: "indicates",
                    source_ref,
                    target_ref: pattern.clone(),
                    object_marking_refs: marking.clone(),
                }));
            }
        }
        per_finding.push(StixObject::Sighting(Sighting {
            spec_version: SpecVersion,
            id: StixId::derive("sighting", &key("sighting")),
            created_by_ref: identity.clone(),
            created: opened,
            modified,
            first_seen: opened,
            last_seen,
            count: finding.count.min(MAX_SIGHTING_COUNT),
            sighting_of_ref: sighted,
            where_sighted_refs: vec![identity.clone()],
            object_marking_refs: marking,
        }));
    }

    markings.sort();
    let mut objects = vec![StixObject::Identity(Identity {
        spec_version: SpecVersion,
        id: identity.clone(),
        created: since,
        modified: since,
        name: producer.name.clone(),
        identity_class: IdentityClass::Organization,
    })];
    objects.extend(
        markings
            .into_iter()
            .map(|t| StixObject::MarkingDefinition(t.marking_definition())),
    );
    objects.extend(
        patterns
            .into_values()
            .map(|(p, _)| StixObject::AttackPattern(p)),
    );
    objects.extend(
        anomaly_patterns
            .into_values()
            .map(StixObject::AttackPattern),
    );
    objects.extend(per_finding);
    Ok(objects)
}

//! Checks imported records against the territory they go into: kinds, site kinds,
//! communes, zones and sites must exist (with a suggestion when a name is close to one
//! that does), ids and EUIs must be unique. Every problem is reported, at its field.

use std::collections::{BTreeMap, BTreeSet};

use beffroi_core::Territory;

use crate::error::{ImportError, ImportErrors};
use crate::lns::KindMap;
use crate::record::{Origin, Records, valid_id};

/// The names a territory knows, for checking imports against it.
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    pub kinds: BTreeSet<String>,
    pub site_kinds: BTreeSet<String>,
    pub communes: BTreeSet<String>,
    /// Zone → its commune.
    pub zones: BTreeMap<String, String>,
    pub sites: BTreeSet<String>,
    /// Device EUI (lowercase) → the device that has it.
    pub euis: BTreeMap<String, String>,
}

impl Catalogue {
    pub fn of(t: &Territory) -> Self {
        Catalogue {
            kinds: t.kinds.iter().map(|k| k.id.to_string()).collect(),
            site_kinds: t.site_kind_ids().map(str::to_string).collect(),
            communes: t.communes.iter().map(|c| c.id.to_string()).collect(),
            zones: t
                .zones
                .iter()
                .map(|z| (z.id.to_string(), t.commune(z.commune).id.to_string()))
                .collect(),
            sites: t.sites.iter().map(|s| s.id.to_string()).collect(),
            euis: t
                .devices
                .iter()
                .filter_map(|d| {
                    Some((d.dev_eui.as_deref()?.to_ascii_lowercase(), d.id.to_string()))
                })
                .collect(),
        }
    }
}

/// `unknown kind `x``, with the closest known name when one is close enough.
fn unknown<'a>(what: &str, name: &str, known: impl IntoIterator<Item = &'a str> + Clone) -> String {
    let mut msg = format!("unknown {what} `{name}`");
    match did_you_mean(name, known.clone()) {
        Some(s) => msg.push_str(&format!(" (did you mean `{s}`?)")),
        None => {
            let all: Vec<_> = known.into_iter().take(12).collect();
            if !all.is_empty() && all.len() < 12 {
                msg.push_str(&format!(" (known: {})", all.join(", ")));
            }
        }
    }
    msg
}

/// The known name closest to `name`, if close enough to be a slip: the same but for case,
/// accents and separators, or a few edits away.
pub fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lowered = crate::record::slug(name).replace('-', "_");
    let mut best: Option<(usize, &str)> = None;
    for k in known {
        let d = if k.replace('-', "_") == lowered {
            0
        } else {
            strsim::levenshtein(&name.to_lowercase(), k)
        };
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    let (d, k) = best?;
    let limit = (name.chars().count() / 3).max(1);
    (d <= limit).then_some(k)
}

/// Checks the kinds the map names.
pub fn validate_kind_map(map: &KindMap, cat: &Catalogue) -> ImportErrors {
    let mut errors = ImportErrors::default();
    for (profile, kind, at) in &map.profiles {
        if !cat.kinds.contains(kind) {
            errors.push(ImportError::new(
                map.file.clone(),
                Some(*at),
                Some(&format!("profiles.\"{profile}\"")),
                unknown("kind", kind, cat.kinds.iter().map(String::as_str)),
            ));
        }
    }
    errors
}

/// Checks a record's id: an identifier, not already taken by another `what` (site,
/// device) of the import.
fn check_id<'a>(
    what: &str,
    id: &'a str,
    origin: &'a Origin,
    seen: &mut BTreeMap<&'a str, &'a Origin>,
    errors: &mut ImportErrors,
) {
    if !valid_id(id) {
        errors.push(origin.error("id", format!("`{id}` is not an identifier (lowercase letters, digits, '-', '_', '.'; `{}` would do)", crate::record::slug(id))));
    } else if let Some(first) = seen.insert(id, origin) {
        errors.push(origin.error("id", format!("{what} `{id}` is also at {}", first.place())));
    }
}

/// Checks every record; sites imported with the devices count as known sites.
pub fn validate(records: &Records, cat: &Catalogue) -> ImportErrors {
    let mut errors = ImportErrors::default();
    let mut site_ids: BTreeMap<&str, &Origin> = BTreeMap::new();
    for s in &records.sites {
        let o = &s.origin;
        check_id("site", &s.id, o, &mut site_ids, &mut errors);
        if s.name.trim().is_empty() {
            errors.push(o.error("name", "empty name"));
        }
        if !cat.site_kinds.contains(&s.kind) {
            let mut msg = unknown(
                "site kind",
                &s.kind,
                cat.site_kinds.iter().map(String::as_str),
            );
            msg.push_str("; a new kind of site is declared in kinds.toml with [[site_kind]]");
            errors.push(o.error("kind", msg));
        }
        if !cat.communes.contains(&s.commune) {
            errors.push(o.error(
                "commune",
                unknown(
                    "commune",
                    &s.commune,
                    cat.communes.iter().map(String::as_str),
                ),
            ));
        }
        if let Some(z) = &s.zone {
            match cat.zones.get(z) {
                None => errors.push(o.error(
                    "zone",
                    unknown("zone", z, cat.zones.keys().map(String::as_str)),
                )),
                Some(c) if *c != s.commune => errors.push(o.error(
                    "zone",
                    format!("zone `{z}` is in commune `{c}`, not `{}`", s.commune),
                )),
                Some(_) => {}
            }
        }
        if let Some(r) = &s.river
            && !valid_id(r)
        {
            errors.push(o.error(
                "river",
                format!(
                    "`{r}` is not an identifier (`{}` would do)",
                    crate::record::slug(r)
                ),
            ));
        }
    }
    let mut device_ids: BTreeMap<&str, &Origin> = BTreeMap::new();
    let mut euis: BTreeMap<&str, (&str, &Origin)> = BTreeMap::new();
    for d in &records.devices {
        let o = &d.origin;
        check_id("device", &d.id, o, &mut device_ids, &mut errors);
        if !cat.kinds.contains(&d.kind) {
            errors.push(o.error(
                "kind",
                unknown("kind", &d.kind, cat.kinds.iter().map(String::as_str)),
            ));
        }
        if !cat.sites.contains(&d.site) && !site_ids.contains_key(d.site.as_str()) {
            let known = cat
                .sites
                .iter()
                .map(String::as_str)
                .chain(site_ids.keys().copied());
            errors.push(o.error("site", unknown("site", &d.site, known)));
        }
        if let Some(eui) = &d.dev_eui {
            if let Some(owner) = cat.euis.get(eui).filter(|owner| **owner != d.id) {
                errors.push(o.error(
                    "dev_eui",
                    format!("`{eui}` is already the EUI of device `{owner}`"),
                ));
            } else if let Some((other, first)) = euis.insert(eui, (&d.id, o))
                && other != d.id
            {
                errors.push(o.error(
                    "dev_eui",
                    format!(
                        "`{eui}` is also the EUI of device `{other}` at {}",
                        first.place()
                    ),
                ));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_for_slips_only() {
        let known = ["water_level", "rain_gauge", "smoke_detector"];
        assert_eq!(did_you_mean("water-level", known), Some("water_level"));
        assert_eq!(did_you_mean("Water Level", known), Some("water_level"));
        assert_eq!(did_you_mean("watr_level", known), Some("water_level"));
        assert_eq!(
            did_you_mean("smoke_detecter", known),
            Some("smoke_detector")
        );
        assert_eq!(did_you_mean("camera", known), None);
        assert_eq!(did_you_mean("x", known), None);
        assert_eq!(did_you_mean("x", []), None);
    }
}

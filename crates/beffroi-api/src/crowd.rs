//! People counts as aggregates (ADR 0018 (`docs/adr/0018-aggregates-and-purpose-bound-unmasking.md`)).
//!
//! A field with `people_count = true` (a people counter's `occupancy`) is shown only:
//! - per zone and time bucket (`privacy.toml`'s `[aggregates] bucket`): `GET /api/v1/crowd`,
//!   and, on a device's page, one figure per bucket (its highest count in the bucket);
//! - through [`people_count`], the one place that decides whether a count may leave the
//!   server: below the minimum group size it becomes `null` with `"suppressed": true`
//!   (the console prints "< 10"). Titles, evidence and event occupancies are suppressed
//!   where they are made (`beffroi_rules::Evaluator`, `beffroi_engine::events`), with the
//!   same rules ([`beffroi_core::privacy::Aggregates::shown`] for one count,
//!   [`beffroi_core::privacy::Aggregates::total_shown`] for a total);
//! - with **complementary suppression**: a zone's total (and an event's occupancy, and the
//!   sum a capacity rule prints) is withheld too when the counts its counters' own pages
//!   withhold add up to less than the minimum group size (one hidden counter of 4 in a
//!   zone of 250: the total minus the shown counters would give the 4 back). See
//!   [`zone_total`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use beffroi_core::privacy::Aggregates;
use beffroi_core::{DeviceIdx, FieldIdx, Territory, Timestamp, Value};
use beffroi_engine::store::StoredObservation;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::{blocking, store_err};
use crate::routes::Caller;

/// A people count as it may be shown.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, ToSchema)]
pub struct PeopleCount {
    /// Whole people; `null` when suppressed.
    pub value: Option<f64>,
    /// The count is below the minimum group size and is withheld.
    pub suppressed: bool,
}

/// THE suppression of people counts for the API: every count that leaves the server as
/// JSON goes through here (or through `Aggregates::shown` where titles are made).
pub fn people_count(a: &Aggregates, count: f64) -> PeopleCount {
    match a.shown(count) {
        Some(n) => PeopleCount {
            value: Some(n.round()),
            suppressed: false,
        },
        None => PeopleCount {
            value: None,
            suppressed: true,
        },
    }
}

/// A zone's total for one bucket, given each counter's highest count in it: shown only
/// when the total is, and the counters' hidden counts (those their own pages withhold) are
/// none or add up to the minimum group size at least — otherwise the total minus the shown
/// counters would give a withheld figure back.
pub fn zone_total(a: &Aggregates, counts: &[f64]) -> PeopleCount {
    match a.total_shown(counts) {
        Some(n) => people_count(a, n),
        None => PeopleCount {
            value: None,
            suppressed: true,
        },
    }
}

/// Whether a field of a device's kind counts people.
pub fn is_people_count(t: &Territory, d: DeviceIdx, f: FieldIdx) -> bool {
    t.kind_of(d)
        .fields
        .get(f.get())
        .is_some_and(|s| s.people_count)
}

/// One device's people counts folded into buckets: `(bucket start, field, highest count)`,
/// newest bucket first. Non-people observations are left out.
pub fn device_buckets(
    t: &Territory,
    a: &Aggregates,
    recent: &[StoredObservation],
) -> Vec<(Timestamp, FieldIdx, f64)> {
    let mut by: BTreeMap<(Timestamp, FieldIdx), f64> = BTreeMap::new();
    for o in recent {
        if let Value::Number(n) = o.value
            && is_people_count(t, o.device, o.field)
        {
            let slot = by
                .entry((a.bucket_start(o.time), o.field))
                .or_insert(f64::MIN);
            *slot = slot.max(n);
        }
    }
    by.into_iter().rev().map(|((b, f), n)| (b, f, n)).collect()
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct CrowdParams {
    /// RFC 3339; default: 24 hours before `to`.
    from: Option<String>,
    /// RFC 3339; default: now.
    to: Option<String>,
    /// Only this zone (a zone id, or a commune id for sites outside any zone).
    zone: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CrowdBucketDto {
    /// Start of the bucket (RFC 3339).
    pub start: String,
    /// Sum over the zone's counters of each one's highest count in the bucket.
    #[serde(flatten)]
    pub count: PeopleCount,
    /// People counters that reported in the bucket.
    pub counters: usize,
}

#[derive(Serialize, ToSchema)]
pub struct CrowdZoneDto {
    /// The zone's id; `null` for the sites of a commune outside any zone.
    pub zone: Option<String>,
    pub name: String,
    pub commune: String,
    /// Oldest first.
    pub buckets: Vec<CrowdBucketDto>,
}

#[derive(Serialize, ToSchema)]
pub struct CrowdDto {
    pub from: String,
    pub to: String,
    /// Length of a bucket, in seconds.
    pub bucket_s: i64,
    /// Counts below this are suppressed (`null`, `"suppressed": true`).
    pub min_group_size: u32,
    pub zones: Vec<CrowdZoneDto>,
}

/// Most observations read per counter for one request.
const MAX_PER_COUNTER: usize = 50_000;
/// Longest range of one request.
const MAX_RANGE_MS: i64 = 31 * 24 * 3_600_000;

#[utoipa::path(get, path = "/api/v1/crowd", params(CrowdParams),
    responses((status = 200, body = CrowdDto), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn crowd(
    State(s): State<AppState>,
    c: Caller,
    Query(p): Query<CrowdParams>,
) -> Result<Json<CrowdDto>, ApiError> {
    let time = |v: Option<&str>, name: &str| -> Result<Option<Timestamp>, ApiError> {
        v.map(|x| {
            beffroi_wire::parse_rfc3339(x).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("{name}: not an RFC 3339 time"),
                )
            })
        })
        .transpose()
    };
    let to = time(p.to.as_deref(), "to")?.unwrap_or_else(|| s.engine.clock.now());
    let from = time(p.from.as_deref(), "from")?.unwrap_or(Timestamp(to.0 - 24 * 3_600_000));
    if from > to || to.0 - from.0 > MAX_RANGE_MS {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "from must precede to, at most 31 days apart",
        ));
    }
    let a = s.privacy.aggregates;
    let t = Arc::clone(&s.engine.territory);
    let scope = c.scope.clone();
    let reader = Arc::clone(&s.reader);
    let zone_filter = p.zone;
    blocking(move || {
        // (zone key) → bucket → (sum, counters)
        type Key = (Option<usize>, usize);
        let mut zones: BTreeMap<Key, BTreeMap<Timestamp, Vec<f64>>> = BTreeMap::new();
        for (i, dev) in t.devices.iter().enumerate() {
            let d = DeviceIdx(i as u32);
            if !t.kind(dev.kind).fields.iter().any(|f| f.people_count) {
                continue;
            }
            let site = t.site(dev.site);
            if !scope.holds(site.commune) {
                continue;
            }
            let key: Key = (site.zone.map(|z| z.get()), site.commune.get());
            let zone_id = match site.zone {
                Some(z) => &*t.zones[z.get()].id,
                None => &*t.commune(site.commune).id,
            };
            if zone_filter.as_deref().is_some_and(|z| z != zone_id) {
                continue;
            }
            let obs = reader
                .observations(d, from, MAX_PER_COUNTER)
                .map_err(store_err)?;
            let in_range: Vec<_> = obs.into_iter().filter(|o| o.time <= to).collect();
            let entry = zones.entry(key).or_default();
            for (b, _, n) in device_buckets(&t, &a, &in_range) {
                entry.entry(b).or_default().push(n);
            }
        }
        let zones = zones
            .into_iter()
            .map(|((zone, commune), buckets)| {
                let commune = &t.communes[commune];
                let (id, name) = match zone {
                    Some(z) => (Some(t.zones[z].id.to_string()), t.zones[z].name.to_string()),
                    None => (None, commune.name.to_string()),
                };
                CrowdZoneDto {
                    zone: id,
                    name,
                    commune: commune.id.to_string(),
                    buckets: buckets
                        .into_iter()
                        .map(|(b, counts)| CrowdBucketDto {
                            start: b.to_string(),
                            count: zone_total(&a, &counts),
                            counters: counts.len(),
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(Json(CrowdDto {
            from: from.to_string(),
            to: to.to_string(),
            bucket_s: a.bucket.millis() / 1000,
            min_group_size: a.min_group_size,
            zones,
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zone's total never gives back a count the counters' pages withhold: not one
    /// hidden counter, not two whose sum is below the group size.
    #[test]
    fn a_zone_total_is_withheld_when_it_would_reveal_a_withheld_count() {
        let a = Aggregates::default();
        let shown = |c: &[f64]| zone_total(&a, c).value;
        assert_eq!(shown(&[250.0, 4.0]), None, "250 + 4: 254 − 250 gives 4");
        assert_eq!(shown(&[250.0, 3.0, 4.0]), None, "the hidden pair adds to 7");
        assert_eq!(
            shown(&[250.0, 6.0, 7.0]),
            Some(263.0),
            "the hidden pair adds to 13"
        );
        assert_eq!(shown(&[250.0, 40.0]), Some(290.0), "nothing hidden");
        assert_eq!(shown(&[5.0]), None);
        assert_eq!(
            shown(&[250.0, 0.0]),
            None,
            "a hidden zero is a withheld figure too"
        );
    }

    #[test]
    fn suppression_is_null_and_flagged() {
        let a = Aggregates::default();
        assert_eq!(
            serde_json::to_value(people_count(&a, 7.0)).expect("json"),
            serde_json::json!({"value": null, "suppressed": true})
        );
        assert_eq!(
            serde_json::to_value(people_count(&a, 240.4)).expect("json"),
            serde_json::json!({"value": 240.0, "suppressed": false})
        );
    }
}

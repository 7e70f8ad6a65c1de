//! A collection's objects seen as TAXII 2.1 serves them: filtering (section 3.4),
//! sorting by `date_added` (section 3.3) and paging (section 3.5), for the objects,
//! object, manifest and versions endpoints. Pure: the caller hands over the stored
//! objects; nothing here reads a store or a clock.
//!
//! Order of the filters: the path's object, `match[id]`, `match[type]` and `added_after`
//! first; then `match[spec_version]` (by default the latest specification version of
//! each object among what is left), then `match[version]` (by default the last version
//! of each object among what is left), as the specification asks for "each object
//! matching the remainder of the request". The result is sorted by `date_added`, then
//! identifier, then version, so that the order is total and a page boundary is a
//! precise place.
//!
//! Paging: a page holds at most `limit` objects, starts after the `next` cursor when
//! one is given, and says whether `more` follow. A page that does not reach the end is
//! cut before a run of objects sharing its last `date_added` when it can be (the page
//! then holds fewer than `limit`), so that a client paging with `added_after` set to
//! `X-TAXII-Date-Added-Last`, as section 3.5 allows, misses nothing either.

use std::collections::BTreeMap;

use crate::query::{Cursor, Endpoint, Query, VersionMatch, parse_spec_version};
use crate::stix::StixObject;
use crate::taxii::{Envelope, Manifest, ManifestRecord, Versions};
use crate::time::StixTime;

/// One version of one object as the collection holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredObject {
    /// The STIX identifier.
    pub id: String,
    /// The STIX `type`.
    pub object_type: String,
    /// The STIX `spec_version`, e.g. `2.1`.
    pub spec_version: String,
    /// The object's `modified` (or `created` when it is not versioned).
    pub version: StixTime,
    /// When this version was added to the collection.
    pub date_added: StixTime,
    /// The object itself.
    pub object: serde_json::Value,
}

impl StoredObject {
    /// A STIX object the crate wrote, added at `date_added`.
    pub fn from_stix(object: &StixObject, date_added: StixTime) -> StoredObject {
        StoredObject {
            id: object.id().as_str().to_owned(),
            object_type: object.object_type().to_owned(),
            spec_version: crate::stix::SPEC_VERSION.to_owned(),
            version: object.version(),
            date_added,
            object: object.to_json(),
        }
    }

    fn key(&self) -> (i64, &str, i64) {
        (self.date_added.millis(), &self.id, self.version.millis())
    }

    fn media_type(&self) -> String {
        format!("application/stix+json;version={}", self.spec_version)
    }
}

/// One page of a query's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<'a> {
    /// The objects of the page, in `date_added` order.
    pub objects: Vec<&'a StoredObject>,
    /// True when more objects match after this page.
    pub more: bool,
    /// The cursor to ask for the next page with; only when `more`.
    pub next: Option<Cursor>,
}

impl Page<'_> {
    /// The values of `X-TAXII-Date-Added-First` and `X-TAXII-Date-Added-Last`; `None`
    /// for an empty page (there is no object to date).
    pub fn date_added_range(&self) -> Option<(StixTime, StixTime)> {
        Some((
            self.objects.first()?.date_added,
            self.objects.last()?.date_added,
        ))
    }

    /// The objects endpoint's answer.
    pub fn envelope(&self) -> Envelope {
        Envelope {
            more: self.more,
            next: self.next.as_ref().map(Cursor::encode),
            objects: self.objects.iter().map(|o| o.object.clone()).collect(),
        }
    }

    /// The manifest endpoint's answer (the manifest resource has no `next`: a client
    /// goes on with `added_after`, or with the `next` parameter from [`Page::next`] if
    /// the server passes it on otherwise).
    pub fn manifest(&self) -> Manifest {
        Manifest {
            more: self.more,
            objects: self
                .objects
                .iter()
                .map(|o| ManifestRecord {
                    id: o.id.clone(),
                    date_added: o.date_added,
                    version: o.version,
                    media_type: Some(o.media_type()),
                })
                .collect(),
        }
    }

    /// The versions endpoint's answer.
    pub fn versions(&self) -> Versions {
        Versions {
            more: self.more,
            versions: self.objects.iter().map(|o| o.version).collect(),
        }
    }
}

/// Every object `query` selects, in page order, before paging.
pub fn select<'a>(objects: &'a [StoredObject], query: &Query) -> Vec<&'a StoredObject> {
    let path_id = match &query.endpoint {
        Endpoint::Object(id) | Endpoint::Versions(id) => Some(id.as_str()),
        Endpoint::Objects | Endpoint::Manifest => None,
    };
    let mut kept: Vec<&StoredObject> = objects
        .iter()
        .filter(|o| path_id.is_none_or(|id| o.id == id))
        .filter(|o| {
            query
                .ids
                .as_ref()
                .is_none_or(|ids| ids.iter().any(|id| id.as_str() == o.id))
        })
        .filter(|o| {
            query
                .types
                .as_ref()
                .is_none_or(|types| types.contains(&o.object_type))
        })
        // Strictly after: a time with a fraction below the millisecond is after the
        // whole millisecond it starts from, so `>` on the milliseconds is exact.
        .filter(|o| {
            query
                .added_after
                .is_none_or(|after| o.date_added.millis() > after.millis)
        })
        .collect();

    kept = match &query.spec_versions {
        Some(wanted) => kept
            .into_iter()
            .filter(|o| wanted.contains(&o.spec_version))
            .collect(),
        None => {
            let mut latest: BTreeMap<&str, Option<(u16, u16)>> = BTreeMap::new();
            for o in &kept {
                let spec = parse_spec_version(&o.spec_version);
                let entry = latest.entry(&o.id).or_insert(spec);
                *entry = (*entry).max(spec);
            }
            kept.into_iter()
                .filter(|o| latest.get(o.id.as_str()) == Some(&parse_spec_version(&o.spec_version)))
                .collect()
        }
    };

    if let VersionMatch::Select { first, last, at } = &query.versions {
        let mut bounds: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for o in &kept {
            let v = o.version.millis();
            let entry = bounds.entry(&o.id).or_insert((v, v));
            *entry = (entry.0.min(v), entry.1.max(v));
        }
        kept.retain(|o| {
            let v = o.version.millis();
            let (lowest, highest) = bounds.get(o.id.as_str()).copied().unwrap_or((v, v));
            (*first && v == lowest)
                || (*last && v == highest)
                || at.iter().any(|t| t.is_whole_milli() && t.millis == v)
        });
    }

    kept.sort_by(|a, b| a.key().cmp(&b.key()));
    kept
}

/// The page of `query` over `objects`: [`select`], then the `next` cursor and `limit`.
pub fn page<'a>(objects: &'a [StoredObject], query: &Query) -> Page<'a> {
    let selected = select(objects, query);
    let start = match &query.next {
        Some(cursor) => {
            let after = (cursor.date_added, cursor.id.as_str(), cursor.version);
            selected.partition_point(|o| o.key() <= after)
        }
        None => 0,
    };
    let rest = selected.get(start..).unwrap_or_default();
    let limit = query.limit.max(1);
    if rest.len() <= limit {
        return Page {
            objects: rest.to_vec(),
            more: false,
            next: None,
        };
    }
    // Cut before a run of equal `date_added` that the limit would split, unless the
    // whole page is that run.
    let boundary = rest[limit].date_added;
    let mut end = limit;
    while end > 0 && rest[end - 1].date_added == boundary {
        end -= 1;
    }
    if end == 0 {
        end = limit;
    }
    let objects = rest[..end].to_vec();
    let next = objects.last().map(|o| Cursor {
        date_added: o.date_added.millis(),
        id: o.id.clone(),
        version: o.version.millis(),
    });
    Page {
        objects,
        more: true,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> StixTime {
        StixTime::from_millis(ms)
            .unwrap_or(StixTime::from_millis(0).unwrap_or_else(|| unreachable!()))
    }

    fn obj(n: u8, kind: &str, version: i64, added: i64) -> StoredObject {
        StoredObject {
            id: format!("{kind}--00000000-0000-4000-8000-0000000000{n:02x}"),
            object_type: kind.to_owned(),
            spec_version: "2.1".to_owned(),
            version: t(version),
            date_added: t(added),
            object: serde_json::json!({"n": n, "v": version}),
        }
    }

    fn ids(objects: &[&StoredObject]) -> Vec<(u8, i64)> {
        objects
            .iter()
            .map(|o| {
                (
                    o.object["n"].as_u64().unwrap_or(0) as u8,
                    o.version.millis(),
                )
            })
            .collect()
    }

    fn query(q: &str) -> Query {
        Query::from_query_string(Endpoint::Objects, q).unwrap_or_else(|e| panic!("{e}"))
    }

    fn store() -> Vec<StoredObject> {
        vec![
            obj(1, "indicator", 1000, 5000),
            obj(1, "indicator", 2000, 6000),
            obj(1, "indicator", 3000, 7000),
            obj(2, "sighting", 1500, 5500),
            obj(3, "indicator", 500, 6000),
        ]
    }

    #[test]
    fn last_version_by_default_first_all_and_exact_on_request() {
        let s = store();
        assert_eq!(
            ids(&select(&s, &query(""))),
            [(2, 1500), (3, 500), (1, 3000)]
        );
        assert_eq!(
            ids(&select(&s, &query("match[version]=first"))),
            [(1, 1000), (2, 1500), (3, 500)]
        );
        assert_eq!(select(&s, &query("match[version]=all")).len(), 5);
        assert_eq!(
            ids(&select(
                &s,
                &query("match[version]=1970-01-01T00:00:02.000Z,first")
            )),
            [(1, 1000), (2, 1500), (1, 2000), (3, 500)]
        );
        // A time finer than the millisecond matches no stored version.
        assert!(select(&s, &query("match[version]=1970-01-01T00:00:02.0001Z")).is_empty());
    }

    #[test]
    fn added_after_is_strict_and_applies_before_the_version_match() {
        let s = store();
        // After 6 s: only the version added at 7 s remains, and it is the last one.
        assert_eq!(
            ids(&select(&s, &query("added_after=1970-01-01T00:00:06Z"))),
            [(1, 3000)]
        );
        // With "first", the first version among what is left.
        assert_eq!(
            ids(&select(
                &s,
                &query("added_after=1970-01-01T00:00:05.500Z&match[version]=first")
            )),
            [(1, 2000), (3, 500)]
        );
        assert_eq!(
            ids(&select(
                &s,
                &query("added_after=1970-01-01T00:00:05.4999Z&match[type]=sighting")
            )),
            [(2, 1500)]
        );
    }

    #[test]
    fn latest_spec_version_unless_asked() {
        let mut s = store();
        let mut old = obj(2, "sighting", 1500, 5400);
        old.spec_version = "2.0".into();
        s.push(old);
        let found = select(&s, &query("match[type]=sighting"));
        assert_eq!(
            found
                .iter()
                .map(|o| o.spec_version.as_str())
                .collect::<Vec<_>>(),
            ["2.1"]
        );
        let found = select(&s, &query("match[type]=sighting&match[spec_version]=2.0"));
        assert_eq!(
            found
                .iter()
                .map(|o| o.spec_version.as_str())
                .collect::<Vec<_>>(),
            ["2.0"]
        );
    }

    #[test]
    fn pages_do_not_split_a_date_added_run_when_they_can_avoid_it() {
        let s: Vec<StoredObject> = (0..6)
            .map(|n| obj(n, "indicator", 1000, if n < 2 { 1000 } else { 2000 }))
            .collect();
        let first = page(&s, &query("limit=3"));
        assert_eq!(first.objects.len(), 2);
        assert!(first.more);
        assert_eq!(
            first
                .date_added_range()
                .map(|(a, b)| (a.millis(), b.millis())),
            Some((1000, 1000))
        );
        let next = first.next.as_ref().map(Cursor::encode).unwrap_or_default();
        let second = page(&s, &query(&format!("limit=3&next={next}")));
        // The run of four at 2 s does not fit in 3: the page is cut inside it.
        assert_eq!(second.objects.len(), 3);
        assert!(second.more);
        let envelope = second.envelope();
        assert_eq!(envelope.objects.len(), 3);
        assert!(envelope.next.is_some());
    }

    #[test]
    fn object_and_versions_endpoints() {
        let s = store();
        let id = s[0].id.clone();
        let versions = Endpoint::versions(&id).unwrap_or_else(|e| panic!("{e}"));
        let q = Query::from_query_string(versions, "").unwrap_or_else(|e| panic!("{e}"));
        let v = page(&s, &q).versions();
        assert_eq!(
            v.versions.iter().map(|t| t.millis()).collect::<Vec<_>>(),
            [1000, 2000, 3000]
        );
        let object = Endpoint::object(&id).unwrap_or_else(|e| panic!("{e}"));
        let q = Query::from_query_string(object, "").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&page(&s, &q).objects), [(1, 3000)]);
        let m = page(&s, &query("match[type]=sighting")).manifest();
        assert_eq!(
            serde_json::to_string(&m).unwrap_or_default(),
            r#"{"objects":[{"id":"sighting--00000000-0000-4000-8000-000000000002","date_added":"1970-01-01T00:00:05.500Z","version":"1970-01-01T00:00:01.500Z","media_type":"application/stix+json;version=2.1"}]}"#
        );
    }
}

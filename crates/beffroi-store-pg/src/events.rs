//! Rows of the `events` table: events declared through the API and cancellations (of any
//! event, those of `events.toml` included). The perimeter is stored as a JSON array of
//! `[lon, lat]` pairs.

use beffroi_core::event::Capacity;
use beffroi_core::{Event, EventOrigin, Point, Timestamp};
use beffroi_engine::StoreError;
use postgres::{GenericClient, Transaction};

use crate::error::{Context, Get};

pub(crate) const UPSERT_EVENT: &str = "INSERT INTO events \
    (id, name, perimeter, starts_at, ends_at, warning, critical, rules, origin, created_by, \
     cancelled_at, cancelled_by) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, perimeter = excluded.perimeter, \
    starts_at = excluded.starts_at, ends_at = excluded.ends_at, warning = excluded.warning, \
    critical = excluded.critical, rules = excluded.rules, origin = excluded.origin, \
    created_by = excluded.created_by, cancelled_at = excluded.cancelled_at, \
    cancelled_by = excluded.cancelled_by";

pub(crate) fn upsert(tx: &mut Transaction<'_>, e: &Event) -> Result<(), StoreError> {
    let perimeter: Vec<[f64; 2]> = e.perimeter.iter().map(|p| [p.lon, p.lat]).collect();
    let perimeter = serde_json::to_string(&perimeter)
        .map_err(|err| StoreError::Backend(format!("encode perimeter: {err}")))?;
    tx.execute(
        UPSERT_EVENT,
        &[
            &&*e.id,
            &&*e.name,
            &perimeter,
            &e.starts_at.0,
            &e.ends_at.0,
            &e.capacity.map(|c| c.warning),
            &e.capacity.map(|c| c.critical),
            &&*e.rules,
            &e.origin.as_str(),
            &&*e.created_by,
            &e.cancelled_at.map(|t| t.0),
            &e.cancelled_by.as_deref(),
        ],
    )
    .ctx("write event")?;
    Ok(())
}

pub(crate) fn all(client: &mut impl GenericClient) -> Result<Vec<Event>, StoreError> {
    let rows = client
        .query(
            "SELECT id, name, perimeter, starts_at, ends_at, warning, critical, rules, origin, \
             created_by, cancelled_at, cancelled_by FROM events ORDER BY starts_at, id",
            &[],
        )
        .ctx("read events")?;
    let mut out = Vec::new();
    for r in rows {
        let id: String = r.at(0)?;
        let name: String = r.at(1)?;
        let perimeter: String = r.at(2)?;
        let (starts, ends): (i64, i64) = (r.at(3)?, r.at(4)?);
        let (warning, critical): (Option<f64>, Option<f64>) = (r.at(5)?, r.at(6)?);
        let (rules, origin, by): (String, String, String) = (r.at(7)?, r.at(8)?, r.at(9)?);
        let (c_at, c_by): (Option<i64>, Option<String>) = (r.at(10)?, r.at(11)?);
        let perimeter: Vec<[f64; 2]> = serde_json::from_str(&perimeter)
            .map_err(|e| StoreError::Inconsistent(format!("event `{id}` perimeter: {e}")))?;
        out.push(Event {
            name: name.into(),
            perimeter: perimeter
                .into_iter()
                .map(|[lon, lat]| Point::new(lon, lat))
                .collect(),
            starts_at: Timestamp(starts),
            ends_at: Timestamp(ends),
            capacity: match (warning, critical) {
                (Some(warning), Some(critical)) => Some(Capacity { warning, critical }),
                _ => None,
            },
            rules: rules.into(),
            origin: EventOrigin::parse(&origin).unwrap_or(EventOrigin::Api),
            created_by: by.into(),
            cancelled_at: c_at.map(Timestamp),
            cancelled_by: c_by.map(Into::into),
            id: id.into(),
        });
    }
    Ok(out)
}

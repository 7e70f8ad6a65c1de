//! Rows of the `events` table: events declared through the API and cancellations (of any
//! event, those of `events.toml` included). The perimeter is stored as a JSON array of
//! `[lon, lat]` pairs.

use beffroi_core::event::Capacity;
use beffroi_core::{Event, EventOrigin, Point, Timestamp};
use beffroi_engine::StoreError;
use rusqlite::{Connection, Transaction, params};

use crate::error::Context;

pub(crate) const UPSERT_EVENT: &str = "INSERT INTO events \
    (id, name, perimeter, starts_at, ends_at, warning, critical, rules, origin, created_by, \
     cancelled_at, cancelled_by) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, perimeter = excluded.perimeter, \
    starts_at = excluded.starts_at, ends_at = excluded.ends_at, warning = excluded.warning, \
    critical = excluded.critical, rules = excluded.rules, origin = excluded.origin, \
    created_by = excluded.created_by, cancelled_at = excluded.cancelled_at, \
    cancelled_by = excluded.cancelled_by";

pub(crate) fn upsert(tx: &Transaction<'_>, e: &Event) -> Result<(), StoreError> {
    let perimeter: Vec<[f64; 2]> = e.perimeter.iter().map(|p| [p.lon, p.lat]).collect();
    let perimeter = serde_json::to_string(&perimeter)
        .map_err(|err| StoreError::Backend(format!("encode perimeter: {err}")))?;
    tx.prepare_cached(UPSERT_EVENT)
        .ctx("prepare event")?
        .execute(params![
            &*e.id,
            &*e.name,
            perimeter,
            e.starts_at.0,
            e.ends_at.0,
            e.capacity.map(|c| c.warning),
            e.capacity.map(|c| c.critical),
            &*e.rules,
            e.origin.as_str(),
            &*e.created_by,
            e.cancelled_at.map(|t| t.0),
            e.cancelled_by.as_deref(),
        ])
        .ctx("write event")?;
    Ok(())
}

pub(crate) fn all(conn: &Connection) -> Result<Vec<Event>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, name, perimeter, starts_at, ends_at, warning, critical, rules, origin, \
             created_by, cancelled_at, cancelled_by FROM events ORDER BY starts_at, id",
        )
        .ctx("prepare events")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<f64>>(5)?,
                r.get::<_, Option<f64>>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, String>(9)?,
                r.get::<_, Option<i64>>(10)?,
                r.get::<_, Option<String>>(11)?,
            ))
        })
        .ctx("read events")?;
    let mut out = Vec::new();
    for row in rows {
        let (id, name, perimeter, starts, ends, warning, critical, rules, origin, by, c_at, c_by) =
            row.ctx("read event")?;
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

//! Event mode over HTTP: declare an event (perimeter as a GeoJSON polygon, time window,
//! capacity thresholds, temporary rules), list and read events with their live aggregate
//! occupancy, cancel one. Occupancy is an aggregate count only (the sum of the people
//! counters inside the perimeter), withheld below a minimum group size.

use axum::Json;
use axum::extract::{Path, Query, State};
use beffroi_core::event::Capacity;
use beffroi_core::{Event, EventOrigin, Point, Timestamp};
use beffroi_engine::events::{EventError, EventView};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::User;

/// A GeoJSON Polygon (`{"type": "Polygon", "coordinates": [[[lon, lat], …]]}`); only the
/// outer ring is used.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct GeoPolygonDto {
    /// Always `Polygon`.
    #[serde(rename = "type")]
    pub ty: String,
    pub coordinates: Vec<Vec<[f64; 2]>>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq)]
pub struct CapacityDto {
    /// Aggregate count from which a `major` capacity incident opens.
    pub warning: f64,
    /// Aggregate count from which it becomes `critical`.
    pub critical: f64,
}

#[derive(Serialize, ToSchema)]
pub struct EventDto {
    pub id: String,
    pub name: String,
    pub perimeter: GeoPolygonDto,
    pub starts_at: String,
    pub ends_at: String,
    /// scheduled | active | ended | cancelled
    pub status: String,
    pub capacity: Option<CapacityDto>,
    /// Sum of the latest counts of the perimeter's people counters; null without counter
    /// or below the minimum group size (`privacy.toml`, default 10).
    pub occupancy: Option<f64>,
    /// `occupancy` is null because the counters' sum is below the minimum group size.
    pub suppressed: bool,
    /// Number of people counters inside the perimeter.
    pub counters: usize,
    /// Temporary rules (TOML), in force only during the window.
    pub rules: String,
    /// Ids of the rules the event puts in force (`{event}/{rule}`, `{event}/capacity`).
    pub rule_ids: Vec<String>,
    /// file | api
    pub origin: String,
    pub created_by: String,
    pub cancelled_at: Option<String>,
    pub cancelled_by: Option<String>,
}

impl EventDto {
    pub fn from_view(v: &EventView) -> Self {
        let e = &v.event;
        let mut ring: Vec<[f64; 2]> = e.perimeter.iter().map(|p| [p.lon, p.lat]).collect();
        if ring.first() != ring.last()
            && let Some(first) = ring.first().copied()
        {
            ring.push(first);
        }
        EventDto {
            id: e.id.to_string(),
            name: e.name.to_string(),
            perimeter: GeoPolygonDto {
                ty: "Polygon".into(),
                coordinates: vec![ring],
            },
            starts_at: e.starts_at.to_string(),
            ends_at: e.ends_at.to_string(),
            status: v.status.as_str().into(),
            capacity: e.capacity.map(|c| CapacityDto {
                warning: c.warning,
                critical: c.critical,
            }),
            occupancy: v.occupancy,
            suppressed: v.suppressed,
            counters: v.counters,
            rules: e.rules.to_string(),
            rule_ids: v.rule_ids.iter().map(|r| r.to_string()).collect(),
            origin: e.origin.as_str().into(),
            created_by: e.created_by.to_string(),
            cancelled_at: e.cancelled_at.map(|t| t.to_string()),
            cancelled_by: e.cancelled_by.as_deref().map(str::to_string),
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct NewEventRequest {
    /// Optional id (lowercase letters, digits, `-`, `_`); derived from the name when absent.
    #[serde(default)]
    pub id: Option<String>,
    pub name: crate::scrub::FreeText,
    /// A GeoJSON Polygon, a Feature whose geometry is one, or a FeatureCollection of one
    /// such Feature (an imported file).
    #[schema(value_type = Object)]
    pub perimeter: serde_json::Value,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339, after `starts_at`.
    pub ends_at: String,
    #[serde(default)]
    pub capacity: Option<CapacityDto>,
    /// Temporary rules in the rule language (TOML), scoped to the perimeter.
    #[serde(default)]
    pub rules: Option<String>,
}

#[derive(Deserialize)]
pub struct EventQuery {
    /// scheduled | active | ended | cancelled
    pub status: Option<String>,
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, msg)
}

/// The outer ring of a GeoJSON Polygon, of the Polygon geometry of a Feature, or of the
/// only feature of a FeatureCollection (an imported file).
fn polygon_ring(v: &serde_json::Value) -> Result<Vec<Point>, ApiError> {
    let v = match v.get("type").and_then(|t| t.as_str()) {
        Some("FeatureCollection") => match v.get("features").and_then(|f| f.as_array()) {
            Some(features) if features.len() == 1 => &features[0],
            _ => {
                return Err(invalid(
                    "perimeter: a FeatureCollection must hold exactly one feature",
                ));
            }
        },
        _ => v,
    };
    let geometry = match v.get("type").and_then(|t| t.as_str()) {
        Some("Feature") => v
            .get("geometry")
            .ok_or_else(|| invalid("perimeter: the Feature has no geometry"))?,
        _ => v,
    };
    let poly: GeoPolygonDto = serde_json::from_value(geometry.clone())
        .map_err(|e| invalid(format!("perimeter: not a GeoJSON Polygon: {e}")))?;
    if poly.ty != "Polygon" {
        return Err(invalid(format!(
            "perimeter: expected a Polygon, got {}",
            poly.ty
        )));
    }
    let ring = poly
        .coordinates
        .into_iter()
        .next()
        .ok_or_else(|| invalid("perimeter: the polygon has no ring"))?;
    Ok(ring
        .into_iter()
        .map(|[lon, lat]| Point::new(lon, lat))
        .collect())
}

fn time(field: &str, s: &str) -> Result<Timestamp, ApiError> {
    beffroi_wire::parse_rfc3339(s)
        .ok_or_else(|| invalid(format!("{field}: `{s}` is not an RFC 3339 time")))
}

/// A free id derived from the name: `fete-de-la-musique`, `fete-de-la-musique-2`…
fn derive_id(name: &str, taken: &[EventView]) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        let c = match c {
            'à' | 'â' | 'ä' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' => 'i',
            'ô' | 'ö' => 'o',
            'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            c => c,
        };
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 48 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    let base = if slug.is_empty() { "event" } else { slug };
    let free = |id: &str| !taken.iter().any(|v| &*v.event.id == id);
    if free(base) {
        return base.to_string();
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|id| free(id))
        .unwrap_or_else(|| base.to_string())
}

fn event_error(e: EventError) -> ApiError {
    match e {
        EventError::NotFound(_) => ApiError::new(ErrorCode::EventNotFound, e.to_string()),
        EventError::Exists(_) => ApiError::new(ErrorCode::EventExists, e.to_string()),
        EventError::Closed(_) => ApiError::new(ErrorCode::EventClosed, e.to_string()),
        EventError::Store(_) | EventError::EngineClosed => {
            ApiError::new(ErrorCode::StoreUnavailable, e.to_string())
        }
    }
}

#[utoipa::path(get, path = "/api/v1/events",
    params(("status" = Option<String>, Query, description = "scheduled | active | ended | cancelled")),
    responses((status = 200, body = [EventDto])), security(("bearer" = [])))]
pub async fn list_events(
    State(s): State<AppState>,
    _u: User,
    Query(q): Query<EventQuery>,
) -> Result<Json<Vec<EventDto>>, ApiError> {
    if let Some(st) = q.status.as_deref()
        && !["scheduled", "active", "ended", "cancelled"].contains(&st)
    {
        return Err(invalid(format!("unknown status `{st}`")));
    }
    let views = s.engine.events();
    let now = s.engine.clock.now();
    let mut out: Vec<EventDto> = views
        .iter()
        .map(|v| with_status(v, now))
        .filter(|v| q.status.as_deref().is_none_or(|st| v.status.as_str() == st))
        .map(|v| EventDto::from_view(&v))
        .collect();
    out.sort_by(|a, b| a.starts_at.cmp(&b.starts_at).then(a.id.cmp(&b.id)));
    Ok(Json(out))
}

/// The status as of now (the snapshot holds the status of the last engine change).
fn with_status(v: &EventView, now: Timestamp) -> EventView {
    EventView {
        status: v.event.status(now),
        ..v.clone()
    }
}

#[utoipa::path(get, path = "/api/v1/events/{id}",
    responses((status = 200, body = EventDto), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_event(
    State(s): State<AppState>,
    _u: User,
    Path(id): Path<String>,
) -> Result<Json<EventDto>, ApiError> {
    let views = s.engine.events();
    let now = s.engine.clock.now();
    let v = views
        .iter()
        .find(|v| *v.event.id == *id)
        .ok_or_else(|| event_error(EventError::NotFound(id.clone())))?;
    Ok(Json(EventDto::from_view(&with_status(v, now))))
}

#[utoipa::path(post, path = "/api/v1/events", request_body = NewEventRequest,
    responses((status = 201, body = EventDto), (status = 400, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_event(
    State(s): State<AppState>,
    u: User,
    body: Result<Json<NewEventRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(axum::http::StatusCode, Json<EventDto>), ApiError> {
    let Json(req) = body.map_err(|e| invalid(e.body_text()))?;
    let name = req.name.scrub(&s).await?;
    // An id and rules are not notes: they are shown and re-sent as they are, so they may
    // not carry a personal identifier at all (their titles are templates, not free text).
    // TOML table headers (`[[rule]]`, `[rule.threshold]`) are syntax, not `[[names]]`.
    let rules_text: Option<String> = req.rules.as_deref().map(|r| {
        r.lines()
            .filter(|l| !l.trim_start().starts_with('['))
            .collect::<Vec<_>>()
            .join("\n")
    });
    for (field, text) in [("id", req.id.as_deref()), ("rules", rules_text.as_deref())] {
        if text.is_some_and(beffroi_privacy::carries_identifier) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "{field}: carries a personal identifier (plate, phone number, e-mail, badge, \
                     MAC address or [[name]]); an event's {field} never may"
                ),
            ));
        }
    }
    let perimeter = polygon_ring(&req.perimeter)?;
    let starts_at = time("starts_at", &req.starts_at)?;
    let ends_at = time("ends_at", &req.ends_at)?;
    let id = match req.id {
        Some(id) => id,
        None => derive_id(&name, &s.engine.events()),
    };
    let event = Event {
        id: id.into(),
        name: name.trim().into(),
        perimeter,
        starts_at,
        ends_at,
        capacity: req.capacity.map(|c| Capacity {
            warning: c.warning,
            critical: c.critical,
        }),
        rules: req.rules.unwrap_or_default().into(),
        origin: EventOrigin::Api,
        created_by: u.0.as_str().into(),
        cancelled_at: None,
        cancelled_by: None,
    };
    let compiled = beffroi_rules::compile_event(event, &s.engine.territory, "request", None, 0)
        .map_err(|es| {
            let details: Vec<serde_json::Value> = es
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "line": e.line, "field": e.field, "message": e.message,
                    })
                })
                .collect();
            invalid(format!("the event is invalid: {es}"))
                .with_details(serde_json::json!({ "errors": details }))
        })?;
    let v = s
        .engine
        .declare_event(compiled)
        .await
        .map_err(event_error)?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(EventDto::from_view(&v)),
    ))
}

#[utoipa::path(post, path = "/api/v1/events/{id}/cancel",
    responses((status = 200, body = EventDto), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel_event(
    State(s): State<AppState>,
    u: User,
    Path(id): Path<String>,
) -> Result<Json<EventDto>, ApiError> {
    let v = s
        .engine
        .cancel_event(&id, &u.0)
        .await
        .map_err(event_error)?;
    Ok(Json(EventDto::from_view(&v)))
}

/// The SSE `event` message for a changed event.
pub(crate) fn sse_data(v: &EventView) -> String {
    serde_json::to_string(&EventDto::from_view(v)).unwrap_or_default()
}

#[derive(OpenApi)]
#[openapi(
    paths(list_events, get_event, create_event, cancel_event),
    components(schemas(EventDto, NewEventRequest, GeoPolygonDto, CapacityDto))
)]
pub(crate) struct EventsApi;

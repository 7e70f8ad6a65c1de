//! Alarm health (`GET /api/v1/alarm-health`): the ISA-18.2 / EEMUA 191 figures of the
//! caller's scope — new alarms per 10 minutes (peak and average), standing, stale and
//! chattering — computed by `beffroi_core::alarm_health` from the incidents the caller may
//! see; and the same figures over the whole territory as gauges on `/metrics`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use beffroi_core::alarm_health::{self, AlarmHealth, Arrival};
use beffroi_core::{DedupKey, Duration, IncidentId, Status, Timestamp};
use beffroi_engine::store::IncidentQuery;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::{blocking, store_err};
use crate::routes::Caller;
use crate::scoped::Incidents;

/// Most incidents and log lines read for one measure.
const MAX_READ: usize = 200_000;
/// The longest period a caller may ask for.
const MAX_PERIOD: Duration = Duration::from_mins(7 * 24 * 60);

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AlarmHealthParams {
    /// RFC 3339 start of the period (default: 24 hours ago; at most 7 days ago).
    since: Option<String>,
}

/// The thresholds the figures are read against.
#[derive(Serialize, ToSchema)]
pub struct ThresholdsDto {
    /// Length of a window, in minutes (10).
    pub window_minutes: i64,
    /// More new alarms than this in one window, for one operator, is a flood (10).
    pub flood_per_window: usize,
    /// The steady-state target per window (about 1).
    pub target_per_window: usize,
    /// A key arriving more than this many times within `chatter_window_minutes` chatters.
    pub chatter_arrivals: usize,
    pub chatter_window_minutes: i64,
    /// An open incident older than this is stale.
    pub stale_after_hours: i64,
}

#[derive(Serialize, ToSchema)]
pub struct AlarmHealthDto {
    /// Start of the period (RFC 3339).
    pub since: String,
    /// End of the period: the engine's processing time.
    pub until: String,
    /// Alarms that reached the scope in the period: incidents opened, re-opened by their
    /// rule, or raised again while open.
    pub arrivals: usize,
    /// Consecutive 10-minute windows covering the period.
    pub windows: usize,
    pub average_per_window: f64,
    /// The most alarms within any 10 minutes of the period.
    pub peak_per_window: usize,
    /// Start of that worst window (RFC 3339), when there was an alarm.
    pub peak_at: Option<String>,
    /// Whether the worst window is a flood (more than `flood_per_window`).
    pub flood: bool,
    /// Consecutive 10-minute windows from `since` holding a flood.
    pub flood_windows: usize,
    /// Open incidents not acknowledged.
    pub standing: usize,
    /// Open incidents opened more than `stale_after_hours` ago.
    pub stale: usize,
    /// Keys that chattered in the period.
    pub chattering: usize,
    /// The same figures counted in situations (the incidents of one real event grouped,
    /// `situations.toml`): what the operator actually has to handle.
    pub situations: SituationHealthDto,
    /// Alarms on the shelf now (ISA-18.2 shelving): they do not alert.
    pub shelved: usize,
    pub thresholds: ThresholdsDto,
}

/// Alarm health counted in situations: a situation arrives for a scope when the first of
/// its incidents the scope sees opens. Read from the engine's situations (the open ones and
/// those closed in the last day): over a period longer than a day, the situations closed
/// before it are not counted.
#[derive(Serialize, ToSchema)]
pub struct SituationHealthDto {
    /// Situations that reached the scope in the period.
    pub arrivals: usize,
    pub average_per_window: f64,
    /// The most new situations within any 10 minutes of the period.
    pub peak_per_window: usize,
    /// Start of that worst window (RFC 3339).
    pub peak_at: Option<String>,
    /// Whether the worst window is a flood (more than `flood_per_window`).
    pub flood: bool,
    /// Open situations.
    pub open: usize,
    /// Open situations with an incident not acknowledged.
    pub standing: usize,
}

/// The situations' figures for one visibility, over `[since, until)`.
fn situation_health(
    situations: &[Arc<beffroi_core::Situation>],
    vis: &beffroi_core::visibility::Visibility,
    since: Timestamp,
    until: Timestamp,
) -> SituationHealthDto {
    let views: Vec<_> = situations
        .iter()
        .filter(|x| x.merged_into.is_none())
        .filter_map(|x| x.view(vis))
        .collect();
    let arrivals: Vec<Arrival> = views
        .iter()
        .filter_map(|v| {
            let at = v.members.iter().map(|m| m.opened_at).min()?;
            (at >= since && at < until).then(|| Arrival {
                at,
                key: DedupKey(format!("situation:{}", v.situation.id).into()),
            })
        })
        .collect();
    let h = alarm_health::measure(&arrivals, std::iter::empty(), since, until);
    SituationHealthDto {
        arrivals: h.arrivals,
        average_per_window: h.average_per_window,
        peak_per_window: h.peak_per_window,
        peak_at: h.peak_at.map(|t| t.to_string()),
        flood: h.flood(),
        open: views.iter().filter(|v| v.status.is_open()).count(),
        standing: views
            .iter()
            .filter(|v| v.members.iter().any(|m| m.status == Status::New))
            .count(),
    }
}

impl AlarmHealthDto {
    fn from_core(h: &AlarmHealth, situations: SituationHealthDto) -> Self {
        AlarmHealthDto {
            since: h.since.to_string(),
            until: h.until.to_string(),
            arrivals: h.arrivals,
            windows: h.windows,
            average_per_window: h.average_per_window,
            peak_per_window: h.peak_per_window,
            peak_at: h.peak_at.map(|t| t.to_string()),
            flood: h.flood(),
            flood_windows: h.flood_windows,
            standing: h.standing,
            stale: h.stale,
            chattering: h.chattering,
            situations,
            shelved: 0,
            thresholds: ThresholdsDto {
                window_minutes: alarm_health::WINDOW.millis() / 60_000,
                flood_per_window: alarm_health::FLOOD_PER_WINDOW,
                target_per_window: alarm_health::TARGET_PER_WINDOW,
                chatter_arrivals: alarm_health::CHATTER_ARRIVALS,
                chatter_window_minutes: alarm_health::CHATTER_WINDOW.millis() / 60_000,
                stale_after_hours: alarm_health::STALE_AFTER.millis() / 3_600_000,
            },
        }
    }
}

/// Reads what the figures need through `incidents` (its visibility is part of every query)
/// and computes them over `[since, until)`.
fn measure(
    incidents: &Incidents,
    since: Timestamp,
    until: Timestamp,
) -> Result<AlarmHealth, ApiError> {
    let open = incidents
        .list(IncidentQuery {
            statuses: vec![Status::New, Status::Acknowledged, Status::InProgress],
            limit: MAX_READ,
            ..Default::default()
        })
        .map_err(store_err)?;
    // Every incident with a log line since `since` was updated since then.
    let touched = incidents
        .list(IncidentQuery {
            updated_since: Some(since),
            limit: MAX_READ,
            ..Default::default()
        })
        .map_err(store_err)?;
    let keys: HashMap<IncidentId, DedupKey> = open
        .iter()
        .chain(touched.iter())
        .map(|i| (i.id, i.key.clone()))
        .collect();
    let arrivals: Vec<Arrival> = incidents
        .handover_log(since, MAX_READ)
        .map_err(store_err)?
        .into_iter()
        .filter(|e| alarm_health::is_arrival(&e.entry))
        .filter_map(|e| {
            keys.get(&e.incident).map(|key| Arrival {
                at: e.entry.at,
                key: key.clone(),
            })
        })
        .collect();
    Ok(alarm_health::measure(&arrivals, &open, since, until))
}

#[utoipa::path(get, path = "/api/v1/alarm-health", params(AlarmHealthParams),
    responses((status = 200, body = AlarmHealthDto), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn alarm_health(
    State(s): State<AppState>,
    c: Caller,
    Query(p): Query<AlarmHealthParams>,
) -> Result<Json<AlarmHealthDto>, ApiError> {
    let until = s.engine.clock.now();
    let since = match p.since.as_deref() {
        None => until.minus(alarm_health::DEFAULT_PERIOD),
        Some(text) => beffroi_wire::parse_rfc3339(text).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("`since` is not an RFC 3339 time: `{text}`"),
            )
        })?,
    };
    if since >= until || until.since(since).millis() > MAX_PERIOD.millis() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "`since` must be in the past, at most 7 days ago",
        )
        .with_details(serde_json::json!({"field": "since"})));
    }
    // The caller's visibility (its `incident.read` communes, `cyber` with
    // `incident.cyber`) is part of every query.
    let incidents = c.incidents(&s);
    let shelved = crate::shelving::shelved_count(&s.engine.ops(), incidents.visibility(), until);
    let h = blocking(move || measure(&incidents, since, until)).await?;
    let sit = situation_health(&s.engine.ops().situations, &c.visibility, since, until);
    let mut dto = AlarmHealthDto::from_core(&h, sit);
    dto.shelved = shelved;
    Ok(Json(dto))
}

/// The territory's alarm health as gauges on `/metrics`, refreshed at each scrape.
#[derive(Default)]
pub struct HealthGauges {
    peak: Gauge,
    average: Gauge<f64, std::sync::atomic::AtomicU64>,
    arrivals: Gauge,
    flood_windows: Gauge,
    standing: Gauge,
    stale: Gauge,
    chattering: Gauge,
    situations_peak: Gauge,
    situations_standing: Gauge,
    shelved: Gauge,
}

impl HealthGauges {
    pub fn register(self: &Arc<Self>, r: &mut Registry) {
        r.register(
            "alarm_health_peak_alarms_per_10min",
            "Most new alarms within any 10 minutes of the last 24 hours, whole territory (ISA-18.2: more than 10 is a flood)",
            self.peak.clone(),
        );
        r.register(
            "alarm_health_average_alarms_per_10min",
            "New alarms per 10 minutes over the last 24 hours, whole territory (target: about 1)",
            self.average.clone(),
        );
        r.register(
            "alarm_health_arrivals_24h",
            "New alarms (openings, re-openings by a rule, raises again) in the last 24 hours",
            self.arrivals.clone(),
        );
        r.register(
            "alarm_health_flood_windows_24h",
            "10-minute windows of the last 24 hours with more than 10 new alarms",
            self.flood_windows.clone(),
        );
        r.register(
            "alarm_health_standing_incidents",
            "Open incidents not acknowledged",
            self.standing.clone(),
        );
        r.register(
            "alarm_health_stale_incidents",
            "Open incidents opened more than 24 hours ago",
            self.stale.clone(),
        );
        r.register(
            "alarm_health_chattering_keys_24h",
            "Alarm keys that arrived more than 3 times within an hour in the last 24 hours",
            self.chattering.clone(),
        );
        r.register(
            "alarm_health_peak_situations_per_10min",
            "Most new situations within any 10 minutes of the last 24 hours, whole territory (ISA-18.2: more than 10 is a flood)",
            self.situations_peak.clone(),
        );
        r.register(
            "alarm_health_standing_situations",
            "Open situations with an incident not acknowledged, whole territory",
            self.situations_standing.clone(),
        );
        r.register(
            "alarm_health_shelved_alarms",
            "Alarms on the shelf now (ISA-18.2 shelving), whole territory",
            self.shelved.clone(),
        );
    }

    fn set(&self, h: &AlarmHealth) {
        let int = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.peak.set(int(h.peak_per_window));
        self.average.set(h.average_per_window);
        self.arrivals.set(int(h.arrivals));
        self.flood_windows.set(int(h.flood_windows));
        self.standing.set(int(h.standing));
        self.stale.set(int(h.stale));
        self.chattering.set(int(h.chattering));
    }
}

/// Refreshes the territory-wide gauges (the `/metrics` route needs a territory-wide grant).
/// A failed read leaves the previous values and is logged.
pub async fn refresh_gauges(s: &AppState) {
    let until = s.engine.clock.now();
    let since = until.minus(alarm_health::DEFAULT_PERIOD);
    let incidents = Incidents::territory(Arc::clone(&s.reader));
    let gauges = Arc::clone(&s.health_gauges);
    let shelved = crate::shelving::shelved_count(&s.engine.ops(), incidents.visibility(), until);
    gauges
        .shelved
        .set(i64::try_from(shelved).unwrap_or(i64::MAX));
    let measured = blocking(move || measure(&incidents, since, until)).await;
    if let Ok(h) = measured {
        gauges.set(&h);
    }
    let sit = situation_health(
        &s.engine.ops().situations,
        &beffroi_core::visibility::Visibility::everything(),
        since,
        until,
    );
    let int = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    s.health_gauges
        .situations_peak
        .set(int(sit.peak_per_window));
    s.health_gauges.situations_standing.set(int(sit.standing));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_route_and_its_answer_are_in_the_openapi_document() {
        let doc = crate::openapi::document();
        let path = doc
            .paths
            .paths
            .get("/api/v1/alarm-health")
            .expect("documented");
        assert!(path.get.is_some());
        let schemas = &doc.components.as_ref().expect("components").schemas;
        assert!(schemas.contains_key("AlarmHealthDto"));
        assert!(schemas.contains_key("ThresholdsDto"));
    }
}

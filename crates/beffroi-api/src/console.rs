//! Map data for the console: the communes as GeoJSON and a compact, columnar list of every
//! device, small enough to load 100,000 devices at once.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use beffroi_core::DeviceIdx;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::handlers::User;

/// Device states in the order of [`MapDevicesDto::state`]'s indices.
pub const MAP_STATES: [&str; 4] = ["normal", "alarm", "silent", "quarantined"];

/// Every device of the territory, column by column: device `i` is `ids[i]` at
/// (`lon[i]`, `lat[i]`), of kind `kinds[kind[i]]`, in state `states[state[i]]`.
/// Coordinates are rounded to 1e-5 degree (about a metre).
#[derive(Serialize, ToSchema)]
pub struct MapDevicesDto {
    pub count: usize,
    /// normal | alarm | silent | quarantined
    pub states: Vec<String>,
    pub kinds: Vec<String>,
    pub ids: Vec<String>,
    pub lon: Vec<f64>,
    pub lat: Vec<f64>,
    /// Index into `kinds`.
    pub kind: Vec<u16>,
    /// Index into `states`.
    pub state: Vec<u8>,
}

fn round5(x: f64) -> f64 {
    (x * 1e5).round() / 1e5
}

#[utoipa::path(get, path = "/api/v1/map/devices",
    responses((status = 200, body = MapDevicesDto)), security(("bearer" = [])))]
pub async fn map_devices(State(s): State<AppState>, _u: User) -> Json<MapDevicesDto> {
    let t = &s.engine.territory;
    let n = t.devices.len();
    let mut dto = MapDevicesDto {
        count: n,
        states: MAP_STATES.iter().map(|s| (*s).to_string()).collect(),
        kinds: t.kinds.iter().map(|k| k.id.to_string()).collect(),
        ids: Vec::with_capacity(n),
        lon: Vec::with_capacity(n),
        lat: Vec::with_capacity(n),
        kind: Vec::with_capacity(n),
        state: Vec::with_capacity(n),
    };
    for (i, d) in t.devices.iter().enumerate() {
        let state = s.board.state(DeviceIdx(i as u32)).as_str();
        dto.ids.push(d.id.to_string());
        dto.lon.push(round5(d.position.lon));
        dto.lat.push(round5(d.position.lat));
        dto.kind
            .push(u16::try_from(d.kind.get()).unwrap_or(u16::MAX));
        dto.state
            .push(MAP_STATES.iter().position(|x| *x == state).unwrap_or(0) as u8);
    }
    Json(dto)
}

#[utoipa::path(get, path = "/api/v1/territory/communes",
    responses((status = 200, description = "GeoJSON FeatureCollection of the communes (id, name, insee, sites, devices)")),
    security(("bearer" = [])))]
pub async fn communes_geojson(State(s): State<AppState>, _u: User) -> Response {
    let t = &s.engine.territory;
    let mut sites = vec![0usize; t.communes.len()];
    let mut devices = vec![0usize; t.communes.len()];
    for site in &t.sites {
        sites[site.commune.get()] += 1;
    }
    for d in &t.devices {
        devices[t.site(d.site).commune.get()] += 1;
    }
    let features: Vec<serde_json::Value> = t
        .communes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            serde_json::json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [c.position.lon, c.position.lat]},
                "properties": {"id": &*c.id, "name": &*c.name, "insee": c.insee.as_deref(),
                    "sites": sites[i], "devices": devices[i]},
            })
        })
        .collect();
    (
        [(header::CONTENT_TYPE, "application/geo+json")],
        Json(serde_json::json!({"type": "FeatureCollection", "features": features})),
    )
        .into_response()
}

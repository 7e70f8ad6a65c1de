//! Map data for the console: the communes as GeoJSON and the devices clustered by the
//! server for the visible box ([`crate::mapgrid`]), so that the browser never holds
//! 100,000 points.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use beffroi_engine::live::DeviceState;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::handlers::blocking;
use crate::mapgrid::{self, Bbox, GridError, MapState};

/// Query of `GET /api/v1/map/clusters`.
#[derive(Deserialize, IntoParams)]
pub struct ClusterParams {
    /// The map's zoom (MapLibre's: the world is 512 px wide at zoom 0), 0 to 24; fractional
    /// zooms use the level below.
    z: Option<String>,
    /// `west,south,east,north` in degrees (west < east: no antimeridian crossing). Send the
    /// visible box with a margin; it is grown to whole cells.
    bbox: Option<String>,
}

/// Devices per state.
#[derive(Serialize, ToSchema)]
pub struct MapStateCountsDto {
    pub normal: usize,
    pub alarm: usize,
    pub silent: usize,
    pub quarantined: usize,
}

impl From<[usize; 4]> for MapStateCountsDto {
    fn from(c: [usize; 4]) -> Self {
        MapStateCountsDto {
            normal: c[0],
            alarm: c[1],
            silent: c[2],
            quarantined: c[3],
        }
    }
}

/// A GeoJSON FeatureCollection of the clusters and single devices of a box at a zoom, with
/// the territory's totals as foreign members.
#[derive(Serialize, ToSchema)]
pub struct MapClustersDto {
    /// "FeatureCollection"
    #[serde(rename = "type")]
    pub kind: String,
    /// Devices of the caller's communes.
    pub total: usize,
    /// Devices of the caller's communes per state.
    pub states: MapStateCountsDto,
    /// Devices in `bbox`.
    pub in_view: usize,
    /// The grid's level (the zoom rounded down).
    pub level: u8,
    /// False above zoom level 15: every feature is a device.
    pub clustered: bool,
    /// A cell's size on screen at `level`, in CSS pixels.
    pub cell_px: f64,
    /// The box covered: the requested one grown to whole cells, `[west, south, east, north]`.
    pub bbox: [f64; 4],
    pub features: Vec<MapFeatureDto>,
}

#[derive(Serialize, ToSchema)]
pub struct MapFeatureDto {
    /// "Feature"
    #[serde(rename = "type")]
    pub kind: String,
    pub geometry: MapGeometryDto,
    pub properties: MapPropertiesDto,
}

#[derive(Serialize, ToSchema)]
pub struct MapGeometryDto {
    /// "Point"
    #[serde(rename = "type")]
    pub kind: String,
    /// `[longitude, latitude]`, rounded to 1e-5 degree: a cluster's mean position or the
    /// device's.
    pub coordinates: [f64; 2],
}

/// A cluster (has `count`) or a single device (has `id`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum MapPropertiesDto {
    Cluster(MapClusterPropsDto),
    Device(MapDevicePropsDto),
}

/// Several devices of one grid cell.
#[derive(Serialize, ToSchema)]
pub struct MapClusterPropsDto {
    pub count: u32,
    pub normal: u32,
    pub alarm: u32,
    pub silent: u32,
    pub quarantined: u32,
    /// The state calling most for attention: alarm > silent > quarantined > normal. A single
    /// device in alarm makes a cluster's worst state `alarm`: colour by `alarm_share`.
    pub worst: String,
    /// The share of the cluster's devices in alarm, 0 to 1 (rounded to 1e-4; above 0 as
    /// soon as one device is in alarm).
    pub alarm_share: f64,
    /// The devices' bounding box: zoom to it to split the cluster.
    pub west: f64,
    pub south: f64,
    pub east: f64,
    pub north: f64,
}

/// One device.
#[derive(Serialize, ToSchema)]
pub struct MapDevicePropsDto {
    pub id: String,
    pub kind: String,
    /// normal | alarm | silent | quarantined
    pub state: String,
}

fn round5(x: f64) -> f64 {
    (x * 1e5).round() / 1e5
}

/// Rounded to 1e-4, never to 0 when something is there.
fn share(x: f64) -> f64 {
    if x > 0.0 {
        ((x * 1e4).round() / 1e4).max(1e-4)
    } else {
        0.0
    }
}

fn map_state(s: DeviceState) -> MapState {
    match s {
        DeviceState::Normal => MapState::Normal,
        DeviceState::Alarm => MapState::Alarm,
        DeviceState::Silent => MapState::Silent,
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

/// Parses `z` and `bbox`; every refusal names the parameter and what was expected.
fn parse_query(p: &ClusterParams) -> Result<(f64, Bbox), ApiError> {
    let z =
        p.z.as_deref()
            .ok_or_else(|| bad("z is required: the map's zoom, 0 to 24"))?;
    let zoom: f64 = z
        .trim()
        .parse()
        .map_err(|_| bad(format!("z must be a number between 0 and 24, got `{z}`")))?;
    let b = p
        .bbox
        .as_deref()
        .ok_or_else(|| bad("bbox is required: west,south,east,north in degrees"))?;
    let parts: Vec<&str> = b.split(',').map(str::trim).collect();
    let [w, s, e, n] = parts.as_slice() else {
        return Err(bad(format!(
            "bbox must be four numbers west,south,east,north, got `{b}`"
        )));
    };
    let mut v = [0.0f64; 4];
    for (slot, (name, text)) in
        v.iter_mut()
            .zip([("west", w), ("south", s), ("east", e), ("north", n)])
    {
        *slot = text
            .parse()
            .map_err(|_| bad(format!("bbox: {name} must be a number, got `{text}`")))?;
    }
    let bbox = Bbox::new(v[0], v[1], v[2], v[3]).map_err(|e| bad(e.to_string()))?;
    if !zoom.is_finite() || !(0.0..=mapgrid::MAX_ZOOM).contains(&zoom) {
        return Err(bad(GridError::Zoom(zoom).to_string()));
    }
    Ok((zoom, bbox))
}

/// The devices of a box grouped on a grid of ~50 px cells at the map's zoom: the browser
/// never holds more than what is on screen. Cells are anchored on the world (panning does
/// not reshuffle them) and counted whole; a cell with one device gives that device, and above
/// zoom 15 every device is given alone.
#[utoipa::path(get, path = "/api/v1/map/clusters", params(ClusterParams),
    responses((status = 200, body = MapClustersDto, content_type = "application/geo+json"),
        (status = 400, body = ErrorBody, description = "invalid_request: z or bbox missing, not numbers, out of range, west ≥ east, south ≥ north, or a box of more than 262,144 cells at that zoom")),
    security(("bearer" = [])))]
pub async fn map_clusters(
    State(s): State<AppState>,
    c: crate::Caller,
    Query(p): Query<ClusterParams>,
) -> Result<Response, ApiError> {
    let (zoom, bbox) = parse_query(&p)?;
    let index = Arc::clone(&s.map);
    let territory = Arc::clone(&s.engine.territory);
    let states = s.board.snapshot();
    // Quarantined devices show as such unless the rules still see them in alarm or silent.
    let quarantined: Vec<bool> = {
        let mut q = vec![false; states.len()];
        for a in &s.engine.ops().quarantined {
            if let Some(slot) = q.get_mut(a.device.get()) {
                *slot = true;
            }
        }
        q
    };
    let state_of = move |i: usize| {
        let st = states.get(i).copied().map_or(MapState::Normal, map_state);
        if st == MapState::Normal && quarantined.get(i).copied().unwrap_or(false) {
            MapState::Quarantined
        } else {
            st
        }
    };
    let scope = c.scope.clone();
    // About a millisecond for 100,000 devices, off the async workers all the same.
    let dto = blocking(move || {
        let t = &territory;
        let grid = mapgrid::cluster_some(&index, zoom, &bbox, &state_of, |i| {
            scope.is_territory()
                || scope.holds(
                    t.site(t.device(beffroi_core::DeviceIdx(i as u32)).site)
                        .commune,
                )
        })
        .map_err(|e| bad(e.to_string()))?;
        Ok(clusters_dto(&grid, &index, &territory, &state_of))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/geo+json")], Json(dto)).into_response())
}

fn feature(lon: f64, lat: f64, properties: MapPropertiesDto) -> MapFeatureDto {
    MapFeatureDto {
        kind: "Feature".into(),
        geometry: MapGeometryDto {
            kind: "Point".into(),
            coordinates: [round5(lon), round5(lat)],
        },
        properties,
    }
}

fn clusters_dto(
    g: &mapgrid::Grid,
    index: &mapgrid::MapIndex,
    t: &beffroi_core::Territory,
    state_of: &dyn Fn(usize) -> MapState,
) -> MapClustersDto {
    let mut features = Vec::with_capacity(g.clusters.len() + g.singles.len());
    for c in &g.clusters {
        features.push(feature(
            c.lon,
            c.lat,
            MapPropertiesDto::Cluster(MapClusterPropsDto {
                count: c.count,
                normal: c.by_state[0],
                alarm: c.by_state[1],
                silent: c.by_state[2],
                quarantined: c.by_state[3],
                worst: c.worst().as_str().into(),
                alarm_share: share(c.alarm_share()),
                west: round5(c.west),
                south: round5(c.south),
                east: round5(c.east),
                north: round5(c.north),
            }),
        ));
    }
    for &i in &g.singles {
        let i = i as usize;
        let (Some(d), Some((lon, lat))) = (t.devices.get(i), index.position(i)) else {
            continue;
        };
        let state = state_of(i);
        features.push(feature(
            lon,
            lat,
            MapPropertiesDto::Device(MapDevicePropsDto {
                id: d.id.to_string(),
                kind: t.kind(d.kind).id.to_string(),
                state: state.as_str().into(),
            }),
        ));
    }
    let c = g.covered;
    MapClustersDto {
        kind: "FeatureCollection".into(),
        // The grid counted only the caller's devices: so does the total.
        total: g.totals.iter().sum(),
        states: g.totals.into(),
        in_view: g.in_view,
        level: g.level,
        clustered: g.clustered,
        cell_px: g.cell_px,
        bbox: [c.west, c.south, c.east, c.north].map(round5),
        features,
    }
}

#[utoipa::path(get, path = "/api/v1/territory/communes",
    responses((status = 200, description = "GeoJSON FeatureCollection of the communes: their boundary (Polygon or MultiPolygon from communes.geojson) or else their position (Point); properties id, name, insee, label (where the name goes), sites, devices, in_scope (the commune is in the caller's scope: the console frames the map on these)")),
    security(("bearer" = [])))]
pub async fn communes_geojson(State(s): State<AppState>, c: crate::Caller) -> Response {
    let t = &s.engine.territory;
    // The user's scope, as `auth/me` gives it: the union of its grants. The map is framed on
    // the communes it holds.
    let scope = c
        .principal
        .grants
        .iter()
        .fold(crate::access::Scope::Nothing, |acc, g| acc.union(&g.scope));
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
            let label = [c.position.lon, c.position.lat];
            let ring = |r: &Vec<beffroi_core::Point>| -> Vec<[f64; 2]> {
                r.iter().map(|p| [p.lon, p.lat]).collect()
            };
            let geometry = match c.boundary.as_slice() {
                [] => serde_json::json!({"type": "Point", "coordinates": label}),
                [one] => serde_json::json!({"type": "Polygon", "coordinates": [ring(one)]}),
                many => serde_json::json!({"type": "MultiPolygon",
                    "coordinates": many.iter().map(|r| vec![ring(r)]).collect::<Vec<_>>()}),
            };
            serde_json::json!({
                "type": "Feature",
                "geometry": geometry,
                "properties": {"id": &*c.id, "name": &*c.name, "insee": c.insee.as_deref(),
                    "label": label, "sites": sites[i], "devices": devices[i],
                    "in_scope": scope.holds(beffroi_core::CommuneIdx(i as u32))},
            })
        })
        .collect();
    (
        [(header::CONTENT_TYPE, "application/geo+json")],
        Json(serde_json::json!({"type": "FeatureCollection", "features": features})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster says which share of its devices is in alarm: one alarm among many devices
    /// is a small share, not a red cluster.
    #[test]
    fn a_cluster_carries_the_share_of_its_devices_in_alarm() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../demo/territory");
        let t = beffroi_territory::load_dir(&root).expect("demo territory");
        let index =
            mapgrid::MapIndex::new(t.devices.iter().map(|d| (d.position.lon, d.position.lat)));
        let bbox = Bbox::new(3.5, 46.5, 6.5, 48.5).expect("box");
        let state_of = |i: usize| {
            if i == 0 {
                MapState::Alarm
            } else {
                MapState::Normal
            }
        };
        let grid = mapgrid::cluster(&index, 8.0, &bbox, state_of).expect("grid");
        let dto = serde_json::to_value(clusters_dto(&grid, &index, &t, &state_of)).expect("json");
        let clusters: Vec<&serde_json::Value> = dto["features"]
            .as_array()
            .expect("features")
            .iter()
            .map(|f| &f["properties"])
            .filter(|p| p["count"].is_u64())
            .collect();
        let home = clusters
            .iter()
            .find(|p| p["alarm"] == 1)
            .expect("the device in alarm is in a cluster at zoom 8");
        let count = home["count"].as_f64().expect("count");
        assert!(count > 10.0, "a large cluster: {home}");
        let share = home["alarm_share"].as_f64().expect("alarm_share");
        assert!(
            (share - (1.0 / count * 1e4).round() / 1e4).abs() < 1e-9,
            "{home}"
        );
        assert!(share > 0.0 && share < 0.1, "{home}");
        for p in clusters.iter().filter(|p| p["alarm"] == 0) {
            assert_eq!(p["alarm_share"], 0.0, "{p}");
        }
    }
}

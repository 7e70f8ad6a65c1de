//! The operator console, served by the `beffroi` binary.
//!
//! `web/src` (plain ES modules, no build step) and the dist files of the npm packages the
//! console uses (MapLibre GL JS, uPlot, PMTiles) are embedded at build time by `build.rs`,
//! which installs them with `npm ci` from `web/package-lock.json`. Nothing loads from a
//! CDN: the console works on a network with no internet access.
//!
//! Routes: `/` (the single page), `/console/*` (assets, `ETag` + `Cache-Control:
//! no-cache`, gzip when the client accepts it), `/console/config.json` (the base map
//! settings) and `/console/basemap.pmtiles` (the deployment's PMTiles file, with HTTP
//! range requests).
//!
//! **API boundary:** this crate knows nothing of the engine; the console talks to the
//! API under `/api/v1` like any other client.

mod assets;
mod range;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use assets::{ASSETS, Asset, find};

/// URL of the deployment's PMTiles file, as the console fetches it.
pub const PMTILES_URL: &str = "/console/basemap.pmtiles";

/// The base map of the console: none (plain background, the default), raster tiles from a
/// URL template, or a local PMTiles archive.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    /// Raster tile URL template with `{z}`, `{x}` and `{y}`.
    pub tiles: Option<String>,
    /// A local PMTiles archive (raster or vector tiles) served by the binary.
    pub pmtiles: Option<PathBuf>,
    /// Attribution shown on the map, e.g. "© OpenStreetMap contributors".
    pub attribution: Option<String>,
}

/// A `[console]` setting that cannot work.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {message}")]
pub struct SettingsError {
    /// `tiles`, `pmtiles` or `attribution`.
    pub field: &'static str,
    pub message: String,
}

impl Settings {
    /// Checks the tile template and that the PMTiles file exists.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.tiles.is_some() && self.pmtiles.is_some() {
            return Err(SettingsError {
                field: "pmtiles",
                message: "give either `tiles` or `pmtiles`, not both".into(),
            });
        }
        if let Some(t) = &self.tiles {
            if !(t.starts_with("http://") || t.starts_with("https://") || t.starts_with('/')) {
                return Err(SettingsError {
                    field: "tiles",
                    message: format!("`{t}` is not an http(s) URL or an absolute path"),
                });
            }
            for p in ["{z}", "{x}", "{y}"] {
                if !t.contains(p) {
                    return Err(SettingsError {
                        field: "tiles",
                        message: format!("the URL template lacks `{p}`"),
                    });
                }
            }
        }
        if let Some(p) = &self.pmtiles
            && !p.is_file()
        {
            return Err(SettingsError {
                field: "pmtiles",
                message: format!("{} is not a readable file", p.display()),
            });
        }
        Ok(())
    }

    /// What the console reads from `/console/config.json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tiles": self.tiles,
            "pmtiles": self.pmtiles.as_ref().map(|_| PMTILES_URL),
            "attribution": self.attribution,
        })
    }

    /// Origin of the tile server, for the page's Content-Security-Policy.
    fn tile_origin(&self) -> Option<String> {
        let t = self.tiles.as_deref()?;
        let rest = t
            .strip_prefix("https://")
            .map(|r| ("https://", r))
            .or_else(|| t.strip_prefix("http://").map(|r| ("http://", r)))?;
        let host = rest.1.split('/').next()?;
        // Templates may put {s} or {z} in the host: allow any of its subdomains then.
        if host.contains('{') {
            let base = host.rsplit_once("}.").map(|(_, b)| b)?;
            return Some(format!("{}*.{base}", rest.0));
        }
        Some(format!("{}{host}", rest.0))
    }
}

struct Console {
    settings: Settings,
    csp: HeaderValue,
}

/// The console's routes, to merge into the server's router.
pub fn router(settings: Settings) -> Router {
    let tiles = settings.tile_origin().unwrap_or_default();
    let csp = format!(
        "default-src 'self'; img-src 'self' data: blob: {tiles}; connect-src 'self' {tiles}; \
         worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; object-src 'none'; \
         base-uri 'none'; frame-ancestors 'none'"
    );
    let csp = HeaderValue::from_str(&csp)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"));
    let state = Arc::new(Console { settings, csp });
    Router::new()
        .route("/", get(index))
        .route("/console/config.json", get(config))
        .route(PMTILES_URL, get(pmtiles))
        .route("/console/{*path}", get(asset))
        .with_state(state)
}

async fn index(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let mut resp = serve(&headers, "index.html");
    resp.headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, c.csp.clone());
    resp
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&headers, &path)
}

async fn config(State(c): State<Arc<Console>>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(c.settings.to_json()),
    )
        .into_response()
}

async fn pmtiles(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match &c.settings.pmtiles {
        Some(p) => range::serve_file(p, &headers, "application/vnd.pmtiles").await,
        None => (StatusCode::NOT_FOUND, "no PMTiles base map configured\n").into_response(),
    }
}

/// An embedded asset, honouring `If-None-Match` and `Accept-Encoding: gzip`.
fn serve(headers: &HeaderMap, path: &str) -> Response {
    let Some(a) = find(path) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(header::ETAG, HeaderValue::from_static(a.etag));
    // Revalidate every time: a new binary must never run with yesterday's scripts.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if a.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    let gzip_ok = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    match a.gzip {
        Some(gz) if gzip_ok => {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            (h, gz).into_response()
        }
        _ => (h, a.body).into_response(),
    }
}

/// True when `Accept-Encoding` lists gzip without `q=0`.
fn accepts_gzip(v: &str) -> bool {
    v.split(',').any(|part| {
        let mut it = part.split(';').map(str::trim);
        let name = it.next().unwrap_or("");
        let q0 = it.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        (name.eq_ignore_ascii_case("gzip") || name == "*") && !q0
    })
}

#[cfg(test)]
mod tests;

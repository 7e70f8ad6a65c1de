//! Devices and sites from a GeoJSON FeatureCollection, as QGIS exports a layer.
//!
//! A feature with a `site` property is a device (`id`, `kind`, `site`, optional
//! `dev_eui`; its position is its Point, or a polygon's centre); any other feature is a
//! site (`id`, `name`, `kind`, `commune`, optional `zone` and `river`). A site's Polygon
//! is kept as its perimeter, a LineString as its line; a MultiPolygon of one polygon is
//! that polygon, of several its centre (with a note). Coordinates must be WGS84
//! longitude and latitude (QGIS: export with CRS EPSG:4326); a layer in another system
//! is refused as a whole. Numbers given as ids (QGIS's `fid`) are read as text; `null`
//! properties as absent.

use std::sync::Arc;

use beffroi_core::Point;
use beffroi_core::geo::ring_centre;
use serde_json::Value;

use crate::error::{ImportError, ImportErrors, Loc};
use crate::json_spans::{array_elements, key_offset};
use crate::record::{DeviceRecord, Geometry, Origin, Records, SiteRecord, optional_eui, wgs84};
use crate::text::{decode, loc_of};

/// Reads a GeoJSON FeatureCollection of devices and sites.
pub fn read(file: &str, bytes: &[u8]) -> Result<Records, ImportErrors> {
    let file: Arc<str> = file.into();
    let (text, _) = decode(bytes);
    let one = |at: Option<Loc>, field: Option<&str>, msg: String| {
        ImportErrors(vec![ImportError::new(file.to_string(), at, field, msg)])
    };
    let doc: Value = serde_json::from_str(&text).map_err(|e| {
        one(
            Some(Loc::new(e.line(), e.column())),
            None,
            format!("not JSON: {e}"),
        )
    })?;
    if doc.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
        return Err(one(
            Some(Loc::new(1, 1)),
            Some("type"),
            "expected a GeoJSON FeatureCollection".into(),
        ));
    }
    if let Some(crs) = doc.get("crs").filter(|c| !c.is_null()) {
        let name = crs
            .pointer("/properties/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let wgs84 = ["CRS84", "EPSG::4326", "EPSG:4326"]
            .iter()
            .any(|n| name.ends_with(n));
        if !wgs84 {
            let at = key_offset(&text, 0..text.len(), "crs").map(|o| loc_of(&text, o));
            return Err(one(
                at,
                Some("crs"),
                format!(
                    "coordinates in `{name}`: Beffroi reads WGS84 longitude and latitude (in QGIS, export the layer with CRS EPSG:4326)"
                ),
            ));
        }
    }
    let Some(features) = doc.get("features").and_then(Value::as_array) else {
        return Err(one(
            Some(Loc::new(1, 1)),
            Some("features"),
            "expected an array of features".into(),
        ));
    };
    let spans = array_elements(&text, Some("features"));
    let mut records = Records::default();
    let mut errors = ImportErrors::default();
    for (n, f) in features.iter().enumerate() {
        let span = spans.as_ref().and_then(|s| s.elements.get(n)).cloned();
        let mut origin = Origin::new(
            &file,
            span.as_ref().map(|r| loc_of(&text, r.start)),
            format!("feature #{n}"),
        );
        let props = f.get("properties").and_then(Value::as_object);
        let prop_span = span
            .clone()
            .and_then(|r| key_offset(&text, r.clone(), "properties").map(|start| start..r.end));
        // Each property's position, within the feature's `properties`.
        let located = |key: &str| {
            prop_span
                .clone()
                .and_then(|r| key_offset(&text, r, key))
                .map(|o| loc_of(&text, o))
        };
        let mut prop = |field: &'static str| -> Option<String> {
            origin.field(field, format!("properties.{field}"), located(field));
            match props?.get(field)? {
                Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let id = prop("id");
        let site = prop("site");
        let kind = prop("kind");
        let dev_eui = prop("dev_eui");
        let (name, commune, zone, river) =
            (prop("name"), prop("commune"), prop("zone"), prop("river"));
        origin.field(
            "geometry",
            "geometry",
            span.clone()
                .and_then(|r| key_offset(&text, r, "geometry"))
                .map(|o| loc_of(&text, o)),
        );
        let geometry = match geometry(f.get("geometry")) {
            Ok(g) => Some(g),
            Err(msg) => {
                errors.push(origin.error("geometry", msg));
                None
            }
        };
        let mut required = |field: &str, v: Option<String>| {
            if v.is_none() {
                errors.push(origin.error(field, format!("missing `{field}` property")));
            }
            v
        };
        if site.is_some() {
            let (id, kind) = (required("id", id), required("kind", kind));
            let dev_eui = optional_eui(dev_eui.as_deref(), &origin, &mut errors);
            let position = match geometry {
                Some(Shape::Point(p)) => Some(p),
                Some(Shape::Line(l)) => ring_centre(&l),
                Some(Shape::Polygon(r)) => ring_centre(&r),
                Some(Shape::Polygons(rs)) => rs.first().and_then(|r| ring_centre(r)),
                None => None,
            };
            if let (Some(id), Some(kind), Some(site), Ok(dev_eui), Some(position)) =
                (id, kind, site, dev_eui, position)
            {
                records.devices.push(DeviceRecord {
                    id,
                    kind,
                    site,
                    position: Some(position),
                    dev_eui,
                    origin,
                });
            }
        } else {
            let (id, name, kind, commune) = (
                required("id", id),
                required("name", name),
                required("kind", kind),
                required("commune", commune),
            );
            let geometry = match geometry {
                Some(Shape::Point(p)) => Some(Geometry::Point(p)),
                Some(Shape::Line(l)) => Some(Geometry::LineString(l)),
                Some(Shape::Polygon(r)) => Some(Geometry::Polygon(r)),
                Some(Shape::Polygons(mut rs)) if rs.len() == 1 => rs.pop().map(Geometry::Polygon),
                Some(Shape::Polygons(rs)) => {
                    let all: Vec<Point> = rs.concat();
                    records.notes.push(format!(
                        "{}: a MultiPolygon of {} polygons: the site is placed at their centre (a site's perimeter is one polygon)",
                        origin.place(), rs.len()
                    ));
                    ring_centre(&all).map(Geometry::Point)
                }
                None => None,
            };
            if let (Some(id), Some(name), Some(kind), Some(commune), Some(geometry)) =
                (id, name, kind, commune, geometry)
            {
                records.sites.push(SiteRecord {
                    id,
                    name,
                    kind,
                    commune,
                    zone,
                    river,
                    geometry,
                    origin,
                });
            }
        }
    }
    records.errors.extend(errors);
    Ok(records)
}

/// A geometry read: positions checked as WGS84.
enum Shape {
    Point(Point),
    Line(Vec<Point>),
    Polygon(Vec<Point>),
    Polygons(Vec<Vec<Point>>),
}

fn geometry(g: Option<&Value>) -> Result<Shape, String> {
    let Some(g) = g.filter(|g| !g.is_null()) else {
        return Err("no geometry".into());
    };
    let ty = g.get("type").and_then(Value::as_str).unwrap_or("");
    let coords = g.get("coordinates").unwrap_or(&Value::Null);
    let position = |c: &Value| -> Result<Point, String> {
        let xy = c
            .as_array()
            .filter(|a| a.len() >= 2)
            .and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)));
        let (lon, lat) = xy.ok_or("a position is [longitude, latitude]")?;
        wgs84(lon, lat).ok_or_else(|| format!("{lon}, {lat} is not a WGS84 longitude and latitude (a projected system such as Lambert-93? export in EPSG:4326)"))
    };
    let positions = |c: &Value| -> Result<Vec<Point>, String> {
        c.as_array()
            .ok_or("expected an array of positions")?
            .iter()
            .map(position)
            .collect()
    };
    let ring = |c: &Value| -> Result<Vec<Point>, String> {
        let outer = c
            .as_array()
            .and_then(|r| r.first())
            .ok_or("a polygon needs its outer ring")?;
        let pts = positions(outer)?;
        if pts.len() < 4 || pts.first() != pts.last() {
            return Err("a polygon's ring is closed and has at least four positions".into());
        }
        Ok(pts)
    };
    match ty {
        "Point" => position(coords).map(Shape::Point),
        "LineString" => {
            let l = positions(coords)?;
            if l.len() < 2 {
                return Err("a LineString has two positions at least".into());
            }
            Ok(Shape::Line(l))
        }
        "Polygon" => ring(coords).map(Shape::Polygon),
        "MultiPolygon" => {
            let rs = coords
                .as_array()
                .ok_or("expected an array of polygons")?
                .iter()
                .map(ring)
                .collect::<Result<Vec<_>, _>>()?;
            if rs.is_empty() {
                return Err("an empty MultiPolygon".into());
            }
            Ok(Shape::Polygons(rs))
        }
        other => Err(format!(
            "geometry `{other}`: Beffroi reads Point, LineString, Polygon and MultiPolygon"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const QGIS: &str = r#"{
"type": "FeatureCollection",
"name": "sites_ahuy",
"crs": { "type": "name", "properties": { "name": "urn:ogc:def:crs:OGC:1.3:CRS84" } },
"features": [
{ "type": "Feature", "properties": { "fid": 1, "id": "ahuy-stade", "name": "Stade d'Ahuy", "kind": "event_ground", "commune": "ahuy", "zone": null }, "geometry": { "type": "Polygon", "coordinates": [ [ [ 5.02, 47.36 ], [ 5.03, 47.36 ], [ 5.03, 47.37 ], [ 5.02, 47.36 ] ] ] } },
{ "type": "Feature", "properties": { "fid": 2, "id": "ahuy-stade-cam-1", "kind": "crowd_counter", "site": "ahuy-stade", "dev_eui": "70B3D57ED0000009" }, "geometry": { "type": "Point", "coordinates": [ 5.025, 47.365 ] } },
{ "type": "Feature", "properties": { "id": 42, "name": "Parc", "kind": "other", "commune": "ahuy" }, "geometry": { "type": "MultiPolygon", "coordinates": [ [ [ [ 5.0, 47.0 ], [ 5.1, 47.0 ], [ 5.1, 47.1 ], [ 5.0, 47.0 ] ] ] ] } }
]
}"#;

    #[test]
    fn reads_a_qgis_export_of_sites_and_devices() {
        let r = read("layer.geojson", QGIS.as_bytes())
            .and_then(Records::checked)
            .expect("valid");
        assert_eq!(r.sites.len(), 2);
        assert_eq!(r.devices.len(), 1);
        let stade = &r.sites[0];
        assert_eq!(
            (stade.id.as_str(), stade.zone.as_deref()),
            ("ahuy-stade", None)
        );
        assert!(matches!(&stade.geometry, Geometry::Polygon(r) if r.len() == 4));
        assert_eq!(stade.origin.at, Some(Loc::new(6, 1)));
        let cam = &r.devices[0];
        assert_eq!(cam.position, Some(Point::new(5.025, 47.365)));
        assert_eq!(cam.dev_eui.as_deref(), Some("70b3d57ed0000009"));
        assert_eq!(r.sites[1].id, "42");
        assert!(matches!(r.sites[1].geometry, Geometry::Polygon(_)));
    }

    #[test]
    fn every_feature_error_names_its_feature_line_and_property() {
        let text = r#"{"type": "FeatureCollection", "features": [
{"type": "Feature", "properties": {"id": "a", "name": "A", "commune": "c1"}, "geometry": {"type": "Point", "coordinates": [5.0, 47.0]}},
{"type": "Feature", "properties": {"id": "b", "name": "B", "kind": "school", "commune": "c1"}, "geometry": {"type": "Point", "coordinates": [850000, 6700000]}},
{"type": "Feature", "properties": {"id": "d", "kind": "k", "site": "a", "dev_eui": "zz"}, "geometry": null}
]}"#;
        let e = read("l.geojson", text.as_bytes())
            .and_then(Records::checked)
            .expect_err("invalid")
            .to_string();
        let lines: Vec<_> = e.lines().collect();
        assert_eq!(
            lines,
            [
                "l.geojson:2:1: `properties.kind`: feature #0: missing `kind` property",
                "l.geojson:3:96: `geometry`: feature #1: 850000, 6700000 is not a WGS84 longitude and latitude (a projected system such as Lambert-93? export in EPSG:4326)",
                "l.geojson:4:91: `geometry`: feature #2: no geometry",
                "l.geojson:4:73: `properties.dev_eui`: feature #2: `zz` is not 16 hexadecimal digits (a LoRaWAN device EUI)",
            ],
            "{e}"
        );
    }

    #[test]
    fn a_projected_layer_is_refused_as_a_whole() {
        let text = r#"{"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::2154"}}, "features": []}"#;
        let e = read("l.geojson", text.as_bytes())
            .expect_err("Lambert-93")
            .to_string();
        assert!(
            e.contains("`crs`") && e.contains("EPSG::2154") && e.contains("EPSG:4326"),
            "{e}"
        );
        let e = read("l.geojson", b"{\"type\": \"Feature\"")
            .expect_err("not JSON")
            .to_string();
        assert!(e.starts_with("l.geojson:1:"), "{e}");
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = read("f.geojson", &bytes);
        }

        #[test]
        fn never_panics_on_feature_collections(props in proptest::collection::btree_map(
            prop_oneof![Just("id"), Just("kind"), Just("site"), Just("name"), Just("commune"), Just("dev_eui")].prop_map(str::to_string),
            prop_oneof![".{0,6}".prop_map(serde_json::Value::from), any::<f64>().prop_map(serde_json::Value::from), Just(serde_json::Value::Null)],
            0..6), lon in any::<f64>(), lat in any::<f64>()) {
            let doc = serde_json::json!({"type": "FeatureCollection", "features": [
                {"type": "Feature", "properties": props, "geometry": {"type": "Point", "coordinates": [lon, lat]}}]});
            let _ = read("f.geojson", doc.to_string().as_bytes());
        }
    }
}

//! Properties over untrusted input and the selection: the readers never panic, paging
//! lists each match once, and `near` agrees with a brute-force great-circle distance.

use std::collections::BTreeSet;

use beffroi_ngsild::context::JsonLdContext;
use beffroi_ngsild::pattern::Pattern;
use beffroi_ngsild::{
    Attribute, Entity, Geometry, Position, QExpr, Query, Timestamp, Value, parse_subscription,
    select,
};
use proptest::prelude::*;

fn sample_entity() -> Entity {
    Entity::new("urn:ngsi-ld:Device:t:d1", "Device")
        .with("deviceState", Attribute::property(Value::Text("ok".into())))
        .with("peopleCount", Attribute::property(Value::Integer(3)))
        .with("batteryLevel", Attribute::property(Value::Number(0.5)))
        .with(
            "controlledProperty",
            Attribute::property(Value::TextList(vec!["waterLevel".into()])),
        )
        .with(
            "refDevice",
            Attribute::relationship("urn:ngsi-ld:Device:t:d2"),
        )
}

/// Text made of the query language's own characters, so that the parser goes deep.
fn q_like() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("a".to_owned()),
            Just("peopleCount".to_owned()),
            Just("deviceState".to_owned()),
            Just("==".to_owned()),
            Just("!=".to_owned()),
            Just(">=".to_owned()),
            Just("~=".to_owned()),
            Just("!~=".to_owned()),
            Just("<".to_owned()),
            Just(";".to_owned()),
            Just("|".to_owned()),
            Just("(".to_owned()),
            Just(")".to_owned()),
            Just("\"".to_owned()),
            Just("\\".to_owned()),
            Just(",".to_owned()),
            Just("..".to_owned()),
            Just(".".to_owned()),
            Just("!".to_owned()),
            Just("[".to_owned()),
            Just("1".to_owned()),
            Just("-2.5e3".to_owned()),
            Just("true".to_owned()),
            Just("2026-03-01T08:00:00Z".to_owned()),
            Just("urn:x:1".to_owned()),
            Just(".*".to_owned()),
            any::<char>().prop_map(|c| c.to_string()),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn q_never_panics(text in q_like()) {
        if let Ok(q) = QExpr::parse(&text, "q") {
            let _ = q.eval(&sample_entity());
        }
    }

    #[test]
    fn q_never_panics_on_any_text(text in ".{0,200}") {
        if let Ok(q) = QExpr::parse(&text, "q") {
            let _ = q.eval(&sample_entity());
        }
    }

    #[test]
    fn query_params_never_panic(
        pairs in proptest::collection::vec(
            (
                prop_oneof![
                    Just("id"), Just("idPattern"), Just("type"), Just("attrs"), Just("q"), Just("georel"),
                    Just("geometry"), Just("coordinates"), Just("geoproperty"), Just("limit"), Just("offset"),
                    Just("count"), Just("options"), Just("format"), Just("x"),
                ],
                ".{0,60}",
            ),
            0..8,
        )
    ) {
        let _ = Query::parse(&pairs);
    }

    #[test]
    fn patterns_never_panic_and_dot_star_matches_all(p in ".{0,40}", text in ".{0,40}") {
        if let Ok(pattern) = Pattern::parse(&p) {
            let _ = pattern.is_match(&text);
        }
        let all = Pattern::parse(".*").expect("supported");
        prop_assert!(all.is_match(&text));
    }

    #[test]
    fn literal_prefix_pattern_agrees_with_starts_with(prefix in "[a-z:]{0,8}", text in "[a-z:]{0,12}") {
        let pattern = Pattern::parse(&format!("^{prefix}.*")).expect("supported");
        prop_assert_eq!(pattern.is_match(&text), text.starts_with(&prefix));
    }

    #[test]
    fn subscription_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let ctx = JsonLdContext::new("https://beffroi.example/ctx.jsonld");
        let _ = parse_subscription(&bytes, &ctx);
    }

    #[test]
    fn timestamps_round_trip(millis in -62_167_219_200_000i64..253_402_300_799_999i64) {
        let t = Timestamp::from_millis(millis).expect("in range");
        prop_assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
    }

    #[test]
    fn paging_lists_each_match_once(
        ids in proptest::collection::btree_set("[a-z0-9]{1,6}", 0..60),
        limit in 1usize..25,
    ) {
        let entities: Vec<Entity> = ids
            .iter()
            .rev()
            .map(|id| Entity::new(format!("urn:ngsi-ld:Device:t:{id}"), "Device"))
            .collect();
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let query = Query { limit, offset, ..Query::default() };
            let page = select(&entities, &query);
            prop_assert_eq!(page.total, entities.len());
            if page.entities.is_empty() {
                break;
            }
            seen.extend(page.entities.iter().map(|e| e.id.clone()));
            offset += limit;
        }
        let unique: BTreeSet<&String> = seen.iter().collect();
        prop_assert_eq!(unique.len(), seen.len(), "no entity twice");
        prop_assert_eq!(seen.len(), entities.len(), "every entity once");
        let mut sorted = seen.clone();
        sorted.sort();
        prop_assert_eq!(sorted, seen, "ordered by identifier");
    }

    #[test]
    fn near_agrees_with_brute_force(
        points in proptest::collection::vec((-0.05f64..0.05, -0.05f64..0.05), 0..40),
        max in 0.0f64..8000.0,
    ) {
        let (lon0, lat0) = (4.9, 44.9);
        let entities: Vec<Entity> = points
            .iter()
            .enumerate()
            .map(|(i, (dx, dy))| {
                let p = Position::new(lon0 + dx, lat0 + dy).expect("valid");
                Entity::new(format!("urn:ngsi-ld:Device:t:{i:03}"), "Device")
                    .with("location", Attribute::geo(Geometry::Point(p)))
            })
            .collect();
        let max_text = format!("near;maxDistance=={max}");
        let coordinates = format!("[{lon0},{lat0}]");
        let query = Query::parse(&[
            ("georel", max_text.as_str()),
            ("geometry", "Point"),
            ("coordinates", coordinates.as_str()),
            ("limit", "1000"),
        ])
        .expect("valid query");
        let selected: BTreeSet<String> = select(&entities, &query).entities.iter().map(|e| e.id.clone()).collect();
        let expected: BTreeSet<String> = points
            .iter()
            .enumerate()
            .filter(|(_, (dx, dy))| brute_haversine(lon0, lat0, lon0 + dx, lat0 + dy) <= max)
            .map(|(i, _)| format!("urn:ngsi-ld:Device:t:{i:03}"))
            .collect();
        prop_assert_eq!(selected, expected);
    }
}

/// The haversine formula written out again, on the same mean radius.
fn brute_haversine(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let r = 6_371_008.8;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let a = ((p2 - p1) / 2.0).sin().powi(2)
        + p1.cos() * p2.cos() * ((lon2 - lon1).to_radians() / 2.0).sin().powi(2);
    2.0 * r * a.sqrt().asin()
}

//! Hub'Eau hydrometry at the edge: the public real-time API of the French hydrometric
//! network (the Vigicrues stations' water heights and flows) read as observations of
//! territory devices, so that a river rising upstream feeds the town's own rules.
//!
//! - [`config`]: `hubeau.toml`, which station feeds which device and field, checked
//!   against the territory (units converted from the API's millimetres and litres per
//!   second to the field's declared unit).
//! - [`answer`]: the API's JSON answer read under limits (size, rows); odd rows are
//!   skipped and counted, never fatal.
//! - [`cursor`]: positions per station and quantity, the URL of each poll, and the
//!   deliveries a page becomes: each reading handed over once, in time order, only after
//!   the engine committed the previous ones.
//!
//! Architecture invariant: no I/O and no clock. The binary fetches (with backoff) and
//! hands each [`cursor::Delivery`] to the engine as an ordinary ingest envelope, so the
//! readings go through the same validation, trust decision, sentinel and rules as any
//! device's.

pub mod answer;
pub mod config;
pub mod cursor;

pub use answer::{AnswerError, Page, Quantity, Reading, parse_answer};
pub use config::{HubeauConfig, Station, parse};
pub use cursor::{Cursor, Delivery, Plan};

#[cfg(test)]
mod tests {
    use super::*;
    use beffroi_core::Timestamp;
    use beffroi_core::territory::fixture;
    use beffroi_territory::SourceFile;

    fn cfg(text: &str) -> Result<HubeauConfig, String> {
        parse(&SourceFile::new("hubeau.toml", text), &fixture::small()).map_err(|e| e.to_string())
    }

    fn reading(station: &str, q: Quantity, min: i64, value: f64) -> Reading {
        Reading {
            station: station.into(),
            quantity: q,
            time: Timestamp(min * 60_000),
            value,
            doubtful: false,
        }
    }

    const ONE: &str = "every = \"1m\"\n[[station]]\ncode = \"U122401001\"\ndevice = \"g1\"\nheight = \"level_m\"\n";

    #[test]
    fn a_station_feeds_its_device_s_field_in_the_field_s_unit() {
        let c = cfg(ONE).expect("valid");
        assert_eq!(c.url, config::DEFAULT_URL);
        assert_eq!(c.every.millis(), 60_000);
        assert_eq!(c.stations[0].height.as_ref().map(|t| t.scale), Some(0.001));
        assert_eq!(c.quantities(), vec![Quantity::Height]);
    }

    #[test]
    fn every_mistake_of_the_file_is_reported_at_its_line() {
        let text = "every = \"soon\"\nbackfill = \"90d\"\n\
            [[station]]\ncode = \"u1\"\ndevice = \"nowhere\"\nheight = \"level_m\"\n\
            [[station]]\ncode = \"U122401001\"\ndevice = \"a1\"\nheight = \"on\"\n\
            [[station]]\ncode = \"U122401002\"\ndevice = \"g2\"\nheight = \"depth\"\nflow = \"level_m\"\n\
            [[station]]\ncode = \"U122401003\"\ndevice = \"g1\"\n";
        let e = cfg(text).expect_err("invalid");
        for want in [
            "hubeau.toml:1: `every`: invalid duration",
            "hubeau.toml:2: `backfill`: between 0 s and 12 h",
            "hubeau.toml:3: `station[0].code`: `u1` is not a station code",
            "hubeau.toml:3: `station[0].device`: no device `nowhere`",
            "hubeau.toml:7: `station[1].height`: field `on` is not a number",
            "hubeau.toml:11: `station[2].height`: kind `level` has no field `depth`",
            "hubeau.toml:11: `station[2].flow`: cannot convert l/s to `m` (field `level_m`)",
            "hubeau.toml:16: `station[3].height`: map `height`, `flow` or both",
        ] {
            assert!(e.contains(want), "missing «{want}» in:\n{e}");
        }
        let twice = format!(
            "{ONE}[[station]]\ncode = \"U122401001\"\ndevice = \"g1\"\nheight = \"level_m\"\n"
        );
        let e = cfg(&twice).expect_err("twice");
        assert!(e.contains("station `U122401001` is mapped twice"), "{e}");
        assert!(e.contains("device `g1` is fed by two stations"), "{e}");
        let e = cfg("url = \"ftp://x/y?z=1\"").expect_err("url");
        assert!(e.contains("`url`: an http(s) URL without a query"), "{e}");
        let e = cfg("[[station]]\ncode = \"U122401001\"\ndevice = \"g1\"\nheight = \"level_m\"\nheigth = 1\n").expect_err("typo");
        assert!(e.contains("hubeau.toml:5") && e.contains("heigth"), "{e}");
    }

    #[test]
    fn a_kind_that_requires_signatures_cannot_be_fed() {
        let mut t = fixture::small();
        t.kinds[0].signing = beffroi_core::Signing::Required;
        let e = parse(&SourceFile::new("hubeau.toml", ONE), &t).expect_err("signed kind");
        assert!(e.to_string().contains("requires signed messages"), "{e}");
    }

    #[test]
    fn readings_are_handed_over_once_in_time_order_and_only_after_commit() {
        let c = cfg(ONE).expect("valid");
        let mut cur = Cursor::new(Timestamp(10 * 60_000));
        let page = [
            reading("U122401001", Quantity::Height, 20, 1250.0),
            reading("U122401001", Quantity::Height, 5, 900.0), // before the backfill start
            reading("U122401001", Quantity::Height, 15, 1200.0),
            reading("U122401001", Quantity::Flow, 15, 9000.0), // flow not mapped
            reading("X000000000", Quantity::Height, 15, 1.0),  // station not mapped
            Reading {
                doubtful: true,
                ..reading("U122401001", Quantity::Height, 25, 9999.0)
            },
        ];
        let plan = cur.plan(&c, &page);
        assert_eq!(
            plan.left,
            cursor::Left {
                seen: 1,
                unmapped: 2,
                doubtful: 1
            }
        );
        assert_eq!(plan.deliveries.len(), 1);
        let d = &plan.deliveries[0];
        assert_eq!(d.readings, 2);
        let v: serde_json::Value = serde_json::from_slice(&d.payload).expect("json");
        assert_eq!(
            v,
            serde_json::json!([
                {"device": "g1", "time": 15 * 60_000, "values": {"level_m": 1.2}},
                {"device": "g1", "time": 20 * 60_000, "values": {"level_m": 1.25}},
            ])
        );
        // The payload is what the ingest reads.
        let records = beffroi_wire::decode(
            beffroi_wire::Format::Json,
            &d.payload,
            beffroi_wire::Context {
                device_hint: Some("g1"),
                received: Timestamp(30 * 60_000),
            },
        );
        assert!(records.is_ok(), "{records:?}");
        // Not committed: the next poll asks from the same point and plans the same.
        assert_eq!(cur.since(&c, Quantity::Height), Timestamp(10 * 60_000));
        assert_eq!(cur.plan(&c, &page), plan);
        cur.commit(d);
        assert_eq!(cur.since(&c, Quantity::Height), Timestamp(20 * 60_000));
        let again = cur.plan(&c, &page);
        assert!(again.deliveries.is_empty());
        assert_eq!(again.left.seen, 3);
    }

    #[test]
    fn a_long_backfill_is_cut_into_deliveries_the_ingest_accepts() {
        let c = cfg(ONE).expect("valid");
        let mut cur = Cursor::new(Timestamp(0));
        let page: Vec<Reading> = (1..=1000)
            .map(|m| reading("U122401001", Quantity::Height, m, 1000.0 + m as f64))
            .collect();
        let plan = cur.plan(&c, &page);
        assert_eq!(plan.deliveries.len(), 3);
        assert_eq!(
            plan.deliveries.iter().map(|d| d.readings).sum::<usize>(),
            1000
        );
        for d in &plan.deliveries {
            let records = beffroi_wire::decode(
                beffroi_wire::Format::Json,
                &d.payload,
                beffroi_wire::Context {
                    device_hint: Some("g1"),
                    received: Timestamp(0),
                },
            );
            assert!(records.is_ok(), "{} bytes: {records:?}", d.payload.len());
        }
        // Committing the first only moves the position to its own last record.
        cur.commit(&plan.deliveries[0]);
        assert_eq!(
            cur.position("U122401001", Quantity::Height),
            Timestamp(400 * 60_000)
        );
        assert_eq!(cur.plan(&c, &page).deliveries.len(), 2);
    }

    #[test]
    fn the_request_names_the_stations_the_quantity_and_the_start() {
        let c = cfg(ONE).expect("valid");
        let url = cursor::request_url(&c, Quantity::Height, Timestamp(1_765_090_800_000), 1000);
        assert_eq!(
            url,
            "https://hubeau.eaufrance.fr/api/v2/hydrometrie/observations_tr?code_entite=U122401001&grandeur_hydro=H&date_debut_obs=2025-12-07T07:00:00&sort=asc&size=1000&fields=code_station,grandeur_hydro,date_obs,resultat_obs,libelle_qualification_obs"
        );
        assert!(cursor::follows(&c.url, &format!("{}?cursor=abc", c.url)));
        assert!(!cursor::follows(
            &c.url,
            "https://evil.example/api?cursor=abc"
        ));
        assert!(!cursor::follows(
            &c.url,
            &format!("{}.evil.example/?x", c.url)
        ));
        assert!(!cursor::follows(
            "http://127.0.0.1:80/a",
            "http://127.0.0.1:8000/a?x"
        ));
    }

    proptest::proptest! {
        /// Whatever pages arrive and whichever deliveries commit, a series' readings are
        /// handed over in increasing time, each time at most once.
        #[test]
        fn a_reading_is_never_handed_over_twice(
            pages in proptest::collection::vec(
                (proptest::collection::vec((0i64..60, 0.0f64..5000.0), 0..20), proptest::bool::ANY),
                1..8,
            ),
        ) {
            let c = cfg(ONE).expect("valid");
            let mut cur = Cursor::new(Timestamp(0));
            let mut delivered: Vec<i64> = Vec::new();
            for (rows, commit) in pages {
                let page: Vec<Reading> = rows
                    .iter()
                    .map(|(m, v)| reading("U122401001", Quantity::Height, *m, *v))
                    .collect();
                let plan = cur.plan(&c, &page);
                for d in &plan.deliveries {
                    let v: serde_json::Value = serde_json::from_slice(&d.payload).expect("json");
                    let times: Vec<i64> = v.as_array().expect("array").iter().map(|r| r["time"].as_i64().expect("time")).collect();
                    proptest::prop_assert!(times.windows(2).all(|w| w[0] < w[1]));
                    if commit {
                        proptest::prop_assert!(times.iter().all(|t| delivered.last().is_none_or(|l| t > l)));
                        delivered.extend(times);
                        cur.commit(d);
                    }
                }
            }
        }
    }
}

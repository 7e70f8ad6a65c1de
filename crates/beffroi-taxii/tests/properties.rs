//! Properties over random input: the readers of untrusted text never panic, a written
//! pattern reads back the same, and paging returns every selected object once, in order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use beffroi_taxii::query::VersionMatch;
use beffroi_taxii::{
    Endpoint, IpPrefix, Query, StixTime, StoredObject, address_pattern, page, read_envelope,
    read_network_pattern, select,
};
use proptest::prelude::*;

fn prefix() -> impl Strategy<Value = IpPrefix> {
    prop_oneof![
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, len)| IpPrefix::new(IpAddr::V4(Ipv4Addr::from(a)), len)),
        (any::<u128>(), 0u8..=128)
            .prop_map(|(a, len)| IpPrefix::new(IpAddr::V6(Ipv6Addr::from(a)), len)),
    ]
    .prop_map(|p| p.unwrap_or(IpPrefix::host(IpAddr::V4(Ipv4Addr::LOCALHOST))))
}

/// Text made of the pattern language's pieces, to reach past the first token.
fn patternish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("["),
        Just("]"),
        Just("("),
        Just(")"),
        Just(" AND "),
        Just(" OR "),
        Just(" NOT "),
        Just(" FOLLOWEDBY "),
        Just("ipv4-addr:value"),
        Just("ipv6-addr:value"),
        Just("file:hashes.'MD5'"),
        Just(" = "),
        Just(" != "),
        Just(" IN "),
        Just(" ISSUBSET "),
        Just(" MATCHES "),
        Just("'203.0.113.7'"),
        Just("'2001:db8::/32'"),
        Just("'x\\''"),
        Just(","),
        Just("5"),
        Just("-1.5"),
        Just("h'ab'"),
        Just("b'AA=='"),
        Just("t'2020-01-01T00:00:00Z'"),
        Just(" WITHIN 5 SECONDS"),
        Just(" REPEATS 2 TIMES"),
        Just(" START "),
        Just(" STOP "),
        Just("true"),
        Just("[*]"),
        Just("'"),
        Just("\\"),
        Just("é"),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

fn t(ms: i64) -> StixTime {
    StixTime::from_millis(ms).unwrap_or_else(|| unreachable!("small times are in range"))
}

/// Objects with few identifiers and few distinct dates, so that versions and ties abound.
fn objects() -> impl Strategy<Value = Vec<StoredObject>> {
    proptest::collection::btree_set((0u8..8, 0i64..6), 0..40)
        .prop_flat_map(|keys| {
            let n = keys.len();
            (Just(keys), proptest::collection::vec(0i64..10, n))
        })
        .prop_map(|(keys, added)| {
            keys.into_iter()
                .zip(added)
                .map(|((n, version), added)| StoredObject {
                    id: format!("indicator--00000000-0000-4000-8000-0000000000{n:02x}"),
                    object_type: if n % 2 == 0 { "indicator" } else { "sighting" }.to_owned(),
                    spec_version: "2.1".to_owned(),
                    version: t(version * 1000),
                    date_added: t(added * 1000),
                    object: serde_json::json!({"n": n, "v": version}),
                })
                .collect()
        })
}

fn query(text: &str) -> Query {
    Query::from_query_string(Endpoint::Objects, text).unwrap_or_else(|e| panic!("{e}"))
}

fn keys(objects: &[&StoredObject]) -> Vec<(String, i64)> {
    objects
        .iter()
        .map(|o| (o.id.clone(), o.version.millis()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pattern_reader_never_panics(text in any::<String>(), built in patternish()) {
        let _ = read_network_pattern(&text);
        let _ = read_network_pattern(&built);
        if let Err(e) = read_network_pattern(&built) {
            prop_assert!(e.offset() <= built.len());
        }
    }

    #[test]
    fn written_patterns_read_back(list in proptest::collection::vec(prefix(), 1..20)) {
        let mut unique = Vec::new();
        for p in list {
            if !unique.contains(&p) {
                unique.push(p);
            }
        }
        let pattern = address_pattern(&unique).unwrap_or_default();
        let read = read_network_pattern(&pattern);
        prop_assert_eq!(read.as_ref().map(|n| &n.prefixes), Ok(&unique));
        prop_assert_eq!(read.map(|n| n.exact), Ok(true));
    }

    #[test]
    fn query_and_envelope_readers_never_panic(text in any::<String>(), bytes in any::<Vec<u8>>()) {
        let _ = Query::from_query_string(Endpoint::Objects, &text);
        let _ = Query::from_query_string(Endpoint::Manifest, &format!("match[version]={text}"));
        let _ = read_envelope(&bytes);
        let _ = read_envelope(format!("{{\"objects\":[{{\"type\":\"indicator\",\"pattern\":{text:?}}}]}}").as_bytes());
    }

    #[test]
    fn paging_with_next_returns_each_object_once_in_order(
        stored in objects(),
        limit in 1usize..12,
        version in prop_oneof![Just("all"), Just("last"), Just("first"), Just("first,last")],
    ) {
        let base = format!("limit={limit}&match[version]={version}");
        let all = select(&stored, &query(&base));
        let mut seen = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..=stored.len() {
            let q = match &next {
                Some(cursor) => format!("{base}&next={cursor}"),
                None => base.clone(),
            };
            let p = page(&stored, &query(&q));
            prop_assert!(p.objects.len() <= limit);
            prop_assert_eq!(p.more, p.next.is_some());
            if p.more {
                prop_assert!(!p.objects.is_empty());
            }
            seen.extend(p.objects.iter().copied());
            next = p.next.map(|c| c.encode());
            if next.is_none() {
                break;
            }
        }
        prop_assert!(next.is_none());
        prop_assert_eq!(keys(&seen), keys(&all));
        prop_assert!(seen.windows(2).all(|w| w[0].date_added <= w[1].date_added));
    }

    #[test]
    fn paging_with_added_after_misses_nothing_when_runs_fit_a_page(
        stored in objects(),
        limit in 1usize..12,
    ) {
        let all = select(&stored, &query("match[version]=all"));
        let longest_run = all
            .chunk_by(|a, b| a.date_added == b.date_added)
            .map(<[_]>::len)
            .max()
            .unwrap_or(0);
        prop_assume!(longest_run <= limit);
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..=stored.len() {
            let mut q = format!("limit={limit}&match[version]=all");
            if let Some(a) = &after {
                q.push_str(&format!("&added_after={a}"));
            }
            let p = page(&stored, &query(&q));
            seen.extend(p.objects.iter().copied());
            match p.date_added_range() {
                Some((_, last)) if p.more => after = Some(last.to_string()),
                _ => break,
            }
        }
        prop_assert_eq!(keys(&seen), keys(&all));
    }

    #[test]
    fn added_after_is_strictly_after(stored in objects(), after in 0i64..10_000) {
        let text = t(after).to_string();
        let found = select(&stored, &query(&format!("match[version]=all&added_after={text}")));
        let expected: Vec<&StoredObject> = {
            let mut e: Vec<&StoredObject> = stored.iter().filter(|o| o.date_added.millis() > after).collect();
            e.sort_by_key(|o| (o.date_added, o.id.clone(), o.version));
            e
        };
        prop_assert_eq!(keys(&found), keys(&expected));
        let q = query(&format!("added_after={text}"));
        prop_assert_eq!(q.versions, VersionMatch::last());
    }
}

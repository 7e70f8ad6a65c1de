//! Untrusted input never panics any decoder, and what decodes always validates to either an
//! observation or a rejection with a reason.

use beffroi_core::Timestamp;
use beffroi_core::Value;
use beffroi_core::territory::fixture;
use beffroi_wire::{Context, Format, MAX_TEXT, RawValue, RejectReason, decode, validate};
use proptest::prelude::*;

fn all_formats(bytes: &[u8]) {
    let t = fixture::small();
    let now = Timestamp(1_795_694_400_000);
    for f in [Format::Senml, Format::Json, Format::Chirpstack] {
        for hint in [None, Some("g1")] {
            let cx = Context {
                device_hint: hint,
                received: now,
            };
            match decode(f, bytes, cx) {
                Ok(records) => {
                    for r in &records {
                        // Same invariants as the fuzz target `decode_payload`.
                        match validate(&t, r, now) {
                            Ok(o) => {
                                if let Value::Text(s) = &o.value {
                                    assert!(s.len() <= MAX_TEXT);
                                    assert!(beffroi_wire::media::sniff(s).is_none());
                                }
                                assert!(!matches!(r.value, RawValue::Other("data")));
                            }
                            Err(e) => {
                                if let RawValue::Text(s) = &r.value
                                    && matches!(
                                        e.reason,
                                        RejectReason::ImageRefused | RejectReason::TextTooLong
                                    )
                                {
                                    let s: &str = s;
                                    assert!(!e.detail.contains(s));
                                }
                            }
                        }
                    }
                }
                Err(e) => assert!(RejectReason::ALL.contains(&e.reason)),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        all_formats(&bytes);
    }

    /// Structured but hostile SenML: random names, bases, times and values.
    #[test]
    fn hostile_senml_never_panics(
        bn in proptest::option::of("[a-z0-9/:]{0,12}"),
        n in proptest::option::of("[a-z0-9_/:]{0,12}"),
        bt in proptest::option::of(any::<f64>()),
        t in proptest::option::of(any::<f64>()),
        v in proptest::option::of(any::<f64>()),
        vb in proptest::option::of(any::<bool>()),
        vs in proptest::option::of(prop_oneof![
            ".{0,300}",
            "(/9j/|iVBORw0KGgo|R0lGOD|UklGR|AAAAGGZ0eXA|data:image/png;base64,)[A-Za-z0-9+/]{0,300}",
        ]),
    ) {
        let mut rec = serde_json::Map::new();
        if let Some(x) = bn { rec.insert("bn".into(), x.into()); }
        if let Some(x) = n { rec.insert("n".into(), x.into()); }
        if let Some(x) = bt.and_then(serde_json::Number::from_f64) { rec.insert("bt".into(), x.into()); }
        if let Some(x) = t.and_then(serde_json::Number::from_f64) { rec.insert("t".into(), x.into()); }
        if let Some(x) = v.and_then(serde_json::Number::from_f64) { rec.insert("v".into(), x.into()); }
        if let Some(x) = vb { rec.insert("vb".into(), x.into()); }
        if let Some(x) = vs { rec.insert("vs".into(), x.into()); }
        let payload = serde_json::to_vec(&vec![serde_json::Value::Object(rec)]).expect("json");
        all_formats(&payload);
    }
}

#[test]
fn oversized_payloads_are_refused_before_parsing() {
    let big = vec![b' '; beffroi_wire::MAX_PAYLOAD + 1];
    let e = decode(Format::Senml, &big, Context::default()).expect_err("too big");
    assert_eq!(e.reason, RejectReason::Oversized);
}

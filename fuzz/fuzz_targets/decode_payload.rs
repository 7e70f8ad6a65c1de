//! Every ingest payload form, with and without a device named by the transport, then
//! validation against a territory: never a panic; an image or a video is never accepted as
//! an observation, and a rejection never quotes a text value.
#![no_main]

use beffroi_core::Timestamp;
use beffroi_core::territory::fixture;
use beffroi_core::Value;
use beffroi_wire::{Context, Format, MAX_TEXT, RawValue, RejectReason, decode, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t = fixture::small();
    let now = Timestamp(1_795_694_400_000);
    for f in [Format::Senml, Format::Json, Format::Chirpstack] {
        for hint in [None, Some("g1")] {
            let cx = Context { device_hint: hint, received: now };
            if let Ok(records) = decode(f, data, cx) {
                for r in &records {
                    match validate(&t, r, now) {
                        Ok(o) => {
                            if let Value::Text(s) = &o.value {
                                assert!(s.len() <= MAX_TEXT);
                                assert!(beffroi_wire::media::sniff(s).is_none());
                            }
                            assert!(!matches!(r.value, RawValue::Other("data")));
                        }
                        Err(e) => {
                            // Refused for what it is: never quoted.
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
        }
    }
});

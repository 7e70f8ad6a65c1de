//! Every ingest payload form, with and without a device named by the transport, then
//! validation against a territory: never a panic.
#![no_main]

use beffroi_core::Timestamp;
use beffroi_core::territory::fixture;
use beffroi_wire::{Context, Format, decode, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t = fixture::small();
    let now = Timestamp(1_795_694_400_000);
    for f in [Format::Senml, Format::Json, Format::Chirpstack] {
        for hint in [None, Some("g1")] {
            let cx = Context { device_hint: hint, received: now };
            if let Ok(records) = decode(f, data, cx) {
                for r in &records {
                    let _ = validate(&t, r, now);
                }
            }
        }
    }
});

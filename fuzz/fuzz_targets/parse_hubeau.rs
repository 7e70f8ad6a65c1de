//! A Hub'Eau hydrometry answer from the network (untrusted JSON): never a panic; every
//! delivery the readings become is accepted by the ingest's own decoder.
#![no_main]

use beffroi_core::Timestamp;
use beffroi_core::territory::fixture;
use beffroi_hubeau::{Cursor, parse, parse_answer};
use beffroi_territory::SourceFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(page) = parse_answer(data) else { return };
    let territory = fixture::small();
    let config = parse(
        &SourceFile::new(
            "hubeau.toml",
            "[[station]]\ncode = \"U122401001\"\ndevice = \"g1\"\nheight = \"level_m\"\n",
        ),
        &territory,
    )
    .expect("the fixture's configuration is valid");
    let plan = Cursor::new(Timestamp(i64::MIN / 2)).plan(&config, &page.readings);
    for d in plan.deliveries {
        let decoded = beffroi_wire::decode(
            beffroi_wire::Format::Json,
            &d.payload,
            beffroi_wire::Context {
                device_hint: Some(&d.device),
                received: Timestamp(0),
            },
        );
        assert!(decoded.is_ok(), "{decoded:?}");
    }
});

//! The readers of `beffroi import`: a CSV of devices or sites, a GeoJSON layer, a
//! ChirpStack or The Things Stack device list, a kind map. The first byte picks the
//! reader; none panics, and whatever a reader accepts it locates (every record knows its
//! file and every error names its file).
#![no_main]

use beffroi_import::{Format, KindMap, LnsOptions, read, read_kind_map};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let map = KindMap::empty();
    let lns = LnsOptions { map: &map, default_site: Some("s1") };
    let format = match pick % 6 {
        0 => Format::CsvDevices,
        1 => Format::CsvSites,
        2 => Format::GeoJson,
        3 => Format::ChirpStack,
        4 => Format::TheThingsStack,
        _ => {
            let _ = read_kind_map("map.toml", bytes);
            return;
        }
    };
    match read(format, "input", bytes, lns) {
        Ok(r) => {
            assert!(r.devices.iter().all(|d| &*d.origin.file == "input"));
            assert!(r.sites.iter().all(|s| &*s.origin.file == "input"));
            assert!(r.errors.iter().all(|e| e.file == "input"));
        }
        Err(e) => assert!(!e.is_empty() && e.iter().all(|e| e.file == "input")),
    }
});

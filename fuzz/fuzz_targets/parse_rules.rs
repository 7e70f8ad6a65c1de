//! A rules file from an integrator: validation never panics.
#![no_main]

use beffroi_core::territory::fixture;
use beffroi_territory::SourceFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let t = fixture::small();
        let _ = beffroi_rules::parse(&SourceFile::new("rules.toml", text), &t);
    }
});

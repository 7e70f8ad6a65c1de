//! A territory folder: the fuzzer's input is split into the four files; loading never
//! panics.
#![no_main]

use beffroi_territory::{SourceFile, load};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.splitn(4, "\u{0}");
    let files = [
        "territory.toml",
        "kinds.toml",
        "sites.geojson",
        "devices/a.toml",
    ]
    .into_iter()
    .map(|name| SourceFile::new(name, parts.next().unwrap_or("")))
    .collect::<Vec<_>>();
    let _ = load(&files);
});

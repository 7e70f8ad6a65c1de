//! A STIX pattern from a partner's indicator (untrusted): never a panic, an error
//! points inside the pattern, and the addresses read write back to a pattern that
//! reads the same.
#![no_main]

use beffroi_taxii::{address_pattern, read_network_pattern};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match read_network_pattern(text) {
        Ok(found) => {
            if let Some(again) = address_pattern(&found.prefixes) {
                let back = read_network_pattern(&again).expect("what we write reads");
                assert_eq!(back.prefixes, found.prefixes, "addresses survive a rewrite");
                assert!(back.exact, "a written pattern is exact");
            }
        }
        Err(e) => assert!(e.offset() <= text.len(), "the offset is inside the pattern"),
    }
});

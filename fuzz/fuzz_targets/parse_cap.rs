//! A CAP 1.2 alert, or the Atom feed listing alerts, from untrusted XML (a neighbour's
//! feed, an official warning): never a panic; whatever alert is read writes back to a
//! document that reads the same.
#![no_main]

use beffroi_cap::read::parse_alert;
use beffroi_cap::write::alert_xml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = beffroi_cap::atom::entry_links(data);
    if let Ok(alert) = parse_alert(data) {
        let again = alert_xml(&alert);
        let back = parse_alert(again.as_bytes()).expect("what we write reads");
        assert_eq!(alert_xml(&back), again, "writing is stable");
    }
});

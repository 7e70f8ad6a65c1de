//! The client address behind a trusted proxy: never panics on any header, and whatever a
//! client writes to the left of the hop the proxy appended, the address is that hop.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use beffroi_api::routes::client_from;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: (&str, u32)| {
    let (spoofed, real) = data;
    let proxy = IpAddr::from(Ipv4Addr::LOCALHOST);
    let real = IpAddr::from(Ipv4Addr::from(real));
    let _ = client_from(Some(proxy), spoofed, &[proxy]);
    if real != proxy && !spoofed.contains('\n') {
        let header = format!("{spoofed}, {real}");
        assert_eq!(client_from(Some(proxy), &header, &[proxy]), real.to_string());
    }
});

//! A TAXII envelope pulled from a partner's collection (untrusted JSON): never a panic,
//! every object accounted for (kept, set aside or passed over).
#![no_main]

use beffroi_taxii::read_envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pulled) = read_envelope(data) {
        for indicator in &pulled.indicators {
            if let Some(until) = indicator.valid_until {
                assert!(until > indicator.valid_from, "validity is ordered");
            }
        }
        let _ = pulled.rejected.iter().map(|r| r.error.to_string()).count();
    }
});

//! Free text scrubbing: never panics on any text, scrubbing twice changes nothing, and every
//! pseudonym it introduces opens back to a value.
#![no_main]

use beffroi_privacy::{EpochKey, Pseudonymiser, scrub};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(p) = Pseudonymiser::new(vec![EpochKey::new(1, &[9; 32])]) else {
        return;
    };
    let once = scrub(&p, text);
    let twice = scrub(&p, &once.text);
    assert_eq!(twice.text, once.text);
    assert!(twice.sealed.is_empty());
    for v in &once.sealed {
        assert!(once.text.contains(&v.pseudonym.0));
        assert!(p.open(&v.pseudonym.0, &v.ciphertext).is_ok());
    }
});

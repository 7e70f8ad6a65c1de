//! Signed envelopes from the network: opening and verifying never panic, and the replay
//! window accepts any counter sequence without panicking.
#![no_main]

use beffroi_wire::signed::{ReplayWindow, open};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = open(data) {
        let _ = s.verify(&[7; 32]);
        let mut w = ReplayWindow::new();
        let _ = w.check_and_update(s.ctr);
        let _ = w.check_and_update(s.ctr);
    }
    let mut w = ReplayWindow::new();
    for c in data.chunks_exact(8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        let _ = w.check_and_update(u64::from_le_bytes(b));
    }
});

//! Rekey bodies and signed rekeys: an accepted one is canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lsim_keymgmt::rekey::{Rekey, SignedRekey};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Rekey::decode(data) {
        assert_eq!(r.encode(), data);
    }
    if let Ok(s) = SignedRekey::decode(data) {
        assert_eq!(s.encode(), data);
        if let Ok(r) = Rekey::decode(s.body()) {
            assert_eq!(r.encode(), s.body());
        }
    }
});

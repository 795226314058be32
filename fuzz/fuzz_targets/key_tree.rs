//! The key server's stored tree: `KeyTree::from_bytes`, then used as the
//! server would (joins, leaves, commit, paths); nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lsim_keymgmt::key::SecretKey;
use lsim_keymgmt::tree::{KeyTree, MemberId};

fuzz_target!(|data: &[u8]| {
    let Ok(mut t) = KeyTree::from_bytes(data) else { return };
    let again = t.to_bytes();
    assert!(KeyTree::from_bytes(&again).is_ok());
    let members: Vec<MemberId> = t.members().take(4).collect();
    for &m in &members {
        let _ = t.path_keys(m);
    }
    if let Some(&m) = members.first() {
        let _ = t.request_leave(m);
    }
    let _ = t.request_join(MemberId(u64::MAX - 1), SecretKey::from_bytes([7; 32]));
    if t.commit().is_ok() {
        for m in t.members().take(4).collect::<Vec<_>>() {
            let _ = t.path_keys(m);
        }
    }
});

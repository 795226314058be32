//! Registrar requests and responses: an accepted request is canonical, an
//! accepted response re-encodes to one that reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lsim_keymgmt::key::SecretKey;
use lsim_keymgmt::member::MemberKeys;
use lsim_keymgmt::registrar::msg::{Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::decode(data) {
        let mut out = Vec::new();
        r.encode(&mut out);
        assert_eq!(out, data);
    }
    if let Ok(r) = Response::decode(data) {
        let mut out = Vec::new();
        r.encode(&mut out);
        assert!(out.len() <= data.len());
        assert_eq!(Response::decode(&out).as_ref(), Ok(&r));
        if let Response::Keys { path, .. } = &r {
            let mut m = MemberKeys::new(path.group, path.member, SecretKey::from_bytes([1; 32]));
            let _ = m.install_path(path);
        }
    }
});

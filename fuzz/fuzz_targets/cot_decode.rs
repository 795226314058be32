//! Cursor-on-Target from a TAK network (XML, or TAK Protocol v1): never a panic, and what reads
//! is written back to a document that reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lsim_im::tak::cot::CotEvent;
use lsim_im::tak::proto;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = proto::decode_any(data) {
        assert_eq!(proto::decode(&proto::encode(&e)).expect("our own v1 reads").uid, e.uid);
    }
    if let Ok(e) = CotEvent::from_xml(data) {
        let again = CotEvent::from_xml(e.to_xml().as_bytes()).expect("our own output reads");
        assert_eq!(again.uid, e.uid);
        assert_eq!(again.chat, e.chat);
    }
});

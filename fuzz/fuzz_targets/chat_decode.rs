//! The group layer's multicast formats: chat messages, presence beacons and
//! the file envelope (fed in chunks; the first byte picks the chunk size).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lsim_im::group::chat::{ChatMessage, decode_beacon, encode_beacon};
use lsim_im::group::envelope::Incoming;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ChatMessage::decode(data) {
        assert_eq!(m.encode(), data);
    }
    if let Some(nick) = decode_beacon(data) {
        assert_eq!(encode_beacon(&nick), data);
    }
    let Some((&c, rest)) = data.split_first() else { return };
    let chunk = usize::from(c).max(1);
    let mut inc = Incoming::new(Vec::new());
    for piece in rest.chunks(chunk) {
        if inc.push(piece).is_err() {
            return;
        }
    }
    if let Ok((r, out)) = inc.finish() {
        assert_eq!(out.len() as u64, r.size);
        assert!(out.len() <= rest.len());
    }
});

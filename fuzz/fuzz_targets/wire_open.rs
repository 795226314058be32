//! `wire::peek_header` and `wire::open_packet` on any datagram, with a seal
//! that opens everything (so every input reaches the body parser); an
//! accepted packet must re-encode to one that opens to the same thing.
//! The first byte picks the tag length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lsim_testsupport::seal::OpenSeal;
use lsim_transport::wire;

fuzz_target!(|data: &[u8]| {
    let Some((&t, rest)) = data.split_first() else { return };
    let mut seal = OpenSeal { tag_len: usize::from(t % 3) * 8 };
    let _ = wire::peek_header(rest);
    let mut d = rest.to_vec();
    let len = d.len();
    if let Ok((h, body)) = wire::open_packet(&mut seal, &mut d, 1, |_, _| Some(0)) {
        let mut again = Vec::new();
        wire::seal_packet(&mut seal, &h, &body, &mut again).expect("re-seal");
        assert!(again.len() <= len);
        let top = (h.seq & !wire::RECEIVER_SEQ_BIT).saturating_sub(1);
        let (h2, body2) = wire::open_packet(&mut seal, &mut again, 1, |_, _| Some(top)).expect("re-encoded packet refused");
        assert_eq!((h, body), (h2, body2));
    }
});

//! Fuzz tests of everything in key management that reads outside bytes:
//! rekey bodies and signed rekeys (`Rekey::decode`, `SignedRekey::decode`,
//! `MemberKeys::apply`), registrar messages (`Request::decode`,
//! `Response::decode`, and `MemberKeys::install_path` on what a response
//! carries), the key server's stored tree (`KeyTree::from_bytes`, then
//! used), stored password verifiers (`PasswordVerifier::from_bytes`), suite
//! codes, the group seal opening packets and chat messages
//! (`wire::open_packet` with `GroupSeal`, `GroupSeal::decrypt_message`), and
//! file key wraps (`Wrap::decode`, `filekey::unwrap`).
//!
//! Inputs are arbitrary bytes and valid encodings from the real encoders
//! with bytes flipped, inserted, deleted, truncated and integers spliced to
//! extreme values. Properties: nothing panics; what decodes re-encodes to
//! the same bytes (or at least to a fixed point) and is no bigger than its
//! input.
//!
//! CI runs a modest number of cases. To fuzz for long:
//!
//! ```text
//! LSIM_FUZZ_CASES=1000000 cargo test --release -p lsim-keymgmt --test fuzz
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use lsim_keymgmt::cert::{MAX_CERT, MemberCert};
use lsim_keymgmt::filekey::{self, FileKey, WRAP_ENCODED_LEN, WRAP_LEN, Wrap};
use lsim_keymgmt::key::SecretKey;
use lsim_keymgmt::member::MemberKeys;
use lsim_keymgmt::registrar::msg::{ErrorCode, MAX_MESSAGE, Request, Response};
use lsim_keymgmt::rekey::{Rekey, SignedRekey, WRAPPED_LEN};
use lsim_keymgmt::suite::{GroupSeal, SuiteId};

use lsim_keymgmt::tree::{DEFAULT_DEGREE, KeyTree, MemberId, MemberPath, NodeId, PathKey};
use lsim_keymgmt::users::PasswordVerifier;
use lsim_testsupport::mutate::{config, mutate, mutations};
use lsim_transport::seal::Seal;
use lsim_transport::wire::{self, Body, Command, Header, PacketType};
use proptest::prelude::*;

// ------------------------------------------------------------ a real group to draw valid encodings from

const GROUP: u32 = 5;

fn key(i: u64) -> SecretKey {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&i.to_be_bytes());
    b[31] = 0xa5;
    SecretKey::from_bytes(b)
}

/// A tree of 12 members after two commits, the signed rekeys of the
/// second commit, and member 0's path before it.
struct World {
    server: SigningKey,
    tree_bytes: Vec<u8>,
    /// A tree with queued requests too (the queue is part of the format).
    queued_bytes: Vec<u8>,
    rekey: Rekey,
    signed: Vec<u8>,
    path0: MemberPath,
    /// A member certificate the server issued, encoded.
    cert: Vec<u8>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let server = SigningKey::from_bytes(&[9u8; 32]);
        let mut tree = KeyTree::new(GROUP, DEFAULT_DEGREE).unwrap();
        for i in 0..12 {
            tree.request_join(MemberId(i), key(i)).unwrap();
        }
        tree.commit().unwrap();
        let path0 = tree.path_keys(MemberId(0)).unwrap();
        tree.request_leave(MemberId(3)).unwrap();
        tree.request_join(MemberId(100), key(100)).unwrap();
        let batch = tree.commit().unwrap();
        let signed = SignedRekey::sign(&batch.rekey, &server).encode();
        let tree_bytes = tree.to_bytes().to_vec();
        tree.request_join(MemberId(200), key(200)).unwrap();
        tree.request_leave(MemberId(5)).unwrap();
        let queued_bytes = tree.to_bytes().to_vec();
        let member_key = SigningKey::from_bytes(&[3u8; 32]).verifying_key().to_bytes();
        let cert = MemberCert::issue(&server, "ayen", 7, 0x0101_0007, member_key, u64::MAX).encode();
        World { server, tree_bytes, queued_bytes, rekey: batch.rekey, signed, path0, cert }
    })
}

fn member0() -> MemberKeys {
    let w = world();
    let mut m = MemberKeys::new(GROUP, MemberId(0), key(0));
    m.install_path(&w.path0).unwrap();
    m
}

// ------------------------------------------------------------ checks

fn check_rekey(bytes: &[u8]) {
    if let Ok(r) = Rekey::decode(bytes) {
        assert_eq!(r.encode(), bytes, "an accepted rekey body is not canonical");
        assert!(r.wrapped.len() * WRAPPED_LEN <= bytes.len());
    }
}

fn check_signed(bytes: &[u8]) {
    if let Ok(s) = SignedRekey::decode(bytes) {
        assert_eq!(s.encode(), bytes, "an accepted signed rekey is not canonical");
        assert!(s.body().len() <= bytes.len());
        check_rekey(s.body());
    }
    let w = world();
    let _ = SignedRekey::open(bytes, &w.server.verifying_key());
    let mut m = member0();
    let epoch = m.epoch();
    match m.apply(bytes, &w.server.verifying_key()) {
        Ok(applied) => assert!(Some(applied.epoch) > epoch),
        Err(_) => assert_eq!(m.epoch(), epoch, "a refused rekey moved the epoch"),
    }
}

/// A certificate decodes canonically from the front of `bytes`, and one the
/// server's key accepts is exactly the one it issued.
fn check_cert(bytes: &[u8]) {
    if let Ok((c, used)) = MemberCert::decode(bytes) {
        assert!(used <= bytes.len() && used <= MAX_CERT);
        assert_eq!(c.encode(), &bytes[..used], "an accepted certificate is not canonical");
        if c.verify(&world().server.verifying_key(), 0).is_ok() {
            assert_eq!(&bytes[..used], &world().cert[..], "a changed certificate passed verification");
        }
    }
}

fn check_request(bytes: &[u8]) {
    if let Ok(r) = Request::decode(bytes) {
        let mut out = Vec::new();
        r.encode(&mut out);
        assert_eq!(out, bytes, "an accepted request is not canonical");
    }
}

fn check_response(bytes: &[u8]) {
    if let Ok(r) = Response::decode(bytes) {
        let mut out = Vec::new();
        r.encode(&mut out);
        assert!(out.len() <= bytes.len());
        assert_eq!(Response::decode(&out).as_ref(), Ok(&r), "re-encoded response reads differently");
        if let Response::FileKeyWraps { wraps } = &r {
            for w in wraps.iter().take(4) {
                check_wrap(&w.encode());
            }
        }
        if let Response::Keys { path, .. } = &r {
            let mut m = MemberKeys::new(path.group, path.member, key(0));
            let _ = m.install_path(path);
            let mut m = member0();
            let _ = m.install_path(path);
            let _ = m.apply(&world().signed, &world().server.verifying_key());
        }
    }
}

/// The individual key the fuzzed wraps are sealed under.
const WRAP_KEY: u64 = 77;

/// A file key wrapped for member 3 of "lsim".
fn real_wrap() -> Wrap {
    filekey::wrap(&key(WRAP_KEY), "lsim", 3, &FileKey::from_bytes([0x42; 32])).unwrap()
}

/// A wrap decodes from exactly its length, re-encodes to the same bytes, and
/// opens only if it is the real one.
fn check_wrap(bytes: &[u8]) {
    let Ok(w) = Wrap::decode(bytes) else {
        assert_ne!(bytes.len(), WRAP_ENCODED_LEN);
        return;
    };
    assert_eq!(&w.encode()[..], bytes);
    if let Ok(k) = filekey::unwrap(&key(WRAP_KEY), "lsim", &w) {
        assert_eq!((k.as_bytes(), w.member), (&[0x42; 32], 3), "an altered wrap opened");
    }
}

fn check_tree(bytes: &[u8]) {
    let Ok(mut t) = KeyTree::from_bytes(bytes) else { return };
    let again = t.to_bytes();
    assert_eq!(KeyTree::from_bytes(&again).map(|t| t.to_bytes().to_vec()).ok(), Some(again.to_vec()));
    assert!(t.len() <= bytes.len());
    // A tree the store accepted must be usable: nothing below may panic.
    let members: Vec<MemberId> = t.members().collect();
    for &m in members.iter().take(4) {
        let _ = t.path_keys(m);
        let _ = t.depth(m);
    }
    if let Some(&m) = members.first() {
        let _ = t.request_leave(m);
    }
    let _ = t.request_join(MemberId(u64::MAX - 1), key(7));
    let _ = t.request_join(MemberId(4242), key(8));
    if let Ok(batch) = t.commit() {
        assert!(batch.epoch > 0);
        let _ = Rekey::decode(&batch.rekey.encode()).expect("a committed rekey must decode");
        for m in t.members().take(4).collect::<Vec<_>>() {
            let _ = t.path_keys(m);
        }
    }
    let _ = t.to_bytes();
}

fn check_verifier(bytes: &[u8]) {
    if let Ok(v) = PasswordVerifier::from_bytes(bytes) {
        assert_eq!(v.to_bytes(), bytes);
    }
}

fn suite() -> impl Strategy<Value = SuiteId> {
    prop_oneof![Just(SuiteId::BlowfishCbcHmacSha256), Just(SuiteId::Aes256Gcm), Just(SuiteId::ChaCha20Poly1305)]
}

// ------------------------------------------------------------ strategies

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9@.]{0,40}", any::<String>(), Just("é".repeat(600))]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (text(), text()).prop_map(|(user, password)| Request::Hello { user, password }),
        text().prop_map(|group| Request::Join { group }),
        text().prop_map(|group| Request::Leave { group }),
        text().prop_map(|group| Request::Resync { group }),
        any::<[u8; 32]>().prop_map(|key| Request::Certify { key }),
        (text(), prop::collection::vec(text(), 0..12), any::<[u8; 32]>())
            .prop_map(|(group, to, key)| { Request::WrapFileKey { group, to, key: FileKey::from_bytes(key) } }),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    let path = (any::<u32>(), any::<u32>(), any::<u64>(), any::<u32>(), any::<u32>(), 0usize..8).prop_map(
        |(group, epoch, member, leaf, leaf_version, n)| MemberPath {
            group,
            epoch,
            member: MemberId(member),
            leaf: NodeId(leaf),
            leaf_version,
            keys: (0..n as u32).map(|i| PathKey { node: NodeId(i), version: epoch, key: key(u64::from(i)) }).collect(),
        },
    );
    prop_oneof![
        (any::<u64>(), any::<[u8; 32]>()).prop_map(|(member, server_key)| Response::Welcome {
            member,
            individual_key: key(member),
            server_key
        }),
        (any::<u8>(), path, prop::collection::vec("[a-z]{1,8}", 0..3), prop::collection::btree_set(0u32..40, 0..6))
            .prop_map(|(suite, path, revoked, after)| {
                // Past epochs of the membership: from the join, before the path's epoch.
                let history = after
                    .into_iter()
                    .filter_map(|a| path.leaf_version.checked_add(a))
                    .filter(|e| *e < path.epoch)
                    .map(|e| (e, key(u64::from(e))))
                    .collect();
                Response::Keys { suite, path, revoked, history }
            }),
        Just(Response::Keys {
            suite: 2,
            path: world().path0.clone(),
            revoked: vec!["carol".into()],
            history: Vec::new()
        }),
        any::<u32>().prop_map(|epoch| Response::Left { epoch }),
        text().prop_map(|message| Response::Error { code: ErrorCode::State, message }),
        text().prop_map(|message| Response::Error { code: ErrorCode::NotMember, message }),
        Just(Response::Certified { cert: world().cert.clone() }),
        (any::<u64>(), any::<[u8; WRAP_LEN / 2]>(), 0usize..12).prop_map(|(member, half, n)| {
            let mut sealed = [0u8; WRAP_LEN];
            sealed[..WRAP_LEN / 2].copy_from_slice(&half);
            let mut wraps = vec![Wrap { member, sealed }; n];
            wraps.push(real_wrap());
            Response::FileKeyWraps { wraps }
        }),
    ]
}

fn encoded_request() -> impl Strategy<Value = Vec<u8>> {
    request().prop_map(|r| {
        let mut out = Vec::new();
        r.encode(&mut out);
        out
    })
}

fn encoded_response() -> impl Strategy<Value = Vec<u8>> {
    response().prop_map(|r| {
        let mut out = Vec::new();
        r.encode(&mut out);
        out
    })
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn rekeys_arbitrary(b in bytes(400)) {
        check_rekey(&b);
        check_signed(&b);
    }

    #[test]
    fn rekeys_mutated(ms in mutations()) {
        let w = world();
        check_rekey(&mutate(w.rekey.encode(), &ms));
        check_signed(&mutate(w.signed.clone(), &ms));
    }

    #[test]
    fn member_certificates(b in bytes(500), ms in mutations()) {
        check_cert(&b);
        check_cert(&world().cert);
        check_cert(&mutate(world().cert.clone(), &ms));
    }

    #[test]
    fn registrar_arbitrary(b in bytes(300)) {
        check_request(&b);
        check_response(&b);
    }

    #[test]
    fn registrar_requests_mutated(r in encoded_request(), ms in mutations()) {
        check_request(&r);
        check_request(&mutate(r, &ms));
    }

    #[test]
    fn registrar_responses_mutated(r in encoded_response(), ms in mutations()) {
        check_response(&r);
        check_response(&mutate(r, &ms));
    }

    #[test]
    fn file_key_wraps(b in bytes(100), ms in mutations()) {
        check_wrap(&b);
        let real = real_wrap().encode();
        check_wrap(&real);
        check_wrap(&mutate(real.to_vec(), &ms));
    }

    #[test]
    fn stored_trees_mutated(queued in any::<bool>(), ms in mutations()) {
        let w = world();
        let valid = if queued { &w.queued_bytes } else { &w.tree_bytes };
        check_tree(&mutate(valid.clone(), &ms));
    }

    #[test]
    fn stored_trees_arbitrary(b in bytes(200)) {
        check_tree(&b);
        let mut with_magic = world().tree_bytes[..6].to_vec();
        with_magic.extend_from_slice(&b);
        check_tree(&with_magic);
    }

    #[test]
    fn verifiers_and_suite_codes(b in bytes(80), code in any::<u8>()) {
        check_verifier(&b);
        let mut framed = vec![1u8];
        framed.extend_from_slice(&b);
        framed.truncate(61);
        check_verifier(&framed);
        if let Ok(s) = SuiteId::from_u8(code) {
            prop_assert_eq!(s.to_u8(), code);
        }
    }

    #[test]
    fn group_seal_opens_hostile_packets(s in suite(), payload in bytes(200), ms in mutations()) {
        let mut seal = GroupSeal::new(s, 3, &key(1));
        let h = Header { packet_type: PacketType::Command, session: 1, node: 2, epoch: 3, seq: 9 };
        let c = Command { flush: true, frontier: None, oldest: 0, grtt_us: 1, group_loss: 0, probe: None };
        let mut out = Vec::new();
        wire::seal_packet(&mut seal, &h, &Body::Command(c), &mut out).unwrap();
        let mut valid = out.clone();
        prop_assert!(wire::open_packet(&mut seal, &mut valid, 1, |_, _| Some(8)).is_ok());
        let mut bad = mutate(out, &ms);
        let _ = wire::open_packet(&mut seal, &mut bad, 1, |_, _| Some(8));
        let mut garbage = payload.clone();
        let _ = wire::open_packet(&mut seal, &mut garbage, 1, |_, _| Some(8));
        // Chat sealed under the group key, as relayed through XMPP.
        let sealed = seal.encrypt_message(b"aad", &payload).unwrap();
        prop_assert_eq!(seal.decrypt_message(b"aad", &sealed).unwrap(), payload.clone());
        if let Ok(p) = seal.decrypt_message(b"aad", &mutate(sealed, &ms)) {
            prop_assert!(p.len() <= payload.len() + 64);
        }
        let _ = seal.decrypt_message(b"aad", &payload);
        prop_assert!(seal.tag_len() <= 64);
    }
}

/// Messages at the size limit are read without trouble.
#[test]
fn registrar_limits() {
    let big = vec![0u8; MAX_MESSAGE + 1];
    assert!(Request::decode(&big).is_err());
    assert!(Response::decode(&big).is_err());
}

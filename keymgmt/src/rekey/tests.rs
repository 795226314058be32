//! The rekey encodings and wrapping, tested: known answers, round trips
//! through the shared codec, and every way a body or a framing can lie.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::*;

/// Test support: `v` survives `Codec::to_bytes` then `Codec::from_bytes`,
/// and cuts of its bytes (some sixteen, and the last byte missing) are refused.
pub(crate) fn codec_round_trip<T: Codec + PartialEq + std::fmt::Debug>(v: &T) -> Result<(), TestCaseError> {
    let bytes = v.to_bytes();
    match T::from_bytes(&bytes) {
        Ok(back) => prop_assert_eq!(&back, v),
        Err(e) => return Err(TestCaseError::fail(format!("{v:?} refused its own bytes: {e:?}"))),
    }
    let step = (bytes.len() / 16).max(1);
    for cut in (0..bytes.len()).step_by(step).chain(bytes.len().checked_sub(1)) {
        prop_assert!(T::from_bytes(&bytes[..cut]).is_err(), "a cut at {} of {} was accepted", cut, bytes.len());
    }
    Ok(())
}

/// Bodies the reader accepts: `prev_epoch < epoch`, every key of version
/// `epoch` under a key no newer.
fn rekey() -> impl Strategy<Value = Rekey> {
    (any::<u32>(), 1..=u32::MAX).prop_flat_map(|(group, epoch)| {
        let wrapped = (any::<u32>(), any::<u32>(), 0..=epoch, prop::collection::vec(any::<u8>(), CIPHERTEXT_LEN))
            .prop_map(move |(node, under_node, under_version, c)| {
                let mut ciphertext = [0u8; CIPHERTEXT_LEN];
                ciphertext.copy_from_slice(&c);
                WrappedKey {
                    node: NodeId(node),
                    version: epoch,
                    under_node: NodeId(under_node),
                    under_version,
                    ciphertext,
                }
            });
        (0..epoch, prop::collection::vec(wrapped, 0..8), prop::collection::vec("[a-z0-9._é-]{1,20}", 0..4))
            .prop_map(move |(prev_epoch, wrapped, revoked)| Rekey { group, epoch, prev_epoch, wrapped, revoked })
    })
}

/// Framings with any body (the framing does not read it) and signature.
fn signed_rekey() -> impl Strategy<Value = SignedRekey> {
    (prop::collection::vec(any::<u8>(), 0..300), prop::collection::vec(any::<u8>(), SIGNATURE_LEN)).prop_map(
        |(body, s)| {
            let mut signature = [0u8; SIGNATURE_LEN];
            signature.copy_from_slice(&s);
            SignedRekey { body, signature }
        },
    )
}

fn key(b: u8) -> SecretKey {
    SecretKey::from_bytes([b; 32])
}

fn id(node: u32, version: u32) -> KeyId {
    KeyId { node: NodeId(node), version }
}

fn sample() -> Rekey {
    let wrapped = (0..5u8)
        .map(|i| WrappedKey::seal(7, 9, id(u32::from(i), 9), &key(i), id(100 + u32::from(i), 3), &key(200)))
        .collect();
    Rekey { group: 7, epoch: 9, prev_epoch: 8, wrapped, revoked: vec!["carol".into()] }
}

fn server() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

#[test]
fn wrap_round_trip_and_binding() {
    let w = WrappedKey::seal(1, 5, id(3, 5), &key(1), id(4, 2), &key(2));
    assert_eq!(w.open(1, 5, &key(2)), Some(key(1)));
    assert_eq!(w.open(1, 5, &key(3)), None, "wrong wrapping key");
    assert_eq!(w.open(2, 5, &key(2)), None, "another group");
    assert_eq!(w.open(1, 6, &key(2)), None, "another epoch");
    let mut moved = w.clone();
    moved.node = NodeId(9);
    assert_eq!(moved.open(1, 5, &key(2)), None, "relabelled target");
    let mut moved = w.clone();
    moved.under_version = 3;
    assert_eq!(moved.open(1, 5, &key(2)), None, "relabelled wrapping key");
    let mut flipped = w;
    flipped.ciphertext[0] ^= 1;
    assert_eq!(flipped.open(1, 5, &key(2)), None, "altered ciphertext");
}

/// Pins the nonce and associated-data layout: computed independently
/// (Python `cryptography`, AESGCM) from the layout in the module doc.
#[test]
fn wrap_known_answer() {
    let key = SecretKey::from_bytes(std::array::from_fn(|i| i as u8));
    let under = SecretKey::from_bytes(std::array::from_fn(|i| 0xa0 + (i % 16) as u8));
    let w = WrappedKey::seal(7, 12, id(3, 12), &key, id(40, 9), &under);
    let hex: String = w.ciphertext.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "dfa5530797a6c1a02c841c055dfb0f11486316f22320c582481539a951138933ce50af25cb242cdbec4a1d9749c9dfab");
    assert_eq!(w.open(7, 12, &under), Some(key));
}

#[test]
fn body_round_trip_and_sizes() {
    let r = sample();
    let bytes = r.encode();
    assert_eq!(bytes.len(), BODY_HEADER_LEN + 5 * WRAPPED_LEN + 2 + 1 + "carol".len());
    assert_eq!(bytes.len(), r.encoded_len());
    assert_eq!(Rekey::decode(&bytes).unwrap(), r);
}

#[test]
fn signed_round_trip_and_refusals() {
    let sk = server();
    let signed = SignedRekey::sign(&sample(), &sk);
    let bytes = signed.encode();
    assert_eq!(bytes.len(), signed.encoded_len());
    assert_eq!(SignedRekey::open(&bytes, &sk.verifying_key()).unwrap(), sample());

    let other = SigningKey::from_bytes(&[43u8; 32]);
    assert_eq!(SignedRekey::open(&bytes, &other.verifying_key()), Err(RekeyError::BadSignature));
    let mut forged = bytes.clone();
    forged[10] ^= 0x80;
    assert_eq!(SignedRekey::open(&forged, &sk.verifying_key()), Err(RekeyError::BadSignature));
    for cut in [0, 1, 4, 5, 20, bytes.len() - 1] {
        assert!(
            matches!(SignedRekey::open(&bytes[..cut], &sk.verifying_key()), Err(RekeyError::Truncated { .. })),
            "cut at {cut}"
        );
    }
    let mut long = bytes;
    long.push(0);
    assert!(matches!(SignedRekey::open(&long, &sk.verifying_key()), Err(RekeyError::Malformed(_))));
}

#[test]
fn bodies_that_lie_are_refused() {
    let good = sample().encode();
    let mut count_high = good.clone();
    count_high[13..17].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(Rekey::decode(&count_high), Err(RekeyError::Truncated { .. })));
    let mut count_low = good.clone();
    count_low[13..17].copy_from_slice(&1u32.to_be_bytes());
    assert!(Rekey::decode(&count_low).is_err());
    let mut backwards = good.clone();
    backwards[9..13].copy_from_slice(&9u32.to_be_bytes());
    assert!(matches!(Rekey::decode(&backwards), Err(RekeyError::Malformed(_))));
    let mut wrong_version = good.clone();
    wrong_version[0] = 1;
    assert!(
        matches!(Rekey::decode(&wrong_version), Err(RekeyError::Malformed(m)) if m.contains("version 1, expected 2"))
    );
    // The revoked names: each bounded, UTF-8, none empty, nothing after them.
    let names = BODY_HEADER_LEN + 5 * WRAPPED_LEN;
    let mut empty = good.clone();
    empty[names + 2] = 0;
    assert!(Rekey::decode(&empty).is_err());
    let mut not_utf8 = good.clone();
    not_utf8[names + 3] = 0xff;
    assert!(matches!(Rekey::decode(&not_utf8), Err(RekeyError::Malformed(_))));
    let mut too_many = good.clone();
    too_many[names..names + 2].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(matches!(Rekey::decode(&too_many), Err(RekeyError::Malformed(_))));
    let mut trailing = good;
    trailing.push(b'x');
    assert!(matches!(Rekey::decode(&trailing), Err(RekeyError::Malformed(_))));
}

proptest! {
    #[test]
    fn rekeys_round_trip_through_the_codec(r in rekey()) {
        codec_round_trip(&r)?;
        prop_assert_eq!(Rekey::decode(&r.encode()), Ok(r.clone()));
        let signed = SignedRekey::sign(&r, &server());
        prop_assert_eq!(SignedRekey::open(&signed.to_bytes(), &server().verifying_key()), Ok(r));
    }

    #[test]
    fn signed_rekeys_round_trip_through_the_codec(s in signed_rekey()) {
        codec_round_trip(&s)?;
        prop_assert_eq!(SignedRekey::decode(&s.encode()), Ok(s));
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Rekey::decode(&bytes);
        let _ = SignedRekey::decode(&bytes);
        let _ = SignedRekey::open(&bytes, &server().verifying_key());
    }

    #[test]
    fn damaged_signed_rekeys_never_panic(cut in 0usize..600, at in 0usize..600, bit in 0u8..8) {
        let mut bytes = SignedRekey::sign(&sample(), &server()).encode();
        let changed = at < bytes.len() || cut < bytes.len();
        if let Some(b) = bytes.get_mut(at) {
            *b ^= 1 << bit;
        }
        bytes.truncate(cut);
        prop_assert_eq!(SignedRekey::open(&bytes, &server().verifying_key()).is_err(), changed);
    }
}

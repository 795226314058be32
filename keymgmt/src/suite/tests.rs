//! Known-answer and property tests of the suites.
//!
//! Three layers of vectors: the primitives against their published vectors
//! (so the crates are the algorithms we think they are), then our key schedule
//! and packet seals against outputs computed once and pinned here (so a change
//! of construction or of a dependency's behaviour cannot pass unnoticed).

use ::blowfish::Blowfish;
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::array::Array;
use aes_gcm::aead::{AeadInOut, KeyInit};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockCipherEncrypt, BlockModeEncrypt, InnerIvInit};
use chacha20poly1305::ChaCha20Poly1305;
use cts::Encrypt;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use lsim_transport::seal::{Nonce, Seal, SealError};
use proptest::prelude::*;
use sha2::Sha256;

use super::blowfish::{BlowfishCbcHmac, packet_cipher_key, packet_mac_key, subkey_group};
use super::*;
use crate::key::SecretKey;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 00 01 02 ... 1f.
fn fixed_group_key() -> SecretKey {
    SecretKey::from_bytes(std::array::from_fn(|i| i as u8))
}

const FIXED_EPOCH: u32 = 7;

// ---------------------------------------------------------------------------
// (c) The primitives, against published vectors.
// ---------------------------------------------------------------------------

/// McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16
/// (256-bit key, 96-bit IV, 20 bytes of AAD, 60 bytes of plaintext).
#[test]
fn aes_256_gcm_matches_mcgrew_viega_test_case_16() {
    let key = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
    let iv = hex("cafebabefacedbaddecaf888");
    let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let pt = hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
         1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
    let ct = hex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
         8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662");
    let tag = hex("76fc6ece0f4e1768cddf8853bb2d551b");

    let aead = Aes256Gcm::new_from_slice(&key).unwrap();
    let nonce = Array::try_from(iv.as_slice()).unwrap();
    let mut buf = pt.clone();
    let got = aead.encrypt_inout_detached(&nonce, &aad, buf.as_mut_slice().into()).unwrap();
    assert_eq!(to_hex(&buf), to_hex(&ct));
    assert_eq!(to_hex(&got), to_hex(&tag));
}

/// RFC 8439 §2.8.2: the AEAD_CHACHA20_POLY1305 example.
#[test]
fn chacha20_poly1305_matches_rfc8439_section_2_8_2() {
    let key = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
    let nonce = hex("070000004041424344454647");
    let aad = hex("50515253c0c1c2c3c4c5c6c7");
    let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, \
               sunscreen would be it.";
    let ct = hex("d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
         3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
         92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
         3ff4def08e4b7a9de576d26586cec64b6116");
    let tag = hex("1ae10b594f09e26a7e902ecbd0600691");

    let aead = ChaCha20Poly1305::new_from_slice(&key).unwrap();
    let nonce = Array::try_from(nonce.as_slice()).unwrap();
    let mut buf = pt.to_vec();
    let got = aead.encrypt_inout_detached(&nonce, &aad, buf.as_mut_slice().into()).unwrap();
    assert_eq!(to_hex(&buf), to_hex(&ct));
    assert_eq!(to_hex(&got), to_hex(&tag));
}

/// Schneier's Blowfish ECB test vectors (Eric Young's set, from schneier.com).
#[test]
fn blowfish_matches_schneier_ecb_vectors() {
    for (key, pt, ct) in [
        ("0000000000000000", "0000000000000000", "4ef997456198dd78"),
        ("ffffffffffffffff", "ffffffffffffffff", "51866fd5b85ecb8a"),
    ] {
        let bf: Blowfish = Blowfish::new_from_slice(&hex(key)).unwrap();
        let mut block = Array::try_from(hex(pt).as_slice()).unwrap();
        bf.encrypt_block(&mut block);
        assert_eq!(to_hex(&block), ct, "key {key}");
    }
}

/// RFC 4231 test case 2.
#[test]
fn hmac_sha256_matches_rfc4231_case_2() {
    let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
    mac.update(b"what do ya want for nothing?");
    assert_eq!(
        to_hex(&mac.finalize().into_bytes()),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

/// Our zero-padded HMAC keying is RFC 2104's own padding: same MAC as the slice constructor.
#[test]
fn padded_hmac_key_is_the_same_mac() {
    let key = [0xa5u8; 32];
    let ours = kdf::hmac_sha256(&key).chain_update(b"abc").finalize().into_bytes();
    let theirs = Hmac::<Sha256>::new_from_slice(&key).unwrap().chain_update(b"abc").finalize().into_bytes();
    assert_eq!(ours, theirs);
}

/// RFC 5869 test case 1.
#[test]
fn hkdf_sha256_matches_rfc5869_case_1() {
    let hk = Hkdf::<Sha256>::new(Some(&hex("000102030405060708090a0b0c")), &[0x0b; 22]);
    let okm = kdf::expand::<42>(&hk, &[&hex("f0f1f2f3f4f5f6f7f8f9")]);
    assert_eq!(
        to_hex(okm.as_slice()),
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    );
}

/// CBC-CS3 on whole blocks is CBC with the last two ciphertext blocks swapped
/// (NIST SP 800-38A addendum): checks the `cts` crate against plain CBC.
#[test]
fn cbc_cs3_is_cbc_with_the_last_two_blocks_swapped() {
    let bf: Blowfish = Blowfish::new_from_slice(b"0123456789abcdef").unwrap();
    let iv = [9u8; 8];
    let pt: Vec<u8> = (0..32u8).collect();
    let mut cbc_out = pt.clone();
    cbc::Encryptor::inner_iv_init(&bf, &iv.into()).encrypt_padded::<NoPadding>(&mut cbc_out, 32).unwrap();
    let mut cts_out = pt.clone();
    cts::CbcCs3::inner_iv_init(&bf, &iv.into()).encrypt(&mut cts_out).unwrap();
    assert_eq!(cts_out[..16], cbc_out[..16]);
    assert_eq!(cts_out[16..24], cbc_out[24..32]);
    assert_eq!(cts_out[24..32], cbc_out[16..24]);
}

// ---------------------------------------------------------------------------
// (a) The key schedule, pinned.
// ---------------------------------------------------------------------------

#[test]
fn epoch_key_schedule_is_pinned() {
    // Checked independently against the documented formula with Python's hmac/hashlib.
    let pinned = [
        (
            SuiteId::BlowfishCbcHmacSha256,
            "a262ed68bbbe229c61d7fc603e081db3eaac1d8862bf011abed144e81c007ff0",
            "587c95143e45dcc8818328de9ac4ab11ad66636ca22761943ca4801fddc7781e",
        ),
        (
            SuiteId::Aes256Gcm,
            "87ac067c71cb383f2fa1777008f4177750d139337fc70af90cc88c30ecbf40a1",
            "1dbc6b46e8dcfb5445b810d8e6eb75bcc6580936fe7679ed8fdcc42fabd40710",
        ),
        (
            SuiteId::ChaCha20Poly1305,
            "f03e4bc44334f2de9f89d3cb382d43ca5d74efae93dbb95e275554a542ba03ad",
            "4d1aefad9be8a05d189570ce6ce8ab722b3af3f27cfe76275582b807b5c9f88a",
        ),
    ];
    for (suite, seal, data) in pinned {
        let keys = EpochKeys::derive(suite, FIXED_EPOCH, &fixed_group_key());
        assert_eq!(to_hex(keys.seal_key().as_bytes()), seal, "{suite} seal key");
        assert_eq!(to_hex(keys.data_key().as_bytes()), data, "{suite} data key");
        assert_eq!((keys.suite(), keys.epoch()), (suite, FIXED_EPOCH));
    }
}

#[test]
fn epoch_keys_depend_on_suite_epoch_and_group_key() {
    let gk = fixed_group_key();
    let base = EpochKeys::derive(SuiteId::Aes256Gcm, 1, &gk);
    let others = [
        EpochKeys::derive(SuiteId::ChaCha20Poly1305, 1, &gk),
        EpochKeys::derive(SuiteId::Aes256Gcm, 2, &gk),
        EpochKeys::derive(SuiteId::Aes256Gcm, 1, &SecretKey::from_bytes([0; 32])),
    ];
    assert_ne!(base.seal_key(), base.data_key());
    for other in &others {
        assert_ne!(base.seal_key(), other.seal_key());
        assert_ne!(base.data_key(), other.data_key());
    }
    let again = EpochKeys::derive(SuiteId::Aes256Gcm, 1, &gk);
    assert_eq!(base.seal_key(), again.seal_key());
    assert_ne!(base.id(), again.id(), "each derivation is its own cache identity");
    assert_eq!(format!("{base:?}"), "EpochKeys { suite: Aes256Gcm, epoch: 1, .. }");
}

// ---------------------------------------------------------------------------
// (b) Each suite's packet seal, pinned.
// ---------------------------------------------------------------------------

const KAT_NONCE: Nonce = Nonce { node: 0x0102_0304, seq: 0x0506_0708_090a_0b0c };
const KAT_HEADER: &[u8] = b"lsim header";
/// 37 bytes: not a whole number of Blowfish blocks, so stealing is exercised.
const KAT_PAYLOAD: &[u8] = b"the quick brown fox jumps over a lazy";
const KAT_IV: [u8; 8] = [0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87];

fn kat_keys(suite: SuiteId) -> EpochKeys {
    EpochKeys::derive(suite, FIXED_EPOCH, &fixed_group_key())
}

/// Seals `payload` under the KAT keys, nonce and header (fixed IV for Blowfish).
fn kat_seal(suite: SuiteId, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let keys = kat_keys(suite);
    let mut body = payload.to_vec();
    let mut trailer = vec![0; suite.trailer_len()];
    match suite {
        SuiteId::BlowfishCbcHmacSha256 => BlowfishCbcHmac::new()
            .seal_packet_with_iv(&keys, KAT_NONCE, KAT_HEADER, &mut body, &mut trailer, KAT_IV)
            .unwrap(),
        _ => suite.cipher().seal_packet(&keys, KAT_NONCE, KAT_HEADER, &mut body, &mut trailer).unwrap(),
    }
    let mut opened = body.clone();
    suite.cipher().open_packet(&keys, KAT_NONCE, KAT_HEADER, &mut opened, &trailer).unwrap();
    assert_eq!(opened, payload, "{suite}: the pinned packet opens");
    (body, trailer)
}

#[test]
fn packet_seals_are_pinned() {
    // Checked independently with Python's `cryptography` (OpenSSL's AES-GCM,
    // ChaCha20-Poly1305 and Blowfish-ECB, CBC-CS3 written out from the NIST addendum).
    let pinned = [
        (
            SuiteId::BlowfishCbcHmacSha256,
            "4abc53a9e9f80f7e42a3c40a4d29ed8041e374798abb2d4b38f5f5bd033e8b977a07147f20",
            "f0e1d2c3b4a59687099c300c1bde4c0a6d5efa5eeedf7ad1",
        ),
        (
            SuiteId::Aes256Gcm,
            "8b937a01d1d68f5c95c1f6c8b1c9ec0085a0d54114e181a6af3d124bbf352cdd420b325fcc",
            "789bdf30625f8f9174a7ba4d488be501",
        ),
        (
            SuiteId::ChaCha20Poly1305,
            "bd60b6ab3559ce39446114d6df79c08c583ed9fb4f5eae4c6640e2bae9bdcd44bd2909f810",
            "593da96485e944acab9a7b477f13e266",
        ),
    ];
    for (suite, body, trailer) in pinned {
        let (b, t) = kat_seal(suite, KAT_PAYLOAD);
        assert_eq!(to_hex(&b), body, "{suite} body");
        assert_eq!(to_hex(&t), trailer, "{suite} trailer");
    }
}

/// The Blowfish edge cases: a whole number of blocks, exactly one block (plain
/// CBC), and payloads shorter than a block (the one-block CFB fallback). Checked
/// independently like the packets above.
#[test]
fn blowfish_edge_lengths_are_pinned() {
    let suite = SuiteId::BlowfishCbcHmacSha256;
    let pinned = [
        (16, "42a3c40a4d29ed804abc53a9e9f80f7e", "f0e1d2c3b4a59687ca62e5e9421620b8144003c232b371b9"),
        (8, "4abc53a9e9f80f7e", "f0e1d2c3b4a59687bc5d6c56bce381cf508b727edf336239"),
        (5, "5b05baebbb", "f0e1d2c3b4a596877d13ba7f819985c73ce6bdb19e5a2c27"),
        (0, "", "f0e1d2c3b4a59687455fc3acb16a90b72aca9d99c1db4a9a"),
    ];
    for (len, body, trailer) in pinned {
        let (b, t) = kat_seal(suite, &KAT_PAYLOAD[..len]);
        assert_eq!(to_hex(&b), body, "{len}-byte body");
        assert_eq!(to_hex(&t), trailer, "{len}-byte trailer");
    }
}

/// The Blowfish packet construction recomputed from the primitives (payloads longer
/// than a block): subkey from HKDF, CBC-CS3 under the IV, HMAC over nonce, header
/// length, header, IV, ciphertext.
fn blowfish_reference(keys: &EpochKeys, nonce: Nonce, header: &[u8], payload: &[u8], iv: [u8; 8]) -> Vec<u8> {
    let cipher_key = packet_cipher_key(keys, nonce.node, subkey_group(nonce.seq));
    let bf: Blowfish = Blowfish::new_from_slice(cipher_key.as_slice()).unwrap();
    let mut body = payload.to_vec();
    cts::CbcCs3::inner_iv_init(&bf, &iv.into()).encrypt(&mut body).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(packet_mac_key(keys).as_slice()).unwrap();
    mac.update(&nonce.to_bytes());
    mac.update(&(header.len() as u64).to_be_bytes());
    mac.update(header);
    mac.update(&iv);
    mac.update(&body);
    body.extend_from_slice(&iv);
    body.extend_from_slice(&mac.finalize().into_bytes()[..16]);
    body
}

#[test]
fn blowfish_packet_is_the_documented_construction() {
    let keys = kat_keys(SuiteId::BlowfishCbcHmacSha256);
    let (body, trailer) = kat_seal(SuiteId::BlowfishCbcHmacSha256, KAT_PAYLOAD);
    let reference = blowfish_reference(&keys, KAT_NONCE, KAT_HEADER, KAT_PAYLOAD, KAT_IV);
    assert_eq!([body, trailer].concat(), reference);
}

// ---------------------------------------------------------------------------
// Blowfish's byte limit: a new subkey every 4096 packets.
// ---------------------------------------------------------------------------

#[test]
fn blowfish_subkeys_change_every_4096_packets() {
    let keys = kat_keys(SuiteId::BlowfishCbcHmacSha256);
    let at = |seq: u64| packet_cipher_key(&keys, 9, subkey_group(seq));
    assert_eq!(BLOWFISH_PACKETS_PER_SUBKEY, 4096);
    assert_eq!(at(0).as_slice(), at(4095).as_slice());
    assert_ne!(at(4095).as_slice(), at(4096).as_slice());
    assert_eq!(at(4096).as_slice(), at(8191).as_slice());
    assert_ne!(at(0).as_slice(), packet_cipher_key(&keys, 10, 0).as_slice(), "per node");

    // Sealing the same payload, header and IV at seq 4095 and 4096 uses different
    // subkeys, and each result is the reference construction under its own group's.
    let mut cipher = BlowfishCbcHmac::new();
    let mut sealed = Vec::new();
    for seq in [4095u64, 4096] {
        let nonce = Nonce { node: 9, seq };
        let mut body = KAT_PAYLOAD.to_vec();
        let mut trailer = [0u8; 24];
        cipher.seal_packet_with_iv(&keys, nonce, KAT_HEADER, &mut body, &mut trailer, KAT_IV).unwrap();
        assert_eq!(cipher.cached_group(&keys, 9), Some(seq >> 12));
        let out = [body, trailer.to_vec()].concat();
        assert_eq!(out, blowfish_reference(&keys, nonce, KAT_HEADER, KAT_PAYLOAD, KAT_IV));
        sealed.push(out);
    }
    assert_ne!(sealed[0][..KAT_PAYLOAD.len()], sealed[1][..KAT_PAYLOAD.len()]);
}

#[test]
fn blowfish_derives_a_subkey_once_per_group_not_per_packet() {
    let keys = kat_keys(SuiteId::BlowfishCbcHmacSha256);
    let mut cipher = BlowfishCbcHmac::new();
    let mut body = [0u8; 64];
    let mut trailer = [0u8; 24];
    for seq in 0..=4096u64 {
        cipher.seal_packet(&keys, Nonce { node: 1, seq }, b"h", &mut body, &mut trailer).unwrap();
        let expected = if seq < 4096 { 1 } else { 2 };
        assert_eq!(cipher.derivations(), expected, "after seq {seq}");
    }
    // Another node has its own subkeys; forgetting the keys empties the cache.
    cipher.seal_packet(&keys, Nonce { node: 2, seq: 0 }, b"h", &mut body, &mut trailer).unwrap();
    assert_eq!(cipher.derivations(), 3);
    cipher.forget(&keys);
    assert_eq!(cipher.cached_group(&keys, 1), None);
}

#[test]
fn forged_blowfish_packets_derive_no_subkeys() {
    let keys = kat_keys(SuiteId::BlowfishCbcHmacSha256);
    let mut cipher = BlowfishCbcHmac::new();
    for node in 0..1000u32 {
        let mut body = [0u8; 64];
        let trailer = [node as u8; 24];
        let nonce = Nonce { node, seq: u64::from(node) << 12 };
        assert_eq!(cipher.open_packet(&keys, nonce, b"h", &mut body, &trailer), Err(CipherError::BadTag));
    }
    assert_eq!(cipher.derivations(), 0, "the tag is checked before any subkey is derived");
}

#[test]
fn blowfish_refuses_payloads_beyond_its_per_key_budget() {
    let keys = kat_keys(SuiteId::BlowfishCbcHmacSha256);
    let mut cipher = SuiteId::BlowfishCbcHmacSha256.cipher();
    let mut trailer = [0u8; 24];
    let mut ok = vec![0u8; BLOWFISH_MAX_PAYLOAD];
    cipher.seal_packet(&keys, KAT_NONCE, b"", &mut ok, &mut trailer).unwrap();
    cipher.open_packet(&keys, KAT_NONCE, b"", &mut ok, &trailer).unwrap();
    let mut big = vec![0u8; BLOWFISH_MAX_PAYLOAD + 1];
    assert_eq!(
        cipher.seal_packet(&keys, KAT_NONCE, b"", &mut big, &mut trailer),
        Err(CipherError::TooLong { suite: SuiteId::BlowfishCbcHmacSha256, what: "packet", len: 2049, max: 2048 })
    );
    assert_eq!(cipher.open_packet(&keys, KAT_NONCE, b"", &mut big, &trailer), Err(CipherError::BadTag));
    assert_eq!(BLOWFISH_MAX_PAYLOAD as u64 * BLOWFISH_PACKETS_PER_SUBKEY, 8 << 20, "8 MiB per subkey");

    let too_long = vec![0u8; BLOWFISH_MAX_MESSAGE + 1];
    assert!(matches!(cipher.encrypt_message(&keys, b"", &too_long), Err(CipherError::TooLong { .. })));
}

// ---------------------------------------------------------------------------
// Misuse: wrong suite, wrong trailer length, wrong keys.
// ---------------------------------------------------------------------------

#[test]
fn misuse_is_a_typed_error_not_a_panic() {
    for suite in SuiteId::ALL {
        let keys = kat_keys(suite);
        let mut cipher = suite.cipher();
        let mut body = KAT_PAYLOAD.to_vec();
        for len in [0, suite.trailer_len() - 1, suite.trailer_len() + 1] {
            let mut trailer = vec![0u8; len];
            assert_eq!(
                cipher.seal_packet(&keys, KAT_NONCE, KAT_HEADER, &mut body, &mut trailer),
                Err(CipherError::TrailerLength { suite, len, expected: suite.trailer_len() })
            );
            assert!(cipher.open_packet(&keys, KAT_NONCE, KAT_HEADER, &mut body, &trailer).is_err());
        }
        for other in SuiteId::ALL.into_iter().filter(|s| *s != suite) {
            let wrong = kat_keys(other);
            let mut trailer = vec![0u8; suite.trailer_len()];
            let expected = Err(CipherError::WrongSuite { keys: other, cipher: suite });
            assert_eq!(cipher.seal_packet(&wrong, KAT_NONCE, KAT_HEADER, &mut body, &mut trailer), expected);
            assert_eq!(cipher.open_packet(&wrong, KAT_NONCE, KAT_HEADER, &mut body, &trailer), expected);
            assert_eq!(cipher.encrypt_message(&wrong, b"", b"x").map(|_| ()), expected);
            assert_eq!(cipher.decrypt_message(&wrong, b"", &[0; 100]).map(|_| ()), expected);
        }
    }
}

#[test]
fn other_keys_or_nonce_do_not_open() {
    for suite in SuiteId::ALL {
        let keys = kat_keys(suite);
        let (body, trailer) = kat_seal(suite, KAT_PAYLOAD);
        let other_epoch = EpochKeys::derive(suite, FIXED_EPOCH + 1, &fixed_group_key());
        let other_group = EpochKeys::derive(suite, FIXED_EPOCH, &SecretKey::from_bytes([0xee; 32]));
        let mut cipher = suite.cipher();
        for (k, nonce) in [
            (&other_epoch, KAT_NONCE),
            (&other_group, KAT_NONCE),
            (&keys, Nonce { node: KAT_NONCE.node + 1, ..KAT_NONCE }),
            (&keys, Nonce { seq: KAT_NONCE.seq + 1, ..KAT_NONCE }),
        ] {
            let mut b = body.clone();
            assert_eq!(cipher.open_packet(k, nonce, KAT_HEADER, &mut b, &trailer), Err(CipherError::BadTag), "{suite}");
        }
    }
}

#[test]
fn messages_are_bound_to_keys_and_aad_and_short_ones_work() {
    for suite in SuiteId::ALL {
        let keys = kat_keys(suite);
        let cipher = suite.cipher();
        for len in [0usize, 1, 7, 8, 9, 100] {
            let pt = vec![0x5a; len];
            let ct = cipher.encrypt_message(&keys, b"room@muc", &pt).unwrap();
            assert_eq!(cipher.decrypt_message(&keys, b"room@muc", &ct).unwrap(), pt, "{suite} {len}");
            assert_eq!(cipher.decrypt_message(&keys, b"other@muc", &ct), Err(CipherError::BadTag));
            let other = EpochKeys::derive(suite, FIXED_EPOCH + 1, &fixed_group_key());
            assert_eq!(cipher.decrypt_message(&other, b"room@muc", &ct), Err(CipherError::BadTag));
        }
        let a = cipher.encrypt_message(&keys, b"", b"same").unwrap();
        let b = cipher.encrypt_message(&keys, b"", b"same").unwrap();
        assert_ne!(a, b, "{suite}: a fresh salt per message");
    }
}

// ---------------------------------------------------------------------------
// GroupSeal.
// ---------------------------------------------------------------------------

fn group_key(epoch: u32) -> SecretKey {
    SecretKey::from_bytes([epoch as u8; 32])
}

fn seal_one(seal: &mut GroupSeal, epoch: u32, seq: u64) -> (Vec<u8>, Vec<u8>) {
    let mut body = KAT_PAYLOAD.to_vec();
    let mut tag = vec![0u8; seal.tag_len()];
    seal.seal(epoch, Nonce { node: 1, seq }, KAT_HEADER, &mut body, &mut tag).unwrap();
    (body, tag)
}

fn open_one(seal: &mut GroupSeal, epoch: u32, seq: u64, sealed: &(Vec<u8>, Vec<u8>)) -> Result<Vec<u8>, SealError> {
    let mut body = sealed.0.clone();
    seal.open(epoch, Nonce { node: 1, seq }, KAT_HEADER, &mut body, &sealed.1)?;
    Ok(body)
}

#[test]
fn group_seal_keeps_a_window_of_epochs() {
    for suite in SuiteId::ALL {
        let mut tx = GroupSeal::new(suite, 2, &group_key(2));
        let mut rx = GroupSeal::new(suite, 2, &group_key(2));
        assert_eq!(tx.tag_len(), suite.trailer_len());
        let early = seal_one(&mut tx, 2, 0);
        for epoch in 3..=5 {
            tx.install(epoch, &group_key(epoch)).unwrap();
            rx.install(epoch, &group_key(epoch)).unwrap();
        }
        assert_eq!(rx.current_epoch(), 5);
        assert_eq!(rx.epochs().collect::<Vec<_>>(), [2, 3, 4, 5], "current + {DEFAULT_PAST_EPOCHS} past");
        assert_eq!(open_one(&mut rx, 2, 0, &early).unwrap(), KAT_PAYLOAD, "{suite}: in flight across rekeys");
        let late = seal_one(&mut tx, 5, 1);
        assert_eq!(open_one(&mut rx, 5, 1, &late).unwrap(), KAT_PAYLOAD);

        rx.install(9, &group_key(9)).unwrap();
        assert_eq!(rx.epochs().collect::<Vec<_>>(), [3, 4, 5, 9], "gaps are fine");
        // Epoch 2 left the live window for the history: it still opens (repair
        // of what was sent in it) but is not live.
        assert_eq!(rx.history().collect::<Vec<_>>(), [2]);
        assert!(!rx.is_live(2) && rx.is_live(3) && rx.is_live(9));
        assert_eq!(open_one(&mut rx, 2, 0, &early).unwrap(), KAT_PAYLOAD);
        assert_eq!(open_one(&mut rx, 6, 0, &early), Err(SealError::UnknownEpoch(6)));
        assert_eq!(open_one(&mut rx, 5, 0, &early), Err(SealError::BadTag), "sealed under epoch 2");
        let mut b = [0u8; 8];
        let mut t = vec![0u8; rx.tag_len()];
        assert_eq!(rx.seal(6, KAT_NONCE, b"", &mut b, &mut t), Err(SealError::UnknownEpoch(6)));
    }
}

#[test]
fn retired_epochs_no_longer_open_what_a_removed_member_seals() {
    for suite in SuiteId::ALL {
        // The removed member keeps epoch 4; the others move to 5.
        let mut removed = GroupSeal::new(suite, 4, &group_key(4));
        let mut rx = GroupSeal::new(suite, 3, &group_key(3));
        rx.install(4, &group_key(4)).unwrap();
        rx.install(5, &group_key(5)).unwrap();
        let forged = seal_one(&mut removed, 4, 7);
        assert_eq!(open_one(&mut rx, 4, 7, &forged).unwrap(), KAT_PAYLOAD, "{suite}: within the grace");
        rx.retire_before(5);
        assert_eq!(rx.epochs().collect::<Vec<_>>(), [5]);
        // Kept for repair of what was sent in it, but no longer live: the
        // transport's receiver takes nothing new under it (`receiver`'s
        // history tests).
        assert!(!rx.is_live(4) && !rx.is_live(3) && rx.is_live(5));
        assert_eq!(rx.history().collect::<Vec<_>>(), [3, 4]);
        rx.retire_before(99);
        assert_eq!(rx.epochs().collect::<Vec<_>>(), [5], "the current epoch stays");
    }
}

#[test]
fn the_history_holds_epochs_given_by_the_key_server_within_its_bound() {
    for suite in SuiteId::ALL {
        let mut tx = GroupSeal::new(suite, 7, &group_key(7));
        let sent = seal_one(&mut tx, 7, 3);
        // A member back from away, resynced to epoch 12: it missed 7.
        let mut rx = GroupSeal::new(suite, 12, &group_key(12));
        assert_eq!(open_one(&mut rx, 7, 3, &sent), Err(SealError::UnknownEpoch(7)));
        rx.remember(7, &group_key(7));
        rx.remember(12, &group_key(99)); // live: left alone
        assert_eq!(open_one(&mut rx, 7, 3, &sent).unwrap(), KAT_PAYLOAD, "{suite}");
        assert!(!rx.is_live(7) && rx.is_live(12));
        assert_eq!(rx.history().collect::<Vec<_>>(), [7]);
    }
    // Resynced from 5 to 10: 6..=9 were missed between two live epochs.
    let mut rx = GroupSeal::new(SuiteId::Aes256Gcm, 5, &group_key(5));
    rx.install(10, &group_key(10)).unwrap();
    for e in 4..=10 {
        rx.remember(e, &group_key(e));
    }
    assert_eq!(rx.epochs().collect::<Vec<_>>(), [5, 10]);
    assert_eq!(rx.history().collect::<Vec<_>>(), [4, 6, 7, 8, 9]);
    let mut tx = GroupSeal::new(SuiteId::Aes256Gcm, 7, &group_key(7));
    assert_eq!(open_one(&mut rx, 7, 1, &seal_one(&mut tx, 7, 1)).unwrap(), KAT_PAYLOAD);
    assert!(!rx.is_live(7));

    let mut rx = GroupSeal::new(SuiteId::ChaCha20Poly1305, 5000, &group_key(5000));
    for e in 0..(MAX_HISTORY_EPOCHS as u32 + 10) {
        rx.remember(e, &group_key(e));
    }
    assert_eq!(rx.history().count(), MAX_HISTORY_EPOCHS);
    assert_eq!(rx.history().next(), Some(10), "the oldest went first");
}

#[test]
fn group_seal_refuses_to_go_backwards() {
    let mut seal = GroupSeal::with_past_epochs(SuiteId::Aes256Gcm, 0, 10, &group_key(10));
    assert_eq!(seal.install(10, &group_key(10)), Err(InstallError::NotNewer { epoch: 10, current: 10 }));
    assert_eq!(seal.install(3, &group_key(3)), Err(InstallError::NotNewer { epoch: 3, current: 10 }));
    seal.install(11, &group_key(11)).unwrap();
    assert_eq!(seal.epochs().collect::<Vec<_>>(), [11], "no past epochs kept");
    assert!(format!("{seal:?}").contains("epochs: [11]"));
}

#[test]
fn group_seal_rejects_other_group_keys_and_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    for suite in SuiteId::ALL {
        let mut tx = GroupSeal::new(suite, 1, &group_key(1));
        let mut outsider = GroupSeal::new(suite, 1, &group_key(99));
        assert_send(&tx);
        let sealed = seal_one(&mut tx, 1, 0);
        assert_eq!(open_one(&mut outsider, 1, 0, &sealed), Err(SealError::BadTag));
        let mut short_tag = (sealed.0.clone(), sealed.1[1..].to_vec());
        assert_eq!(open_one(&mut tx, 1, 0, &short_tag), Err(SealError::BadTag));
        short_tag.1.clear();
        let mut b = sealed.0.clone();
        assert!(matches!(tx.seal(1, KAT_NONCE, b"", &mut b, &mut short_tag.1), Err(SealError::Exhausted(_))));
    }
}

#[test]
fn group_messages_name_their_epoch() {
    for suite in SuiteId::ALL {
        let mut tx = GroupSeal::new(suite, 1, &group_key(1));
        let mut rx = GroupSeal::new(suite, 1, &group_key(1));
        let m1 = tx.encrypt_message(b"aad", b"hello").unwrap();
        assert_eq!(m1[..4], 1u32.to_be_bytes());
        tx.install(2, &group_key(2)).unwrap();
        let m2 = tx.encrypt_message(b"aad", b"world").unwrap();
        assert_eq!(rx.decrypt_message(b"aad", &m2), Err(CipherError::UnknownEpoch(2)));
        rx.install(2, &group_key(2)).unwrap();
        assert_eq!(rx.decrypt_message(b"aad", &m1).unwrap(), b"hello");
        assert_eq!(rx.decrypt_message(b"aad", &m2).unwrap(), b"world");
        let mut relabelled = m1.clone();
        relabelled[..4].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(rx.decrypt_message(b"aad", &relabelled), Err(CipherError::BadTag));
        assert!(matches!(rx.decrypt_message(b"aad", &m1[..3]), Err(CipherError::Truncated { .. })));
    }
}

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

fn any_suite() -> impl Strategy<Value = SuiteId> {
    prop::sample::select(SuiteId::ALL.to_vec())
}

fn any_nonce() -> impl Strategy<Value = Nonce> {
    (any::<u32>(), any::<u64>()).prop_map(|(node, seq)| Nonce { node, seq })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn packets_round_trip(
        suite in any_suite(),
        nonce in any_nonce(),
        header in prop::collection::vec(any::<u8>(), 0..64),
        payload in prop::collection::vec(any::<u8>(), 8..=BLOWFISH_MAX_PAYLOAD),
    ) {
        let keys = EpochKeys::derive(suite, 1, &fixed_group_key());
        let mut cipher = suite.cipher();
        let mut body = payload.clone();
        let mut trailer = vec![0u8; cipher.trailer_len()];
        cipher.seal_packet(&keys, nonce, &header, &mut body, &mut trailer).unwrap();
        prop_assert_eq!(body.len(), payload.len());
        if payload.len() >= 16 {
            prop_assert_ne!(&body, &payload);
        }
        cipher.open_packet(&keys, nonce, &header, &mut body, &trailer).unwrap();
        prop_assert_eq!(body, payload);
    }

    #[test]
    fn any_single_bit_flip_is_caught(
        suite in any_suite(),
        nonce in any_nonce(),
        header in prop::collection::vec(any::<u8>(), 0..32),
        payload in prop::collection::vec(any::<u8>(), 8..200),
        bit in any::<prop::sample::Index>(),
    ) {
        let keys = EpochKeys::derive(suite, 1, &fixed_group_key());
        let mut cipher = suite.cipher();
        let mut body = payload.clone();
        let mut trailer = vec![0u8; cipher.trailer_len()];
        cipher.seal_packet(&keys, nonce, &header, &mut body, &mut trailer).unwrap();
        let mut header = header;
        let bits = 8 * (header.len() + body.len() + trailer.len());
        let i = bit.index(bits);
        let (byte, mask) = (i / 8, 1u8 << (i % 8));
        if byte < header.len() {
            header[byte] ^= mask;
        } else if byte < header.len() + body.len() {
            body[byte - header.len()] ^= mask;
        } else {
            trailer[byte - header.len() - body.len()] ^= mask;
        }
        prop_assert_eq!(cipher.open_packet(&keys, nonce, &header, &mut body, &trailer), Err(CipherError::BadTag));
    }

    #[test]
    fn short_payloads_round_trip(
        suite in any_suite(),
        nonce in any_nonce(),
        payload in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let keys = EpochKeys::derive(suite, 1, &fixed_group_key());
        let mut cipher = suite.cipher();
        let mut body = payload.clone();
        let mut trailer = vec![0u8; cipher.trailer_len()];
        cipher.seal_packet(&keys, nonce, b"hdr", &mut body, &mut trailer).unwrap();
        cipher.open_packet(&keys, nonce, b"hdr", &mut body, &trailer).unwrap();
        prop_assert_eq!(body, payload);
    }

    #[test]
    fn messages_round_trip(
        suite in any_suite(),
        aad in prop::collection::vec(any::<u8>(), 0..32),
        plaintext in prop::collection::vec(any::<u8>(), 0..3000),
    ) {
        let keys = EpochKeys::derive(suite, 1, &fixed_group_key());
        let cipher = suite.cipher();
        let ct = cipher.encrypt_message(&keys, &aad, &plaintext).unwrap();
        prop_assert_eq!(cipher.decrypt_message(&keys, &aad, &ct).unwrap(), plaintext);
    }

    #[test]
    fn truncated_or_damaged_messages_are_errors(
        suite in any_suite(),
        plaintext in prop::collection::vec(any::<u8>(), 0..100),
        cut in any::<prop::sample::Index>(),
        bit in any::<prop::sample::Index>(),
    ) {
        let keys = EpochKeys::derive(suite, 1, &fixed_group_key());
        let cipher = suite.cipher();
        let ct = cipher.encrypt_message(&keys, b"", &plaintext).unwrap();
        prop_assert!(cipher.decrypt_message(&keys, b"", &ct[..cut.index(ct.len())]).is_err());
        let mut damaged = ct.clone();
        let i = bit.index(8 * ct.len());
        damaged[i / 8] ^= 1 << (i % 8);
        prop_assert_eq!(cipher.decrypt_message(&keys, b"", &damaged), Err(CipherError::BadTag));
    }

    #[test]
    fn garbage_never_panics(
        suite in any_suite(),
        nonce in any_nonce(),
        garbage in prop::collection::vec(any::<u8>(), 0..300),
        trailer in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let keys = EpochKeys::derive(suite, 1, &fixed_group_key());
        let mut cipher = suite.cipher();
        prop_assert!(cipher.decrypt_message(&keys, &garbage, &garbage).is_err());
        let mut body = garbage.clone();
        prop_assert!(cipher.open_packet(&keys, nonce, b"", &mut body, &trailer).is_err());
        let mut seal = GroupSeal::new(suite, 1, &fixed_group_key());
        prop_assert!(seal.decrypt_message(b"", &garbage).is_err());
        let mut body = garbage;
        prop_assert!(seal.open(1, nonce, b"", &mut body, &trailer).is_err());
    }
}

//! The group layer's multicast formats under fuzzing: a certified signer
//! for signed chat, the checks on chat messages and beacons, and file
//! envelopes (for the group, or restricted under a test key) fed in
//! chunks.
//!
//! Owns those inputs and checks. It must not hold properties (`fuzz.rs`
//! does).

use std::sync::Arc;

use lsim_im::group::chat::{ChatMessage, decode_beacon, encode_beacon};
use lsim_im::group::envelope::{Incoming, Outgoing};
use lsim_im::group::landing::sanitize;
use lsim_im::group::signed;
use lsim_keymgmt::filekey::{self, FileKey, Wrap};
use lsim_keymgmt::key::SecretKey;
use lsim_transport::source::ObjectSource;

/// The key server's key and a member it certified, for signed chat.
pub fn signer() -> &'static (ed25519_dalek::SigningKey, Arc<lsim_keymgmt::cert::Signer>) {
    static S: std::sync::OnceLock<(ed25519_dalek::SigningKey, Arc<lsim_keymgmt::cert::Signer>)> =
        std::sync::OnceLock::new();
    S.get_or_init(|| {
        let server = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let key = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let cert = lsim_keymgmt::cert::MemberCert::issue(
            &server,
            "ayen",
            1,
            0x0101_0001,
            key.verifying_key().to_bytes(),
            u64::MAX,
        );
        (server, Arc::new(lsim_keymgmt::cert::Signer::new(key, cert)))
    })
}

/// A signed chat message opens only as it was signed: any change is refused.
pub fn check_signed_chat(bytes: &[u8], original: &[u8]) {
    let (server, _) = signer();
    if let Ok((m, cert)) = signed::open(bytes, &server.verifying_key(), 0) {
        assert_eq!(bytes, original, "a changed signed message opened");
        assert_eq!(m.from, cert.user);
    }
}

pub fn check_chat(bytes: &[u8]) {
    if let Ok(m) = ChatMessage::decode(bytes) {
        assert_eq!(m.encode(), bytes, "an accepted chat message is not canonical");
        let _ = m.id_hex();
    }
    if let Some(nick) = decode_beacon(bytes) {
        assert_eq!(encode_beacon(&nick), bytes);
    }
}

/// Feeds an envelope in chunks; what comes out is never more than went in.
pub fn check_envelope(bytes: &[u8], chunks: &[usize]) {
    check_envelope_with(Incoming::new(Vec::new()), bytes, chunks);
}

/// The same for a receiver that holds the restricted files' test key (its
/// opener hands it out whatever the wraps say, so that damaged headers and
/// bytes still reach the decryption).
pub fn check_restricted_envelope(bytes: &[u8], chunks: &[usize]) {
    let opener = Arc::new(|_: &[Wrap]| Some(FileKey::from_bytes(FILE_KEY)));
    check_envelope_with(Incoming::with_keys(Vec::new(), opener), bytes, chunks);
}

pub const FILE_KEY: [u8; 32] = [9; 32];

/// An envelope for member 2 only, under [`FILE_KEY`].
pub fn restricted_envelope(name: &str, data: &[u8]) -> Vec<u8> {
    let key = FileKey::from_bytes(FILE_KEY);
    let wraps = [filekey::wrap(&SecretKey::from_bytes([2; 32]), "lsim", 2, &key).unwrap()];
    let mut o = Outgoing::restricted(name, data.to_vec(), signer().1.clone(), &wraps, &key).unwrap();
    let mut all = vec![0u8; o.len() as usize];
    o.read_at(0, &mut all).unwrap();
    all
}

fn check_envelope_with(mut inc: Incoming<Vec<u8>>, bytes: &[u8], chunks: &[usize]) {
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let n = chunks.get(i % chunks.len().max(1)).copied().unwrap_or(bytes.len()).max(1).min(bytes.len() - at);
        i += 1;
        if inc.push(&bytes[at..at + n]).is_err() {
            return;
        }
        at += n;
    }
    if let Ok((r, out)) = inc.finish() {
        assert!(out.len() as u64 == r.size && out.len() <= bytes.len());
        let safe = sanitize(&r.name);
        assert!(!safe.is_empty() && !safe.contains(['/', '\\']) && !safe.starts_with('.'));
    }
}

pub fn envelope(name: &str, data: &[u8]) -> Vec<u8> {
    let mut o = Outgoing::new(name, data.to_vec());
    let mut all = vec![0u8; o.len() as usize];
    o.read_at(0, &mut all).unwrap();
    all
}

//! The rekey message: new tree keys, each wrapped under a key some members
//! already hold, signed by the key server.
//!
//! Owns the message's shape (`Rekey`, `WrappedKey`), how one key is wrapped
//! under another (AES-256-GCM), its binary encoding (the shared `Codec`
//! over the bounded `codec::Reader`, re-exported here for the crate's other
//! formats), and the Ed25519 signature around it (`SignedRekey`). It decides nothing:
//! which keys to wrap under which is the tree's business (`tree`), and what
//! a member does with a message is the member's (`member`). It must not hold
//! state between calls.
//!
//! # Encoding (version 2, integers big-endian)
//!
//! A rekey body:
//!
//! ```text
//! offset size  field
//!  0      1    format version (2)
//!  1      4    group
//!  5      4    epoch       the epoch this rekey starts
//!  9      4    prev_epoch  the epoch it follows (< epoch)
//! 13      4    count       number of wrapped keys
//! 17    64×count wrapped keys, each:
//!          4    node           the node whose new key this is
//!          4    version        that key's version (always = epoch)
//!          4    under_node     the node whose key wraps it
//!          4    under_version  that key's version (≤ epoch)
//!         48    ciphertext     AES-256-GCM of the 32-byte key ‖ 16-byte tag
//!  then   2    revoked     number of revoked user names (≤ MAX_REVOKED)
//!        each: 1 length (1..=MAX_REVOKED_NAME) ‖ the name, UTF-8
//! ```
//!
//! Version 2 added the revoked names: every rekey carries the group's whole
//! list, signed with the rest, so a member that applies it refuses whatever
//! those users signed from then on (replays of older messages too).
//!
//! A signed rekey, as multicast to the group:
//!
//! ```text
//!  0      1    format version (2)
//!  1      4    body length (≤ MAX_BODY)
//!  5      n    body, as above
//!  5+n   64    Ed25519 signature by the key server over
//!              SIGNATURE_CONTEXT ‖ body
//! ```
//!
//! Decoding checks every length before using it: the counts must account for
//! exactly the bytes that follow them, so a reader never allocates more than
//! the input implies, and no input makes it panic.
//!
//! # Wrapping
//!
//! A wrapped key is AES-256-GCM under the wrapping key with
//!
//! - nonce = group ‖ node ‖ version (4 bytes each) of the *wrapped* key;
//! - associated data = `WRAP_CONTEXT` ‖ group ‖ epoch ‖ node ‖ version ‖
//!   under_node ‖ under_version, so a ciphertext cannot be moved to another
//!   group, epoch, target or wrapping key.
//!
//! Why the nonce never repeats under one wrapping key: a key's version is
//! the epoch in which the key server made it, a node gets at most one new key
//! per epoch, and epochs of a group strictly increase and never repeat (the
//! tree persists its epoch). So (node, version) names each key a group ever
//! made exactly once, and the tree wraps a given key under a given wrapping
//! key at most once. Individual keys (a member's, given at registration) may
//! wrap keys of several groups; the group id in the nonce keeps those apart.
//! The one way to break this is to roll a group's tree back to an older saved
//! state and commit again; the key server must never do that.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use thiserror::Error;
use zeroize::Zeroize;

pub(crate) use lsim_transport::codec::{Codec, Reader, Short, Trailing};

use crate::key::SecretKey;
use crate::tree::NodeId;

/// Version of the rekey encodings.
pub const VERSION: u8 = 2;
/// Most revoked user names a rekey carries.
pub const MAX_REVOKED: usize = 4096;
/// Longest revoked user name (bytes).
pub const MAX_REVOKED_NAME: usize = 255;
/// Bytes of a rekey body before its wrapped keys.
pub const BODY_HEADER_LEN: usize = 17;
/// Bytes of one wrapped key on the wire.
pub const WRAPPED_LEN: usize = 64;
/// Bytes of a wrapped key's ciphertext: the 32-byte key and a 16-byte tag.
pub const CIPHERTEXT_LEN: usize = SecretKey::LEN + TAG_LEN;
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Bytes a signed rekey adds around its body.
pub const SIGNED_OVERHEAD: usize = 5 + SIGNATURE_LEN;
/// Largest body a reader accepts (a million wrapped keys; a batch of every
/// member of a million-member group leaving needs fewer; and the longest
/// revoked list).
pub const MAX_BODY: usize = BODY_HEADER_LEN + WRAPPED_LEN * (1 << 20) + 2 + MAX_REVOKED * (1 + MAX_REVOKED_NAME);
/// Prefix of every signed message, so that a rekey signature can never be
/// taken for a signature over anything else the key server signs.
pub const SIGNATURE_CONTEXT: &[u8] = b"lsim/v1/rekey-signature\0";
/// Prefix of the associated data of every wrapped key.
pub const WRAP_CONTEXT: &[u8] = b"lsim/v1/wrapped-key\0";

const TAG_LEN: usize = 16;

/// Why a rekey was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RekeyError {
    /// Fewer bytes than a field needs.
    #[error("truncated rekey: {what} needs {need} bytes, {have} left")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// Bytes that are not a rekey of this version (or a path that is not a path).
    #[error("malformed rekey: {0}")]
    Malformed(String),
    /// The signature does not verify under the key server's key: forged,
    /// damaged, or signed by someone else.
    #[error("rekey signature does not verify under the key server's key")]
    BadSignature,
    /// For another group.
    #[error("rekey for group {got}, this member is in group {expected}")]
    WrongGroup {
        /// This member's group.
        expected: u32,
        /// The message's group.
        got: u32,
    },
    /// An epoch this member already has (or has passed).
    #[error("replayed rekey: epoch {epoch}, member is already at epoch {current}")]
    Replayed {
        /// The message's epoch.
        epoch: u32,
        /// The member's epoch.
        current: u32,
    },
    /// The message follows an epoch this member never reached: it missed
    /// rekeys and must resync over the registrar.
    #[error("rekey gap: member is at epoch {current}, rekey follows epoch {got}; resync needed")]
    Gap {
        /// The member's epoch.
        current: u32,
        /// The epoch the message follows (its `prev_epoch`).
        got: u32,
    },
    /// An authentic rekey that does not take this member to the new group
    /// key: it holds none of the wrapping keys (it is no longer a member, or
    /// its path is stale).
    #[error("rekey to epoch {epoch} carries no way to the new group key for this member")]
    CannotUnwrap {
        /// The message's epoch.
        epoch: u32,
    },
    /// The member has no keys for the group yet (no path installed).
    #[error("no keys installed for group {group}")]
    NoKeys {
        /// The group.
        group: u32,
    },
}

/// Names one version of one node's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId {
    /// The node.
    pub node: NodeId,
    /// The key's version (the epoch in which it was made).
    pub version: u32,
}

/// One new key, encrypted under a key that some members hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// The node whose new key this is.
    pub node: NodeId,
    /// The new key's version (the rekey's epoch).
    pub version: u32,
    /// The node whose key wraps it.
    pub under_node: NodeId,
    /// The wrapping key's version.
    pub under_version: u32,
    /// AES-256-GCM ciphertext of the key followed by its tag.
    pub ciphertext: [u8; CIPHERTEXT_LEN],
}

impl WrappedKey {
    /// Wraps `key` (the key `target` names) under `under_key` (the key `under`
    /// names) for `group`'s rekey to `epoch`.
    pub fn seal(
        group: u32,
        epoch: u32,
        target: KeyId,
        key: &SecretKey,
        under: KeyId,
        under_key: &SecretKey,
    ) -> WrappedKey {
        let cipher = Aes256Gcm::new(under_key.as_bytes().into());
        let mut ciphertext = [0u8; CIPHERTEXT_LEN];
        ciphertext[..SecretKey::LEN].copy_from_slice(key.as_bytes());
        let ad = associated_data(group, epoch, target, under);
        let plain = &mut ciphertext[..SecretKey::LEN];
        let Ok(tag) = cipher.encrypt_inout_detached(&nonce(group, target), &ad, plain.into()) else {
            // aes-gcm refuses only plaintexts over 2^36 bytes or associated data
            // over 2^61 bytes; ours are 32 and 44.
            unreachable!("AES-GCM refused a 32-byte key");
        };
        ciphertext[SecretKey::LEN..].copy_from_slice(&tag);
        WrappedKey {
            node: target.node,
            version: target.version,
            under_node: under.node,
            under_version: under.version,
            ciphertext,
        }
    }

    /// Unwraps with `under_key`, the key `self.under()` names; `None` if the
    /// key is not that one or the ciphertext was altered.
    pub fn open(&self, group: u32, epoch: u32, under_key: &SecretKey) -> Option<SecretKey> {
        let cipher = Aes256Gcm::new(under_key.as_bytes().into());
        let mut plain = [0u8; SecretKey::LEN];
        plain.copy_from_slice(&self.ciphertext[..SecretKey::LEN]);
        let mut tag_bytes = [0u8; TAG_LEN];
        tag_bytes.copy_from_slice(&self.ciphertext[SecretKey::LEN..]);
        let tag = Tag::from(tag_bytes);
        let ad = associated_data(group, epoch, self.target(), self.under());
        let opened = cipher.decrypt_inout_detached(&nonce(group, self.target()), &ad, (&mut plain[..]).into(), &tag);
        let key = opened.is_ok().then(|| SecretKey::from_bytes(plain));
        plain.zeroize();
        key
    }

    /// The key this wraps.
    pub fn target(&self) -> KeyId {
        KeyId { node: self.node, version: self.version }
    }

    /// The key it is wrapped under.
    pub fn under(&self) -> KeyId {
        KeyId { node: self.under_node, version: self.under_version }
    }
}

impl Codec for WrappedKey {
    type Error = RekeyError;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.node.0.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.under_node.0.to_be_bytes());
        out.extend_from_slice(&self.under_version.to_be_bytes());
        out.extend_from_slice(&self.ciphertext);
    }

    fn read(r: &mut Reader<'_>) -> Result<WrappedKey, RekeyError> {
        Ok(WrappedKey {
            node: NodeId(r.u32("wrapped node")?),
            version: r.u32("wrapped version")?,
            under_node: NodeId(r.u32("wrapping node")?),
            under_version: r.u32("wrapping version")?,
            ciphertext: r.array("wrapped ciphertext")?,
        })
    }
}

fn nonce(group: u32, target: KeyId) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&group.to_be_bytes());
    n[4..8].copy_from_slice(&target.node.0.to_be_bytes());
    n[8..].copy_from_slice(&target.version.to_be_bytes());
    Nonce::from(n)
}

fn associated_data(group: u32, epoch: u32, target: KeyId, under: KeyId) -> Vec<u8> {
    let mut ad = Vec::with_capacity(WRAP_CONTEXT.len() + 24);
    ad.extend_from_slice(WRAP_CONTEXT);
    for v in [group, epoch, target.node.0, target.version, under.node.0, under.version] {
        ad.extend_from_slice(&v.to_be_bytes());
    }
    ad
}

/// The body of a rekey: everything but the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rekey {
    /// The group.
    pub group: u32,
    /// The epoch this rekey starts.
    pub epoch: u32,
    /// The epoch it follows; a member must be at exactly this epoch to apply it.
    pub prev_epoch: u32,
    /// The new keys, ordered so that a member can unwrap them in one pass:
    /// every key comes after the keys it is wrapped under.
    pub wrapped: Vec<WrappedKey>,
    /// Every user revoked from the group so far (the key server's list, in
    /// order): members refuse what they signed.
    pub revoked: Vec<String>,
}

impl Rekey {
    /// Bytes of the encoded body.
    pub fn encoded_len(&self) -> usize {
        BODY_HEADER_LEN + WRAPPED_LEN * self.wrapped.len() + 2 + self.revoked.iter().map(|n| 1 + n.len()).sum::<usize>()
    }

    /// The encoded body (`Codec::encode` into a new buffer).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        Codec::encode(self, &mut out);
        out
    }

    /// Reads a body that is all of `bytes` (`Codec::from_bytes`).
    pub fn decode(bytes: &[u8]) -> Result<Rekey, RekeyError> {
        Rekey::from_bytes(bytes)
    }
}

impl Codec for Rekey {
    type Error = RekeyError;

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.extend_from_slice(&self.group.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.prev_epoch.to_be_bytes());
        // A body over u32::MAX wrapped keys cannot be built in memory; saturating keeps
        // the encoder total and the reader refuses the result.
        out.extend_from_slice(&u32::try_from(self.wrapped.len()).unwrap_or(u32::MAX).to_be_bytes());
        for w in &self.wrapped {
            w.encode(out);
        }
        // Names past the bounds are not carried (the key server never makes them).
        let names: Vec<&String> =
            self.revoked.iter().filter(|n| (1..=MAX_REVOKED_NAME).contains(&n.len())).take(MAX_REVOKED).collect();
        out.extend_from_slice(&(names.len() as u16).to_be_bytes());
        for n in names {
            out.push(n.len() as u8);
            out.extend_from_slice(n.as_bytes());
        }
    }

    /// Reads a body, which ends its input: its counts must account for
    /// exactly the bytes left.
    fn read(r: &mut Reader<'_>) -> Result<Rekey, RekeyError> {
        if r.left() > MAX_BODY {
            return Err(RekeyError::Malformed(format!("body of {} bytes exceeds {MAX_BODY}", r.left())));
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(RekeyError::Malformed(format!("rekey format version {version}, expected {VERSION}")));
        }
        let group = r.u32("group")?;
        let epoch = r.u32("epoch")?;
        let prev_epoch = r.u32("prev_epoch")?;
        let count = r.u32("count")? as usize;
        if prev_epoch >= epoch {
            return Err(RekeyError::Malformed(format!("rekey to epoch {epoch} follows epoch {prev_epoch}")));
        }
        let need = count.checked_mul(WRAPPED_LEN).ok_or_else(|| RekeyError::Malformed("count overflows".into()))?;
        // The wrapped keys, then at least the revoked names' count.
        if need.saturating_add(2) > r.left() {
            return Err(RekeyError::Truncated { what: "wrapped keys", need: need + 2, have: r.left() });
        }
        let mut wrapped = Vec::with_capacity(count);
        for i in 0..count {
            let w = WrappedKey::read(r)?;
            if w.version != epoch || w.under_version > epoch {
                return Err(RekeyError::Malformed(format!(
                    "wrapped key {i} of rekey to epoch {epoch}: node {} version {} under node {} version {}",
                    w.node.0, w.version, w.under_node.0, w.under_version
                )));
            }
            wrapped.push(w);
        }
        let n = usize::from(r.u16("revoked count")?);
        if n > MAX_REVOKED {
            return Err(RekeyError::Malformed(format!("{n} revoked names exceed {MAX_REVOKED}")));
        }
        let mut revoked = Vec::with_capacity(n.min(r.left()));
        for i in 0..n {
            let len = usize::from(r.u8("revoked name length")?);
            let name = r.take(len, "revoked name")?;
            match std::str::from_utf8(name) {
                Ok(s) if len > 0 => revoked.push(s.to_string()),
                _ => return Err(RekeyError::Malformed(format!("revoked name {i} is empty or not UTF-8"))),
            }
        }
        r.finish("the revoked names")?;
        Ok(Rekey { group, epoch, prev_epoch, wrapped, revoked })
    }
}

/// A rekey body with the key server's signature, as multicast to the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRekey {
    body: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
}

impl SignedRekey {
    /// Encodes and signs `rekey` with the key server's key.
    pub fn sign(rekey: &Rekey, server: &SigningKey) -> SignedRekey {
        let body = rekey.encode();
        let signature = server.sign(&signed_message(&body)).to_bytes();
        SignedRekey { body, signature }
    }

    /// The encoded body that was signed.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The signature.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }

    /// Bytes of the encoding.
    pub fn encoded_len(&self) -> usize {
        SIGNED_OVERHEAD + self.body.len()
    }

    /// The encoding sent to the group (`Codec::encode` into a new buffer).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        Codec::encode(self, &mut out);
        out
    }

    /// Reads the framing (not the signature, not the body) that is all of
    /// `bytes` (`Codec::from_bytes`).
    pub fn decode(bytes: &[u8]) -> Result<SignedRekey, RekeyError> {
        SignedRekey::from_bytes(bytes)
    }

    /// Checks the signature under the key server's key, then reads the body.
    pub fn verify(&self, server: &VerifyingKey) -> Result<Rekey, RekeyError> {
        let signature = Signature::from_bytes(&self.signature);
        server.verify_strict(&signed_message(&self.body), &signature).map_err(|_| RekeyError::BadSignature)?;
        Rekey::decode(&self.body)
    }

    /// Reads, checks and decodes a signed rekey from the wire in one go.
    pub fn open(bytes: &[u8], server: &VerifyingKey) -> Result<Rekey, RekeyError> {
        SignedRekey::decode(bytes)?.verify(server)
    }
}

impl Codec for SignedRekey {
    type Error = RekeyError;

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.extend_from_slice(&u32::try_from(self.body.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&self.body);
        out.extend_from_slice(&self.signature);
    }

    /// Reads the framing, which ends its input (a multicast object of its own).
    fn read(r: &mut Reader<'_>) -> Result<SignedRekey, RekeyError> {
        let version = r.u8("signed rekey version")?;
        if version != VERSION {
            return Err(RekeyError::Malformed(format!("signed rekey format version {version}, expected {VERSION}")));
        }
        let len = r.u32("body length")? as usize;
        if len > MAX_BODY {
            return Err(RekeyError::Malformed(format!("body of {len} bytes exceeds {MAX_BODY}")));
        }
        let body = r.take(len, "body")?.to_vec();
        let signature = r.array("signature")?;
        r.finish("the signature")?;
        Ok(SignedRekey { body, signature })
    }
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_CONTEXT.len() + body.len());
    m.extend_from_slice(SIGNATURE_CONTEXT);
    m.extend_from_slice(body);
    m
}

impl From<Trailing> for RekeyError {
    fn from(t: Trailing) -> RekeyError {
        RekeyError::Malformed(format!("{} trailing bytes after {}", t.left, t.what))
    }
}

impl From<Short> for RekeyError {
    fn from(s: Short) -> RekeyError {
        RekeyError::Truncated { what: s.what, need: s.need, have: s.have }
    }
}

#[cfg(test)]
pub(crate) mod tests;

//! The original LSIM suite: Blowfish-CBC with HMAC-SHA256, encrypt-then-MAC.
//!
//! Owns `BlowfishCbcHmac`. Packets keep their length: CBC with ciphertext
//! stealing (CBC-CS3, NIST SP 800-38A addendum) under a random 8-byte IV; the
//! trailer is `IV (8) || HMAC-SHA256 (truncated to 16)`, the MAC covering the
//! nonce, the header, the IV and the ciphertext, and verified in constant time
//! before anything is decrypted. A payload of exactly one block is plain CBC
//! (as CS3 is defined; the `cts` crate would encrypt it twice). Payloads
//! shorter than one block cannot be stolen from: they are XORed with
//! `Blowfish(IV)` (one block of CFB), which keeps their length and is as
//! secure under a random IV. The transport's bodies are never that short, but
//! no length makes sealing fail or panic.
//!
//! # The byte limit
//!
//! Blowfish has a 64-bit block: after about 2^32 blocks under one key,
//! ciphertext blocks collide and leak plaintext XORs (Sweet32); NIST SP 800-67
//! allows 2^20 blocks (8 MiB) per key for 64-bit block ciphers. No Blowfish key
//! here ever covers more:
//!
//! - packets: with `PRK = HKDF-Extract("lsim/v1/blowfish/packet", seal key)`,
//!   each node's packets are split by `seq >> 12` into groups of
//!   [`BLOWFISH_PACKETS_PER_SUBKEY`] (4096) packets, each group with its own
//!   Blowfish key `HKDF-Expand(PRK, "lsim/v1/blowfish/packet-cipher" || node
//!   (u32 BE) || group (u64 BE), 56)`; a payload may be at most
//!   [`BLOWFISH_MAX_PAYLOAD`] (2048) bytes, so a subkey encrypts at most
//!   4096 × 256 blocks = 2^20 blocks = 8 MiB (1472-byte packets: 5.75 MiB). This
//!   relies on the `Seal` contract that a (node, seq) pair seals one packet per
//!   epoch. The MAC key, `HKDF-Expand(PRK, "lsim/v1/blowfish/packet-mac", 32)`,
//!   is one per epoch: HMAC-SHA256 has no such limit, and a receiver checks a
//!   packet's tag before it derives anything for the packet's (node, group),
//!   so forged packets cannot make it run Blowfish key schedules.
//! - messages: each message has its own subkeys from a random salt and is at
//!   most [`BLOWFISH_MAX_MESSAGE`] bytes (8 MiB once padded).
//!
//! Deriving a subkey costs an HKDF-Expand plus Blowfish's key schedule (521
//! block encryptions, about 35 µs: more than sealing a 1400-byte packet), so
//! the current subkey of each (key set, node) is cached and rederived only
//! when the node's packets enter the next group.

use std::collections::HashMap;

use blowfish::Blowfish;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit};
use cts::{CbcCs3, Decrypt, Encrypt};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use lsim_transport::seal::Nonce;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::epoch_keys::EpochKeys;
use super::id::SuiteId;
use super::kdf::{MESSAGE_SALT_LEN, expand, hmac_sha256, message_subkey};
use super::{Cipher, CipherError, check_len, check_suite, check_trailer};
use crate::key::random_bytes;

const SUITE: SuiteId = SuiteId::BlowfishCbcHmacSha256;

/// Blowfish's block (and IV) length.
const BLOCK: usize = 8;
/// Bytes of HMAC-SHA256 kept in a tag.
const MAC_LEN: usize = 16;
/// Packet trailer: IV then truncated MAC.
pub(crate) const TRAILER_LEN: usize = BLOCK + MAC_LEN;

/// Packets per node that share one Blowfish subkey (`seq >> 12` selects it).
pub const BLOWFISH_PACKETS_PER_SUBKEY: u64 = 1 << SUBKEY_SHIFT;
const SUBKEY_SHIFT: u32 = 12;
/// 2^20 blocks: the most data one Blowfish key may encrypt (NIST SP 800-67).
const MAX_BYTES_PER_KEY: u64 = (1 << 20) * BLOCK as u64;
/// Longest packet payload under Blowfish: 8 MiB / 4096 packets = 2048 bytes.
pub const BLOWFISH_MAX_PAYLOAD: usize = (MAX_BYTES_PER_KEY / BLOWFISH_PACKETS_PER_SUBKEY) as usize;
/// Longest standalone message under Blowfish: with PKCS#7 padding it fills 8 MiB.
pub const BLOWFISH_MAX_MESSAGE: usize = MAX_BYTES_PER_KEY as usize - 1;

/// HKDF-Extract salt of a key set's packet keys.
const PACKET_SALT: &[u8] = b"lsim/v1/blowfish/packet";
/// HKDF info label of the packet MAC key (one per key set).
const PACKET_MAC_INFO: &[u8] = b"lsim/v1/blowfish/packet-mac";
/// HKDF info label of the packet cipher subkeys (followed by node and group).
const PACKET_CIPHER_INFO: &[u8] = b"lsim/v1/blowfish/packet-cipher";
/// Blowfish key length used: the longest it takes (448 bits).
const BLOWFISH_KEY: usize = 56;
/// Bytes of HMAC-SHA256 key.
const MAC_KEY: usize = 32;
/// How many key sets (epochs) one cipher keeps ready.
const CACHED_KEY_SETS: usize = 8;
/// How many (key set, node) subkeys one cipher caches; each holds Blowfish's 4 KiB of S-boxes.
const CACHED_SUBKEYS: usize = 256;
/// Shortest valid message: salt, one padded block, tag.
const MIN_MESSAGE: usize = MESSAGE_SALT_LEN + BLOCK + MAC_LEN;

/// What a key set derives once: the packet HKDF state and the packet MAC key.
struct PacketKeys {
    id: u64,
    hkdf: Hkdf<Sha256>,
    mac: Hmac<Sha256>,
}

/// The Blowfish key of one node's current group of packets.
struct PacketSubkey {
    group: u64,
    cipher: Box<Blowfish>,
}

/// Blowfish-CBC-CS3 + HMAC-SHA256 behind `Cipher`.
pub(crate) struct BlowfishCbcHmac {
    /// Oldest first.
    key_sets: Vec<PacketKeys>,
    /// Current subkey per (`EpochKeys::id`, node).
    subkeys: HashMap<(u64, u32), PacketSubkey>,
    /// Subkeys derived so far (tests check the cache works).
    derivations: u64,
}

/// `PRK = HKDF-Extract("lsim/v1/blowfish/packet", seal key)`.
fn packet_hkdf(keys: &EpochKeys) -> Hkdf<Sha256> {
    Hkdf::<Sha256>::new(Some(PACKET_SALT), keys.seal_key().as_bytes())
}

/// The key set's packet MAC key: `HKDF-Expand(PRK, "lsim/v1/blowfish/packet-mac", 32)`.
/// (The cipher derives it through its cached HKDF state; tests recompute it here.)
#[cfg(test)]
pub(crate) fn packet_mac_key(keys: &EpochKeys) -> Zeroizing<[u8; MAC_KEY]> {
    expand::<MAC_KEY>(&packet_hkdf(keys), &[PACKET_MAC_INFO])
}

/// The Blowfish key of `node`'s packet group `group`:
/// `HKDF-Expand(PRK, "lsim/v1/blowfish/packet-cipher" || node (u32 BE) || group (u64 BE), 56)`.
#[cfg(test)]
pub(crate) fn packet_cipher_key(keys: &EpochKeys, node: u32, group: u64) -> Zeroizing<[u8; BLOWFISH_KEY]> {
    cipher_key(&packet_hkdf(keys), node, group)
}

fn cipher_key(hkdf: &Hkdf<Sha256>, node: u32, group: u64) -> Zeroizing<[u8; BLOWFISH_KEY]> {
    expand::<BLOWFISH_KEY>(hkdf, &[PACKET_CIPHER_INFO, &node.to_be_bytes(), &group.to_be_bytes()])
}

/// The packet group of a packet counter.
pub(crate) fn subkey_group(seq: u64) -> u64 {
    seq >> SUBKEY_SHIFT
}

/// CBC-CS3 encryption in place; payloads shorter than a block get one block of CFB.
fn encrypt_in_place(bf: &Blowfish, iv: &[u8; BLOCK], buf: &mut [u8]) {
    if let Ok(block) = <&mut [u8; BLOCK]>::try_from(&mut *buf) {
        // Exactly one block: CS3 is plain CBC here (NIST SP 800-38A addendum, RFC 3962);
        // the `cts` crate would encrypt it twice, which nothing else reads.
        let mut b = xor_block(block, iv).into();
        bf.encrypt_block(&mut b);
        block.copy_from_slice(&b);
    } else if CbcCs3::inner_iv_init(bf, &(*iv).into()).encrypt(buf).is_err() {
        // Shorter than a block: CTS cannot steal, and the buffer is untouched.
        xor_with_encrypted_iv(bf, iv, buf);
    }
}

/// Inverse of `encrypt_in_place`.
fn decrypt_in_place(bf: &Blowfish, iv: &[u8; BLOCK], buf: &mut [u8]) {
    if let Ok(block) = <&mut [u8; BLOCK]>::try_from(&mut *buf) {
        let mut b = (*block).into();
        bf.decrypt_block(&mut b);
        block.copy_from_slice(&xor_block(&b.into(), iv));
    } else if CbcCs3::inner_iv_init(bf, &(*iv).into()).decrypt(buf).is_err() {
        xor_with_encrypted_iv(bf, iv, buf);
    }
}

fn xor_block(a: &[u8; BLOCK], b: &[u8; BLOCK]) -> [u8; BLOCK] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// XORs `buf` (shorter than a block) with `Blowfish(IV)`: a fresh pad per random IV.
fn xor_with_encrypted_iv(bf: &Blowfish, iv: &[u8; BLOCK], buf: &mut [u8]) {
    let mut pad = (*iv).into();
    bf.encrypt_block(&mut pad);
    for (b, p) in buf.iter_mut().zip(pad.iter()) {
        *b ^= p;
    }
}

/// HMAC-SHA256 over what a packet's tag covers: nonce, header (length-prefixed),
/// IV and ciphertext.
fn packet_mac(mac: &Hmac<Sha256>, nonce: Nonce, header: &[u8], iv: &[u8], ciphertext: &[u8]) -> Hmac<Sha256> {
    let mut m = mac.clone();
    m.update(&nonce.to_bytes());
    m.update(&(header.len() as u64).to_be_bytes());
    m.update(header);
    m.update(iv);
    m.update(ciphertext);
    m
}

/// The Blowfish subkey for `nonce`'s packet, derived only when the node's packets
/// moved to another group. (A free function: it borrows the cache beside a key set.)
fn current_subkey<'a>(
    subkeys: &'a mut HashMap<(u64, u32), PacketSubkey>,
    derivations: &mut u64,
    set: &PacketKeys,
    nonce: Nonce,
) -> &'a Blowfish {
    let group = subkey_group(nonce.seq);
    let slot = (set.id, nonce.node);
    if !subkeys.contains_key(&slot) && subkeys.len() >= CACHED_SUBKEYS {
        // Full (a very large group, or many epochs): keep this key set's subkeys if that helps.
        subkeys.retain(|(id, _), _| *id == set.id);
        if subkeys.len() >= CACHED_SUBKEYS {
            subkeys.clear();
        }
    }
    let derive =
        || PacketSubkey { group, cipher: Box::new(Blowfish::new(&(*cipher_key(&set.hkdf, nonce.node, group)).into())) };
    let subkey = subkeys.entry(slot).or_insert_with(|| {
        *derivations += 1;
        derive()
    });
    if subkey.group != group {
        *derivations += 1;
        *subkey = derive();
    }
    &subkey.cipher
}

impl BlowfishCbcHmac {
    /// A cipher with empty caches.
    pub(crate) fn new() -> BlowfishCbcHmac {
        BlowfishCbcHmac { key_sets: Vec::new(), subkeys: HashMap::new(), derivations: 0 }
    }

    /// Where the packet keys of `keys` are, derived on first use.
    fn key_set(&mut self, keys: &EpochKeys) -> usize {
        if let Some(at) = self.key_sets.iter().position(|k| k.id == keys.id()) {
            return at;
        }
        if self.key_sets.len() >= CACHED_KEY_SETS {
            let evicted = self.key_sets.remove(0);
            self.subkeys.retain(|(id, _), _| *id != evicted.id);
        }
        let hkdf = packet_hkdf(keys);
        let mac = hmac_sha256(&expand::<MAC_KEY>(&hkdf, &[PACKET_MAC_INFO]));
        self.key_sets.push(PacketKeys { id: keys.id(), hkdf, mac });
        self.key_sets.len() - 1
    }

    /// Subkeys derived so far.
    #[cfg(test)]
    pub(crate) fn derivations(&self) -> u64 {
        self.derivations
    }

    /// The packet group whose subkey is cached for `node` under `keys`.
    #[cfg(test)]
    pub(crate) fn cached_group(&self, keys: &EpochKeys, node: u32) -> Option<u64> {
        self.subkeys.get(&(keys.id(), node)).map(|k| k.group)
    }

    /// `seal_packet` with a chosen IV (known-answer tests; production IVs are random).
    pub(crate) fn seal_packet_with_iv(
        &mut self,
        keys: &EpochKeys,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        trailer: &mut [u8],
        iv: [u8; BLOCK],
    ) -> Result<(), CipherError> {
        check_suite(SUITE, keys)?;
        check_trailer(SUITE, trailer.len())?;
        check_len(SUITE, "packet", payload.len(), BLOWFISH_MAX_PAYLOAD as u64)?;
        let at = self.key_set(keys);
        let set = &self.key_sets[at];
        let cipher = current_subkey(&mut self.subkeys, &mut self.derivations, set, nonce);
        encrypt_in_place(cipher, &iv, payload);
        let tag = packet_mac(&set.mac, nonce, header, &iv, payload).finalize().into_bytes();
        trailer[..BLOCK].copy_from_slice(&iv);
        trailer[BLOCK..].copy_from_slice(&tag[..MAC_LEN]);
        Ok(())
    }

    /// The Blowfish cipher, HMAC key and IV of the message with this `salt`.
    fn message_parts(keys: &EpochKeys, salt: &[u8]) -> (Blowfish, Hmac<Sha256>, [u8; BLOCK]) {
        let material = message_subkey::<{ BLOWFISH_KEY + MAC_KEY + BLOCK }>(keys, salt);
        let (enc, rest) = material.split_at(BLOWFISH_KEY);
        let (mac, iv) = rest.split_at(MAC_KEY);
        let mut enc_key = Zeroizing::new([0u8; BLOWFISH_KEY]);
        let mut mac_key = Zeroizing::new([0u8; MAC_KEY]);
        let mut msg_iv = [0u8; BLOCK];
        enc_key.copy_from_slice(enc);
        mac_key.copy_from_slice(mac);
        msg_iv.copy_from_slice(iv);
        (Blowfish::new(&(*enc_key).into()), hmac_sha256(&mac_key), msg_iv)
    }

    /// The message MAC: HMAC over `aad` (length-prefixed), salt and ciphertext.
    fn message_mac(mac: Hmac<Sha256>, aad: &[u8], salt: &[u8], ciphertext: &[u8]) -> Hmac<Sha256> {
        mac.chain_update((aad.len() as u64).to_be_bytes()).chain_update(aad).chain_update(salt).chain_update(ciphertext)
    }
}

impl Cipher for BlowfishCbcHmac {
    fn suite(&self) -> SuiteId {
        SUITE
    }

    fn trailer_len(&self) -> usize {
        TRAILER_LEN
    }

    fn seal_packet(
        &mut self,
        keys: &EpochKeys,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        trailer: &mut [u8],
    ) -> Result<(), CipherError> {
        let mut iv = [0u8; BLOCK];
        random_bytes(&mut iv)?;
        self.seal_packet_with_iv(keys, nonce, header, payload, trailer, iv)
    }

    fn open_packet(
        &mut self,
        keys: &EpochKeys,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        trailer: &[u8],
    ) -> Result<(), CipherError> {
        check_suite(SUITE, keys)?;
        check_trailer(SUITE, trailer.len())?;
        // A longer payload was never sealed; refusing it also spares a subkey derivation.
        if payload.len() > BLOWFISH_MAX_PAYLOAD {
            return Err(CipherError::BadTag);
        }
        let (iv, tag) = trailer.split_at(BLOCK);
        let iv: [u8; BLOCK] = iv.try_into().map_err(|_| CipherError::BadTag)?;
        let at = self.key_set(keys);
        let set = &self.key_sets[at];
        // The MAC key is the key set's, so a forged packet costs one HMAC and never
        // a Blowfish key schedule.
        packet_mac(&set.mac, nonce, header, &iv, payload)
            .verify_truncated_left(tag)
            .map_err(|_| CipherError::BadTag)?;
        let cipher = current_subkey(&mut self.subkeys, &mut self.derivations, set, nonce);
        decrypt_in_place(cipher, &iv, payload);
        Ok(())
    }

    /// Output: `salt (32 random bytes) || CBC ciphertext, PKCS#7-padded || tag (16)`.
    ///
    /// Each message has its own Blowfish key, HMAC key and IV: 96 bytes of
    /// `HKDF-SHA256(salt, data key, "lsim/v1/message" || 0x00 || suite name)`. The
    /// tag is HMAC-SHA256 over `len(aad) (u64 BE) || aad || salt || ciphertext`,
    /// checked in constant time before decrypting (so padding errors are never
    /// observable). A message is at most `BLOWFISH_MAX_MESSAGE` bytes: one key
    /// never encrypts more than 8 MiB.
    fn encrypt_message(&self, keys: &EpochKeys, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CipherError> {
        check_suite(SUITE, keys)?;
        check_len(SUITE, "message", plaintext.len(), BLOWFISH_MAX_MESSAGE as u64)?;
        let mut salt = [0u8; MESSAGE_SALT_LEN];
        random_bytes(&mut salt)?;
        let (cipher, mac, iv) = Self::message_parts(keys, &salt);
        let ciphertext = cbc::Encryptor::inner_iv_init(&cipher, &iv.into()).encrypt_padded_vec::<Pkcs7>(plaintext);
        let tag = Self::message_mac(mac, aad, &salt, &ciphertext).finalize().into_bytes();
        let mut out = Vec::with_capacity(MESSAGE_SALT_LEN + ciphertext.len() + MAC_LEN);
        out.extend_from_slice(&salt);
        out.extend_from_slice(&ciphertext);
        out.extend_from_slice(&tag[..MAC_LEN]);
        Ok(out)
    }

    fn decrypt_message(&self, keys: &EpochKeys, aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CipherError> {
        check_suite(SUITE, keys)?;
        if ciphertext.len() < MIN_MESSAGE {
            return Err(CipherError::Truncated { suite: SUITE, len: ciphertext.len(), min: MIN_MESSAGE });
        }
        let (salt, rest) = ciphertext.split_at(MESSAGE_SALT_LEN);
        let (body, tag) = rest.split_at(rest.len() - MAC_LEN);
        let (cipher, mac, iv) = Self::message_parts(keys, salt);
        Self::message_mac(mac, aad, salt, body).verify_truncated_left(tag).map_err(|_| CipherError::BadTag)?;
        // Authentic, so produced by `encrypt_message`: whole blocks with valid padding.
        // Checked anyway rather than trusted.
        cbc::Decryptor::inner_iv_init(&cipher, &iv.into())
            .decrypt_padded_vec::<Pkcs7>(body)
            .map_err(|_| CipherError::BadTag)
    }

    fn forget(&mut self, keys: &EpochKeys) {
        self.key_sets.retain(|k| k.id != keys.id());
        self.subkeys.retain(|(id, _), _| *id != keys.id());
    }
}

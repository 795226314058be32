//! The keys of one epoch.
//!
//! Owns the per-epoch key schedule: the group key of an epoch is stretched by
//! HKDF-SHA256 into two independent keys, the packet seal key (every transport
//! packet) and the data key (standalone messages that do not ride the
//! transport, e.g. chat relayed through XMPP). It does not encrypt anything and
//! does not know where group keys come from.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use hkdf::Hkdf;
use sha2::Sha256;

use super::id::SuiteId;
use super::kdf::expand;
use crate::key::SecretKey;

/// HKDF-Extract salt of the epoch key schedule.
const EPOCH_SALT: &[u8] = b"lsim/v1/epoch";
/// HKDF info label of the packet seal key.
const SEAL_KEY_INFO: &[u8] = b"lsim/v1/packet-seal-key";
/// HKDF info label of the data key.
const DATA_KEY_INFO: &[u8] = b"lsim/v1/data-key";

/// Gives every derivation its own number, so ciphers can cache state derived from a
/// key set without holding or comparing the secrets themselves.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The two keys of one epoch under one suite, wiped from memory when dropped.
///
/// `derive` computes, with HKDF-SHA256 (RFC 5869):
///
/// ```text
/// PRK       = HKDF-Extract(salt = "lsim/v1/epoch", IKM = group key)
/// seal key  = HKDF-Expand(PRK, "lsim/v1/packet-seal-key" || 0x00 || suite name || 0x00 || epoch (u32 BE), 32)
/// data key  = HKDF-Expand(PRK, "lsim/v1/data-key"        || 0x00 || suite name || 0x00 || epoch (u32 BE), 32)
/// ```
///
/// The labels differ, so the two keys are independent; the suite name and the
/// epoch in the info strings mean a group key reused under another suite or
/// epoch yields unrelated keys.
#[derive(Clone)]
pub struct EpochKeys {
    suite: SuiteId,
    epoch: u32,
    seal_key: SecretKey,
    data_key: SecretKey,
    id: u64,
}

impl EpochKeys {
    /// Derives the keys of `epoch` for `suite` from that epoch's group key.
    pub fn derive(suite: SuiteId, epoch: u32, group_key: &SecretKey) -> EpochKeys {
        let hk = Hkdf::<Sha256>::new(Some(EPOCH_SALT), group_key.as_bytes());
        let bind = |label: &[u8]| -> SecretKey {
            let okm = expand::<32>(&hk, &[label, &[0], suite.name().as_bytes(), &[0], &epoch.to_be_bytes()]);
            SecretKey::from_bytes(*okm)
        };
        EpochKeys {
            suite,
            epoch,
            seal_key: bind(SEAL_KEY_INFO),
            data_key: bind(DATA_KEY_INFO),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The suite these keys are for.
    pub fn suite(&self) -> SuiteId {
        self.suite
    }

    /// The epoch these keys belong to.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The key that seals transport packets.
    pub(crate) fn seal_key(&self) -> &SecretKey {
        &self.seal_key
    }

    /// The key that encrypts standalone messages.
    pub(crate) fn data_key(&self) -> &SecretKey {
        &self.data_key
    }

    /// A number unique to this derivation (shared by its clones, which hold the same keys).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl fmt::Debug for EpochKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EpochKeys").field("suite", &self.suite).field("epoch", &self.epoch).finish_non_exhaustive()
    }
}

//! A group's packet seal: the transport's `Seal` over the group's suite.
//!
//! Owns `GroupSeal`: the group's cipher and a short window of epoch keys, the
//! newest one sealing new packets and the older ones still opening data in
//! flight when the group was rekeyed, and the history: epochs past that
//! window, kept only so that repair of an object is sealed, and opened,
//! under the epoch the object was sent in (the history policy `joined`: a
//! member that joined later cannot read it). It must not decide when to
//! rekey or where group keys come from (the member's key store calls
//! `install` and `remember`), nor what a packet under a history epoch may
//! carry (the transport's receiver asks `is_live`).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use lsim_transport::seal::{Nonce, Seal, SealError};
use thiserror::Error;

use super::epoch_keys::EpochKeys;
use super::id::SuiteId;
use super::{Cipher, CipherError};
use crate::key::SecretKey;

/// Older epochs a `GroupSeal` keeps besides the current one, unless told otherwise.
pub const DEFAULT_PAST_EPOCHS: usize = 3;

/// Epochs kept in the history, at most; the oldest goes first.
pub const MAX_HISTORY_EPOCHS: usize = 1024;

/// Bytes of epoch number in front of a group message.
const EPOCH_LEN: usize = 4;

/// Why an epoch could not be installed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InstallError {
    /// Epochs only move forward: the epoch given is not newer than the current one.
    #[error("epoch {epoch} is not newer than the current epoch {current}")]
    NotNewer {
        /// The epoch offered.
        epoch: u32,
        /// The current epoch.
        current: u32,
    },
}

/// The transport's `Seal` for one group: its suite and the keys of its latest epochs.
///
/// Holds the current epoch and up to `past_epochs` older ones (default
/// [`DEFAULT_PAST_EPOCHS`]); installing a newer epoch drops (and wipes) the
/// oldest beyond that. Packets may be sealed and opened under any held epoch;
/// any other epoch is `SealError::UnknownEpoch`, a forged or damaged packet
/// `SealError::BadTag`.
pub struct GroupSeal {
    cipher: Box<dyn Cipher>,
    past_epochs: usize,
    current: EpochKeys,
    /// Older epochs, oldest first; epochs strictly increase up to `current`.
    past: VecDeque<EpochKeys>,
    /// Epochs held but not live (retired, or given by the key server):
    /// they seal and open repair of the objects sent in them, nothing else.
    history: BTreeMap<u32, EpochKeys>,
}

impl GroupSeal {
    /// A seal for `suite` starting at `epoch` with that epoch's group key, keeping
    /// [`DEFAULT_PAST_EPOCHS`] older epochs.
    pub fn new(suite: SuiteId, epoch: u32, group_key: &SecretKey) -> GroupSeal {
        GroupSeal::with_past_epochs(suite, DEFAULT_PAST_EPOCHS, epoch, group_key)
    }

    /// A seal that keeps `past_epochs` older epochs besides the current one.
    pub fn with_past_epochs(suite: SuiteId, past_epochs: usize, epoch: u32, group_key: &SecretKey) -> GroupSeal {
        GroupSeal {
            cipher: suite.cipher(),
            past_epochs,
            current: EpochKeys::derive(suite, epoch, group_key),
            past: VecDeque::new(),
            history: BTreeMap::new(),
        }
    }

    /// The group's suite.
    pub fn suite(&self) -> SuiteId {
        self.cipher.suite()
    }

    /// The live epochs (the current one and those in their grace), oldest first.
    pub fn epochs(&self) -> impl Iterator<Item = u32> + '_ {
        self.past.iter().chain([&self.current]).map(EpochKeys::epoch)
    }

    /// The history's epochs (held for repair of old objects only), oldest first.
    pub fn history(&self) -> impl Iterator<Item = u32> + '_ {
        self.history.keys().copied()
    }

    /// Keeps `epoch`'s key in the history (from the key server: an epoch
    /// this member was in the group for but missed, away). An epoch held
    /// already (live or in the history), or not older than the current one,
    /// is left alone; an epoch missed between two live ones (a resync
    /// jumped over it) is kept like any other.
    pub fn remember(&mut self, epoch: u32, group_key: &SecretKey) {
        if epoch >= self.current.epoch() || self.keys(epoch).is_some() || self.history.contains_key(&epoch) {
            return;
        }
        let keys = EpochKeys::derive(self.suite(), epoch, group_key);
        self.keep_in_history(keys);
    }

    /// Moves `keys` into the history, dropping (and wiping) the oldest past its bound.
    fn keep_in_history(&mut self, keys: EpochKeys) {
        self.history.insert(keys.epoch(), keys);
        while self.history.len() > MAX_HISTORY_EPOCHS {
            if let Some((_, old)) = self.history.pop_first() {
                self.cipher.forget(&old);
            }
        }
    }

    /// Makes `epoch`, with its group key, the current epoch. Refuses an epoch that is
    /// not newer than the current one; gaps are fine (a member that resynced).
    pub fn install(&mut self, epoch: u32, group_key: &SecretKey) -> Result<(), InstallError> {
        let current = self.current.epoch();
        if epoch <= current {
            return Err(InstallError::NotNewer { epoch, current });
        }
        let newest = EpochKeys::derive(self.suite(), epoch, group_key);
        self.past.push_back(std::mem::replace(&mut self.current, newest));
        while self.past.len() > self.past_epochs {
            if let Some(old) = self.past.pop_front() {
                self.keep_in_history(old);
            }
        }
        Ok(())
    }

    /// Ends the grace of every past epoch older than `epoch`: once a rekey
    /// has had time to reach everyone, they are no longer live, so the
    /// transport refuses new traffic under them (a member removed by the
    /// rekey cannot go on sending under the key it still holds); they stay
    /// in the history for repair of what was sent in them. The caller
    /// decides when (`lsim_im`'s member: a grace after installing `epoch`);
    /// the current epoch is never retired.
    pub fn retire_before(&mut self, epoch: u32) {
        while self.past.front().is_some_and(|k| k.epoch() < epoch) {
            if let Some(old) = self.past.pop_front() {
                self.keep_in_history(old);
            }
        }
    }

    /// The keys of a live `epoch`, if held.
    pub fn keys(&self, epoch: u32) -> Option<&EpochKeys> {
        if self.current.epoch() == epoch {
            return Some(&self.current);
        }
        self.past.iter().find(|k| k.epoch() == epoch)
    }

    /// Encrypts a standalone message (e.g. chat relayed through XMPP) under the
    /// current epoch's data key. Output: `epoch (u32 BE) || the suite's message`;
    /// the epoch is authenticated implicitly, since it selects the keys.
    pub fn encrypt_message(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CipherError> {
        let keys = &self.current;
        let sealed = self.cipher.encrypt_message(keys, aad, plaintext)?;
        let mut out = Vec::with_capacity(EPOCH_LEN + sealed.len());
        out.extend_from_slice(&keys.epoch().to_be_bytes());
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts what `encrypt_message` produced, under any held epoch.
    pub fn decrypt_message(&self, aad: &[u8], message: &[u8]) -> Result<Vec<u8>, CipherError> {
        let Some((epoch, sealed)) = message.split_first_chunk::<EPOCH_LEN>() else {
            return Err(CipherError::Truncated { suite: self.suite(), len: message.len(), min: EPOCH_LEN });
        };
        let epoch = u32::from_be_bytes(*epoch);
        let keys = self.keys(epoch).ok_or(CipherError::UnknownEpoch(epoch))?;
        self.cipher.decrypt_message(keys, aad, sealed)
    }
}

/// The keys of `epoch` among the held ones, live or history (a free
/// function so the cipher can be borrowed mutably beside them).
fn held<'a>(
    current: &'a EpochKeys,
    past: &'a VecDeque<EpochKeys>,
    history: &'a BTreeMap<u32, EpochKeys>,
    epoch: u32,
) -> Result<&'a EpochKeys, SealError> {
    if current.epoch() == epoch {
        return Ok(current);
    }
    past.iter().find(|k| k.epoch() == epoch).or_else(|| history.get(&epoch)).ok_or(SealError::UnknownEpoch(epoch))
}

impl Seal for GroupSeal {
    fn tag_len(&self) -> usize {
        self.cipher.trailer_len()
    }

    fn current_epoch(&self) -> u32 {
        self.current.epoch()
    }

    fn is_live(&self, epoch: u32) -> bool {
        self.keys(epoch).is_some()
    }

    /// Errors other than an unknown epoch mean the caller broke the contract (a
    /// tag buffer of the wrong length, a payload longer than the suite allows per
    /// key) or the system's random generator failed; `SealError` has no variant
    /// for those, so they come back as `Exhausted` with the reason.
    fn seal(
        &mut self,
        epoch: u32,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        tag: &mut [u8],
    ) -> Result<(), SealError> {
        let keys = held(&self.current, &self.past, &self.history, epoch)?;
        self.cipher.seal_packet(keys, nonce, header, payload, tag).map_err(|e| SealError::Exhausted(e.to_string()))
    }

    fn open(
        &mut self,
        epoch: u32,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        tag: &[u8],
    ) -> Result<(), SealError> {
        let keys = held(&self.current, &self.past, &self.history, epoch)?;
        self.cipher.open_packet(keys, nonce, header, payload, tag).map_err(|_| SealError::BadTag)
    }
}

impl fmt::Debug for GroupSeal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupSeal")
            .field("suite", &self.suite())
            .field("epochs", &self.epochs().collect::<Vec<_>>())
            .field("past_epochs", &self.past_epochs)
            .field("history", &self.history.len())
            .finish()
    }
}

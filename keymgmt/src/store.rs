//! The key server's memory across restarts.
//!
//! Owns the on-disk state in an embedded ACID store (redb): users and their
//! password verifiers, members (id and individual key), groups (their
//! serialized key tree and settings), each group's keys of its newest
//! `MAX_HISTORY_EPOCHS` epochs (written with the group record of the epoch,
//! so the server never holds an epoch whose key it forgot) and the server's
//! own secrets (signing key, TLS identity). Every change is one
//! transaction: a kill -9 at any point leaves either the old state or the
//! new one, never half of each. It does not interpret group records; the
//! server does.

use std::ops::Range;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::key::SecretKey;
use crate::suite::MAX_HISTORY_EPOCHS;
use crate::users::{PasswordVerifier, UserError};

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const MEMBERS: TableDefinition<&str, &[u8]> = TableDefinition::new("members");
const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// (group name, epoch) → that epoch's group key.
const EPOCH_KEYS: TableDefinition<(&str, u32), &[u8; 32]> = TableDefinition::new("epoch-keys");
/// (group name, member id) → its membership run: since (epoch, 4 bytes),
/// and when it was evicted for absence, if it was (unix seconds, 8 bytes).
const RUNS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("runs");

/// A member's run of membership in a group: the epoch it began at, and,
/// while it is out of the group after an eviction for absence, since when
/// (unix seconds). A run outlives such an eviction, so that the member,
/// back, is a member since the same epoch (the history policy `joined`
/// counts the time it was away or briefly evicted as membership); a leave,
/// an eviction by an administrator or a revocation ends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// The epoch the run began at.
    pub since: u32,
    /// Evicted for absence at this time (unix seconds), not back yet.
    pub absent_since: Option<u64>,
}

/// The store failed or holds something unreadable.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database failed.
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    /// A stored record could not be read.
    #[error("corrupt {what} record for {key:?}")]
    Corrupt {
        /// The table.
        what: &'static str,
        /// The record's key.
        key: String,
    },
    /// A stored password verifier could not be read.
    #[error(transparent)]
    User(#[from] UserError),
}

fn dberr<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(e.into())
}

/// A member's lasting identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    /// Stable member id (never reused).
    pub id: u64,
    /// The member's individual key.
    pub key: SecretKey,
}

/// The key server's store.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let database = Database::create(path).map_err(dberr)?;
        let txn = database.begin_write().map_err(dberr)?;
        {
            txn.open_table(USERS).map_err(dberr)?;
            txn.open_table(MEMBERS).map_err(dberr)?;
            txn.open_table(GROUPS).map_err(dberr)?;
            txn.open_table(SECRETS).map_err(dberr)?;
            txn.open_table(COUNTERS).map_err(dberr)?;
            txn.open_table(EPOCH_KEYS).map_err(dberr)?;
        }
        txn.commit().map_err(dberr)?;
        Ok(Store { db: database })
    }

    fn get(&self, table: TableDefinition<&str, &[u8]>, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let t = txn.open_table(table).map_err(dberr)?;
        Ok(t.get(key).map_err(dberr)?.map(|v| v.value().to_vec()))
    }

    fn put(&self, table: TableDefinition<&str, &[u8]>, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(dberr)?;
        txn.open_table(table).map_err(dberr)?.insert(key, value).map_err(dberr)?;
        txn.commit().map_err(dberr)?;
        Ok(())
    }

    fn keys(&self, table: TableDefinition<&str, &[u8]>) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let t = txn.open_table(table).map_err(dberr)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(dberr)? {
            let (k, _) = row.map_err(dberr)?;
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    /// Adds or replaces a user.
    pub fn put_user(&self, name: &str, verifier: &PasswordVerifier) -> Result<(), StoreError> {
        self.put(USERS, name, &verifier.to_bytes())
    }

    /// A user's verifier.
    pub fn user(&self, name: &str) -> Result<Option<PasswordVerifier>, StoreError> {
        Ok(self.get(USERS, name)?.map(|b| PasswordVerifier::from_bytes(&b)).transpose()?)
    }

    /// Every user name.
    pub fn users(&self) -> Result<Vec<String>, StoreError> {
        self.keys(USERS)
    }

    /// The member record of `name`, created (with a fresh id and individual
    /// key) on first call. Ids come from a counter in the same transaction,
    /// so they are never reused, even across crashes.
    pub fn member(&self, name: &str) -> Result<MemberRecord, StoreError> {
        let txn = self.db.begin_write().map_err(dberr)?;
        let record = {
            let mut members = txn.open_table(MEMBERS).map_err(dberr)?;
            let existing = members.get(name).map_err(dberr)?.map(|v| Zeroizing::new(v.value().to_vec()));
            match existing {
                Some(bytes) => decode_member(&bytes).ok_or(StoreError::Corrupt { what: "member", key: name.into() })?,
                None => {
                    let mut counters = txn.open_table(COUNTERS).map_err(dberr)?;
                    let id = counters.get("member").map_err(dberr)?.map_or(1, |v| v.value());
                    counters.insert("member", id + 1).map_err(dberr)?;
                    let key = SecretKey::random().map_err(|e| StoreError::Corrupt { what: "random", key: e.0 })?;
                    let mut bytes = Zeroizing::new(id.to_be_bytes().to_vec());
                    bytes.extend_from_slice(key.as_bytes());
                    members.insert(name, bytes.as_slice()).map_err(dberr)?;
                    MemberRecord { id, key }
                }
            }
        };
        txn.commit().map_err(dberr)?;
        Ok(record)
    }

    /// The member record of `name` if it has one (never creates one).
    pub fn find_member(&self, name: &str) -> Result<Option<MemberRecord>, StoreError> {
        let Some(bytes) = self.get(MEMBERS, name)?.map(Zeroizing::new) else { return Ok(None) };
        decode_member(&bytes).map(Some).ok_or(StoreError::Corrupt { what: "member", key: name.into() })
    }

    /// Counts the server's starts: 0 at the first, one more at each start
    /// after it (the count is stored before it is returned, so no two starts,
    /// even with crashes between them, get the same number).
    pub fn next_start(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_write().map_err(dberr)?;
        let start = {
            let mut counters = txn.open_table(COUNTERS).map_err(dberr)?;
            let start = counters.get("starts").map_err(dberr)?.map_or(0, |v| v.value());
            counters.insert("starts", start.wrapping_add(1)).map_err(dberr)?;
            start
        };
        txn.commit().map_err(dberr)?;
        Ok(start)
    }

    /// A group's record, as the server wrote it.
    pub fn group(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(GROUPS, name)
    }

    /// Writes a group's record at `epoch` and that epoch's group key, in one
    /// transaction (the old record or this one survive a crash, and this one
    /// only with its key), and drops the keys of epochs `MAX_HISTORY_EPOCHS`
    /// or more before `epoch`: a group keeps its newest `MAX_HISTORY_EPOCHS`.
    pub fn put_group(&self, name: &str, record: &[u8], epoch: u32, group_key: &SecretKey) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(dberr)?;
        {
            txn.open_table(GROUPS).map_err(dberr)?.insert(name, record).map_err(dberr)?;
            let mut keys = txn.open_table(EPOCH_KEYS).map_err(dberr)?;
            keys.insert((name, epoch), group_key.as_bytes()).map_err(dberr)?;
            let oldest_kept = epoch.saturating_sub(MAX_HISTORY_EPOCHS as u32 - 1);
            keys.retain_in((name, 0)..(name, oldest_kept), |_, _| false).map_err(dberr)?;
        }
        txn.commit().map_err(dberr)?;
        Ok(())
    }

    /// The group keys `name` still holds for the epochs in `epochs`, oldest first.
    pub fn epoch_keys(&self, name: &str, epochs: Range<u32>) -> Result<Vec<(u32, SecretKey)>, StoreError> {
        if epochs.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(dberr)?;
        let t = txn.open_table(EPOCH_KEYS).map_err(dberr)?;
        let mut out = Vec::new();
        for row in t.range((name, epochs.start)..(name, epochs.end)).map_err(dberr)? {
            let (k, v) = row.map_err(dberr)?;
            out.push((k.value().1, SecretKey::from_bytes(*v.value())));
        }
        Ok(out)
    }

    /// `member`'s run of membership in `group`, if one is kept.
    pub fn run(&self, group: &str, member: u64) -> Result<Option<Run>, StoreError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let t = match txn.open_table(RUNS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(dberr(e)),
        };
        let Some(v) = t.get((group, member)).map_err(dberr)? else { return Ok(None) };
        let b = v.value();
        let corrupt = || StoreError::Corrupt { what: "run", key: format!("{group}/{member}") };
        let since = u32::from_be_bytes(b.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?);
        let absent_since = match b.len() {
            4 => None,
            12 => Some(u64::from_be_bytes(b[4..12].try_into().map_err(|_| corrupt())?)),
            _ => return Err(corrupt()),
        };
        Ok(Some(Run { since, absent_since }))
    }

    /// Keeps `member`'s run in `group` (`None`: ends it).
    pub fn put_run(&self, group: &str, member: u64, run: Option<Run>) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(dberr)?;
        {
            let mut t = txn.open_table(RUNS).map_err(dberr)?;
            match run {
                Some(r) => {
                    let mut v = r.since.to_be_bytes().to_vec();
                    if let Some(at) = r.absent_since {
                        v.extend_from_slice(&at.to_be_bytes());
                    }
                    t.insert((group, member), v.as_slice()).map_err(dberr)?;
                }
                None => {
                    t.remove((group, member)).map_err(dberr)?;
                }
            }
        }
        txn.commit().map_err(dberr)?;
        Ok(())
    }

    /// Every group name.
    pub fn groups(&self) -> Result<Vec<String>, StoreError> {
        self.keys(GROUPS)
    }

    /// A named server secret (signing key, TLS key...), created by `make` on first use.
    pub fn secret(
        &self,
        name: &str,
        make: impl FnOnce() -> Result<Zeroizing<Vec<u8>>, StoreError>,
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let txn = self.db.begin_write().map_err(dberr)?;
        let value = {
            let mut t = txn.open_table(SECRETS).map_err(dberr)?;
            let existing = t.get(name).map_err(dberr)?.map(|v| Zeroizing::new(v.value().to_vec()));
            match existing {
                Some(v) => v,
                None => {
                    let v = make()?;
                    t.insert(name, v.as_slice()).map_err(dberr)?;
                    v
                }
            }
        };
        txn.commit().map_err(dberr)?;
        Ok(value)
    }
}

fn decode_member(b: &[u8]) -> Option<MemberRecord> {
    if b.len() != 40 {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&b[..8]);
    let mut key = [0u8; 32];
    key.copy_from_slice(&b[8..]);
    Some(MemberRecord { id: u64::from_be_bytes(id), key: SecretKey::from_bytes(key) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::Cost;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lsim-store-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("keys.redb")
    }

    #[test]
    fn everything_survives_reopening() {
        let path = temp("reopen");
        let cheap = Cost { memory_kib: 64, passes: 1, lanes: 1 };
        let (ayen, sig) = {
            let s = Store::open(&path).unwrap();
            s.put_user("ayen", &PasswordVerifier::new("pw", cheap).unwrap()).unwrap();
            s.put_group("lsim", b"tree bytes", 4, &SecretKey::from_bytes([4; 32])).unwrap();
            let ayen = s.member("ayen").unwrap();
            assert_eq!(s.member("ayen").unwrap(), ayen, "created once");
            let sig = s.secret("signing", || Ok(Zeroizing::new(vec![7; 32]))).unwrap();
            assert_eq!((s.next_start().unwrap(), s.next_start().unwrap()), (0, 1));
            (ayen, sig)
        };
        let s = Store::open(&path).unwrap();
        assert!(s.user("ayen").unwrap().unwrap().verify("pw"));
        assert_eq!(s.users().unwrap(), ["ayen"]);
        assert_eq!(s.member("ayen").unwrap(), ayen);
        assert_eq!(s.find_member("ayen").unwrap(), Some(ayen.clone()));
        assert_eq!(s.find_member("nobody").unwrap(), None, "looking does not create");
        assert_eq!(s.member("ganesh").unwrap().id, ayen.id + 1, "ids never reused");
        assert_eq!(s.group("lsim").unwrap().as_deref(), Some(&b"tree bytes"[..]));
        assert_eq!(s.groups().unwrap(), ["lsim"]);
        let again = s.secret("signing", || panic!("must not be made twice")).unwrap();
        assert_eq!(again, sig);
        assert_eq!(s.next_start().unwrap(), 2, "starts are counted across reopening");
        assert_eq!(s.epoch_keys("lsim", 0..9).unwrap(), [(4, SecretKey::from_bytes([4; 32]))]);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn each_group_keeps_the_keys_of_its_newest_epochs() {
        let path = temp("epochs");
        let s = Store::open(&path).unwrap();
        let key = |e: u32| SecretKey::from_bytes([e as u8; 32]);
        let last = MAX_HISTORY_EPOCHS as u32 + 5;
        for e in 0..=last {
            s.put_group("lsim", b"tree", e, &key(e)).unwrap();
        }
        s.put_group("lsim-b", b"tree", 2, &key(2)).unwrap();
        s.put_group("lsim-b", b"tree", 3, &key(3)).unwrap();
        let kept = s.epoch_keys("lsim", 0..u32::MAX).unwrap();
        assert_eq!(kept.len(), MAX_HISTORY_EPOCHS);
        assert_eq!(kept.first().map(|k| k.0), Some(last + 1 - MAX_HISTORY_EPOCHS as u32), "the oldest went first");
        assert!(kept.iter().all(|(e, k)| *k == key(*e)));
        assert_eq!(
            s.epoch_keys("lsim", 1000..1003).unwrap().iter().map(|k| k.0).collect::<Vec<_>>(),
            [1000, 1001, 1002]
        );
        assert_eq!(s.epoch_keys("lsim-b", 0..9).unwrap(), [(2, key(2)), (3, key(3))], "groups apart");
        assert!(s.epoch_keys("lsim-b", 3..3).unwrap().is_empty());
        // Writing an epoch again (a restart at the same epoch) keeps one key for it.
        s.put_group("lsim-b", b"tree", 3, &key(3)).unwrap();
        assert_eq!(s.epoch_keys("lsim-b", 0..9).unwrap().len(), 2);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_run_of_membership_is_kept_across_reopening_and_ends_when_told() {
        let path = temp("runs");
        let s = Store::open(&path).unwrap();
        assert_eq!(s.run("lsim", 7).unwrap(), None);
        s.put_run("lsim", 7, Some(Run { since: 3, absent_since: None })).unwrap();
        s.put_run("lsim", 8, Some(Run { since: 5, absent_since: Some(1_700_000_000) })).unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.run("lsim", 7).unwrap(), Some(Run { since: 3, absent_since: None }));
        assert_eq!(s.run("lsim", 8).unwrap(), Some(Run { since: 5, absent_since: Some(1_700_000_000) }));
        assert_eq!(s.run("other", 7).unwrap(), None, "groups apart");
        s.put_run("lsim", 7, None).unwrap();
        assert_eq!(s.run("lsim", 7).unwrap(), None);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}

//! The key server's memory across restarts.
//!
//! Owns the on-disk state in an embedded ACID store (redb): users and their
//! password verifiers, members (id and individual key), groups (their
//! serialized key tree and settings) and the server's own secrets (signing
//! key, TLS identity). Every change is one transaction: a kill -9 at any
//! point leaves either the old state or the new one, never half of each. It
//! does not interpret group records; the server does.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::key::SecretKey;
use crate::users::{PasswordVerifier, UserError};

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const MEMBERS: TableDefinition<&str, &[u8]> = TableDefinition::new("members");
const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

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

    /// Writes a group's record (atomically: the old one or this one survive a crash).
    pub fn put_group(&self, name: &str, record: &[u8]) -> Result<(), StoreError> {
        self.put(GROUPS, name, record)
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
            s.put_group("lsim", b"tree bytes").unwrap();
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
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}

//! The archive's memory on disk: the group's objects, block by block.
//!
//! Owns the redb file: each decoded block sealed at rest (ChaCha20-Poly1305
//! under the archive's key, its place in the group's stream as associated
//! data, so a block cannot be moved to another place), what each object is
//! (kind, geometry, when it arrived, under which epoch), and how far each
//! sender had got (to tell after a restart whether it restarted since).
//! Every write is one transaction: a `kill -9` leaves the blocks committed
//! before it, never half a block. It keeps the bounds (age, bytes) by the
//! rule in `enforce`. It must not decide what is archived or when it is
//! served (the archive's task and the transport's repairer do).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lsim_transport::geometry::Geometry;
use lsim_transport::wire::ObjectKind;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use thiserror::Error;

/// (origin, object, block) → nonce ‖ sealed block ‖ tag.
const BLOCKS: TableDefinition<(u32, u32, u32), &[u8]> = TableDefinition::new("blocks");
/// (origin, object) → the object's record (`Meta`).
const OBJECTS: TableDefinition<(u32, u32), &[u8]> = TableDefinition::new("objects");
/// origin → the highest packet counter heard from it.
const SENDERS: TableDefinition<u32, u64> = TableDefinition::new("senders");

const META_FORMAT: u8 = 1;
const META_LEN: usize = 1 + 1 + 8 + 2 + 2 + 8 + 4 + 8;
const TAG_LEN: usize = 16;

/// Why the archive's store failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database failed.
    #[error("archive store: {0}")]
    Db(#[from] redb::Error),
    /// A record could not be read: damaged, or sealed under another key.
    #[error("archive store: unreadable {what} for {key:?}")]
    Corrupt {
        /// What kind of record.
        what: &'static str,
        /// Where.
        key: (u32, u32, u32),
    },
    /// The key is not 32 bytes, or the system's randomness failed.
    #[error("archive store: {0}")]
    Key(&'static str),
}

fn dberr<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(e.into())
}

/// How much the archive keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Objects older than this go.
    pub max_age: Duration,
    /// Sealed bytes kept at most.
    pub max_bytes: u64,
}

impl Default for Limits {
    /// 24 hours, 1 GiB.
    fn default() -> Limits {
        Limits { max_age: Duration::from_secs(24 * 3600), max_bytes: 1 << 30 }
    }
}

/// What the store knows of one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Chat, file or rekey.
    pub kind: ObjectKind,
    /// Its blocks.
    pub geometry: Geometry,
    /// When its first block was stored (seconds since the Unix epoch).
    pub arrived: u64,
    /// The group's epoch when it arrived.
    pub epoch: u32,
    /// Sealed bytes of its blocks in the store.
    pub bytes: u64,
}

impl Meta {
    fn encode(&self) -> [u8; META_LEN] {
        let mut v = [0u8; META_LEN];
        v[0] = META_FORMAT;
        v[1] = self.kind as u8;
        v[2..10].copy_from_slice(&self.geometry.len().to_be_bytes());
        v[10..12].copy_from_slice(&self.geometry.symbol_size().to_be_bytes());
        v[12..14].copy_from_slice(&self.geometry.block_symbols().to_be_bytes());
        v[14..22].copy_from_slice(&self.arrived.to_be_bytes());
        v[22..26].copy_from_slice(&self.epoch.to_be_bytes());
        v[26..34].copy_from_slice(&self.bytes.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Meta> {
        let v: &[u8; META_LEN] = v.try_into().ok()?;
        if v[0] != META_FORMAT {
            return None;
        }
        let kind = match v[1] {
            1 => ObjectKind::Chat,
            2 => ObjectKind::File,
            3 => ObjectKind::Rekey,
            _ => return None,
        };
        let be8 = |r: std::ops::Range<usize>| v[r].try_into().ok().map(u64::from_be_bytes);
        let be2 = |r: std::ops::Range<usize>| v[r].try_into().ok().map(u16::from_be_bytes);
        let geometry = Geometry::new(be8(2..10)?, be2(10..12)?, be2(12..14)?).ok()?;
        let epoch = u32::from_be_bytes(v[22..26].try_into().ok()?);
        Some(Meta { kind, geometry, arrived: be8(14..22)?, epoch, bytes: be8(26..34)? })
    }
}

/// A block's place: (origin sender, object, block).
pub type BlockKey = (u32, u32, u32);

/// An object's place and what the store knows of it.
pub type Stored = ((u32, u32), Meta);

/// One decoded block to keep.
pub struct Put {
    /// (origin, object, block).
    pub key: (u32, u32, u32),
    /// The object's kind and geometry.
    pub kind: ObjectKind,
    /// The object's geometry.
    pub geometry: Geometry,
    /// The group's epoch now.
    pub epoch: u32,
    /// The block's bytes.
    pub bytes: Vec<u8>,
    /// The highest packet counter heard from the origin, if known.
    pub counter: Option<u64>,
}

/// The archive's store (see the module doc).
pub struct ArchiveStore {
    db: Database,
    key: LessSafeKey,
    limits: Limits,
    bytes: u64,
}

fn aad(key: (u32, u32, u32)) -> [u8; 13] {
    let mut a = [0u8; 13];
    a[0] = b'A';
    a[1..5].copy_from_slice(&key.0.to_be_bytes());
    a[5..9].copy_from_slice(&key.1.to_be_bytes());
    a[9..13].copy_from_slice(&key.2.to_be_bytes());
    a
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// redb's page cache for the archive (see `ArchiveStore::open`).
const DB_CACHE: usize = 4 << 20;

impl ArchiveStore {
    /// Opens (or creates) the store at `path`, its blocks sealed under `key`.
    pub fn open(path: &Path, key: &[u8], limits: Limits) -> Result<ArchiveStore, StoreError> {
        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, key).map_err(|_| StoreError::Key("the key is not 32 bytes"))?;
        // redb caches up to 1 GiB of pages by default: what the archive
        // wrote would stay resident. Its B-tree's inner pages fit in this;
        // hot blocks are in the repairer's own cache.
        let db = redb::Builder::new().set_cache_size(DB_CACHE).create(path).map_err(dberr)?;
        let txn = db.begin_write().map_err(dberr)?;
        {
            txn.open_table(BLOCKS).map_err(dberr)?;
            txn.open_table(OBJECTS).map_err(dberr)?;
            txn.open_table(SENDERS).map_err(dberr)?;
        }
        txn.commit().map_err(dberr)?;
        let mut store = ArchiveStore { db, key: LessSafeKey::new(unbound), limits, bytes: 0 };
        store.bytes = store.objects()?.iter().map(|(_, m)| m.bytes).sum();
        Ok(store)
    }

    /// Sealed bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The bounds kept.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Keeps `puts` in one transaction (a block already held is kept as it was).
    pub fn put(&mut self, puts: &[Put]) -> Result<(), StoreError> {
        let now = unix_now();
        let txn = self.db.begin_write().map_err(dberr)?;
        let mut added = 0u64;
        {
            let mut blocks = txn.open_table(BLOCKS).map_err(dberr)?;
            let mut objects = txn.open_table(OBJECTS).map_err(dberr)?;
            let mut senders = txn.open_table(SENDERS).map_err(dberr)?;
            for p in puts {
                if blocks.get(p.key).map_err(dberr)?.is_some() {
                    continue;
                }
                let sealed = self.seal(p.key, &p.bytes)?;
                blocks.insert(p.key, sealed.as_slice()).map_err(dberr)?;
                let object = (p.key.0, p.key.1);
                let old = objects.get(object).map_err(dberr)?.and_then(|v| Meta::decode(v.value()));
                let mut meta =
                    old.unwrap_or(Meta { kind: p.kind, geometry: p.geometry, arrived: now, epoch: p.epoch, bytes: 0 });
                meta.bytes += sealed.len() as u64;
                added += sealed.len() as u64;
                objects.insert(object, meta.encode().as_slice()).map_err(dberr)?;
                if let Some(c) = p.counter {
                    let before = senders.get(p.key.0).map_err(dberr)?.map(|v| v.value());
                    if before.is_none_or(|b| b < c) {
                        senders.insert(p.key.0, c).map_err(dberr)?;
                    }
                }
            }
        }
        txn.commit().map_err(dberr)?;
        self.bytes += added;
        Ok(())
    }

    fn seal(&self, key: (u32, u32, u32), bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| StoreError::Key("no system randomness"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + bytes.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(bytes);
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad(key)), &mut out[NONCE_LEN..])
            .map_err(|_| StoreError::Key("sealing failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// The block at `key`, opened, if held.
    pub fn block(&self, key: (u32, u32, u32)) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let t = txn.open_table(BLOCKS).map_err(dberr)?;
        let Some(v) = t.get(key).map_err(dberr)? else { return Ok(None) };
        let v = v.value();
        let corrupt = StoreError::Corrupt { what: "block", key };
        if v.len() < NONCE_LEN + TAG_LEN {
            return Err(corrupt);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&v[..NONCE_LEN]);
        let mut body = v[NONCE_LEN..].to_vec();
        let len = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad(key)), &mut body)
            .map_err(|_| corrupt)?
            .len();
        body.truncate(len);
        Ok(Some(body))
    }

    /// Every object held, in (origin, object) order.
    pub fn objects(&self) -> Result<Vec<Stored>, StoreError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let t = txn.open_table(OBJECTS).map_err(dberr)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(dberr)? {
            let (k, v) = row.map_err(dberr)?;
            let key = k.value();
            let meta = Meta::decode(v.value()).ok_or(StoreError::Corrupt { what: "object", key: (key.0, key.1, 0) })?;
            out.push((key, meta));
        }
        Ok(out)
    }

    /// How far each sender had got (its highest packet counter heard).
    pub fn counters(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let t = txn.open_table(SENDERS).map_err(dberr)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(dberr)? {
            let (k, v) = row.map_err(dberr)?;
            out.push((k.value(), v.value()));
        }
        Ok(out)
    }

    /// Drops what the bounds no longer allow, by this rule: first every
    /// object older than `max_age`; then, while over `max_bytes`, the oldest
    /// file; chat, receipts and rekeys (small, and what a member back in
    /// range reads first) only when no file is left. The objects dropped.
    pub fn enforce(&mut self, now: u64) -> Result<Vec<(u32, u32)>, StoreError> {
        let mut objects = self.objects()?;
        // Oldest first; among equals, lower numbers (sent earlier) first.
        objects.sort_by_key(|&((origin, object), m)| (m.arrived, origin, object));
        let age = self.limits.max_age.as_secs();
        let mut drop: Vec<(u32, u32)> = Vec::new();
        let mut bytes = self.bytes;
        for &(key, m) in &objects {
            if now.saturating_sub(m.arrived) > age {
                drop.push(key);
                bytes = bytes.saturating_sub(m.bytes);
            }
        }
        for files_only in [true, false] {
            for &(key, m) in &objects {
                if bytes <= self.limits.max_bytes {
                    break;
                }
                if (files_only && m.kind != ObjectKind::File) || drop.contains(&key) {
                    continue;
                }
                drop.push(key);
                bytes = bytes.saturating_sub(m.bytes);
            }
        }
        self.remove(&drop)?;
        Ok(drop)
    }

    /// Drops everything held of `origin` (it restarted: its object numbers
    /// start again). The objects dropped.
    pub fn forget_origin(&mut self, origin: u32) -> Result<Vec<(u32, u32)>, StoreError> {
        let drop: Vec<(u32, u32)> = self.objects()?.into_iter().map(|(k, _)| k).filter(|k| k.0 == origin).collect();
        self.remove(&drop)?;
        let txn = self.db.begin_write().map_err(dberr)?;
        txn.open_table(SENDERS).map_err(dberr)?.remove(origin).map_err(dberr)?;
        txn.commit().map_err(dberr)?;
        Ok(drop)
    }

    fn remove(&mut self, objects: &[(u32, u32)]) -> Result<(), StoreError> {
        if objects.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(dberr)?;
        let mut freed = 0u64;
        {
            let mut blocks = txn.open_table(BLOCKS).map_err(dberr)?;
            let mut table = txn.open_table(OBJECTS).map_err(dberr)?;
            for &(origin, object) in objects {
                if let Some(m) = table.remove((origin, object)).map_err(dberr)?.and_then(|v| Meta::decode(v.value())) {
                    freed += m.bytes;
                }
                blocks.retain_in((origin, object, 0)..=(origin, object, u32::MAX), |_, _| false).map_err(dberr)?;
            }
        }
        txn.commit().map_err(dberr)?;
        self.bytes = self.bytes.saturating_sub(freed);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn block(seed: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    fn put(origin: u32, object: u32, block_no: u32, kind: ObjectKind, bytes: Vec<u8>) -> Put {
        let geometry = Geometry::new(4 * 1000, 100, 10).unwrap();
        Put { key: (origin, object, block_no), kind, geometry, epoch: 3, bytes, counter: Some(u64::from(object) + 100) }
    }

    fn open(dir: &tempfile::TempDir, limits: Limits) -> ArchiveStore {
        ArchiveStore::open(&dir.path().join("a.redb"), &KEY, limits).unwrap()
    }

    #[test]
    fn blocks_come_back_byte_for_byte_and_are_sealed_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir, Limits::default());
        let secret = b"the fire line moved north of the ridge".repeat(20);
        s.put(&[put(1, 0, 0, ObjectKind::Chat, secret.clone()), put(1, 0, 1, ObjectKind::Chat, block(2, 900))])
            .unwrap();
        assert_eq!(s.block((1, 0, 0)).unwrap().unwrap(), secret);
        assert_eq!(s.block((1, 0, 1)).unwrap().unwrap(), block(2, 900));
        assert_eq!(s.block((1, 0, 2)).unwrap(), None);
        let objects = s.objects().unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!((objects[0].0, objects[0].1.kind, objects[0].1.epoch), ((1, 0), ObjectKind::Chat, 3));
        assert_eq!(s.counters().unwrap(), vec![(1, 100)]);
        drop(s);
        let raw = std::fs::read(dir.path().join("a.redb")).unwrap();
        assert!(!raw.windows(20).any(|w| w == &secret[..20]), "plaintext on disk");
        // Another key opens nothing.
        let other = ArchiveStore::open(&dir.path().join("a.redb"), &[8; 32], Limits::default()).unwrap();
        assert!(matches!(other.block((1, 0, 0)), Err(StoreError::Corrupt { .. })));
        drop(other);
        // Reopened, the byte count is what it was.
        let s = open(&dir, Limits::default());
        assert_eq!(s.bytes(), (secret.len() + 900 + 2 * (NONCE_LEN + TAG_LEN)) as u64);
    }

    #[test]
    fn a_block_cannot_be_moved_to_another_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir, Limits::default());
        s.put(&[put(1, 0, 0, ObjectKind::Chat, block(1, 500))]).unwrap();
        let txn = s.db.begin_write().unwrap();
        {
            let mut t = txn.open_table(BLOCKS).unwrap();
            let v = t.get((1, 0, 0)).unwrap().unwrap().value().to_vec();
            t.insert((1, 0, 1), v.as_slice()).unwrap();
        }
        txn.commit().unwrap();
        assert!(matches!(s.block((1, 0, 1)), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn over_its_bytes_the_oldest_files_go_before_any_chat() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir, Limits { max_age: Duration::from_secs(3600), max_bytes: 10_000 });
        // Chat 0, file 1, chat 2, file 3, file 4: 3000 bytes each.
        for (object, kind) in [ObjectKind::Chat, ObjectKind::File, ObjectKind::Chat, ObjectKind::File, ObjectKind::File]
            .into_iter()
            .enumerate()
        {
            s.put(&[put(1, object as u32, 0, kind, block(object as u8, 3000))]).unwrap();
        }
        let dropped = s.enforce(unix_now()).unwrap();
        assert_eq!(dropped, vec![(1, 1), (1, 3)], "the two oldest files");
        assert!(s.bytes() <= 10_000);
        assert!(s.block((1, 1, 0)).unwrap().is_none() && s.block((1, 0, 0)).unwrap().is_some());
        // Only chat left over the bound: the oldest chat goes.
        drop(s);
        let mut s2 = open(&dir, Limits { max_age: Duration::from_secs(3600), max_bytes: 5_000 });
        let dropped = s2.enforce(unix_now()).unwrap();
        assert_eq!(dropped, vec![(1, 4), (1, 0)]);
        assert!(s2.bytes() <= 5_000);
        assert_eq!(s2.objects().unwrap().iter().map(|o| o.0).collect::<Vec<_>>(), vec![(1, 2)]);
    }

    #[test]
    fn past_its_age_everything_goes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir, Limits { max_age: Duration::from_secs(60), max_bytes: 1 << 30 });
        s.put(&[put(1, 0, 0, ObjectKind::Chat, block(0, 100)), put(2, 5, 0, ObjectKind::File, block(1, 100))]).unwrap();
        assert!(s.enforce(unix_now() + 30).unwrap().is_empty());
        assert_eq!(s.enforce(unix_now() + 61).unwrap(), vec![(1, 0), (2, 5)]);
        assert_eq!((s.bytes(), s.objects().unwrap().len()), (0, 0));
    }

    #[test]
    fn a_restarted_sender_is_forgotten_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir, Limits::default());
        s.put(&[put(1, 0, 0, ObjectKind::Chat, block(0, 100)), put(2, 0, 0, ObjectKind::Chat, block(1, 100))]).unwrap();
        assert_eq!(s.forget_origin(1).unwrap(), vec![(1, 0)]);
        assert_eq!(s.objects().unwrap().iter().map(|o| o.0).collect::<Vec<_>>(), vec![(2, 0)]);
        assert_eq!(s.counters().unwrap(), vec![(2, 100)]);
    }
}

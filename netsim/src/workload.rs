//! What the simulated sender sends, and what each receiver must end up with.
//!
//! Owns the objects of a run: a file whose bytes are computed from the seed
//! (so a 16 MiB file is never held whole by the sender), chat messages, and
//! the SHA-256 of each, against which deliveries are verified.

use std::io;

use lsim_transport::source::ObjectSource;
use lsim_transport::wire::ObjectKind;
use sha2::{Digest, Sha256};

use crate::scenario::Workload;

/// A file whose byte at offset i is a fixed function of (seed, i).
#[derive(Clone, Debug)]
pub struct PatternSource {
    seed: u64,
    len: u64,
}

impl PatternSource {
    /// A pattern file of `len` bytes.
    pub fn new(seed: u64, len: u64) -> PatternSource {
        PatternSource { seed, len }
    }

    fn word(&self, i: u64) -> [u8; 8] {
        let mut z = self.seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)).to_le_bytes()
    }

    /// SHA-256 of the whole pattern, streamed.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut off = 0;
        let mut me = self.clone();
        while off < self.len {
            let n = (self.len - off).min(buf.len() as u64) as usize;
            // Reads inside the length cannot fail.
            let _ = me.read_at(off, &mut buf[..n]);
            h.update(&buf[..n]);
            off += n as u64;
        }
        h.finalize().into()
    }
}

impl ObjectSource for PatternSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset.checked_add(buf.len() as u64).is_none_or(|end| end > self.len) {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        for (j, b) in buf.iter_mut().enumerate() {
            let i = offset + j as u64;
            *b = self.word(i / 8)[(i % 8) as usize];
        }
        Ok(())
    }
}

/// One object of the workload, as the receivers must see it.
#[derive(Clone, Debug)]
pub struct Expected {
    /// Kind.
    pub kind: ObjectKind,
    /// Length.
    pub len: u64,
    /// SHA-256 of the content.
    pub digest: [u8; 32],
}

/// The text of chat message `i`.
pub fn chat(seed: u64, i: u32, bytes: u32) -> Vec<u8> {
    let head = format!("chat {i} from seed {seed}: ");
    head.bytes().chain((0..).map(|j: u32| b'a' + ((i + j) % 26) as u8)).take(bytes as usize).collect()
}

/// The bytes of rekey message `i` (a stand-in of the real size).
pub fn rekey(seed: u64, i: u32, bytes: u32) -> Vec<u8> {
    let mut p = PatternSource::new(seed ^ 0x5eed_4b45 ^ u64::from(i) << 32, u64::from(bytes));
    let mut v = vec![0u8; bytes as usize];
    // Reads inside the length cannot fail.
    let _ = p.read_at(0, &mut v);
    v
}

/// The files of a workload: `file_bytes` and then each of `files`.
pub fn files(w: &Workload) -> Vec<u64> {
    std::iter::once(w.file_bytes).filter(|&b| b > 0).chain(w.files.iter().copied()).collect()
}

/// The objects of one sender's workload (`seed` is that sender's): files,
/// then chats, then rekeys. Receivers match deliveries by content, so the
/// order they are sent in (chat and rekeys may be spread over time) does not matter.
pub fn expected(w: &Workload, seed: u64) -> Vec<Expected> {
    let mut v = Vec::new();
    for (i, len) in files(w).into_iter().enumerate() {
        let p = PatternSource::new(seed.wrapping_add(i as u64), len);
        v.push(Expected { kind: ObjectKind::File, len, digest: p.digest() });
    }
    for i in 0..w.chats {
        let c = chat(seed, i, w.chat_bytes);
        v.push(Expected { kind: ObjectKind::Chat, len: c.len() as u64, digest: Sha256::digest(&c).into() });
    }
    for i in 0..w.rekeys {
        let r = rekey(seed, i, w.rekey_bytes);
        v.push(Expected { kind: ObjectKind::Rekey, len: r.len() as u64, digest: Sha256::digest(&r).into() });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_repeatable_at_any_offset() {
        let mut p = PatternSource::new(3, 1000);
        let mut whole = vec![0u8; 1000];
        p.read_at(0, &mut whole).unwrap();
        let mut part = vec![0u8; 13];
        p.read_at(501, &mut part).unwrap();
        assert_eq!(&whole[501..514], &part[..]);
        assert!(p.read_at(990, &mut part).is_err());
        assert_eq!(Sha256::digest(&whole).as_slice(), p.digest());
    }

    #[test]
    fn chats_have_the_asked_size() {
        assert_eq!(chat(1, 7, 120).len(), 120);
        assert_ne!(chat(1, 7, 120), chat(1, 8, 120));
    }
}

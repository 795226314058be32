//! A file as the transport carries it: a header naming it, its bytes, and
//! their SHA-256 at the end.
//!
//! Owns the envelope format (`LSF1`, name, size; bytes; digest) on both
//! sides: `Outgoing` wraps a file as an `ObjectSource` and hashes it while
//! the sender reads it in order (no extra pass over the file); `Incoming`
//! takes a receiver's in-order blocks, writes the bytes to a temporary file
//! and checks the digest. Where the file lands is `landing`'s business.

use std::io::{self, Write};

use lsim_transport::source::ObjectSource;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 4] = b"LSF1";
/// Longest file name carried.
pub const MAX_NAME: usize = 255;
const DIGEST: usize = 32;

/// The header: magic, u16 name length, name (UTF-8), u64 file size.
fn header(name: &str, size: u64) -> Vec<u8> {
    let name = &name.as_bytes()[..name.len().min(MAX_NAME)];
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&(name.len() as u16).to_be_bytes());
    h.extend_from_slice(name);
    h.extend_from_slice(&size.to_be_bytes());
    h
}

/// A file wrapped for sending.
pub struct Outgoing<S> {
    header: Vec<u8>,
    file: S,
    size: u64,
    hasher: Sha256,
    hashed: u64,
    digest: Option<[u8; DIGEST]>,
}

impl<S: ObjectSource> Outgoing<S> {
    /// Wraps `file` under `name`.
    pub fn new(name: &str, file: S) -> Outgoing<S> {
        let size = file.len();
        Outgoing { header: header(name, size), file, size, hasher: Sha256::new(), hashed: 0, digest: None }
    }

    /// Hashes file bytes up to `end` that were not hashed yet, reading them if needed.
    fn hash_to(&mut self, end: u64) -> io::Result<()> {
        let mut buf = vec![0u8; 1 << 16];
        while self.hashed < end {
            let n = (end - self.hashed).min(buf.len() as u64) as usize;
            self.file.read_at(self.hashed, &mut buf[..n])?;
            self.hasher.update(&buf[..n]);
            self.hashed += n as u64;
        }
        Ok(())
    }

    fn digest(&mut self) -> io::Result<[u8; DIGEST]> {
        if let Some(d) = self.digest {
            return Ok(d);
        }
        self.hash_to(self.size)?;
        let d: [u8; DIGEST] = std::mem::take(&mut self.hasher).finalize().into();
        self.digest = Some(d);
        Ok(d)
    }
}

impl<S: ObjectSource> ObjectSource for Outgoing<S> {
    fn len(&self) -> u64 {
        self.header.len() as u64 + self.size + DIGEST as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let h = self.header.len() as u64;
        let mut pos = offset;
        let mut out = 0usize;
        while out < buf.len() {
            let want = buf.len() - out;
            if pos < h {
                let n = ((h - pos) as usize).min(want);
                buf[out..out + n].copy_from_slice(&self.header[pos as usize..pos as usize + n]);
                pos += n as u64;
                out += n;
            } else if pos < h + self.size {
                let at = pos - h;
                let n = ((self.size - at) as usize).min(want);
                // Bytes read in order for the first time are hashed as they pass.
                if at > self.hashed {
                    self.hash_to(at)?;
                }
                self.file.read_at(at, &mut buf[out..out + n])?;
                if at == self.hashed && self.digest.is_none() {
                    self.hasher.update(&buf[out..out + n]);
                    self.hashed += n as u64;
                }
                pos += n as u64;
                out += n;
            } else {
                let at = (pos - h - self.size) as usize;
                if at >= DIGEST {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                let d = self.digest()?;
                let n = (DIGEST - at).min(want);
                buf[out..out + n].copy_from_slice(&d[at..at + n]);
                pos += n as u64;
                out += n;
            }
        }
        Ok(())
    }
}

/// An incoming envelope being written out.
pub struct Incoming<W> {
    out: W,
    head: Vec<u8>,
    name: Option<String>,
    size: u64,
    written: u64,
    tail: Vec<u8>,
    hasher: Sha256,
}

/// What `Incoming::finish` found.
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    /// The name the sender gave (not yet sanitized).
    pub name: String,
    /// Bytes written.
    pub size: u64,
}

impl<W: Write> Incoming<W> {
    /// Writes the file bytes of an envelope to `out`.
    pub fn new(out: W) -> Incoming<W> {
        Incoming { out, head: Vec::new(), name: None, size: 0, written: 0, tail: Vec::new(), hasher: Sha256::new() }
    }

    /// The next bytes of the envelope, in order.
    pub fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        if self.name.is_none() {
            self.head.extend_from_slice(data);
            data = &[];
            let h = &self.head;
            if h.len() >= 6 {
                if &h[..4] != MAGIC {
                    return Err(bad("not an lsim file envelope"));
                }
                let n = usize::from(u16::from_be_bytes([h[4], h[5]]));
                if n == 0 || n > MAX_NAME {
                    return Err(bad("file name length out of range"));
                }
                if h.len() >= 6 + n + 8 {
                    let name = String::from_utf8(h[6..6 + n].to_vec()).map_err(|_| bad("file name is not UTF-8"))?;
                    let mut size = [0u8; 8];
                    size.copy_from_slice(&h[6 + n..6 + n + 8]);
                    self.size = u64::from_be_bytes(size);
                    self.name = Some(name);
                    let rest = self.head.split_off(6 + n + 8);
                    self.head = Vec::new();
                    return self.push(&rest);
                }
            }
            if self.head.len() > 6 + MAX_NAME + 8 {
                return Err(bad("envelope header too long"));
            }
        }
        // Hold back the last 32 bytes: they may be the digest.
        self.tail.extend_from_slice(data);
        if self.tail.len() > DIGEST {
            let n = self.tail.len() - DIGEST;
            if self.written + n as u64 > self.size {
                return Err(bad("more bytes than the header announced"));
            }
            self.out.write_all(&self.tail[..n])?;
            self.hasher.update(&self.tail[..n]);
            self.written += n as u64;
            self.tail.drain(..n);
        }
        Ok(())
    }

    /// The envelope is complete: checks size and digest, flushes, and gives back the writer.
    pub fn finish(mut self) -> io::Result<(Received, W)> {
        let name = self.name.take().ok_or_else(|| bad("envelope ended before its header"))?;
        if self.written != self.size || self.tail.len() != DIGEST {
            return Err(bad("envelope length differs from its header"));
        }
        let digest: [u8; DIGEST] = self.hasher.finalize().into();
        if digest[..] != self.tail[..] {
            return Err(bad("SHA-256 of the received file does not match the sender's"));
        }
        self.out.flush()?;
        Ok((Received { name, size: self.size }, self.out))
    }
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(data: &[u8]) -> Vec<u8> {
        let mut o = Outgoing::new("report.pdf", data.to_vec());
        let mut all = vec![0u8; o.len() as usize];
        // Read in blocks, in order, then re-read a middle block (as a repair would).
        for chunk in (0..all.len()).step_by(1000) {
            let end = (chunk + 1000).min(all.len());
            o.read_at(chunk as u64, &mut all[chunk..end]).unwrap();
        }
        let mut again = vec![0u8; 100];
        o.read_at(500, &mut again).unwrap();
        assert_eq!(&again[..], &all[500..600]);
        all
    }

    #[test]
    fn a_file_round_trips_in_any_chunking() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let env = wrap(&data);
        for step in [1, 7, 100, 4096, env.len()] {
            let mut inc = Incoming::new(Vec::new());
            for c in env.chunks(step) {
                inc.push(c).unwrap();
            }
            let (r, out) = inc.finish().unwrap();
            assert_eq!((r.name.as_str(), r.size, out == data), ("report.pdf", 10_000, true));
        }
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let data = vec![7u8; 5000];
        let mut env = wrap(&data);
        let mid = env.len() / 2;
        env[mid] ^= 1;
        let mut inc = Incoming::new(Vec::new());
        inc.push(&env).unwrap();
        let e = inc.finish().err().unwrap();
        assert!(e.to_string().contains("SHA-256"), "{e}");
        let mut inc = Incoming::new(Vec::new());
        assert!(inc.push(b"NOPE\x00\x01x").is_err());
    }
}

//! A file as the transport carries it: a header naming it, its bytes, and
//! their SHA-256 at the end; in group mode also the sender's certificate and
//! its signature over header and digest (who sent it, not only that a member did).
//!
//! Owns the envelope format on both sides:
//!
//! ```text
//! "LSF1" | name_len: u16 | name | size: u64 | bytes | sha256: 32
//! "LSF2" | name_len: u16 | name | size: u64 | cert_len: u16 | cert | bytes | sha256: 32 | signature: 64
//! ```
//!
//! The LSF2 signature covers "lsim file v1", the header and the digest: one
//! signature per file, made once the sender has read the file in order.
//! `Outgoing` wraps a file as an `ObjectSource` and hashes it while the sender
//! reads it in order (no extra pass over the file); `Incoming` takes a
//! receiver's in-order blocks, writes the bytes to a temporary file and checks
//! the digest, and hands back the signature for the caller to check against
//! the key server's key. Where the file lands is `landing`'s business.

use std::io::{self, Write};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use lsim_keymgmt::cert::{CertError, MAX_CERT, MemberCert, Signer};
use lsim_transport::source::ObjectSource;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 4] = b"LSF1";
const SIGNED_MAGIC: &[u8; 4] = b"LSF2";
const CONTEXT: &[u8] = b"lsim file v1\0";
const SIGNATURE: usize = 64;
/// Longest file name carried.
pub const MAX_NAME: usize = 255;
const DIGEST: usize = 32;

/// The header: magic, u16 name length, name (UTF-8), u64 file size, and
/// for a signed envelope the sender's certificate.
fn header(name: &str, size: u64, cert: Option<&MemberCert>) -> Vec<u8> {
    let mut end = name.len().min(MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    // The receiver refuses an empty name: a nameless file goes as "file".
    let name = if end == 0 { b"file".as_slice() } else { &name.as_bytes()[..end] };
    let mut h = if cert.is_some() { SIGNED_MAGIC.to_vec() } else { MAGIC.to_vec() };
    h.extend_from_slice(&(name.len() as u16).to_be_bytes());
    h.extend_from_slice(name);
    h.extend_from_slice(&size.to_be_bytes());
    if let Some(c) = cert {
        let c = c.encode();
        h.extend_from_slice(&(c.len() as u16).to_be_bytes());
        h.extend_from_slice(&c);
    }
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
    signer: Option<Arc<Signer>>,
    /// The digest, then the signature if signed.
    trailer: Vec<u8>,
}

impl<S: ObjectSource> Outgoing<S> {
    /// Wraps `file` under `name`.
    pub fn new(name: &str, file: S) -> Outgoing<S> {
        let size = file.len();
        let header = header(name, size, None);
        Outgoing {
            header,
            file,
            size,
            hasher: Sha256::new(),
            hashed: 0,
            digest: None,
            signer: None,
            trailer: Vec::new(),
        }
    }

    /// Wraps `file` under `name`, signed by `signer` (group mode).
    pub fn signed(name: &str, file: S, signer: Arc<Signer>) -> Outgoing<S> {
        let size = file.len();
        let header = header(name, size, Some(signer.cert()));
        let signer = Some(signer);
        Outgoing { header, file, size, hasher: Sha256::new(), hashed: 0, digest: None, signer, trailer: Vec::new() }
    }

    fn trailer_len(&self) -> usize {
        DIGEST + if self.signer.is_some() { SIGNATURE } else { 0 }
    }

    /// The digest and, if signed, the signature over header and digest.
    fn trailer(&mut self) -> io::Result<&[u8]> {
        if self.trailer.is_empty() {
            let d = self.digest()?;
            self.trailer.extend_from_slice(&d);
            if let Some(s) = &self.signer {
                let mut signed = self.header.clone();
                signed.extend_from_slice(&d);
                self.trailer.extend_from_slice(&s.sign(CONTEXT, &signed));
            }
        }
        Ok(&self.trailer)
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
        self.header.len() as u64 + self.size + self.trailer_len() as u64
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
                let t = self.trailer()?;
                if at >= t.len() {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                let n = (t.len() - at).min(want);
                buf[out..out + n].copy_from_slice(&t[at..at + n]);
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
    /// A signed envelope: its header bytes and the certificate in it.
    signed: Option<(Vec<u8>, MemberCert)>,
}

/// What `Incoming::finish` found.
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    /// The name the sender gave (not yet sanitized).
    pub name: String,
    /// Bytes written.
    pub size: u64,
    /// The sender's signature, for a signed envelope (not yet checked).
    pub signature: Option<FileSignature>,
}

/// A file's signature as received: check it with `verify`.
#[derive(Debug, PartialEq, Eq)]
pub struct FileSignature {
    /// The certificate the envelope carried.
    pub cert: MemberCert,
    signed: Vec<u8>,
    signature: [u8; SIGNATURE],
}

impl FileSignature {
    /// Checks the certificate against the key server's key at `now_ms` and
    /// the signature under the certified key; returns the signer's user name.
    pub fn verify(&self, server: &VerifyingKey, now_ms: u64) -> Result<&str, CertError> {
        self.cert.verify(server, now_ms)?;
        self.cert.verify_signed(CONTEXT, &self.signed, &self.signature)?;
        Ok(&self.cert.user)
    }
}

impl<W: Write> Incoming<W> {
    /// Writes the file bytes of an envelope to `out`.
    pub fn new(out: W) -> Incoming<W> {
        Incoming {
            out,
            head: Vec::new(),
            name: None,
            size: 0,
            written: 0,
            tail: Vec::new(),
            hasher: Sha256::new(),
            signed: None,
        }
    }

    /// The next bytes of the envelope, in order.
    pub fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        if self.name.is_none() {
            self.head.extend_from_slice(data);
            data = &[];
            let h = &self.head;
            if h.len() >= 6 {
                let signed = &h[..4] == SIGNED_MAGIC;
                if &h[..4] != MAGIC && !signed {
                    return Err(bad("not an lsim file envelope"));
                }
                let n = usize::from(u16::from_be_bytes([h[4], h[5]]));
                if n == 0 || n > MAX_NAME {
                    return Err(bad("file name length out of range"));
                }
                let cert_at = 6 + n + 8;
                let cert_len = match h.get(cert_at..cert_at + 2) {
                    _ if !signed => Some(0),
                    Some(l) => Some(usize::from(u16::from_be_bytes([l[0], l[1]]))),
                    None => None,
                };
                if cert_len.is_some_and(|l| l > MAX_CERT) {
                    return Err(bad("certificate length out of range"));
                }
                let end = cert_len.map(|l| if signed { cert_at + 2 + l } else { cert_at });
                if let Some(end) = end
                    && h.len() >= end
                {
                    let name = String::from_utf8(h[6..6 + n].to_vec()).map_err(|_| bad("file name is not UTF-8"))?;
                    let mut size = [0u8; 8];
                    size.copy_from_slice(&h[6 + n..6 + n + 8]);
                    self.size = u64::from_be_bytes(size);
                    if signed {
                        let (cert, used) = MemberCert::decode(&h[cert_at + 2..end]).map_err(|e| bad(&e.to_string()))?;
                        if used != end - cert_at - 2 {
                            return Err(bad("certificate length differs from its contents"));
                        }
                        self.signed = Some((h[..end].to_vec(), cert));
                    }
                    self.name = Some(name);
                    let rest = self.head.split_off(end);
                    self.head = Vec::new();
                    return self.push(&rest);
                }
            }
            if self.head.len() > 6 + MAX_NAME + 8 + 2 + MAX_CERT {
                return Err(bad("envelope header too long"));
            }
        }
        // Hold back the trailer: the last bytes may be the digest (and signature).
        let hold = self.trailer_len();
        self.tail.extend_from_slice(data);
        if self.tail.len() > hold {
            let n = self.tail.len() - hold;
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

    fn trailer_len(&self) -> usize {
        DIGEST + if self.signed.is_some() { SIGNATURE } else { 0 }
    }

    /// The envelope is complete: checks size and digest, flushes, and gives
    /// back the writer (and the signature, which the caller checks).
    pub fn finish(mut self) -> io::Result<(Received, W)> {
        let name = self.name.take().ok_or_else(|| bad("envelope ended before its header"))?;
        if self.written != self.size || self.tail.len() != self.trailer_len() {
            return Err(bad("envelope length differs from its header"));
        }
        let digest: [u8; DIGEST] = std::mem::take(&mut self.hasher).finalize().into();
        if digest[..] != self.tail[..DIGEST] {
            return Err(bad("SHA-256 of the received file does not match the sender's"));
        }
        let signature = match self.signed.take() {
            None => None,
            Some((mut signed, cert)) => {
                signed.extend_from_slice(&digest);
                let mut signature = [0u8; SIGNATURE];
                signature.copy_from_slice(&self.tail[DIGEST..]);
                Some(FileSignature { cert, signed, signature })
            }
        };
        self.out.flush()?;
        Ok((Received { name, size: self.size, signature }, self.out))
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
            assert!(r.signature.is_none());
        }
    }

    #[test]
    fn a_signed_file_names_its_verified_sender_and_tampering_breaks_it() {
        use ed25519_dalek::SigningKey;
        let server = SigningKey::from_bytes(&[1; 32]);
        let sign_as = |user: &str, seed: u8| {
            let key = SigningKey::from_bytes(&[seed; 32]);
            let cert = MemberCert::issue(&server, user, 1, 1, key.verifying_key().to_bytes(), u64::MAX);
            Arc::new(Signer::new(key, cert))
        };
        let data: Vec<u8> = (0..9_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let envelope = |signer: Arc<Signer>| {
            let mut o = Outgoing::signed("plan.pdf", data.clone(), signer);
            let mut all = vec![0u8; o.len() as usize];
            o.read_at(0, &mut all).unwrap();
            all
        };
        let receive = |env: &[u8]| {
            let mut inc = Incoming::new(Vec::new());
            for c in env.chunks(333) {
                inc.push(c)?;
            }
            inc.finish()
        };
        let vk = server.verifying_key();
        let env = envelope(sign_as("alice", 2));
        let (r, out) = receive(&env).unwrap();
        assert!(out == data);
        assert_eq!(r.signature.as_ref().unwrap().verify(&vk, 0), Ok("alice"));
        // bob re-signs alice's file with alice's certificate: the signature fails.
        let bob = envelope(sign_as("bob", 3));
        let alice_cert = sign_as("alice", 2).cert().encode();
        let mut forged = bob.clone();
        let bob_cert = sign_as("bob", 3).cert().encode();
        let at = forged.windows(bob_cert.len()).position(|w| w == bob_cert.as_slice()).unwrap();
        forged[at - 2..at].copy_from_slice(&(alice_cert.len() as u16).to_be_bytes());
        forged.splice(at..at + bob_cert.len(), alice_cert);
        let (r, _) = receive(&forged).unwrap();
        assert!(matches!(r.signature.unwrap().verify(&vk, 0), Err(CertError::Forged(_))));
        // A changed name (in the signed header) breaks the signature too.
        let mut renamed = env.clone();
        let at = renamed.windows(8).position(|w| w == b"plan.pdf").unwrap();
        renamed[at] = b'P';
        let (r, _) = receive(&renamed).unwrap();
        assert!(r.signature.unwrap().verify(&vk, 0).is_err());
        // Every truncation is refused, never accepted.
        for n in (0..env.len()).step_by(97) {
            assert!(receive(&env[..n]).is_err(), "a truncation at {n} was accepted");
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

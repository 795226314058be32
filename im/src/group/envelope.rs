//! A file as the transport carries it: a header naming it, its bytes, and
//! their SHA-256 at the end; in group mode also the sender's certificate and
//! its signature over header and digest (who sent it, not only that a member did).
//!
//! Owns the envelope format on both sides:
//!
//! ```text
//! "LSF1" | name_len: u16 | name | size: u64 | bytes | sha256: 32
//! "LSF2" | name_len: u16 | name | size: u64 | cert_len: u16 | cert | bytes | sha256: 32 | signature: 64
//! "LSF3" | name_len: u16 | name* | size: u64 | cert_len: u16 | cert | n: u16 | n × wrap (68) | bytes* | sha256: 32 | signature: 64
//! ```
//!
//! The LSF2 and LSF3 signatures cover "lsim file v1", the header and the
//! digest: one signature per file, made once the sender has read the file in
//! order.
//!
//! LSF3 is a file for some members of the group only. Its name and bytes
//! (starred) are encrypted with ChaCha20 under a fresh file key (nonce 1 for
//! the name, 0 for the bytes; the key is used for this one file), the
//! keystream of `lsim_keymgmt::filecipher`. The key server wrapped that key
//! for each recipient under the recipient's individual key (`filekey`);
//! other members see the sender, the size and who the recipients are, never
//! the name or the bytes. The digest is over the bytes as sent (encrypted),
//! so it tells others nothing either; the signature still binds the sender
//! to the header, the wraps and the file.
//! `Outgoing` wraps a file as an `ObjectSource` and hashes it while the sender
//! reads it in order (no extra pass over the file); `Incoming` takes a
//! receiver's in-order blocks, writes the bytes to a temporary file and checks
//! the digest, and hands back the signature for the caller to check against
//! the key server's key. The header is read with the shared bounded
//! `codec::Reader` from the bytes so far: a read that runs short waits for
//! more. Where the file lands is `landing`'s business.

use std::io::{self, Write};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use lsim_keymgmt::cert::{CertError, MAX_CERT, MemberCert, Signer};
use lsim_keymgmt::client::FileKeyOpener;
use lsim_keymgmt::filecipher::{Keystream, MAX_KEYSTREAM};
use lsim_keymgmt::filekey::{FileKey, MAX_RECIPIENTS, WRAP_ENCODED_LEN, Wrap};
use lsim_transport::codec::{Reader, Short};
use lsim_transport::source::ObjectSource;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 4] = b"LSF1";
const SIGNED_MAGIC: &[u8; 4] = b"LSF2";
const RESTRICTED_MAGIC: &[u8; 4] = b"LSF3";
/// Longest restricted file: ChaCha20's keystream under one nonce.
pub const MAX_RESTRICTED: u64 = MAX_KEYSTREAM;
const CONTEXT: &[u8] = b"lsim file v1\0";
const SIGNATURE: usize = 64;
/// Longest file name carried.
pub const MAX_NAME: usize = 255;
const DIGEST: usize = 32;
/// Longest header a receiver waits for: every length at its bound.
const MAX_HEADER: usize = 6 + MAX_NAME + 8 + 2 + MAX_CERT + 2 + MAX_RECIPIENTS * WRAP_ENCODED_LEN;

/// `name` as carried: cut to [`MAX_NAME`] bytes at a character boundary.
fn carried_name(name: &str) -> &[u8] {
    let mut end = name.len().min(MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    // The receiver refuses an empty name: a nameless file goes as "file".
    if end == 0 { b"file".as_slice() } else { &name.as_bytes()[..end] }
}

/// The header: magic, u16 name length, name (as carried, and for a
/// restricted file already encrypted), u64 file size, for a signed envelope
/// the sender's certificate, and for a restricted one the wraps of its key.
fn header(name: &[u8], size: u64, cert: Option<&MemberCert>, wraps: Option<&[Wrap]>) -> Vec<u8> {
    let magic = match (cert.is_some(), wraps.is_some()) {
        (_, true) => RESTRICTED_MAGIC,
        (true, false) => SIGNED_MAGIC,
        (false, false) => MAGIC,
    };
    let mut h = magic.to_vec();
    h.extend_from_slice(&(name.len() as u16).to_be_bytes());
    h.extend_from_slice(name);
    h.extend_from_slice(&size.to_be_bytes());
    if let Some(c) = cert {
        let c = c.encode();
        h.extend_from_slice(&(c.len() as u16).to_be_bytes());
        h.extend_from_slice(&c);
    }
    if let Some(wraps) = wraps {
        h.extend_from_slice(&(wraps.len() as u16).to_be_bytes());
        for w in wraps {
            h.extend_from_slice(&w.encode());
        }
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
    /// A restricted file: the keystream its bytes are encrypted with.
    cipher: Option<Keystream>,
}

impl<S: ObjectSource> Outgoing<S> {
    /// Wraps `file` under `name`.
    pub fn new(name: &str, file: S) -> Outgoing<S> {
        let size = file.len();
        Outgoing::with_header(header(carried_name(name), size, None, None), file, None, None)
    }

    /// Wraps `file` under `name`, signed by `signer` (group mode).
    pub fn signed(name: &str, file: S, signer: Arc<Signer>) -> Outgoing<S> {
        let size = file.len();
        let header = header(carried_name(name), size, Some(signer.cert()), None);
        Outgoing::with_header(header, file, Some(signer), None)
    }

    /// Wraps `file` under `name`, signed by `signer`, for the members whose
    /// `wraps` of `key` the key server made (a fresh key for each file):
    /// name and bytes are encrypted under `key`. At most
    /// [`MAX_RECIPIENTS`] wraps, at least one.
    pub fn restricted(
        name: &str,
        file: S,
        signer: Arc<Signer>,
        wraps: &[Wrap],
        key: &FileKey,
    ) -> io::Result<Outgoing<S>> {
        if wraps.is_empty() || wraps.len() > MAX_RECIPIENTS {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a restricted file needs 1 to 1024 recipients"));
        }
        let size = file.len();
        if size > MAX_RESTRICTED {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a restricted file is at most 256 GiB"));
        }
        let mut name = carried_name(name).to_vec();
        // At most MAX_NAME bytes: far inside the name's keystream.
        let too_long = |_| io::Error::new(io::ErrorKind::InvalidInput, "file name too long to encrypt");
        Keystream::for_name(key).apply(&mut name).map_err(too_long)?;
        let header = header(&name, size, Some(signer.cert()), Some(wraps));
        Ok(Outgoing::with_header(header, file, Some(signer), Some(Keystream::for_bytes(key))))
    }

    fn with_header(header: Vec<u8>, file: S, signer: Option<Arc<Signer>>, cipher: Option<Keystream>) -> Outgoing<S> {
        let size = file.len();
        Outgoing {
            header,
            file,
            size,
            hasher: Sha256::new(),
            hashed: 0,
            digest: None,
            signer,
            trailer: Vec::new(),
            cipher,
        }
    }

    /// Reads file bytes at `at` as they go out: encrypted for a restricted file.
    fn read_file(&mut self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_at(at, buf)?;
        if let Some(c) = self.cipher.as_mut() {
            let too_long = |_| io::Error::new(io::ErrorKind::InvalidInput, "file too long to encrypt");
            c.seek(at).map_err(too_long)?;
            c.apply(buf).map_err(too_long)?;
        }
        Ok(())
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
            self.read_file(self.hashed, &mut buf[..n])?;
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
                self.read_file(at, &mut buf[out..out + n])?;
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

/// Why a restricted file was refused: its key was not wrapped for us.
#[derive(Debug, thiserror::Error)]
#[error("the file is for other members only")]
pub struct NotForUs;

impl NotForUs {
    /// Whether `e` (from [`Incoming::push`]) is this refusal.
    pub fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<NotForUs>())
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
    /// Finds our wrap among a restricted file's and unwraps its key.
    opener: Option<FileKeyOpener>,
    /// A restricted file for us: the keystream of its bytes.
    cipher: Option<Keystream>,
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
    /// A file for some members only (LSF3), opened with our key.
    pub restricted: bool,
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
    /// Writes the file bytes of an envelope to `out`; a restricted file is
    /// refused as not for us.
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
            opener: None,
            cipher: None,
        }
    }

    /// Like [`Incoming::new`], and a restricted file is opened with the key
    /// `opener` unwraps; one it cannot is refused with
    /// [`NotForUs`] before anything is written.
    pub fn with_keys(out: W, opener: FileKeyOpener) -> Incoming<W> {
        Incoming { opener: Some(opener), ..Incoming::new(out) }
    }

    /// The next bytes of the envelope, in order.
    pub fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        if self.name.is_none() {
            self.head.extend_from_slice(data);
            data = &[];
            if let Some(end) = self.open_head()? {
                let rest = std::mem::take(&mut self.head).split_off(end);
                return self.push(&rest);
            }
            if self.head.len() > MAX_HEADER {
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
            // The digest is over the bytes as sent; a restricted file's are
            // decrypted after it.
            self.hasher.update(&self.tail[..n]);
            if let Some(c) = self.cipher.as_mut() {
                // Past ChaCha20's 256 GiB: only a lying header gets here.
                c.apply(&mut self.tail[..n]).map_err(|_| bad("restricted file longer than 256 GiB"))?;
            }
            self.out.write_all(&self.tail[..n])?;
            self.written += n as u64;
            self.tail.drain(..n);
        }
        Ok(())
    }

    /// Takes in the header once all of it is here (for a restricted file
    /// also its key): `None` while bytes are missing, else its length.
    fn open_head(&mut self) -> io::Result<Option<usize>> {
        let head = match Head::read(&self.head) {
            Ok(head) => head,
            Err(Unread::More) => return Ok(None),
            Err(Unread::Bad(why)) => return Err(bad(why)),
        };
        let mut name = head.name.to_vec();
        self.size = head.size;
        if let Some(cert) = head.cert {
            let (decoded, used) = MemberCert::decode(cert).map_err(|e| bad(&e.to_string()))?;
            if used != cert.len() {
                return Err(bad("certificate length differs from its contents"));
            }
            self.signed = Some((self.head[..head.header_len].to_vec(), decoded));
        }
        if let Some(wraps) = head.wraps {
            if self.size > MAX_RESTRICTED {
                return Err(bad("restricted file longer than 256 GiB"));
            }
            let wraps: Result<Vec<_>, _> = wraps.chunks_exact(WRAP_ENCODED_LEN).map(Wrap::decode).collect();
            let wraps = wraps.map_err(|e| bad(&e.to_string()))?;
            let key = self.opener.as_ref().and_then(|open| open(&wraps));
            let key = key.ok_or_else(|| io::Error::new(io::ErrorKind::PermissionDenied, NotForUs))?;
            // At most MAX_NAME bytes: far inside the name's keystream.
            Keystream::for_name(&key).apply(&mut name).map_err(|_| bad("file name too long to decrypt"))?;
            self.cipher = Some(Keystream::for_bytes(&key));
        }
        let name = String::from_utf8(name).map_err(|_| bad("file name is not UTF-8"))?;
        self.name = Some(name);
        Ok(Some(head.header_len))
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
        let restricted = self.cipher.is_some();
        Ok((Received { name, size: self.size, signature, restricted }, self.out))
    }
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// A header's fields as read, before the certificate, size and wraps are
/// checked and opened.
struct Head<'a> {
    /// As on the wire: encrypted in a restricted file.
    name: &'a [u8],
    size: u64,
    /// The certificate's bytes (LSF2, LSF3).
    cert: Option<&'a [u8]>,
    /// The wraps' bytes (LSF3).
    wraps: Option<&'a [u8]>,
    header_len: usize,
}

/// Why no header was read: not all of it is here yet, or it is none.
enum Unread {
    More,
    Bad(&'static str),
}

impl From<Short> for Unread {
    fn from(_: Short) -> Unread {
        Unread::More
    }
}

impl<'a> Head<'a> {
    /// Reads a header from the start of `bytes`, refusing each length out of
    /// its bounds as soon as it has arrived.
    fn read(bytes: &'a [u8]) -> Result<Head<'a>, Unread> {
        let mut r = Reader::new(bytes);
        // The magic is judged once the name length is here too.
        let magic = r.array::<4>("envelope magic")?;
        let n = usize::from(r.u16("file name length")?);
        let restricted = &magic == RESTRICTED_MAGIC;
        let signed = &magic == SIGNED_MAGIC || restricted;
        if &magic != MAGIC && !signed {
            return Err(Unread::Bad("not an lsim file envelope"));
        }
        if n == 0 || n > MAX_NAME {
            return Err(Unread::Bad("file name length out of range"));
        }
        let name = r.take(n, "file name")?;
        let size = r.u64("file size")?;
        let cert = if signed {
            let len = usize::from(r.u16("certificate length")?);
            if len > MAX_CERT {
                return Err(Unread::Bad("certificate length out of range"));
            }
            Some(r.take(len, "certificate")?)
        } else {
            None
        };
        let wraps = if restricted {
            let count = usize::from(r.u16("recipient count")?);
            if count == 0 || count > MAX_RECIPIENTS {
                return Err(Unread::Bad("recipient count out of range"));
            }
            Some(r.take(count * WRAP_ENCODED_LEN, "wraps")?)
        } else {
            None
        };
        Ok(Head { name, size, cert, wraps, header_len: bytes.len() - r.left() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(data: &[u8]) -> Vec<u8> {
        read_out(&mut Outgoing::new("report.pdf", data.to_vec()))
    }

    /// The whole envelope, read in blocks, in order, then a middle part
    /// read again (as a repair would), which must give the same bytes.
    fn read_out<S: ObjectSource>(o: &mut Outgoing<S>) -> Vec<u8> {
        let mut all = vec![0u8; o.len() as usize];
        for chunk in (0..all.len()).step_by(1000) {
            let end = (chunk + 1000).min(all.len());
            o.read_at(chunk as u64, &mut all[chunk..end]).unwrap();
        }
        let mut again = vec![0u8; 300];
        o.read_at(500, &mut again).unwrap();
        assert_eq!(&again[..], &all[500..800], "a repair re-reads the same bytes");
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
    fn a_restricted_file_opens_only_for_its_recipients_and_hides_name_and_bytes() {
        use ed25519_dalek::SigningKey;
        use lsim_keymgmt::filekey;
        use lsim_keymgmt::key::SecretKey;
        let server = SigningKey::from_bytes(&[1; 32]);
        let alice_key = SigningKey::from_bytes(&[2; 32]);
        let cert = MemberCert::issue(&server, "alice", 1, 1, alice_key.verifying_key().to_bytes(), u64::MAX);
        let alice = Arc::new(Signer::new(alice_key, cert));
        // Individual keys as the key server hands them out; bob (member 2) and
        // dave (4) are recipients, carol (3) is not.
        let individual = |m: u8| SecretKey::from_bytes([m; 32]);
        let key = FileKey::generate().unwrap();
        let wraps: Vec<Wrap> =
            [2u64, 4].iter().map(|&m| filekey::wrap(&individual(m as u8), "lsim", m, &key).unwrap()).collect();
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let env =
            read_out(&mut Outgoing::restricted("casualties.txt", data.clone(), alice.clone(), &wraps, &key).unwrap());
        assert!(!env.windows(10).any(|w| w == b"casualties"), "the name is not in the clear");
        assert!(!env.windows(32).any(|w| data.windows(32).step_by(997).any(|d| d == w)), "nor the bytes");

        let opener = |m: u64| -> FileKeyOpener {
            Arc::new(move |ws: &[Wrap]| {
                ws.iter().find(|w| w.member == m).and_then(|w| filekey::unwrap(&individual(m as u8), "lsim", w).ok())
            })
        };
        let receive = |mut inc: Incoming<Vec<u8>>| -> io::Result<(Received, Vec<u8>)> {
            for c in env.chunks(1000) {
                inc.push(c)?;
            }
            inc.finish()
        };
        let vk = server.verifying_key();
        for m in [2, 4] {
            let (r, out) = receive(Incoming::with_keys(Vec::new(), opener(m))).unwrap();
            assert_eq!(r.name, "casualties.txt");
            assert!(out == data, "member {m} reads the file");
            assert_eq!(r.signature.unwrap().verify(&vk, 0), Ok("alice"));
        }
        let e = receive(Incoming::with_keys(Vec::new(), opener(3))).err().unwrap();
        assert!(NotForUs::is(&e), "{e}");
        let e = receive(Incoming::new(Vec::new())).err().unwrap();
        assert!(NotForUs::is(&e), "{e}");
        // Nothing was written for carol: the refusal comes with the header.
        let mut inc = Incoming::with_keys(Vec::new(), opener(3));
        let header_end = env.len() - data.len() - DIGEST - SIGNATURE;
        assert!(inc.push(&env[..header_end - 1]).is_ok());
        assert!(NotForUs::is(&inc.push(&env[header_end - 1..header_end]).err().unwrap()));

        // A damaged wrap opens nothing.
        let mut damaged = env.clone();
        let bob_wrap = wraps[0].encode();
        let at = damaged.windows(bob_wrap.len()).position(|w| w == bob_wrap).unwrap();
        damaged[at + 8] ^= 1;
        let mut inc = Incoming::with_keys(Vec::new(), opener(2));
        let r = damaged.chunks(1000).try_for_each(|c| inc.push(c));
        assert!(NotForUs::is(&r.err().unwrap()), "a damaged wrap opens nothing");
        // A changed byte of the file fails the digest; a changed wrap count or
        // header is refused or breaks the signature, never decrypts silently.
        let mut damaged = env.clone();
        damaged[header_end + 100] ^= 1;
        let mut inc = Incoming::with_keys(Vec::new(), opener(2));
        damaged.chunks(1000).try_for_each(|c| inc.push(c)).unwrap();
        assert!(inc.finish().err().unwrap().to_string().contains("SHA-256"));
        for n in (0..header_end).step_by(53) {
            let mut inc = Incoming::with_keys(Vec::new(), opener(2));
            let ok = inc.push(&env[..n]).and_then(|()| inc.finish().map(|_| ()));
            assert!(ok.is_err(), "a truncation at {n} was accepted");
        }
        // A header claiming more than ChaCha20 can encrypt is refused at once.
        let mut huge = env.clone();
        let at = 4 + 2 + "casualties.txt".len();
        huge[at..at + 8].copy_from_slice(&(MAX_RESTRICTED + 1).to_be_bytes());
        let e = Incoming::with_keys(Vec::new(), opener(2)).push(&huge).err().unwrap();
        assert!(e.to_string().contains("256 GiB"), "{e}");
        // Too many or no recipients are refused at the sender.
        assert!(Outgoing::restricted("x", vec![1u8], alice.clone(), &[], &key).is_err());
        let many = vec![wraps[0].clone(); MAX_RECIPIENTS + 1];
        assert!(Outgoing::restricted("x", vec![1u8], alice, &many, &key).is_err());
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

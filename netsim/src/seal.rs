//! The simulator's packet seal: HMAC-SHA256, truncated to 16 bytes.
//!
//! Owns `TestSeal`. It authenticates (does not encrypt) every simulated packet
//! under a key derived from a label, so forged packets are really caught by
//! the same code path the real suites use. The real cipher suites live in the
//! key-management crate.

use hmac::{Hmac, KeyInit, Mac};
use lsim_transport::seal::{Nonce, Seal, SealError};
use sha2::{Digest, Sha256};

/// Bytes of tag appended to each packet.
pub const TAG_LEN: usize = 16;

/// A keyed MAC seal for simulations.
#[derive(Clone)]
pub struct TestSeal {
    mac: Hmac<Sha256>,
}

impl TestSeal {
    /// A seal whose key is SHA-256(`label`): nodes built from the same label
    /// understand each other; any other label is an outsider.
    pub fn new(label: &str) -> TestSeal {
        let key = Sha256::digest(label.as_bytes());
        // HMAC takes keys of any length; this cannot fail.
        let mac = match Hmac::<Sha256>::new_from_slice(&key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts any key length"),
        };
        TestSeal { mac }
    }

    fn keyed(&self, epoch: u32, nonce: Nonce, header: &[u8], payload: &[u8]) -> Hmac<Sha256> {
        let mut m = self.mac.clone();
        m.update(&epoch.to_be_bytes());
        m.update(&nonce.to_bytes());
        m.update(header);
        m.update(payload);
        m
    }
}

impl Seal for TestSeal {
    fn tag_len(&self) -> usize {
        TAG_LEN
    }
    fn current_epoch(&self) -> u32 {
        0
    }
    fn seal(
        &mut self,
        epoch: u32,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        tag: &mut [u8],
    ) -> Result<(), SealError> {
        let out = self.keyed(epoch, nonce, header, payload).finalize().into_bytes();
        tag.copy_from_slice(&out[..TAG_LEN]);
        Ok(())
    }
    fn open(
        &mut self,
        epoch: u32,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        tag: &[u8],
    ) -> Result<(), SealError> {
        if epoch != 0 {
            return Err(SealError::UnknownEpoch(epoch));
        }
        self.keyed(epoch, nonce, header, payload).verify_truncated_left(tag).map_err(|_| SealError::BadTag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_key_opens() {
        let n = Nonce { node: 1, seq: 2 };
        let mut payload = *b"symbol";
        let mut tag = [0u8; TAG_LEN];
        TestSeal::new("group").seal(0, n, b"hdr", &mut payload, &mut tag).unwrap();
        assert!(TestSeal::new("group").open(0, n, b"hdr", &mut payload, &tag).is_ok());
        assert_eq!(TestSeal::new("other").open(0, n, b"hdr", &mut payload, &tag), Err(SealError::BadTag));
        assert_eq!(
            TestSeal::new("group").open(0, Nonce { node: 1, seq: 3 }, b"hdr", &mut payload, &tag),
            Err(SealError::BadTag)
        );
    }
}

//! A seal for fuzzing: `OpenSeal` accepts every packet under every epoch, so
//! a fuzzer's bytes reach the body parser without forging tags.
//!
//! Owns test seals other crates' tests and benches can share. Not here: the
//! simulator's `lsim_netsim::seal::TestSeal` (the simulator seals every packet
//! with it at run time) and the transport's `KeyedSum` (its unit tests need
//! the `Seal` of their own build of the crate, which a dev-dependency cannot
//! give them).

use lsim_transport::seal::{Nonce, Seal, SealError};

/// Accepts every packet under every epoch. `tag_len` bytes of zeros are
/// appended on sealing.
#[derive(Clone)]
pub struct OpenSeal {
    /// Bytes of tag a packet carries.
    pub tag_len: usize,
}

impl Seal for OpenSeal {
    fn tag_len(&self) -> usize {
        self.tag_len
    }
    fn current_epoch(&self) -> u32 {
        0
    }
    fn seal(&mut self, _: u32, _: Nonce, _: &[u8], _: &mut [u8], tag: &mut [u8]) -> Result<(), SealError> {
        tag.fill(0);
        Ok(())
    }
    fn open(&mut self, _: u32, _: Nonce, _: &[u8], _: &mut [u8], _: &[u8]) -> Result<(), SealError> {
        Ok(())
    }
}

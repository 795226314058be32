//! One way to read and write the project's binary formats.
//!
//! Owns the `Codec` trait (write yourself into a buffer, read yourself from a
//! `Reader`) and the `Reader`: a cursor over untrusted bytes that cannot read
//! past its end and says which field wanted how many bytes when there are too
//! few (`Short`), or how many were left over (`Trailing`). Every format built
//! on it (the transport's packets, the key server's rekeys and registrar
//! messages, the group's file envelopes, the key tree's saved state) maps
//! these two to its own error. It knows no layout.

use std::fmt::Debug;

/// A read past the end of the input: `what` needed `need` bytes, `have` were left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("truncated {what}: need {need} bytes, have {have}")]
pub struct Short {
    /// The field or structure being read.
    pub what: &'static str,
    /// Bytes it needs.
    pub need: usize,
    /// Bytes left.
    pub have: usize,
}

/// Bytes left over after a structure that must end its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{left} bytes after {what}")]
pub struct Trailing {
    /// Bytes not read.
    pub left: usize,
    /// The structure that should have ended the input.
    pub what: &'static str,
}

/// A value with a binary form: `read` takes back what `encode` wrote.
pub trait Codec: Sized {
    /// What a malformed input is refused with.
    type Error: From<Short> + From<Trailing> + Debug;

    /// Appends the value's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// Reads one value, leaving what follows it.
    fn read(r: &mut Reader<'_>) -> Result<Self, Self::Error>;

    /// The value's bytes.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Reads a value that must be all of `bytes`.
    fn from_bytes(bytes: &[u8]) -> Result<Self, Self::Error> {
        let mut r = Reader::new(bytes);
        let v = Self::read(&mut r)?;
        r.finish(std::any::type_name::<Self>().rsplit("::").next().unwrap_or("value"))?;
        Ok(v)
    }
}

/// A cursor over received bytes that cannot read past its end.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Short> {
        match self.buf.get(self.pos..self.pos.saturating_add(n)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(Short { what, need: n, have: self.left() }),
        }
    }

    /// The next `N` bytes, as an array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Short> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    /// A byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, Short> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A big-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, Short> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    /// A big-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, Short> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// A big-endian u64.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, Short> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// The rest of the input.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        s
    }

    /// Fails unless everything was read.
    pub fn finish(&self, what: &'static str) -> Result<(), Trailing> {
        match self.left() {
            0 => Ok(()),
            left => Err(Trailing { left, what }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Test support: `v` survives `encode` then `from_bytes`, and every cut of
    /// its bytes is refused without a panic.
    pub(crate) fn assert_round_trip<T: Codec + PartialEq>(v: &T) {
        let bytes = v.to_bytes();
        match T::from_bytes(&bytes) {
            Ok(back) => assert!(back == *v, "{} did not survive a round trip", std::any::type_name::<T>()),
            Err(e) => panic!("{} refused its own bytes: {e:?}", std::any::type_name::<T>()),
        }
        for cut in 0..bytes.len() {
            let _ = T::from_bytes(&bytes[..cut]);
        }
    }

    #[derive(Debug, PartialEq)]
    struct Pair(u16, u64);

    #[derive(Debug)]
    enum E {
        Short,
        Trailing,
    }
    impl From<Short> for E {
        fn from(_: Short) -> E {
            E::Short
        }
    }
    impl From<Trailing> for E {
        fn from(_: Trailing) -> E {
            E::Trailing
        }
    }

    impl Codec for Pair {
        type Error = E;
        fn encode(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.0.to_be_bytes());
            out.extend_from_slice(&self.1.to_be_bytes());
        }
        fn read(r: &mut Reader<'_>) -> Result<Pair, E> {
            Ok(Pair(r.u16("a")?, r.u64("b")?))
        }
    }

    #[test]
    fn reads_back_what_it_wrote_and_names_what_is_short_or_left() {
        assert_round_trip(&Pair(7, u64::MAX));
        let bytes = Pair(1, 2).to_bytes();
        assert!(matches!(Pair::from_bytes(&bytes[..5]), Err(E::Short)));
        assert!(matches!(Pair::from_bytes(&[bytes.as_slice(), &[0]].concat()), Err(E::Trailing)));
        let mut r = Reader::new(&bytes[..5]);
        assert_eq!(r.u16("a"), Ok(1));
        assert_eq!(r.u64("b"), Err(Short { what: "b", need: 8, have: 3 }));
        assert_eq!(r.take(usize::MAX, "huge"), Err(Short { what: "huge", need: usize::MAX, have: 3 }));
        assert_eq!(r.rest(), &bytes[2..5]);
        assert_eq!(r.finish("pair"), Ok(()));
    }
}

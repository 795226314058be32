//! Where a sender's object bytes come from.
//!
//! Owns the `ObjectSource` trait: random-access reads of an object's bytes, so
//! the sender reads a block when it sends or repairs it and never holds a
//! whole large object. Implementations for in-memory bytes and files.

use std::fs::File;
use std::io;
use std::sync::Arc;

/// The bytes of one object, readable at any offset, repeatably.
pub trait ObjectSource {
    /// Object length in bytes (fixed for the object's lifetime).
    fn len(&self) -> u64;
    /// True for an empty object.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` with the bytes at `offset`; `offset + buf.len() <= len()`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl ObjectSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_slice(self, offset, buf)
    }
}

impl ObjectSource for Arc<[u8]> {
    fn len(&self) -> u64 {
        (**self).len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_slice(self, offset, buf)
    }
}

fn read_slice(data: &[u8], offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let start = usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    let src = start
        .checked_add(buf.len())
        .and_then(|end| data.get(start..end))
        .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    buf.copy_from_slice(src);
    Ok(())
}

/// A file on disk, read block by block (its length is taken when opened).
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    /// Opens `file` as an object source.
    pub fn new(file: File) -> io::Result<FileSource> {
        let len = file.metadata()?.len();
        Ok(FileSource { file, len })
    }
}

impl ObjectSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(buf, offset)
        }
        #[cfg(not(unix))]
        {
            use std::io::{Read, Seek, SeekFrom};
            self.file.seek(SeekFrom::Start(offset))?;
            self.file.read_exact(buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded() {
        let mut v = vec![1u8, 2, 3, 4];
        let mut buf = [0u8; 2];
        v.read_at(2, &mut buf).unwrap();
        assert_eq!(buf, [3, 4]);
        assert!(v.read_at(3, &mut buf).is_err());
        assert!(v.read_at(u64::MAX, &mut buf).is_err());
    }

    #[test]
    fn file_source_reads_at_offsets() {
        let path = std::env::temp_dir().join(format!("lsim-source-{}", std::process::id()));
        std::fs::write(&path, b"hello world").unwrap();
        let mut s = FileSource::new(File::open(&path).unwrap()).unwrap();
        let mut buf = [0u8; 5];
        s.read_at(6, &mut buf).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!((&buf, s.len()), (b"world", 11));
    }
}

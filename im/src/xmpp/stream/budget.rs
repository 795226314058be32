//! The byte budget every byte reaches quick-xml through: a buffered
//! reader that hands out at most so many more bytes, then fails with a
//! marker the parser maps to the size limit that was hit.
//!
//! Owns the budget's accounting. It must not parse or decide the limits:
//! the parser sets the budget for the header and for each stanza.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncBufRead, AsyncRead, BufReader, ReadBuf};

/// Marker carried in the `io::Error` when a byte budget is spent.
#[derive(Debug)]
pub(super) struct BudgetSpent;

impl std::fmt::Display for BudgetSpent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("byte budget spent")
    }
}

impl std::error::Error for BudgetSpent {}

/// A buffered reader that hands out at most `remaining` more bytes, then
/// fails with [`BudgetSpent`]. quick-xml can therefore never buffer more
/// than the budget.
pub(super) struct Budgeted<R> {
    pub(super) inner: BufReader<R>,
    pub(super) remaining: usize,
}

impl<R: AsyncRead + Unpin> AsyncRead for Budgeted<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = {
            let data = ready!(Pin::new(&mut *this).poll_fill_buf(cx))?;
            let n = data.len().min(buf.remaining());
            buf.put_slice(&data[..n]);
            n
        };
        Pin::new(this).consume(n);
        Poll::Ready(Ok(()))
    }
}

impl<R: AsyncRead + Unpin> AsyncBufRead for Budgeted<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        let remaining = this.remaining;
        let data = ready!(Pin::new(&mut this.inner).poll_fill_buf(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(data));
        }
        if remaining == 0 {
            return Poll::Ready(Err(io::Error::other(BudgetSpent)));
        }
        let n = data.len().min(remaining);
        Poll::Ready(Ok(&data[..n]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.remaining = this.remaining.saturating_sub(amt);
        Pin::new(&mut this.inner).consume(amt);
    }
}

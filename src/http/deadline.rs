//! A deadline on writing to an HTTP client. hyper times the request head (and the
//! keep-alive wait), `extract::Body` times the body; nothing in hyper times the
//! response going out. A client that pipelines requests and never reads the answers
//! fills the kernel's buffers, and then hyper's write waits forever and keeps the
//! connection (and its place in the per-address cap). [`WriteDeadline`] wraps the
//! socket hyper serves: a write or flush that makes no progress for the limit fails
//! with `TimedOut`, and hyper closes the connection. A write that makes progress,
//! however slowly, starts the clock again.
//!
//! The WebSocket upgrade takes the bare socket back out ([`WriteDeadline::into_inner`]):
//! a session has its own slow-consumer rule (the bounded outbox) and must not inherit
//! this one.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose writes fail after `limit` without progress.
pub struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Armed at the first write that has to wait; dropped at the first progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline { inner, limit, stalled: None }
    }

    /// The stream itself (a WebSocket upgrade takes it over).
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// What a write that came back `Pending` turns into: still pending, or an error
    /// once the stall has lasted `limit`.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                tracing::debug!(limit_secs = limit.as_secs(), "an HTTP client read nothing of its response: closing");
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client does not read its responses")))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Passes a finished write through and stops the clock.
    fn done<T>(&mut self, r: io::Result<T>) -> Poll<io::Result<T>> {
        self.stalled = None;
        Poll::Ready(r)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => self.done(r),
            Poll::Pending => self.pending(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => self.done(r),
            Poll::Pending => self.pending(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(r) => self.done(r),
            Poll::Pending => self.pending(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Ready(r) => self.done(r),
            Poll::Pending => self.pending(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_reads_fails_after_the_limit_and_progress_restarts_the_clock() {
        // A pipe with a 64-byte buffer stands in for the kernel's socket buffers.
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(ours, Duration::from_secs(5));
        w.write_all(&[1; 64]).await.expect("fits the buffer");
        // The peer reads a little after 4 s: the stalled write goes on.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            let mut buf = [0u8; 32];
            theirs.read_exact(&mut buf).await.expect("read");
            theirs
        });
        w.write_all(&[2; 32]).await.expect("the peer read in time");
        let _theirs = reader.await.expect("reader");
        // Then nobody reads: the next write that waits fails 5 s later.
        let started = tokio::time::Instant::now();
        let err = w.write_all(&[3; 64]).await.expect_err("nobody reads");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 5);
    }
}

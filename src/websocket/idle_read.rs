//! Reading an upgraded connection without holding a read buffer while it is idle.
//!
//! Most WebSockets are idle most of the time; a read buffer per direction held for the whole
//! connection would be most of what an idle connection costs runoff. `IdleRead` waits for the
//! stream to be readable with a zero-length read (for a socket, tokio waits for readiness and
//! `read(2)` of 0 bytes returns at once) and takes a buffer only then. A stream whose data
//! comes in quick succession (two reads within `HOT`) is hot: it keeps its buffer and waits
//! with it, sparing the extra syscall per read, until it has been quiet for `HOT`. A single
//! message (a connection's hello, a sparse chat) never makes a stream hot, so a burst of new
//! connections does not leave a buffer per connection behind (freed buffers between
//! long-lived allocations would stay resident).
//!
//! Must not: lose or reorder a byte (the zero-length read consumes nothing), or spin on a
//! stream whose zero-length read returns at once without data (then it waits holding the
//! buffer, like a plain read).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Reads this close together make a stream hot; a hot stream this quiet is idle again.
const HOT: Duration = Duration::from_millis(100);

/// A read buffer of `size` bytes, present only while data is flowing.
pub(crate) struct IdleRead {
    buf: Option<Box<[u8]>>,
    size: usize,
    last_data: Option<Instant>,
    hot: bool,
}

impl IdleRead {
    pub(crate) fn new(size: usize) -> IdleRead {
        IdleRead {
            buf: None,
            size,
            last_data: None,
            hot: false,
        }
    }

    /// Whether a buffer is held now (for tests).
    #[cfg(test)]
    pub(crate) fn holds_buffer(&self) -> bool {
        self.buf.is_some()
    }

    /// The next bytes from `reader` (empty at end of stream).
    pub(crate) async fn read<'a, R>(&'a mut self, reader: &mut R) -> io::Result<&'a [u8]>
    where
        R: AsyncRead + Unpin,
    {
        // Hot: wait for more with the buffer, for a while.
        if self.hot {
            if let Some(buf) = self.buf.as_mut() {
                if let Ok(n) = tokio::time::timeout(HOT, reader.read(buf)).await {
                    let n = n?;
                    self.last_data = Some(Instant::now());
                    return Ok(self.filled(n));
                }
            }
            self.hot = false;
        }
        // Idle: wait for readiness holding nothing.
        self.buf = None;
        let mut nothing = ReadBuf::new(&mut []);
        poll_fn(|cx| Pin::new(&mut *reader).poll_read(cx, &mut nothing)).await?;
        let n = match self.try_read(reader)? {
            Some(n) => n,
            // Readiness without data (or a stream whose empty read does not wait): wait for
            // the data this once holding the buffer, rather than spin.
            None => {
                let size = self.size;
                let buf = self
                    .buf
                    .get_or_insert_with(|| vec![0u8; size].into_boxed_slice());
                reader.read(buf).await?
            }
        };
        let now = Instant::now();
        self.hot = self
            .last_data
            .is_some_and(|last| now.duration_since(last) < HOT);
        self.last_data = Some(now);
        Ok(self.filled(n))
    }

    /// One read attempt that does not wait: `Some(n)` when the reader answered.
    fn try_read<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> io::Result<Option<usize>> {
        let size = self.size;
        let buf = self
            .buf
            .get_or_insert_with(|| vec![0u8; size].into_boxed_slice());
        let mut rb = ReadBuf::new(buf);
        let waker = std::task::Waker::noop();
        match Pin::new(reader).poll_read(&mut std::task::Context::from_waker(waker), &mut rb) {
            Poll::Ready(Ok(())) => Ok(Some(rb.filled().len())),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(None),
        }
    }

    fn filled(&self, n: usize) -> &[u8] {
        self.buf.as_deref().map_or(&[], |b| &b[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn tcp_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback");
        let addr = listener.local_addr().expect("bound");
        let client = tokio::net::TcpStream::connect(addr)
            .await
            .expect("loopback");
        let (server, _) = listener.accept().await.expect("loopback");
        (client, server)
    }

    #[tokio::test]
    async fn every_byte_arrives_in_order() {
        let (mut client, mut server) = tcp_pair().await;
        let mut idle = IdleRead::new(16);
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut reads = 0;
            loop {
                let bytes = idle.read(&mut server).await.expect("loopback");
                if bytes.is_empty() {
                    break;
                }
                reads += 1;
                got.extend_from_slice(bytes);
            }
            (got, reads)
        });
        let sent: Vec<u8> = (0..100u8).collect();
        for chunk in sent.chunks(30) {
            client.write_all(chunk).await.expect("loopback");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        drop(client);
        let (got, reads) = reading.await.expect("loopback");
        assert_eq!(got, sent);
        assert!(reads >= 7, "16-byte reads of 100 bytes: {reads}");
    }

    #[tokio::test]
    async fn a_lone_message_leaves_no_buffer_and_a_busy_stream_keeps_one_until_quiet() {
        // A socket: its zero-length read waits for data (tokio's duplex does not).
        let (mut a, mut b) = tcp_pair().await;
        let mut idle = IdleRead::new(8);
        a.write_all(b"hello").await.expect("loopback");
        assert_eq!(idle.read(&mut b).await.expect("loopback"), b"hello");
        // A lone message: the next read gives the buffer back before it waits.
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(20), idle.read(&mut b)).await;
        assert!(waiting.is_err(), "no data: the read waits");
        assert!(!idle.holds_buffer());
        // Two reads close together: hot, the buffer stays while waiting ...
        a.write_all(b"one").await.expect("loopback");
        assert_eq!(idle.read(&mut b).await.expect("loopback"), b"one");
        a.write_all(b"two").await.expect("loopback");
        assert_eq!(idle.read(&mut b).await.expect("loopback"), b"two");
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(20), idle.read(&mut b)).await;
        assert!(waiting.is_err());
        assert!(idle.holds_buffer(), "a hot stream waits with its buffer");
        // ... until the stream has been quiet for HOT.
        let waiting = tokio::time::timeout(HOT * 3, idle.read(&mut b)).await;
        assert!(waiting.is_err());
        assert!(!idle.holds_buffer());
        a.write_all(b"world").await.expect("loopback");
        assert_eq!(idle.read(&mut b).await.expect("loopback"), b"world");
        drop(a);
        assert_eq!(idle.read(&mut b).await.expect("loopback"), b"");
    }

    /// A stream whose empty read is always ready: the reader waits with the buffer, it does not
    /// spin.
    #[tokio::test]
    async fn a_stream_always_ready_for_empty_reads_does_not_spin() {
        struct Eager {
            inner: tokio::io::DuplexStream,
            empty_reads: usize,
        }
        impl AsyncRead for Eager {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                if buf.remaining() == 0 {
                    self.empty_reads += 1;
                    return Poll::Ready(Ok(()));
                }
                Pin::new(&mut self.inner).poll_read(cx, buf)
            }
        }
        let (mut a, inner) = tokio::io::duplex(64);
        let mut eager = Eager {
            inner,
            empty_reads: 0,
        };
        let mut idle = IdleRead::new(8);
        let writer = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            a.write_all(b"late").await.expect("loopback");
            a
        });
        assert_eq!(idle.read(&mut eager).await.expect("loopback"), b"late");
        assert_eq!(eager.empty_reads, 1);
        drop(writer.await.expect("loopback"));
    }
}

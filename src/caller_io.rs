//! A caller's connection beneath Pingora's HTTP/1 parser (`Watched`, wrapping each accepted
//! stream): a deadline for every request's header block (`server.client_header_timeout`;
//! Pingora waits forever for a new connection's first request, and applies its timeouts per
//! read), and the requests Pingora's parser refuses by itself (it answers 400 before any hook
//! runs) counted in `runoff_rejected_requests_total` with a reason. Pingora offers no hook
//! around its parser; wrapping the stream it reads from is the least invasive way in. The
//! proxy's hooks say when a request is under way (`request_began`, `request_ended`).
//!
//! With h2c on, Pingora peeks each new connection for the HTTP/2 preface: `Watched` answers
//! that peek itself, under the header deadline, and stops at the first byte that differs from
//! the preface (Pingora's own peek waits for 24 bytes, so a shorter HTTP/1 request would hang);
//! an HTTP/2 connection is then left alone (its frames are not header blocks).
//!
//! Between two requests runoff itself waits for the next one's first bytes (`read_ahead`, from
//! `server::keepalive`), reading them into the rewind Pingora's parser then reads first, so an
//! idle connection holds no per-request state; and each request cycle counts the bytes Pingora
//! was handed against the request's size on the wire (`request_size`), which says whether
//! Pingora can be holding bytes of the next request already (`at_boundary`).
//!
//! Writes under `GATHER_BYTES` are gathered until Pingora flushes, as Pingora's own L4 write
//! buffer does (runoff's plaintext listeners go without it: it is allocated with each
//! connection for its life), so a small response still leaves in one system call, and an idle
//! connection holds no write buffer.
//!
//! Must not: change a byte read or written, keep more than the first bytes of a header block,
//! or act while a request is under way (its body, an upgraded stream) or on HTTP/2.

use std::fmt;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::metrics::{H2Goaway, PerLabel, Rejection};
use crate::present::Present;

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes of a header block kept to say why the parser refused it.
const KEEP_HEAD_BYTES: usize = 8 * 1024;
/// Pingora's own bounds on a request header block (`pingora-core`'s `MAX_HEADER_SIZE` and
/// `MAX_HEADERS`): past them its parser refuses the request.
const PINGORA_MAX_HEADER_BYTES: usize = 1_048_575;
const PINGORA_MAX_HEADERS: usize = 256;

/// The most `read_ahead` takes at once: what Pingora's parser reads first itself
/// (`pingora-core`'s `INIT_HEADER_BUF_SIZE`), so the reads a request takes do not change.
const READ_AHEAD_BYTES: usize = 4096;

/// Writes smaller than this are gathered until a flush (or until they would not fit), as
/// Pingora's own L4 write buffer (`DEFAULT_L4_WRITE_BUFFER_SIZE`) gathers them, so a small
/// response's head and body leave in one system call. Pingora's buffer is allocated with each
/// connection and kept for its life; this one only while a response is being written.
const GATHER_BYTES: usize = 1460;

/// `expected`: this cycle's request size on the wire is not known (yet).
const UNKNOWN_SIZE: u64 = u64::MAX;

/// A caller's connection as Pingora reads and writes it.
pub(crate) struct Watched {
    inner: Stream,
    /// A request's header was accepted and the request has not ended: nothing to watch.
    busy: AtomicBool,
    /// When the header block being awaited must be complete: from the connection's start for
    /// its first request, from the first wait after a later one's first bytes (the idle wait
    /// between requests is the keep-alive timeout's). Made only when a wait comes.
    deadline: Option<Pin<Box<Sleep>>>,
    header_timeout: Duration,
    /// The header block being awaited, as read so far (its first bytes), and its size.
    head: Vec<u8>,
    head_bytes: usize,
    /// This gap's refusal was counted already.
    counted: bool,
    rejections: PerLabel<Rejection>,
    /// Bytes read to answer a peek, handed out again before anything else is read.
    rewind: Vec<u8>,
    /// The connection speaks HTTP/2: only the frames runoff writes are read, for a GOAWAY
    /// with an error (counted by its code).
    h2: bool,
    frames: FrameScan,
    goaways: PerLabel<H2Goaway>,
    /// Bytes handed to Pingora in this request cycle (from the rewind or the connection).
    delivered: u64,
    /// This cycle's request size on the wire (header block and `Content-Length` body), as its
    /// hook saw it; `UNKNOWN_SIZE` until then, or for a chunked body.
    expected: AtomicU64,
    /// This cycle began with nothing of its request already in Pingora's hands.
    clean: bool,
    /// Small writes gathered until the next flush (`GATHER_BYTES`), and how much of them is
    /// written already; empty, with no allocation, once flushed.
    out: Vec<u8>,
    out_sent: usize,
}

/// Reads the HTTP/2 frames written to a caller, piece by piece as they are written, and tells
/// the error code of each GOAWAY.
#[derive(Default)]
struct FrameScan {
    head: [u8; 9],
    /// Bytes of the frame header read so far.
    have: usize,
    /// Payload bytes of the current frame not read yet.
    left: usize,
    /// The current frame is a GOAWAY: its first 8 payload bytes, and how many are in.
    goaway: Option<([u8; 8], usize)>,
}

impl FrameScan {
    fn feed(&mut self, mut bytes: &[u8], mut found: impl FnMut(u32)) {
        while !bytes.is_empty() {
            if self.left == 0 {
                let take = (9 - self.have).min(bytes.len());
                self.head[self.have..self.have + take].copy_from_slice(&bytes[..take]);
                self.have += take;
                bytes = &bytes[take..];
                if self.have == 9 {
                    self.have = 0;
                    self.left = usize::from(self.head[0]) << 16
                        | usize::from(self.head[1]) << 8
                        | usize::from(self.head[2]);
                    // Type 0x7: GOAWAY (RFC 9113 §6.8).
                    self.goaway = (self.head[3] == 0x7).then_some(([0u8; 8], 0));
                }
                continue;
            }
            let take = self.left.min(bytes.len());
            if let Some((buf, n)) = self.goaway.as_mut() {
                let more = (8 - *n).min(take);
                buf[*n..*n + more].copy_from_slice(&bytes[..more]);
                *n += more;
                if *n == 8 {
                    found(u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]));
                    self.goaway = None;
                }
            }
            self.left -= take;
            bytes = &bytes[take..];
        }
    }
}

impl Watched {
    /// Watch a newly accepted connection: its first header block is due within
    /// `header_timeout` from now.
    pub(crate) fn new(
        inner: Stream,
        header_timeout: Duration,
        rejections: PerLabel<Rejection>,
        goaways: PerLabel<H2Goaway>,
    ) -> Watched {
        // A TLS connection that chose `h2` by ALPN (its handshake is done by now) speaks
        // HTTP/2 from its first byte: nothing of it is an HTTP/1 header block.
        let h2 = matches!(
            inner.selected_alpn_proto(),
            Some(pingora::protocols::ALPN::H2)
        );
        Watched {
            inner,
            busy: AtomicBool::new(false),
            deadline: (!h2).then(|| Box::pin(tokio::time::sleep(header_timeout))),
            header_timeout,
            head: Vec::new(),
            head_bytes: 0,
            counted: false,
            rejections,
            rewind: Vec::new(),
            h2,
            frames: FrameScan::default(),
            goaways,
            delivered: 0,
            expected: AtomicU64::new(UNKNOWN_SIZE),
            clean: true,
            out: Vec::new(),
            out_sent: 0,
        }
    }

    /// The connection speaks HTTP/2 (ALPN `h2`, or the h2c preface read by a peek).
    pub(crate) fn is_h2(&self) -> bool {
        self.h2
    }

    /// The bytes read ahead may be the start of the HTTP/2 preface (all of them agree with it):
    /// Pingora's h2c peek then decides.
    pub(crate) fn may_be_h2_preface(&self) -> bool {
        agrees_with_h2_preface(&self.rewind)
    }

    /// The request's size on the wire, from its hook: the header block and its body's
    /// `Content-Length` (`None`: not known, as for a chunked body).
    pub(crate) fn request_size(&self, bytes: Option<u64>) {
        self.expected
            .store(bytes.unwrap_or(UNKNOWN_SIZE), Ordering::Release);
    }

    /// Between two requests, once Pingora handed the connection back: whether every byte it
    /// was handed in the cycle just ended belonged to that cycle's request, which itself began
    /// with nothing carried over, so Pingora holds no byte of the next request (pipelined bytes
    /// read with the last one) and waiting for the connection's next bytes cannot leave a
    /// request unanswered. Once a cycle is not known exact, none after it is (what Pingora
    /// carried over is not known). Starts the next cycle.
    pub(crate) fn at_boundary(&mut self) -> bool {
        let expected = self.expected.swap(UNKNOWN_SIZE, Ordering::AcqRel);
        let exact = self.clean && expected != UNKNOWN_SIZE && expected == self.delivered;
        self.delivered = 0;
        self.clean = exact;
        exact
    }

    /// Wait for the connection's next bytes, holding no buffer while it is idle, and keep what
    /// one read brings (at most `READ_AHEAD_BYTES`, through the header deadline) for Pingora's
    /// parser to read first. `false` when the caller closed, or the read failed (a header
    /// deadline passed: counted).
    pub(crate) async fn read_ahead(&mut self) -> bool {
        std::future::poll_fn(|cx| {
            // On the stack for one poll only: an idle connection's wait holds no buffer.
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_AHEAD_BYTES];
            let mut rb = ReadBuf::uninit(&mut chunk);
            match self.poll_read_watched(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    self.rewind.extend_from_slice(rb.filled());
                    Poll::Ready(!rb.filled().is_empty())
                }
                Poll::Ready(Err(_)) => Poll::Ready(false),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// The connection under a Pingora session, when runoff watches it.
    pub(crate) fn of(stream: Option<&Stream>) -> Option<&Watched> {
        stream.and_then(|s| s.as_any().downcast_ref::<Watched>())
    }

    /// Pingora accepted a request's header: what is read and written now is the request's.
    pub(crate) fn request_began(&self) {
        self.busy.store(true, Ordering::Release);
    }

    /// The request ended and its body was read whole: the next bytes are a new header block.
    /// (A request whose body was left unread stays "under way" until the next one begins,
    /// since Pingora reads the rest of that body after the last hook.)
    pub(crate) fn request_ended(&self) {
        self.busy.store(false, Ordering::Release);
    }

    fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Keep what a read brought of the header block being awaited.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.head_bytes += bytes.len();
        let room = KEEP_HEAD_BYTES.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// A write is about to happen: between requests, nothing but Pingora's parser answering a
    /// header block it refused writes, so count that refusal (once), classified.
    fn note_write(&mut self, writes: bool) {
        if writes && !self.h2 && !self.busy() && !self.counted {
            self.counted = true;
            self.deadline = None;
            self.rejections.inc(classify(&self.head, self.head_bytes));
        }
    }

    /// Read what was written to an HTTP/2 caller for GOAWAYs with an error, and count them.
    fn scan(&mut self, written: &[u8]) {
        let goaways = &self.goaways;
        self.frames.feed(written, |code| {
            if let Some(reason) = H2Goaway::from_code(code) {
                goaways.inc(reason);
            }
        });
    }

    /// A request is under way: forget the last header block and its deadline.
    fn settle(&mut self) {
        if self.deadline.is_some() || self.head_bytes > 0 || self.counted {
            self.deadline = None;
            self.head.clear();
            self.head_bytes = 0;
            self.counted = false;
        }
    }
}

/// Whether every byte of `first` (a connection's first bytes) agrees with the HTTP/2 preface.
fn agrees_with_h2_preface(first: &[u8]) -> bool {
    let n = first.len().min(H2_PREFACE.len());
    first[..n] == H2_PREFACE[..n]
}

/// A request's size on the wire from its header block's size and its header: the block and a
/// `Content-Length` body; `None` for a chunked (or otherwise unknown) body. `present`: the
/// fields the header carries (names not present are not looked up).
pub(crate) fn wire_size(
    header_block: usize,
    headers: &http::HeaderMap,
    present: Present,
) -> Option<u64> {
    if present.transfer_encoding && headers.contains_key(http::header::TRANSFER_ENCODING) {
        return None;
    }
    let body = if present.content_length {
        let mut lengths = headers.get_all(http::header::CONTENT_LENGTH).iter();
        match (lengths.next(), lengths.next()) {
            (None, _) => 0,
            (Some(v), None) => v.to_str().ok()?.trim().parse::<u64>().ok()?,
            (Some(_), Some(_)) => return None,
        }
    } else {
        0
    };
    (header_block as u64).checked_add(body)
}

/// Why Pingora's parser refused a header block, from its first bytes and its size.
pub(crate) fn classify(head: &[u8], head_bytes: usize) -> Rejection {
    if head_bytes > PINGORA_MAX_HEADER_BYTES {
        return Rejection::TooLarge;
    }
    // The request line alone, as a header block with no fields.
    let line_end = head
        .iter()
        .position(|b| *b == b'\n')
        .map_or(head.len(), |i| i + 1);
    let mut line = head[..line_end].to_vec();
    if !line.ends_with(b"\n") {
        line.extend_from_slice(b"\r\n");
    }
    line.extend_from_slice(b"\r\n");
    if httparse::Request::new(&mut []).parse(&line).is_err() {
        return Rejection::BadRequestLine;
    }
    let mut headers = [httparse::EMPTY_HEADER; PINGORA_MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Err(httparse::Error::TooManyHeaders) => Rejection::TooLarge,
        Err(_) => Rejection::BadHeader,
        // Parsed, or cut short: refused on what the header says (Content-Length values that
        // differ, Transfer-Encoding on HTTP/1.0, an ambiguous authority).
        Ok(_) => {
            let framing = req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("content-length")
                    || h.name.eq_ignore_ascii_case("transfer-encoding")
            });
            if framing {
                Rejection::BadFraming
            } else if req.path.is_some() {
                Rejection::BadHost
            } else {
                Rejection::BadRequestLine
            }
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.rewind.is_empty() {
            // Seen (and its deadline applied) when it was peeked or read ahead.
            let n = this.rewind.len().min(buf.remaining());
            buf.put_slice(&this.rewind[..n]);
            if n == this.rewind.len() {
                // Given back whole: an idle connection keeps no buffer.
                this.rewind = Vec::new();
            } else {
                this.rewind.drain(..n);
            }
            this.delivered += n as u64;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = this.poll_read_watched(cx, buf);
        this.delivered += (buf.filled().len() - before) as u64;
        read
    }
}

impl Watched {
    /// Read from the connection itself (not the rewind), watching the header block being
    /// awaited: what it brings is seen, and its deadline applies.
    fn poll_read_watched(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self;
        if this.h2 {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if this.busy() {
            this.settle();
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw(buf.filled().get(before..).unwrap_or_default());
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.deadline.is_none() && this.head_bytes > 0 {
                    // A later request's header block has begun and more of it must be waited
                    // for: its deadline starts now, microseconds after its first bytes came. A
                    // block that comes whole in one read (nearly every one) makes no timer.
                    this.deadline = Some(Box::pin(tokio::time::sleep(this.header_timeout)));
                }
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if !expired {
                    return Poll::Pending;
                }
                this.deadline = None;
                if !this.counted {
                    this.counted = true;
                    this.rejections.inc(Rejection::Timeout);
                }
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "runoff: the request's header block took longer than client_header_timeout",
                )))
            }
        }
    }
}

impl Watched {
    /// Write out what was gathered; the buffer is freed once it is all written.
    fn poll_write_gathered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_sent < self.out.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.out_sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.out.capacity() > 0 {
            self.out = Vec::new();
            self.out_sent = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Before a write of `len` bytes: what was gathered goes out first when `len` would not
    /// fit beside it. `true`: gather these bytes; `false`: they are too many, write them through.
    fn poll_room_for(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<bool>> {
        if self.out.len() + len > GATHER_BYTES {
            std::task::ready!(self.poll_write_gathered(cx))?;
        }
        Poll::Ready(Ok(len < GATHER_BYTES))
    }

    /// Gather `bytes` (which fit) for the next flush.
    fn gather(&mut self, bytes: &[u8]) {
        if self.out.capacity() == 0 {
            self.out.reserve_exact(GATHER_BYTES);
        }
        self.out.extend_from_slice(bytes);
        if self.h2 {
            self.scan(bytes);
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.note_write(!data.is_empty());
        if std::task::ready!(this.poll_room_for(cx, data.len()))? {
            this.gather(data);
            return Poll::Ready(Ok(data.len()));
        }
        let written = Pin::new(&mut this.inner).poll_write(cx, data);
        if let (true, Poll::Ready(Ok(n))) = (this.h2, &written) {
            this.scan(&data[..*n]);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_write_gathered(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_write_gathered(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        this.note_write(total > 0);
        if std::task::ready!(this.poll_room_for(cx, total))? {
            for b in bufs {
                this.gather(b);
            }
            return Poll::Ready(Ok(total));
        }
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let (true, Poll::Ready(Ok(n))) = (this.h2, &written) {
            let mut left = *n;
            for b in bufs {
                let take = left.min(b.len());
                this.scan(&b[..take]);
                left -= take;
                if left == 0 {
                    break;
                }
            }
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        true
    }
}

#[async_trait]
impl Shutdown for Watched {
    async fn shutdown(&mut self) {
        // What was gathered goes out first (best effort: the connection is closing).
        let _ = std::future::poll_fn(|cx| self.poll_write_gathered(cx)).await;
        self.inner.shutdown().await;
    }
}

impl UniqueID for Watched {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Watched {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<std::sync::Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Watched {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Watched {
    fn get_proxy_digest(
        &self,
    ) -> Option<std::sync::Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for Watched {
    fn get_socket_digest(&self) -> Option<std::sync::Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait]
impl Peek for Watched {
    /// Fill `buf` from the connection (through the header deadline) until it is full or a byte
    /// differs from the HTTP/2 preface; what was read is read again afterwards. A connection
    /// whose first bytes are the preface is HTTP/2 from then on.
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let mut n = self.rewind.len().min(buf.len());
        buf[..n].copy_from_slice(&self.rewind[..n]);
        let mut read = Vec::new();
        while n < buf.len() && agrees_with_h2_preface(&buf[..n]) {
            let mut chunk = [0u8; 64];
            let want = (buf.len() - n).min(chunk.len());
            let got = std::future::poll_fn(|cx| {
                let mut rb = ReadBuf::new(&mut chunk[..want]);
                // The rewind is in `buf` already: read the connection itself.
                self.poll_read_watched(cx, &mut rb)
                    .map_ok(|()| rb.filled().len())
            })
            .await?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf[n..n + got].copy_from_slice(&chunk[..got]);
            read.extend_from_slice(&chunk[..got]);
            n += got;
        }
        self.rewind.extend_from_slice(&read);
        if buf.len() == H2_PREFACE.len() && buf[..] == *H2_PREFACE {
            self.h2 = true;
            self.deadline = None;
        }
        Ok(true)
    }
}

impl fmt::Debug for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("inner", &self.inner)
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_preface_is_told_from_its_first_bytes() {
        assert!(agrees_with_h2_preface(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"
        ));
        assert!(agrees_with_h2_preface(b"PRI *"));
        assert!(!agrees_with_h2_preface(b"GET / HTTP/1.1\r\n"));
        assert!(!agrees_with_h2_preface(b"POST / HTTP/1.1\r\n"));
    }

    #[test]
    fn a_requests_wire_size_is_its_header_block_and_a_content_length_body() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = http::HeaderMap::new();
            for (k, v) in pairs {
                h.append(
                    http::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    http::HeaderValue::from_str(v).expect("value"),
                );
            }
            h
        };
        // As the proxy calls it, which must size as it does with every name looked up.
        let sized = |block: usize, h: &http::HeaderMap| {
            let id = http::header::HeaderName::from_static("x-request-id");
            let got = wire_size(block, h, Present::of(h, &id));
            assert_eq!(got, wire_size(block, h, Present::ALL));
            got
        };
        assert_eq!(sized(40, &headers(&[])), Some(40));
        assert_eq!(sized(60, &headers(&[("content-length", "3")])), Some(63));
        assert_eq!(sized(60, &headers(&[("content-length", "0")])), Some(60));
        // Not known: a chunked body, two lengths, one that is not a number.
        assert_eq!(
            sized(70, &headers(&[("transfer-encoding", "chunked")])),
            None
        );
        assert_eq!(
            sized(
                70,
                &headers(&[("content-length", "3"), ("content-length", "3")])
            ),
            None
        );
        assert_eq!(sized(70, &headers(&[("content-length", "x")])), None);
    }

    #[test]
    fn refusals_are_classified() {
        let c = |head: &[u8]| classify(head, head.len());
        assert_eq!(c(b"GET /x HTTP/9.9\r\n\r\n"), Rejection::BadRequestLine);
        assert_eq!(c(b"G(T / HTTP/1.1\r\n\r\n"), Rejection::BadRequestLine);
        assert_eq!(
            c(b"GET /x HTTP/1.1 extra\r\nHost: a\r\n\r\n"),
            Rejection::BadRequestLine
        );
        assert_eq!(c(b"GARBAGE\r\n\r\n"), Rejection::BadRequestLine);
        assert_eq!(
            c(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"),
            Rejection::BadHeader
        );
        assert_eq!(
            c(b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n"),
            Rejection::BadHeader
        );
        assert_eq!(
            c(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Rejection::BadFraming
        );
        assert_eq!(
            c(b"GET http:/\\a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            Rejection::BadHost
        );
        assert_eq!(
            classify(b"GET / HTTP/1.1\r\n", 2_000_000),
            Rejection::TooLarge
        );
        let many: Vec<u8> = std::iter::once(&b"GET / HTTP/1.1\r\n"[..])
            .chain(std::iter::repeat_n(&b"X: y\r\n"[..], 300))
            .chain(std::iter::once(&b"\r\n"[..]))
            .flatten()
            .copied()
            .collect();
        assert_eq!(c(&many), Rejection::TooLarge);
    }

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            0,
            0,
            0,
            0,
            0,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn goaway_codes_are_read_from_frames_however_the_writes_split_them() {
        let mut out = frame(0x4, &[0, 3, 0, 0, 0, 100]); // SETTINGS
        out.extend(frame(0x0, b"hello")); // DATA
        out.extend(frame(0x4, &[])); // an empty SETTINGS ack
        out.extend(frame(
            0x7,
            &[0, 0, 0, 9, 0, 0, 0, 0xb, b'c', b'a', b'l', b'm'],
        )); // GOAWAY
        out.extend(frame(0x7, &[0, 0, 0, 9, 0, 0, 0, 0])); // GOAWAY NO_ERROR
        for step in [1, 2, 5, 9, 17, out.len()] {
            let mut scan = FrameScan::default();
            let mut codes = Vec::new();
            for piece in out.chunks(step) {
                scan.feed(piece, |c| codes.push(c));
            }
            assert_eq!(codes, vec![0xb, 0], "written {step} bytes at a time");
        }
        assert_eq!(H2Goaway::from_code(0xb), Some(H2Goaway::EnhanceYourCalm));
        assert_eq!(H2Goaway::from_code(0), None);
        assert_eq!(H2Goaway::from_code(1), Some(H2Goaway::ProtocolError));
    }

    /// A caller's connection on loopback, watched as runoff watches it, and its caller's end.
    pub(crate) async fn pair() -> (Watched, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let caller = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        let counter = || prometheus::IntCounter::new("c", "c").expect("counter");
        let watched = Watched::new(
            Box::new(pingora::protocols::l4::stream::Stream::from(accepted)),
            Duration::from_secs(60),
            PerLabel::new(|_: Rejection| counter()),
            PerLabel::new(|_: H2Goaway| counter()),
        );
        (watched, caller)
    }

    #[tokio::test]
    async fn small_writes_wait_for_the_flush_and_leave_in_order_with_nothing_kept() {
        let (mut w, mut caller) = pair().await;
        w.request_began();
        w.write_all(b"HTTP/1.1 200 OK\r\n").await.expect("write");
        w.write_all(b"content-length: 5\r\n\r\n")
            .await
            .expect("write");
        w.write_all(b"hello").await.expect("write");
        // Gathered, not written yet.
        assert_eq!(w.out.len(), 17 + 21 + 5);
        w.flush().await.expect("flush");
        assert_eq!(w.out.capacity(), 0, "no buffer kept once flushed");
        // A write as large as the buffer goes out at once, after what was gathered before it.
        let big = vec![b'x'; GATHER_BYTES];
        w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1460\r\n\r\n")
            .await
            .expect("write");
        w.write_all(&big).await.expect("write");
        assert_eq!(w.out.capacity(), 0, "written through, nothing gathered");
        // Pingora's own shutdown sends what is gathered first.
        w.write_all(b"0\r\n\r\n").await.expect("write");
        Shutdown::shutdown(&mut w).await;
        let mut got = Vec::new();
        caller.read_to_end(&mut got).await.expect("read");
        let mut want = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec();
        want.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 1460\r\n\r\n");
        want.extend_from_slice(&big);
        want.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn vectored_writes_are_gathered_too() {
        let (mut w, mut caller) = pair().await;
        w.request_began();
        let parts = [
            io::IoSlice::new(b"5\r\n"),
            io::IoSlice::new(b"hello"),
            io::IoSlice::new(b"\r\n"),
        ];
        let n = std::future::poll_fn(|cx| Pin::new(&mut w).poll_write_vectored(cx, &parts))
            .await
            .expect("write");
        assert_eq!(n, 10);
        assert_eq!(w.out, b"5\r\nhello\r\n");
        AsyncWriteExt::shutdown(&mut w).await.expect("shutdown");
        let mut got = Vec::new();
        caller.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"5\r\nhello\r\n");
    }
}

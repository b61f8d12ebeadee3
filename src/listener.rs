//! The HTTP/1 connection loop both listeners (ingest and admin) run on, with
//! the limits every connection gets:
//!
//! - the request head (request line and headers) may be at most
//!   [`MAX_HEADER_BYTES`]; a larger one is answered 431;
//! - the head must arrive within the header timeout, which also closes a
//!   keep-alive connection idle that long (hyper starts it whenever it waits
//!   for a head), so slowloris and idle connections cannot pile up;
//! - at most `max_connections` at once: a connection over the limit is closed
//!   at once, so it never holds a socket or a task;
//! - framing as RFC 9112 asks: an HTTP/1.1 request without exactly one `Host`
//!   header, or whose head ends a line with a bare LF instead of CRLF, is
//!   answered 400 and the connection closed (a lenient parser in front of a
//!   strict one is how requests get smuggled).
//!
//! With TLS ([`crate::tls::Acceptor`]) the handshake runs in the connection's
//! task (never in the accept loop) and must end within the header timeout. A
//! connection that negotiated `h2` by ALPN (offered on the admin listener
//! only) is served as HTTP/2: no request-line framing to check there, at most
//! [`MAX_H2_STREAMS`] requests at once, header lists of at most
//! [`MAX_HEADER_BYTES`], pings every header timeout to drop dead peers, and
//! a connection with no request under way for a header timeout is closed
//! gracefully (GOAWAY), like an idle HTTP/1.1 keep-alive connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::tls::Acceptor;

/// Largest request head (request line plus headers), like common servers'
/// defaults (nginx allows 4 × 8 KiB, Node 16 KiB, Go 1 MiB).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Most headers in one request.
pub const MAX_HEADERS: usize = 100;

/// Most requests at once on one HTTP/2 connection.
pub const MAX_H2_STREAMS: u32 = 100;

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The request head must arrive within this; also the keep-alive idle timeout.
    pub header_timeout: Duration,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

/// The body of a request on a checked connection: hyper's body, which re-arms
/// the bare-LF check for the next request once it has been read to its end.
pub struct RequestBody {
    inner: Incoming,
    lines: Arc<LineCheck>,
}

impl RequestBody {
    fn end(&self) {
        self.lines.rearm.store(true, Ordering::Release);
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.end();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the connection's reader and its requests share about line endings.
#[derive(Default)]
struct LineCheck {
    /// A line of a request head ended in a bare LF.
    bare_lf: AtomicBool,
    /// The previous request is over: scan the bytes that follow as a head.
    rearm: AtomicBool,
}

/// The socket, scanning each request head for bare LFs as hyper reads it.
/// Only heads are scanned (from the connection's start, and again once a
/// request's body has been read to its end), never bodies.
struct Scanned<S> {
    io: S,
    shared: Arc<LineCheck>,
    scanning: bool,
    prev: u8,
    line_len: usize,
    lines: usize,
}

impl<S> Scanned<S> {
    fn new(io: S, shared: Arc<LineCheck>) -> Self {
        Scanned {
            io,
            shared,
            scanning: true,
            prev: 0,
            line_len: 0,
            lines: 0,
        }
    }

    fn scan(&mut self, bytes: &[u8]) {
        if self.shared.rearm.swap(false, Ordering::AcqRel) {
            self.scanning = true;
            self.prev = 0;
            self.line_len = 0;
            self.lines = 0;
        }
        for &b in bytes {
            if !self.scanning {
                return;
            }
            match b {
                b'\n' => {
                    if self.prev != b'\r' {
                        self.shared.bare_lf.store(true, Ordering::Release);
                    }
                    if self.line_len == 0 && self.lines > 0 {
                        // The empty line that ends the head: a body follows.
                        self.scanning = false;
                    } else if self.line_len > 0 {
                        self.lines += 1;
                    }
                    self.line_len = 0;
                }
                b'\r' => {}
                _ => self.line_len += 1,
            }
            self.prev = b;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Scanned<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if r.is_ready() {
            this.scan(&buf.filled()[before..]);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Scanned<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Why a request is refused before its handler sees it, if it is.
fn framing_error(req: &Request<Incoming>, lines: &LineCheck) -> Option<&'static str> {
    if lines.bare_lf.load(Ordering::Acquire) {
        return Some("bad request: lines must end with CRLF\n");
    }
    if req.version() == Version::HTTP_11 && req.headers().get_all(HOST).iter().count() != 1 {
        return Some("bad request: HTTP/1.1 needs exactly one Host header\n");
    }
    None
}

fn bad_request<B>(text: &'static str) -> Response<Either<Full<Bytes>, B>> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from_static(text.as_bytes()))));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Accepts connections until `shutdown`, serving each with `handler(request,
/// peer)`, over TLS with `tls`; then lets requests in progress finish and
/// returns.
pub async fn serve<H, Fut, B>(
    listener: TcpListener,
    limits: Limits,
    tls: Option<Acceptor>,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Request<RequestBody>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, limit = limits.max_connections, "connection limit reached; closing a new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            peer,
            limits,
            shutdown: shutdown.clone(),
            handler: handler.clone(),
        };
        let tls = tls.clone();
        tracker.spawn(async move {
            let _slot = slot;
            match tls {
                None => conn.http1(stream).await,
                Some(tls) => conn.tls(&tls, stream).await,
            }
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// One accepted connection and what serving it needs.
struct Conn<H> {
    peer: SocketAddr,
    limits: Limits,
    shutdown: CancellationToken,
    handler: H,
}

impl<H, Fut, B> Conn<H>
where
    H: Fn(Request<RequestBody>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// The TLS handshake, within the header timeout, then HTTP/2 if ALPN
    /// chose it, else HTTP/1.1.
    async fn tls(self, tls: &Acceptor, stream: TcpStream) {
        let peer = self.peer;
        let handshake = tokio::time::timeout(self.limits.header_timeout, tls.inner.accept(stream));
        let stream = tokio::select! {
            r = handshake => match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake did not finish within the header timeout");
                    return;
                }
            },
            _ = self.shutdown.cancelled() => return,
        };
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            self.http2(stream).await
        } else {
            self.http1(stream).await
        }
    }

    /// HTTP/1.1 with the framing checks of this module.
    async fn http1<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            peer,
            limits,
            shutdown,
            handler,
        } = self;
        let lines = Arc::new(LineCheck::default());
        let io = Scanned::new(stream, lines.clone());
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let handler = handler.clone();
            let lines = lines.clone();
            async move {
                if let Some(why) = framing_error(&req, &lines) {
                    return Ok::<_, Infallible>(bad_request(why));
                }
                if req.body().is_end_stream() {
                    lines.rearm.store(true, Ordering::Release);
                }
                let req = req.map(|inner| RequestBody {
                    inner,
                    lines: lines.clone(),
                });
                let mut r = handler(req, peer).await;
                if !lines.rearm.load(Ordering::Acquire) {
                    // The body was not read to its end (refused as too large,
                    // or not wanted): hyper closes the connection after this
                    // answer. Say so, or a client sends its next request on
                    // it and that request fails.
                    r.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                Ok(r.map(Either::Right))
            }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_header_size(MAX_HEADER_BYTES)
            .max_headers(MAX_HEADERS)
            // A head that has not ended within this much is too large too,
            // without waiting for hyper's default 400 KiB to fill.
            .max_buf_size(2 * MAX_HEADER_BYTES)
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), svc);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }

    /// HTTP/2 (negotiated by ALPN on a TLS connection).
    async fn http2<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            peer,
            limits,
            shutdown,
            handler,
        } = self;
        let (busy, mut idle) = tokio::sync::watch::channel(0usize);
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let handler = handler.clone();
            let working = Working::new(busy.clone());
            async move {
                let _working = working;
                // HTTP/2 frames are not lines: nothing to scan.
                let lines = Arc::new(LineCheck::default());
                let req = req.map(|inner| RequestBody { inner, lines });
                Ok::<_, Infallible>(handler(req, peer).await)
            }
        });
        let conn = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_BYTES as u32)
            .max_concurrent_streams(MAX_H2_STREAMS)
            .keep_alive_interval(Some(limits.header_timeout))
            .keep_alive_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), svc);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
            _ = idle_for(&mut idle, limits.header_timeout) => {
                tracing::debug!(%peer, "HTTP/2 connection idle: closing it");
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

/// One HTTP/2 request under way: counted in the connection's `busy` from
/// its start until its handler returns (or its task is dropped).
struct Working(tokio::sync::watch::Sender<usize>);

impl Working {
    fn new(busy: tokio::sync::watch::Sender<usize>) -> Working {
        busy.send_modify(|n| *n += 1);
        Working(busy)
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Resolves once no request has been under way for `limit`.
async fn idle_for(busy: &mut tokio::sync::watch::Receiver<usize>, limit: Duration) {
    loop {
        if busy.wait_for(|n| *n == 0).await.is_err() {
            // Every sender is gone: the connection is ending by itself.
            return std::future::pending().await;
        }
        match tokio::time::timeout(limit, busy.changed()).await {
            Err(_) => return,
            Ok(Err(_)) => return std::future::pending().await,
            Ok(Ok(())) => {}
        }
    }
}

//! Serving connections: hyper's HTTP/1 driver under the limits that
//! `axum::serve` does not have (README.md, "Configuration"): a cap on
//! concurrent connections (one over it is closed at once, so the open ones
//! and the file descriptors stay), a header-read timeout (a request's head
//! must arrive within it, counted from the connection's opening or from the
//! first byte of a later request), and an idle timeout (a connection with no
//! request in flight, or on which no byte moves, is closed after it). The
//! graceful shutdown is axum's: stop accepting, let in-flight requests
//! finish, close idle connections, then return.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

/// The limits every connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a request's head (request line and headers) may take to
    /// arrive: from the opening for a connection's first request, from its
    /// first byte for later ones.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight (a
    /// keep-alive waiting for the next one), or with no byte moving either way.
    pub idle_timeout: Duration,
    /// How many connections may be open at once; one more is closed as soon
    /// as it is accepted.
    pub max_connections: usize,
}

/// Serves `service` on every connection `listener` accepts, within
/// `limits`, until `shutdown` resolves; then stops accepting, lets in-flight
/// requests finish and returns once every connection has closed.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Connections watch `stop` to start their graceful shutdown; each holds
    // a receiver of `open`, so `open.closed()` is "every connection ended".
    let (stop, stop_rx) = watch::channel(false);
    let (open, open_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut warned_at: Option<Instant> = None;
    let mut refused: u64 = 0;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            refused += 1;
            if warned_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    refused,
                    "connection limit reached: closing new connections"
                );
                warned_at = Some(Instant::now());
                refused = 0;
            }
            continue;
        };
        let connection = Connection {
            peer,
            limits,
            stop: stop_rx.clone(),
            _open: open_rx.clone(),
            _permit: permit,
        };
        tokio::spawn(connection.run(stream, service.clone()));
    }
    drop(listener);
    let _ = stop.send(true);
    drop(open_rx);
    open.closed().await;
    Ok(())
}

/// An accept that failed: a connection reset before it was accepted is
/// skipped; anything else (out of file descriptors, say) is logged and
/// retried after a pause, so the loop does not spin.
async fn accept_failed(e: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// One accepted connection and what it holds until it ends.
struct Connection {
    peer: SocketAddr,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
    _open: watch::Receiver<()>,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run<S>(mut self, stream: TcpStream, service: S)
    where
        S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched::new(stream, activity.clone()));
        let peer = self.peer;
        let requests = activity.clone();
        let hyper_service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let in_flight = requests.request_started();
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            let answer = service.clone().oneshot(req);
            async move {
                let res = answer.await;
                drop(in_flight);
                res
            }
        });
        let builder = Builder::new(TokioExecutor::new());
        let mut conn = std::pin::pin!(builder.serve_connection_with_upgrades(io, hyper_service));
        let mut draining = false;
        loop {
            let deadline = activity.deadline(&self.limits);
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = self.stop.wait_for(|stop| *stop), if !draining => {
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if Instant::now() >= activity.deadline(&self.limits) {
                        tracing::debug!(peer = %self.peer, "closing a connection that timed out");
                        break;
                    }
                }
            }
        }
    }
}

/// What a connection's timeouts are measured from, in milliseconds since
/// it was accepted.
struct Activity {
    opened: Instant,
    /// The last byte read or written, or the last request begun or answered.
    last: AtomicU64,
    /// When the head of the request awaited began to arrive ([`NONE`] while
    /// a request is in flight, or none has begun since the last).
    head_since: AtomicU64,
    in_flight: AtomicUsize,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            last: AtomicU64::new(0),
            // The first request's head is awaited from the opening.
            head_since: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn read(&self) {
        let now = self.now();
        self.last.store(now, Ordering::Release);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self
                .head_since
                .compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn wrote(&self) {
        self.last.store(self.now(), Ordering::Release);
    }

    /// A request's head has arrived and its handler starts; the guard
    /// marks its end.
    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Release);
        self.wrote();
        InFlight(self.clone())
    }

    /// When the connection is to be closed unless something happens first.
    fn deadline(&self, limits: &ConnectionLimits) -> Instant {
        let ms = Duration::from_millis;
        let idle = self.opened + ms(self.last.load(Ordering::Acquire)) + limits.idle_timeout;
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return idle;
        }
        match self.head_since.load(Ordering::Acquire) {
            NONE => idle,
            since => idle.min(self.opened + ms(since) + limits.header_read_timeout),
        }
    }
}

/// A request in flight on a connection (its handler has not answered yet).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.wrote();
    }
}

/// A TCP stream that notes in [`Activity`] every byte it moves, and makes
/// one rewrite on the way out: the HTTP parser's own answer to a request it
/// cannot parse (a NUL in a header, a head over hyper's limits) is a bare
/// 400, 414 or 431 head, written before any request reaches the router;
/// it leaves with the JSON error body every other 4xx has (docs/api.md,
/// "Errors"). Nothing the router answers matches: every 4xx it sends has a
/// content type.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// A rewritten answer not yet fully written, and how much of it was.
    pending: Vec<u8>,
    sent: usize,
}

impl Watched {
    fn new(inner: TcpStream, activity: Arc<Activity>) -> Self {
        Watched {
            inner,
            activity,
            pending: Vec::new(),
            sent: 0,
        }
    }

    /// Writes out what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Takes `buf` (reported as written) when it is the parser's bare error
    /// head, queuing its rewrite instead.
    fn take_parser_error(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<Poll<io::Result<usize>>> {
        let rewritten = with_json_body(buf)?;
        self.pending = rewritten;
        self.sent = 0;
        self.activity.wrote();
        if let Poll::Ready(Err(e)) = self.poll_pending(cx) {
            return Some(Poll::Ready(Err(e)));
        }
        Some(Poll::Ready(Ok(buf.len())))
    }
}

/// The parser's bare error head (`HTTP/1.1 4xx`, `content-length: 0`, no
/// content type, nothing after the head) with the JSON error body of its
/// status; `None` for anything else.
fn with_json_body(buf: &[u8]) -> Option<Vec<u8>> {
    if !buf.starts_with(b"HTTP/1.1 4") || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head = std::str::from_utf8(buf).ok()?;
    let lower = head.to_ascii_lowercase();
    if lower.contains("\r\ncontent-type:") || !lower.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let body = crate::http::edge::parser_error_body(status);
    let mut out = String::with_capacity(head.len() + body.len() + 64);
    for line in head.trim_end_matches("\r\n").split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("content-type: application/json; charset=utf-8\r\n");
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    out.push_str(&body);
    Some(out.into_bytes())
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        if let Some(taken) = this.take_parser_error(cx, buf) {
            return taken;
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            if let Some(taken) = this.take_parser_error(cx, only) {
                return taken;
            }
        }
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_parsers_bare_error_head_gets_a_json_body() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 07:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(with_json_body(bare).expect("rewritten")).expect("utf-8");
        let (head, body) = out.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("content-type: application/json; charset=utf-8"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        assert!(!head.contains("content-length: 0"), "{head}");
        assert_eq!(
            body,
            r#"{"error":"BadRequest","description":"The request is malformed."}"#
        );

        // What the router sends is never touched: it has a content type, a
        // body, or is not a 4xx.
        let json = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert!(with_json_body(json).is_none());
        assert!(with_json_body(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(with_json_body(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}").is_none());
    }

    const LIMITS: ConnectionLimits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 1,
    };

    /// `a` as if `secs` had passed since its opening.
    fn at(a: &Activity, secs: u64) -> Instant {
        a.opened + Duration::from_secs(secs)
    }

    #[test]
    fn a_head_is_timed_from_the_opening_then_from_its_first_byte() {
        let a = Arc::new(Activity::new());
        assert_eq!(a.deadline(&LIMITS), at(&a, 10), "the first head: from the opening");
        let request = a.request_started();
        a.last.store(5_000, Ordering::Release);
        assert_eq!(a.deadline(&LIMITS), at(&a, 65), "in flight: only when no byte moves");
        drop(request);
        a.last.store(5_000, Ordering::Release);
        assert_eq!(a.deadline(&LIMITS), at(&a, 65), "a keep-alive: the idle timeout");
        // The next request's first byte at 20 s: its head has the
        // header-read timeout from then, however slowly the rest trickles in.
        a.head_since.store(20_000, Ordering::Release);
        a.last.store(29_000, Ordering::Release);
        assert_eq!(a.deadline(&LIMITS), at(&a, 30));
        a.read();
        assert_eq!(
            a.head_since.load(Ordering::Acquire),
            20_000,
            "a later byte does not restart it"
        );
    }
}

//! HTTP requests by route, method and status, and their latency by route
//! and method (`latchkey_http_requests_total`,
//! `latchkey_http_request_duration_seconds`; docs/api.md, "Operations:
//! /healthz, /readyz, /metrics"), recorded by [`RecordLayer`] around every
//! route of the router, `/verify` included.
//!
//! **Bounded labels.** The route is the matched route's template (axum's
//! `MatchedPath`, `/api/v2/api_tokens/{id}`), never the request's path: a
//! path is client text, unbounded, and may hold a token pasted in the wrong
//! place. A request no route matched is `route="unmatched"`. The method is
//! one of the nine standard ones or `other`; the status is the one the
//! router answered with (a bounded set: latchkey's own). So however many
//! hostile paths and methods arrive, the series are at most routes × 10
//! methods × the statuses latchkey answers with, and memory with them:
//! each route has a fixed block of slots, made the first time it is seen,
//! and at most [`MAX_ROUTES`] of them.
//!
//! **Cheap on every request.** Written by hand for the same reason as the
//! rest of [`crate::metrics`]: recording is a read of a lock-free map
//! (`papaya`, keyed by the template, written only the first time a route is
//! seen) and a few relaxed `fetch_add`s into that route's fixed slots,
//! with no lock and no allocation. The layer is a plain tower `Layer` whose
//! future wraps the inner one, not `middleware::from_fn`, which boxes a
//! future per request. A metrics crate's labelled family would hash and
//! look up the label set under a lock on every request instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use latchkey_app::metrics::DatabaseOperation;
use latchkey_app::App;
use std::fmt::Write;

use super::{escaped, header, Histogram, Metrics, INF};

/// The `route` label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The `method` labels, by slot; anything else is `other`.
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other",
];

/// At most this many routes get series of their own; a router with more
/// (latchkey's has about fifty) counts the rest as unmatched.
pub const MAX_ROUTES: usize = 256;

/// Distinct statuses counted per route and method; more (never seen in
/// practice: a route answers with a handful) are counted as `status="other"`.
const STATUS_SLOTS: usize = 16;

/// Upper bounds of the request latency buckets, in nanoseconds (100 µs to
/// 10 s, then `+Inf`).
const BUCKETS_NS: [u64; 17] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    INF,
];

/// The slot of a method.
fn method_slot(method: &Method) -> usize {
    match method.as_str() {
        "GET" => 0,
        "HEAD" => 1,
        "POST" => 2,
        "PUT" => 3,
        "DELETE" => 4,
        "PATCH" => 5,
        "OPTIONS" => 6,
        "CONNECT" => 7,
        "TRACE" => 8,
        _ => 9,
    }
}

/// One status's count; `code` 0 is a free slot.
#[derive(Debug)]
struct StatusSlot {
    code: AtomicU16,
    count: AtomicU64,
}

/// The counts of one route and method.
#[derive(Debug)]
struct PerMethod {
    statuses: [StatusSlot; STATUS_SLOTS],
    /// Statuses past the slots.
    other_status: AtomicU64,
    latency: Histogram<{ BUCKETS_NS.len() }>,
}

impl PerMethod {
    const fn new() -> Self {
        PerMethod {
            statuses: [const {
                StatusSlot {
                    code: AtomicU16::new(0),
                    count: AtomicU64::new(0),
                }
            }; STATUS_SLOTS],
            other_status: AtomicU64::new(0),
            latency: Histogram::new(&BUCKETS_NS),
        }
    }

    fn record(&self, status: u16, took: Duration) {
        self.latency.observe(took);
        for slot in &self.statuses {
            let mut code = slot.code.load(Ordering::Acquire);
            if code == 0 {
                // A free slot: claim it for this status, unless another
                // request just claimed it (for this status or another).
                code = match slot
                    .code
                    .compare_exchange(0, status, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => status,
                    Err(taken) => taken,
                };
            }
            if code == status {
                slot.count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.other_status.fetch_add(1, Ordering::Relaxed);
    }
}

/// The counts of one route, every method.
#[derive(Debug)]
struct RouteSlots {
    methods: [PerMethod; METHODS.len()],
}

impl RouteSlots {
    fn new() -> Self {
        RouteSlots {
            methods: [const { PerMethod::new() }; METHODS.len()],
        }
    }

    fn write(&self, out: &mut String, route: &str) -> std::fmt::Result {
        let route = escaped(route);
        for (method, per) in METHODS.iter().zip(&self.methods) {
            for slot in &per.statuses {
                let (code, n) = (slot.code.load(Ordering::Acquire), slot.count.load(Ordering::Relaxed));
                if code != 0 && n > 0 {
                    writeln!(
                        out,
                        "latchkey_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{code}\"}} {n}"
                    )?;
                }
            }
            let other = per.other_status.load(Ordering::Relaxed);
            if other > 0 {
                writeln!(
                    out,
                    "latchkey_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"other\"}} {other}"
                )?;
            }
        }
        Ok(())
    }

    fn write_latency(&self, out: &mut String, route: &str) -> std::fmt::Result {
        let route = escaped(route);
        for (method, per) in METHODS.iter().zip(&self.methods) {
            if per.latency.count() > 0 {
                let labels = format!("route=\"{route}\",method=\"{method}\"");
                per.latency
                    .write(out, "latchkey_http_request_duration_seconds", &labels)?;
            }
        }
        Ok(())
    }
}

/// HTTP requests by route template, method and status.
#[derive(Debug)]
pub struct Requests {
    routes: papaya::HashMap<Box<str>, RouteSlots>,
    unmatched: RouteSlots,
}

impl Default for Requests {
    fn default() -> Self {
        Requests {
            routes: papaya::HashMap::new(),
            unmatched: RouteSlots::new(),
        }
    }
}

impl Requests {
    /// Records one answered request: `route` is the matched route's
    /// template (`None`: no route matched).
    pub fn record(&self, route: Option<&str>, method: &Method, status: StatusCode, took: Duration) {
        self.record_at(route, method_slot(method), status, took);
    }

    /// [`Requests::record`] with the method's slot.
    fn record_at(&self, route: Option<&str>, method: usize, status: StatusCode, took: Duration) {
        let status = status.as_u16();
        let Some(route) = route else {
            self.unmatched.methods[method].record(status, took);
            return;
        };
        let routes = self.routes.pin();
        let slots = match routes.get(route) {
            Some(slots) => slots,
            None if routes.len() >= MAX_ROUTES => &self.unmatched,
            // The first request of this route: its slots are made once.
            None => routes.get_or_insert_with(route.into(), RouteSlots::new),
        };
        slots.methods[method].record(status, took);
    }

    /// The two metrics' lines, routes in order, `unmatched` last.
    pub(super) fn write(&self, out: &mut String) -> std::fmt::Result {
        let routes = self.routes.pin();
        let mut sorted: Vec<(&str, &RouteSlots)> = routes.iter().map(|(r, s)| (&**r, s)).collect();
        sorted.sort_unstable_by_key(|(r, _)| *r);
        sorted.push((UNMATCHED, &self.unmatched));
        header(
            out,
            "latchkey_http_requests_total",
            "counter",
            "HTTP requests answered, by route template, method and status.",
        )?;
        for (route, slots) in &sorted {
            slots.write(out, route)?;
        }
        header(
            out,
            "latchkey_http_request_duration_seconds",
            "histogram",
            "Time to answer an HTTP request, by route template and method.",
        )?;
        for (route, slots) in &sorted {
            slots.write_latency(out, route)?;
        }
        Ok(())
    }
}

/// Put on a response that failed because of the database (a handler's or
/// page's 500 from a storage error), so that [`RecordLayer`] counts it in
/// `latchkey_database_errors_total{operation="request"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseFailed;

/// Records every request in [`Requests`], and counts the responses marked
/// [`DatabaseFailed`] with the service layer. Applied with `Router::layer`,
/// so it runs after routing, where `MatchedPath` is known.
#[derive(Clone)]
pub struct RecordLayer(Arc<Recorders>);

/// Where [`RecordLayer`] records: behind one `Arc`, so that a request
/// takes one reference, not two.
struct Recorders {
    metrics: Arc<Metrics>,
    app: Arc<App>,
}

impl RecordLayer {
    pub fn new(metrics: Arc<Metrics>, app: Arc<App>) -> Self {
        RecordLayer(Arc::new(Recorders { metrics, app }))
    }
}

impl<S> tower::Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            layer: self.clone(),
        }
    }
}

/// [`RecordLayer`]'s service.
#[derive(Clone)]
pub struct Record<S> {
    inner: S,
    layer: RecordLayer,
}

impl<S> tower::Service<Request> for Record<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Recording<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The template is shared by every request of the route: cloning it
        // counts a reference, it copies nothing.
        let route = req.extensions().get::<MatchedPath>().cloned();
        // The slot, not the method: an unknown method is text the client
        // chose, and copying it would allocate.
        let method = method_slot(req.method());
        Recording {
            inner: self.inner.call(req),
            started: Instant::now(),
            route,
            method,
            layer: self.layer.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer on its way, with what recording it needs.
    pub struct Recording<F> {
        #[pin]
        inner: F,
        started: Instant,
        route: Option<MatchedPath>,
        method: usize,
        layer: RecordLayer,
    }
}

impl<F, E> Future for Recording<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answered = std::task::ready!(this.inner.poll(cx));
        if let Ok(res) = &answered {
            let to = &this.layer.0;
            if res.extensions().get::<DatabaseFailed>().is_some() {
                to.app.record_database_error(DatabaseOperation::Request);
            }
            to.metrics.requests.record_at(
                this.route.as_ref().map(MatchedPath::as_str),
                *this.method,
                res.status(),
                this.started.elapsed(),
            );
        }
        Poll::Ready(answered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(r: &Requests) -> String {
        let mut out = String::new();
        r.write(&mut out).unwrap();
        out
    }

    #[test]
    fn requests_are_counted_by_route_method_and_status() {
        let r = Requests::default();
        let ms = Duration::from_millis(1);
        r.record(Some("/api/v2/api_tokens/{id}"), &Method::GET, StatusCode::OK, ms);
        r.record(Some("/api/v2/api_tokens/{id}"), &Method::GET, StatusCode::OK, ms);
        r.record(Some("/api/v2/api_tokens/{id}"), &Method::GET, StatusCode::NOT_FOUND, ms);
        r.record(
            Some("/api/v2/api_tokens/{id}"),
            &Method::DELETE,
            StatusCode::NO_CONTENT,
            ms,
        );
        let brew = Method::from_bytes(b"BREW").unwrap();
        r.record(Some("/verify"), &brew, StatusCode::OK, Duration::from_secs(20));
        r.record(None, &Method::GET, StatusCode::NOT_FOUND, ms);
        let text = lines(&r);
        for line in [
            "latchkey_http_requests_total{route=\"/api/v2/api_tokens/{id}\",method=\"GET\",status=\"200\"} 2",
            "latchkey_http_requests_total{route=\"/api/v2/api_tokens/{id}\",method=\"GET\",status=\"404\"} 1",
            "latchkey_http_requests_total{route=\"/api/v2/api_tokens/{id}\",method=\"DELETE\",status=\"204\"} 1",
            "latchkey_http_requests_total{route=\"/verify\",method=\"other\",status=\"200\"} 1",
            "latchkey_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
            "latchkey_http_request_duration_seconds_bucket{route=\"/api/v2/api_tokens/{id}\",method=\"GET\",le=\"0.001\"} 3",
            "latchkey_http_request_duration_seconds_bucket{route=\"/api/v2/api_tokens/{id}\",method=\"GET\",le=\"0.0005\"} 0",
            "latchkey_http_request_duration_seconds_count{route=\"/api/v2/api_tokens/{id}\",method=\"GET\"} 3",
            "latchkey_http_request_duration_seconds_sum{route=\"/api/v2/api_tokens/{id}\",method=\"GET\"} 0.003",
            "latchkey_http_request_duration_seconds_bucket{route=\"/verify\",method=\"other\",le=\"10\"} 0",
            "latchkey_http_request_duration_seconds_bucket{route=\"/verify\",method=\"other\",le=\"+Inf\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // Methods and routes never seen have no series.
        assert!(!text.contains("method=\"PUT\""), "{text}");
        assert_eq!(text.matches("# TYPE").count(), 2);
    }

    #[test]
    fn statuses_past_the_slots_are_counted_as_other() {
        let r = Requests::default();
        for code in 200..200 + STATUS_SLOTS as u16 + 3 {
            let status = StatusCode::from_u16(code).unwrap();
            r.record(Some("/x"), &Method::GET, status, Duration::ZERO);
        }
        r.record(Some("/x"), &Method::GET, StatusCode::OK, Duration::ZERO);
        let text = lines(&r);
        assert!(text.contains("latchkey_http_requests_total{route=\"/x\",method=\"GET\",status=\"200\"} 2"));
        assert!(text.contains("latchkey_http_requests_total{route=\"/x\",method=\"GET\",status=\"other\"} 3"));
    }

    #[test]
    fn routes_past_the_cap_are_counted_as_unmatched() {
        let r = Requests::default();
        for i in 0..MAX_ROUTES + 10 {
            r.record(Some(&format!("/r{i}")), &Method::GET, StatusCode::OK, Duration::ZERO);
        }
        assert_eq!(r.routes.len(), MAX_ROUTES);
        let text = lines(&r);
        assert!(text.contains("latchkey_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"200\"} 10"));
    }

    #[test]
    fn concurrent_first_requests_of_a_status_share_one_slot() {
        let r = Arc::new(Requests::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u16 {
                        let status = if i % 2 == 0 {
                            StatusCode::OK
                        } else {
                            StatusCode::NOT_FOUND
                        };
                        r.record(Some("/y"), &Method::POST, status, Duration::ZERO);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = lines(&r);
        assert!(
            text.contains("route=\"/y\",method=\"POST\",status=\"200\"} 2000"),
            "{text}"
        );
        assert!(
            text.contains("route=\"/y\",method=\"POST\",status=\"404\"} 2000"),
            "{text}"
        );
        assert_eq!(text.matches("route=\"/y\",method=\"POST\",status=").count(), 2);
    }
}

//! `pyfilter run --metrics ADDR`: the daemon's own `/metrics` endpoint.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::Metrics;
use super::text::{CONTENT_TYPE, render};
use crate::ban::Summary;
use crate::web::{Request, Response, ServeError, Server};

/// How long the daemon's `/metrics` reuses the store's figures: the history is read whole
/// for them, and scrapes that come together (a Prometheus pair on one schedule) should
/// read it once. Shorter than any scrape interval, so no scrape sees the previous one's.
const STORE_TTL: Duration = Duration::from_secs(2);

/// Where the store's figures come from: the caller's, called at most once per `STORE_TTL`
/// and never by two scrapes at once. `None`: the store did not answer.
type StoreFigures = Box<dyn FnMut(DateTime<Utc>) -> Option<Summary> + Send>;

/// The daemon's `/metrics`: live counters, and the store's figures reused for
/// `STORE_TTL`.
struct Exporter {
    metrics: Arc<Metrics>,
    state: Mutex<StoreState>,
}

struct StoreState {
    figures: StoreFigures,
    cached: Option<(Instant, Summary)>,
}

impl Exporter {
    fn summary(&self) -> Option<Summary> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, summary)) = &state.cached
            && at.elapsed() < STORE_TTL
        {
            return Some(summary.clone());
        }
        let summary = (state.figures)(Utc::now());
        // A failure is not cached: the next scrape asks again.
        state.cached = summary.clone().map(|s| (Instant::now(), s));
        summary
    }

    fn handle(&self, request: &Request) -> Response {
        if request.path != "/metrics" {
            return Response::text(404, "Not Found: metrics are at /metrics\n");
        }
        if request.method != "GET" && request.method != "HEAD" {
            return Response::text(405, "Method Not Allowed\n").with("Allow", "GET, HEAD");
        }
        let summary = self.summary();
        let mut body = String::with_capacity(4096);
        render(&mut body, &self.metrics.snapshot(), summary.as_ref());
        Response::new(200, CONTENT_TYPE, body)
    }
}

/// Serves `/metrics` on `addr` for the daemon, on threads of its own; returns the address
/// bound (port 0 picks one). `figures` yields the store's summary at a time (`None` when
/// the store does not answer).
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    figures: impl FnMut(DateTime<Utc>) -> Option<Summary> + Send + 'static,
) -> Result<SocketAddr, ServeError> {
    let server = Server::bind(addr, None)?;
    let bound = server.local_addr().unwrap_or(addr);
    let exporter = Exporter {
        metrics,
        state: Mutex::new(StoreState {
            figures: Box::new(figures),
            cached: None,
        }),
    };
    // A few connections at once: a client that connects and sends nothing holds one for
    // the server's read timeout, and must not make Prometheus's scrape wait that long.
    server
        .spawn("metrics", 8, move |request| exporter.handle(&request))
        .map_err(|source| ServeError::Bind { addr, source })?;
    Ok(bound)
}

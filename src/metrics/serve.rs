//! `pyfilter run --metrics ADDR`: the daemon's own `/metrics` endpoint.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::Metrics;
use super::text::{CONTENT_TYPE, render, summary_of};
use crate::ban::Summary;
use crate::config::Settings;
use crate::store::BanStore;
use crate::web::{Request, Response, ServeError, Server};

/// How long the daemon's `/metrics` reuses the store's figures: the history is read whole
/// for them, and scrapes that come together (a Prometheus pair on one schedule) should
/// read it once. Shorter than any scrape interval, so no scrape sees the previous one's.
const STORE_TTL: Duration = Duration::from_secs(2);

/// The daemon's `/metrics`: live counters, and the store's figures from a connection of
/// its own (never the decision thread's), reused for `STORE_TTL`.
struct Exporter {
    metrics: Arc<Metrics>,
    settings: Settings,
    state: Mutex<StoreState>,
}

#[derive(Default)]
struct StoreState {
    /// Opened at the first scrape, and again after a failure to open.
    store: Option<Box<dyn BanStore>>,
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
        if state.store.is_none() {
            match crate::store::open(&self.settings) {
                Ok(store) => state.store = Some(store),
                Err(e) => {
                    log::warn!("metrics: cannot open the store: {e}");
                    return None;
                }
            }
        }
        let store = state.store.as_mut()?;
        let summary = summary_of(store.as_mut(), Utc::now());
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
/// bound (port 0 picks one).
pub fn serve(
    addr: SocketAddr,
    settings: &Settings,
    metrics: Arc<Metrics>,
) -> Result<SocketAddr, ServeError> {
    let server = Server::bind(addr, None)?;
    let bound = server.local_addr().unwrap_or(addr);
    let exporter = Exporter {
        metrics,
        settings: settings.clone(),
        state: Mutex::new(StoreState::default()),
    };
    // A few connections at once: a client that connects and sends nothing holds one for
    // the server's read timeout, and must not make Prometheus's scrape wait that long.
    server
        .spawn("metrics", 8, move |request| exporter.handle(&request))
        .map_err(|source| ServeError::Bind { addr, source })?;
    Ok(bound)
}

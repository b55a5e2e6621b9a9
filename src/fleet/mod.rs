//! Fleet sync: the thread that listens to the other servers' bans and unbans.
//!
//! Every ban and unban recorded in the Redis store is published on one channel as a small
//! versioned JSON event (`wire`: `{"v":1,"kind":"ban","ip":...,"rule":...,"server":...,
//! "reason":...,"at":...,"until":...,"id":...}`). This thread subscribes, checks every
//! other server's event (version, kind, address, times) and hands it to the decision
//! thread, which applies it to the firewall. Its own server's events it passes on as
//! changes (`Event::Changed`: network, ban id, ban or unban): the admin records bans
//! without touching the kernel, and the decision thread makes the firewall agree with the
//! store for that network, skipping the changes it made itself. It reconnects by itself
//! with backoff and reports each change of state once; on every (re)connection the decision
//! thread reconciles with Redis, catching whatever was published meanwhile. With Redis
//! Sentinel it reaches the primary the sentinels name (`connect`), and while subscribed
//! asks them again every few seconds: when they name another primary (a failover), it
//! subscribes there.

pub mod connect;
pub mod wire;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::config::RedisConfig;
use crate::event::{Event, EventSender, Link};
use crate::metrics::Metrics;

pub use connect::{Endpoint, EndpointError, SentinelView};
pub use wire::{Sent, parse_event, parse_sent};

const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// With sentinels: how long the subscriber waits for a message before asking them
/// whether the primary moved.
const SENTINEL_CHECK: Duration = Duration::from_secs(1);

/// Why the subscriber thread did not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("cannot start the sync thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Starts the subscriber thread. It lives as long as the daemon.
/// Every event received is counted in `metrics`, with how late it came.
pub fn spawn(
    config: RedisConfig,
    own_server: String,
    events: EventSender,
    metrics: Arc<Metrics>,
) -> Result<JoinHandle<()>, SpawnError> {
    let endpoint = Endpoint::new(&config)?;
    let url = endpoint.describe();
    let channel = config.channel();
    Ok(std::thread::Builder::new()
        .name("sync".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(250);
            let mut was_up: Option<bool> = None;
            loop {
                let result = (|| -> ::redis::RedisResult<()> {
                    // Asked before connecting: a primary named later than this is a move.
                    let primary = endpoint.primary().and_then(Result::ok);
                    let mut conn = endpoint.connect()?;
                    // Quiet hours are no outage; with sentinels, wake up to ask them.
                    conn.set_read_timeout(primary.is_some().then_some(SENTINEL_CHECK))?;
                    let mut pubsub = conn.as_pubsub();
                    pubsub.subscribe(&channel)?;
                    if was_up != Some(true) {
                        match &primary {
                            Some(at) => log::info!(
                                "sync: connected to Redis {url} at {at}, listening on {channel}"
                            ),
                            None => log::info!(
                                "sync: connected to Redis {url}, listening on {channel}"
                            ),
                        }
                    }
                    was_up = Some(true);
                    backoff = Duration::from_millis(250);
                    if events.send(Event::Link(Link::Up(Instant::now()))).is_err() {
                        return Ok(());
                    }
                    loop {
                        let msg = match pubsub.get_message() {
                            Ok(msg) => msg,
                            Err(e) if e.is_timeout() && primary.is_some() => {
                                match endpoint.primary() {
                                    Some(Ok(now)) if Some(&now) != primary.as_ref() => {
                                        log::warn!(
                                            "sync: the sentinels name a new primary, {now} (was {}); moving there",
                                            primary.as_deref().unwrap_or("?")
                                        );
                                        // Down then up: the decision thread reconciles,
                                        // catching what was published during the move.
                                        was_up = Some(false);
                                        let _ = events.send(Event::Link(Link::Down));
                                        return Err(e);
                                    }
                                    _ => continue,
                                }
                            }
                            Err(e) => return Err(e),
                        };
                        match parse_sent(msg.get_payload_bytes(), &own_server) {
                            Ok(Some((event, sent))) => {
                                metrics.remote_event(sent, Utc::now());
                                if events.send(Event::Remote(event)).is_err() {
                                    return Ok(());
                                }
                            }
                            // This server's own: the daemon applied it already, or
                            // the admin recorded it and the daemon applies it now.
                            Ok(None) => {
                                if let Some(change) = own_change(msg.get_payload_bytes())
                                    && events.send(Event::Changed(change)).is_err()
                                {
                                    return Ok(());
                                }
                            }
                            Err(why) => log::warn!(
                                "sync: event dropped: {why}: {}",
                                String::from_utf8_lossy(msg.get_payload_bytes())
                            ),
                        }
                    }
                })();
                if let Err(e) = result {
                    if was_up != Some(false) {
                        log::warn!("sync: lost Redis {url} ({e}); banning locally and retrying");
                        let _ = events.send(Event::Link(Link::Down));
                    }
                    was_up = Some(false);
                } else {
                    return;
                }
                std::thread::sleep(backoff);
                // A failover takes seconds: with sentinels, ask again at least every second.
                let most = if config.uses_sentinel() {
                    Duration::from_secs(1)
                } else {
                    BACKOFF_MAX
                };
                backoff = (backoff * 2).min(most);
            }
        })?)
}

/// One of this server's own events, as a change of its ban.
fn own_change(payload: &[u8]) -> Option<crate::ban::Change> {
    let event = wire::WireEvent::decode(payload).ok()?;
    Some(crate::ban::Change {
        net: crate::net::parse_net(&event.ip).ok()?,
        ban: event.id,
        lifted: event.kind == "unban",
    })
}

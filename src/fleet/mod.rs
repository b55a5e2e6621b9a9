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
//! thread reconciles with Redis, catching whatever was published meanwhile.

pub mod wire;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use crossbeam_channel::Sender;

use crate::config::{RedisConfig, redacted};
use crate::event::{Event, Link};
use crate::metrics::Metrics;

pub use wire::{Sent, parse_event, parse_sent};

const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Starts the subscriber thread. It lives as long as the daemon.
/// Every event received is counted in `metrics`, with how late it came.
pub fn spawn(
    config: RedisConfig,
    own_server: String,
    events: Sender<Event>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<JoinHandle<()>> {
    let client = ::redis::Client::open(config.url.as_str())?;
    let url = redacted(&config.url);
    let channel = config.channel();
    Ok(std::thread::Builder::new()
        .name("sync".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(250);
            let mut was_up: Option<bool> = None;
            loop {
                let result = (|| -> ::redis::RedisResult<()> {
                    let mut conn = client.get_connection_with_timeout(config.timeout)?;
                    let mut pubsub = conn.as_pubsub();
                    pubsub.subscribe(&channel)?;
                    if was_up != Some(true) {
                        log::info!("sync: connected to Redis {url}, listening on {channel}");
                    }
                    was_up = Some(true);
                    backoff = Duration::from_millis(250);
                    if events.send(Event::Link(Link::Up(Instant::now()))).is_err() {
                        return Ok(());
                    }
                    loop {
                        let msg = pubsub.get_message()?;
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
                backoff = (backoff * 2).min(BACKOFF_MAX);
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

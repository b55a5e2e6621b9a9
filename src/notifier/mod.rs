//! Notifications of bans and unbans (`notify:` in `pyfilter.yml`): a command run without
//! a shell, or a POST to a webhook, for each ban that passes the entry's filters.
//!
//! A ban never waits for a notification. The decision thread only offers each notice to
//! every interested receiver's bounded queue (`try_send`): when a queue is full the notice
//! is dropped, counted and logged. Each receiver has its own thread, which delivers one
//! notice at a time with a timeout and tries again with a doubling wait, so a receiver
//! that hangs or fails delays nothing but its own queue. Results are counted in
//! `pyfilter_notifications_total{notifier, result}`.
//!
//! The fields a notice shows are in `template`; the two ways of delivering it in
//! `command` and `webhook`.

mod command;
mod template;
mod webhook;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use crate::ban::{Ban, NewBan, Origin};
use crate::config::{NotifyConfig, NotifyOn, NotifySource};
use crate::event::RemoteEvent;
use crate::metrics::Metrics;
use crate::net::display_net;

/// The first wait before trying a failed delivery again; each next one is twice as long.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two tries.
const LONGEST_RETRY: Duration = Duration::from_secs(300);
/// How long a stopping daemon lets its receivers finish what they hold.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Ban,
    Unban,
}

/// A ban or unban to tell about.
#[derive(Debug, Clone)]
pub struct Notice {
    pub change: Change,
    /// For an unban, the lifted ban (with when and why it was lifted).
    pub ban: Ban,
}

impl Notice {
    /// The ban as `list --json` prints it.
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self.ban.to_json()).unwrap_or_default()
    }
}

/// Why one delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("the command failed ({0})")]
    Status(String),
    #[error("cannot wait for the command: {0}")]
    Wait(std::io::Error),
    #[error("no answer within {}", crate::duration::format_duration(*.0))]
    Timeout(Duration),
    #[error("{0}")]
    Http(String),
}

/// One way of delivering a notice.
trait Deliver: Send {
    fn deliver(&mut self, notice: &Notice) -> Result<(), NotifyError>;
}

/// How one delivery ended, as the metric's `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// A try failed and another one follows.
    Retried,
    /// Every try failed: the notice is given up.
    Failed,
    /// The queue was full: the notice was never tried.
    Dropped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Retried => "retried",
            Outcome::Failed => "failed",
            Outcome::Dropped => "dropped",
        }
    }
}

/// Which notices a receiver wants.
struct Filter {
    on: Vec<NotifyOn>,
    rules: Vec<String>,
    sources: Vec<NotifySource>,
}

impl Filter {
    fn wants(&self, notice: &Notice) -> bool {
        let on = match notice.change {
            Change::Ban => NotifyOn::Ban,
            Change::Unban => NotifyOn::Unban,
        };
        let source = match notice.ban.source {
            Origin::Log => NotifySource::Log,
            Origin::Manual => NotifySource::Manual,
            Origin::Remote => NotifySource::Remote,
        };
        self.on.contains(&on)
            && self.sources.contains(&source)
            && (self.rules.is_empty() || self.rules.iter().any(|r| *r == notice.ban.rule))
    }
}

/// A receiver as the decision thread sees it: its filter and its queue.
struct Outlet {
    name: String,
    filter: Filter,
    queue: Sender<Notice>,
}

/// The decision thread's side of the notifications: offers notices, never waits.
#[derive(Default)]
pub struct Notifier {
    outlets: Vec<Outlet>,
    workers: Vec<JoinHandle<()>>,
    metrics: Option<Arc<Metrics>>,
}

impl Notifier {
    /// Starts one thread per configured receiver.
    pub fn start(configs: &[NotifyConfig], metrics: &Arc<Metrics>) -> std::io::Result<Notifier> {
        let mut notifier = Notifier {
            metrics: Some(Arc::clone(metrics)),
            ..Notifier::default()
        };
        for config in configs {
            let name = config.display_name();
            let deliver: Box<dyn Deliver> = match (&config.command, &config.url) {
                (Some(argv), _) => Box::new(command::Run::new(
                    argv.clone(),
                    config.stdin.clone(),
                    config.timeout,
                )),
                (None, Some(url)) => {
                    let body = match (&config.json, &config.form) {
                        (Some(json), _) => webhook::Body::Json(json.clone()),
                        (None, Some(form)) => webhook::Body::Form(form.clone()),
                        (None, None) => webhook::Body::Ban,
                    };
                    Box::new(webhook::Post::new(
                        url.clone(),
                        config.headers.clone(),
                        body,
                        config.timeout,
                    ))
                }
                // The configuration's checks refuse an entry with neither.
                (None, None) => continue,
            };
            let (queue, notices) = bounded(config.queue);
            let worker = Worker {
                name: name.clone(),
                deliver,
                retries: config.retries,
                metrics: Arc::clone(metrics),
            };
            notifier.workers.push(
                std::thread::Builder::new()
                    .name(format!("notify {name}"))
                    .spawn(move || worker.run(notices))?,
            );
            notifier.outlets.push(Outlet {
                name,
                filter: Filter {
                    on: config.on.clone(),
                    rules: config.rules.clone(),
                    sources: config.sources.clone(),
                },
                queue,
            });
        }
        Ok(notifier)
    }

    /// Offers a new ban to the receivers that want it.
    pub fn banned(&self, ban: &Ban) {
        self.offer(Change::Ban, ban);
    }

    /// Offers a lifted ban to the receivers that want it.
    pub fn unbanned(&self, ban: &Ban) {
        let mut ban = ban.clone();
        ban.lifted_at.get_or_insert_with(Utc::now);
        self.offer(Change::Unban, &ban);
    }

    /// Offers another server's ban or unban; `known` is the ban as this server applied
    /// it (what an unban event alone does not say).
    pub fn remote(&self, event: &RemoteEvent, known: Option<&NewBan>) {
        if self.outlets.is_empty() {
            return;
        }
        let now = crate::time::start_second(Utc::now());
        match event {
            RemoteEvent::Ban {
                net,
                rule,
                server,
                reason,
                until,
            } => self.offer(
                Change::Ban,
                &Ban {
                    id: 0,
                    new: NewBan {
                        net: *net,
                        rule: rule.clone(),
                        reason: reason.clone(),
                        attempts: 0,
                        server: server.clone(),
                        source: Origin::Remote,
                        banned_at: now,
                        expires_at: *until,
                    },
                    lifted_at: None,
                    lift_reason: None,
                },
            ),
            RemoteEvent::Unban { net, server } => {
                let mut new = known.cloned().unwrap_or_else(|| NewBan {
                    net: *net,
                    rule: String::new(),
                    reason: String::new(),
                    attempts: 0,
                    server: server.clone(),
                    source: Origin::Remote,
                    banned_at: now,
                    expires_at: None,
                });
                new.source = Origin::Remote;
                self.offer(
                    Change::Unban,
                    &Ban {
                        id: 0,
                        new,
                        lifted_at: Some(now),
                        lift_reason: Some(format!("lifted by {server}")),
                    },
                );
            }
        }
    }

    fn offer(&self, change: Change, ban: &Ban) {
        let notice = Notice {
            change,
            ban: ban.clone(),
        };
        for outlet in self.outlets.iter().filter(|o| o.filter.wants(&notice)) {
            match outlet.queue.try_send(notice.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    log::warn!(
                        "notify {}: its queue is full; the notice of {} is dropped",
                        outlet.name,
                        display_net(&ban.net)
                    );
                    if let Some(m) = &self.metrics {
                        m.notified(&outlet.name, Outcome::Dropped.as_str());
                    }
                }
                Err(TrySendError::Disconnected(_)) => {
                    log::error!("notify {}: its thread has stopped", outlet.name)
                }
            }
        }
    }

    /// Closes the queues and gives the receivers a moment to deliver what they hold.
    pub fn stop(mut self) {
        self.outlets.clear();
        let until = Instant::now() + STOP_GRACE;
        while Instant::now() < until && !self.workers.iter().all(JoinHandle::is_finished) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One receiver's thread.
struct Worker {
    name: String,
    deliver: Box<dyn Deliver>,
    retries: u32,
    metrics: Arc<Metrics>,
}

impl Worker {
    fn run(mut self, notices: Receiver<Notice>) {
        for notice in notices {
            self.deliver_with_retries(&notice);
        }
    }

    fn deliver_with_retries(&mut self, notice: &Notice) {
        let what = format!(
            "{} of {}",
            match notice.change {
                Change::Ban => "ban",
                Change::Unban => "unban",
            },
            display_net(&notice.ban.net)
        );
        let mut wait = FIRST_RETRY;
        for tried in 0..=self.retries {
            match self.deliver.deliver(notice) {
                Ok(()) => {
                    log::debug!("notify {}: told of the {what}", self.name);
                    self.metrics.notified(&self.name, Outcome::Sent.as_str());
                    return;
                }
                Err(e) if tried < self.retries => {
                    log::warn!(
                        "notify {}: the {what} was not delivered ({e}); trying again in {}",
                        self.name,
                        crate::duration::format_duration(wait)
                    );
                    self.metrics.notified(&self.name, Outcome::Retried.as_str());
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(LONGEST_RETRY);
                }
                Err(e) => {
                    log::error!(
                        "notify {}: the {what} was not delivered ({e}); given up after {}",
                        self.name,
                        crate::words::count(self.retries + 1, "try", "tries")
                    );
                    self.metrics.notified(&self.name, Outcome::Failed.as_str());
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use chrono::{DateTime, Utc};

    use super::{Change, Notice};
    use crate::ban::{Ban, NewBan, Origin};

    /// A notice of a log ban by sshd on web-1.
    pub fn notice(change: Change, net: &str) -> Notice {
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let lifted = change == Change::Unban;
        Notice {
            change,
            ban: Ban {
                id: 1,
                new: NewBan {
                    net: crate::net::parse_net(net).unwrap(),
                    rule: "sshd".into(),
                    reason: "Failed password for root".into(),
                    attempts: 5,
                    server: "web-1".into(),
                    source: Origin::Log,
                    banned_at: at,
                    expires_at: Some(at + chrono::Duration::hours(1)),
                },
                lifted_at: lifted.then_some(at + chrono::Duration::hours(1)),
                lift_reason: lifted.then(|| "expired".into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::notice;
    use super::*;

    fn config(yaml: &str) -> NotifyConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn filters_pick_changes_rules_and_sources() {
        let filter = |yaml: &str| {
            let c = config(yaml);
            Filter {
                on: c.on,
                rules: c.rules,
                sources: c.sources,
            }
        };
        let ban = notice(Change::Ban, "192.0.2.7");
        let unban = notice(Change::Unban, "192.0.2.7");
        let mut remote = ban.clone();
        remote.ban.new.source = Origin::Remote;
        let default = filter("command: [x]");
        assert!(default.wants(&ban));
        assert!(!default.wants(&unban), "bans only, by default");
        assert!(
            !default.wants(&remote),
            "not the other servers' bans, by default"
        );
        let both = filter("command: [x]\non: [ban, unban]\nsources: [log, remote]");
        assert!(both.wants(&unban) && both.wants(&remote));
        assert!(!filter("command: [x]\nrules: [nginx-http-auth]").wants(&ban));
        assert!(filter("command: [x]\nrules: [nginx-http-auth, sshd]").wants(&ban));
    }

    /// Delivers after `hold` has been released, counting what it delivered.
    struct Held {
        hold: Receiver<()>,
        delivered: Sender<String>,
    }

    impl Deliver for Held {
        fn deliver(&mut self, notice: &Notice) -> Result<(), NotifyError> {
            let _ = self.hold.recv();
            let _ = self.delivered.send(display_net(&notice.ban.net));
            Ok(())
        }
    }

    #[test]
    fn a_stuck_receiver_drops_what_overflows_its_queue_and_never_blocks_the_caller() {
        let metrics = Arc::new(Metrics::default());
        let (release, hold) = bounded(0);
        let (delivered_tx, delivered) = bounded(100);
        let (queue, notices) = bounded(2);
        let worker = Worker {
            name: "stuck".into(),
            deliver: Box::new(Held {
                hold,
                delivered: delivered_tx,
            }),
            retries: 0,
            metrics: Arc::clone(&metrics),
        };
        let handle = std::thread::spawn(move || worker.run(notices));
        let notifier = Notifier {
            outlets: vec![Outlet {
                name: "stuck".into(),
                filter: Filter {
                    on: vec![NotifyOn::Ban],
                    rules: vec![],
                    sources: vec![NotifySource::Log],
                },
                queue,
            }],
            workers: vec![],
            metrics: Some(Arc::clone(&metrics)),
        };
        let started = Instant::now();
        for i in 0..10 {
            notifier.banned(&notice(Change::Ban, &format!("192.0.2.{i}")).ban);
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "offering waited"
        );
        // One held by the thread (perhaps), two queued: the rest dropped.
        let dropped = metrics.notifications("stuck", "dropped");
        assert!((7..=8).contains(&dropped), "{dropped} dropped");
        drop(notifier);
        for _ in 0..10 {
            let _ = release.try_send(());
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(release);
        handle.join().unwrap();
        let got: Vec<String> = delivered.try_iter().collect();
        assert_eq!(got.len() as u64, 10 - dropped);
        assert_eq!(got[0], "192.0.2.0", "oldest first");
        assert_eq!(metrics.notifications("stuck", "sent"), 10 - dropped);
    }

    /// Fails `failures` times, then delivers.
    struct Flaky {
        failures: u32,
        tries: u32,
    }

    impl Deliver for Flaky {
        fn deliver(&mut self, _: &Notice) -> Result<(), NotifyError> {
            self.tries += 1;
            if self.tries <= self.failures {
                Err(NotifyError::Http("the receiver answered HTTP 503".into()))
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn a_failed_delivery_is_tried_again_then_given_up() {
        let metrics = Arc::new(Metrics::default());
        let mut worker = Worker {
            name: "flaky".into(),
            deliver: Box::new(Flaky {
                failures: 1,
                tries: 0,
            }),
            retries: 1,
            metrics: Arc::clone(&metrics),
        };
        let started = Instant::now();
        worker.deliver_with_retries(&notice(Change::Ban, "192.0.2.7"));
        assert!(
            started.elapsed() >= FIRST_RETRY,
            "waited before trying again"
        );
        assert_eq!(metrics.notifications("flaky", "retried"), 1);
        assert_eq!(metrics.notifications("flaky", "sent"), 1);
        worker.deliver = Box::new(Flaky {
            failures: 5,
            tries: 0,
        });
        worker.retries = 0;
        worker.deliver_with_retries(&notice(Change::Ban, "192.0.2.8"));
        assert_eq!(metrics.notifications("flaky", "failed"), 1);
    }
}

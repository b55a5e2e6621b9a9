//! `pyfilter run`: wires the watcher threads, the signal thread and the store watcher to
//! the decision loop, which runs on the main thread and owns the `Engine`. One inotify
//! instance (`source::hub`) serves the log files and the store's directory alike, and
//! lives across reloads.
//!
//! SIGHUP reloads the configuration and rules (a bad new configuration is refused and the
//! old one kept; counters and bans survive). SIGTERM and SIGINT stop cleanly: watchers
//! stop, queued attempts are handled, positions and the metrics' snapshot are saved.
//! With `--metrics ADDR`, Prometheus metrics are served on threads of their own.
//!
//! It loads the configuration itself (`load`): every rule is checked, but only those
//! with something to read are kept compiled, the others compiled again when a log of
//! theirs appears.
//!
//! Once it is loaded, before anything else, it takes the state lock (a second daemon on the same state is
//! refused, named) and listens on the control socket; the decision loop answers its
//! requests between batches of attempts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender, bounded, select};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::config::{ConfigError, StoreKind};
use crate::control::{self, Asked, Paths, StateLock};
use crate::engine::Engine;
use crate::event::{self, EventReceiver, EventSender};
use crate::firewall;
use crate::fleet;
use crate::metrics::{self, Metrics};
use crate::notifier::Notifier;
use crate::rule::Rule;
use crate::settings::Settings;
use crate::source::hub::{Hub, Interest, Subscription};
use crate::source::journal;
use crate::source::plan::{RulePlan, nothing_to_read};
use crate::source::supervisor;
use crate::source::watch::{Compile, WatchContext};
use crate::store::SqliteStore;
use crate::store::figures::Figures;

/// How long a bookkeeping write waits for a locked database.
const BOOKKEEPING_BUSY: Duration = Duration::from_millis(200);

/// Attempts queued between watchers and the decision thread at most.
const EVENT_QUEUE: usize = 16 * 1024;

/// Control requests queued at most (each client waits for its own answer).
const REQUEST_QUEUE: usize = 64;

enum Control {
    Reload,
    Stop(i32),
}

/// The running watchers and the means to stop them.
struct Watchers {
    stop: Option<Sender<()>>,
    handles: Vec<JoinHandle<()>>,
}

impl Watchers {
    fn start(
        settings: &Settings,
        engine: &mut Engine,
        events: &EventSender,
        metrics: &Arc<Metrics>,
        hub: &Hub,
        compile: Option<Compile>,
    ) -> anyhow::Result<Watchers> {
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let ctx = WatchContext {
            events: events.clone(),
            stop: stop_rx,
            max_line: settings.config.max_line_bytes,
            metrics: Arc::clone(metrics),
            hub: hub.clone(),
            poll_interval: settings.config.poll_interval,
            compile,
        };
        let positions = engine.saved_positions()?;
        first_screen(settings);
        engine.forget_sources();
        let specs = supervisor::log_specs(settings.enabled_rules());
        let mut handles = vec![supervisor::spawn_all(specs, &positions, &ctx)];
        handles.extend(journal::spawn_all(
            settings.enabled_rules(),
            &engine.saved_cursors()?,
            &ctx,
        ));
        Ok(Watchers {
            stop: Some(stop_tx),
            handles,
        })
    }

    /// Stops every watcher, handling what they still send meanwhile.
    fn stop(mut self, events: &EventReceiver, engine: &mut Engine) {
        drop(self.stop.take());
        while !self.handles.iter().all(JoinHandle::is_finished) {
            if let Ok(event) = events.recv_timeout(Duration::from_millis(20)) {
                engine.receive(std::iter::once(event).chain(events.try_iter()));
            }
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        engine.drain(events.try_iter());
        engine.flush_positions();
    }
}

/// Runs the daemon until a stop signal. `config_path` is read first, and again on
/// SIGHUP. With `metrics_addr`, Prometheus metrics are served there.
pub fn run(config_path: Option<&Path>, metrics_addr: Option<SocketAddr>) -> anyhow::Result<()> {
    let (mut settings, compile) = load(config_path)?;
    crate::resident::limit_arenas();
    // First: a daemon already at work on this state, or a port already taken, stops
    // this one before it has touched anything.
    let paths = Paths::beside(&settings.config.sqlite.path);
    let _lock = StateLock::for_daemon(&paths.lock)?;
    let (asked_tx, asked) = bounded::<Asked>(REQUEST_QUEUE);
    // Requests made during the restore wait in the channel until the loop runs.
    let _socket = control::listen(&paths.socket, asked_tx)?;
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = metrics_addr {
        let mut figures = Figures::new(&settings);
        let bound = metrics::serve(addr, Arc::clone(&metrics), move |now| figures.summary(now))
            .context("serving --metrics")?;
        log::info!("metrics at http://{bound}/metrics");
    }
    let firewall = firewall::open(&settings.config.firewall)?;
    let mut local = SqliteStore::open(&settings.config.sqlite.path)?;
    // Positions, cursors and counters are bookkeeping, written on the decision thread:
    // while another process holds the database they fail fast and are written later,
    // rather than hold up the bans behind them for the store's ten seconds.
    local.set_busy_timeout(BOOKKEEPING_BUSY)?;
    let store = crate::store::open(&settings)?;
    let mut engine = Engine::new(&settings, firewall, store, local, Arc::clone(&metrics));
    engine.notify(
        Notifier::start(&settings.config.notify, &metrics).context("starting the notifications")?,
    );
    let (events_tx, events) = event::queue(EVENT_QUEUE);
    if settings.config.store == StoreKind::Redis && settings.config.redis.sync {
        // Lives as long as the process: it reconnects by itself. Started before the
        // restore so that, once subscribed, no event is missed while the bans are read.
        fleet::spawn(
            settings.config.redis.clone(),
            settings.config.server_name.clone(),
            events_tx.clone(),
            Arc::clone(&metrics),
        )?;
    }
    let restored = engine
        .restore()
        .context("restoring bans into the firewall")?;
    // The previous run's counters are not this run's: the admin sees them start again.
    engine.save_stats();

    let (control_tx, control) = bounded::<Control>(16);
    spawn_signal_thread(control_tx)?;
    let hub = Hub::new();
    let store = watch_store(
        &hub,
        &settings.config.sqlite.path,
        settings.config.poll_interval,
    );

    let mut watchers = Watchers::start(
        &settings,
        &mut engine,
        &events_tx,
        &metrics,
        &hub,
        Some(compile),
    )?;
    let rules: Vec<&str> = settings.enabled_rules().map(|r| &*r.name).collect();
    log::info!(
        "pyfilter ready: rules {}, firewall {}, store {}, {} restored",
        rules.join(", "),
        settings.config.firewall.backend,
        settings.config.sqlite.path.display(),
        crate::words::counted(restored, "ban")
    );
    keep_needed_rules(&mut settings);
    let shed = crate::resident::shed();
    log::debug!(
        "start-up pages given back: {} KiB of code and constants",
        shed / 1024
    );

    let mut idle = crate::resident::Idle::default();
    loop {
        let wake = [engine.deadline(), idle.due()].into_iter().flatten().min();
        let timeout = wake.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        select! {
            recv(events.ready()) -> event => {
                idle.busy();
                if let Ok(event) = event {
                    events.took();
                    engine.receive(std::iter::once(event).chain(events.try_iter()));
                }
            }
            recv(control) -> msg => match msg {
                Ok(Control::Reload) => {
                    log::info!("SIGHUP: reloading the configuration");
                    match load(config_path) {
                        Ok((new, compile)) => {
                            let (old, fresh) = (&settings.config, &new.config);
                            if fresh.store != old.store || fresh.sqlite != old.sqlite || fresh.redis != old.redis || fresh.max_tracked != old.max_tracked {
                                log::warn!("store, sqlite, redis and max_tracked take effect at the next restart, not on reload");
                            }
                            watchers.stop(&events, &mut engine);
                            if new.config.firewall != settings.config.firewall {
                                let mut old_fw = firewall::open(&settings.config.firewall)?;
                                old_fw.flush()?;
                                let n = engine.replace_firewall(firewall::open(&new.config.firewall)?)?;
                                log::info!("firewall settings changed: {} moved", crate::words::counted(n, "ban"));
                            }
                            engine.configure(&new);
                            if new.config.notify != settings.config.notify {
                                engine.notify(Notifier::start(&new.config.notify, &metrics)?).stop();
                            }
                            settings = new;
                            watchers = Watchers::start(&settings, &mut engine, &events_tx, &metrics, &hub, Some(compile))?;
                            keep_needed_rules(&mut settings);
                            log::info!("configuration reloaded");
                            crate::resident::shed();
                        }
                        Err(e) => log::error!("reload refused, keeping the running configuration: {e}"),
                    }
                }
                Ok(Control::Stop(sig)) => {
                    log::info!("signal {sig}: stopping");
                    watchers.stop(&events, &mut engine);
                    engine.save_stats();
                    engine.notify(Notifier::default()).stop();
                    log::info!("stopped ({} made in this run, {} being counted)", crate::words::counted(engine.bans, "ban"), crate::words::count(engine.tracked(), "address", "addresses"));
                    return Ok(());
                }
                Err(_) => return Ok(()),
            },
            recv(asked) -> asked => {
                idle.busy();
                if let Ok(asked) = asked {
                    engine.inotify = hub.has_instance();
                    let answer = engine.answer(&settings, asked.request.clone());
                    asked.answer(answer);
                }
            }
            recv(store.changed) -> _ => engine.store_changed(),
            recv(store.tick) -> _ => engine.store_changed(),
            default(timeout) => {}
        }
        engine.tick();
        idle.tick(Instant::now());
    }
}

fn spawn_signal_thread(control: Sender<Control>) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let msg = if sig == SIGHUP {
                    Control::Reload
                } else {
                    Control::Stop(sig)
                };
                if control.send(msg).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

/// The configuration the daemon runs, and the compiler of its rules by name, from the
/// same text, for a log that appears.
///
/// Every rule is compiled, so a bad one is refused as `check` refuses it, but only the
/// enabled rules with something to read now are kept compiled: the others are let go one
/// by one as they are checked (`Rule::release`), so the daemon never holds every rule
/// compiled at once, and what it keeps is not scattered through a heap that held them
/// all (most of the daemon's memory is compiled rules). The compiler, likewise, keeps
/// only the rules it is asked for.
fn load(config_path: Option<&Path>) -> Result<(Settings, Compile), ConfigError> {
    let (source, text) = crate::config::read(config_path)?;
    let name = source.name();
    let needed = |r: &Rule| r.enabled && !RulePlan::of(r).reads_nothing();
    let settings = Settings::from_text_keeping(&name, &text, source.clone(), &needed)?;
    let compile: Compile = Arc::new(move |names: &[Arc<str>]| {
        let asked = |r: &Rule| names.contains(&r.name);
        let settings = Settings::from_text_keeping(&name, &text, source.clone(), &asked)
            .map_err(|e| e.to_string())?;
        Ok(settings
            .rules
            .into_iter()
            .filter(asked)
            .map(Arc::new)
            .collect())
    });
    Ok((settings, compile))
}

/// Lets go of the rules that have nothing to read now, and of those let go at the load;
/// the watchers compile a rule again when a log of its appears. The engine took every
/// rule's numbers already.
fn keep_needed_rules(settings: &mut Settings) {
    settings
        .rules
        .retain(|r| r.enabled && r.is_compiled() && !RulePlan::of(r).reads_nothing());
}

/// Says, one line per enabled rule, what it reads now, what it waits for, and warns of a
/// rule that has nothing to read at all (the same words as `check`).
fn first_screen(settings: &Settings) {
    for rule in settings.enabled_rules() {
        let plan = RulePlan::of(rule);
        log::info!("{}", plan.line());
    }
    let idle: Vec<&Rule> = settings
        .enabled_rules()
        .filter(|r| RulePlan::of(r).reads_nothing())
        .collect();
    if let Some(warning) = nothing_to_read(&idle) {
        log::warn!("{warning}");
    }
}

/// How the decision loop hears of the CLI's changes to the store.
struct StoreWatch {
    changed: Receiver<()>,
    /// Where inotify cannot serve the store's directory.
    tick: Receiver<Instant>,
    _sub: Option<Subscription>,
}

/// Watches the database's directory so that bans and unbans other processes record (the
/// admin, `prune`, `import`) reach the firewall, and move the next wake-up, at once. Notifications are coalesced. Where inotify
/// cannot serve it, the store is looked at every `poll_interval` instead (the cause is
/// logged once, by the logs' watchers, which meet it too).
fn watch_store(hub: &Hub, db: &Path, every: Duration) -> StoreWatch {
    let (tx, rx) = bounded::<()>(1);
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    match hub.watch(&dir, Interest::Prefix(name), &tx) {
        (Some(sub), None) => StoreWatch {
            changed: rx,
            tick: crossbeam_channel::never(),
            _sub: Some(sub),
        },
        (sub, why) => {
            log::debug!(
                "{}: changes made by the CLI are looked for every {}: {}",
                dir.display(),
                crate::duration::format_duration(every),
                why.map_or_else(|| "unknown".into(), |w| w.to_string())
            );
            // Ticks coalesce as wake-ups do: a slow loop never finds a backlog.
            StoreWatch {
                changed: rx,
                tick: crossbeam_channel::tick(every),
                _sub: sub,
            }
        }
    }
}

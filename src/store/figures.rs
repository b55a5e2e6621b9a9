//! The store's figures for a metrics scrape: its summary, or `None` with the reason
//! logged when it does not answer (the exposition then says `pyfilter_store_up 0`); and,
//! for the daemon's endpoint, a connection of its own to ask them on.

use chrono::{DateTime, Utc};

use super::{BanStore, StoreError};
use crate::ban::Summary;
use crate::settings::Settings;

/// Asks the store for its summary; `None` (and a log line) when it cannot answer.
pub fn summary(store: &mut dyn BanStore, now: DateTime<Utc>) -> Option<Summary> {
    match store.summary(now) {
        Ok(s) => Some(s),
        // Redis being away is already reported by the daemon, and said by store_up.
        Err(e @ StoreError::Unreachable { .. }) => {
            log::debug!("metrics: {e}");
            None
        }
        Err(e) => {
            log::warn!("metrics: the ban figures are missing: {e}");
            None
        }
    }
}

/// The daemon's figures, from a connection of its own (never the decision thread's),
/// opened at the first question and again after a failure to open: a store away when
/// the daemon starts must not stop it from serving its counters.
pub struct Figures {
    settings: Settings,
    store: Option<Box<dyn BanStore>>,
}

impl Figures {
    pub fn new(settings: &Settings) -> Figures {
        Figures {
            settings: settings.clone(),
            store: None,
        }
    }

    /// The store's summary at `now`, or `None` when it cannot be opened or answer.
    pub fn summary(&mut self, now: DateTime<Utc>) -> Option<Summary> {
        if self.store.is_none() {
            match super::open(&self.settings) {
                Ok(store) => self.store = Some(store),
                Err(e) => {
                    log::warn!("metrics: cannot open the store: {e}");
                    return None;
                }
            }
        }
        summary(self.store.as_mut()?.as_mut(), now)
    }
}

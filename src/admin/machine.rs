//! For programs: `/api/bans` (the objects of `list --json`) and `/metrics` (Prometheus
//! text), both for a bearer token from `admin token` or a signed-in browser.

use chrono::Utc;

use super::{Admin, auth};
use crate::web::{Request, Response};

impl Admin {
    /// Who may read `/api/bans` and `/metrics`: a bearer token from `admin token`, or a
    /// signed-in browser.
    pub(super) fn machine_access(&mut self, req: &Request) -> anyhow::Result<bool> {
        if let Some(token) = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
        {
            return Ok(self.store.token(&auth::digest(token.trim()))?.is_some());
        }
        Ok(self.session(req)?.is_some())
    }

    pub(super) fn api_bans(&mut self, req: &Request) -> anyhow::Result<Response> {
        if !self.machine_access(req)? {
            return Ok(Response::json(
                401,
                "{\"error\":\"a bearer token from `pyfilter admin token` is needed\"}\n",
            )
            .with("WWW-Authenticate", "Bearer"));
        }
        let all = req
            .query_param("all")
            .is_some_and(|v| v == "1" || v == "true");
        let mut bans = if all {
            self.store.all_bans()?
        } else {
            self.store.active_bans()?
        };
        crate::ban::mark_remote(&self.settings.config, &mut bans);
        let json: Vec<_> = bans.iter().map(crate::ban::Ban::to_json).collect();
        Ok(Response::json(200, serde_json::to_vec(&json)?))
    }

    pub(super) fn metrics(&mut self, req: &Request) -> anyhow::Result<Response> {
        if !self.machine_access(req)? {
            return Ok(Response::text(
                401,
                "a bearer token from `pyfilter admin token` is needed\n",
            )
            .with("WWW-Authenticate", "Bearer"));
        }
        let saved = self.local.stats()?;
        let summary = crate::store::figures::summary(self.store.as_mut(), Utc::now());
        let mut text = String::new();
        crate::metrics::render_saved(&mut text, &saved, summary.as_ref());
        Ok(Response::new(200, crate::metrics::CONTENT_TYPE, text))
    }
}

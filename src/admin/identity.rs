//! Who is asking: sign-in (CSRF cookie, rate limit, constant-time refusal, the admin
//! log), the session behind each request, and password changes, which end every
//! session of the user.

use std::net::IpAddr;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::html::Viewer;
use super::{Admin, LOGIN_COOKIE, SESSION_COOKIE, Signed, auth, cookie, csrf_refused, pages};
use crate::store::User;
use crate::web::{Request, Response};

impl Admin {
    /// The request's live session: a session whose user was removed or whose password
    /// changed since sign-in is over.
    pub(super) fn session(&mut self, req: &Request) -> anyhow::Result<Option<Signed>> {
        let Some(id) = req.cookie(SESSION_COOKIE) else {
            return Ok(None);
        };
        let Some(s) = self.sessions.get(id, Instant::now()) else {
            return Ok(None);
        };
        let (user, csrf, stamp) = (s.user.clone(), s.csrf.clone(), s.stamp);
        let current = self.store.user(&user)?;
        if current.is_none_or(|u| u.changed_at != stamp) {
            self.sessions.end(id);
            return Ok(None);
        }
        Ok(Some(Signed {
            id: id.to_string(),
            user,
            csrf,
        }))
    }

    /// The sign-in form. Its CSRF token is the browser's login cookie when it has one:
    /// a new token per page would void a form already open in another tab, or the one on
    /// screen when the browser fetches something else that ends on this page.
    pub(super) fn sign_in_page(
        &self,
        req: &Request,
        error: Option<&str>,
        status: u16,
        secure: bool,
    ) -> anyhow::Result<Response> {
        let token = match req.cookie(LOGIN_COOKIE).filter(|t| auth::is_token(t)) {
            Some(t) => t.to_string(),
            None => auth::token()?,
        };
        Ok(Response::html(status, pages::sign_in(&token, error)).with(
            "Set-Cookie",
            &cookie(LOGIN_COOKIE, &token, "/login", secure, true),
        ))
    }

    pub(super) fn sign_in(
        &mut self,
        req: &Request,
        client: IpAddr,
        secure: bool,
    ) -> anyhow::Result<Response> {
        let expected = req.cookie(LOGIN_COOKIE).unwrap_or("");
        if expected.is_empty() || !req.form("csrf").is_some_and(|t| auth::same(&t, expected)) {
            return Ok(csrf_refused());
        }
        let name = req.form("user").unwrap_or_default();
        let password = req.form("password").unwrap_or_default();
        let now = Instant::now();
        if let Some(wait) = self.limiter.blocked(client, now) {
            self.audit.failed_sign_in(client, &name);
            let secs = wait.as_secs().max(1);
            return Ok(self
                .sign_in_page(
                    req,
                    Some(&format!(
                        "Too many failed sign-ins from your address; try again in {} min.",
                        secs.div_ceil(60)
                    )),
                    429,
                    secure,
                )?
                .with("Retry-After", &secs.to_string()));
        }
        let user = self.store.user(&name)?;
        if !self.verifier.verify(user.as_ref(), &password) {
            self.limiter.failed(client, now);
            self.audit.failed_sign_in(client, &name);
            return self.sign_in_page(req, Some("Wrong user name or password."), 401, secure);
        }
        let user = user.context("verified above")?;
        self.limiter.succeeded(client);
        let id = auth::token()?;
        self.sessions
            .create(id.clone(), &user.name, auth::token()?, user.changed_at, now);
        self.audit.event(client, &user.name, "signed in");
        Ok(Response::redirect("/")
            .with(
                "Set-Cookie",
                &cookie(SESSION_COOKIE, &id, "/", secure, true),
            )
            .with(
                "Set-Cookie",
                &cookie(LOGIN_COOKIE, "", "/login", secure, false),
            ))
    }

    pub(super) fn change_password(
        &mut self,
        viewer: &Viewer,
        req: &Request,
        client: IpAddr,
        secure: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Response> {
        let current = req.form("current").unwrap_or_default();
        let new = req.form("new").unwrap_or_default();
        let user = self.store.user(viewer.user)?;
        if !self.verifier.verify(user.as_ref(), &current) {
            self.audit.event(
                client,
                viewer.user,
                "password change refused (wrong current password)",
            );
            return Ok(Response::html(
                400,
                pages::password_form(viewer, Some("The current password is wrong.")),
            ));
        }
        if req.form("confirm").unwrap_or_default() != new {
            return Ok(Response::html(
                400,
                pages::password_form(viewer, Some("The two new passwords differ.")),
            ));
        }
        let hash = match auth::hash(&new) {
            Ok(h) => h,
            Err(e) => {
                return Ok(Response::html(
                    400,
                    pages::password_form(viewer, Some(&e.to_string())),
                ));
            }
        };
        let user = user.context("verified above")?;
        self.store
            .set_user(&User::with_password(&user.name, hash, Some(&user), now))?;
        self.sessions.end_user(&user.name);
        self.audit.event(client, &user.name, "password changed");
        Ok(Response::redirect("/login")
            .with("Set-Cookie", &cookie(SESSION_COOKIE, "", "/", secure, true)))
    }
}

//! A notification as an HTTP(S) POST to a webhook: the ban's JSON (as `list --json`
//! prints it), or a JSON or form body made from a template, with the configured headers,
//! over a synchronous client with one timeout for the whole exchange.

use std::collections::BTreeMap;
use std::time::Duration;

use super::template::Fields;
use super::{Deliver, Notice, NotifyError};

/// What is sent.
pub enum Body {
    /// The ban's JSON.
    Ban,
    Json(serde_json::Value),
    Form(BTreeMap<String, String>),
}

pub struct Post {
    agent: ureq::Agent,
    url: String,
    headers: BTreeMap<String, String>,
    body: Body,
}

impl Post {
    pub fn new(
        url: String,
        headers: BTreeMap<String, String>,
        body: Body,
        timeout: Duration,
    ) -> Post {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(true)
            .user_agent(concat!("pyfilter/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Post {
            agent,
            url,
            headers,
            body,
        }
    }
}

impl Deliver for Post {
    fn deliver(&mut self, notice: &Notice) -> Result<(), NotifyError> {
        let mut request = self.agent.post(&self.url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let fields = Fields::of(notice);
        let sent = match &self.body {
            Body::Ban => request
                .content_type("application/json")
                .send(notice.json().to_string()),
            Body::Json(template) => request
                .content_type("application/json")
                .send(fields.render_json(template).to_string()),
            Body::Form(form) => request.send_form(
                form.iter()
                    .map(|(k, v)| (k.as_str(), fields.render(v)))
                    .collect::<Vec<_>>(),
            ),
        };
        match sent {
            Ok(_) => Ok(()),
            Err(ureq::Error::StatusCode(code)) => Err(NotifyError::Http(format!(
                "the receiver answered HTTP {code}"
            ))),
            Err(e) => Err(NotifyError::Http(e.to_string())),
        }
    }
}

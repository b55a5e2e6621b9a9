//! The control socket's protocol: one JSON request per line, one JSON answer per line.
//!
//! ```text
//! {"request":"ban","ip":"192.0.2.1","for":"1h","reason":"scanner"}
//! {"ok":true,"ban":{"outcome":"banned","ip":"192.0.2.1","rule":"manual","banned_at":"...","expires_at":"...","queued":false}}
//! {"request":"unban","ip":"192.0.2.1"}
//! {"ok":true,"unban":{"ip":"192.0.2.1","was_banned":true}}
//! {"request":"flush"}
//! {"ok":true,"flush":{"firewall":"iptables"}}
//! {"request":"show","ip":"192.0.2.1"}
//! {"ok":true,"show":{"in_firewall":["192.0.2.1/32"],"counts":[{"rule":"sshd","attempts":2,"last":"..."}]}}
//! {"request":"status"}
//! {"ok":true,"status":{"pid":4242,"version":"0.1.0","started_at":"...","uptime_secs":61,...}}
//! {"ok":false,"error":{"kind":"usage","message":"..."}}
//! ```
//!
//! Readers ignore fields they do not know and default those that are missing, so an
//! answer (above all `status`) grows by fields without breaking an older client.

use serde::{Deserialize, Serialize};

use crate::ban::Ban;
use crate::net::display_net;
use crate::time::rfc3339;

/// What a client asks the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Ban an address or block now, as `pyfilter ban` does.
    Ban {
        ip: String,
        /// How long (`30m`, `7d`, `forever`); the configured `ban_time` when absent.
        #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
        duration: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Lift the ban of an address or block.
    Unban { ip: String },
    /// Remove pyfilter's chain, sets or table from the firewall.
    Flush,
    /// What the daemon is and holds.
    Status,
    /// What the daemon knows of one address or block now: the bans of it its firewall
    /// holds, and its live counts.
    Show { ip: String },
}

/// The daemon's answer to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Refusal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban: Option<BanAnswer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unban: Option<UnbanAnswer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush: Option<FlushAnswer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show: Option<ShowAnswer>,
}

/// The daemon's part of `pyfilter show`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowAnswer {
    /// The networks the firewall holds that cover the address (or are the block asked).
    #[serde(default)]
    pub in_firewall: Vec<String>,
    /// The address's live counts, per rule.
    #[serde(default)]
    pub counts: Vec<CountNow>,
}

/// One rule's count of an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountNow {
    pub rule: String,
    pub attempts: u32,
    /// When the latest attempt counted was written (RFC 3339).
    pub last: String,
}

impl Answer {
    pub fn refused(kind: RefusalKind, message: impl Into<String>) -> Answer {
        Answer {
            ok: false,
            error: Some(Refusal {
                kind,
                message: message.into(),
            }),
            ..Answer::default()
        }
    }

    pub fn ban(ban: BanAnswer) -> Answer {
        Answer {
            ok: true,
            ban: Some(ban),
            ..Answer::default()
        }
    }

    pub fn unban(unban: UnbanAnswer) -> Answer {
        Answer {
            ok: true,
            unban: Some(unban),
            ..Answer::default()
        }
    }

    pub fn flush(flush: FlushAnswer) -> Answer {
        Answer {
            ok: true,
            flush: Some(flush),
            ..Answer::default()
        }
    }

    pub fn show(show: ShowAnswer) -> Answer {
        Answer {
            ok: true,
            show: Some(show),
            ..Answer::default()
        }
    }

    pub fn status(status: Status) -> Answer {
        Answer {
            ok: true,
            status: Some(status),
            ..Answer::default()
        }
    }
}

/// Why a request was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

/// Whose fault a refusal is: the asker's (exit 2) or the daemon's circumstances (exit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// A malformed request, address or duration, an ignored address.
    Usage,
    /// The firewall or the store failed, or the daemon is stopping.
    Failure,
}

/// What a ban did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanAnswer {
    pub outcome: BanOutcome,
    /// The address or block, as people write it.
    pub ip: String,
    /// The rule of the ban in force (`manual`, or the rule of an earlier ban).
    pub rule: String,
    /// RFC 3339.
    pub banned_at: String,
    /// RFC 3339; `None`: forever.
    pub expires_at: Option<String>,
    /// Recorded in the outbox: Redis was unreachable.
    #[serde(default)]
    pub queued: bool,
}

impl BanAnswer {
    /// The answer about `ban`, the ban now in force.
    pub fn of(outcome: BanOutcome, ban: &Ban, queued: bool) -> BanAnswer {
        BanAnswer {
            outcome,
            ip: display_net(&ban.net),
            rule: ban.rule.clone(),
            banned_at: rfc3339(ban.banned_at),
            expires_at: ban.expires_at.map(rfc3339),
            queued,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BanOutcome {
    Banned,
    AlreadyBanned,
}

/// What an unban did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnbanAnswer {
    pub ip: String,
    pub was_banned: bool,
}

/// What a flush did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushAnswer {
    /// The backend's name.
    pub firewall: String,
}

/// The running daemon as it describes itself. Grows by fields: every one defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    pub pid: u32,
    pub version: String,
    /// RFC 3339.
    pub started_at: String,
    pub uptime_secs: u64,
    /// Bans this daemon holds in the firewall.
    pub bans_active: usize,
    /// (rule, address) counters held.
    pub addresses_counted: usize,
    /// Bans made from the logs since the start.
    pub bans_made: u64,
    /// The firewall backend (`iptables`, `ipset`, `nftables`, `none`).
    pub firewall: String,
    /// `sqlite` or `redis`.
    pub store: String,
    /// The SQLite file, or the Redis URL without its password.
    pub store_location: String,
    /// The link to the fleet's Redis (`up`, `down`, `connecting`); absent without sync.
    pub fleet: Option<String>,
    /// Whether the daemon has its inotify instance (without it, every log is polled).
    pub inotify: bool,
    /// Every log source and its state.
    pub sources: Vec<crate::status::SourceStatus>,
}

/// Longest request line read, in bytes: a ban's reason is the largest field.
pub const MAX_LINE: usize = 64 * 1024;

/// Reads one request line; `Err` is the message the asker is answered with.
pub fn parse_request(line: &str) -> Result<Request, String> {
    serde_json::from_str(line.trim()).map_err(|e| format!("unreadable request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_documented() {
        assert_eq!(
            parse_request(r#"{"request":"ban","ip":"192.0.2.1","for":"1h"}"#).unwrap(),
            Request::Ban {
                ip: "192.0.2.1".into(),
                duration: Some("1h".into()),
                reason: None
            }
        );
        assert_eq!(
            parse_request(r#"{"request":"status"}"#).unwrap(),
            Request::Status
        );
        assert!(parse_request(r#"{"request":"reboot"}"#).is_err());
        assert!(parse_request("{").is_err());
    }

    #[test]
    fn a_status_with_fields_unknown_to_the_reader_still_reads() {
        let text =
            r#"{"ok":true,"status":{"pid":7,"sources":[{"path":"/var/log/auth.log"}]},"later":1}"#;
        let answer: Answer = serde_json::from_str(text).unwrap();
        assert_eq!(answer.status.unwrap().pid, 7);
    }

    #[test]
    fn answers_round_trip() {
        let a = Answer::refused(RefusalKind::Usage, "bad address");
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(
            text,
            r#"{"ok":false,"error":{"kind":"usage","message":"bad address"}}"#
        );
        assert_eq!(serde_json::from_str::<Answer>(&text).unwrap(), a);
    }
}

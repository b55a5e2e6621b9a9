//! Delivery of the outbox: bans and unbans queued in the local SQLite file while Redis
//! was away, delivered in order, exactly once, when it is back; and the JSON they are
//! queued as.

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use super::RedisStore;
use crate::ban::NewBan;
use crate::store::StoreError;

impl RedisStore {
    /// Queues a ban for when Redis is back.
    pub(super) fn queue_ban(&mut self, ban: &NewBan) -> Result<(), StoreError> {
        self.outbox.outbox_push("ban", &ban_to_json(ban))
    }

    /// Queues an unban for when Redis is back.
    pub(super) fn queue_unban(
        &mut self,
        net: &IpNet,
        at: DateTime<Utc>,
        why: &str,
    ) -> Result<(), StoreError> {
        self.outbox
            .outbox_push("unban", &unban_to_json(net, at, why))
    }

    /// Delivers the outbox, oldest first; stops (keeping the rest) at the first failure.
    /// Returns how many operations were delivered.
    pub(super) fn deliver_outbox(&mut self) -> Result<usize, StoreError> {
        let mut delivered = 0;
        for (seq, op, payload) in self.outbox.outbox()? {
            match op.as_str() {
                "ban" => match ban_from_json(&payload) {
                    Some(ban) => {
                        self.record_one(&ban)?;
                    }
                    None => log::error!("outbox entry {seq} is not a ban, dropped: {payload}"),
                },
                "unban" => match unban_from_json(&payload) {
                    Some((net, at, why)) => {
                        self.lift_one(&net, at, &why)?;
                    }
                    None => log::error!("outbox entry {seq} is not an unban, dropped: {payload}"),
                },
                other => log::error!("outbox entry {seq} has unknown kind {other}, dropped"),
            }
            self.outbox.outbox_remove(seq)?;
            delivered += 1;
        }
        Ok(delivered)
    }

    /// Whether the outbox is empty, delivering it first when it is not. Queued operations
    /// go before new ones, so the fleet sees them in order; `false` means Redis is away
    /// (or still refusing), so new operations queue behind them.
    pub(super) fn outbox_delivered(&mut self) -> Result<bool, StoreError> {
        Ok(self.outbox_len()? == 0 || self.deliver_outbox().is_ok())
    }

    /// How many operations wait in the outbox.
    pub fn outbox_len(&self) -> Result<usize, StoreError> {
        Ok(self.outbox.outbox()?.len())
    }
}

fn ban_to_json(ban: &NewBan) -> String {
    serde_json::json!({
        "net": ban.net.to_string(),
        "rule": ban.rule,
        "reason": ban.reason,
        "attempts": ban.attempts,
        "server": ban.server,
        "source": ban.source.as_str(),
        "banned_at": crate::time::to_second(ban.banned_at).timestamp(),
        "expires_at": ban.expires_at.map(|t| crate::time::to_second(t).timestamp()),
    })
    .to_string()
}

fn ban_from_json(text: &str) -> Option<NewBan> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(NewBan {
        net: v["net"].as_str()?.parse().ok()?,
        rule: v["rule"].as_str()?.to_string(),
        reason: v["reason"].as_str()?.to_string(),
        attempts: u32::try_from(v["attempts"].as_u64()?).ok()?,
        server: v["server"].as_str()?.to_string(),
        source: v["source"].as_str()?.parse().ok()?,
        banned_at: DateTime::from_timestamp(v["banned_at"].as_i64()?, 0)?,
        expires_at: match &v["expires_at"] {
            serde_json::Value::Null => None,
            t => Some(DateTime::from_timestamp(t.as_i64()?, 0)?),
        },
    })
}

fn unban_to_json(net: &IpNet, at: DateTime<Utc>, why: &str) -> String {
    serde_json::json!({ "net": net.to_string(), "at": at.timestamp(), "why": why }).to_string()
}

fn unban_from_json(text: &str) -> Option<(IpNet, DateTime<Utc>, String)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    Some((
        v["net"].as_str()?.parse().ok()?,
        DateTime::from_timestamp(v["at"].as_i64()?, 0)?,
        v["why"].as_str()?.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::Origin;

    #[test]
    fn outbox_payloads_round_trip() {
        let ban = NewBan {
            net: "192.0.2.0/24".parse().unwrap(),
            rule: "sshd".into(),
            reason: "a \"quoted\" line".into(),
            attempts: 5,
            server: "web-1".into(),
            source: Origin::Log,
            banned_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            expires_at: None,
        };
        assert_eq!(ban_from_json(&ban_to_json(&ban)), Some(ban));
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let net: IpNet = "2001:db8::1/128".parse().unwrap();
        assert_eq!(
            unban_from_json(&unban_to_json(&net, at, "by hand")),
            Some((net, at, "by hand".to_string()))
        );
    }
}

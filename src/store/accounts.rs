//! The admin's accounts: users with their argon2id password hashes, and the API tokens
//! (kept as SHA-256 digests: a token is random and long, so a fast digest suffices and
//! the store never holds one that works).
//!
//! They live beside the bans: in the SQLite file on one server, under the key prefix in
//! Redis for a fleet, where every server's admin then knows the same users.

use super::{RedisStore, StoreError};
use chrono::{DateTime, Utc};

/// An admin user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// The PHC string (`$argon2id$v=19$...`).
    pub hash: String,
    /// When the password was last set: a session begun before is void.
    pub changed_at: DateTime<Utc>,
}

impl User {
    /// `name` with a new password hash. Its `changed_at` is later than the previous
    /// one's even within one second (times are kept to the second), so that every
    /// session begun under the old password is void.
    pub fn with_password(
        name: &str,
        hash: String,
        previous: Option<&User>,
        now: DateTime<Utc>,
    ) -> User {
        let now = time(now.timestamp());
        User {
            name: name.to_string(),
            hash,
            changed_at: previous.map_or(now, |p| {
                now.max(p.changed_at + chrono::Duration::seconds(1))
            }),
        }
    }
}

/// Users and tokens.
pub trait Accounts: Send {
    fn user(&mut self, name: &str) -> Result<Option<User>, StoreError>;
    /// Creates or replaces a user; returns whether it is new.
    fn set_user(&mut self, user: &User) -> Result<bool, StoreError>;
    fn user_count(&mut self) -> Result<usize, StoreError>;
    /// The name a token was created for.
    fn token(&mut self, digest: &str) -> Result<Option<String>, StoreError>;
    fn add_token(&mut self, digest: &str, name: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Every user, by name.
    fn users(&mut self) -> Result<Vec<User>, StoreError>;
    /// Removes a user; returns whether it existed. Its sessions end at their next request.
    fn delete_user(&mut self, name: &str) -> Result<bool, StoreError>;
    /// The names tokens were created for, one entry per token, sorted.
    fn token_names(&mut self) -> Result<Vec<String>, StoreError>;
    /// Revokes every token created under `name`; returns how many.
    fn revoke_tokens(&mut self, name: &str) -> Result<usize, StoreError>;
}

pub(super) fn time(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// Users are the hash `admin:users` (name → `changed_at hash`); tokens the hash
/// `admin:tokens` (digest → name).
impl Accounts for RedisStore {
    fn user(&mut self, name: &str) -> Result<Option<User>, StoreError> {
        let key = self.key("admin:users");
        let value: Option<String> =
            self.with(|c| ::redis::cmd("HGET").arg(&key).arg(name).query(c))?;
        Ok(value.and_then(|v| {
            let (at, hash) = v.split_once(' ')?;
            Some(User {
                name: name.to_string(),
                hash: hash.to_string(),
                changed_at: time(at.parse().ok()?),
            })
        }))
    }

    fn set_user(&mut self, user: &User) -> Result<bool, StoreError> {
        let key = self.key("admin:users");
        let value = format!("{} {}", user.changed_at.timestamp(), user.hash);
        let added: i64 = self.with(|c| {
            ::redis::cmd("HSET")
                .arg(&key)
                .arg(&user.name)
                .arg(&value)
                .query(c)
        })?;
        Ok(added == 1)
    }

    fn user_count(&mut self) -> Result<usize, StoreError> {
        let key = self.key("admin:users");
        self.with(|c| ::redis::cmd("HLEN").arg(&key).query(c))
    }

    fn token(&mut self, digest: &str) -> Result<Option<String>, StoreError> {
        let key = self.key("admin:tokens");
        self.with(|c| ::redis::cmd("HGET").arg(&key).arg(digest).query(c))
    }

    fn add_token(
        &mut self,
        digest: &str,
        name: &str,
        _at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let key = self.key("admin:tokens");
        self.with(|c| {
            ::redis::cmd("HSET")
                .arg(&key)
                .arg(digest)
                .arg(name)
                .query::<i64>(c)
        })
        .map(|_| ())
    }

    fn users(&mut self) -> Result<Vec<User>, StoreError> {
        let key = self.key("admin:users");
        let all: std::collections::BTreeMap<String, String> =
            self.with(|c| ::redis::cmd("HGETALL").arg(&key).query(c))?;
        Ok(all
            .into_iter()
            .filter_map(|(name, v)| {
                let (at, hash) = v.split_once(' ')?;
                Some(User {
                    name,
                    hash: hash.to_string(),
                    changed_at: time(at.parse().ok()?),
                })
            })
            .collect())
    }

    fn delete_user(&mut self, name: &str) -> Result<bool, StoreError> {
        let key = self.key("admin:users");
        let n: i64 = self.with(|c| ::redis::cmd("HDEL").arg(&key).arg(name).query(c))?;
        Ok(n > 0)
    }

    fn token_names(&mut self) -> Result<Vec<String>, StoreError> {
        let key = self.key("admin:tokens");
        let mut names: Vec<String> = self.with(|c| ::redis::cmd("HVALS").arg(&key).query(c))?;
        names.sort();
        Ok(names)
    }

    fn revoke_tokens(&mut self, name: &str) -> Result<usize, StoreError> {
        let key = self.key("admin:tokens");
        let all: std::collections::HashMap<String, String> =
            self.with(|c| ::redis::cmd("HGETALL").arg(&key).query(c))?;
        let digests: Vec<&String> = all
            .iter()
            .filter(|(_, n)| *n == name)
            .map(|(d, _)| d)
            .collect();
        if digests.is_empty() {
            return Ok(0);
        }
        self.with(|c| ::redis::cmd("HDEL").arg(&key).arg(&digests).query::<i64>(c))
            .map(|n| n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_password_is_stamped_later_than_the_old_even_within_the_second() {
        let now = Utc::now();
        let first = User::with_password("a", "h1".into(), None, now);
        assert_eq!(first.changed_at.timestamp(), now.timestamp());
        let second = User::with_password("a", "h2".into(), Some(&first), now);
        assert!(second.changed_at > first.changed_at);
        let later = now + chrono::Duration::hours(1);
        let third = User::with_password("a", "h3".into(), Some(&second), later);
        assert_eq!(third.changed_at.timestamp(), later.timestamp());
    }
}

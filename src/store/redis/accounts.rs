//! The admin's accounts in Redis, under the key prefix, so every server of a fleet knows
//! the same users.

use chrono::{DateTime, Utc};

use super::RedisStore;
use crate::store::StoreError;
use crate::store::accounts::{Accounts, User, time};

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

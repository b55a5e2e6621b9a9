//! The admin's accounts: users with their argon2id password hashes, and the API tokens
//! (kept as SHA-256 digests: a token is random and long, so a fast digest suffices and
//! the store never holds one that works).
//!
//! They live beside the bans: in the SQLite file on one server, under the key prefix in
//! Redis for a fleet, where every server's admin then knows the same users.

use chrono::{DateTime, Utc};

use super::StoreError;

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
                now.max(crate::duration::after(
                    p.changed_at,
                    std::time::Duration::from_secs(1),
                ))
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

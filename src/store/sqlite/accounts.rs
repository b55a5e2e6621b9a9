//! The admin's accounts in SQLite: users (`admin_users`) and API token digests
//! (`admin_tokens`).

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::accounts::{Accounts, User, time};

impl Accounts for SqliteStore {
    fn user(&mut self, name: &str) -> Result<Option<User>, StoreError> {
        self.conn
            .query_row(
                "SELECT name, hash, changed_at FROM admin_users WHERE name = ?1",
                params![name],
                |r| {
                    Ok(User {
                        name: r.get(0)?,
                        hash: r.get(1)?,
                        changed_at: time(r.get(2)?),
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    fn set_user(&mut self, user: &User) -> Result<bool, StoreError> {
        let existed = self.user(&user.name)?.is_some();
        self.conn
            .execute(
                "INSERT INTO admin_users (name, hash, changed_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, changed_at = excluded.changed_at",
                params![user.name, user.hash, user.changed_at.timestamp()],
            )
            .map_err(|e| self.err(e))?;
        Ok(!existed)
    }

    fn user_count(&mut self) -> Result<usize, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM admin_users", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as usize)
            .map_err(|e| self.err(e))
    }

    fn token(&mut self, digest: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT name FROM admin_tokens WHERE digest = ?1",
                params![digest],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    fn add_token(&mut self, digest: &str, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO admin_tokens (digest, name, created_at) VALUES (?1, ?2, ?3)",
                params![digest, name, at.timestamp()],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn users(&mut self) -> Result<Vec<User>, StoreError> {
        let err = |e| self.err(e);
        let mut stmt = self
            .conn
            .prepare("SELECT name, hash, changed_at FROM admin_users ORDER BY name")
            .map_err(err)?;
        stmt.query_map([], |r| {
            Ok(User {
                name: r.get(0)?,
                hash: r.get(1)?,
                changed_at: time(r.get(2)?),
            })
        })
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)
    }

    fn delete_user(&mut self, name: &str) -> Result<bool, StoreError> {
        self.conn
            .execute("DELETE FROM admin_users WHERE name = ?1", params![name])
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    fn token_names(&mut self) -> Result<Vec<String>, StoreError> {
        let err = |e| self.err(e);
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM admin_tokens ORDER BY name, created_at")
            .map_err(err)?;
        stmt.query_map([], |r| r.get(0))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    fn revoke_tokens(&mut self, name: &str) -> Result<usize, StoreError> {
        self.conn
            .execute("DELETE FROM admin_tokens WHERE name = ?1", params![name])
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_users_are_created_then_replaced_and_tokens_found_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("db")).unwrap();
        assert_eq!(store.user_count().unwrap(), 0);
        let mut user = User {
            name: "alice".into(),
            hash: "$argon2id$one".into(),
            changed_at: time(1000),
        };
        assert!(store.set_user(&user).unwrap());
        user.hash = "$argon2id$two".into();
        user.changed_at = time(2000);
        assert!(!store.set_user(&user).unwrap());
        assert_eq!(store.user("alice").unwrap(), Some(user));
        assert_eq!(store.user("bob").unwrap(), None);
        assert_eq!(store.user_count().unwrap(), 1);
        store.add_token("d1", "grafana", time(3000)).unwrap();
        assert_eq!(store.token("d1").unwrap().as_deref(), Some("grafana"));
        assert_eq!(store.token("d2").unwrap(), None);
        store.add_token("d3", "grafana", time(3001)).unwrap();
        store.add_token("d4", "backup", time(3002)).unwrap();
        assert_eq!(
            store.token_names().unwrap(),
            ["backup", "grafana", "grafana"]
        );
        assert_eq!(store.revoke_tokens("grafana").unwrap(), 2);
        assert_eq!(store.token("d1").unwrap(), None);
        assert_eq!(store.token("d4").unwrap().as_deref(), Some("backup"));
        assert_eq!(store.users().unwrap().len(), 1);
        assert!(store.delete_user("alice").unwrap());
        assert!(!store.delete_user("alice").unwrap());
        assert_eq!(store.user_count().unwrap(), 0);
    }
}

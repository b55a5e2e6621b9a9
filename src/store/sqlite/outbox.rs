//! The outbox of a Redis store: bans and unbans made while Redis was away, kept in the
//! local file in order until they are delivered (see `store::redis`).

use chrono::Utc;
use rusqlite::params;

use super::SqliteStore;
use crate::store::StoreError;

impl SqliteStore {
    /// Queues an operation for Redis (see `store::redis`).
    pub fn outbox_push(&mut self, op: &str, payload: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO outbox (op, payload, queued_at) VALUES (?1, ?2, ?3)",
                params![op, payload, Utc::now().timestamp()],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The queued operations, oldest first: (sequence number, op, payload).
    pub fn outbox(&self) -> Result<Vec<(i64, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, op, payload FROM outbox ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Removes one delivered operation.
    pub fn outbox_remove(&mut self, seq: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM outbox WHERE seq = ?1", params![seq])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

//! The metadata leader's lease in PostgreSQL (table `metadata_leader`, one row).
//!
//! Guarantees:
//! - At most one process holds a given epoch: a takeover raises the epoch in the same
//!   statement that checks the previous lease expired (by the database's clock).
//! - A renewal only extends the lease of the (holder, epoch) that is current; a deposed
//!   leader's renewal changes nothing and tells it so.
//! - Every statement here waits at most [`LOCK_WAIT`] for the lease row, so a takeover is
//!   not stuck behind a stopped leader's open transaction (whose session the server ends
//!   after its `idle_in_transaction_session_timeout`).

use std::time::Duration;

use super::error::PgError;
use super::{execute, query, PostgresStore};
use crate::leadership::{LeaseRecord, LeaseStore};
use crate::store::StoreError;

/// Longest wait for the lease row's lock.
const LOCK_WAIT: &str = "1s";

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl LeaseStore for PostgresStore {
    async fn try_acquire(
        &self,
        holder: &str,
        address: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(PgError::from)?;
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
            .await
            .map_err(PgError::from)?;
        let rows = query(
            &tx,
            "UPDATE metadata_leader
             SET epoch = epoch + 1, holder = $1, address = $2, acquired_at = now(),
                 expires_at = now() + $3 * interval '1 millisecond'
             WHERE id = 1 AND expires_at < now()
             RETURNING epoch",
            &[&holder, &address, &(millis(ttl) as f64)],
        )
        .await?;
        tx.commit().await.map_err(PgError::from)?;
        Ok(match rows.first() {
            Some(row) => Some(row.try_get(0).map_err(PgError::from)?),
            None => None,
        })
    }

    async fn renew(&self, holder: &str, epoch: i64, ttl: Duration) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(PgError::from)?;
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
            .await
            .map_err(PgError::from)?;
        let renewed = execute(
            &tx,
            "UPDATE metadata_leader SET expires_at = now() + $3 * interval '1 millisecond'
             WHERE id = 1 AND holder = $1 AND epoch = $2",
            &[&holder, &epoch, &(millis(ttl) as f64)],
        )
        .await?;
        tx.commit().await.map_err(PgError::from)?;
        Ok(renewed == 1)
    }

    async fn release(&self, holder: &str, epoch: i64) -> Result<(), StoreError> {
        let client = self.client().await?;
        execute(
            &client,
            "UPDATE metadata_leader SET expires_at = '-infinity'
             WHERE id = 1 AND holder = $1 AND epoch = $2",
            &[&holder, &epoch],
        )
        .await?;
        Ok(())
    }

    async fn current(&self) -> Result<LeaseRecord, StoreError> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT epoch, holder, address,
                    CASE WHEN expires_at = '-infinity' THEN NULL
                         ELSE (extract(epoch FROM (expires_at - now())) * 1000)::float8 END
             FROM metadata_leader WHERE id = 1",
            &[],
        )
        .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Database("the metadata_leader row is missing".into()))?;
        let expires_in_ms: Option<f64> = row.try_get(3).map_err(PgError::from)?;
        Ok(LeaseRecord {
            epoch: row.try_get(0).map_err(PgError::from)?,
            holder: row.try_get(1).map_err(PgError::from)?,
            address: row.try_get(2).map_err(PgError::from)?,
            // -infinity comes back as NULL: long expired
            expires_in_ms: expires_in_ms.map_or(i64::MIN, |ms| ms as i64),
        })
    }

    fn fence(&self, epoch: Option<i64>) {
        self.set_fence(epoch);
    }
}

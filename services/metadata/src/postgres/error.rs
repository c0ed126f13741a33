//! How PostgreSQL failures become [`StoreError`]s.
//!
//! Inside the store, work returns [`PgError`], which keeps the driver's error so that
//! [`PgError::is_retryable`] can recognise the failures PostgreSQL guarantees rolled back
//! (serialization failures and detected deadlocks, retried by the store itself). At the
//! trait boundary everything else becomes [`StoreError::Database`], whose outcome is
//! unknown: a connection that drops while `COMMIT` is on the wire may have committed.
//! Unique violations are turned into `TopicExists` where a topic is created; nowhere else
//! can one happen by design.

use std::error::Error as _;

use tokio_postgres::error::SqlState;

use crate::store::StoreError;

/// A failure inside the PostgreSQL store, before it is reported.
#[derive(Debug)]
pub(super) enum PgError {
    /// The driver failed: connection, protocol, or an error the server returned.
    Driver(tokio_postgres::Error),
    /// No pooled connection could be had.
    Pool(String),
    /// A failure that is already a store error (bad request, missing topic, ...).
    Store(StoreError),
}

impl PgError {
    /// True when PostgreSQL rolled the transaction back and running it again is safe.
    pub(super) fn is_retryable(&self) -> bool {
        let PgError::Driver(e) = self else {
            return false;
        };
        matches!(
            e.code(),
            Some(&SqlState::T_R_SERIALIZATION_FAILURE) | Some(&SqlState::T_R_DEADLOCK_DETECTED)
        )
    }

    /// True when the server refused a write because a unique key was taken.
    pub(super) fn is_unique_violation(&self) -> bool {
        matches!(self, PgError::Driver(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION))
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgError::Driver(e)
    }
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => PgError::Driver(e),
            other => PgError::Pool(other.to_string()),
        }
    }
}

impl From<StoreError> for PgError {
    fn from(e: StoreError) -> Self {
        PgError::Store(e)
    }
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Driver(e) => StoreError::Database(describe(&e)),
            PgError::Pool(message) => {
                StoreError::Database(format!("no PostgreSQL connection: {message}"))
            }
            PgError::Store(e) => e,
        }
    }
}

/// A readable message for a driver error: the server's own words when it sent any, else
/// the driver's description followed by its cause (e.g. the I/O error of a lost connection).
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut message = format!(
            "postgres {} {}: {}",
            db.severity(),
            db.code().code(),
            db.message()
        );
        if let Some(detail) = db.detail() {
            message.push_str(" (");
            message.push_str(detail);
            message.push(')');
        }
        return message;
    }
    match e.source() {
        Some(cause) => format!("postgres: {e}: {cause}"),
        None => format!("postgres: {e}"),
    }
}

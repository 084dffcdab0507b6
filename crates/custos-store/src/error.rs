//! Store errors: what went wrong, in words a CLI user can act on.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration {version} failed: {source}")]
    Migration {
        version: i64,
        #[source]
        source: sqlx::Error,
    },
    /// The shared Redis of `[cluster] redis_url` failed or did not answer in time.
    #[error("Redis: {0}")]
    Redis(String),
}

impl StoreError {
    /// Maps a unique-constraint violation to `Conflict(what)`, other errors unchanged.
    pub(crate) fn conflict_as(e: sqlx::Error, what: impl FnOnce() -> String) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what()),
            _ => StoreError::Database(e),
        }
    }
}

//! The one place custos talks SQL. SQLite is the embedded default; PostgreSQL is for
//! several gateway replicas sharing one store. Both speak the same statements (numbered
//! `$n` placeholders, integer epoch-millisecond times) through sqlx's `Any` driver, and each
//! has its own migration files where their dialects differ.

mod change;
mod dpia;
mod error;
mod events;
mod finops;
mod grants;
mod identity;
mod ledger;
mod lifecycle;
mod migrate;
mod models;
mod releases;
pub mod shared;
mod slo;
pub mod testkit;

pub use change::Change;
pub use dpia::Dpia;
pub use error::StoreError;
pub use events::EventCursor;
pub use finops::{
    budget_filter, check_tag_key, sample_record, BilledGroup, BilledSpanRow, BillingFile,
    Dimension, JobRow, SpendOverride, Traffic, TrafficDimension, UsageFilter, UsageTotals,
    LATENCY_BOUNDS_MS,
};
pub use grants::{Grant, GrantKind, GrantStatus, NewGrant};
pub use identity::{App, KeyFilter, KeyRow, NewKey, Team, Tenant};
pub use ledger::{LedgerEntry, LedgerNode};
pub use lifecycle::{Erasure, Hold, LineageEdge, SubjectKeyRow};
pub use models::{Dataset, ModelHistory, ModelVersion, Prompt};
pub use releases::{Release, ReleaseDecision};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection};
use std::str::FromStr;
use std::time::Duration;

/// Creates a new SQLite database with 16 KiB pages in WAL mode (page size is fixed at
/// creation). The ledger's ~600-byte events fill 4 KiB pages in a handful of rows; larger
/// pages made durable appends about 50% faster (bench/RESULTS.md).
fn create_sqlite_file(file: &std::path::Path) -> Result<(), StoreError> {
    if file.exists() {
        return Ok(());
    }
    let conn = rusqlite::Connection::open(file)?;
    conn.pragma_update(None, "page_size", 16384)?;
    let _: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    Ok(())
}

/// Which database a store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A connection pool and the backend behind it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The SQLite file, for bulk scans that bypass sqlx (see `ledger_scan_entries`).
    sqlite_file: Option<std::path::PathBuf>,
    /// The ledger's own SQLite writer connection, opened on first append (see `ledger_append`).
    ledger_writer: std::sync::Arc<std::sync::Mutex<Option<rusqlite::Connection>>>,
    /// The gateway usage writer's SQLite connection, opened on first insert.
    usage_writer: std::sync::Arc<std::sync::Mutex<Option<rusqlite::Connection>>>,
}

impl Store {
    /// Connects to `sqlite://PATH` (created if missing) or `postgres://…`, and migrates.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let mut sqlite_file = None;
        let (backend, url) = if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(StoreError::Invalid(
                    "the sqlite URL names no file: use sqlite://path/to/custos.db".into(),
                ));
            }
            let file = path.split('?').next().unwrap_or(path);
            // In-memory databases are private to their connection: no second connection.
            if file != ":memory:" && !path.contains("mode=memory") {
                sqlite_file = Some(std::path::PathBuf::from(file));
            }
            if let Some(dir) = std::path::Path::new(file)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Invalid(format!(
                        "cannot create the data directory {}: {e}",
                        dir.display()
                    ))
                })?;
            }
            if sqlite_file.is_some() {
                create_sqlite_file(std::path::Path::new(file))?;
            }
            let sep = if path.contains('?') { '&' } else { '?' };
            let mode = if path.contains("mode=") {
                String::new()
            } else {
                format!("{sep}mode=rwc")
            };
            (Backend::Sqlite, format!("sqlite://{path}{mode}"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::Invalid(format!(
                "unsupported database URL {:?}: use sqlite://PATH or postgres://USER@HOST/DB",
                redact_url(url)
            )));
        };
        let options = AnyConnectOptions::from_str(&url).map_err(|e| {
            StoreError::Invalid(format!("bad database URL {:?}: {e}", redact_url(&url)))
        })?;
        // One direct attempt first: a down or misnamed server fails at once with its real
        // error, instead of after the pool's acquire timeout.
        let probe = sqlx::AnyConnection::connect_with(&options)
            .await
            .map_err(|e| StoreError::Connect {
                url: redact_url(&url),
                source: e,
            })?;
        let _ = sqlx::Connection::close(probe).await;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets the gateway read while the CLI writes; busy_timeout makes
                        // writers from several processes wait instead of failing.
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA busy_timeout = 5000",
                            "PRAGMA foreign_keys = ON",
                            "PRAGMA synchronous = NORMAL",
                        ] {
                            sqlx::Executor::execute(&mut *conn, pragma).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Connect {
                url: redact_url(&url),
                source: e,
            })?;
        Ok(Self {
            pool,
            backend,
            sqlite_file,
            ledger_writer: Default::default(),
            usage_writer: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn sqlite_file(&self) -> Option<&std::path::Path> {
        self.sqlite_file.as_deref()
    }

    pub(crate) fn usage_writer(
        &self,
    ) -> std::sync::Arc<std::sync::Mutex<Option<rusqlite::Connection>>> {
        self.usage_writer.clone()
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A database URL with any password replaced by `***`, safe for messages and logs.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_owned()
}

/// True when a URL carries a password (and so must not live in a config file).
pub fn url_has_password(url: &str) -> bool {
    redact_url(url) != url
}

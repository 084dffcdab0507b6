//! Helpers for tests that need a real database: a fresh SQLite file or a fresh PostgreSQL
//! database on the server named by `CUSTOS_TEST_POSTGRES_URL`.

use crate::{Store, StoreError};

/// The environment variable naming a PostgreSQL server for tests (an admin URL, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`).
pub const POSTGRES_ENV: &str = "CUSTOS_TEST_POSTGRES_URL";

/// Creates a new, empty PostgreSQL database for one test and returns its URL, or `None` (with
/// a message on stderr) when `CUSTOS_TEST_POSTGRES_URL` is not set.
pub async fn fresh_postgres(test: &str) -> Result<Option<String>, StoreError> {
    let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
        eprintln!("skipping the PostgreSQL part of {test}: {POSTGRES_ENV} is not set");
        return Ok(None);
    };
    let name = format!("custos_test_{}", uuid::Uuid::now_v7().simple());
    let admin = Store::connect(&admin_url).await?;
    drop_stale(&admin).await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(admin.pool())
        .await?;
    admin.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(admin_url.clone());
    Ok(Some(format!("{base}/{name}")))
}

/// Drops test databases left by runs that ended over an hour ago (their names carry a UUIDv7,
/// so their age is known), so repeated runs do not fill the server.
async fn drop_stale(admin: &Store) {
    let Ok(rows) = sqlx::query_as::<_, (String,)>(
        "SELECT datname FROM pg_database WHERE datname LIKE 'custos_test_%'",
    )
    .fetch_all(admin.pool())
    .await
    else {
        return;
    };
    let cutoff = custos_core::time::now_ms() - 3_600_000;
    for (name,) in rows {
        let created = name
            .strip_prefix("custos_test_")
            .and_then(|u| uuid::Uuid::parse_str(u).ok())
            .and_then(|u| u.get_timestamp())
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                secs as i64 * 1000 + i64::from(nanos / 1_000_000)
            });
        if created.is_some_and(|c| c < cutoff) {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                .execute(admin.pool())
                .await;
        }
    }
}

/// Runs raw SQL against a store, for tests that play an attacker with database access.
pub async fn execute_raw(store: &Store, sql: &str) -> Result<u64, StoreError> {
    Ok(sqlx::raw_sql(sql)
        .execute(store.pool())
        .await?
        .rows_affected())
}

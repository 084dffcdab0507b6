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

/// Fixtures for tests: each call is one change, committed with no ledger event. Only tests
/// seed state this way; every surface changes state through `custos-control`.
#[allow(async_fn_in_trait)]
pub trait Seed {
    async fn create_tenant(&self, name: &str) -> Result<crate::Tenant, StoreError>;
    async fn ensure_tenant(&self, name: &str) -> Result<crate::Tenant, StoreError>;
    async fn set_tenant_regions(
        &self,
        name: &str,
        list: &[String],
    ) -> Result<crate::Tenant, StoreError>;
    async fn create_team(
        &self,
        tenant: &str,
        name: &str,
        rpm: Option<i64>,
        tpm: Option<i64>,
    ) -> Result<crate::Team, StoreError>;
    async fn set_team_limits(
        &self,
        tenant: &str,
        name: &str,
        rpm: Option<i64>,
        tpm: Option<i64>,
    ) -> Result<crate::Team, StoreError>;
    async fn create_app(
        &self,
        tenant: &str,
        team: &str,
        name: &str,
    ) -> Result<crate::App, StoreError>;
    async fn insert_key(&self, key: &crate::NewKey) -> Result<crate::KeyRow, StoreError>;
    async fn revoke_key(&self, id: &str, at: Option<i64>) -> Result<crate::KeyRow, StoreError>;
    async fn rotate_key(
        &self,
        id: &str,
        successor: &crate::NewKey,
        old_revoked_at: i64,
    ) -> Result<(crate::KeyRow, crate::KeyRow), StoreError>;
    async fn grant_create(&self, g: &crate::NewGrant) -> Result<crate::Grant, StoreError>;
    async fn grant_decide(
        &self,
        id: &str,
        approve: bool,
        by: &str,
    ) -> Result<crate::Grant, StoreError>;
    async fn grant_revoke(&self, id: &str, by: &str) -> Result<crate::Grant, StoreError>;
    async fn prices_upsert(&self, prices: &[custos_finops::Price]) -> Result<usize, StoreError>;
    async fn budget_create(&self, b: &custos_finops::budget::Budget) -> Result<(), StoreError>;
    async fn budget_delete(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<custos_finops::budget::Budget, StoreError>;
    async fn spend_override_create(&self, o: &crate::SpendOverride) -> Result<(), StoreError>;
}

macro_rules! seed {
    ($self:ident, $c:ident => $e:expr) => {{
        let mut $c = $self.begin_change().await?;
        let out = $e.await?;
        $c.commit().await?;
        Ok(out)
    }};
}

impl Seed for Store {
    async fn create_tenant(&self, name: &str) -> Result<crate::Tenant, StoreError> {
        seed!(self, c => c.create_tenant(name))
    }
    async fn ensure_tenant(&self, name: &str) -> Result<crate::Tenant, StoreError> {
        let mut c = self.begin_change().await?;
        let (t, _) = c.ensure_tenant(name).await?;
        c.commit().await?;
        Ok(t)
    }
    async fn set_tenant_regions(
        &self,
        name: &str,
        list: &[String],
    ) -> Result<crate::Tenant, StoreError> {
        seed!(self, c => c.set_tenant_regions(name, list))
    }
    async fn create_team(
        &self,
        tenant: &str,
        name: &str,
        rpm: Option<i64>,
        tpm: Option<i64>,
    ) -> Result<crate::Team, StoreError> {
        seed!(self, c => c.create_team(tenant, name, rpm, tpm))
    }
    async fn set_team_limits(
        &self,
        tenant: &str,
        name: &str,
        rpm: Option<i64>,
        tpm: Option<i64>,
    ) -> Result<crate::Team, StoreError> {
        seed!(self, c => c.set_team_limits(tenant, name, rpm, tpm))
    }
    async fn create_app(
        &self,
        tenant: &str,
        team: &str,
        name: &str,
    ) -> Result<crate::App, StoreError> {
        seed!(self, c => c.create_app(tenant, team, name))
    }
    async fn insert_key(&self, key: &crate::NewKey) -> Result<crate::KeyRow, StoreError> {
        seed!(self, c => c.insert_key(key))
    }
    async fn revoke_key(&self, id: &str, at: Option<i64>) -> Result<crate::KeyRow, StoreError> {
        seed!(self, c => c.revoke_key(id, at))
    }
    async fn rotate_key(
        &self,
        id: &str,
        successor: &crate::NewKey,
        old_revoked_at: i64,
    ) -> Result<(crate::KeyRow, crate::KeyRow), StoreError> {
        seed!(self, c => c.rotate_key(id, successor, old_revoked_at))
    }
    async fn grant_create(&self, g: &crate::NewGrant) -> Result<crate::Grant, StoreError> {
        seed!(self, c => c.grant_create(g))
    }
    async fn grant_decide(
        &self,
        id: &str,
        approve: bool,
        by: &str,
    ) -> Result<crate::Grant, StoreError> {
        seed!(self, c => c.grant_decide(id, approve, by))
    }
    async fn grant_revoke(&self, id: &str, by: &str) -> Result<crate::Grant, StoreError> {
        seed!(self, c => c.grant_revoke(id, by))
    }
    async fn prices_upsert(&self, prices: &[custos_finops::Price]) -> Result<usize, StoreError> {
        seed!(self, c => c.prices_upsert(prices))
    }
    async fn budget_create(&self, b: &custos_finops::budget::Budget) -> Result<(), StoreError> {
        seed!(self, c => c.budget_create(b))
    }
    async fn budget_delete(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<custos_finops::budget::Budget, StoreError> {
        seed!(self, c => c.budget_delete(tenant, name))
    }
    async fn spend_override_create(&self, o: &crate::SpendOverride) -> Result<(), StoreError> {
        seed!(self, c => c.spend_override_create(o))
    }
}

/// The environment variable naming a Redis server for tests.
pub const REDIS_ENV: &str = "CUSTOS_TEST_REDIS_URL";

/// The test Redis (`CUSTOS_TEST_REDIS_URL`, else `redis://127.0.0.1:6379` when it answers),
/// or `None` with a message on stderr.
pub async fn redis(test: &str) -> Option<String> {
    let url = std::env::var(REDIS_ENV).unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    match crate::shared::Shared::connect(&url, "custos-test:", std::time::Duration::from_secs(2))
        .await
    {
        Ok(s) if s.ping().await.is_ok() => Some(url),
        _ => {
            eprintln!("skipping {test}: no Redis answers at {url} (set {REDIS_ENV})");
            None
        }
    }
}

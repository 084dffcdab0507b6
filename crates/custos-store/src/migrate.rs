//! Schema migrations: numbered, applied in order, each once, recorded in
//! `custos_migrations`. Each has a SQLite and a PostgreSQL text; where the dialects agree
//! both name the same file.

use crate::{Backend, Store, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "identity",
        sqlite: include_str!("migrations/0001_identity.sql"),
        postgres: include_str!("migrations/0001_identity.sql"),
    },
    Migration {
        version: 2,
        name: "ledger",
        // Same tables; each dialect has its own append-only triggers.
        sqlite: concat!(
            include_str!("migrations/0002_ledger_tables.sql"),
            include_str!("migrations/0002_ledger_guard.sqlite.sql")
        ),
        postgres: concat!(
            include_str!("migrations/0002_ledger_tables.sql"),
            include_str!("migrations/0002_ledger_guard.postgres.sql")
        ),
    },
    Migration {
        version: 3,
        name: "ledger prunes",
        sqlite: concat!(
            include_str!("migrations/0003_ledger_prunes.sql"),
            include_str!("migrations/0003_ledger_prunes_guard.sqlite.sql")
        ),
        postgres: concat!(
            include_str!("migrations/0003_ledger_prunes.sql"),
            include_str!("migrations/0003_ledger_prunes_guard.postgres.sql")
        ),
    },
    Migration {
        version: 4,
        name: "ledger tables clustered by key",
        sqlite: include_str!("migrations/0004_ledger_clustered.sqlite.sql"),
        // PostgreSQL's heap plus primary-key index already serves ordered scans well.
        postgres: "SELECT 1",
    },
    Migration {
        version: 5,
        name: "finops: prices, usage, budgets",
        sqlite: include_str!("migrations/0005_finops.sql"),
        postgres: include_str!("migrations/0005_finops.sql"),
    },
    Migration {
        version: 6,
        name: "billing line items",
        // Items are clustered by (file, row) on SQLite: no second copy of the key in an index.
        sqlite: concat!(
            include_str!("migrations/0006_billing.sql"),
            " WITHOUT ROWID;"
        ),
        postgres: concat!(include_str!("migrations/0006_billing.sql"), ";"),
    },
    Migration {
        version: 7,
        name: "daily usage rollup",
        sqlite: include_str!("migrations/0007_usage_daily.sql"),
        postgres: include_str!("migrations/0007_usage_daily.sql"),
    },
    Migration {
        version: 8,
        name: "time-bound spend overrides",
        sqlite: include_str!("migrations/0008_spend_overrides.sql"),
        postgres: include_str!("migrations/0008_spend_overrides.sql"),
    },
    Migration {
        version: 9,
        name: "tenant residency regions",
        sqlite: include_str!("migrations/0009_tenant_regions.sql"),
        postgres: include_str!("migrations/0009_tenant_regions.sql"),
    },
    Migration {
        version: 10,
        name: "time-bound grants",
        sqlite: include_str!("migrations/0010_grants.sql"),
        postgres: include_str!("migrations/0010_grants.sql"),
    },
    Migration {
        version: 11,
        name: "ledger nodes keyed by the last entry they cover",
        sqlite: include_str!("migrations/0011_ledger_nodes_by_leaf.sqlite.sql"),
        postgres: include_str!("migrations/0011_ledger_nodes_by_leaf.postgres.sql"),
    },
    Migration {
        version: 12,
        name: "control-plane state",
        sqlite: include_str!("migrations/0012_control_state.sql"),
        postgres: include_str!("migrations/0012_control_state.sql"),
    },
    Migration {
        version: 13,
        name: "model registry",
        sqlite: include_str!("migrations/0013_model_registry.sql"),
        postgres: include_str!("migrations/0013_model_registry.sql"),
    },
    Migration {
        version: 14,
        name: "prompt and dataset registries",
        sqlite: include_str!("migrations/0014_prompts_datasets.sql"),
        postgres: include_str!("migrations/0014_prompts_datasets.sql"),
    },
    Migration {
        version: 15,
        name: "composite releases",
        sqlite: include_str!("migrations/0015_releases.sql"),
        postgres: include_str!("migrations/0015_releases.sql"),
    },
    Migration {
        version: 16,
        name: "usage records name their release",
        sqlite: include_str!("migrations/0016_usage_release.sql"),
        postgres: include_str!("migrations/0016_usage_release.sql"),
    },
    Migration {
        version: 17,
        name: "lineage, legal holds and erasures",
        sqlite: include_str!("migrations/0017_lifecycle.sql"),
        postgres: include_str!("migrations/0017_lifecycle.sql"),
    },
    Migration {
        version: 18,
        name: "subject keys for crypto-shredding; usage records name their end user",
        sqlite: include_str!("migrations/0018_subject_keys.sql"),
        postgres: include_str!("migrations/0018_subject_keys.sql"),
    },
    Migration {
        version: 19,
        name: "data protection impact assessments",
        sqlite: include_str!("migrations/0019_dpias.sql"),
        postgres: include_str!("migrations/0019_dpias.sql"),
    },
    Migration {
        version: 20,
        name: "unit costs: GPU time and the cost of each unit's usage kept apart",
        sqlite: include_str!("migrations/0020_unit_costs.sql"),
        postgres: include_str!("migrations/0020_unit_costs.sql"),
    },
    Migration {
        version: 21,
        name: "apps declare the tools they use",
        sqlite: include_str!("migrations/0021_app_tools.sql"),
        postgres: include_str!("migrations/0021_app_tools.sql"),
    },
    Migration {
        version: 22,
        name: "event receivers' cursors over the ledger",
        sqlite: include_str!("migrations/0022_event_cursors.sql"),
        postgres: include_str!("migrations/0022_event_cursors.sql"),
    },
    Migration {
        version: 23,
        name: "SLO burn-rate alerts that fire",
        sqlite: include_str!("migrations/0023_slo_alerts.sql"),
        postgres: include_str!("migrations/0023_slo_alerts.sql"),
    },
    Migration {
        version: 24,
        name: "roles held by API keys",
        sqlite: include_str!("migrations/0024_key_roles.sql"),
        postgres: include_str!("migrations/0024_key_roles.sql"),
    },
];

/// The PostgreSQL session advisory lock migrations run under ("custos-m" in ASCII), distinct
/// from the ledger writers' lock.
const MIGRATION_LOCK: i64 = 0x6375_7374_6f73_2d6d;

impl Store {
    /// Applies the migrations this database has not seen yet. Safe to run concurrently from
    /// several processes: on PostgreSQL they take turns (an advisory lock); on SQLite each
    /// migration runs in a transaction that records its version, and the primary key makes a
    /// second runner fail and retry after the first commits.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrate_until(i64::MAX).await
    }

    /// `migrate`, stopping after version `last`: for tests that need a database as an older
    /// custos left it. On PostgreSQL, replicas starting together on a fresh database take
    /// turns through a session advisory lock: creating the same table concurrently fails there
    /// on the catalog's unique index, not on `IF NOT EXISTS`.
    pub async fn migrate_until(&self, last: i64) -> Result<(), StoreError> {
        if self.backend() != Backend::Postgres {
            return self.migrate_unlocked(last).await;
        }
        let mut conn = self.pool().acquire().await?;
        let c: &mut sqlx::AnyConnection = &mut conn;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(c)
            .await?;
        let done = self.migrate_unlocked(last).await;
        let c: &mut sqlx::AnyConnection = &mut conn;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(c)
            .await;
        if unlocked.is_err() {
            // A session lock ends with its connection: close it rather than return it to the
            // pool still holding the lock.
            let _ = conn.detach();
        }
        done
    }

    async fn migrate_unlocked(&self, last: i64) -> Result<(), StoreError> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS custos_migrations (
                version BIGINT PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at BIGINT NOT NULL
            )",
        )
        .execute(self.pool())
        .await?;
        for m in MIGRATIONS.iter().filter(|m| m.version <= last) {
            let mut attempt = 0u64;
            loop {
                match self.apply(m).await {
                    Ok(()) => break,
                    // Another process is applying the same migration; wait for its commit.
                    Err(_) if attempt < 3 => {
                        attempt += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn apply(&self, m: &Migration) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let applied: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM custos_migrations WHERE version = $1")
                .bind(m.version)
                .fetch_optional(&mut *tx)
                .await?;
        if applied.is_some() {
            return Ok(());
        }
        let sql = match self.backend() {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(|source| StoreError::Migration {
                version: m.version,
                source,
            })?;
        sqlx::query(
            "INSERT INTO custos_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(custos_core::time::now_ms())
        .execute(&mut *tx)
        .await
        .map_err(|source| StoreError::Migration {
            version: m.version,
            source,
        })?;
        tx.commit().await?;
        Ok(())
    }

    /// Versions applied so far, oldest first.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<(i64,)> =
            sqlx::query_as("SELECT version FROM custos_migrations ORDER BY version")
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}

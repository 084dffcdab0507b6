//! Tenants, teams, apps and API keys: the identity tables.
//!
//! Keys are stored by SHA-256 digest only. Every change to a key or to its team's limits bumps
//! `updated_at`, which is how gateway processes notice revocations made by other processes.

use crate::change::Change;
use crate::{Store, StoreError};
use custos_core::{id::new_id, time::now_ms};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    /// Regions the tenant's calls may be served from; empty: anywhere.
    pub regions: Vec<String>,
}

fn regions(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Team {
    pub id: String,
    pub tenant_id: String,
    pub tenant: String,
    pub name: String,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub team_id: String,
    pub team: String,
    pub tenant: String,
    pub name: String,
    pub created_at: i64,
    /// The tools the app declared it uses; `None`: it never declared any.
    pub tools: Option<Vec<String>>,
}

/// A key to insert. The secret itself never reaches the store, only its digest.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub digest_hex: String,
    pub prefix: String,
    pub name: Option<String>,
    pub app_id: String,
    pub env: String,
    pub models: String,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub expires_at: Option<i64>,
    /// Roles the key holds in policies; none: the built-in `service`.
    pub roles: Vec<String>,
}

/// A stored key, joined with the names and limits of its tenant, team and app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRow {
    pub id: String,
    pub digest_hex: String,
    pub prefix: String,
    pub name: Option<String>,
    pub tenant_id: String,
    pub tenant: String,
    pub team_id: String,
    pub team: String,
    pub app_id: String,
    pub app: String,
    pub env: String,
    pub models: String,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub team_rpm: Option<i64>,
    pub team_tpm: Option<i64>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub rotated_from: Option<String>,
    pub updated_at: i64,
    /// Roles the key holds in policies; none: the built-in `service`.
    pub roles: Vec<String>,
}

impl KeyRow {
    pub fn status(&self, now: i64) -> &'static str {
        if self.revoked_at.is_some_and(|t| t <= now) {
            "revoked"
        } else if self.expires_at.is_some_and(|t| t <= now) {
            "expired"
        } else {
            "active"
        }
    }

    /// When the key stops working: its expiry or a scheduled revocation (the end of a
    /// rotation's overlap, during which the key is still active), whichever comes first.
    pub fn ends_at(&self) -> Option<i64> {
        match (self.expires_at, self.revoked_at) {
            (Some(e), Some(r)) => Some(e.min(r)),
            (e, r) => e.or(r),
        }
    }
}

/// Which keys to list.
#[derive(Clone, Debug, Default)]
pub struct KeyFilter {
    pub tenant: Option<String>,
    pub team: Option<String>,
    pub app: Option<String>,
    pub include_inactive: bool,
}

const KEY_SELECT: &str =
    "SELECT k.id, k.digest, k.prefix, k.name, k.tenant_id, tn.name AS tenant, \
    k.team_id, t.name AS team, k.app_id, a.name AS app, k.env, k.models, k.rpm, k.tpm, \
    t.rpm AS team_rpm, t.tpm AS team_tpm, k.created_at, k.expires_at, k.revoked_at, \
    k.rotated_from, k.roles, \
    CASE WHEN t.updated_at > k.updated_at THEN t.updated_at ELSE k.updated_at END AS updated_at \
    FROM api_keys k JOIN teams t ON t.id = k.team_id JOIN tenants tn ON tn.id = k.tenant_id \
    JOIN apps a ON a.id = k.app_id";

fn key_row(r: &AnyRow) -> Result<KeyRow, sqlx::Error> {
    Ok(KeyRow {
        id: r.try_get("id")?,
        digest_hex: r.try_get("digest")?,
        prefix: r.try_get("prefix")?,
        name: r.try_get("name")?,
        tenant_id: r.try_get("tenant_id")?,
        tenant: r.try_get("tenant")?,
        team_id: r.try_get("team_id")?,
        team: r.try_get("team")?,
        app_id: r.try_get("app_id")?,
        app: r.try_get("app")?,
        env: r.try_get("env")?,
        models: r.try_get("models")?,
        rpm: r.try_get("rpm")?,
        tpm: r.try_get("tpm")?,
        team_rpm: r.try_get("team_rpm")?,
        team_tpm: r.try_get("team_tpm")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        rotated_from: r.try_get("rotated_from")?,
        updated_at: r.try_get("updated_at")?,
        roles: r
            .try_get::<String, _>("roles")?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

fn team_row(r: &AnyRow) -> Result<Team, sqlx::Error> {
    Ok(Team {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        tenant: r.try_get("tenant")?,
        name: r.try_get("name")?,
        rpm: r.try_get("rpm")?,
        tpm: r.try_get("tpm")?,
        created_at: r.try_get("created_at")?,
    })
}

fn app_row(r: &AnyRow) -> Result<App, sqlx::Error> {
    Ok(App {
        id: r.try_get("id")?,
        team_id: r.try_get("team_id")?,
        team: r.try_get("team")?,
        tenant: r.try_get("tenant")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
        tools: r
            .try_get::<Option<String>, _>("tools")?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}

const TEAM_SELECT: &str =
    "SELECT t.id, t.tenant_id, tn.name AS tenant, t.name, t.rpm, t.tpm, t.created_at \
    FROM teams t JOIN tenants tn ON tn.id = t.tenant_id";
const APP_SELECT: &str =
    "SELECT a.id, a.team_id, t.name AS team, tn.name AS tenant, a.name, a.created_at, a.tools \
    FROM apps a JOIN teams t ON t.id = a.team_id JOIN tenants tn ON tn.id = t.tenant_id";

fn check_name(kind: &str, name: &str) -> Result<(), StoreError> {
    if custos_core::id::is_valid_name(name) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{kind} name {name:?} is invalid: use 1-64 characters of letters, digits, '.', '_' or '-', not starting with '.' or '-'"
        )))
    }
}

fn tenant_from(row: (String, String, i64, String)) -> Tenant {
    let (id, name, created_at, r) = row;
    Tenant {
        id,
        name,
        created_at,
        regions: regions(&r),
    }
}

pub(crate) async fn tenant_in(c: &mut AnyConnection, name: &str) -> Result<Tenant, StoreError> {
    let row: Option<(String, String, i64, String)> =
        sqlx::query_as("SELECT id, name, created_at, regions FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *c)
            .await?;
    row.map(tenant_from)
        .ok_or_else(|| StoreError::NotFound(format!("tenant {name:?}")))
}

pub(crate) async fn team_in(
    c: &mut AnyConnection,
    tenant: &str,
    name: &str,
) -> Result<Team, StoreError> {
    let sql = format!("{TEAM_SELECT} WHERE tn.name = $1 AND t.name = $2");
    let row = sqlx::query(&sql)
        .bind(tenant)
        .bind(name)
        .fetch_optional(&mut *c)
        .await?;
    match row {
        Some(r) => Ok(team_row(&r)?),
        None => Err(StoreError::NotFound(format!(
            "team {name:?} in tenant {tenant:?}"
        ))),
    }
}

pub(crate) async fn app_in(
    c: &mut AnyConnection,
    tenant: &str,
    team: &str,
    name: &str,
) -> Result<App, StoreError> {
    let sql = format!("{APP_SELECT} WHERE tn.name = $1 AND t.name = $2 AND a.name = $3");
    let row = sqlx::query(&sql)
        .bind(tenant)
        .bind(team)
        .bind(name)
        .fetch_optional(&mut *c)
        .await?;
    match row {
        Some(r) => Ok(app_row(&r)?),
        None => Err(StoreError::NotFound(format!(
            "app {name:?} in team {team:?} of tenant {tenant:?}"
        ))),
    }
}

pub(crate) async fn key_in(
    c: &mut AnyConnection,
    id_or_prefix: &str,
) -> Result<KeyRow, StoreError> {
    let sql = format!("{KEY_SELECT} WHERE k.id = $1 OR k.prefix = $1 ORDER BY k.created_at");
    let rows = sqlx::query(&sql)
        .bind(id_or_prefix)
        .fetch_all(&mut *c)
        .await?;
    match rows.len() {
        0 => Err(StoreError::NotFound(format!("key {id_or_prefix:?}"))),
        1 => Ok(key_row(&rows[0])?),
        n => Err(StoreError::Invalid(format!(
            "{n} keys share the prefix {id_or_prefix:?}: use the key id instead"
        ))),
    }
}

async fn insert_key_in(
    c: &mut AnyConnection,
    id: &str,
    key: &NewKey,
    rotated_from: Option<&str>,
) -> Result<(), StoreError> {
    let now = now_ms();
    let result = sqlx::query(
        "INSERT INTO api_keys (id, digest, prefix, name, tenant_id, team_id, app_id, env, models, \
           rpm, tpm, created_at, expires_at, revoked_at, rotated_from, updated_at, roles) \
         SELECT $1, $2, $3, $4, t.tenant_id, a.team_id, a.id, $5, $6, $7, $8, $9, $10, NULL, $11, $9, $13 \
         FROM apps a JOIN teams t ON t.id = a.team_id WHERE a.id = $12",
    )
    .bind(id)
    .bind(&key.digest_hex)
    .bind(&key.prefix)
    .bind(key.name.as_deref())
    .bind(&key.env)
    .bind(&key.models)
    .bind(key.rpm)
    .bind(key.tpm)
    .bind(now)
    .bind(key.expires_at)
    .bind(rotated_from)
    .bind(&key.app_id)
    .bind(key.roles.join(","))
    .execute(&mut *c)
    .await
    .map_err(|e| StoreError::conflict_as(e, || "a key with this digest".into()))?;
    if result.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("app {:?}", key.app_id)));
    }
    Ok(())
}

/// Changes to the identity tables, inside a `Change` (with their ledger event).
impl Change {
    pub async fn create_tenant(&mut self, name: &str) -> Result<Tenant, StoreError> {
        check_name("tenant", name)?;
        let t = Tenant {
            id: new_id("ten"),
            name: name.to_owned(),
            created_at: now_ms(),
            regions: Vec::new(),
        };
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&t.id)
            .bind(&t.name)
            .bind(t.created_at)
            .execute(self.conn())
            .await
            .map_err(|e| StoreError::conflict_as(e, || format!("tenant {name:?}")))?;
        Ok(t)
    }

    /// The tenant, and whether this call created it.
    pub async fn ensure_tenant(&mut self, name: &str) -> Result<(Tenant, bool), StoreError> {
        match tenant_in(self.conn(), name).await {
            Ok(t) => Ok((t, false)),
            Err(StoreError::NotFound(_)) => Ok((self.create_tenant(name).await?, true)),
            Err(e) => Err(e),
        }
    }

    pub async fn tenant(&mut self, name: &str) -> Result<Tenant, StoreError> {
        tenant_in(self.conn(), name).await
    }

    /// Pins a tenant to regions (empty: unpinned). Region names are checked like other names.
    pub async fn set_tenant_regions(
        &mut self,
        name: &str,
        list: &[String],
    ) -> Result<Tenant, StoreError> {
        for r in list {
            check_name("region", r)?;
        }
        let done = sqlx::query("UPDATE tenants SET regions = $1 WHERE name = $2")
            .bind(list.join(","))
            .bind(name)
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tenant {name:?}")));
        }
        tenant_in(self.conn(), name).await
    }

    pub async fn create_team(
        &mut self,
        tenant: &str,
        name: &str,
        rpm: Option<i64>,
        tpm: Option<i64>,
    ) -> Result<Team, StoreError> {
        check_name("team", name)?;
        let tenant = tenant_in(self.conn(), tenant).await?;
        let now = now_ms();
        let id = new_id("team");
        sqlx::query(
            "INSERT INTO teams (id, tenant_id, name, rpm, tpm, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&id)
        .bind(&tenant.id)
        .bind(name)
        .bind(rpm)
        .bind(tpm)
        .bind(now)
        .execute(self.conn())
        .await
        .map_err(|e| {
            StoreError::conflict_as(e, || format!("team {name:?} in tenant {:?}", tenant.name))
        })?;
        team_in(self.conn(), &tenant.name, name).await
    }

    pub async fn team(&mut self, tenant: &str, name: &str) -> Result<Team, StoreError> {
        team_in(self.conn(), tenant, name).await
    }

    /// Sets or clears a team's shared limits; keys of the team pick them up on next refresh.
    pub async fn set_team_limits(
        &mut self,
        tenant: &str,
        name: &str,
        rpm: Option<i64>,
        tpm: Option<i64>,
    ) -> Result<Team, StoreError> {
        let team = team_in(self.conn(), tenant, name).await?;
        sqlx::query("UPDATE teams SET rpm = $1, tpm = $2, updated_at = $3 WHERE id = $4")
            .bind(rpm)
            .bind(tpm)
            .bind(now_ms())
            .bind(&team.id)
            .execute(self.conn())
            .await?;
        team_in(self.conn(), tenant, name).await
    }

    pub async fn create_app(
        &mut self,
        tenant: &str,
        team: &str,
        name: &str,
    ) -> Result<App, StoreError> {
        check_name("app", name)?;
        let team_row = team_in(self.conn(), tenant, team).await?;
        let id = new_id("app");
        sqlx::query("INSERT INTO apps (id, team_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(&team_row.id)
            .bind(name)
            .bind(now_ms())
            .execute(self.conn())
            .await
            .map_err(|e| StoreError::conflict_as(e, || format!("app {name:?} in team {team:?}")))?;
        app_in(self.conn(), tenant, team, name).await
    }

    pub async fn app(&mut self, tenant: &str, team: &str, name: &str) -> Result<App, StoreError> {
        app_in(self.conn(), tenant, team, name).await
    }

    /// Sets the tools an app declares (`None` withdraws the declaration).
    pub async fn set_app_tools(
        &mut self,
        tenant: &str,
        team: &str,
        name: &str,
        tools: Option<&[String]>,
    ) -> Result<App, StoreError> {
        let app = app_in(self.conn(), tenant, team, name).await?;
        let text = tools
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Invalid(format!("tool list: {e}")))?;
        sqlx::query("UPDATE apps SET tools = $1 WHERE id = $2")
            .bind(text)
            .bind(&app.id)
            .execute(self.conn())
            .await?;
        app_in(self.conn(), tenant, team, name).await
    }

    /// Inserts a key for an existing app and returns the stored row.
    pub async fn insert_key(&mut self, key: &NewKey) -> Result<KeyRow, StoreError> {
        let id = new_id("key");
        insert_key_in(self.conn(), &id, key, None).await?;
        key_in(self.conn(), &id).await
    }

    pub async fn key(&mut self, id_or_prefix: &str) -> Result<KeyRow, StoreError> {
        key_in(self.conn(), id_or_prefix).await
    }

    /// Revokes a key now (or at `at`, for a rotation overlap). Revoking twice is a no-op that
    /// keeps the first revocation time.
    pub async fn revoke_key(
        &mut self,
        id_or_prefix: &str,
        at: Option<i64>,
    ) -> Result<KeyRow, StoreError> {
        let key = key_in(self.conn(), id_or_prefix).await?;
        let now = now_ms();
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $1, updated_at = $2 \
             WHERE id = $3 AND (revoked_at IS NULL OR revoked_at > $1)",
        )
        .bind(at.unwrap_or(now))
        .bind(now)
        .bind(&key.id)
        .execute(self.conn())
        .await?;
        key_in(self.conn(), &key.id).await
    }

    /// Issues a successor for a key: the new key inherits the old one's app, env, models and
    /// limits; the old key stops working at `old_revoked_at`.
    pub async fn rotate_key(
        &mut self,
        id_or_prefix: &str,
        successor: &NewKey,
        old_revoked_at: i64,
    ) -> Result<(KeyRow, KeyRow), StoreError> {
        let old = key_in(self.conn(), id_or_prefix).await?;
        let now = now_ms();
        if old.status(now) != "active" {
            return Err(StoreError::Invalid(format!(
                "key {} is {}: only an active key can be rotated",
                old.id,
                old.status(now)
            )));
        }
        let new_id = new_id("key");
        insert_key_in(self.conn(), &new_id, successor, Some(&old.id)).await?;
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $1, updated_at = $2 \
             WHERE id = $3 AND (revoked_at IS NULL OR revoked_at > $1)",
        )
        .bind(old_revoked_at)
        .bind(now)
        .bind(&old.id)
        .execute(self.conn())
        .await?;
        Ok((
            key_in(self.conn(), &old.id).await?,
            key_in(self.conn(), &new_id).await?,
        ))
    }
}

impl Store {
    pub async fn tenant(&self, name: &str) -> Result<Tenant, StoreError> {
        tenant_in(&mut *self.pool().acquire().await?, name).await
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows: Vec<(String, String, i64, String)> =
            sqlx::query_as("SELECT id, name, created_at, regions FROM tenants ORDER BY name")
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(tenant_from).collect())
    }

    pub async fn team(&self, tenant: &str, name: &str) -> Result<Team, StoreError> {
        team_in(&mut *self.pool().acquire().await?, tenant, name).await
    }

    pub async fn list_teams(&self, tenant: Option<&str>) -> Result<Vec<Team>, StoreError> {
        let rows = match tenant {
            Some(t) => {
                sqlx::query(&format!(
                    "{TEAM_SELECT} WHERE tn.name = $1 ORDER BY tn.name, t.name"
                ))
                .bind(t)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(&format!("{TEAM_SELECT} ORDER BY tn.name, t.name"))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        Ok(rows.iter().map(team_row).collect::<Result<_, _>>()?)
    }

    pub async fn app(&self, tenant: &str, team: &str, name: &str) -> Result<App, StoreError> {
        app_in(&mut *self.pool().acquire().await?, tenant, team, name).await
    }

    pub async fn list_apps(
        &self,
        tenant: Option<&str>,
        team: Option<&str>,
    ) -> Result<Vec<App>, StoreError> {
        let sql = format!(
            "{APP_SELECT} WHERE ($1 IS NULL OR tn.name = $1) AND ($2 IS NULL OR t.name = $2) \
             ORDER BY tn.name, t.name, a.name"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant)
            .bind(team)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(app_row).collect::<Result<_, _>>()?)
    }

    /// A key by id (`key_…`) or by its displayed prefix (`ck_live_abc123`), if unambiguous.
    pub async fn key(&self, id_or_prefix: &str) -> Result<KeyRow, StoreError> {
        key_in(&mut *self.pool().acquire().await?, id_or_prefix).await
    }

    pub async fn list_keys(&self, filter: &KeyFilter) -> Result<Vec<KeyRow>, StoreError> {
        let sql = format!(
            "{KEY_SELECT} WHERE ($1 IS NULL OR tn.name = $1) AND ($2 IS NULL OR t.name = $2) \
             AND ($3 IS NULL OR a.name = $3) \
             AND ($4 = 1 OR ((k.revoked_at IS NULL OR k.revoked_at > $5) \
                  AND (k.expires_at IS NULL OR k.expires_at > $5))) \
             ORDER BY k.created_at"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.tenant.as_deref())
            .bind(filter.team.as_deref())
            .bind(filter.app.as_deref())
            .bind(i64::from(filter.include_inactive))
            .bind(now_ms())
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(key_row).collect::<Result<_, _>>()?)
    }

    /// Keys (and keys whose team) changed at or after `since` (epoch ms), for cache refresh.
    pub async fn keys_changed_since(&self, since: i64) -> Result<Vec<KeyRow>, StoreError> {
        let sql = format!("{KEY_SELECT} WHERE k.updated_at >= $1 OR t.updated_at >= $1");
        let rows = sqlx::query(&sql).bind(since).fetch_all(self.pool()).await?;
        Ok(rows.iter().map(key_row).collect::<Result<_, _>>()?)
    }
}

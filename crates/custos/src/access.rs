//! `custos access review`: every principal of a tenant with its roles, keys, grants, creator
//! and last use, and the findings a periodic access review asks about: keys unused or older
//! than the rotation policy, grants that expired without being revoked, admins without MFA.

use crate::{output, Ctx};
use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use custos_core::duration::parse_duration;
use custos_core::time::{format_rfc3339, now_ms};
use custos_finops::focus::csv_line;
use custos_store::{KeyFilter, Store};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum AccessCmd {
    /// Review who can do what in a tenant, and flag what needs attention.
    #[command(
        after_help = "Principals: API keys (service accounts) from the database; users (token subjects)\nas the ledger last saw them, with their roles and MFA state; holders of grants.\n\nFlags: unused (no use for --unused-after, default 90d), stale-key (older than\n--rotate-after, default 90d), expired-grant (approved, expired, never revoked),\nadmin-without-mfa (an admin role seen without a second factor).\n\nExit status: 0 with no flags, 1 when something is flagged.\n\nExamples:\n  custos access review --tenant acme\n  custos access review --tenant acme --format csv > review-2026Q4.csv"
    )]
    Review(ReviewArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Args, Debug)]
pub struct ReviewArgs {
    /// Tenant whose principals are reviewed.
    #[arg(long, default_value = crate::identity::DEFAULT_TENANT)]
    pub(crate) tenant: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// A credential not used for this long is flagged `unused`.
    #[arg(long, default_value = "90d")]
    unused_after: String,
    /// A key older than this is flagged `stale-key` (the rotation policy).
    #[arg(long, default_value = "90d")]
    rotate_after: String,
    #[command(flatten)]
    pub(crate) change: crate::control::ChangeArgs,
}

/// Roles whose holders must prove a second factor.
const ADMIN_ROLES: &[&str] = &["tenant-admin", "security-admin", "operator"];

#[derive(Default)]
struct Row {
    principal: String,
    kind: &'static str,
    roles: Vec<String>,
    team: String,
    app: String,
    keys: Vec<String>,
    grants: Vec<String>,
    created_at: Option<i64>,
    creator: Option<String>,
    last_use: Option<i64>,
    status: String,
    flags: Vec<String>,
}

/// What the ledger says: who created each key, and each user's last appearance.
struct Sightings {
    creators: HashMap<String, String>,
    users: BTreeMap<String, (i64, Vec<String>, bool)>,
}

async fn scan_ledger(store: &Store, tenant: &str) -> Result<Sightings> {
    let mut s = Sightings {
        creators: HashMap::new(),
        users: BTreeMap::new(),
    };
    let mut from = 0i64;
    const PAGE: i64 = 5_000;
    loop {
        let page = store.ledger_entries(from, PAGE).await?;
        let Some(last) = page.last() else { break };
        from = last.index + 1;
        // Users are sealed in the ledger: opened while their key lives (an erased one is
        // reviewed as erased:KEYID).
        let mut values: Vec<Value> = page
            .iter()
            .map(|e| serde_json::from_str(&e.event).unwrap_or(Value::Null))
            .collect();
        custos_control::seal::reveal(store, &mut values).await?;
        for (e, v) in page.iter().zip(values) {
            if v.is_null() {
                continue;
            }
            let actor = &v["actor"];
            if matches!(v["activity"].as_str(), Some("key.create" | "key.rotate")) {
                if let (Some(id), Some(by)) =
                    (v["resources"][0]["id"].as_str(), actor["id"].as_str())
                {
                    if v["resources"][0]["tenant"] == tenant {
                        s.creators.insert(id.to_owned(), by.to_owned());
                    }
                }
            }
            if actor["type"] == "user" && actor["tenant"] == tenant && actor["auth"] != "local" {
                if let Some(sub) = actor["id"].as_str() {
                    // Users are named as grants name them: ISSUER#SUBJECT, so a namesake at
                    // another issuer is another row.
                    let id = match actor["issuer"].as_str() {
                        Some(iss) if !iss.is_empty() => format!("{iss}#{sub}"),
                        _ => sub.to_owned(),
                    };
                    let roles = actor["roles"]
                        .as_array()
                        .map(|r| {
                            r.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    let mfa = actor["mfa"].as_bool().unwrap_or(false);
                    s.users.insert(id, (e.recorded_at, roles, mfa));
                }
            }
        }
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    Ok(s)
}

pub async fn run(ctx: &Ctx, cmd: AccessCmd) -> Result<ExitCode> {
    let AccessCmd::Review(a) = cmd;
    let unused_ms = parse_duration(&a.unused_after)
        .map_err(|e| anyhow::anyhow!("--unused-after: {e}"))?
        .as_millis() as i64;
    let rotate_ms = parse_duration(&a.rotate_after)
        .map_err(|e| anyhow::anyhow!("--rotate-after: {e}"))?
        .as_millis() as i64;
    let store = crate::identity::open(ctx).await?;
    if store.tenant(&a.tenant).await.is_err() {
        bail!("no tenant {:?}; `custos tenants list` shows them", a.tenant);
    }
    let now = now_ms();
    let keys = store
        .list_keys(&KeyFilter {
            tenant: Some(a.tenant.clone()),
            include_inactive: true,
            ..KeyFilter::default()
        })
        .await?;
    let last_use = store.last_use_by_credential(&a.tenant).await?;
    let grants = store.grants_list(Some(&a.tenant)).await?;
    let seen = scan_ledger(&store, &a.tenant).await?;

    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for k in &keys {
        let status = k.status(now).to_owned();
        let used = last_use.get(&k.id).copied();
        let mut flags = Vec::new();
        if status == "active" {
            if now - used.unwrap_or(k.created_at) >= unused_ms {
                flags.push("unused".to_owned());
            }
            if now - k.created_at >= rotate_ms {
                flags.push("stale-key".to_owned());
            }
        }
        rows.insert(
            k.id.clone(),
            Row {
                principal: k.id.clone(),
                kind: "service_account",
                roles: vec!["service".into()],
                team: k.team.clone(),
                app: k.app.clone(),
                keys: vec![k.prefix.clone()],
                created_at: Some(k.created_at),
                creator: seen.creators.get(&k.id).cloned(),
                last_use: used,
                status,
                flags,
                ..Row::default()
            },
        );
    }
    for (id, (at, roles, mfa)) in &seen.users {
        let row = rows.entry(id.clone()).or_insert_with(|| Row {
            principal: id.clone(),
            kind: "user",
            status: "seen".into(),
            ..Row::default()
        });
        row.roles = roles.clone();
        row.last_use = Some(row.last_use.unwrap_or(0).max(*at));
        if now - at >= unused_ms {
            row.flags.push("unused".into());
        }
        if !mfa && roles.iter().any(|r| ADMIN_ROLES.contains(&r.as_str())) {
            row.flags.push("admin-without-mfa".into());
        }
    }
    for g in &grants {
        let row = rows.entry(g.principal.clone()).or_insert_with(|| Row {
            principal: g.principal.clone(),
            kind: if g.principal.starts_with("key_") {
                "service_account"
            } else {
                "user"
            },
            status: "grant-holder".into(),
            ..Row::default()
        });
        let state = g.state(now);
        row.grants.push(format!(
            "{} {} ({}{})",
            g.role,
            state,
            g.kind.as_str(),
            g.expires_at
                .map(|e| format!(", until {}", format_rfc3339(e)))
                .unwrap_or_default()
        ));
        if state == "expired" && g.revoked_at.is_none() {
            row.flags.push(format!("expired-grant:{}", g.id));
        }
        if state == "live" && ADMIN_ROLES.contains(&g.role.as_str()) {
            row.roles.push(format!("{} (granted)", g.role));
        }
    }
    let flagged = rows.values().filter(|r| !r.flags.is_empty()).count();
    let as_json = |r: &Row| {
        json!({
            "principal": r.principal, "type": r.kind, "roles": r.roles, "team": r.team,
            "app": r.app, "keys": r.keys, "grants": r.grants,
            "created_at": r.created_at.map(format_rfc3339), "creator": r.creator,
            "last_use": r.last_use.map(format_rfc3339), "status": r.status, "flags": r.flags,
        })
    };
    let cells = |r: &Row| {
        vec![
            r.principal.clone(),
            r.kind.to_owned(),
            r.roles.join(" "),
            [r.team.as_str(), r.app.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/"),
            r.status.clone(),
            r.created_at
                .map(format_rfc3339)
                .unwrap_or_else(|| "-".into()),
            r.creator.clone().unwrap_or_else(|| "-".into()),
            r.last_use
                .map(format_rfc3339)
                .unwrap_or_else(|| "never".into()),
            r.grants.join("; "),
            r.flags.join(" "),
        ]
    };
    const HEADERS: [&str; 10] = [
        "PRINCIPAL",
        "TYPE",
        "ROLES",
        "TEAM/APP",
        "STATUS",
        "CREATED",
        "CREATOR",
        "LAST USE",
        "GRANTS",
        "FLAGS",
    ];
    // The review is evidence too: who ran it, when, and the digest of what it found.
    let findings = json!({
        "tenant": a.tenant,
        "reviewed_at": format_rfc3339(now),
        "principals": rows.values().map(as_json).collect::<Vec<_>>(),
        "flagged": flagged,
    });
    let control = crate::control::open(ctx).await?;
    let actor = crate::control::actor(ctx, control.store(), &a.change).await?;
    let recorded = control
        .record_access_review(
            &actor,
            &a.tenant,
            &findings,
            rows.len(),
            flagged,
            &a.change.reason()?,
        )
        .await?;
    let format = if ctx.json { Format::Json } else { a.format };
    match format {
        Format::Json => {
            let mut out = findings;
            out["findings_digest"] = json!(recorded.value);
            out["ledger_index"] = json!(recorded.ledger.start);
            output::json(&out)
        }
        Format::Csv => {
            let mut out = csv_line(&HEADERS.map(|h| h.to_lowercase().replace([' ', '/'], "_")));
            for r in rows.values() {
                out.push_str(&csv_line(&cells(r)));
            }
            print!("{out}");
        }
        Format::Table => {
            output::table(&HEADERS, &rows.values().map(cells).collect::<Vec<_>>());
            println!(
                "{} principals, {flagged} flagged; recorded as ledger entry {} (findings {})",
                rows.len(),
                recorded.ledger.start,
                recorded.value
            );
        }
    }
    Ok(if flagged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

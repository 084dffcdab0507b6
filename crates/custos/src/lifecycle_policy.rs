//! `custos lifecycle plan|apply`: retention and tiering per data class over an object store
//! (a local folder, or S3 and compatible stores through `object_store`). The plan names each
//! object's action and why; apply does it, first on a canary prefix if asked, and ledgers
//! every action. Legal holds and registered artifacts are never expired or moved.

use crate::control::ChangeArgs;
use crate::{output, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use custos_core::config::LifecycleConfig;
use custos_govern::lifecycle::policy::{self, Action, Class, Object};
use custos_govern::release::DatasetFacts;
use futures_util::TryStreamExt;
use object_store::ObjectStore;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Subcommand, Debug)]
pub enum LifecycleCmd {
    /// What the data classes' retention and tiering would delete or move now (or at --at),
    /// what holds and the registry keep, and what custos' own retention would do.
    #[command(
        after_help = "Configure in custos.toml:\n  [lifecycle]\n  store = \"data\"                 # a folder, or s3://bucket/prefix (AWS_* environment)\n  [[lifecycle.class]]\n  name = \"bronze\"\n  prefixes = [\"raw/logs/\"]\n  retention = \"30d\"\n  tier_after = \"7d\"\n  tier_prefix = \"archive/raw/logs/\"\n  [lifecycle.custos]               # custos' own records\n  usage_records = \"400d\"          # deleted after (daily rollups stay)\n  end_user_ids = \"90d\"            # cleared from usage records after\n  ledger = \"7y\"                   # due for the signed prune after (custos audit prune)\n\nExample:\n  custos lifecycle plan --at 2027-01-01T00:00:00Z"
    )]
    Plan {
        /// Plan as of this RFC 3339 time instead of now.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Carry out the plan, each action in the ledger; with --canary, only under one prefix
    /// first.
    #[command(
        after_help = "Example:\n  custos lifecycle apply --canary raw/logs/2025/ --why \"CHG-77 retention rollout\"\n  custos lifecycle apply --why \"CHG-77 retention rollout\""
    )]
    Apply {
        /// Judge ages as of this time (RFC 3339; default now).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Apply only to objects under this prefix.
        #[arg(long, value_name = "PREFIX")]
        canary: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
}

/// The configured store and how its objects are named outside it (for holds and the
/// registry's locations).
struct Store {
    inner: Arc<dyn ObjectStore>,
    /// `s3://bucket/` or the local root with a trailing `/`.
    base: String,
}

fn open_store(cfg: &LifecycleConfig) -> Result<Store> {
    let url = cfg
        .store
        .as_deref()
        .context("no [lifecycle] store is configured: set store = \"data\" (a folder) or \"s3://bucket/prefix\"")?;
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("[lifecycle] store {url:?} names no bucket");
        }
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if std::env::var("AWS_ENDPOINT")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .is_ok_and(|e| e.starts_with("http://"))
        {
            b = b.with_allow_http(true);
        }
        let s3 = b
            .build()
            .map_err(|e| anyhow!("[lifecycle] store {url:?}: {e}"))?;
        let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
        };
        let base = format!(
            "s3://{bucket}/{}",
            if prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", prefix.trim_end_matches('/'))
            }
        );
        return Ok(Store { inner, base });
    }
    if url.contains("://") && !url.starts_with("file://") {
        bail!("[lifecycle] store {url:?}: custos reads local folders and s3:// stores");
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
        .map_err(|e| anyhow!("[lifecycle] store {path:?}: {e}"))?;
    Ok(Store {
        inner: Arc::new(fs),
        base: format!("{}/", path.trim_end_matches('/')),
    })
}

fn classes(cfg: &LifecycleConfig) -> Vec<Class> {
    cfg.class
        .iter()
        .map(|c| Class {
            name: c.name.clone(),
            prefixes: c.prefixes.clone(),
            retention_ms: c.retention.map(|d| d.0.as_millis() as i64),
            tier_after_ms: c.tier_after.map(|d| d.0.as_millis() as i64),
            tier_prefix: c.tier_prefix.clone(),
        })
        .collect()
}

/// Lists the classes' objects, bounded.
async fn objects(store: &Store, classes: &[Class]) -> Result<Vec<Object>> {
    const MAX_OBJECTS: usize = 1_000_000;
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for c in classes {
        for p in &c.prefixes {
            let prefix = object_store::path::Path::from(p.trim_end_matches('/'));
            let mut list = store.inner.list(Some(&prefix));
            while let Some(m) = list
                .try_next()
                .await
                .map_err(|e| anyhow!("listing {p}: {e}"))?
            {
                let path = m.location.to_string();
                if !seen.insert(path.clone()) {
                    continue;
                }
                if out.len() >= MAX_OBJECTS {
                    bail!("more than {MAX_OBJECTS} objects under the classes' prefixes; split the classes");
                }
                out.push(Object {
                    path,
                    size: m.size,
                    modified_ms: m.last_modified.timestamp_millis(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The cutoffs of custos' own retention as of `now`.
struct OwnCutoffs {
    usage: Option<i64>,
    end_users: Option<i64>,
    ledger: Option<i64>,
}

fn own_cutoffs(cfg: &LifecycleConfig, now: i64) -> OwnCutoffs {
    let before = |d: Option<custos_core::config::HumanDuration>| {
        d.map(|d| now.saturating_sub(i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX)))
    };
    OwnCutoffs {
        usage: before(cfg.custos.usage_records),
        end_users: before(cfg.custos.end_user_ids),
        ledger: before(cfg.custos.ledger),
    }
}

/// What custos' own retention would do now: usage records deleted, end-user ids cleared,
/// ledger events due for a signed prune, and the gateway's stored responses (which expire
/// by themselves).
async fn own_plan(ctx: &Ctx, db: &custos_store::Store, now: i64) -> Result<Vec<Value>> {
    let cfg = &ctx.config.lifecycle.custos;
    let cut = own_cutoffs(&ctx.config.lifecycle, now);
    let f = custos_core::time::format_rfc3339;
    let mut out = Vec::new();
    if let (Some(t), Some(r)) = (cut.usage, cfg.usage_records) {
        let (n, _) = db.usage_before(t).await?;
        out.push(json!({"data": "usage records", "retention": r.to_string(), "before": f(t),
                        "count": n, "action": "delete",
                        "why": "past [lifecycle.custos] usage_records; daily rollups stay for reports"}));
    }
    if let (Some(t), Some(r)) = (cut.end_users, cfg.end_user_ids) {
        let (_, u) = db.usage_before(t).await?;
        out.push(
            json!({"data": "end-user ids in usage records", "retention": r.to_string(),
                        "before": f(t), "count": u, "action": "clear",
                        "why": "past [lifecycle.custos] end_user_ids"}),
        );
    }
    if let (Some(t), Some(r)) = (cut.ledger, cfg.ledger) {
        let base = db.ledger_latest_prune().await?.map_or(0, |p| p.0);
        let n = db.ledger_index_at_time(base, t).await?.saturating_sub(base);
        out.push(json!({"data": "ledger events", "retention": r.to_string(), "before": f(t),
                        "count": n, "action": "prune",
                        "why": "past [lifecycle.custos] ledger; the ledger is pruned only through its signed path, after a verified export",
                        "how": format!("custos audit export --until {} --dir DIR && custos audit prune --before {} --export DIR --key-file KEY --why …", f(t), f(t))}));
    }
    out.push(json!({"data": "gateway stored responses", "retention": ctx.config.idempotency.ttl.to_string(),
                    "action": "expire", "why": "kept in gateway memory for Idempotency-Key replays, then dropped ([idempotency] ttl)"}));
    Ok(out)
}

async fn make_plan(ctx: &Ctx, at: Option<&str>) -> Result<(Option<Store>, Vec<Action>, Value)> {
    let cfg = &ctx.config.lifecycle;
    let own = &cfg.custos;
    if cfg.class.is_empty()
        && own.usage_records.is_none()
        && own.end_user_ids.is_none()
        && own.ledger.is_none()
    {
        bail!("no [[lifecycle.class]] and no [lifecycle.custos] retention is configured; `custos lifecycle plan --help` shows how");
    }
    let now = match at {
        Some(t) => custos_core::time::parse_rfc3339(t).with_context(|| {
            format!("--at {t:?} is not an RFC 3339 time (2027-01-01T00:00:00Z)")
        })?,
        None => custos_core::time::now_ms(),
    };
    let db = crate::identity::open(ctx).await?;
    let own = own_plan(ctx, &db, now).await?;
    if cfg.class.is_empty() {
        let summary = json!({"objects": 0, "delete": 0, "move": 0, "keep": 0,
                             "at": custos_core::time::format_rfc3339(now), "store": null});
        let plan = json!({"summary": summary, "actions": [], "custos": own});
        return Ok((None, Vec::new(), plan));
    }
    let store = open_store(cfg)?;
    let classes = classes(cfg);
    let objects = objects(&store, &classes).await?;
    let holds = db.holds(true).await?;
    // Registered dataset locations: the registry's artifacts are never expired.
    let registered: Vec<(String, String)> = db
        .datasets(None)
        .await?
        .into_iter()
        .map(|d| {
            let f: DatasetFacts = serde_json::from_str(&d.facts).unwrap_or_default();
            (format!("dataset:{}@{}", d.name, d.tag), f.location)
        })
        .filter(|(_, l)| !l.is_empty())
        .collect();
    // Names compare absolute: local locations and holds are written relative to where
    // custos runs, the store's objects are listed relative to its root.
    let cwd = std::env::current_dir()?.display().to_string();
    let full = |p: &str| format!("{}{p}", store.base);
    let norm = |l: &str| {
        let l = l.trim_start_matches("./").trim_end_matches('/');
        if l.contains("://") || l.starts_with('/') {
            l.to_owned()
        } else {
            format!("{cwd}/{l}")
        }
    };
    let held = |p: &str| {
        let f = full(p);
        let rel = f.strip_prefix(&format!("{cwd}/")).unwrap_or(&f).to_owned();
        let found = [f.as_str(), p, rel.as_str()]
            .into_iter()
            .find_map(|name| custos_control::holding(&holds, None, Some(name), None))
            .map(|h| format!("{} ({})", h.id, h.reason));
        found.or_else(|| {
            // A hold on a dataset holds the objects at its location.
            registered.iter().find_map(|(node, loc)| {
                let (name, tag) = node.trim_start_matches("dataset:").split_once('@')?;
                let loc = norm(loc);
                (norm(&f) == loc || norm(&f).starts_with(&format!("{loc}/")))
                    .then(|| custos_control::holding(&holds, Some((name, tag)), None, None))
                    .flatten()
                    .map(|h| format!("{} ({})", h.id, h.reason))
            })
        })
    };
    let protected = |p: &str| {
        let f = norm(&full(p));
        registered
            .iter()
            .find(|(_, loc)| {
                let loc = norm(loc);
                !loc.is_empty() && (f == loc || f.starts_with(&format!("{loc}/")))
            })
            .map(|(node, _)| node.clone())
    };
    let actions = policy::plan(&classes, &objects, now, &held, &protected);
    let count = |k: &str| {
        actions
            .iter()
            .filter(|a| {
                serde_json::to_value(a)
                    .ok()
                    .is_some_and(|v| v["action"] == k)
            })
            .count()
    };
    let summary = json!({"objects": objects.len(), "delete": count("delete"), "move": count("move"),
                         "keep": count("keep"), "at": custos_core::time::format_rfc3339(now),
                         "store": store.base});
    let plan = json!({"summary": summary, "actions": actions, "custos": own});
    Ok((Some(store), actions, plan))
}

fn print_plan(ctx: &Ctx, plan: &Value, summary: bool) {
    if ctx.json {
        output::json(plan);
        return;
    }
    let s = &plan["summary"];
    for a in plan["actions"].as_array().into_iter().flatten() {
        let what = match a["action"].as_str() {
            Some("move") => format!(
                "move {} -> {}",
                a["path"].as_str().unwrap_or(""),
                a["to"].as_str().unwrap_or("")
            ),
            Some(k) => format!("{k} {}", a["path"].as_str().unwrap_or("")),
            None => continue,
        };
        println!(
            "{what}\t[{}] {}",
            a["class"].as_str().unwrap_or(""),
            a["why"].as_str().unwrap_or("")
        );
    }
    if !summary {
        return;
    }
    for o in plan["custos"].as_array().into_iter().flatten() {
        let count = o["count"]
            .as_u64()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        println!(
            "{} custos: {}{count}\t[retention {}] {}",
            o["action"].as_str().unwrap_or(""),
            o["data"].as_str().unwrap_or(""),
            o["retention"].as_str().unwrap_or(""),
            o["how"].as_str().or(o["why"].as_str()).unwrap_or("")
        );
    }
    if let Some(store) = s["store"].as_str() {
        eprintln!(
            "{} objects in {} at {}: {} to delete, {} to move, {} kept (holds, registered artifacts)",
            s["objects"],
            store,
            s["at"].as_str().unwrap_or(""),
            s["delete"],
            s["move"],
            s["keep"]
        );
    }
}

pub async fn run(ctx: &Ctx, cmd: LifecycleCmd) -> Result<ExitCode> {
    match cmd {
        LifecycleCmd::Plan { at } => {
            let (_, _, plan) = make_plan(ctx, at.as_deref()).await?;
            print_plan(ctx, &plan, true);
            Ok(ExitCode::SUCCESS)
        }
        LifecycleCmd::Apply { at, canary, change } => {
            let (store, actions, plan) = make_plan(ctx, at.as_deref()).await?;
            let reason = change.reason()?;
            let control = crate::control::open(ctx).await?;
            let actor = crate::control::actor(ctx, control.store(), &change).await?;
            let run = control
                .begin_lifecycle_run(&actor, &plan, &reason)
                .await?
                .value;
            let mut done = Vec::new();
            let mut failed = 0;
            for a in &actions {
                if canary.as_deref().is_some_and(|c| !a.path().starts_with(c)) {
                    continue;
                }
                let mut rec = serde_json::to_value(a)?;
                let Some(store) = &store else { break };
                let result = match a {
                    Action::Delete { path, .. } => store
                        .inner
                        .delete(&object_store::path::Path::from(path.as_str()))
                        .await
                        .map_err(|e| e.to_string()),
                    Action::Move { path, to, .. } => {
                        let from = object_store::path::Path::from(path.as_str());
                        let to = object_store::path::Path::from(to.as_str());
                        // Copy, then delete: an interrupted move leaves both, never neither.
                        match store.inner.copy(&from, &to).await {
                            Ok(()) => store.inner.delete(&from).await.map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Action::Keep { .. } => Ok(()),
                };
                if let Err(e) = result {
                    failed += 1;
                    rec["error"] = json!(e);
                    rec["action"] = json!("failed");
                    eprintln!("  {}: {e}", a.path());
                }
                done.push(rec);
            }
            let recorded = control
                .record_lifecycle_actions(&actor, &run, &done, &reason)
                .await?;
            // custos' own records: not in a canary run, which is about one prefix.
            let mut own = json!(null);
            if canary.is_none() {
                let now = match plan["summary"]["at"].as_str() {
                    Some(t) => custos_core::time::parse_rfc3339(t)
                        .unwrap_or_else(custos_core::time::now_ms),
                    None => custos_core::time::now_ms(),
                };
                let cut = own_cutoffs(&ctx.config.lifecycle, now);
                if cut.usage.is_some() || cut.end_users.is_some() {
                    let r = control
                        .apply_own_retention(&actor, &run, cut.usage, cut.end_users, &reason)
                        .await?;
                    own =
                        json!({"usage_records_deleted": r.value.0, "end_users_cleared": r.value.1});
                    if !ctx.json {
                        eprintln!(
                            "custos: {} usage records deleted, {} end-user ids cleared; ledger entry {}",
                            r.value.0,
                            r.value.1,
                            r.ledger.end.saturating_sub(1)
                        );
                    }
                }
                if let Some(l) = plan["custos"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|o| o["action"] == "prune" && o["count"].as_u64().unwrap_or(0) > 0)
                {
                    if !ctx.json {
                        eprintln!(
                            "custos: {} ledger events are past retention; prune them through the signed path: {}",
                            l["count"],
                            l["how"].as_str().unwrap_or("")
                        );
                    }
                    own["ledger_due"] = l.clone();
                }
            }
            if ctx.json {
                output::json(
                    &json!({"run": run, "applied": done, "failed": failed, "canary": canary, "custos": own}),
                );
            } else {
                print_plan(
                    ctx,
                    &json!({"summary": plan["summary"], "actions": done}),
                    false,
                );
                eprintln!(
                    "lifecycle run {run}{}: {} actions applied, {failed} failed; ledger entries {}..{}",
                    canary.as_deref().map(|c| format!(" (canary {c})")).unwrap_or_default(),
                    done.len() - failed,
                    recorded.ledger.start,
                    recorded.ledger.end.saturating_sub(1)
                );
            }
            Ok(if failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

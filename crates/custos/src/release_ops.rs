//! `custos release` after activation: post-checks (and rollback on a breach), proof artifacts
//! and their offline verification, the failed-release drill, SLO budgets, the change calendar
//! and overdue emergency follow-ups. Changes go through the control plane.

use crate::{output, Ctx};
use anyhow::{bail, Context, Result};
use custos_control::{Actor, Control, PostCheckOutcome};
use custos_core::time::{format_rfc3339, now_ms};
use custos_core::Reason;
use custos_govern::release::health::Slice;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

fn slice_line(s: &Slice) -> String {
    format!(
        "{} calls, {:.1}% errors, p99 {} ms, {:.6} per call, {:.1}% guardrail refusals",
        s.calls,
        s.error_rate * 100.0,
        s.p99_ms,
        s.cost_per_call_nanos as f64 / 1e9,
        s.guard_rate * 100.0
    )
}

/// Prints a post-check's outcome; the exit code is 1 on a breach.
fn report(ctx: &Ctx, o: &PostCheckOutcome) -> ExitCode {
    let c = &o.check.value;
    if ctx.json {
        output::json(
            &json!({"post_check": c, "ledger_index": o.check.ledger.start,
            "rolled_back_to": o.rollback.as_ref().map(|r| &r.value.release.id)}),
        );
    } else {
        println!(
            "post-check of {} from {} to {}: {}",
            c.release,
            format_rfc3339(c.from_ms),
            format_rfc3339(c.until_ms),
            c.verdict.status
        );
        match (&c.before, &c.previous) {
            (Some(b), Some(p)) => println!("  before ({p}): {}", slice_line(b)),
            _ => println!("  before: no previous release"),
        }
        println!("  after: {}", slice_line(&c.after));
        for b in &c.verdict.breaches {
            println!("  - {b}");
        }
        if c.truncated {
            println!("  (guardrail refusals counted over the first 2,000,000 ledger entries of the window)");
        }
        match &o.rollback {
            Some(r) => eprintln!(
                "rolled back to {}; ledger entry {}",
                r.value.release.id,
                r.ledger.end.saturating_sub(1)
            ),
            None if c.verdict.breached() => eprintln!(
                "the release breached its post-check; roll back with: custos release rollback {} --tenant {} --why …",
                c.app, c.tenant
            ),
            None => {}
        }
    }
    if c.verdict.breached() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Waits out the post-check window after a promotion (progress on standard error), then
/// checks.
#[allow(clippy::too_many_arguments)]
pub async fn watch(
    ctx: &Ctx,
    control: &Control,
    actor: &Actor,
    id: &str,
    promoted_at: i64,
    window: Duration,
    auto_rollback: bool,
    reason: &Reason,
) -> Result<ExitCode> {
    let until = promoted_at + window.as_millis() as i64;
    eprintln!(
        "post-checking {id} until {} (Ctrl-C stops watching; `custos release check {id}` checks later)",
        format_rfc3339(until)
    );
    loop {
        let left = until - now_ms();
        if left <= 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(left.min(10_000) as u64)).await;
        let seen = control
            .store()
            .usage_release_calls(id, promoted_at, now_ms() + 1, 1_000_000)
            .await?;
        let errors = seen.iter().filter(|c| c.0 >= 500).count();
        eprintln!(
            "  {} s left: {} calls, {errors} errors so far",
            (until - now_ms()).max(0) / 1000,
            seen.len()
        );
    }
    let o = control
        .post_check_release(actor, id, promoted_at, until, auto_rollback, reason)
        .await?;
    let code = report(ctx, &o);
    if o.rollback.is_some() {
        proof_after_change(ctx, id).await;
    }
    Ok(code)
}

/// Post-checks an active release over the time since its promotion.
pub async fn check(
    ctx: &Ctx,
    control: &Control,
    actor: &Actor,
    id: &str,
    auto_rollback: bool,
    reason: &Reason,
) -> Result<ExitCode> {
    let r = control.store().release(id).await?;
    if r.state != "active" {
        bail!(
            "release {id} is {}; a post-check watches the active release",
            r.state
        );
    }
    let o = control
        .post_check_release(actor, id, r.updated_at, now_ms() + 1, auto_rollback, reason)
        .await?;
    Ok(report(ctx, &o))
}

fn key_file(ctx: &Ctx, given: Option<&Path>) -> Option<PathBuf> {
    given
        .map(Path::to_path_buf)
        .or_else(|| ctx.config.audit.checkpoint_key_file.clone())
}

/// The artifact of release `id`, signing a checkpoint first when the latest one predates its
/// events and a key is at hand.
async fn build_proof(ctx: &Ctx, id: &str, key: Option<&Path>) -> Result<Value> {
    let control = crate::control::open(ctx).await?;
    match control.release_proof(id).await {
        Err(custos_control::ControlError::NotCovered { .. }) if key_file(ctx, key).is_some() => {
            let key = key_file(ctx, key).unwrap_or_default();
            crate::audit::checkpoint(ctx, &key).await?;
            Ok(control.release_proof(id).await?)
        }
        other => Ok(other?),
    }
}

/// Writes a new file (fsynced), never over an existing one; `-` is standard output.
pub(crate) fn write_new(out: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    if out.as_os_str() == "-" {
        println!("{text}");
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| {
            format!(
                "cannot create {} (evidence files are never overwritten; choose a new name)",
                out.display()
            )
        })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))
}

/// Also keeps the artifact beside the anchored checkpoints, read-only, when `[audit]
/// anchor_dir` is set: the WORM copy.
fn keep_in_anchor_dir(ctx: &Ctx, id: &str, artifact: &Value) -> Result<Option<PathBuf>> {
    let Some(dir) = &ctx.config.audit.anchor_dir else {
        return Ok(None);
    };
    let dir = dir.join("release-proofs");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!(
        "{id}-{}.json",
        artifact["tree_size"].as_u64().unwrap_or(0)
    ));
    if path.exists() {
        return Ok(Some(path));
    }
    write_new(&path, &serde_json::to_string_pretty(artifact)?)?;
    let mut perms = std::fs::metadata(&path)?.permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&path, perms)?;
    Ok(Some(path))
}

/// After a promotion or rollback: with a ledger key at hand ($CUSTOS_LEDGER_KEY_FILE or
/// `[audit] checkpoint_key_file`) and `[audit] anchor_dir` set, the release's proof artifact
/// is written there at once, read-only; otherwise the hint to write one.
pub async fn proof_after_change(ctx: &Ctx, id: &str) {
    let key = std::env::var_os("CUSTOS_LEDGER_KEY_FILE").map(PathBuf::from);
    let key = key_file(ctx, key.as_deref());
    if ctx.config.audit.anchor_dir.is_none() || key.is_none() {
        if !ctx.json {
            eprintln!("proof: custos release proof {id} -o proof.json (with [audit] anchor_dir and a ledger key, it is written there on every promotion and rollback)");
        }
        return;
    }
    let kept = async {
        let artifact = build_proof(ctx, id, key.as_deref()).await?;
        keep_in_anchor_dir(ctx, id, &artifact)
    }
    .await;
    match kept {
        Ok(Some(p)) if !ctx.json => eprintln!("proof kept in {}", p.display()),
        Ok(_) => {}
        Err(e) => eprintln!("warning: the proof artifact was not written: {e:#}"),
    }
}

pub async fn proof(ctx: &Ctx, id: &str, out: &Path, key: Option<&Path>) -> Result<ExitCode> {
    let artifact = build_proof(ctx, id, key).await?;
    write_new(out, &serde_json::to_string_pretty(&artifact)?)?;
    let kept = keep_in_anchor_dir(ctx, id, &artifact)?;
    if out.as_os_str() != "-" {
        eprintln!(
            "wrote the proof of {id}'s {} ({} ledger events under the checkpoint of size {}) to {}{}",
            artifact["record"]["event"].as_str().unwrap_or("release"),
            artifact["events"].as_array().map_or(0, Vec::len),
            artifact["tree_size"],
            out.display(),
            kept.map(|p| format!("; kept in {}", p.display()))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn verify_proof(ctx: &Ctx, file: &Path, public_key: &Path) -> Result<ExitCode> {
    let verifier = crate::audit::read_public_key(public_key)?;
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if meta.len() > 256 << 20 {
        bail!(
            "{} is larger than 256 MiB; not a release proof",
            file.display()
        );
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    match custos_govern::release::proof::verify(&v, &verifier) {
        Ok(ok) => {
            if ctx.json {
                output::json(
                    &json!({"verified": true, "release": ok.release, "record": ok.record,
                                     "events": ok.events, "tree_size": ok.tree_size, "log": ok.origin}),
                );
            } else {
                let r = &ok.record;
                eprintln!(
                    "proof verified: release {} {} by {} at {} ({}); {} ledger events in the log {} of size {}",
                    ok.release,
                    r["decision"].as_str().unwrap_or(""),
                    r["who"].as_str().unwrap_or(""),
                    r["when"].as_str().unwrap_or(""),
                    r["why"].as_str().unwrap_or("no reason given"),
                    ok.events,
                    ok.origin,
                    ok.tree_size
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if ctx.json {
                output::json(&json!({"verified": false, "error": e.to_string()}));
            }
            eprintln!("proof NOT verified: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

pub struct DrillArgs {
    pub tenant: String,
    pub app: String,
    pub calls: u32,
    pub failure_rate: f64,
    pub out: PathBuf,
    pub key_file: Option<PathBuf>,
    pub reason: Reason,
}

/// The drill's private gateway: this configuration with every provider the built-in mock
/// failing at `failure_rate`, nothing published outside (no anchors, webhooks, witnesses or
/// checkpoint signing), aliases refreshed quickly.
fn drill_config(config: &custos_core::Config, failure_rate: f64) -> custos_core::Config {
    let mut c = config.clone();
    for p in &mut c.providers {
        p.kind = custos_core::config::ProviderKind::Mock;
        p.failure_rate = Some(failure_rate);
        p.latency = None;
        p.chunk_delay = None;
    }
    c.audit.checkpoint_key_file = None;
    c.audit.anchor_dir = None;
    c.audit.anchor_webhooks.clear();
    c.audit.witnesses.clear();
    c.finops.webhooks.clear();
    c
}

/// Sends `n` chat calls to `alias` through a private gateway; returns (answered 2xx, 5xx).
async fn traffic(
    ctx: &Ctx,
    failure_rate: f64,
    secret: &str,
    alias: &str,
    n: u32,
) -> Result<(u32, u32)> {
    let store = crate::identity::open(ctx).await?;
    let gateway = custos_gateway::Gateway::new(drill_config(&ctx.config, failure_rate), store)
        .await
        .context("cannot start the drill's gateway")?;
    let (mut ok, mut failed) = (0, 0);
    for i in 0..n {
        let body = json!({"model": alias, "messages": [{"role": "user", "content": format!("release drill call {i}")}]});
        let (status, answer) = gateway
            .post(
                "/v1/chat/completions",
                secret,
                body.to_string().into_bytes(),
            )
            .await;
        match status {
            200..=299 => ok += 1,
            500..=599 => failed += 1,
            _ => bail!(
                "the drill's call to {alias:?} was refused with {status}: {}",
                String::from_utf8_lossy(&answer)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ),
        }
    }
    gateway.flush().await;
    Ok((ok, failed))
}

pub async fn drill(ctx: &Ctx, control: &Control, actor: &Actor, a: DrillArgs) -> Result<ExitCode> {
    if !(0.0..=1.0).contains(&a.failure_rate) || a.failure_rate == 0.0 {
        bail!("--failure-rate is a fraction above 0 and at most 1");
    }
    let Some(key) = key_file(ctx, a.key_file.as_deref()) else {
        bail!("the drill's proof needs a signed checkpoint: give --key-file (custos audit keygen makes one) or set [audit] checkpoint_key_file");
    };
    if a.out.as_os_str() != "-" && a.out.exists() {
        bail!("{} exists; proofs are never overwritten", a.out.display());
    }
    let (team, app_name) = a
        .app
        .split_once('/')
        .with_context(|| format!("{:?} is not TEAM/APP", a.app))?;
    let started = std::time::Instant::now();
    let store = control.store();
    let good = store
        .releases(&a.tenant, Some(&a.app))
        .await?
        .into_iter()
        .find(|r| r.state == "active")
        .with_context(|| {
            format!(
                "{}/{} has no active release; the drill rolls back to it, so promote one first",
                a.tenant, a.app
            )
        })?;
    let reason = Reason {
        why: Some(
            a.reason
                .why
                .clone()
                .unwrap_or_else(|| "release drill: a simulated failed release".into()),
        ),
        ticket: a.reason.ticket.clone(),
    };
    eprintln!(
        "drill on {}/{}: the active release is {}",
        a.tenant, a.app, good.id
    );
    let minted = control
        .create_key(
            actor,
            &custos_control::KeyRequest {
                tenant: a.tenant.clone(),
                team: team.into(),
                app: app_name.into(),
                scope: custos_control::KeyScope {
                    models: "*".into(),
                    rpm: None,
                    tpm: None,
                    env: "drill".into(),
                    expires_in_ms: Some(3_600_000),
                    name: Some("release-drill".into()),
                    roles: Vec::new(),
                },
            },
            &reason,
        )
        .await?
        .value;
    let result = drill_steps(ctx, control, actor, &a, app_name, &minted.secret, &reason).await;
    // The drill's key never outlives the drill.
    control
        .revoke_key(actor, Some(&a.tenant), &minted.key.id, &reason)
        .await
        .context("cannot revoke the drill's key")?;
    let (release, outcome) = result?;
    let artifact = build_proof(ctx, &release, Some(&key)).await?;
    write_new(&a.out, &serde_json::to_string_pretty(&artifact)?)?;
    keep_in_anchor_dir(ctx, &release, &artifact)?;
    let signer_pub = custos_ledger::NoteSigner::from_key(
        std::fs::read_to_string(&key)
            .with_context(|| format!("cannot read {}", key.display()))?
            .trim(),
    )
    .with_context(|| format!("{} is not a custos ledger key", key.display()))?
    .verifier();
    custos_govern::release::proof::verify(&artifact, &signer_pub)
        .context("the drill's own proof does not verify")?;
    let rolled = outcome
        .rollback
        .as_ref()
        .map(|r| r.value.release.id.clone());
    if ctx.json {
        output::json(
            &json!({"release": release, "restored": rolled, "post_check": outcome.check.value,
                             "proof": a.out, "seconds": started.elapsed().as_secs_f64()}),
        );
    } else {
        report(ctx, &outcome);
        eprintln!(
            "drill done in {:.1} s: {release} promoted, failed its post-check, {}; proof in {} (custos release verify-proof {} --public-key PUB)",
            started.elapsed().as_secs_f64(),
            match &rolled {
                Some(r) => format!("rolled back to {r}"),
                None => "NOT rolled back".into(),
            },
            a.out.display(),
            a.out.display()
        );
    }
    Ok(if rolled.as_deref() == Some(good.id.as_str()) {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: the drill did not end with {} active again", good.id);
        ExitCode::from(1)
    })
}

async fn drill_steps(
    ctx: &Ctx,
    control: &Control,
    actor: &Actor,
    a: &DrillArgs,
    alias: &str,
    secret: &str,
    reason: &Reason,
) -> Result<(String, PostCheckOutcome)> {
    let (ok, failed) = traffic(ctx, 0.0, secret, alias, a.calls).await?;
    eprintln!("  baseline: {ok} calls answered, {failed} failed");
    let rel = control
        .create_drill_release(actor, &a.tenant, &a.app, reason)
        .await?
        .value
        .release;
    let trust = crate::models::trusted_keys(&ctx.config)?;
    let promoted = control
        .promote_release(actor, &rel.id, &trust, reason)
        .await?;
    let from = promoted.value.release.updated_at;
    eprintln!("  promoted the drill release {}", rel.id);
    let (ok, failed) = traffic(ctx, a.failure_rate, secret, alias, a.calls).await?;
    eprintln!(
        "  after promotion, with {:.0}% injected failures: {ok} answered, {failed} failed",
        a.failure_rate * 100.0
    );
    let outcome = control
        .post_check_release(actor, &rel.id, from, now_ms() + 1, true, reason)
        .await?;
    Ok((rel.id, outcome))
}

pub async fn slo(
    ctx: &Ctx,
    control: &Control,
    tenant: &str,
    app: Option<&str>,
) -> Result<ExitCode> {
    // The same SLOs and numbers as slo_status (the freeze), with the burn rates the
    // gateway exports and alerts on.
    let all: Vec<_> = control
        .slo_burns()
        .await?
        .into_iter()
        .filter(|b| {
            b.state.tenant == tenant
                && !(app.is_some() && b.state.app.is_some() && b.state.app.as_deref() != app)
        })
        .collect();
    if ctx.json {
        output::json(&json!(all));
    } else if all.is_empty() {
        eprintln!("no [[release.slo]] covers this; add one to custos.toml to freeze promotion on a spent error budget");
    } else {
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|b| {
                let s = &b.state;
                let rate = |w: &str| {
                    b.rates
                        .iter()
                        .find(|r| r.window == w)
                        .map_or_else(|| "-".into(), |r| format!("{:.1}x", r.rate))
                };
                vec![
                    s.name.clone(),
                    s.app.clone().unwrap_or_else(|| "(tenant)".into()),
                    format!("{} {}%", s.kind, s.objective),
                    custos_core::config::HumanDuration(Duration::from_millis(s.window_ms))
                        .to_string(),
                    format!("{}/{}", s.budget.bad, s.budget.calls),
                    format!("{:.2}x", s.budget.burn),
                    format!("{} / {} / {}", rate("5m"), rate("1h"), rate("6h")),
                    if b.firing.is_empty() {
                        "-".into()
                    } else {
                        b.firing.join(",")
                    },
                    if s.budget.exhausted { "FROZEN" } else { "ok" }.into(),
                ]
            })
            .collect();
        output::table(
            &[
                "SLO",
                "APP",
                "OBJECTIVE",
                "WINDOW",
                "BAD/CALLS",
                "BURN",
                "RATE 5M / 1H / 6H",
                "ALERTS",
                "STATE",
            ],
            &rows,
        );
    }
    Ok(if all.iter().any(|b| b.state.budget.exhausted) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn calendar(ctx: &Ctx) -> Result<ExitCode> {
    let now = now_ms();
    let r = &ctx.config.release;
    let mut items: Vec<(i64, Value)> = Vec::new();
    for w in &r.freeze {
        let Some((from, until)) = w.bounds() else {
            continue;
        };
        let state = if until <= now {
            "past"
        } else if from <= now {
            "in force"
        } else {
            "upcoming"
        };
        items.push((from, json!({"kind": "freeze", "from": w.from, "until": w.until, "what": w.reason, "state": state})));
    }
    for m in &r.cab {
        let at = custos_core::time::parse_rfc3339(&m.at).unwrap_or(0);
        items.push((
            at,
            json!({"kind": "cab", "from": m.at, "until": null, "what": m.name,
                               "state": if at < now { "past" } else { "upcoming" }}),
        ));
    }
    items.sort_by_key(|(t, _)| *t);
    if ctx.json {
        output::json(&Value::Array(items.into_iter().map(|(_, v)| v).collect()));
    } else if items.is_empty() {
        eprintln!(
            "the calendar is empty: [[release.freeze]] and [[release.cab]] in custos.toml fill it"
        );
    } else {
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|(_, v)| {
                let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
                vec![s("kind"), s("from"), s("until"), s("state"), s("what")]
            })
            .collect();
        output::table(&["KIND", "FROM", "UNTIL", "STATE", "WHAT"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

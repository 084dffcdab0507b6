//! `custos access review`: runs the review in `custos-control` (every principal of a tenant
//! with its roles, keys, grants, creator and last use, and what needs attention) and prints
//! it as a table, CSV or JSON.

use crate::{output, Ctx};
use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use custos_control::ReviewRow;
use custos_core::duration::parse_duration;
use custos_core::time::format_rfc3339;
use custos_finops::focus::csv_line;
use serde_json::json;
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

pub async fn run(ctx: &Ctx, cmd: AccessCmd) -> Result<ExitCode> {
    let AccessCmd::Review(a) = cmd;
    let unused_ms = parse_duration(&a.unused_after)
        .map_err(|e| anyhow::anyhow!("--unused-after: {e}"))?
        .as_millis() as i64;
    let rotate_ms = parse_duration(&a.rotate_after)
        .map_err(|e| anyhow::anyhow!("--rotate-after: {e}"))?
        .as_millis() as i64;
    let control = crate::control::open(ctx).await?;
    let actor = crate::control::actor(ctx, control.store(), &a.change).await?;
    let review = control
        .access_review(&actor, &a.tenant, unused_ms, rotate_ms, &a.change.reason()?)
        .await?;
    let custos_control::AccessReview {
        rows,
        flagged,
        findings,
        digest,
    } = review.value;
    let cells = |r: &ReviewRow| {
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
    let format = if ctx.json { Format::Json } else { a.format };
    match format {
        Format::Json => {
            let mut out = findings;
            out["findings_digest"] = json!(digest);
            out["ledger_index"] = json!(review.ledger.start);
            output::json(&out)
        }
        Format::Csv => {
            let mut out = csv_line(&HEADERS.map(|h| h.to_lowercase().replace([' ', '/'], "_")));
            for r in &rows {
                out.push_str(&csv_line(&cells(r)));
            }
            print!("{out}");
        }
        Format::Table => {
            output::table(&HEADERS, &rows.iter().map(cells).collect::<Vec<_>>());
            println!(
                "{} principals, {flagged} flagged; recorded as ledger entry {} (findings {})",
                rows.len(),
                review.ledger.start,
                digest
            );
        }
    }
    Ok(if flagged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

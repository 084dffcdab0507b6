//! The console's audit pages: search a tenant's ledger events, open one, download its
//! inclusion proof (the JSON `custos audit verify-proof` checks offline) and verify it in
//! the browser against a public key the reader trusts.

use super::pages::{control_error, store_error, Page};
use super::view::{self, badge, enc, notice};
use super::{error_page, html_page};
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use custos_core::time::format_rfc3339;
use http::{header, StatusCode};
use maud::html;
use serde_json::Value;

/// Events one search page shows.
const PAGE_SIZE: usize = 50;

/// The short label of an event's first resource: `type name`.
fn resource_label(ev: &Value) -> String {
    let r = &ev["resources"][0];
    let kind = r["type"].as_str().unwrap_or("");
    let name = r["name"]
        .as_str()
        .or_else(|| r["id"].as_str())
        .unwrap_or("");
    format!("{kind} {name}").trim().to_owned()
}

fn outcome_tone(outcome: &str) -> &'static str {
    match outcome {
        "allowed" | "success" => "good",
        "denied" | "failure" => "bad",
        _ => "muted",
    }
}

/// The tenant's events, newest first, filtered by activity prefix and by text.
pub(crate) async fn list(p: Page) -> Response {
    let tenant = tri!(p.tenant_for("audit.read").await);
    let Page { s, v, q, .. } = p;
    let activity = q
        .get("activity")
        .map(|a| a.trim().to_owned())
        .unwrap_or_default();
    let text = q
        .get("q")
        .map(|t| t.trim().to_lowercase())
        .unwrap_or_default();
    let before = match q.get("before").filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => match b.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Invalid request",
                    "`before` is a ledger index, 0 or more.",
                )
            }
        },
    };
    let keep = |ev: &Value| {
        (activity.is_empty()
            || ev["activity"]
                .as_str()
                .is_some_and(|a| a.starts_with(activity.as_str())))
            && (text.is_empty() || ev.to_string().to_lowercase().contains(&text))
    };
    let (entries, next_before) = tri!(crate::admin::tenant_entries(
        &s.store, &tenant, before, PAGE_SIZE, keep
    )
    .await
    .map_err(store_error));
    let mut events: Vec<Value> = entries.iter().map(|(_, ev)| ev.clone()).collect();
    tri!(custos_control::seal::reveal(&s.store, &mut events)
        .await
        .map_err(store_error));
    let newer_first: Vec<_> = entries.iter().zip(&events).rev().collect();
    let older = next_before.map(|b| {
        format!(
            "/console/audit?tenant={}&activity={}&q={}&before={b}",
            enc(&tenant),
            enc(&activity),
            enc(&text)
        )
    });
    let body = html! {
        h1 { "Audit" }
        form.filters method="get" action="/console/audit" {
            input type="hidden" name="tenant" value=(tenant);
            label { "Activity (prefix)" input name="activity" value=(activity) placeholder="release., key.revoke" size="20"; }
            label { "Text" input name="q" value=(text) placeholder="a request id, a key, a reason" size="28"; }
            button type="submit" { "Search" }
        }
        @if newer_first.is_empty() {
            p.muted { "No events of this tenant match." }
        } @else {
            table {
                thead { tr {
                    th.num { "#" } th { "time" } th { "activity" } th { "actor" }
                    th { "outcome" } th { "resource" } th { "why" }
                } }
                tbody {
                    @for ((e, _), ev) in &newer_first {
                        tr {
                            td.num.mono { a href={ "/console/audit/" (e.index) "?tenant=" (enc(&tenant)) } { (e.index) } }
                            td { (format_rfc3339(e.recorded_at)[..19].replace('T', " ")) }
                            td.mono { (ev["activity"].as_str().unwrap_or("")) }
                            td.mono { (ev["actor"]["id"].as_str().unwrap_or("")) }
                            td { @if let Some(o) = ev["outcome"].as_str() { (badge(o, outcome_tone(o))) } }
                            td { (resource_label(ev)) }
                            td { (ev["why"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        @if let Some(o) = older {
            p { a.button.secondary href=(o) { "Older events" } }
        }
        p.hint { "A search reads back at most 200,000 ledger entries at a time; “Older events” goes on from there." }
    };
    html_page(view::page(
        &v.frame("Audit", "/console/audit", &tenant),
        body,
    ))
}

/// The entry `index` when it concerns `tenant`; else "not found", as if absent.
async fn entry_of(
    s: &crate::state::AppState,
    tenant: &str,
    index: u64,
) -> Result<custos_store::LedgerEntry, Response> {
    let not_found = || {
        error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("There is no ledger entry {index} of tenant {tenant:?}."),
        )
    };
    let entry = s
        .store
        .ledger_entries(i64::try_from(index).unwrap_or(i64::MAX), 1)
        .await
        .map_err(store_error)?
        .into_iter()
        .next()
        .filter(|e| u64::try_from(e.index).ok() == Some(index))
        .ok_or_else(not_found)?;
    if !crate::admin::entry_concerns(&entry.event, tenant) {
        return Err(not_found());
    }
    Ok(entry)
}

/// This gateway's ledger public key, when it signs checkpoints itself.
fn gateway_key(s: &crate::state::AppState) -> Option<String> {
    let path = s.config.audit.checkpoint_key_file.as_ref()?;
    let text = std::fs::read_to_string(path).ok()?;
    custos_ledger::NoteSigner::from_key(&text)
        .ok()
        .map(|k| k.verifier().to_key_string())
}

/// One event: as recorded, its leaf hash, and its proof to download or verify here.
pub(crate) async fn entry(p: Page, Path(index): Path<u64>) -> Response {
    let tenant = tri!(p.tenant_for("audit.read").await);
    let Page { s, v, .. } = p;
    let e = tri!(entry_of(&s, &tenant, index).await);
    let mut shown = [serde_json::from_str::<Value>(&e.event).unwrap_or(Value::Null)];
    tri!(custos_control::seal::reveal(&s.store, &mut shown)
        .await
        .map_err(store_error));
    let pretty = serde_json::to_string_pretty(&shown[0]).unwrap_or_default();
    let covered = match s.store.ledger_latest_checkpoint().await {
        Ok(Some((size, _))) => Some(size).filter(|size| index < *size),
        Ok(None) => None,
        Err(e) => return store_error(e),
    };
    let proof_url = format!("/console/audit/{index}/proof.json?tenant={}", enc(&tenant));
    let key = gateway_key(&s);
    let body = html! {
        p { a href={ "/console/audit?tenant=" (enc(&tenant)) } { "← Audit" } }
        h1 { "Ledger entry " span.mono { (index) } }
        p {
            "Recorded " (format_rfc3339(e.recorded_at)) ". Leaf hash "
            span.mono { (e.leaf_hash) } " = SHA-256(0x00 ‖ the event's bytes)."
        }
        @let ev = &shown[0];
        table.summary {
            tbody {
                tr { th { "activity" } td.mono { (ev["activity"].as_str().unwrap_or("")) } }
                tr { th { "actor" } td.mono { (ev["actor"]["id"].as_str().unwrap_or("")) " (" (ev["actor"]["type"].as_str().unwrap_or("")) ")" } }
                tr { th { "outcome" } td { @if let Some(o) = ev["outcome"].as_str() { (badge(o, outcome_tone(o))) } } }
                tr { th { "resource" } td { (resource_label(ev)) } }
                @if let Some(w) = ev["why"].as_str() { tr { th { "why" } td { (w) } } }
                @if let Some(t) = ev["ticket"].as_str() { tr { th { "ticket" } td { (t) } } }
            }
        }
        h2 { "Proof" }
        @match covered {
            None => (notice("The latest signed checkpoint does not cover this entry yet; its proof exists once the next checkpoint is signed.", "error")),
            Some(size) => {
                p {
                    "Its inclusion proof leads to the signed checkpoint of size " (size) ". "
                    a.button.secondary href=(proof_url) download { "Download proof" }
                    " — check it anywhere with "
                    code { "custos audit verify-proof proof.json --public-key ledger.pub" } "."
                }
                div.verify {
                    label {
                        "Ledger public key (name+id+key, from the .pub file you trust)"
                        textarea #pubkey rows="2" cols="80" spellcheck="false" { (key.clone().unwrap_or_default()) }
                    }
                    @if key.is_some() {
                        p.hint { "Filled in with the key this gateway signs with: compare it with the copy you hold apart from this server." }
                    }
                    p { button #verify type="button" data-proof=(proof_url) { "Verify in this browser" } }
                    output #verify-result role="status" {}
                }
            }
        }
        h2 { "The event as recorded" }
        pre.mono { (pretty) }
    };
    html_page(view::page(
        &v.frame("Audit", "/console/audit", &tenant),
        body,
    ))
}

/// The entry's inclusion proof, as `custos audit prove` writes it.
pub(crate) async fn proof(p: Page, Path(index): Path<u64>) -> Response {
    let tenant = tri!(p.tenant_for("audit.read").await);
    tri!(entry_of(&p.s, &tenant, index).await);
    match p.s.control.entry_proof(index).await {
        Ok(proof) => (
            [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"custos-proof-{index}.json\""),
                ),
            ],
            serde_json::to_string_pretty(&proof).unwrap_or_default(),
        )
            .into_response(),
        Err(e) => control_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_and_outcomes_read_well() {
        assert_eq!(
            resource_label(&json!({"resources": [{"type": "api_key", "id": "key_1"}]})),
            "api_key key_1"
        );
        assert_eq!(resource_label(&json!({})), "");
        assert_eq!(outcome_tone("denied"), "bad");
    }
}

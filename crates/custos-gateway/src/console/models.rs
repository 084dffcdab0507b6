//! The console's model registry pages: every registered version with its state, whether
//! its weights' signature and its card's signature verify against the keys
//! `[[registry.trust]]` trusts for it, and one version's rendered card and history.

use super::pages::{store_error, Page};
use super::view::{self, badge, enc};
use super::{error_page, html_page};
use axum::extract::Path;
use axum::response::Response;
use custos_core::time::format_rfc3339;
use custos_govern::models::{card, trust};
use custos_store::{ModelVersion, StoreError};
use http::StatusCode;
use maud::{html, Markup, PreEscaped};

fn state_tone(state: &str) -> &'static str {
    match state {
        "promoted" | "approved" => "good",
        "rejected" | "revoked" | "retired" => "bad",
        _ => "warn",
    }
}

/// Whether the weights' signature verifies against a trusted key: (verified, what to say).
fn weights_check(m: &ModelVersion, keys: &[trust::TrustedKey]) -> (bool, String) {
    if m.kind == "remote" {
        return (true, "remote model (no weights)".into());
    }
    let (Some(bundle), Some(digest)) = (&m.signature, &m.manifest_digest) else {
        return (false, "not signed".into());
    };
    match trust::verify_trusted(&m.name, bundle, keys) {
        Ok((manifest, hint)) if manifest.digest() == *digest => (true, format!("signed by {hint}")),
        Ok((manifest, _)) => (
            false,
            format!(
                "the signature covers manifest {}, not this one",
                manifest.digest()
            ),
        ),
        Err(e) => (false, e),
    }
}

/// Whether the card's signature verifies: (verified, what to say); `None` without a card.
fn card_check(m: &ModelVersion, keys: &[trust::TrustedKey]) -> Option<(bool, String)> {
    let text = m.card.as_ref()?;
    let Some(envelope) = &m.card_signature else {
        return Some((false, "not signed".into()));
    };
    Some(
        match trust::verify_card_trusted(&m.name, &m.version, text, envelope, keys) {
            Ok(hint) => (true, format!("signed by {hint}")),
            Err(e) => (false, e),
        },
    )
}

fn check_badge(ok: bool, text: &str) -> Markup {
    html! { (badge(if ok { "verified" } else { "not verified" }, if ok { "good" } else { "bad" })) " " span.muted { (text) } }
}

/// Every registered model version.
pub(crate) async fn list(p: Page) -> Response {
    let tenant = tri!(p.tenant_for("models.read").await);
    let Page { s, v, .. } = p;
    let versions = tri!(s.store.model_versions(None).await.map_err(store_error));
    let body = html! {
        h1 { "Models" }
        p.muted { "The model registry is shared by every tenant. Signatures are checked here against the keys [[registry.trust]] trusts for each name." }
        @if versions.is_empty() {
            p.muted { "No models are registered. Register one with " code { "custos models register" } "." }
        } @else {
            table {
                thead { tr {
                    th { "model" } th { "kind" } th { "state" } th { "weights" } th { "card" }
                    th { "registered" }
                } }
                tbody {
                    @for m in &versions {
                        @let (wok, wsay) = weights_check(m, &s.trust);
                        tr {
                            td.mono { a href={ "/console/models/" (enc(&m.name)) "/" (enc(&m.version)) "?tenant=" (enc(&tenant)) } { (m.name) "@" (m.version) } }
                            td { (m.kind) }
                            td { (badge(&m.state, state_tone(&m.state))) }
                            td { (check_badge(wok, &wsay)) }
                            td {
                                @match card_check(m, &s.trust) {
                                    None => span.muted { "none" },
                                    Some((ok, say)) => (check_badge(ok, &say)),
                                }
                            }
                            td { (format_rfc3339(m.created_at)[..10]) " by " span.mono { (m.registered_by) } }
                        }
                    }
                }
            }
        }
    };
    html_page(view::page(
        &v.frame("Models", "/console/models", &tenant),
        body,
    ))
}

/// One version: signatures, the rendered card and the history of its states.
pub(crate) async fn show(p: Page, Path((name, version)): Path<(String, String)>) -> Response {
    let tenant = tri!(p.tenant_for("models.read").await);
    let Page { s, v, .. } = p;
    let m = match s.store.model_version(&name, &version).await {
        Ok(m) => m,
        Err(StoreError::NotFound(_)) => {
            return error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                &format!("{name}@{version} is not in the model registry."),
            )
        }
        Err(e) => return store_error(e),
    };
    let history = tri!(s
        .store
        .model_history(&name, Some(&version))
        .await
        .map_err(store_error));
    let (wok, wsay) = weights_check(&m, &s.trust);
    let rendered = m.card.as_deref().map(|text| match card::Card::parse(text) {
        Ok(c) => Ok(card::render_body(&c)),
        Err(p) => Err(format!(
            "the stored card does not parse: line {}: {}",
            p.line, p.message
        )),
    });
    let attestations = serde_json::from_str::<serde_json::Value>(&m.attestations)
        .ok()
        .and_then(|a| a.as_array().map(Vec::len))
        .unwrap_or(0);
    let body = html! {
        p { a href={ "/console/models?tenant=" (enc(&tenant)) } { "← Models" } }
        h1 span.mono { (m.name) "@" (m.version) }
        table.summary { tbody {
            tr { th { "state" } td { (badge(&m.state, state_tone(&m.state))) } }
            tr { th { "kind" } td { (m.kind) } }
            @if let Some(d) = &m.manifest_digest { tr { th { "manifest" } td.mono { "sha256:" (d) } } }
            tr { th { "weights" } td { (check_badge(wok, &wsay)) } }
            tr { th { "card" } td {
                @match card_check(&m, &s.trust) {
                    None => span.muted { "none attached (custos models card sign)" },
                    Some((ok, say)) => (check_badge(ok, &say)),
                }
            } }
            @if let Some(d) = &m.card_digest { tr { th { "card digest" } td.mono { "sha256:" (d) } } }
            tr { th { "attestations" } td { (attestations) } }
            tr { th { "registered" } td { (format_rfc3339(m.created_at)) " by " span.mono { (m.registered_by) } } }
        } }
        h2 { "History" }
        table {
            thead { tr { th { "when" } th { "what" } th { "from" } th { "to" } th { "by" } th { "why" } th { "ledger" } } }
            tbody {
                @for h in &history {
                    tr {
                        td { (format_rfc3339(h.at)[..16].replace('T', " ")) }
                        td.mono { (h.activity) }
                        td { (h.from_state.as_deref().unwrap_or("")) }
                        td { (h.to_state) }
                        td.mono { (h.actor) }
                        td { (h.why.as_deref().unwrap_or("")) }
                        td.mono { a href={ "/console/audit/" (h.ledger_index) "?tenant=" (enc(&tenant)) } { "#" (h.ledger_index) } }
                    }
                }
            }
        }
        h2 { "Model card" }
        @match rendered {
            None => p.muted { "No card is attached to this version." },
            Some(Err(e)) => (view::notice(&e, "error")),
            // pulldown-cmark's output with raw HTML turned into text and unsafe links
            // dropped (`card::render_body`).
            Some(Ok(html)) => article.card-body { (PreEscaped(html)) },
        }
    };
    html_page(view::page(
        &v.frame("Model", "/console/models", &tenant),
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_weights_and_cards_say_so() {
        let m = ModelVersion {
            name: "m".into(),
            version: "1".into(),
            kind: "weights".into(),
            state: "registered".into(),
            manifest_digest: Some("ab".into()),
            registration: "{}".into(),
            signature: None,
            signer: None,
            card: Some("x".into()),
            card_digest: None,
            card_signature: None,
            attestations: "[]".into(),
            registered_by: "me".into(),
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(weights_check(&m, &[]), (false, "not signed".into()));
        assert_eq!(card_check(&m, &[]), Some((false, "not signed".into())));
        assert_eq!(state_tone("promoted"), "good");
    }
}

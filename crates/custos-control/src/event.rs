//! The ledger events of the control plane: OCSF-shaped (actor, activity, resources, time,
//! outcome) plus why, ticket, the deciding policies and digests of the state before and after.

use crate::{Actor, ActorKind, Evidence};
use custos_authz::policy::Decision;
use custos_core::principal::AuthMethod;
use custos_core::time::{format_rfc3339, now_ms};
use custos_core::Reason;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// `sha256:HEX` of a state's JSON text: what the ledger keeps of a resource before and after a
/// change, so that anyone holding the state can show it is the one recorded.
pub fn digest(state: &Value) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(state.to_string().as_bytes()))
    )
}

pub(crate) fn actor_json(actor: &Actor) -> Value {
    let p = &actor.principal;
    match actor.kind {
        ActorKind::Local => json!({"type": "operator", "id": p.id, "auth": "local"}),
        ActorKind::System => json!({"type": "system", "id": p.id, "auth": "none"}),
        ActorKind::Credential => {
            let kind = match p.method {
                AuthMethod::Jwt => "user",
                AuthMethod::ApiKey | AuthMethod::Mtls => "service_account",
            };
            json!({"type": kind, "id": p.id, "uid": p.uid,
                   "issuer": (!p.issuer.is_empty()).then_some(&p.issuer),
                   "tenant": p.tenant, "auth": p.method.as_str(),
                   "roles": (!p.roles.is_empty()).then_some(&p.roles), "mfa": p.mfa})
        }
    }
}

fn base(actor: &Actor, activity: &str, reason: &Reason) -> serde_json::Map<String, Value> {
    let mut e = serde_json::Map::new();
    e.insert("schema".into(), json!(1));
    e.insert("time".into(), json!(format_rfc3339(now_ms())));
    e.insert("activity".into(), json!(activity));
    e.insert("actor".into(), actor_json(actor));
    e.insert("why".into(), json!(reason.why));
    if let Some(t) = &reason.ticket {
        e.insert("ticket".into(), json!(t));
    }
    if let Some(s) = &actor.source {
        e.insert("source".into(), json!(s));
    }
    if let Some(r) = &actor.request_id {
        e.insert("request_id".into(), json!(r));
    }
    e
}

pub(crate) fn allowed(
    actor: &Actor,
    action: &str,
    decision: &Decision,
    evidence: Evidence,
    reason: &Reason,
) -> String {
    let mut e = base(actor, evidence.activity, reason);
    e.insert("resources".into(), json!([evidence.resource]));
    e.insert("outcome".into(), json!("allowed"));
    e.insert(
        "decision".into(),
        json!({"action": action, "policies": decision.policies}),
    );
    e.insert(
        "change".into(),
        json!({"before": evidence.before.as_ref().map(digest),
               "after": evidence.after.as_ref().map(digest)}),
    );
    Value::Object(e).to_string()
}

/// The event of a denied request: the caller's, naming the tenant asked for and never facts
/// of it. The admin API's reads record the same shape as the control plane's changes.
pub fn denial(
    actor: &Actor,
    action: &str,
    tenant: &str,
    decision: &Decision,
    reason: &Reason,
) -> Value {
    let mut e = base(actor, action, reason);
    e.insert(
        "resources".into(),
        json!([{"type": "tenant", "name": tenant}]),
    );
    e.insert("outcome".into(), json!("denied"));
    e.insert("reason".into(), json!(decision.reason()));
    e.insert(
        "decision".into(),
        json!({"action": action, "policies": decision.policies}),
    );
    Value::Object(e)
}

/// The event of a sign-in to an interactive surface (`console`): who, from where, with
/// what credential. Activity `<surface>.signin`; no state changes.
pub fn signed_in(actor: &Actor, surface: &str) -> Value {
    let mut e = base(actor, &format!("{surface}.signin"), &Reason::default());
    e.insert(
        "resources".into(),
        json!([{"type": "tenant", "name": actor.principal.tenant}]),
    );
    e.insert("outcome".into(), json!("allowed"));
    Value::Object(e)
}

/// An event for a fact the control plane records without changing state (a configuration
/// loaded, a review run, a cost gate overridden).
pub(crate) fn observed(
    actor: &Actor,
    activity: &str,
    resource: Value,
    decision: Option<(&str, &Decision)>,
    reason: &Reason,
) -> String {
    let mut e = base(actor, activity, reason);
    e.insert("resources".into(), json!([resource]));
    e.insert("outcome".into(), json!("allowed"));
    if let Some((action, d)) = decision {
        e.insert(
            "decision".into(),
            json!({"action": action, "policies": d.policies}),
        );
    }
    Value::Object(e).to_string()
}

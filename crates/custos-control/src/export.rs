//! Ledger events as other systems read them: CloudEvents 1.0 in structured JSON mode (what
//! webhooks carry) and OCSF (what `custos audit stream` gives a SIEM). Pure mappings of one
//! recorded event and its ledger index; delivery lives with the surfaces.

use serde_json::{json, Map, Value};

/// The reverse-DNS prefix of every CloudEvents `type` custos sends: `dev.custos.` + the
/// ledger activity (`dev.custos.release.approve`).
pub const TYPE_PREFIX: &str = "dev.custos.";
/// The OCSF schema version the mapping follows.
pub const OCSF_VERSION: &str = "1.4.0";

/// The activities a receiver gets when it names none: what someone must act on or know of
/// soon (budgets, anomalies, grants and break-glass, releases, erasures, DPIA triggers,
/// SLO burn-rate alerts).
/// A trailing `.` is a prefix.
pub const DEFAULT_TYPES: &[&str] = &[
    "budget.",
    "cost.anomaly",
    "grant.",
    "release.",
    "erasure.",
    "dpia.",
    "slo.",
];

/// The activities whose events have a published schema (`docs/events/dev.custos.*.schema.json`):
/// every one the default `types` select. Receivers may select others; those follow the
/// generic ledger-event schema.
pub const EVENT_TYPES: &[&str] = &[
    "budget.create",
    "budget.delete",
    "budget.override",
    "budget.override.grant",
    "budget.threshold",
    "cost.anomaly",
    "grant.request",
    "grant.approve",
    "grant.deny",
    "grant.revoke",
    "grant.break_glass",
    "release.create",
    "release.approve",
    "release.deny",
    "release.promote",
    "release.rollback",
    "release.postcheck",
    "release.evidence",
    "release.overdue",
    "erasure.request",
    "erasure.complete",
    "erasure.overdue",
    "dpia.required",
    "dpia.draft",
    "dpia.approve",
    "slo.burn",
    "slo.recovered",
];

/// Whether `activity` is selected by `patterns`: exact names, or prefixes ending in `.`
/// or `*` (`release.` and `release.*` both select every release event).
pub fn selects(patterns: &[String], activity: &str) -> bool {
    patterns.iter().any(|p| {
        if let Some(prefix) = p.strip_suffix('*') {
            activity.starts_with(prefix)
        } else if p.ends_with('.') {
            activity.starts_with(p.as_str())
        } else {
            p == activity
        }
    })
}

/// The activity an event records (`""` for an event without one).
pub fn activity(event: &Value) -> &str {
    event["activity"].as_str().unwrap_or("")
}

fn first_resource(event: &Value) -> &Value {
    &event["resources"][0]
}

/// The tenant an event concerns: its first resource's, else its actor's.
pub fn tenant(event: &Value) -> Option<&str> {
    let r = first_resource(event);
    r["tenant"]
        .as_str()
        .or_else(|| {
            (r["type"] == "tenant")
                .then(|| r["name"].as_str())
                .flatten()
        })
        .or_else(|| event["actor"]["tenant"].as_str())
        .filter(|t| !t.is_empty())
}

/// `type/id` of the event's first resource (its name when it has no id): the CloudEvents
/// `subject`, so receivers can route on what changed without reading `data`.
pub fn subject(event: &Value) -> Option<String> {
    let r = first_resource(event);
    let kind = r["type"].as_str()?;
    let id = r["id"]
        .as_str()
        .or_else(|| r["name"].as_str())
        .or_else(|| r["request"].as_str())?;
    Some(format!("{kind}/{id}"))
}

/// One CloudEvent: the envelope attributes and the data. Ledger events get their id from
/// their index, so every process that sends one (the gateway's relay, a CLI that alerts at
/// once) sends the same id and receivers can drop the repeat.
#[derive(Clone, Debug)]
pub struct CloudEvent {
    pub id: String,
    /// The activity; the CloudEvents type is [`TYPE_PREFIX`] + this.
    pub activity: String,
    /// RFC 3339.
    pub time: Option<String>,
    pub subject: Option<String>,
    pub tenant: Option<String>,
    pub ledger_index: Option<u64>,
    pub data: Value,
}

impl CloudEvent {
    /// The event recorded at ledger `index`. An alert the process that raised it sent at
    /// once (its `detail` carries the alert's `id` and `type`) keeps that id.
    pub fn from_ledger(index: u64, event: Value) -> Self {
        let alert_id = [&event["detail"], &first_resource(&event)["detail"]]
            .into_iter()
            .find(|d| d["type"] == event["activity"] && d["id"].is_string())
            .and_then(|d| d["id"].as_str())
            .map(str::to_owned);
        Self {
            id: alert_id.unwrap_or_else(|| ledger_id(index)),
            activity: activity(&event).to_owned(),
            time: event["time"]
                .as_str()
                .filter(|t| custos_core::time::parse_rfc3339(t).is_some())
                .map(str::to_owned),
            subject: subject(&event),
            tenant: tenant(&event).map(str::to_owned),
            ledger_index: Some(index),
            data: event,
        }
    }

    /// The structured-mode JSON document (`application/cloudevents+json`).
    pub fn to_json(&self, source: &str) -> Value {
        let mut e = Map::new();
        e.insert("specversion".into(), json!("1.0"));
        e.insert("id".into(), json!(self.id));
        e.insert("source".into(), json!(source));
        e.insert(
            "type".into(),
            json!(format!("{TYPE_PREFIX}{}", self.activity)),
        );
        if let Some(t) = &self.time {
            e.insert("time".into(), json!(t));
        }
        if let Some(s) = &self.subject {
            e.insert("subject".into(), json!(s));
        }
        e.insert("datacontenttype".into(), json!("application/json"));
        // Extension attributes: lower-case letters and digits only, per the spec.
        if let Some(t) = &self.tenant {
            e.insert("custostenant".into(), json!(t));
        }
        if let Some(i) = self.ledger_index {
            e.insert("custosledgerindex".into(), json!(i));
        }
        e.insert("data".into(), self.data.clone());
        Value::Object(e)
    }
}

/// The CloudEvents id of the event at ledger `index`.
pub fn ledger_id(index: u64) -> String {
    format!("ledger-{index}")
}

/// OCSF `activity_id` of the API Activity class from the activity's verb.
fn api_activity(verb: &str) -> (u8, &'static str) {
    match verb {
        "create" | "register" | "add" | "request" | "draft" | "place" | "import" | "set"
        | "break_glass" | "keygen" | "checkpoint" => (1, "Create"),
        "export" | "query" | "review" | "invoke" | "dsar" => (2, "Read"),
        "delete" | "revoke" | "prune" => (4, "Delete"),
        "" => (99, "Other"),
        _ => (3, "Update"),
    }
}

fn severity(event: &Value, act: &str) -> (u8, &'static str) {
    if act == "grant.break_glass" || event["detail"]["level"] == "critical" {
        (4, "High")
    } else if event["outcome"] == "denied" || act == "auth.refused" || act.ends_with(".overdue") {
        (3, "Medium")
    } else {
        (1, "Informational")
    }
}

/// The event at ledger `index` as one OCSF event: Authentication (3002) for refused
/// credentials, API Activity (6003) for everything else. What OCSF has no attribute for
/// (why, ticket, decision, digests of before and after) stays under `unmapped`.
pub fn ocsf(index: u64, event: &Value, product_version: &str) -> Value {
    let act = activity(event);
    let time_ms = event["time"]
        .as_str()
        .and_then(custos_core::time::parse_rfc3339)
        .unwrap_or(0);
    let denied = matches!(event["outcome"].as_str(), Some("denied" | "refused"));
    let refused_auth = act == "auth.refused";
    let (class_uid, class_name, category_uid, category_name, activity_id, activity_name): (
        u32,
        &str,
        u32,
        &str,
        u8,
        &str,
    ) = if refused_auth {
        (
            3002,
            "Authentication",
            3,
            "Identity & Access Management",
            1,
            "Logon",
        )
    } else {
        let verb = act.rsplit('.').next().unwrap_or("");
        let (id, name) = api_activity(verb);
        (6003, "API Activity", 6, "Application Activity", id, name)
    };
    let (severity_id, severity_name) = severity(event, act);
    let failed = denied || refused_auth;
    let actor = &event["actor"];
    let mut user = Map::new();
    for (from, to) in [("uid", "uid"), ("id", "name"), ("type", "type")] {
        if let Some(v) = actor[from].as_str() {
            user.insert(to.into(), json!(v));
        }
    }
    if !user.contains_key("uid") {
        if let Some(v) = actor["id"].as_str() {
            user.insert("uid".into(), json!(v));
        }
    }
    let mut actor_out = Map::new();
    actor_out.insert("user".into(), Value::Object(user));
    if let Some(iss) = actor["issuer"].as_str() {
        actor_out.insert("idp".into(), json!({"name": iss}));
    }
    if let Some(auth) = actor["auth"].as_str() {
        actor_out.insert("authorizations".into(), json!([{"decision": auth}]));
    }
    let src = event["source"].as_str().unwrap_or("");
    let src_endpoint = if src.parse::<std::net::IpAddr>().is_ok() {
        json!({"ip": src})
    } else if let Some(ip) = src.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()) {
        json!({"ip": ip.to_string()})
    } else if !src.is_empty() {
        json!({"name": src})
    } else {
        json!({"name": actor["type"].as_str().unwrap_or("unknown")})
    };
    let resources: Vec<Value> = event["resources"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let mut o = Map::new();
                    if let Some(t) = r["type"].as_str() {
                        o.insert("type".into(), json!(t));
                    }
                    if let Some(id) = r["id"].as_str() {
                        o.insert("uid".into(), json!(id));
                    }
                    if let Some(n) = r["name"].as_str() {
                        o.insert("name".into(), json!(n));
                    }
                    Value::Object(o)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut metadata = Map::new();
    metadata.insert("version".into(), json!(OCSF_VERSION));
    metadata.insert(
        "product".into(),
        json!({"name": "custos", "vendor_name": "custos", "version": product_version}),
    );
    metadata.insert("uid".into(), json!(ledger_id(index)));
    metadata.insert("sequence".into(), json!(index));
    metadata.insert("log_name".into(), json!("custos ledger"));
    metadata.insert("event_code".into(), json!(act));
    if let Some(t) = event["time"].as_str() {
        metadata.insert("original_time".into(), json!(t));
    }
    if let Some(t) = tenant(event) {
        metadata.insert("tenant_uid".into(), json!(t));
    }
    if let Some(r) = event["request_id"].as_str() {
        metadata.insert("correlation_uid".into(), json!(r));
    }
    let mut out = Map::new();
    out.insert("class_uid".into(), json!(class_uid));
    out.insert("class_name".into(), json!(class_name));
    out.insert("category_uid".into(), json!(category_uid));
    out.insert("category_name".into(), json!(category_name));
    out.insert("activity_id".into(), json!(activity_id));
    out.insert("activity_name".into(), json!(activity_name));
    out.insert(
        "type_uid".into(),
        json!(class_uid * 100 + u32::from(activity_id)),
    );
    out.insert(
        "type_name".into(),
        json!(format!("{class_name}: {activity_name}")),
    );
    out.insert("severity_id".into(), json!(severity_id));
    out.insert("severity".into(), json!(severity_name));
    out.insert("status_id".into(), json!(if failed { 2 } else { 1 }));
    out.insert(
        "status".into(),
        json!(if failed { "Failure" } else { "Success" }),
    );
    if let Some(r) = event["reason"].as_str() {
        out.insert("status_detail".into(), json!(r));
    }
    out.insert("time".into(), json!(time_ms));
    if let Some(w) = event["why"].as_str().filter(|w| !w.is_empty()) {
        out.insert("message".into(), json!(w));
    }
    out.insert("metadata".into(), Value::Object(metadata));
    out.insert("actor".into(), Value::Object(actor_out));
    if refused_auth {
        out.insert("src_endpoint".into(), src_endpoint);
        out.insert(
            "user".into(),
            json!({"name": actor["id"].as_str().unwrap_or("unknown")}),
        );
    } else {
        let mut api = Map::new();
        api.insert("operation".into(), json!(act));
        api.insert("service".into(), json!({"name": "custos"}));
        if let Some(r) = event["request_id"].as_str() {
            api.insert("request".into(), json!({"uid": r}));
        }
        out.insert("api".into(), Value::Object(api));
        out.insert("src_endpoint".into(), src_endpoint);
        out.insert("resources".into(), json!(resources));
    }
    let mut unmapped = Map::new();
    for k in ["ticket", "decision", "change", "outcome", "detail", "count"] {
        if !event[k].is_null() {
            unmapped.insert(k.into(), event[k].clone());
        }
    }
    if !unmapped.is_empty() {
        out.insert("unmapped".into(), Value::Object(unmapped));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant_event() -> Value {
        json!({
            "schema": 1, "time": "2026-12-04T10:00:00.000Z", "activity": "grant.break_glass",
            "actor": {"type": "user", "id": "alice@example.com", "uid": "u-1",
                      "issuer": "https://idp.example", "tenant": "acme", "auth": "jwt"},
            "why": "INC-42: the primary is down", "ticket": "INC-42",
            "resources": [{"type": "grant", "id": "grant_1", "tenant": "acme"}],
            "outcome": "allowed", "source": "10.0.0.7:51234", "request_id": "req-9",
            "decision": {"action": "grants.break_glass", "policies": ["p1"]}
        })
    }

    #[test]
    fn a_ledger_event_becomes_a_cloudevent_with_a_stable_id() {
        let e = CloudEvent::from_ledger(41, grant_event()).to_json("/custos/prod");
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["id"], "ledger-41");
        assert_eq!(e["source"], "/custos/prod");
        assert_eq!(e["type"], "dev.custos.grant.break_glass");
        assert_eq!(e["subject"], "grant/grant_1");
        assert_eq!(e["time"], "2026-12-04T10:00:00.000Z");
        assert_eq!(e["custostenant"], "acme");
        assert_eq!(e["custosledgerindex"], 41);
        assert_eq!(e["data"]["why"], "INC-42: the primary is down");
        // A time that is not RFC 3339 is left out rather than sent malformed.
        let mut bad = grant_event();
        bad["time"] = json!("yesterday");
        let e = CloudEvent::from_ledger(1, bad).to_json("/c");
        assert!(e.get("time").is_none());
        // An alert sent at once by the process that raised it keeps its id when the relay
        // sends its ledger event, so receivers can drop the repeat.
        let alert = json!({"activity": "cost.anomaly", "resources": [{"type": "series",
            "id": "anomaly:app:chat", "detail": {"id": "alert_1", "type": "cost.anomaly"}}]});
        assert_eq!(CloudEvent::from_ledger(3, alert).id, "alert_1");
        let budget = json!({"activity": "budget.threshold", "detail": {"id": "alert_2", "type": "budget.threshold"}});
        assert_eq!(CloudEvent::from_ledger(4, budget).id, "alert_2");
    }

    #[test]
    fn patterns_select_by_name_or_prefix() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(selects(&p(&["release."]), "release.approve"));
        assert!(selects(&p(&["release.*"]), "release.approve"));
        assert!(!selects(&p(&["release."]), "releases.x"));
        assert!(selects(&p(&["dpia.required"]), "dpia.required"));
        assert!(!selects(&p(&["dpia.required"]), "dpia.approve"));
        let d = p(DEFAULT_TYPES);
        for a in [
            "budget.threshold",
            "cost.anomaly",
            "grant.break_glass",
            "release.rollback",
            "erasure.complete",
            "dpia.required",
        ] {
            assert!(selects(&d, a), "{a}");
        }
        for a in ["model.invoke", "auth.refused", "key.create", ""] {
            assert!(!selects(&d, a), "{a}");
        }
    }

    #[test]
    fn ocsf_maps_changes_to_api_activity_and_refusals_to_authentication() {
        let o = ocsf(7, &grant_event(), "0.1.0");
        assert_eq!(o["class_uid"], 6003);
        assert_eq!(o["category_uid"], 6);
        assert_eq!(o["activity_id"], 1);
        assert_eq!(o["type_uid"], 600301);
        assert_eq!(o["severity_id"], 4);
        assert_eq!(o["status_id"], 1);
        assert_eq!(o["time"], 1_796_378_400_000i64);
        assert_eq!(o["metadata"]["uid"], "ledger-7");
        assert_eq!(o["metadata"]["version"], OCSF_VERSION);
        assert_eq!(o["metadata"]["tenant_uid"], "acme");
        assert_eq!(o["metadata"]["correlation_uid"], "req-9");
        assert_eq!(o["actor"]["user"]["uid"], "u-1");
        assert_eq!(o["actor"]["user"]["name"], "alice@example.com");
        assert_eq!(o["actor"]["idp"]["name"], "https://idp.example");
        assert_eq!(o["api"]["operation"], "grant.break_glass");
        assert_eq!(o["src_endpoint"]["ip"], "10.0.0.7");
        assert_eq!(o["resources"][0]["uid"], "grant_1");
        assert_eq!(o["message"], "INC-42: the primary is down");
        assert_eq!(o["unmapped"]["ticket"], "INC-42");

        let refused = json!({"time": "2026-12-04T10:00:00Z", "activity": "auth.refused",
            "actor": {"type": "anonymous", "id": "unknown"}, "outcome": "denied",
            "reason": "the API key is revoked", "source": "127.0.0.1", "count": 3});
        let o = ocsf(8, &refused, "0.1.0");
        assert_eq!(o["class_uid"], 3002);
        assert_eq!(o["type_uid"], 300201);
        assert_eq!(o["status_id"], 2);
        assert_eq!(o["status_detail"], "the API key is revoked");
        assert_eq!(o["severity_id"], 3);
        assert_eq!(o["src_endpoint"]["ip"], "127.0.0.1");
        assert_eq!(o["unmapped"]["count"], 3);

        let denied = json!({"activity": "keys.create", "outcome": "denied", "actor": {"id": "x"}});
        let o = ocsf(9, &denied, "0.1.0");
        assert_eq!(o["status_id"], 2);
        assert_eq!(o["activity_id"], 1);
    }

    #[test]
    fn every_event_type_has_its_schema_and_the_defaults_select_it() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/events");
        let defaults: Vec<String> = DEFAULT_TYPES.iter().map(|s| s.to_string()).collect();
        for t in EVENT_TYPES {
            assert!(selects(&defaults, t), "{t} is not selected by default");
            let path = dir.join(format!("dev.custos.{t}.schema.json"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let schema: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                schema["properties"]["type"]["const"],
                format!("dev.custos.{t}")
            );
            assert_eq!(
                schema["properties"]["data"]["properties"]["activity"]["const"],
                *t
            );
        }
        // And no schema documents an event that is not sent.
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if let Some(t) = name
                .strip_prefix("dev.custos.")
                .and_then(|n| n.strip_suffix(".schema.json"))
            {
                assert!(
                    EVENT_TYPES.contains(&t) || t == "ledger.checkpoint",
                    "{name} documents an event custos does not send"
                );
            }
        }
    }

    proptest::proptest! {
        /// Whatever an event holds, both mappings give their required attributes.
        #[test]
        fn any_event_maps_with_its_required_attributes(
            activity in "[a-z_]{0,8}(\\.[a-z_]{1,8}){0,2}",
            time in proptest::option::of("[0-9TZ:.-]{0,24}"),
            tenant in proptest::option::of("[a-z]{0,6}"),
            outcome in proptest::option::of("allowed|denied|alert|[a-z]{0,4}"),
            index in 0u64..u64::MAX / 2,
        ) {
            let e = json!({"activity": activity, "time": time, "outcome": outcome,
                "actor": {"tenant": tenant}, "resources": [{"type": "x", "tenant": tenant}]});
            let c = CloudEvent::from_ledger(index, e.clone()).to_json("/custos");
            for k in ["specversion", "id", "source", "type"] {
                proptest::prop_assert!(c[k].as_str().is_some_and(|s| !s.is_empty()), "{}", k);
            }
            let o = ocsf(index, &e, "0");
            for k in ["class_uid", "category_uid", "activity_id", "type_uid", "severity_id", "time"] {
                proptest::prop_assert!(o[k].is_u64(), "{}", k);
            }
            proptest::prop_assert!(o["metadata"]["product"]["name"].is_string());
            proptest::prop_assert_eq!(
                o["type_uid"].as_u64().unwrap(),
                o["class_uid"].as_u64().unwrap() * 100 + o["activity_id"].as_u64().unwrap()
            );
        }
    }
}

//! tools: tool (function) use in model calls, decided by the Cedar action `tool.call` on
//! `Custos::Tool::"NAME"` for each tool a request offers and each call a model makes, plus
//! the argument constraints of `[[tools.constraints]]` on the calls. A request offering a
//! refused tool is refused (403 `tool-not-allowed`) or has it stripped; what the model calls
//! is judged on the way back (in `guard`). Every decision lands in the call's audit event.

use crate::audit::AuditSlot;
use crate::call::ModelCall;
use crate::problem::{Problem, ProblemKind};
use crate::stack::Next;
use crate::state::AppState;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use custos_authz::policy::{Resource, ToolFacts};
use custos_core::config::{ToolConstraint, ToolOffered};
use custos_core::principal::SharedPrincipal;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// What one call did with tools, for its audit event.
#[derive(Debug, Default)]
pub struct ToolLog {
    inner: Mutex<ToolRecord>,
}

#[derive(Debug, Default)]
struct ToolRecord {
    offered: BTreeSet<String>,
    called: Vec<String>,
    denied: Vec<Value>,
}

impl ToolLog {
    fn with<T>(&self, f: impl FnOnce(&mut ToolRecord) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn offered(&self, name: &str) {
        self.with(|r| r.offered.insert(name.to_owned()));
    }

    pub fn called(&self, name: &str) {
        self.with(|r| r.called.push(name.to_owned()));
    }

    pub fn denied(&self, name: &str, phase: &str, d: &Denial) {
        self.with(|r| {
            r.denied
                .push(json!({"name": name, "phase": phase, "reason": d.reason,
                                 "policies": d.policies}))
        });
    }

    /// The `tools` member of the audit event, when the call involved any.
    pub fn snapshot(&self) -> Option<Value> {
        self.with(|r| {
            (!r.offered.is_empty() || !r.called.is_empty() || !r.denied.is_empty())
                .then(|| json!({"offered": r.offered, "called": r.called, "denied": r.denied}))
        })
    }
}

/// Why a tool was refused: the deciding policies, or the argument constraint broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub reason: String,
    pub policies: Vec<String>,
}

/// Judges the tools of one call: the principal, the model, the app's declaration.
pub struct ToolGate {
    state: AppState,
    principal: SharedPrincipal,
    model: String,
    declared: Option<Arc<Vec<String>>>,
    classification: String,
    log: Option<Arc<ToolLog>>,
}

impl std::fmt::Debug for ToolGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolGate")
            .field("model", &self.model)
            .field("declared", &self.declared)
            .finish()
    }
}

impl ToolGate {
    /// Whether `name` may be offered (`arguments` `None`) or called with `arguments`.
    pub fn judge(&self, name: &str, arguments: Option<&str>) -> Result<(), Denial> {
        let phase = if arguments.is_some() {
            "called"
        } else {
            "offered"
        };
        let facts = ToolFacts {
            name: name.to_owned(),
            declared: self
                .declared
                .as_ref()
                .is_some_and(|d| d.iter().any(|t| t == name)),
            app_declares: self.declared.is_some(),
            model: self.model.clone(),
            phase,
            arguments: arguments.unwrap_or("").to_owned(),
        };
        let verdict = match self.state.authz.decide_facts(
            &self.state,
            &self.principal,
            "tool.call",
            &Resource::Tool(facts),
            &self.classification,
        ) {
            Ok((d, _)) if d.allowed => Ok(()),
            Ok((d, _)) => Err(Denial {
                reason: d.reason(),
                policies: d.policies,
            }),
            Err(e) => {
                tracing::error!(error = %e, "a tool decision could not be evaluated; denied");
                Err(Denial {
                    reason: "the policies could not be evaluated, so the tool is refused".into(),
                    policies: Vec::new(),
                })
            }
        }
        .and_then(|()| match arguments {
            Some(a) => check_constraints(&self.state.config.tools.constraints, name, a),
            None => Ok(()),
        });
        if let Some(log) = &self.log {
            match &verdict {
                Ok(()) if arguments.is_some() => log.called(name),
                Ok(()) => {}
                Err(d) => log.denied(name, phase, d),
            }
        }
        verdict
    }
}

/// The argument a constraint names: a JSON pointer, or a top-level member.
fn argument<'a>(args: &'a Value, at: &str) -> Option<&'a Value> {
    if at.starts_with('/') {
        args.pointer(at)
    } else {
        args.get(at)
    }
}

/// The host of a URL as a browser or HTTP client would connect to it (WHATWG parsing, so
/// `https://ok.example@evil.example/` is `evil.example`), lower case, without a final dot.
fn host_of(text: &str) -> Option<String> {
    let u = url::Url::parse(text.trim()).ok()?;
    let host = u.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// `text` matches all of `pattern` (validated at config load). Compiled once per pattern:
/// the patterns come from the configuration, so the cache stays small.
fn whole_match(pattern: &str, text: &str) -> bool {
    static CACHE: std::sync::OnceLock<
        Mutex<std::collections::HashMap<String, Option<regex::Regex>>>,
    > = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let re = {
        let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 1024 {
            map.clear();
        }
        map.entry(pattern.to_owned())
            .or_insert_with(|| regex::Regex::new(&format!("^(?:{pattern})$")).ok())
            .clone()
    };
    re.is_some_and(|r| r.is_match(text))
}

/// Where `args` breaks `schema`, if it does: the place and the keyword, never the value
/// (arguments may hold personal data, and this reason reaches the ledger). Schemas are
/// compiled once each (they come from the configuration, checked at load).
fn schema_breach(schema: &Value, args: &Value) -> Option<String> {
    type Cache = Mutex<std::collections::HashMap<String, Option<Arc<jsonschema::Validator>>>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let validator = {
        let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 1024 {
            map.clear();
        }
        map.entry(schema.to_string())
            .or_insert_with(|| jsonschema::validator_for(schema).ok().map(Arc::new))
            .clone()
    };
    let Some(validator) = validator else {
        return Some("its schema cannot be compiled".into());
    };
    let e = validator.iter_errors(args).next()?;
    let at = e.instance_path().to_string();
    let keyword = e
        .schema_path()
        .as_str()
        .rsplit('/')
        .find(|k| !k.is_empty() && !k.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or("schema")
        .to_owned();
    Some(format!(
        "at {} (`{keyword}`)",
        if at.is_empty() { "the top" } else { &at }
    ))
}

/// Checks one call's arguments against the constraints on its tool.
pub fn check_constraints(
    constraints: &[ToolConstraint],
    tool: &str,
    arguments: &str,
) -> Result<(), Denial> {
    let mine: Vec<&ToolConstraint> = constraints.iter().filter(|c| c.tool == tool).collect();
    if mine.is_empty() {
        return Ok(());
    }
    let deny = |reason: String| {
        Err(Denial {
            reason,
            policies: vec!["tools.constraints".into()],
        })
    };
    let args: Value = match serde_json::from_str(if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    }) {
        Ok(v) => v,
        Err(_) => return deny(format!("the arguments of {tool} are not JSON")),
    };
    for c in mine {
        if c.argument.is_empty() {
            if let Some(why) = c.schema.as_ref().and_then(|s| schema_breach(s, &args)) {
                return deny(format!("{tool}'s arguments break its schema {why}"));
            }
            continue;
        }
        let Some(v) = argument(&args, &c.argument) else {
            if c.required {
                return deny(format!("{tool} was called without {}", c.argument));
            }
            continue;
        };
        if let Some(why) = c.schema.as_ref().and_then(|s| schema_breach(s, v)) {
            return deny(format!("{tool}'s {} breaks its schema {why}", c.argument));
        }
        let values: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for v in values {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            if c.max_len.is_some_and(|m| text.len() > m) {
                return deny(format!(
                    "{tool}'s {} is longer than {} bytes",
                    c.argument,
                    c.max_len.unwrap_or(0)
                ));
            }
            if !c.domains.is_empty() {
                match host_of(&text) {
                    Some(h) if custos_core::config::host_matches(&h, &c.domains) => {}
                    Some(h) => {
                        return deny(format!(
                        "{tool}'s {} names the host {h}, which is not among its allowed domains",
                        c.argument
                    ))
                    }
                    None => {
                        return deny(format!("{tool}'s {} is not a URL with a host", c.argument))
                    }
                }
            }
            if let Some(p) = &c.pattern {
                if !whole_match(p, &text) {
                    return deny(format!(
                        "{tool}'s {} does not match its allowed pattern",
                        c.argument
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The name of an offered tool: chat `{"type":"function","function":{"name"}}`, Responses
/// `{"type":"function","name"}`, legacy `functions[].name`; a built-in tool (Responses
/// `web_search`, `file_search`, …) by its type.
fn offered_name(t: &Value) -> Option<String> {
    let o = t.as_object()?;
    if let Some(n) = o
        .get("function")
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
    {
        return Some(n.to_owned());
    }
    if let Some(n) = o.get("name").and_then(Value::as_str) {
        return Some(n.to_owned());
    }
    o.get("type").and_then(Value::as_str).map(str::to_owned)
}

/// Removes the tools `refused` from the body, and a `tool_choice` naming one of them.
fn strip(body: &mut Map<String, Value>, refused: &BTreeSet<String>) {
    for key in ["tools", "functions"] {
        if let Some(Value::Array(list)) = body.get_mut(key) {
            list.retain(|t| offered_name(t).is_none_or(|n| !refused.contains(&n)));
            if list.is_empty() {
                body.remove(key);
            }
        }
    }
    let choice_names_refused = |c: &Value| {
        offered_name(c).is_some_and(|n| refused.contains(&n))
            || c.as_str().is_some_and(|n| refused.contains(n))
    };
    for key in ["tool_choice", "function_call"] {
        if body.get(key).is_some_and(choice_names_refused) {
            body.remove(key);
        }
    }
    if !body.contains_key("tools") && !body.contains_key("functions") {
        // A forced choice with nothing left to choose would be rejected upstream.
        if body
            .get("tool_choice")
            .is_some_and(|c| c.as_str() == Some("required"))
        {
            body.remove("tool_choice");
        }
        body.remove("parallel_tool_calls");
    }
}

/// The tools layer of model calls: judges each offered tool, refuses or strips, and leaves a
/// gate for the response.
pub async fn screen<N: Next>(state: &AppState, mut req: Request, next: &N) -> Response {
    let (Some(call), Some(principal)) = (
        req.extensions().get::<Arc<ModelCall>>().cloned(),
        req.extensions().get::<SharedPrincipal>().cloned(),
    ) else {
        return Problem::new(
            ProblemKind::Internal,
            "tools ran before the call was parsed",
        )
        .into_response();
    };
    let Some(mut body) = call.take_body() else {
        return Problem::new(ProblemKind::Internal, "the call's body was already taken")
            .into_response();
    };
    let offered: Vec<String> = ["tools", "functions"]
        .iter()
        .filter_map(|k| body.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(offered_name)
        .collect();
    if offered.is_empty() {
        call.put_body(body);
        return next.run(req).await;
    }
    let log = req
        .extensions()
        .get::<Arc<AuditSlot>>()
        .map(|s| s.tool_log());
    let gate = ToolGate {
        declared: state.directory.app_tools(&principal.app_id),
        model: call.model.clone(),
        classification: req
            .headers()
            .get(crate::authz::DATA_CLASS_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        principal,
        state: state.clone(),
        log: log.clone(),
    };
    let mut refused: BTreeSet<String> = BTreeSet::new();
    let mut reasons: Vec<String> = Vec::new();
    for name in &offered {
        if let Some(l) = &log {
            l.offered(name);
        }
        if refused.contains(name) {
            continue;
        }
        if let Err(d) = gate.judge(name, None) {
            reasons.push(format!("{name} ({})", d.reason));
            refused.insert(name.clone());
        }
    }
    if !refused.is_empty() {
        match state.config.tools.offered {
            ToolOffered::Refuse => {
                return Problem::new(
                    ProblemKind::ToolNotAllowed,
                    format!(
                        "the request offers tools this app may not use: {}; remove them, or declare them with `custos apps tools APP --allow NAME,...`",
                        reasons.join("; ")
                    ),
                )
                .into_response();
            }
            ToolOffered::Strip => strip(&mut body, &refused),
        }
    }
    call.put_body(body);
    req.extensions_mut().insert(Arc::new(gate));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constraint(tool: &str, arg: &str) -> ToolConstraint {
        ToolConstraint {
            tool: tool.into(),
            argument: arg.into(),
            required: false,
            domains: Vec::new(),
            pattern: None,
            max_len: None,
            schema: None,
            schema_file: None,
        }
    }

    #[test]
    fn json_schemas_hold_on_whole_arguments_and_on_one_argument() {
        let mut whole = constraint("run_sql", "");
        whole.schema = Some(json!({"type": "object", "required": ["query"],
            "properties": {"query": {"type": "string", "maxLength": 40, "pattern": "^SELECT "},
                           "limit": {"type": "integer", "maximum": 100},
                           "options": {"type": "object"}},
            "additionalProperties": false}));
        let mut one = constraint("run_sql", "/options");
        one.schema = Some(json!({"type": "object", "properties": {"dry_run": {"const": true}}}));
        let cs = [whole, one];
        let check = |args: &str| check_constraints(&cs, "run_sql", args);
        assert!(check(r#"{"query": "SELECT 1", "limit": 5}"#).is_ok());
        assert!(check(r#"{"query": "SELECT 1", "options": {"dry_run": true}}"#).is_ok());
        let why = |args: &str| check(args).unwrap_err().reason;
        assert_eq!(
            why(r#"{"query": "DROP TABLE users"}"#),
            "run_sql's arguments break its schema at /query (`pattern`)"
        );
        assert!(why(r#"{"query": "SELECT 1", "limit": 1000}"#).contains("/limit (`maximum`)"));
        assert!(why(r#"{"limit": 1}"#).contains("at the top (`required`)"));
        assert!(why(r#"{"query": "SELECT 1", "shell": "rm"}"#).contains("additionalProperties"));
        let w = why(r#"{"query": "SELECT 1", "options": {"dry_run": false}}"#);
        assert!(
            w.contains("/options breaks its schema at /dry_run (`const`)"),
            "{w}"
        );
        // The reason names places and keywords, never the values.
        assert!(
            !why(r#"{"query": "SELECT secret_value_123 FROM t WHERE 1=1 AND x"}"#)
                .contains("secret_value_123")
        );
    }

    #[test]
    fn url_arguments_must_name_an_allowed_host() {
        let c = [ToolConstraint {
            domains: vec!["docs.example.com".into(), "*.internal.example".into()],
            required: true,
            ..constraint("fetch", "url")
        }];
        let ok = |args: &str| check_constraints(&c, "fetch", args).is_ok();
        assert!(ok(r#"{"url":"https://docs.example.com/a?b=c"}"#));
        assert!(ok(r#"{"url":"https://DOCS.example.com./x"}"#));
        assert!(ok(r#"{"url":"http://wiki.internal.example:8080/"}"#));
        // Userinfo, look-alike suffixes, the bare parent of a wildcard, backslashes: refused.
        assert!(!ok(r#"{"url":"https://docs.example.com@evil.example/"}"#));
        assert!(!ok(r#"{"url":"https://docs.example.com.evil.example/"}"#));
        assert!(!ok(r#"{"url":"https://evilinternal.example/"}"#));
        assert!(!ok(r#"{"url":"https://internal.example/"}"#));
        assert!(!ok(r#"{"url":"https://evil.example\\@docs.example.com/"}"#));
        assert!(!ok(r#"{"url":"not a url"}"#));
        assert!(!ok(r#"{"q":"x"}"#), "required");
        assert!(!ok("{not json"));
        // Another tool is not constrained.
        assert!(check_constraints(&c, "search", r#"{"url":"https://evil.example"}"#).is_ok());
    }

    #[test]
    fn patterns_match_whole_values_and_lists_element_by_element() {
        let c = [ToolConstraint {
            pattern: Some("[a-z]+".into()),
            max_len: Some(8),
            ..constraint("tag", "/labels")
        }];
        let ok = |args: &str| check_constraints(&c, "tag", args).is_ok();
        assert!(ok(r#"{"labels":["a","bc"]}"#));
        assert!(!ok(r#"{"labels":["a","b c"]}"#));
        assert!(!ok(r#"{"labels":"abc; rm -rf /"}"#));
        assert!(!ok(r#"{"labels":"abcdefghij"}"#));
        assert!(ok(r#"{"other":1}"#), "not required");
    }

    #[test]
    fn stripping_removes_refused_tools_and_choices_of_them() {
        let mut body = serde_json::json!({
            "tools": [
                {"type": "function", "function": {"name": "ok"}},
                {"type": "function", "function": {"name": "bad"}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "bad"}}
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        strip(&mut body, &BTreeSet::from(["bad".to_owned()]));
        assert_eq!(body["tools"].as_array().map(Vec::len), Some(1));
        assert!(!body.contains_key("tool_choice"));
        let mut body = serde_json::json!({
            "tools": [{"type": "web_search"}], "tool_choice": "required", "parallel_tool_calls": true
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        strip(&mut body, &BTreeSet::from(["web_search".to_owned()]));
        assert!(body.is_empty(), "{body:?}");
    }
}

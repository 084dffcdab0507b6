//! IaC rules as data: each rule names the resource kinds it applies to and the conditions a
//! compliant resource meets, over dotted paths into the resource's normalized document
//! (`securityContext.runAsNonRoot`, `ingress[*].cidr_blocks`). The built-in rules live in
//! `rules.toml`; a rules file of the same shape adds to or replaces them.

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How bad a failed rule is.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    /// Resource kinds it checks: `tf:aws_s3_bucket`, `cfn:AWS::S3::Bucket`,
    /// `k8s:container`, `k8s:pod`, `dockerfile`.
    pub kinds: Vec<String>,
    pub rationale: String,
    pub remediation: String,
    /// Only resources that meet this are checked (all when absent).
    #[serde(default)]
    pub only_if: Option<Condition>,
    /// What a compliant resource meets.
    pub pass: Condition,
}

/// A condition on a resource's document.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Condition {
    All {
        all: Vec<Condition>,
    },
    Any {
        any: Vec<Condition>,
    },
    Not {
        not: Box<Condition>,
    },
    /// Every element at a path (a list of blocks, say) meets `check`; true of none.
    Every {
        every: String,
        check: Box<Condition>,
    },
    /// Some element at a path meets `check`.
    SomeOf {
        some: String,
        check: Box<Condition>,
    },
    Test(Box<Test>),
}

/// A test of the values at a path. With `[*]` in the path, `each` (the default for most
/// operators) requires every value found to pass, `some` any of them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Test {
    pub path: String,
    /// The path holds a value that is not null (false: it holds none).
    #[serde(default)]
    pub exists: Option<bool>,
    #[serde(default)]
    pub equals: Option<Value>,
    #[serde(default)]
    pub not_equals: Option<Value>,
    /// The value is one of these.
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<Value>>,
    #[serde(default)]
    pub not_in: Option<Vec<Value>>,
    /// The value (a list, or a string) contains this.
    #[serde(default)]
    pub contains: Option<Value>,
    #[serde(default)]
    pub not_contains: Option<Value>,
    #[serde(default)]
    pub gt: Option<f64>,
    #[serde(default)]
    pub lt: Option<f64>,
    /// A regular expression the whole string value matches.
    #[serde(default)]
    pub matches: Option<String>,
    /// With several values: `every` one must pass (default) or `some` one.
    #[serde(default)]
    pub quantifier: Quantifier,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Quantifier {
    #[default]
    Every,
    Some,
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: rule {id}: {message}")]
    Invalid {
        file: String,
        id: String,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rules: Vec<Rule>,
}

/// The rules that ship with custos.
pub const DEFAULT_RULES: &str = include_str!("rules.toml");

/// Parses a rules file, checking every pattern compiles and every test tests something.
pub fn parse(file: &str, text: &str) -> Result<Vec<Rule>, RuleError> {
    let parsed: RulesFile = toml::from_str(text).map_err(|e| RuleError::Parse {
        file: file.to_owned(),
        message: e.to_string(),
    })?;
    let mut ids = std::collections::BTreeSet::new();
    for r in &parsed.rules {
        let invalid = |message: String| RuleError::Invalid {
            file: file.to_owned(),
            id: r.id.clone(),
            message,
        };
        if !ids.insert(r.id.clone()) {
            return Err(invalid("the id is used twice".into()));
        }
        if r.kinds.is_empty() {
            return Err(invalid("`kinds` is empty".into()));
        }
        for c in std::iter::once(&r.pass).chain(r.only_if.as_ref()) {
            check(c).map_err(invalid)?;
        }
    }
    Ok(parsed.rules)
}

fn check(c: &Condition) -> Result<(), String> {
    match c {
        Condition::All { all: cs } | Condition::Any { any: cs } => cs.iter().try_for_each(check),
        Condition::Not { not } => check(not),
        Condition::Every { check: c, .. } | Condition::SomeOf { check: c, .. } => check(c),
        Condition::Test(t) => {
            if let Some(p) = &t.matches {
                Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| format!("`matches` {p:?} is not a regular expression: {e}"))?;
            }
            let tests = [
                t.exists.is_some(),
                t.equals.is_some(),
                t.not_equals.is_some(),
                t.one_of.is_some(),
                t.not_in.is_some(),
                t.contains.is_some(),
                t.not_contains.is_some(),
                t.gt.is_some(),
                t.lt.is_some(),
                t.matches.is_some(),
            ];
            if !tests.iter().any(|x| *x) {
                return Err(format!("the test of {:?} tests nothing", t.path));
            }
            Ok(())
        }
    }
}

/// The values at a dotted path; `[*]` (or a segment over a list) fans out over lists.
pub fn values_at<'a>(doc: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut cur = vec![doc];
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (name, fan) = match seg.strip_suffix("[*]") {
            Some(n) => (n, true),
            None => (seg, false),
        };
        let mut next = Vec::new();
        for v in cur {
            let v = if name.is_empty() {
                Some(v)
            } else {
                match v {
                    Value::Object(o) => o.get(name),
                    // A list of objects without `[*]`: look inside each (HCL blocks are lists).
                    Value::Array(a) => {
                        next.extend(a.iter().filter_map(|x| x.get(name)));
                        None
                    }
                    _ => None,
                }
            };
            match (v, fan) {
                (Some(Value::Array(a)), true) => next.extend(a.iter()),
                (Some(x), _) => next.push(x),
                (None, _) => {}
            }
        }
        cur = next;
    }
    cur.into_iter().filter(|v| !v.is_null()).collect()
}

/// The elements of the list (or lists) at `path`; a single object counts as one.
fn elements<'a>(doc: &'a Value, path: &str) -> Vec<&'a Value> {
    values_at(doc, path)
        .into_iter()
        .flat_map(|v| match v {
            Value::Array(a) => a.iter().collect::<Vec<_>>(),
            other => vec![other],
        })
        .collect()
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        // `"true"` and `true` mean the same in YAML-ish documents.
        (Value::String(s), Value::Bool(b)) | (Value::Bool(b), Value::String(s)) => {
            s.eq_ignore_ascii_case(if *b { "true" } else { "false" })
        }
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => {
            s.parse::<f64>().ok() == n.as_f64()
        }
        _ => a == b,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn contains(hay: &Value, needle: &Value) -> bool {
    match hay {
        Value::Array(a) => a.iter().any(|x| loose_eq(x, needle)),
        Value::String(s) => needle.as_str().is_some_and(|n| s.contains(n)),
        Value::Object(o) => needle.as_str().is_some_and(|n| o.contains_key(n)),
        _ => false,
    }
}

impl Test {
    fn one(&self, v: &Value) -> bool {
        self.equals.as_ref().is_none_or(|e| loose_eq(v, e))
            && self.not_equals.as_ref().is_none_or(|e| !loose_eq(v, e))
            && self
                .one_of
                .as_ref()
                .is_none_or(|l| l.iter().any(|e| loose_eq(v, e)))
            && self
                .not_in
                .as_ref()
                .is_none_or(|l| !l.iter().any(|e| loose_eq(v, e)))
            && self.contains.as_ref().is_none_or(|n| contains(v, n))
            && self.not_contains.as_ref().is_none_or(|n| !contains(v, n))
            && self.gt.is_none_or(|g| number(v).is_some_and(|x| x > g))
            && self.lt.is_none_or(|l| number(v).is_some_and(|x| x < l))
            && self.matches.as_ref().is_none_or(|p| {
                v.as_str().is_some_and(|s| {
                    Regex::new(&format!("^(?:{p})$")).is_ok_and(|re| re.is_match(s))
                })
            })
    }

    fn eval(&self, doc: &Value) -> bool {
        let found = values_at(doc, &self.path);
        if let Some(want) = self.exists {
            if want == found.is_empty() {
                return false;
            }
            if !want {
                return true;
            }
        }
        let only_exists = self.equals.is_none()
            && self.not_equals.is_none()
            && self.one_of.is_none()
            && self.not_in.is_none()
            && self.contains.is_none()
            && self.not_contains.is_none()
            && self.gt.is_none()
            && self.lt.is_none()
            && self.matches.is_none();
        if only_exists {
            return true;
        }
        // Negative tests hold of an absent value; positive ones need one.
        let negative =
            self.not_equals.is_some() || self.not_in.is_some() || self.not_contains.is_some();
        if found.is_empty() {
            return negative
                && self.equals.is_none()
                && self.one_of.is_none()
                && self.contains.is_none()
                && self.gt.is_none()
                && self.lt.is_none()
                && self.matches.is_none();
        }
        match self.quantifier {
            Quantifier::Every => found.iter().all(|v| self.one(v)),
            Quantifier::Some => found.iter().any(|v| self.one(v)),
        }
    }
}

impl Condition {
    /// Whether `doc` meets the condition.
    pub fn eval(&self, doc: &Value) -> bool {
        match self {
            Condition::All { all } => all.iter().all(|c| c.eval(doc)),
            Condition::Any { any } => any.iter().any(|c| c.eval(doc)),
            Condition::Not { not } => !not.eval(doc),
            Condition::Every { every, check } => elements(doc, every).iter().all(|e| check.eval(e)),
            Condition::SomeOf { some, check } => elements(doc, some).iter().any(|e| check.eval(e)),
            Condition::Test(t) => t.eval(doc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(toml_text: &str) -> Condition {
        #[derive(Deserialize)]
        struct W {
            c: Condition,
        }
        toml::from_str::<W>(toml_text).unwrap().c
    }

    #[test]
    fn paths_fan_out_over_lists_and_blocks() {
        let doc = json!({"ingress": [{"cidr_blocks": ["10.0.0.0/8"]}, {"cidr_blocks": ["0.0.0.0/0"], "from_port": 22}],
                         "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(values_at(&doc, "ingress[*].cidr_blocks[*]").len(), 2);
        assert_eq!(values_at(&doc, "ingress.from_port"), vec![&json!(22)]);
        assert!(values_at(&doc, "spec.volumes").is_empty());
    }

    #[test]
    fn conditions_read_as_rules_are_written() {
        let doc = json!({"securityContext": {"runAsNonRoot": "true", "capabilities": {"drop": ["ALL"]}},
                         "ingress": [{"cidr_blocks": ["10.0.0.0/8"]}, {"cidr_blocks": ["0.0.0.0/0"]}]});
        assert!(cond("c = { path = 'securityContext.runAsNonRoot', equals = true }").eval(&doc));
        assert!(
            cond("c = { path = 'securityContext.capabilities.drop', contains = 'all' }").eval(&doc)
        );
        assert!(
            !cond("c = { path = 'ingress[*].cidr_blocks[*]', not_equals = '0.0.0.0/0' }")
                .eval(&doc)
        );
        assert!(cond(
            "c = { path = 'ingress[*].cidr_blocks[*]', equals = '0.0.0.0/0', quantifier = 'some' }"
        )
        .eval(&doc));
        assert!(
            cond("c = { path = 'readOnlyRootFilesystem', not_equals = false }").eval(&doc),
            "absent holds a negative test"
        );
        assert!(
            !cond("c = { path = 'readOnlyRootFilesystem', equals = true }").eval(&doc),
            "absent fails a positive one"
        );
        assert!(cond("c = { any = [{ path = 'x', exists = true }, { not = { path = 'y', exists = true } }] }").eval(&doc));
        assert!(cond("c = { path = 'resources.limits.memory', exists = false }").eval(&doc));
        let open = "c = { every = 'ingress', check = { any = [{ path = 'cidr_blocks', not_contains = '0.0.0.0/0' }, { path = 'from_port', in = [80, 443] }] } }";
        assert!(!cond(open).eval(&doc));
        assert!(cond(open)
            .eval(&json!({"ingress": [{"cidr_blocks": ["0.0.0.0/0"], "from_port": 443}]})));
        assert!(cond(open).eval(&json!({})), "no ingress at all");
    }

    #[test]
    fn rules_files_are_checked() {
        assert!(parse("x.toml", "rules = [{ id = 'A', title = 't', severity = 'high', kinds = ['k8s:pod'], rationale = 'r', remediation = 'm', pass = { path = 'p' } }]")
            .unwrap_err()
            .to_string()
            .contains("tests nothing"));
        assert!(parse("x.toml", "rules = [{ id = 'A', title = 't', severity = 'high', kinds = ['k8s:pod'], rationale = 'r', remediation = 'm', pass = { path = 'p', matches = '(' } }]")
            .is_err());
        let rules = parse("rules.toml", DEFAULT_RULES).unwrap();
        assert!(rules.len() >= 20);
    }
}

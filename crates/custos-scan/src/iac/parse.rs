//! Infrastructure files into checkable resources, each a kind, a name, a place and a
//! document the rules read: Terraform plans (`terraform show -json`, with what refers to each
//! resource attached as `_referenced_by`), CloudFormation templates (JSON or YAML),
//! Kubernetes manifests (each workload's pod, and each container with its pod beside it),
//! and Dockerfiles.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// One resource to check.
#[derive(Clone, Debug)]
pub struct Target {
    /// `tf:aws_s3_bucket`, `cfn:AWS::S3::Bucket`, `k8s:pod`, `k8s:container`, `dockerfile`.
    pub kind: String,
    /// What a person calls it: a plan address, a logical id, `Deployment/web`, …
    pub name: String,
    /// 1-based, 0 when the format has no lines (plans).
    pub line: usize,
    pub doc: Value,
}

/// What a file is, by name and content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    TerraformPlan,
    CloudFormation,
    Kubernetes,
    Dockerfile,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::TerraformPlan => "terraform-plan",
            Format::CloudFormation => "cloudformation",
            Format::Kubernetes => "kubernetes",
            Format::Dockerfile => "dockerfile",
        }
    }
}

/// Whether a file name is a Dockerfile's.
pub fn is_dockerfile(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "dockerfile"
        || lower == "containerfile"
        || lower.starts_with("dockerfile.")
        || lower.ends_with(".dockerfile")
}

/// Reads a file's resources; `None` when it is none of the formats (a YAML file that is
/// not a manifest, a JSON file that is not a plan or template).
pub fn parse(name: &str, text: &str) -> Option<Result<(Format, Vec<Target>), String>> {
    let base = name.rsplit('/').next().unwrap_or(name);
    if is_dockerfile(base) {
        return Some(Ok((Format::Dockerfile, dockerfile(text))));
    }
    let lower = base.to_ascii_lowercase();
    if lower.ends_with(".json") {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            // A JSON file that is not JSON is only ours if it looks like a plan or template.
            Err(e)
                if text.contains("resource_changes")
                    || text.contains("AWSTemplateFormatVersion") =>
            {
                return Some(Err(format!(
                    "not JSON (line {}, column {}): {e}",
                    e.line(),
                    e.column()
                )))
            }
            Err(_) => return None,
        };
        if v.get("resource_changes").is_some() || v.get("planned_values").is_some() {
            return Some(terraform_plan(&v).map(|t| (Format::TerraformPlan, t)));
        }
        if is_cloudformation(&v) {
            return Some(Ok((Format::CloudFormation, cloudformation(&v, text))));
        }
        return None;
    }
    if lower.ends_with(".yaml") || lower.ends_with(".yml") || lower.ends_with(".template") {
        return yaml(text);
    }
    None
}

fn is_cloudformation(v: &Value) -> bool {
    v.get("AWSTemplateFormatVersion").is_some()
        || v.get("Resources")
            .and_then(Value::as_object)
            .is_some_and(|r| {
                !r.is_empty()
                    && r.values().all(|x| {
                        x.get("Type")
                            .and_then(Value::as_str)
                            .is_some_and(|t| t.contains("::"))
                    })
            })
}

/// YAML: a CloudFormation template, or Kubernetes manifests (several documents).
fn yaml(text: &str) -> Option<Result<(Format, Vec<Target>), String>> {
    let mut docs = Vec::new();
    let mut starts = Vec::new();
    for (i, chunk) in split_documents(text) {
        match serde_norway::from_str::<serde_norway::Value>(chunk) {
            Ok(serde_norway::Value::Null) => {}
            Ok(v) => {
                docs.push(from_yaml(v));
                starts.push(i);
            }
            Err(e) => {
                let looks_ours = chunk.contains("apiVersion:") || chunk.contains("Resources:");
                return looks_ours.then(|| Err(format!("not YAML: {e}")));
            }
        }
    }
    if docs.len() == 1 && is_cloudformation(&docs[0]) {
        return Some(Ok((Format::CloudFormation, cloudformation(&docs[0], text))));
    }
    let mut targets = Vec::new();
    let mut any = false;
    for (doc, start) in docs.iter().zip(starts) {
        let items: Vec<&Value> = match doc.get("kind").and_then(Value::as_str) {
            Some("List") => doc
                .get("items")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            Some(_) => vec![doc],
            None => continue,
        };
        for item in items {
            if item.get("apiVersion").is_none() {
                continue;
            }
            any = true;
            targets.extend(kubernetes(item, text, start));
        }
    }
    any.then_some(Ok((Format::Kubernetes, targets)))
}

/// A YAML value as JSON. CloudFormation's short forms become their long forms (`!Ref x` is
/// `{"Ref": "x"}`, `!Sub s` is `{"Fn::Sub": "s"}`); other tags keep their value.
fn from_yaml(v: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                n.as_f64().map_or(Value::Null, |f| json!(f))
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(from_yaml).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        Y::Bool(b) => b.to_string(),
                        Y::Number(n) => n.to_string(),
                        other => serde_norway::to_string(&other)
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    };
                    (key, from_yaml(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => {
            let name = t.tag.to_string();
            let name = name.trim_start_matches('!');
            let value = from_yaml(t.value);
            match name {
                "Ref" | "Condition" => json!({ name: value }),
                n if n.chars().next().is_some_and(char::is_uppercase) => {
                    json!({ format!("Fn::{n}"): value })
                }
                _ => value,
            }
        }
    }
}

/// `---`-separated documents with the 1-based line each starts on.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut pos = 0;
    for (line_no, line) in (1..).zip(text.split_inclusive('\n')) {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            out.push((start_line, &text[start_byte..pos]));
            start_byte = pos + line.len();
            start_line = line_no + 1;
        }
        pos += line.len();
    }
    out.push((start_line, &text[start_byte..]));
    out
}

/// The 1-based line of the first occurrence of `needle` at or after line `from`.
fn line_of(text: &str, needle: &str, from: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map_or(from, |(i, _)| i + 1)
}

/// The resource a reference names: `aws_s3_bucket.logs.id` → `aws_s3_bucket.logs`,
/// `module.m.aws_s3_bucket.x.arn` → `module.m.aws_s3_bucket.x`.
fn referenced_address(r: &str) -> Option<String> {
    let parts: Vec<&str> = r.split('.').collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i + 1 < parts.len() && parts[i] == "module" {
        out.push(parts[i]);
        out.push(parts[i + 1]);
        i += 2;
    }
    if parts.get(i) == Some(&"data")
        || parts.get(i) == Some(&"var")
        || parts.get(i) == Some(&"local")
    {
        return None;
    }
    let (ty, name) = (parts.get(i)?, parts.get(i + 1)?);
    out.push(ty);
    // `name["key"]` or `name[0]` stay on the name.
    out.push(name);
    Some(out.join("."))
}

/// References between resources in a plan's configuration: referring address → the
/// addresses it names.
fn plan_references(module: &Value, prefix: &str, out: &mut BTreeMap<String, Vec<String>>) {
    for r in module
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(addr) = r.get("address").and_then(Value::as_str) else {
            continue;
        };
        let mut refs = Vec::new();
        collect_references(r.get("expressions").unwrap_or(&Value::Null), &mut refs);
        let named: Vec<String> = refs
            .iter()
            .filter_map(|x| referenced_address(x))
            .map(|a| format!("{prefix}{a}"))
            .collect();
        out.insert(format!("{prefix}{addr}"), named);
    }
    for (name, call) in module
        .get("module_calls")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(m) = call.get("module") {
            plan_references(m, &format!("{prefix}module.{name}."), out);
        }
    }
}

fn collect_references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::Array(refs)) = o.get("references") {
                out.extend(refs.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            o.values().for_each(|x| collect_references(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_references(x, out)),
        _ => {}
    }
}

/// Strips a resource instance's index: `aws_s3_bucket.x["a"]` → `aws_s3_bucket.x`.
fn without_index(address: &str) -> &str {
    match address.rfind('[') {
        Some(i) if address.ends_with(']') => &address[..i],
        _ => address,
    }
}

/// `terraform show -json` of a plan: every resource that exists after apply.
pub fn terraform_plan(plan: &Value) -> Result<Vec<Target>, String> {
    let changes = match plan.get("resource_changes") {
        Some(Value::Array(c)) => c,
        Some(_) => return Err("`resource_changes` must be an array".into()),
        None => return Ok(Vec::new()),
    };
    let mut refs = BTreeMap::new();
    if let Some(root) = plan.get("configuration").and_then(|c| c.get("root_module")) {
        plan_references(root, "", &mut refs);
    }
    let mut resources: Vec<(String, String, Value)> = Vec::new();
    for (i, rc) in changes.iter().enumerate() {
        let address = rc
            .get("address")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("resource_changes[{i}] has no address"))?;
        if rc.get("mode").and_then(Value::as_str) == Some("data") {
            continue;
        }
        let change = rc.get("change").unwrap_or(&Value::Null);
        let deleted = change
            .get("actions")
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() == 1 && a[0] == "delete");
        if deleted {
            continue;
        }
        let ty = rc
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut doc = match change.get("after") {
            Some(Value::Object(o)) => Value::Object(o.clone()),
            _ => json!({}),
        };
        if let Some(u) = change.get("after_unknown").filter(|u| u.is_object()) {
            doc["_unknown"] = u.clone();
        }
        resources.push((address.to_owned(), ty, doc));
    }
    // What refers to each resource, by the referrer's type: `_referenced_by.TYPE = [docs]`.
    let mut by: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (addr, ty, doc) in &resources {
        let config_addr = without_index(addr)
            .split('.')
            .filter(|p| !p.starts_with('['))
            .collect::<Vec<_>>()
            .join(".");
        let mut named: Vec<String> = refs
            .get(&config_addr)
            .or_else(|| refs.get(without_index(addr)))
            .cloned()
            .unwrap_or_default();
        // A bucket's companion resources name it by `bucket` even without configuration.
        if let Some(b) = doc.get("bucket").and_then(Value::as_str) {
            for (other, oty, odoc) in &resources {
                if oty == "aws_s3_bucket"
                    && other != addr
                    && odoc.get("bucket").and_then(Value::as_str) == Some(b)
                {
                    named.push(without_index(other).to_owned());
                }
            }
        }
        named.sort();
        named.dedup();
        for target in named {
            let list = by
                .entry(target)
                .or_default()
                .entry(ty.clone())
                .or_insert_with(|| json!([]));
            if let Value::Array(a) = list {
                a.push(doc.clone());
            }
        }
    }
    Ok(resources
        .into_iter()
        .map(|(addr, ty, mut doc)| {
            if let Some(m) = by.get(without_index(&addr)) {
                doc["_referenced_by"] = Value::Object(m.clone());
            }
            Target {
                kind: format!("tf:{ty}"),
                name: addr,
                line: 0,
                doc,
            }
        })
        .collect())
}

/// A CloudFormation template's resources, by logical id.
fn cloudformation(v: &Value, text: &str) -> Vec<Target> {
    let mut out = Vec::new();
    for (id, r) in v
        .get("Resources")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let Some(ty) = r.get("Type").and_then(Value::as_str) else {
            continue;
        };
        out.push(Target {
            kind: format!("cfn:{ty}"),
            name: id.clone(),
            line: text
                .lines()
                .position(|l| {
                    let l = l.trim_start();
                    l.starts_with(&format!("{id}:")) || l.starts_with(&format!("\"{id}\""))
                })
                .map_or(0, |i| i + 1),
            doc: r.get("Properties").cloned().unwrap_or_else(|| json!({})),
        });
    }
    out
}

/// The pod spec of a workload, by kind.
fn pod_spec<'a>(kind: &str, doc: &'a Value) -> Option<&'a Value> {
    let spec = doc.get("spec")?;
    match kind {
        "Pod" => Some(spec),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => spec.get("template")?.get("spec"),
        "CronJob" => spec
            .get("jobTemplate")?
            .get("spec")?
            .get("template")?
            .get("spec"),
        _ => None,
    }
}

/// A workload's pod and its containers; other kinds as `k8s:KIND` with the whole object.
fn kubernetes(doc: &Value, text: &str, start: usize) -> Vec<Target> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    let ns = doc
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str);
    let qualified = match ns {
        Some(n) => format!("{kind}/{n}/{name}"),
        None => format!("{kind}/{name}"),
    };
    let line = line_of(text, &format!("name: {name}"), start);
    let mut out = vec![Target {
        kind: format!("k8s:{kind}"),
        name: qualified.clone(),
        line,
        doc: doc.clone(),
    }];
    let Some(pod) = pod_spec(kind, doc) else {
        return out;
    };
    out.push(Target {
        kind: "k8s:pod".into(),
        name: qualified.clone(),
        line,
        doc: pod.clone(),
    });
    let pod_context = json!({
        "securityContext": pod.get("securityContext").cloned().unwrap_or(Value::Null),
        "hostNetwork": pod.get("hostNetwork").cloned().unwrap_or(Value::Null),
        "hostPID": pod.get("hostPID").cloned().unwrap_or(Value::Null),
    });
    for list in ["initContainers", "containers"] {
        for c in pod
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let cname = c.get("name").and_then(Value::as_str).unwrap_or("?");
            let mut d = c.clone();
            d["pod"] = pod_context.clone();
            out.push(Target {
                kind: "k8s:container".into(),
                name: format!("{qualified} (container {cname})"),
                line: line_of(text, &format!("name: {cname}"), line),
                doc: d,
            });
        }
    }
    out
}

/// A Dockerfile's final stage: its base image, user and health check.
fn dockerfile(text: &str) -> Vec<Target> {
    // Join continuation lines, keeping each instruction's first line number.
    let mut instructions: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_none() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if let Some(body) = line.strip_suffix('\\') {
            acc.push_str(body);
            acc.push(' ');
            pending = Some((start, acc));
        } else {
            acc.push_str(line);
            instructions.push((start, acc));
        }
    }
    if let Some(p) = pending {
        instructions.push(p);
    }
    let mut stages: Vec<Map<String, Value>> = Vec::new();
    for (line, ins) in &instructions {
        let (op, rest) = ins.split_once(char::is_whitespace).unwrap_or((ins, ""));
        let rest = rest.trim();
        match op.to_ascii_uppercase().as_str() {
            "FROM" => {
                let image = rest
                    .split_whitespace()
                    .find(|w| !w.starts_with("--"))
                    .unwrap_or("")
                    .to_owned();
                let mut m = Map::new();
                m.insert("from".into(), json!(image));
                m.insert("line".into(), json!(line));
                stages.push(m);
            }
            "USER" => {
                if let Some(s) = stages.last_mut() {
                    let user = rest.split(':').next().unwrap_or("").trim().to_owned();
                    s.insert("user".into(), json!(user));
                }
            }
            "HEALTHCHECK" => {
                if let Some(s) = stages.last_mut() {
                    s.insert(
                        "healthcheck".into(),
                        json!(!rest.eq_ignore_ascii_case("none")),
                    );
                }
            }
            "ADD" => {
                if let Some(s) = stages.last_mut() {
                    if rest
                        .split_whitespace()
                        .any(|w| w.starts_with("http://") || w.starts_with("https://"))
                    {
                        s.insert("add_url".into(), json!(true));
                    }
                }
            }
            _ => {}
        }
    }
    let Some(last) = stages.pop() else {
        return Vec::new();
    };
    let from = last
        .get("from")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let line = last.get("line").and_then(Value::as_u64).unwrap_or(1) as usize;
    let mut doc = Value::Object(last);
    // `scratch` has no users; an unpinned tag floats.
    let tag = from.rsplit_once('@').map(|_| "digest").or_else(|| {
        from.rsplit('/')
            .next()
            .and_then(|l| l.split_once(':'))
            .map(|(_, t)| t)
    });
    doc["image_tag"] = json!(tag.unwrap_or("latest"));
    vec![Target {
        kind: "dockerfile".into(),
        name: format!("FROM {from}"),
        line,
        doc,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_attach_what_refers_to_each_resource() {
        let plan = json!({
            "resource_changes": [
                {"address": "aws_s3_bucket.logs", "mode": "managed", "type": "aws_s3_bucket",
                 "change": {"actions": ["create"], "after": {"bucket": "acme-logs"}, "after_unknown": {"id": true}}},
                {"address": "aws_s3_bucket_server_side_encryption_configuration.logs", "mode": "managed",
                 "type": "aws_s3_bucket_server_side_encryption_configuration",
                 "change": {"actions": ["create"], "after": {"rule": [{"apply_server_side_encryption_by_default": [{"sse_algorithm": "aws:kms"}]}]}}},
                {"address": "aws_s3_bucket.old", "mode": "managed", "type": "aws_s3_bucket",
                 "change": {"actions": ["delete"], "after": null}}
            ],
            "configuration": {"root_module": {"resources": [
                {"address": "aws_s3_bucket_server_side_encryption_configuration.logs",
                 "expressions": {"bucket": {"references": ["aws_s3_bucket.logs.id", "aws_s3_bucket.logs"]}}}
            ]}}
        });
        let t = terraform_plan(&plan).unwrap();
        assert_eq!(t.len(), 2, "deleted resources are not checked");
        let bucket = &t[0];
        assert_eq!(bucket.kind, "tf:aws_s3_bucket");
        assert!(
            bucket.doc["_referenced_by"]["aws_s3_bucket_server_side_encryption_configuration"]
                .is_array()
        );
    }

    #[test]
    fn manifests_give_pods_and_containers_with_their_lines() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      securityContext:\n        runAsNonRoot: true\n      containers:\n        - name: app\n          image: web:1\n";
        let Some(Ok((Format::Kubernetes, t))) = parse("k8s/web.yaml", text) else {
            panic!("not read as manifests")
        };
        let c = t.iter().find(|t| t.kind == "k8s:container").unwrap();
        assert_eq!(c.name, "Deployment/web (container app)");
        assert_eq!(c.line, 16);
        assert_eq!(c.doc["pod"]["securityContext"]["runAsNonRoot"], true);
        assert!(parse("values.yaml", "replicas: 3\n").is_none());
    }

    #[test]
    fn cloudformation_yaml_with_short_form_tags_reads() {
        let text = "AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  Logs:\n    Type: AWS::S3::Bucket\n    Properties:\n      BucketName: !Sub '${AWS::StackName}-logs'\n";
        let Some(Ok((Format::CloudFormation, t))) = parse("stack.yaml", text) else {
            panic!("not read as a template")
        };
        assert_eq!(
            (t[0].kind.as_str(), t[0].name.as_str(), t[0].line),
            ("cfn:AWS::S3::Bucket", "Logs", 3)
        );
    }

    #[test]
    fn dockerfiles_give_the_final_stage() {
        let text = "FROM golang:1.22 AS build\nRUN go build\nFROM gcr.io/distroless/static:nonroot\nUSER 65532:65532\nCOPY --from=build /app /app\n";
        let t = dockerfile(text);
        assert_eq!(t[0].doc["user"], "65532");
        assert_eq!(t[0].doc["image_tag"], "nonroot");
        assert_eq!(t[0].line, 3);
        let t = dockerfile("FROM python\nRUN pip install \\\n  flask\n");
        assert!(t[0].doc.get("user").is_none());
        assert_eq!(t[0].doc["image_tag"], "latest");
    }
}

//! Report formats for findings: JSON (secrets redacted unless asked) and SARIF 2.1.0, the
//! format GitHub code scanning and most CI dashboards ingest.

use crate::secrets::{Finding, RuleSet};
use serde_json::{json, Value};

/// Findings as JSON objects; `redact` cuts each secret to its first four characters.
pub fn findings_json(findings: &[Finding], redact: bool) -> Value {
    Value::Array(
        findings
            .iter()
            .map(|f| {
                let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
                if redact {
                    v["secret"] = Value::String(f.redacted_secret());
                    v["match"] = Value::String(f.redacted_match());
                }
                v
            })
            .collect(),
    )
}

/// A relative path as a URI reference: unreserved characters and `/` kept, the rest
/// percent-encoded.
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A SARIF 2.1.0 log with one run: every rule of the set as a reporting descriptor and one
/// result per finding, located by line and column (code points).
pub fn sarif(findings: &[Finding], rules: &RuleSet, redact: bool) -> Value {
    let descriptors: Vec<Value> = rules
        .rules
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.id,
                "shortDescription": {"text": r.description},
                "defaultConfiguration": {"level": "error"},
                "properties": {"tags": r.tags.iter().cloned().chain(["security".to_owned(), "secret".to_owned()]).collect::<Vec<_>>(), "security-severity": "8.0"},
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let index = rules.rules.iter().position(|r| r.id == f.rule_id);
            let secret = if redact { f.redacted_secret() } else { f.secret.clone() };
            let mut location = json!({"physicalLocation": {"artifactLocation": {"uri": uri(&f.path), "uriBaseId": "%SRCROOT%"}}});
            if f.line > 0 {
                location["physicalLocation"]["region"] = json!({
                    "startLine": f.line, "startColumn": f.column,
                    "endLine": f.end_line, "endColumn": f.end_column.max(1),
                });
            }
            let mut result = json!({
                "ruleId": f.rule_id,
                "level": "error",
                "message": {"text": format!("{} found: {secret}", f.description)},
                "locations": [location],
                "partialFingerprints": {"custosSecret/v1": f.fingerprint},
            });
            if let Some(i) = index {
                result["ruleIndex"] = json!(i);
            }
            if let Some(c) = &f.commit {
                result["properties"] = json!({"commit": c.commit, "author": c.author, "email": c.email, "date": c.date, "commitMessage": c.message});
            }
            if let Some(l) = &f.layer {
                result["properties"] = json!({"layer": l.index, "layerDigest": l.digest,
                    "createdBy": l.created_by, "removedInLaterLayer": f.removed_in_later_layer});
            }
            result
        })
        .collect();
    sarif_document(descriptors, results)
}

/// A SARIF 2.1.0 log with one run of custos: rule descriptors and results.
pub fn sarif_document(rules: Vec<Value>, results: Vec<Value>) -> Value {
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "custos",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://example.invalid/custos",
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "originalUriBaseIds": {"%SRCROOT%": {"uri": "file:///"}},
            "results": results,
        }]
    })
}

/// A path as a SARIF artifact URI (relative, percent-encoded).
pub fn artifact_uri(path: &str) -> String {
    uri(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_encoded() {
        assert_eq!(uri("src/my file#1.rs"), "src/my%20file%231.rs");
        assert_eq!(uri("a/é"), "a/%C3%A9");
    }
}

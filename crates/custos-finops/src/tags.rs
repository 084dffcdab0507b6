//! Mandatory cost tags in infrastructure plans: reads `terraform show -json` output and
//! lists every resource that will exist after apply and can carry tags (AWS and Azure
//! `tags`/`tags_all`, Google `labels`) but lacks a required one. Provider default tags count:
//! AWS puts them in `tags_all`, Google in `effective_labels`.

use serde::Serialize;
use serde_json::Value;

/// One resource's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResourceTags {
    pub address: String,
    pub resource_type: String,
    /// Required tags it lacks (empty: compliant).
    pub missing: Vec<String>,
    /// Tags whose values are known only after apply.
    pub unknown: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PlanReport {
    pub checked: Vec<ResourceTags>,
    /// Resources of types that take no tags.
    pub untaggable: usize,
}

impl PlanReport {
    pub fn failing(&self) -> impl Iterator<Item = &ResourceTags> {
        self.checked.iter().filter(|r| !r.missing.is_empty())
    }
}

const TAG_FIELDS: [&str; 4] = ["tags_all", "effective_labels", "tags", "labels"];

/// Checks a Terraform plan (JSON) for resources missing any of `required`.
pub fn check_plan(plan: &Value, required: &[String]) -> Result<PlanReport, String> {
    let Some(obj) = plan.as_object() else {
        return Err(
            "a Terraform plan is a JSON object (from `terraform show -json PLANFILE`)".into(),
        );
    };
    let Some(changes) = obj.get("resource_changes") else {
        if obj.contains_key("format_version") {
            return Ok(PlanReport::default());
        }
        return Err("no `resource_changes`: this does not look like `terraform show -json` output of a plan".into());
    };
    let Some(changes) = changes.as_array() else {
        return Err("`resource_changes` must be an array".into());
    };
    let mut report = PlanReport::default();
    for (i, rc) in changes.iter().enumerate() {
        let address = rc
            .get("address")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("resource_changes[{i}] has no address"))?;
        if rc.get("mode").and_then(Value::as_str) == Some("data") {
            continue;
        }
        let change = rc.get("change").unwrap_or(&Value::Null);
        let actions: Vec<&str> = change
            .get("actions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if actions == ["delete"] {
            continue;
        }
        let after = change.get("after").unwrap_or(&Value::Null);
        let after_unknown = change.get("after_unknown").unwrap_or(&Value::Null);
        let present: Vec<&str> = TAG_FIELDS
            .iter()
            .copied()
            .filter(|f| after.get(*f).is_some() || after_unknown.get(*f).is_some())
            .collect();
        if present.is_empty() {
            report.untaggable += 1;
            continue;
        }
        let unknown = present
            .iter()
            .any(|f| after_unknown.get(*f) == Some(&Value::Bool(true)));
        // The first field with values wins: tags_all includes the provider's default tags.
        let tags = present
            .iter()
            .find_map(|f| after.get(*f).and_then(Value::as_object));
        let has = |k: &str| {
            tags.and_then(|t| t.get(k))
                .is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
                || after_unknown
                    .get(present[0])
                    .and_then(|u| u.get(k))
                    .is_some_and(|u| u == &Value::Bool(true))
        };
        let missing = if unknown {
            Vec::new()
        } else {
            required.iter().filter(|k| !has(k)).cloned().collect()
        };
        report.checked.push(ResourceTags {
            address: address.to_owned(),
            resource_type: rc
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            missing,
            unknown,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req() -> Vec<String> {
        ["Project", "Env", "Team"].map(String::from).to_vec()
    }

    #[test]
    fn finds_missing_tags_and_counts_default_tags() {
        let plan = json!({"format_version": "1.2", "resource_changes": [
            {"address": "aws_instance.web", "mode": "managed", "type": "aws_instance",
             "change": {"actions": ["create"], "after": {"tags": {"Project": "atlas"},
                 "tags_all": {"Project": "atlas", "Env": "prod", "Team": "ml"}}, "after_unknown": {}}},
            {"address": "aws_s3_bucket.logs", "mode": "managed", "type": "aws_s3_bucket",
             "change": {"actions": ["update"], "after": {"tags": {"Project": "atlas"}, "tags_all": {"Project": "atlas"}}}},
            {"address": "google_storage_bucket.b", "mode": "managed", "type": "google_storage_bucket",
             "change": {"actions": ["create"], "after": {"labels": null}, "after_unknown": {}}},
            {"address": "aws_iam_policy_document.x", "mode": "data", "type": "aws_iam_policy_document",
             "change": {"actions": ["read"], "after": {}}},
            {"address": "aws_route.r", "mode": "managed", "type": "aws_route",
             "change": {"actions": ["create"], "after": {"cidr": "0.0.0.0/0"}}},
            {"address": "aws_instance.old", "mode": "managed", "type": "aws_instance",
             "change": {"actions": ["delete"], "after": null}},
            {"address": "aws_instance.later", "mode": "managed", "type": "aws_instance",
             "change": {"actions": ["create"], "after": {}, "after_unknown": {"tags_all": true}}}
        ]});
        let r = check_plan(&plan, &req()).unwrap();
        let failing: Vec<(&str, Vec<String>)> = r
            .failing()
            .map(|f| (f.address.as_str(), f.missing.clone()))
            .collect();
        assert_eq!(
            failing,
            vec![
                (
                    "aws_s3_bucket.logs",
                    vec!["Env".to_owned(), "Team".to_owned()]
                ),
                ("google_storage_bucket.b", req()),
            ]
        );
        assert_eq!(r.untaggable, 1);
        assert!(r
            .checked
            .iter()
            .any(|c| c.address == "aws_instance.later" && c.unknown));
    }

    #[test]
    fn rejects_what_is_not_a_plan() {
        assert!(check_plan(&json!([1]), &req()).is_err());
        assert!(check_plan(&json!({"resources": []}), &req())
            .unwrap_err()
            .contains("terraform show -json"));
        assert!(check_plan(&json!({"format_version": "1.2"}), &req())
            .unwrap()
            .checked
            .is_empty());
        assert!(check_plan(&json!({"resource_changes": [{}]}), &req()).is_err());
    }
}

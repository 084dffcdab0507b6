//! Reconciliation of billed spend: how much of a bill carries the allocation tag, and how the
//! gateway's own metering compares with each provider's bill, model by model. Pure: the store
//! brings the grouped rows, the CLI prints the result.
//!
//! A billed line is attributed to one metered model: first by an explicit mapping (a text of
//! the line → a model), else to the longest model name that occurs in the line as a whole
//! name — `gpt-4o` never claims a `gpt-4o-mini` line, but does claim a dated snapshot such as
//! `gpt-4o-2024-08-06`.
//!
//! Jobs reported through `/v1/usage` are checked against the bill too: each must appear (by
//! its tag value, else by its provider and resource) within 48 hours of its end.

use crate::Amount;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Billed spend of one value of the allocation tag ("" = untagged).
#[derive(Clone, Debug)]
pub struct TagGroup {
    pub value: String,
    pub currency: String,
    pub billed: Amount,
    pub rows: i64,
}

/// Billed spend of one provider line (service, SKU, description as the bill names them).
#[derive(Clone, Debug)]
pub struct BilledLine {
    pub provider: String,
    pub service: String,
    pub sku: String,
    pub description: String,
    pub currency: String,
    pub billed: Amount,
}

/// The gateway's metered cost of one model of one provider.
#[derive(Clone, Debug)]
pub struct MeteredModel {
    pub provider: String,
    pub model: String,
    pub currency: String,
    pub cost: Amount,
}

/// How bill names relate to the gateway's: provider names, and bill texts to models.
#[derive(Clone, Debug, Default)]
pub struct Mapping {
    /// Gateway provider → billing provider name (compared case-insensitively).
    pub providers: HashMap<String, String>,
    /// A text found in a bill line (its SKU, service or description) → the gateway's model.
    pub models: Vec<(String, String)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TagShare {
    pub value: String,
    pub billed: String,
    pub rows: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Allocation {
    pub currency: String,
    pub billed: String,
    pub untagged: String,
    pub untagged_percent: f64,
    pub tag_compliance_percent: f64,
    pub within_tolerance: bool,
    pub by_tag: Vec<TagShare>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelGap {
    pub model: String,
    pub metered: String,
    pub billed: String,
    pub gap: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProviderGap {
    pub provider: String,
    pub billing_provider: String,
    pub metered: String,
    pub billed: String,
    pub gap: String,
    pub gap_percent: f64,
    pub bill_found: bool,
    pub within_tolerance: bool,
    pub by_model: Vec<ModelGap>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Reconciliation {
    pub allocation: Vec<Allocation>,
    pub metering: Vec<ProviderGap>,
    /// An untagged share or a metering gap beyond the tolerance.
    #[serde(skip)]
    pub failed: bool,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// Whether `name` occurs in `hay` (both lowercase) as a whole name: not inside a longer
/// word, and not continued by `-` and a letter (`gpt-4o-mini` is another model than
/// `gpt-4o`); a `-` and a digit continue it as a dated or numbered snapshot.
pub fn names_model(hay: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let mut from = 0;
    while let Some(at) = hay[from..].find(name) {
        let start = from + at;
        let end = start + name.len();
        let before_ok = hay[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !is_name_char(c));
        let mut after = hay[end..].chars();
        let after_ok = match after.next() {
            None => true,
            Some('-') => after.next().is_none_or(|c| c.is_ascii_digit()),
            Some(c) => !is_name_char(c) && c != '.',
        };
        if before_ok && after_ok {
            return true;
        }
        from = start + hay[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

fn percent(part: Amount, whole: Amount) -> f64 {
    if whole.is_zero() {
        0.0
    } else {
        part.to_f64() / whole.to_f64() * 100.0
    }
}

/// Reconciles a period's bill against its allocation tag and the gateway's metering;
/// `tolerance` is the largest acceptable untagged share and metering gap, in percent.
pub fn reconcile(
    by_tag: &[TagGroup],
    billed: &[BilledLine],
    metered: &[MeteredModel],
    mapping: &Mapping,
    tolerance: f64,
) -> Reconciliation {
    let mut failed = false;
    let mut totals: BTreeMap<&str, (Amount, Amount)> = BTreeMap::new();
    for g in by_tag {
        let e = totals.entry(&g.currency).or_default();
        e.0 = e.0.saturating_add(g.billed);
        if g.value.is_empty() {
            e.1 = e.1.saturating_add(g.billed);
        }
    }
    let mut allocation = Vec::new();
    for (cur, (total, untagged)) in &totals {
        let share = percent(*untagged, *total);
        let ok = share <= tolerance;
        failed |= !ok;
        allocation.push(Allocation {
            currency: (*cur).to_owned(),
            billed: total.to_string(),
            untagged: untagged.to_string(),
            untagged_percent: share,
            tag_compliance_percent: 100.0 - share,
            within_tolerance: ok,
            by_tag: by_tag
                .iter()
                .filter(|g| g.currency == *cur)
                .map(|g| TagShare {
                    value: g.value.clone(),
                    billed: g.billed.to_string(),
                    rows: g.rows,
                })
                .collect(),
        });
    }

    let mut providers: BTreeMap<&str, Vec<&MeteredModel>> = BTreeMap::new();
    for m in metered {
        providers.entry(&m.provider).or_default().push(m);
    }
    let mut metering = Vec::new();
    for (provider, models) in providers {
        let billing_name = mapping
            .providers
            .get(provider)
            .map(|n| n.to_lowercase())
            .unwrap_or_else(|| provider.to_lowercase());
        let lines: Vec<&BilledLine> = billed
            .iter()
            .filter(|b| b.provider.to_lowercase() == billing_name)
            .collect();
        // Each line goes to one model: a mapping first, else the longest whole name.
        let mut by_length: Vec<&&MeteredModel> = models.iter().collect();
        by_length.sort_by_key(|m| std::cmp::Reverse(m.model.len()));
        let mut billed_of: HashMap<(&str, &str), Amount> = HashMap::new();
        let mut other = Amount::ZERO;
        for line in &lines {
            let hay = format!("{} {} {}", line.service, line.sku, line.description).to_lowercase();
            let mapped = mapping
                .models
                .iter()
                .find(|(text, _)| hay.contains(&text.to_lowercase()))
                .map(|(_, model)| model.as_str());
            let owner: Option<&MeteredModel> = match mapped {
                Some(model) => models
                    .iter()
                    .find(|m| m.model == model && m.currency == line.currency)
                    .copied(),
                None => by_length
                    .iter()
                    .find(|m| {
                        m.currency == line.currency && names_model(&hay, &m.model.to_lowercase())
                    })
                    .map(|m| **m),
            };
            match owner {
                Some(m) => {
                    let e = billed_of.entry((&m.model, &m.currency)).or_default();
                    *e = e.saturating_add(line.billed);
                }
                None => other = other.saturating_add(line.billed),
            }
        }
        let mut provider_metered = Amount::ZERO;
        let mut provider_billed = Amount::ZERO;
        let mut rows = Vec::new();
        for m in &models {
            let b = billed_of
                .get(&(m.model.as_str(), m.currency.as_str()))
                .copied()
                .unwrap_or(Amount::ZERO);
            provider_metered = provider_metered.saturating_add(m.cost);
            provider_billed = provider_billed.saturating_add(b);
            rows.push(ModelGap {
                model: m.model.clone(),
                metered: m.cost.to_string(),
                billed: b.to_string(),
                gap: b.saturating_sub(m.cost).to_string(),
                currency: Some(m.currency.clone()),
            });
        }
        if !other.is_zero() {
            rows.push(ModelGap {
                model: "(other billed items)".into(),
                metered: "0".into(),
                billed: other.to_string(),
                gap: other.to_string(),
                currency: None,
            });
            provider_billed = provider_billed.saturating_add(other);
        }
        let gap = provider_billed.saturating_sub(provider_metered);
        let gap_pct = if provider_billed.is_zero() {
            if provider_metered.is_zero() {
                0.0
            } else {
                100.0
            }
        } else {
            percent(gap, provider_billed)
        };
        let ok = gap_pct.abs() <= tolerance;
        failed |= !ok && !lines.is_empty();
        metering.push(ProviderGap {
            provider: provider.to_owned(),
            billing_provider: billing_name,
            metered: provider_metered.to_string(),
            billed: provider_billed.to_string(),
            gap: gap.to_string(),
            gap_percent: gap_pct,
            bill_found: !lines.is_empty(),
            within_tolerance: ok,
            by_model: rows,
        });
    }
    Reconciliation {
        allocation,
        metering,
        failed,
    }
}

/// How long after a job ends its charges may take to reach the bill.
pub const JOB_BILLING_GRACE_MS: i64 = 48 * 3_600_000;

/// A job reported through `/v1/usage` (or `custos usage record`).
#[derive(Clone, Debug)]
pub struct JobRun {
    pub id: String,
    pub provider: String,
    /// What it was priced as: the instance type, GPU type or model.
    pub resource: String,
    /// When the work ended.
    pub at_ms: i64,
    /// Wall-clock or billed compute time, so charges from its start are in its window.
    pub compute_ms: i64,
    pub cost: Amount,
    pub currency: String,
    /// The value of the matching tag (`--job-tag`) the job carries.
    pub tag: Option<String>,
}

/// Billed line items of one provider, resource text and day.
#[derive(Clone, Debug)]
pub struct BilledSpan {
    pub provider: String,
    /// Service, SKU, description and resource id as one text.
    pub text: String,
    /// The value of the matching tag on these items ("" when absent).
    pub tag: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub currency: String,
    pub billed: Amount,
}

/// Whether the bill shows a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Line items of its provider and resource (or its tag value) cover its time.
    Billed,
    /// Nothing yet, but the bill does not reach 48 h past the job's end: check again later.
    Pending,
    /// The bill reaches 48 h past the job's end and shows nothing of it.
    Missing,
}

#[derive(Clone, Debug, Serialize)]
pub struct JobCheck {
    pub id: String,
    pub provider: String,
    pub resource: String,
    pub at_ms: i64,
    pub reported: String,
    pub currency: String,
    pub status: JobStatus,
    /// What the matched line items billed (every job sharing them included unless matched
    /// by tag); none when nothing matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billed: Option<String>,
    /// `tag` when matched by the job's tag value, `resource` by provider and resource name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_by: Option<&'static str>,
}

/// Checks that each job appears in the bill within `JOB_BILLING_GRACE_MS` of its end:
/// line items of the job's provider (through the mapping) whose time overlaps the job's run
/// up to the grace, carrying the job's tag value when it has one, else naming its resource as
/// a whole name. `coverage` is how far each billing provider's items reach (lowercase name).
pub fn jobs(
    runs: &[JobRun],
    spans: &[BilledSpan],
    mapping: &Mapping,
    coverage: &HashMap<String, i64>,
) -> Vec<JobCheck> {
    runs.iter()
        .map(|j| {
            let billing = mapping
                .providers
                .get(&j.provider)
                .map(|n| n.to_lowercase())
                .unwrap_or_else(|| j.provider.to_lowercase());
            let from = j.at_ms - j.compute_ms.max(0);
            let until = j.at_ms.saturating_add(JOB_BILLING_GRACE_MS);
            let resource = j.resource.to_lowercase();
            let mut by_tag = Amount::ZERO;
            let mut by_name = Amount::ZERO;
            let (mut tagged, mut named) = (false, false);
            for s in spans.iter().filter(|s| {
                s.provider.to_lowercase() == billing
                    && s.currency == j.currency
                    && s.start_ms < until
                    && s.end_ms > from
            }) {
                if j.tag
                    .as_deref()
                    .is_some_and(|t| !t.is_empty() && s.tag == t)
                {
                    tagged = true;
                    by_tag = by_tag.saturating_add(s.billed);
                } else if s.tag.is_empty() && names_model(&s.text.to_lowercase(), &resource) {
                    // Items tagged for another job are that job's.
                    named = true;
                    by_name = by_name.saturating_add(s.billed);
                }
            }
            let (status, billed, matched_by) = if tagged {
                (JobStatus::Billed, Some(by_tag), Some("tag"))
            } else if named {
                (JobStatus::Billed, Some(by_name), Some("resource"))
            } else if coverage.get(&billing).is_some_and(|&c| c >= until) {
                (JobStatus::Missing, None, None)
            } else {
                (JobStatus::Pending, None, None)
            };
            JobCheck {
                id: j.id.clone(),
                provider: j.provider.clone(),
                resource: j.resource.clone(),
                at_ms: j.at_ms,
                reported: j.cost.to_string(),
                currency: j.currency.clone(),
                status,
                billed: billed.map(|b| b.to_string()),
                matched_by,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn run(id: &str, resource: &str, at_ms: i64, tag: Option<&str>) -> JobRun {
        JobRun {
            id: id.into(),
            provider: "aws".into(),
            resource: resource.into(),
            at_ms,
            compute_ms: 2 * H,
            cost: usd("65.54"),
            currency: "USD".into(),
            tag: tag.map(str::to_owned),
        }
    }

    fn span(text: &str, tag: &str, start_ms: i64, billed: &str) -> BilledSpan {
        BilledSpan {
            provider: "AWS".into(),
            text: text.into(),
            tag: tag.into(),
            start_ms,
            end_ms: start_ms + 24 * H,
            currency: "USD".into(),
            billed: usd(billed),
        }
    }

    #[test]
    fn jobs_are_found_by_tag_or_resource_pending_until_the_bill_reaches_48_hours() {
        let day = 100 * 24 * H;
        let runs = [
            run("train-1", "p4d.24xlarge", day + 10 * H, Some("run-1")),
            run("train-2", "p4d.24xlarge", day + 12 * H, None),
            run("etl", "m5.xlarge", day + 5 * H, None),
            run("late", "p4d.24xlarge", day + 40 * H, Some("run-9")),
        ];
        let spans = [
            span("AmazonEC2 BoxUsage:p4d.24xlarge", "run-1", day, "60"),
            span("AmazonEC2 BoxUsage:p4d.24xlarge", "", day, "70"),
            // Another instance type, and a longer name that is not m5.xlarge.
            span("AmazonEC2 BoxUsage:m5.xlarge-spot", "", day, "1"),
        ];
        let mapping = Mapping {
            providers: [("aws".to_string(), "AWS".to_string())].into(),
            models: Vec::new(),
        };
        let coverage: HashMap<String, i64> = [("aws".to_string(), day + 3 * 24 * H)].into();
        let r = jobs(&runs, &spans, &mapping, &coverage);
        assert_eq!(
            (r[0].status, r[0].matched_by),
            (JobStatus::Billed, Some("tag"))
        );
        assert_eq!(r[0].billed.as_deref(), Some("60"));
        // Untagged: by the resource's name, both untagged and tagged lines of other runs
        // excluded only when they carry another job's tag.
        // Untagged: by the resource's name, on the untagged items only.
        assert_eq!(
            (r[1].status, r[1].matched_by),
            (JobStatus::Billed, Some("resource"))
        );
        assert_eq!(r[1].billed.as_deref(), Some("70"));
        assert_eq!(
            r[2].status,
            JobStatus::Missing,
            "m5.xlarge-spot is not m5.xlarge"
        );
        // Nothing of it yet, and the bill reaches only 32 h past its end.
        assert_eq!(r[3].status, JobStatus::Pending);
        let later: HashMap<String, i64> = [("aws".to_string(), day + 4 * 24 * H)].into();
        assert_eq!(
            jobs(&runs[3..], &spans, &mapping, &later)[0].status,
            JobStatus::Missing
        );
        // Without the provider mapping, "aws" is compared with "AWS" case-insensitively.
        let r = jobs(&runs[..1], &spans, &Mapping::default(), &coverage);
        assert_eq!(r[0].status, JobStatus::Billed);
    }

    fn usd(s: &str) -> Amount {
        s.parse().unwrap()
    }

    fn line(sku: &str, billed: &str) -> BilledLine {
        BilledLine {
            provider: "OpenAI".into(),
            service: String::new(),
            sku: sku.into(),
            description: String::new(),
            currency: "USD".into(),
            billed: usd(billed),
        }
    }

    fn metered(model: &str, cost: &str) -> MeteredModel {
        MeteredModel {
            provider: "openai".into(),
            model: model.into(),
            currency: "USD".into(),
            cost: usd(cost),
        }
    }

    #[test]
    fn whole_names_only() {
        assert!(names_model("gpt-4o", "gpt-4o"));
        assert!(names_model("gpt-4o-2024-08-06 input", "gpt-4o"));
        assert!(!names_model("gpt-4o-mini", "gpt-4o"));
        assert!(names_model("gpt-4o-mini input tokens", "gpt-4o-mini"));
        assert!(!names_model("xgpt-4o", "gpt-4o"));
        assert!(!names_model("gpt-4o.1", "gpt-4o"));
        assert!(names_model("openai gpt-4o-mini, gpt-4o (batch)", "gpt-4o"));
        assert!(!names_model("anything", ""));
    }

    /// Issue 29 (3): with gpt-4o and gpt-4o-mini both metered, their bill lines go to each.
    #[test]
    fn a_model_never_claims_a_longer_ones_line() {
        for order in [["gpt-4o", "gpt-4o-mini"], ["gpt-4o-mini", "gpt-4o"]] {
            let bill = [
                line("gpt-4o-mini", "0.01"),
                line("gpt-4o-2024-08-06", "0.05"),
            ];
            let m = [metered(order[0], "0.05"), metered(order[1], "0.01")];
            let m = if order[0] == "gpt-4o" {
                m
            } else {
                [metered("gpt-4o-mini", "0.01"), metered("gpt-4o", "0.05")]
            };
            let r = reconcile(&[], &bill, &m, &Mapping::default(), 1.0);
            let p = &r.metering[0];
            assert!(p.bill_found);
            let of = |model: &str| {
                p.by_model
                    .iter()
                    .find(|g| g.model == model)
                    .unwrap()
                    .billed
                    .clone()
            };
            assert_eq!(of("gpt-4o"), usd("0.05").to_string());
            assert_eq!(of("gpt-4o-mini"), usd("0.01").to_string());
            assert!(!r.failed, "{r:?}");
        }
    }

    #[test]
    fn mappings_and_unmatched_lines() {
        let bill = [line("SKU-7781 chat", "2"), line("fine-tuning hours", "3")];
        let m = [metered("support-bot", "2")];
        let mapping = Mapping {
            providers: HashMap::new(),
            models: vec![("sku-7781".into(), "support-bot".into())],
        };
        let r = reconcile(&[], &bill, &m, &mapping, 1.0);
        let p = &r.metering[0];
        assert_eq!(p.by_model[0].billed, usd("2").to_string());
        assert_eq!(p.by_model[1].model, "(other billed items)");
        assert_eq!(p.billed, usd("5").to_string());
        assert!(r.failed, "3 of 5 unexplained is over 1%");
    }

    #[test]
    fn untagged_share_against_tolerance() {
        let tags = [
            TagGroup {
                value: "ml".into(),
                currency: "USD".into(),
                billed: usd("99"),
                rows: 9,
            },
            TagGroup {
                value: String::new(),
                currency: "USD".into(),
                billed: usd("1"),
                rows: 1,
            },
        ];
        let r = reconcile(&tags, &[], &[], &Mapping::default(), 1.0);
        assert!((r.allocation[0].untagged_percent - 1.0).abs() < 1e-9);
        assert!(!r.failed);
        let r = reconcile(&tags, &[], &[], &Mapping::default(), 0.5);
        assert!(r.failed);
    }
}

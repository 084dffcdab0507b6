//! Usage reported by work outside the gateway — training runs, batch jobs, ETL — through
//! `POST /v1/usage` or `custos usage record`: GPU hours, GPU type and count, instance type,
//! data scanned, documents processed, tokens, and the seeds' tags. A report is validated,
//! priced (an explicit cost wins; else the catalog's rate for the instance or model), its
//! carbon estimated, and its mandatory tags checked.

use crate::carbon::{self, DeviceUse, Tables};
use crate::money::{Amount, Currency};
use crate::pricing::Catalog;
use crate::usage::{Usage, UsageRecord};
use serde::Deserialize;
use std::collections::BTreeMap;

/// A job's report, as JSON or CLI flags give it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobReport {
    /// Caller's id for the report; re-sending the same id records it once.
    #[serde(default)]
    pub id: Option<String>,
    /// When the work ended (RFC 3339); default now.
    #[serde(default)]
    pub time: Option<String>,
    /// What was used: an instance type, a GPU SKU, or a model name, as priced.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub gpu_type: Option<String>,
    #[serde(default)]
    pub gpu_count: Option<u32>,
    /// Wall-clock hours the GPUs (or the instance) ran.
    #[serde(default)]
    pub gpu_hours: Option<f64>,
    /// Measured average utilization, 0–1.
    #[serde(default)]
    pub gpu_utilization: Option<f64>,
    #[serde(default)]
    pub instance_type: Option<String>,
    /// Instances of `instance_type` that ran `gpu_hours` (default 1).
    #[serde(default)]
    pub instance_count: Option<u32>,
    #[serde(default)]
    pub data_scanned_bytes: Option<u64>,
    #[serde(default)]
    pub documents: Option<u64>,
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub calls: Option<u64>,
    /// The job's own cost, when it knows it (e.g. from its cloud bill).
    #[serde(default)]
    pub cost: Option<Amount>,
    #[serde(default)]
    pub currency: Option<Currency>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("missing mandatory tags: {0}")]
    MissingTags(String),
    #[error("`{field}`: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
}

/// Who reports, as the gateway or the CLI established it.
#[derive(Clone, Debug)]
pub struct Reporter<'a> {
    pub tenant: &'a str,
    pub team: &'a str,
    pub app: &'a str,
    pub env: &'a str,
    pub key_id: &'a str,
}

/// How reports are checked.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub mandatory_tags: Vec<String>,
    /// Accept reports missing mandatory tags (marked untagged) instead of refusing them.
    pub accept_untagged: bool,
}

fn field(field: &'static str, message: impl Into<String>) -> JobError {
    JobError::Field {
        field,
        message: message.into(),
    }
}

/// Turns a report into a usage record.
pub fn to_record(
    r: &JobReport,
    who: &Reporter<'_>,
    catalog: &Catalog,
    tables: &Tables,
    policy: &Policy,
    now_ms: i64,
    new_id: impl FnOnce() -> String,
) -> Result<UsageRecord, JobError> {
    let missing: Vec<&str> = policy
        .mandatory_tags
        .iter()
        .filter(|t| r.tags.get(t.as_str()).is_none_or(|v| v.trim().is_empty()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() && !policy.accept_untagged {
        return Err(JobError::MissingTags(missing.join(", ")));
    }
    let at_ms = match &r.time {
        Some(t) => crate::pricing::parse_effective(t).map_err(|e| field("time", e))?,
        None => now_ms,
    };
    let hours = r.gpu_hours.unwrap_or(0.0);
    if !(0.0..=1e7).contains(&hours) {
        return Err(field("gpu_hours", "must be between 0 and 10,000,000"));
    }
    if let Some(u) = r.gpu_utilization {
        if !(0.0..=1.0).contains(&u) {
            return Err(field("gpu_utilization", "must be between 0 and 1"));
        }
    }
    let gpus = r.gpu_count.unwrap_or(1).max(1);
    // The hourly rate is per instance when an instance type is priced, per GPU when a GPU
    // type is: compute time counts the units the rate is for.
    let (priced_as, units) = match (&r.instance_type, &r.gpu_type) {
        (Some(i), _) => (i.clone(), r.instance_count.unwrap_or(1).max(1)),
        (None, Some(g)) => (g.clone(), gpus),
        (None, None) => (r.model.clone().unwrap_or_default(), 1),
    };
    let usage = Usage {
        input_tokens: r.input_tokens.unwrap_or(0),
        output_tokens: r.output_tokens.unwrap_or(0),
        calls: r.calls.unwrap_or(0),
        compute_ms: (hours * 3_600_000.0 * f64::from(units)).round() as u64,
        ..Usage::default()
    };
    let provider = r.provider.clone().unwrap_or_else(|| "*".into());
    let (cost, currency, priced) = match r.cost {
        Some(c) if c.is_negative() => return Err(field("cost", "must not be negative")),
        Some(c) => (c, r.currency.unwrap_or_default(), true),
        None => match catalog.at(&provider, &priced_as, at_ms) {
            Some(p) => (
                p.rates
                    .cost(&usage)
                    .ok_or_else(|| field("cost", "is out of range"))?,
                p.currency,
                true,
            ),
            None => (Amount::ZERO, r.currency.unwrap_or_default(), false),
        },
    };
    let region = r.region.clone().unwrap_or_default();
    let (energy_mwh, co2e_mg) = match r.gpu_type.as_deref().and_then(|g| tables.device_watts(g)) {
        Some(watts) if hours > 0.0 => {
            let f = carbon::footprint(
                tables,
                &[DeviceUse {
                    watts,
                    count: f64::from(gpus),
                    hours,
                    utilization: r.gpu_utilization,
                }],
                tables.grid(&region).unwrap_or(0.0),
            );
            (
                (f.kwh * 1e6).round() as u64,
                (f.kg_co2e * 1e6).round() as u64,
            )
        }
        _ => (0, 0),
    };
    let mut detail = serde_json::Map::new();
    for (k, v) in [
        ("gpu_type", r.gpu_type.clone().map(serde_json::Value::from)),
        ("gpu_count", r.gpu_count.map(serde_json::Value::from)),
        ("gpu_hours", r.gpu_hours.map(serde_json::Value::from)),
        (
            "instance_type",
            r.instance_type.clone().map(serde_json::Value::from),
        ),
        (
            "data_scanned_bytes",
            r.data_scanned_bytes.map(serde_json::Value::from),
        ),
    ] {
        if let Some(v) = v {
            detail.insert(k.into(), v);
        }
    }
    Ok(UsageRecord {
        id: r.id.clone().unwrap_or_else(new_id),
        at_ms,
        source: "job".into(),
        tenant: who.tenant.to_owned(),
        team: who.team.to_owned(),
        app: who.app.to_owned(),
        env: r.env.clone().unwrap_or_else(|| who.env.to_owned()),
        key_id: who.key_id.to_owned(),
        provider,
        model: priced_as,
        region,
        usage,
        documents: r.documents.unwrap_or(0),
        latency_ms: 0,
        cost,
        currency,
        priced,
        energy_mwh,
        co2e_mg,
        tags: r.tags.clone(),
        untagged: !missing.is_empty(),
        request_id: None,
        status: 200,
        detail: (!detail.is_empty()).then(|| serde_json::Value::Object(detail).to_string()),
        release: None,
        end_user: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::{Price, Rates};

    fn who() -> Reporter<'static> {
        Reporter {
            tenant: "acme",
            team: "ml",
            app: "trainer",
            env: "prod",
            key_id: "key_1",
        }
    }

    fn catalog() -> Catalog {
        Catalog::new([Price {
            provider: "aws".into(),
            model: "p4d.24xlarge".into(),
            effective_from: 0,
            currency: Currency::USD,
            rates: Rates {
                per_hour: "32.77".parse().unwrap(),
                ..Rates::default()
            },
        }])
    }

    #[test]
    fn prices_instance_hours_and_estimates_carbon() {
        let r: JobReport = serde_json::from_str(
            r#"{"provider":"aws","instance_type":"p4d.24xlarge","gpu_type":"a100","gpu_count":8,
                "gpu_hours":2,"region":"us-east-1","documents":1000,
                "tags":{"Project":"atlas","Env":"prod"}}"#,
        )
        .unwrap();
        let policy = Policy {
            mandatory_tags: vec!["Project".into()],
            accept_untagged: false,
        };
        let rec = to_record(
            &r,
            &who(),
            &catalog(),
            &Tables::shipped(),
            &policy,
            0,
            || "id".into(),
        )
        .unwrap();
        // One instance (holding 8 GPUs) for 2 hours at its hourly rate.
        assert_eq!(rec.usage.compute_ms, 2 * 3_600_000);
        assert!(rec.priced);
        assert_eq!(rec.cost, "65.54".parse().unwrap());
        // 400 W × 0.5 × 2 h × 8 × 1.2 = 3.84 kWh; × 369 g = 1.41696 kg.
        assert_eq!(rec.energy_mwh, 3_840_000);
        assert_eq!(rec.co2e_mg, 1_416_960);
    }

    #[test]
    fn mandatory_tags_refuse_or_mark() {
        let r = JobReport::default();
        let mut policy = Policy {
            mandatory_tags: vec!["Project".into(), "Team".into()],
            accept_untagged: false,
        };
        let e = to_record(
            &r,
            &who(),
            &catalog(),
            &Tables::shipped(),
            &policy,
            0,
            || "id".into(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "missing mandatory tags: Project, Team");
        policy.accept_untagged = true;
        let rec = to_record(
            &r,
            &who(),
            &catalog(),
            &Tables::shipped(),
            &policy,
            0,
            || "id".into(),
        )
        .unwrap();
        assert!(rec.untagged && !rec.priced);
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = |json: &str| {
            let r: JobReport = serde_json::from_str(json).unwrap();
            to_record(
                &r,
                &who(),
                &catalog(),
                &Tables::shipped(),
                &Policy::default(),
                0,
                || "id".into(),
            )
            .unwrap_err()
            .to_string()
        };
        assert!(bad(r#"{"gpu_hours": -1}"#).contains("gpu_hours"));
        assert!(bad(r#"{"gpu_utilization": 1.5}"#).contains("gpu_utilization"));
        assert!(bad(r#"{"time": "yesterday"}"#).contains("time"));
        assert!(bad(r#"{"cost": "-1"}"#).contains("cost"));
        assert!(serde_json::from_str::<JobReport>(r#"{"gpu_hourz": 1}"#).is_err());
    }
}

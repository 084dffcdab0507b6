//! Usage reported by work outside the gateway — training runs, batch jobs, ETL — through
//! `POST /v1/usage` or `custos usage record`: hours, GPU-hours, GPU type and count, instance
//! type and count, data scanned, documents processed, tokens, and the seeds' tags. A report is
//! validated, priced (an explicit cost wins; else the catalog's rate for the instance, GPU or
//! model), its carbon estimated, and its mandatory tags checked.
//!
//! Units: **hours** are wall-clock; **GPU-hours** are GPUs × wall-clock hours (8 GPUs for 2 h
//! are 16 GPU-hours); **instance-hours** are instances × wall-clock hours. An instance type's
//! rate is per instance-hour, a GPU type's per GPU-hour.

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
    /// GPUs per instance when `instance_type` is given, else GPUs in all (default 1).
    #[serde(default)]
    pub gpu_count: Option<u32>,
    /// Wall-clock hours the job ran.
    #[serde(default)]
    pub hours: Option<f64>,
    /// GPU-hours: GPUs × wall-clock hours. With `hours` as well, they must agree.
    #[serde(default)]
    pub gpu_hours: Option<f64>,
    /// Measured average utilization, 0–1.
    #[serde(default)]
    pub gpu_utilization: Option<f64>,
    #[serde(default)]
    pub instance_type: Option<String>,
    /// Instances of `instance_type` that ran (default 1).
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
    let inferred = r
        .instance_type
        .as_deref()
        .and_then(|i| tables.instance_gpus(i));
    let time = Time::of(r, inferred)?;
    let gpu_type = r
        .gpu_type
        .clone()
        .or_else(|| inferred.map(|g| g.gpu.clone()));
    if let Some(u) = r.gpu_utilization {
        if !(0.0..=1.0).contains(&u) {
            return Err(field("gpu_utilization", "must be between 0 and 1"));
        }
    }
    // The hourly rate is per instance-hour when an instance type is priced, per GPU-hour when
    // a GPU type is: the billed compute time counts the units the rate is for.
    let (priced_as, billed_hours) = match (&r.instance_type, &r.gpu_type) {
        (Some(i), _) => (i.clone(), time.instance_hours),
        (None, Some(g)) => (g.clone(), time.gpu_hours),
        (None, None) if time.gpu_hours > 0.0 => {
            (r.model.clone().unwrap_or_default(), time.gpu_hours)
        }
        (None, None) => (r.model.clone().unwrap_or_default(), time.instance_hours),
    };
    let ms = |h: f64| (h * 3_600_000.0).round() as u64;
    let usage = Usage {
        input_tokens: r.input_tokens.unwrap_or(0),
        output_tokens: r.output_tokens.unwrap_or(0),
        calls: r.calls.unwrap_or(0),
        compute_ms: ms(billed_hours),
        gpu_ms: ms(time.gpu_hours),
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
    // An unknown device or region gives no figure and says why — never a silent zero.
    let mut carbon_gap = None;
    let (energy_mwh, co2e_mg) = if time.wall_hours <= 0.0 {
        (0, 0)
    } else {
        match gpu_type.as_deref().map(|g| (g, tables.device_watts(g))) {
            None => {
                carbon_gap = Some(match &r.instance_type {
                    Some(i) => format!(
                        "no carbon estimate: custos does not know the GPUs of instance type {i:?}; \
                         give gpu_type (and gpu_count), or add it under [carbon.instance_gpus]"
                    ),
                    None => "no carbon estimate: give gpu_type (or a known instance_type)".into(),
                });
                (0, 0)
            }
            Some((g, None)) => {
                carbon_gap = Some(format!(
                    "no carbon estimate: no power figure for GPU type {g:?}; add it under [carbon.device_watts]"
                ));
                (0, 0)
            }
            Some((_, Some(watts))) => {
                let grid = tables.grid(&region);
                if grid.is_none() {
                    carbon_gap = Some(if region.is_empty() {
                        "no emissions estimate: give region for its grid intensity".to_owned()
                    } else {
                        format!(
                            "no emissions estimate: no grid intensity for region {region:?}; \
                             add it under [carbon.grid_g_per_kwh]"
                        )
                    });
                }
                let f = carbon::footprint(
                    tables,
                    &[DeviceUse {
                        watts,
                        count: time.gpus,
                        hours: time.wall_hours,
                        utilization: r.gpu_utilization,
                    }],
                    grid.unwrap_or(0.0),
                );
                (
                    (f.kwh * 1e6).round() as u64,
                    (f.kg_co2e * 1e6).round() as u64,
                )
            }
        }
    };
    let mut detail = serde_json::Map::new();
    for (k, v) in [
        ("gpu_type", gpu_type.clone().map(serde_json::Value::from)),
        (
            "gpu_count",
            r.gpu_count
                .or_else(|| inferred.map(|g| g.count))
                .map(serde_json::Value::from),
        ),
        (
            "hours",
            (time.wall_hours > 0.0).then_some(time.wall_hours.into()),
        ),
        (
            "gpu_hours",
            (time.gpu_hours > 0.0).then_some(time.gpu_hours.into()),
        ),
        (
            "instance_type",
            r.instance_type.clone().map(serde_json::Value::from),
        ),
        (
            "instance_hours",
            r.instance_type
                .as_ref()
                .and(Some(time.instance_hours))
                .filter(|h| *h > 0.0)
                .map(serde_json::Value::from),
        ),
        (
            "data_scanned_bytes",
            r.data_scanned_bytes.map(serde_json::Value::from),
        ),
        (CARBON_GAP, carbon_gap.map(serde_json::Value::from)),
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

/// The detail key that says why a job has no carbon figure.
const CARBON_GAP: &str = "carbon_gap";

/// Why a record has no carbon (or no emissions) figure, when it has none.
pub fn carbon_gap(r: &UsageRecord) -> Option<String> {
    let d: serde_json::Value = serde_json::from_str(r.detail.as_deref()?).ok()?;
    d.get(CARBON_GAP)?.as_str().map(str::to_owned)
}

/// What `POST /v1/usage` and `custos usage record` answer for one recorded job: energy and
/// emissions are null, with the reason in `warning`, when custos could not estimate them.
pub fn summary(r: &UsageRecord) -> serde_json::Value {
    let gap = carbon_gap(r);
    let no_energy = gap.as_deref().is_some_and(|g| g.starts_with("no carbon"));
    serde_json::json!({
        "id": r.id, "cost": r.cost.to_string(), "currency": r.currency.as_str(),
        "priced": r.priced, "untagged": r.untagged,
        "gpu_hours": r.usage.gpu_ms as f64 / 3_600_000.0,
        "energy_kwh": (!no_energy).then_some(r.energy_mwh as f64 / 1e6),
        "co2e_kg": gap.is_none().then_some(r.co2e_mg as f64 / 1e6),
        "warning": gap,
    })
}

/// A report's time in the three units, reconciled from `hours` and `gpu_hours`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Time {
    wall_hours: f64,
    /// GPUs in all: per instance × instances.
    gpus: f64,
    gpu_hours: f64,
    instance_hours: f64,
}

impl Time {
    /// `inferred`: the GPUs the tables know the report's instance type to hold.
    fn of(r: &JobReport, inferred: Option<&carbon::InstanceGpus>) -> Result<Self, JobError> {
        let bounded = |name: &'static str, v: Option<f64>| match v {
            Some(h) if !(0.0..=1e7).contains(&h) => {
                Err(field(name, "must be between 0 and 10,000,000"))
            }
            v => Ok(v),
        };
        let hours = bounded("hours", r.hours)?;
        let gpu_hours = bounded("gpu_hours", r.gpu_hours)?;
        if r.gpu_count == Some(0) {
            return Err(field(
                "gpu_count",
                "must be at least 1 (leave it out for none)",
            ));
        }
        if r.instance_count == Some(0) {
            return Err(field("instance_count", "must be at least 1"));
        }
        let instances = f64::from(r.instance_count.unwrap_or(1));
        // GPUs are known when the report names a GPU type, a count or GPU-hours, or its
        // instance type is one the tables know.
        let has_gpus = r.gpu_type.is_some()
            || r.gpu_count.is_some()
            || gpu_hours.is_some()
            || inferred.is_some();
        let per_instance = f64::from(
            r.gpu_count
                .or_else(|| inferred.map(|g| g.count))
                .unwrap_or(1),
        );
        let gpus = if !has_gpus {
            0.0
        } else if r.instance_type.is_some() {
            per_instance * instances
        } else {
            per_instance
        };
        let wall_hours = match (hours, gpu_hours) {
            (Some(h), Some(g)) => {
                let implied = h * gpus;
                if (implied - g).abs() > 1e-6_f64.max(g * 1e-3) {
                    return Err(field(
                        "gpu_hours",
                        format!(
                            "{g} GPU-hours disagree with {h} hours on {gpus} GPUs ({implied} GPU-hours); \
                             GPU-hours are GPUs × wall-clock hours — give one of them"
                        ),
                    ));
                }
                h
            }
            (Some(h), None) => h,
            (None, Some(g)) => g / gpus.max(1.0),
            (None, None) => 0.0,
        };
        let instance_hours = if r.instance_type.is_some() {
            wall_hours * instances
        } else {
            wall_hours
        };
        Ok(Time {
            wall_hours,
            gpus,
            gpu_hours: gpu_hours.unwrap_or(wall_hours * gpus),
            instance_hours,
        })
    }
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
                "hours":2,"region":"us-east-1","documents":1000,
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
        // One instance (holding 8 GPUs) for 2 hours at its hourly rate: 2 instance-hours
        // billed, 16 GPU-hours used.
        assert_eq!(rec.usage.compute_ms, 2 * 3_600_000);
        assert_eq!(rec.usage.gpu_ms, 16 * 3_600_000);
        assert!(rec.priced);
        assert_eq!(rec.cost, "65.54".parse().unwrap());
        // 400 W × 0.5 × 2 h × 8 × 1.2 = 3.84 kWh; × 369 g = 1.41696 kg.
        assert_eq!(rec.energy_mwh, 3_840_000);
        assert_eq!(rec.co2e_mg, 1_416_960);
    }

    /// A report in JSON, recorded with the test catalog and no mandatory tags.
    fn record(json: &str, tables: &Tables) -> Result<UsageRecord, JobError> {
        let r: JobReport = serde_json::from_str(json).unwrap();
        to_record(
            &r,
            &who(),
            &catalog(),
            tables,
            &Policy::default(),
            0,
            || "id".into(),
        )
    }

    #[test]
    fn gpu_hours_are_gpus_times_hours_and_instances_bill_instance_hours() {
        let rec = |json: &str| record(json, &Tables::shipped());
        // 16 GPU-hours on an 8-GPU instance are 2 wall-clock hours of it: 2 × 32.77.
        let a = rec(
            r#"{"provider":"aws","instance_type":"p4d.24xlarge","gpu_count":8,"gpu_hours":16}"#,
        )
        .unwrap();
        assert_eq!(a.cost, "65.54".parse().unwrap());
        assert_eq!(a.usage.gpu_ms, 16 * 3_600_000);
        // 2 GPU-hours on it are a quarter of an hour.
        let b =
            rec(r#"{"provider":"aws","instance_type":"p4d.24xlarge","gpu_count":8,"gpu_hours":2}"#)
                .unwrap();
        assert_eq!(b.cost, "8.1925".parse().unwrap());
        // Two instances for 2 hours: 4 instance-hours, 32 GPU-hours.
        let c = rec(r#"{"provider":"aws","instance_type":"p4d.24xlarge","gpu_count":8,"instance_count":2,"hours":2}"#)
            .unwrap();
        assert_eq!(c.cost, "131.08".parse().unwrap());
        assert_eq!(c.usage.gpu_ms, 32 * 3_600_000);
        // An instance whose GPUs nobody named has no GPU-hours; a known one has its own.
        let d = rec(r#"{"provider":"aws","instance_type":"m5.large","hours":1}"#).unwrap();
        assert_eq!((d.usage.gpu_ms, d.usage.compute_ms), (0, 3_600_000));
        let k = rec(r#"{"provider":"aws","instance_type":"p4d.24xlarge","hours":1}"#).unwrap();
        assert_eq!(
            (k.usage.gpu_ms, k.cost),
            (8 * 3_600_000, "32.77".parse().unwrap())
        );
        // Both given must agree.
        let e = rec(r#"{"instance_type":"p4d.24xlarge","gpu_count":8,"hours":2,"gpu_hours":2}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("disagree") && e.contains("16"), "{e}");
        assert!(rec(r#"{"gpu_count":0,"hours":1}"#).is_err());
    }

    /// Issue 29 (6): an unknown region, GPU or instance gives no figure and says why.
    #[test]
    fn unknown_devices_and_regions_give_no_carbon_figure_and_say_why() {
        let rec = |json: &str, tables: &Tables| record(json, tables).unwrap();
        let t = Tables::shipped();
        let known = rec(
            r#"{"instance_type":"p4d.24xlarge","hours":2,"region":"us-east-1"}"#,
            &t,
        );
        assert!(known.co2e_mg > 0 && carbon_gap(&known).is_none());
        assert_eq!(summary(&known)["warning"], serde_json::Value::Null);
        let mars = rec(r#"{"gpu_type":"a100","hours":2,"region":"mars-1"}"#, &t);
        let gap = carbon_gap(&mars).unwrap();
        assert!(
            gap.contains("mars-1") && gap.contains("[carbon.grid_g_per_kwh]"),
            "{gap}"
        );
        assert_eq!(summary(&mars)["co2e_kg"], serde_json::Value::Null);
        assert!(
            summary(&mars)["energy_kwh"].as_f64().unwrap() > 0.0,
            "energy is known"
        );
        let gpu = rec(
            r#"{"gpu_type":"tpu-v9","hours":2,"region":"us-east-1"}"#,
            &t,
        );
        assert!(carbon_gap(&gpu).unwrap().contains("tpu-v9"));
        assert_eq!(summary(&gpu)["energy_kwh"], serde_json::Value::Null);
        let inst = rec(
            r#"{"instance_type":"m5.large","hours":2,"region":"us-east-1"}"#,
            &t,
        );
        assert!(carbon_gap(&inst).unwrap().contains("m5.large"));
        // Overrides from [carbon] fill the gaps.
        let t = t.with(crate::carbon::Overrides {
            grid_g_per_kwh: vec![("mars-1".into(), 100.0)],
            ..Default::default()
        });
        let mars = rec(r#"{"gpu_type":"a100","hours":2,"region":"mars-1"}"#, &t);
        assert!(mars.co2e_mg > 0 && carbon_gap(&mars).is_none());
        // No hours, no carbon question.
        let docs = rec(r#"{"documents":10}"#, &t);
        assert!(carbon_gap(&docs).is_none());
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

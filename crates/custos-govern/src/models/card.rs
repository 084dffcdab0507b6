//! Model cards and dataset datasheets: Markdown with YAML front matter (Hugging Face's
//! model-card metadata where it overlaps: `license`, `datasets`, `model-index`; custos' own
//! facts under `custos:`). Templates filled from the registry, a linter for completeness
//! (sections, numbers, links) and consistency (digests, datasets, metrics and costs against
//! the records), HTML rendering that never passes raw HTML through, and the signed snapshot.

use super::dsse::{Envelope, IN_TOTO};
use super::keys::{PublicKey, SigningKey};
use super::manifest::STATEMENT_TYPE;
use super::registry::{Reference, Registration};
use super::ModelError;
use crate::html::escape;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The predicate type of a signed card snapshot.
pub const CARD_PREDICATE: &str = "https://custos.dev/model-card/v1";
/// The largest card custos reads.
pub const MAX_CARD: u64 = 4 << 20;

/// The sections a model card must have, in order.
pub const MODEL_SECTIONS: [&str; 9] = [
    "Intended Use & Limitations",
    "Training Data",
    "Evaluation",
    "Robustness",
    "Fairness & Compliance",
    "Operational",
    "Cost & Carbon",
    "Safety Predicates",
    "Change Log",
];

/// The sections a datasheet must have (Gebru et al.'s questions, with the training-data facts
/// a model card points to).
pub const DATASHEET_SECTIONS: [&str; 8] = [
    "Motivation",
    "Composition",
    "Provenance",
    "Collection & Labeling",
    "Balance",
    "Uses",
    "Distribution & Maintenance",
    "Change Log",
];

/// What a card is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Model,
    Datasheet,
}

impl Kind {
    fn sections(self) -> &'static [&'static str] {
        match self {
            Kind::Model => &MODEL_SECTIONS,
            Kind::Datasheet => &DATASHEET_SECTIONS,
        }
    }
}

/// The text a template leaves in a section for a person to replace.
const TODO: &str = "TODO:";

/// A problem the linter found, at a line of the card (1-based; 0 = the card as a whole).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

/// A `## ` section of the card.
#[derive(Clone, Debug)]
pub struct Section {
    pub title: String,
    pub line: usize,
    pub body: String,
}

/// A parsed card.
#[derive(Clone, Debug)]
pub struct Card {
    pub text: String,
    /// The front matter as JSON (`null` when the card has none).
    pub front: Value,
    /// The first line of the body (after the front matter).
    body_line: usize,
    pub body: String,
    pub sections: Vec<Section>,
}

/// SHA-256 (hex) of the card's bytes: what the signature and the promotion record name.
pub fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Card {
    pub fn parse(text: &str) -> Result<Self, Problem> {
        let (front, body, body_line) = match text
            .strip_prefix("---\n")
            .or_else(|| text.strip_prefix("---\r\n"))
        {
            Some(rest) => {
                let end = rest
                    .find("\n---\n")
                    .map(|i| (i, i + 5))
                    .or_else(|| rest.find("\n---\r\n").map(|i| (i, i + 6)))
                    .or_else(|| rest.strip_suffix("\n---").map(|r| (r.len(), rest.len())))
                    .ok_or(Problem {
                        line: 1,
                        message: "the front matter opened with --- is never closed with ---".into(),
                    })?;
                let yaml = &rest[..end.0];
                let front: Value = if yaml.trim().is_empty() {
                    Value::Object(Default::default())
                } else {
                    serde_norway::from_str(yaml).map_err(|e| Problem {
                        line: e.location().map_or(1, |l| l.line() + 1),
                        message: format!("the front matter is not YAML: {e}"),
                    })?
                };
                let body_line = yaml.lines().count() + 3;
                (front, rest[end.1.min(rest.len())..].to_owned(), body_line)
            }
            None => (Value::Null, text.to_owned(), 1),
        };
        let mut sections: Vec<Section> = Vec::new();
        let mut fence = false;
        for (i, line) in body.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                fence = !fence;
            }
            if let (false, Some(title)) = (fence, line.strip_prefix("## ")) {
                sections.push(Section {
                    title: title.trim().to_owned(),
                    line: body_line + i,
                    body: String::new(),
                });
            } else if let Some(s) = sections.last_mut() {
                s.body.push_str(line);
                s.body.push('\n');
            }
        }
        Ok(Card {
            text: text.to_owned(),
            front,
            body_line,
            body,
            sections,
        })
    }

    fn section(&self, title: &str) -> Option<&Section> {
        self.sections.iter().find(|s| same_title(&s.title, title))
    }

    /// The 1-based line of the first front-matter line holding `key:`.
    fn key_line(&self, key: &str) -> usize {
        let needle = format!("{key}:");
        self.text
            .lines()
            .take(self.body_line.saturating_sub(1))
            .position(|l| l.trim_start().trim_start_matches("- ").starts_with(&needle))
            .map_or(1, |i| i + 1)
    }
}

fn same_title(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.to_lowercase()
            .replace(" and ", " & ")
            .replace(['/', ','], " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    norm(a) == norm(b)
}

/// An evaluation report's metrics: `{"metrics": {...}, "slices": {...}}` or a flat object of
/// numbers. Slices are `{slice: {metric: number}}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    pub overall: BTreeMap<String, f64>,
    pub slices: BTreeMap<String, BTreeMap<String, f64>>,
}

impl Metrics {
    pub fn from_report(v: &Value) -> Result<Self, String> {
        let numbers = |o: &serde_json::Map<String, Value>| -> BTreeMap<String, f64> {
            o.iter()
                .filter_map(|(k, v)| v.as_f64().map(|f| (k.clone(), f)))
                .collect()
        };
        let obj = v
            .as_object()
            .ok_or("the evaluation report is not a JSON object")?;
        let overall = match obj.get("metrics").and_then(Value::as_object) {
            Some(m) => numbers(m),
            None => numbers(obj),
        };
        if overall.is_empty() {
            return Err("the evaluation report holds no numeric metrics (expected {\"metrics\": {\"name\": number}})".into());
        }
        let slices = obj
            .get("slices")
            .and_then(Value::as_object)
            .map(|s| {
                s.iter()
                    .filter_map(|(k, v)| v.as_object().map(|o| (k.clone(), numbers(o))))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Metrics { overall, slices })
    }
}

/// Costs of the training run, from custos' own records.
#[derive(Clone, Debug, PartialEq)]
pub struct Cost {
    /// The tags that select the run's usage records.
    pub tags: BTreeMap<String, String>,
    pub amount: f64,
    pub currency: String,
    pub gpu_hours: f64,
    pub kg_co2e: f64,
}

/// What custos knows that a card must agree with.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub name: String,
    pub version: String,
    /// Hex, no prefix.
    pub manifest_digest: Option<String>,
    pub registration: Registration,
    /// The evaluation report's metrics, when its file is at hand.
    pub metrics: Option<Metrics>,
    pub cost: Option<Cost>,
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// A model card filled with what custos knows; the rest says `TODO:`.
pub fn model_template(f: &Facts) -> String {
    let r = &f.registration;
    let mut s = String::from("---\n");
    let _ = writeln!(s, "model_name: {}", yaml_str(&f.name));
    if let Some(l) = &r.license {
        let _ = writeln!(s, "license: {}", yaml_str(l));
    }
    if !r.datasets.is_empty() {
        let _ = writeln!(s, "datasets:");
        for d in &r.datasets {
            let _ = writeln!(s, "  - {}", yaml_str(&d.name));
        }
    }
    if let Some(m) = &f.metrics {
        let _ = writeln!(s, "model-index:\n  - name: {}\n    results:\n      - task:\n          type: TODO\n        metrics:", yaml_str(&f.name));
        for (k, v) in &m.overall {
            let _ = writeln!(
                s,
                "          - type: {}\n            value: {}",
                yaml_str(k),
                num(*v)
            );
        }
    }
    let _ = writeln!(s, "custos:\n  version: {}", yaml_str(&f.version));
    if let Some(d) = &f.manifest_digest {
        let _ = writeln!(s, "  manifest_digest: \"sha256:{d}\"");
    }
    if let Some(src) = &r.source {
        let _ = writeln!(s, "  source: {}", yaml_str(src));
    }
    if let Some(p) = r.parameters {
        let _ = writeln!(s, "  parameters: {p}");
    }
    if !r.datasets.is_empty() {
        let _ = writeln!(s, "  datasets:");
        for d in &r.datasets {
            let _ = writeln!(
                s,
                "    - tag: {}\n      sha256: \"{}\"",
                yaml_str(&d.name),
                d.sha256
            );
        }
    }
    if let Some(c) = &r.container_digest {
        let _ = writeln!(s, "  container_digest: \"{c}\"");
    }
    for (key, reference) in [("evaluation", &r.evaluation), ("sbom", &r.sbom)] {
        if let Some(x) = reference {
            let _ = writeln!(
                s,
                "  {key}:\n    path: {}\n    sha256: \"{}\"",
                yaml_str(&x.name),
                x.sha256
            );
        }
    }
    let _ = writeln!(s, "  operational:\n    latency_p50_ms: TODO\n    latency_p95_ms: TODO\n    throughput_rps: TODO\n    memory_gb: TODO");
    match &f.cost {
        Some(c) => {
            let _ = writeln!(s, "  cost:\n    tags:");
            for (k, v) in &c.tags {
                let _ = writeln!(s, "      {}: {}", yaml_str(k), yaml_str(v));
            }
            let _ = writeln!(
                s,
                "    amount: {}\n    currency: {}\n    gpu_hours: {}\n    kg_co2e: {}",
                num(c.amount),
                yaml_str(&c.currency),
                num(c.gpu_hours),
                num(c.kg_co2e)
            );
        }
        None => {
            let _ = writeln!(s, "  cost:\n    amount: TODO\n    currency: USD\n    gpu_hours: TODO\n    kg_co2e: TODO");
        }
    }
    s.push_str("---\n\n");
    let _ = writeln!(s, "# {} {}\n", f.name, f.version);
    let _ = writeln!(s, "## Intended Use & Limitations\n\n{TODO} who should use this model, for what, and where it must not be used.\n");
    let _ = writeln!(s, "## Training Data\n");
    if r.datasets.is_empty() {
        let _ = writeln!(
            s,
            "{TODO} provenance, size, balance and label sources of each dataset.\n"
        );
    } else {
        let _ = writeln!(s, "| dataset | sha256 |\n|---|---|");
        for d in &r.datasets {
            let _ = writeln!(s, "| {} | `{}` |", d.name, d.sha256);
        }
        let _ = writeln!(s, "\n{TODO} provenance, size, balance and label sources (link each dataset's datasheet).\n");
    }
    let _ = writeln!(s, "## Evaluation\n");
    match &f.metrics {
        Some(m) => {
            let _ = writeln!(s, "| metric | value |\n|---|---|");
            for (k, v) in &m.overall {
                let _ = writeln!(s, "| {k} | {} |", num(*v));
            }
            if !m.slices.is_empty() {
                let _ = writeln!(s, "\n| slice | metric | value |\n|---|---|---|");
                for (slice, ms) in &m.slices {
                    for (k, v) in ms {
                        let _ = writeln!(s, "| {slice} | {k} | {} |", num(*v));
                    }
                }
            }
            s.push('\n');
        }
        None => {
            let _ = writeln!(s, "{TODO} overall and per-slice metrics (register the model with --eval to fill this).\n");
        }
    }
    let _ = writeln!(s, "## Robustness\n\n{TODO} behaviour under distribution shift, adversarial and malformed input.\n");
    let _ = writeln!(s, "## Fairness & Compliance\n\n{TODO} fairness metrics across groups; the regulations and policies it was assessed against.\n");
    let _ = writeln!(s, "## Operational\n");
    let _ = writeln!(
        s,
        "Weights: {} files, {} bytes{}{}.",
        r.files.len(),
        r.bytes,
        r.format
            .as_deref()
            .map(|x| format!(", {x}"))
            .unwrap_or_default(),
        r.parameters
            .map(|p| format!(", {p} parameters"))
            .unwrap_or_default()
    );
    if let Some(sb) = &r.sbom {
        let _ = writeln!(s, "SBOM: `{}` (sha256 `{}`).", sb.name, sb.sha256);
    }
    let _ = writeln!(s, "\n{TODO} latency and throughput envelopes and the memory footprint (the numbers in the front matter).\n");
    let _ = writeln!(s, "## Cost & Carbon\n");
    match &f.cost {
        Some(c) => {
            let _ = writeln!(
                s,
                "From custos' usage records tagged {}: {} {} per run, {} GPU-hours, {} kgCO2e.\n",
                c.tags
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                num(c.amount),
                c.currency,
                num(c.gpu_hours),
                num(c.kg_co2e)
            );
        }
        None => {
            let _ = writeln!(s, "{TODO} cost per training run, GPU-hours and kgCO2e (custos models card init --cost-tag KEY=VALUE fills them from custos' records).\n");
        }
    }
    let _ = writeln!(s, "## Safety Predicates\n\n{TODO} the conditions that must hold for the model to be served (guardrails, refusal rates, red-team results).\n");
    let _ = writeln!(s, "## Change Log\n\n- {}: registered.", f.version);
    s
}

/// A datasheet for a dataset, to fill in.
pub fn datasheet_template(tag: &str, sha256: &str) -> String {
    let mut s = format!("---\ndataset_name: {}\ncustos:\n  tag: {}\n  sha256: \"{sha256}\"\n  size:\n    records: TODO\n    bytes: TODO\n---\n\n# Datasheet: {tag}\n\n", yaml_str(tag), yaml_str(tag));
    for (title, ask) in [
        (
            "Motivation",
            "why the dataset was created, by whom, funded by whom.",
        ),
        (
            "Composition",
            "what the records are, how many, what each holds; any personal or sensitive data.",
        ),
        (
            "Provenance",
            "where the data came from, when, under which license or consent.",
        ),
        (
            "Collection & Labeling",
            "how it was collected, who labelled it, the label sources and their agreement.",
        ),
        ("Balance", "class and group balance; known gaps and skews."),
        ("Uses", "tasks it suits, and uses it must not serve."),
        (
            "Distribution & Maintenance",
            "who holds it, how it is shared, how errata and erasure requests are handled.",
        ),
    ] {
        let _ = writeln!(s, "## {title}\n\n{TODO} {ask}\n");
    }
    s.push_str("## Change Log\n\n- created.\n");
    s
}

fn todo_paths(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.trim_start().starts_with("TODO") => out.push(at),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| todo_paths(x, format!("{at}/{i}"), out)),
        Value::Object(o) => o
            .iter()
            .for_each(|(k, x)| todo_paths(x, format!("{at}/{k}"), out)),
        _ => {}
    }
}

fn is_number(v: Option<&Value>) -> bool {
    v.is_some_and(Value::is_number)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Lints a card: completeness always; consistency when `facts` are given; relative links
/// against `dir` (the card's folder). Problems come in line order.
pub fn lint(card: &Card, kind: Kind, facts: Option<&Facts>, dir: Option<&Path>) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut at = |line: usize, message: String| out.push(Problem { line, message });
    if !card.front.is_object() {
        at(
            1,
            "the card has no YAML front matter (--- … --- at the top)".into(),
        );
    }
    // Sections: present, in place, filled in.
    for title in kind.sections() {
        match card.section(title) {
            None => at(0, format!("the section \"## {title}\" is missing")),
            Some(s) => {
                let body = s.body.trim();
                if body.is_empty() {
                    at(s.line, format!("the section \"{title}\" is empty"));
                } else if let Some(i) = s.body.lines().position(|l| l.contains(TODO)) {
                    at(
                        s.line + 1 + i,
                        format!("the section \"{title}\" still has a TODO to fill in"),
                    );
                }
            }
        }
    }
    let custos = card.front.get("custos");
    let get = |path: &str| card.front.pointer(path);
    // Numbers the card must state.
    let numeric: &[(&str, &str)] = match kind {
        Kind::Model => &[
            ("/custos/operational/latency_p50_ms", "latency_p50_ms"),
            ("/custos/operational/latency_p95_ms", "latency_p95_ms"),
            ("/custos/operational/throughput_rps", "throughput_rps"),
            ("/custos/operational/memory_gb", "memory_gb"),
            ("/custos/cost/amount", "amount"),
            ("/custos/cost/gpu_hours", "gpu_hours"),
            ("/custos/cost/kg_co2e", "kg_co2e"),
        ],
        Kind::Datasheet => &[
            ("/custos/size/records", "records"),
            ("/custos/size/bytes", "bytes"),
        ],
    };
    for (path, key) in numeric {
        if !is_number(get(path)) {
            let shown = get(path).map_or("missing".into(), |v| v.to_string());
            at(
                card.key_line(key),
                format!(
                    "{} must be a number (it is {shown})",
                    &path[1..].replace('/', ".")
                ),
            );
        }
    }
    // Any other front-matter value a template left as TODO.
    let mut todos = Vec::new();
    todo_paths(&card.front, String::new(), &mut todos);
    for path in todos {
        if !numeric.iter().any(|(p, _)| *p == path) {
            let key = path
                .rsplit('/')
                .find(|k| k.parse::<usize>().is_err())
                .unwrap_or("");
            at(
                card.key_line(key),
                format!("{} still says TODO", path[1..].replace('/', ".")),
            );
        }
    }
    if kind == Kind::Model {
        if let Some(results) = get("/model-index/0/results").and_then(Value::as_array) {
            for r in results {
                for m in r
                    .get("metrics")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if !is_number(m.get("value")) {
                        at(
                            card.key_line("value"),
                            format!(
                                "the metric {} has no numeric value",
                                m.get("type").unwrap_or(&Value::Null)
                            ),
                        );
                    }
                }
            }
        }
    }
    // Links: relative files exist; anchors name a heading.
    let anchors: Vec<String> = card
        .body
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| slug(h.trim_start_matches('#').trim()))
        .collect();
    for (i, line) in card.text.lines().enumerate() {
        for target in links(line) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue; // not fetched: custos never leaves the machine to lint
            }
            if let Some(a) = target.strip_prefix('#') {
                if !anchors.iter().any(|x| x == a) {
                    at(
                        i + 1,
                        format!("the link #{a} names no heading of this card"),
                    );
                }
            } else if let Some(d) = dir {
                let file = target.split('#').next().unwrap_or("");
                if !file.is_empty() && !d.join(file).exists() {
                    at(
                        i + 1,
                        format!(
                            "the link {target} does not resolve (no {} beside the card)",
                            file
                        ),
                    );
                }
            }
        }
    }
    let Some(f) = facts else {
        out.sort_by_key(|p| p.line);
        return out;
    };
    if custos.is_none() {
        at(
            1,
            "the front matter has no custos: section to hold the model's digests".into(),
        );
    }
    let line_of = |k: &str| card.key_line(k);
    match kind {
        Kind::Model => {
            let r = &f.registration;
            let stated = get("/custos/manifest_digest")
                .and_then(Value::as_str)
                .map(|s| s.trim_start_matches("sha256:").to_owned());
            if stated != f.manifest_digest {
                at(
                    line_of("manifest_digest"),
                    format!(
                        "custos.manifest_digest is {}, the registry has {}",
                        stated.map_or("missing".into(), |s| format!("sha256:{s}")),
                        f.manifest_digest
                            .as_deref()
                            .map_or("none (a remote model)".into(), |d| format!("sha256:{d}"))
                    ),
                );
            }
            let container = get("/custos/container_digest").and_then(Value::as_str);
            if container != r.container_digest.as_deref() {
                at(
                    line_of(if container.is_some() {
                        "container_digest"
                    } else {
                        "custos"
                    }),
                    format!(
                        "custos.container_digest is {}, the registry has {}",
                        container.unwrap_or("missing"),
                        r.container_digest.as_deref().unwrap_or("none")
                    ),
                );
            }
            if let Some(v) = get("/custos/version").and_then(Value::as_str) {
                if v != f.version {
                    at(
                        line_of("version"),
                        format!(
                            "custos.version is {v:?}, the registry entry is {:?}",
                            f.version
                        ),
                    );
                }
            }
            let stated: Vec<Reference> = get("/custos/datasets")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|d| Reference {
                            name: d
                                .get("tag")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned(),
                            sha256: d
                                .get("sha256")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .trim_start_matches("sha256:")
                                .to_owned(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            for d in &r.datasets {
                match stated.iter().find(|s| s.name == d.name) {
                    None => at(
                        line_of("datasets"),
                        format!(
                            "the registered dataset {} is not in custos.datasets",
                            d.name
                        ),
                    ),
                    Some(s) if s.sha256 != d.sha256 => at(
                        line_of("sha256"),
                        format!(
                            "dataset {}: the card says sha256:{}, the registry sha256:{}",
                            d.name, s.sha256, d.sha256
                        ),
                    ),
                    Some(_) => {}
                }
            }
            for s in &stated {
                if !r.datasets.iter().any(|d| d.name == s.name) {
                    at(
                        line_of("tag"),
                        format!(
                            "the dataset {} is not registered with {}@{}",
                            s.name, f.name, f.version
                        ),
                    );
                }
            }
            let eval_sha = get("/custos/evaluation/sha256")
                .and_then(Value::as_str)
                .map(|s| s.trim_start_matches("sha256:").to_owned());
            match (&r.evaluation, eval_sha) {
                (Some(e), Some(s)) if e.sha256 != s => at(
                    line_of("evaluation"),
                    format!(
                        "custos.evaluation.sha256 is {s}, the registered report is {}",
                        e.sha256
                    ),
                ),
                (Some(_), None) => at(
                    line_of("custos"),
                    "the registered evaluation report is not named in custos.evaluation".into(),
                ),
                (None, Some(_)) => at(
                    line_of("evaluation"),
                    "custos.evaluation names a report the registry does not hold".into(),
                ),
                _ => {}
            }
            if let Some(m) = &f.metrics {
                lint_metrics(card, m, &mut out);
            }
            if let Some(c) = &f.cost {
                for (key, want) in [
                    ("amount", c.amount),
                    ("gpu_hours", c.gpu_hours),
                    ("kg_co2e", c.kg_co2e),
                ] {
                    if let Some(have) = get(&format!("/custos/cost/{key}")).and_then(Value::as_f64)
                    {
                        if !close(have, want) && (have - want).abs() > 0.005 {
                            out.push(Problem {
                                line: card.key_line(key),
                                message: format!(
                                    "custos.cost.{key} is {have}, custos' records say {}",
                                    num(want)
                                ),
                            });
                        }
                    }
                }
            }
        }
        Kind::Datasheet => {}
    }
    out.sort_by_key(|p| p.line);
    out
}

fn lint_metrics(card: &Card, m: &Metrics, out: &mut Vec<Problem>) {
    let mut stated: BTreeMap<String, f64> = BTreeMap::new();
    for r in card
        .front
        .pointer("/model-index/0/results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for x in r
            .get("metrics")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(t), Some(v)) = (
                x.get("type").and_then(Value::as_str),
                x.get("value").and_then(Value::as_f64),
            ) {
                stated.insert(t.to_owned(), v);
            }
        }
    }
    for (k, want) in &m.overall {
        match stated.get(k) {
            None => out.push(Problem {
                line: card.key_line("model-index"),
                message: format!("the metric {k} of the evaluation report is not in model-index"),
            }),
            Some(have) if !close(*have, *want) => out.push(Problem {
                line: card.key_line("value"),
                message: format!("model-index says {k} = {have}, the evaluation report {want}"),
            }),
            Some(_) => {}
        }
    }
    // The Evaluation section's tables: `| metric | value |` and `| slice | metric | value |`.
    let Some(s) = card.section("Evaluation") else {
        return;
    };
    for (i, line) in s.body.lines().enumerate() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let (want, label) = match cells.as_slice() {
            [k, v] => (m.overall.get(*k).map(|w| (*w, v)), k.to_string()),
            [slice, k, v] => (
                m.slices
                    .get(*slice)
                    .and_then(|x| x.get(*k))
                    .map(|w| (*w, v)),
                format!("{slice}/{k}"),
            ),
            _ => continue,
        };
        let Some((want, v)) = want else { continue };
        match v.trim_matches('`').parse::<f64>() {
            Ok(have) if close(have, want) => {}
            Ok(have) => out.push(Problem {
                line: s.line + 1 + i,
                message: format!("the table says {label} = {have}, the evaluation report {want}"),
            }),
            Err(_) => out.push(Problem {
                line: s.line + 1 + i,
                message: format!("{label} has no numeric value in the table"),
            }),
        }
    }
}

/// GitHub-style heading anchors.
fn slug(h: &str) -> String {
    h.to_lowercase()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                Some(c)
            } else if c == ' ' {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// The targets of `[text](target)` links on a line.
fn links(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        match after.find(')') {
            Some(j) => {
                let t = after[..j].split_whitespace().next().unwrap_or("");
                if !t.is_empty() {
                    out.push(t);
                }
                rest = &after[j..];
            }
            None => break,
        }
    }
    out
}

/// The card as a standalone HTML page. Raw HTML in the Markdown is shown as text, never
/// passed through (cards are served to browsers).
pub fn render_html(card: &Card, title: &str) -> String {
    let front = serde_json::to_string_pretty(&card.front).unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}}table{{border-collapse:collapse}}td,th{{border:1px solid #d0d7de;padding:.3rem .6rem}}code,pre{{background:#f6f8fa}}pre{{padding:.6rem;overflow:auto}}</style>\n</head><body>\n{}<details><summary>Metadata</summary><pre>{}</pre></details>\n</body></html>\n",
        escape(title),
        render_body(card),
        escape(&front)
    )
}

/// The card's Markdown body as an HTML fragment, for a page that has its own frame: raw
/// HTML shown as text, and only web, mail and relative links kept.
pub fn render_body(card: &Card) -> String {
    use pulldown_cmark::{html, Event, Options, Parser, Tag};
    // Only web, mail and relative links: `javascript:` and `data:` URLs would run in the
    // reader's browser.
    let safe = |url: &str| -> bool {
        let u = url.trim().to_ascii_lowercase();
        match u.split_once(':') {
            Some((scheme, _)) if !scheme.contains(['/', '#', '?']) => {
                matches!(scheme, "http" | "https" | "mailto")
            }
            _ => true,
        }
    };
    let events = Parser::new_ext(
        &card.body,
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH,
    )
    .map(|e| match e {
        Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe(&dest_url) => Event::Start(Tag::Link {
            link_type,
            dest_url: "#".into(),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe(&dest_url) => Event::Start(Tag::Image {
            link_type,
            dest_url: "#".into(),
            title,
            id,
        }),
        other => other,
    });
    let mut body = String::new();
    html::push_html(&mut body, events);
    body
}

/// The statement a card signature signs: the card's digest, bound to the model's.
pub fn statement(
    name: &str,
    version: &str,
    manifest_digest: Option<&str>,
    card_sha256: &str,
) -> Value {
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": format!("{name}@{version}/card"), "digest": {"sha256": card_sha256}}],
        "predicateType": CARD_PREDICATE,
        "predicate": {"model": format!("{name}@{version}"), "manifest_digest": manifest_digest.map(|d| format!("sha256:{d}"))}
    })
}

/// Signs a card snapshot.
pub fn sign(
    name: &str,
    version: &str,
    manifest_digest: Option<&str>,
    text: &str,
    key: &SigningKey,
) -> Result<Envelope, ModelError> {
    let payload = serde_json::to_vec(&statement(name, version, manifest_digest, &digest(text)))
        .map_err(|e| ModelError::Invalid(e.to_string()))?;
    Envelope::sign(IN_TOTO, &payload, key, &key.public_key().hint())
}

/// Verifies a card signature: by `key`, over this text, for this model.
pub fn verify(
    envelope: &Envelope,
    key: &PublicKey,
    name: &str,
    version: &str,
    text: &str,
) -> Result<(), ModelError> {
    let payload = envelope.open(key)?;
    let v: Value = serde_json::from_slice(&payload)
        .map_err(|e| ModelError::Signature(format!("not JSON: {e}")))?;
    if v.get("predicateType").and_then(Value::as_str) != Some(CARD_PREDICATE) {
        return Err(ModelError::Signature("not a model-card signature".into()));
    }
    if v.pointer("/predicate/model").and_then(Value::as_str) != Some(&format!("{name}@{version}")) {
        return Err(ModelError::Signature(format!(
            "the signature is for another model than {name}@{version}"
        )));
    }
    if v.pointer("/subject/0/digest/sha256")
        .and_then(Value::as_str)
        != Some(digest(text).as_str())
    {
        return Err(ModelError::Signature(
            "the signature is over another version of the card".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::keys::Curve;

    fn facts() -> Facts {
        Facts {
            name: "tiny".into(),
            version: "1.0".into(),
            manifest_digest: Some("ab".repeat(32)),
            registration: Registration {
                datasets: vec![Reference { name: "reviews".into(), sha256: "cd".repeat(32) }],
                evaluation: Some(Reference { name: "eval.json".into(), sha256: "ef".repeat(32) }),
                license: Some("apache-2.0".into()),
                ..Registration::default()
            },
            metrics: Some(Metrics::from_report(&json!({"metrics": {"accuracy": 0.91, "f1": 0.88}, "slices": {"en": {"accuracy": 0.93}}})).unwrap()),
            cost: Some(Cost { tags: [("run".to_string(), "r1".to_string())].into(), amount: 12.5, currency: "USD".into(), gpu_hours: 3.0, kg_co2e: 0.75 }),
        }
    }

    fn filled(f: &Facts) -> String {
        model_template(f)
            .replace("TODO: ", "Filled in. ")
            .replace("type: TODO", "type: text-classification")
            .replace("latency_p50_ms: TODO", "latency_p50_ms: 40")
            .replace("latency_p95_ms: TODO", "latency_p95_ms: 90")
            .replace("throughput_rps: TODO", "throughput_rps: 120")
            .replace("memory_gb: TODO", "memory_gb: 2.5")
    }

    #[test]
    fn the_template_lints_clean_once_filled_in() {
        let f = facts();
        let raw = Card::parse(&model_template(&f)).unwrap();
        let problems = lint(&raw, Kind::Model, Some(&f), None);
        assert!(
            problems.iter().any(|p| p.message.contains("TODO")),
            "{problems:?}"
        );
        assert!(problems
            .iter()
            .any(|p| p.message.contains("latency_p50_ms must be a number")));
        let card = Card::parse(&filled(&f)).unwrap();
        assert_eq!(lint(&card, Kind::Model, Some(&f), None), vec![]);
    }

    #[test]
    fn inconsistencies_are_named_with_their_lines() {
        let f = facts();
        let text = filled(&f)
            .replace(&"ab".repeat(32), &"00".repeat(32))
            .replace("| accuracy | 0.91 |", "| accuracy | 0.95 |")
            .replace("amount: 12.5", "amount: 10");
        let card = Card::parse(&text).unwrap();
        let problems = lint(&card, Kind::Model, Some(&f), None);
        let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        let find = |m: &str| {
            problems
                .iter()
                .find(|p| p.message.contains(m))
                .unwrap_or_else(|| panic!("{m}: {problems:?}"))
                .line
        };
        assert_eq!(find("manifest_digest is"), line_of("manifest_digest:"));
        assert_eq!(
            find("the table says accuracy"),
            line_of("| accuracy | 0.95 |")
        );
        assert_eq!(find("custos.cost.amount"), line_of("amount: 10"));
        let missing = text.replace("## Robustness", "## Robustnes");
        let problems = lint(&Card::parse(&missing).unwrap(), Kind::Model, None, None);
        assert!(problems
            .iter()
            .any(|p| p.message.contains("\"## Robustness\" is missing")));
    }

    #[test]
    fn broken_links_and_raw_html() {
        let text = "---\na: 1\n---\n\n## Evaluation\n\nSee [report](missing.json) and [top](#evaluation) and [gone](#nope).\n<script>alert(1)</script>\n";
        let card = Card::parse(text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let problems = lint(&card, Kind::Model, None, Some(dir.path()));
        assert!(
            problems
                .iter()
                .any(|p| p.line == 7 && p.message.contains("missing.json")),
            "{problems:?}"
        );
        assert!(problems
            .iter()
            .any(|p| p.line == 7 && p.message.contains("#nope")));
        assert!(!problems.iter().any(|p| p.message.contains("#evaluation")));
        let html = render_html(&card, "t");
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        let js = Card::parse("[x](javascript:alert(1)) [y](JAVASCRIPT:alert(1)) ![i](data:text/html,x) [ok](https://example.com/a:b) [rel](docs/a.md)").unwrap();
        let html = render_html(&js, "t");
        assert!(
            !html.to_lowercase().contains("javascript:") && !html.contains("data:"),
            "{html}"
        );
        assert!(html.contains("https://example.com/a:b") && html.contains("docs/a.md"));
    }

    #[test]
    fn a_card_signature_binds_text_and_model() {
        let (key, _) = SigningKey::generate(Curve::P256).unwrap();
        let env = sign("tiny", "1.0", Some("ab"), "card text", &key).unwrap();
        verify(&env, &key.public_key(), "tiny", "1.0", "card text").unwrap();
        assert!(verify(&env, &key.public_key(), "tiny", "1.0", "card text!").is_err());
        assert!(verify(&env, &key.public_key(), "tiny", "2.0", "card text").is_err());
    }

    #[test]
    fn front_matter_errors_have_lines() {
        let e = Card::parse("---\na: [1,\n---\nbody").unwrap_err();
        assert!(e.message.contains("not YAML"), "{e:?}");
        let e = Card::parse("---\na: 1\nbody").unwrap_err();
        assert!(e.message.contains("never closed"));
    }
}

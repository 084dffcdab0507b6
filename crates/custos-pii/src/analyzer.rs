//! The analyzer: runs the scanner once, the pattern and gazetteer
//! recognizers in its windows, custom recognizers, deny and allow lists,
//! raises scores by context words, and resolves overlaps deterministically.

use std::borrow::Cow;
use std::collections::BTreeSet;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::finding::Finding;
use crate::patterns::{self, PatternRecognizer, Source};
use crate::{names, scan, titles, validate};

/// How much a context word near a match adds, and the floor it lifts to.
const CONTEXT_BOOST: f32 = 0.35;
const CONTEXT_FLOOR: f32 = 0.65;
/// Bytes before and after a finding searched for context words.
const CONTEXT_BEFORE: usize = 64;
const CONTEXT_AFTER: usize = 24;
/// Regex size bound for user-supplied patterns (bytes of compiled program).
const CUSTOM_REGEX_LIMIT: usize = 1 << 20;

/// A recognizer from outside this crate (a model-based NER, say).
pub trait Recognizer: Send + Sync {
    /// Name reported in findings.
    fn name(&self) -> &str;
    /// Entity types it can report.
    fn entities(&self) -> Vec<String>;
    /// Appends findings (byte offsets into `text`) to `out`.
    fn analyze(&self, text: &str, out: &mut Vec<Finding>);
}

/// Errors building an analyzer from configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("custom recognizer `{name}`: pattern does not compile: {error}")]
    Pattern { name: String, error: String },
    #[error("custom recognizer `{name}`: unknown validator `{validator}` (expected one of: none, luhn, iban, aba, nhs, ssn)")]
    Validator { name: String, validator: String },
    #[error("custom recognizer `{name}`: score {score} is outside 0..=1")]
    Score { name: String, score: f32 },
    #[error("allow list regex `{pattern}` does not compile: {error}")]
    AllowRegex { pattern: String, error: String },
    #[error("deny list for `{entity}`: {error}")]
    Deny { entity: String, error: String },
    #[error("{path}: {error}")]
    File { path: String, error: String },
    #[error("threshold {0} is outside 0..=1")]
    Threshold(f32),
    #[error("guard: response = \"block\" is not possible (the answer is already paid for and streaming); use \"redact\"")]
    BlockResponse,
}

/// PII settings: `[pii]` in custos.toml, or a standalone TOML/YAML file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PiiConfig {
    /// Findings below this score are dropped.
    pub threshold: f32,
    /// Only these entity types are reported (empty: all).
    pub entities: Vec<String>,
    pub recognizers: Vec<CustomRecognizer>,
    pub deny: Vec<DenyList>,
    pub allow: AllowList,
    /// What the gateway does with personal data in prompts and responses.
    pub guard: GuardConfig,
    /// More recognizers, deny and allow lists from YAML or TOML files (paths
    /// relative to the configuration file), appended to these.
    pub files: Vec<std::path::PathBuf>,
    /// Also read PERSON, LOCATION and ORGANIZATION with the statistical tagger (default
    /// true): it finds names and organizations no list holds, at about twice the cost of
    /// the rules alone on prose.
    pub tagger: bool,
}

/// The content of a rules file named in `pii.files`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RulesFile {
    pub recognizers: Vec<CustomRecognizer>,
    pub deny: Vec<DenyList>,
    pub allow: AllowList,
}

impl PiiConfig {
    /// Reads every file of `files` (YAML when it ends in .yaml/.yml, else TOML),
    /// resolving relative paths against `base`, and appends its rules.
    pub fn load_files(&mut self, base: &std::path::Path) -> Result<(), ConfigError> {
        for f in self.files.clone() {
            let path = if f.is_absolute() {
                f.clone()
            } else {
                base.join(&f)
            };
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
                path: shown.clone(),
                error: e.to_string(),
            })?;
            let yaml = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            );
            let rules: RulesFile = if yaml {
                serde_norway::from_str(&text).map_err(|e| ConfigError::File {
                    path: shown.clone(),
                    error: e.to_string(),
                })?
            } else {
                toml::from_str(&text).map_err(|e| ConfigError::File {
                    path: shown.clone(),
                    error: e.to_string(),
                })?
            };
            self.recognizers.extend(rules.recognizers);
            self.deny.extend(rules.deny);
            self.allow.exact.extend(rules.allow.exact);
            self.allow.regex.extend(rules.allow.regex);
        }
        Ok(())
    }
}

/// The gateway's action on personal data found in a prompt or a response.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GuardAction {
    /// Pass it through (entities are still counted in metrics when analyzed).
    #[default]
    Allow,
    /// Replace each entity with `<ENTITY_TYPE>` before it goes on.
    Redact,
    /// Refuse the call with 403 naming the entity types (prompts only).
    Block,
}

/// `[pii.guard]`: defaults plus rules by tenant, app or model; the first
/// matching rule's fields override the defaults.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    pub prompt: GuardAction,
    pub response: GuardAction,
    /// Entity types the guard acts on (empty: all).
    pub entities: Vec<String>,
    pub rules: Vec<GuardRule>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GuardRule {
    pub tenant: Option<String>,
    pub app: Option<String>,
    pub model: Option<String>,
    pub prompt: Option<GuardAction>,
    pub response: Option<GuardAction>,
    pub entities: Option<Vec<String>>,
}

/// The guard policy in force for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardPolicy {
    pub prompt: GuardAction,
    pub response: GuardAction,
    pub entities: Vec<String>,
}

impl GuardConfig {
    /// The policy for a call by `tenant`/`app` (names) to `model`.
    pub fn resolve(&self, tenant: &str, app: &str, model: &str) -> GuardPolicy {
        let hit = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        let rule = self
            .rules
            .iter()
            .find(|r| hit(&r.tenant, tenant) && hit(&r.app, app) && hit(&r.model, model));
        GuardPolicy {
            prompt: rule.and_then(|r| r.prompt).unwrap_or(self.prompt),
            response: rule.and_then(|r| r.response).unwrap_or(self.response),
            entities: rule
                .and_then(|r| r.entities.clone())
                .unwrap_or_else(|| self.entities.clone()),
        }
    }

    /// True when no call can be affected (the gateway then skips analysis).
    pub fn is_off(&self) -> bool {
        self.prompt == GuardAction::Allow
            && self.response == GuardAction::Allow
            && self.rules.iter().all(|r| {
                r.prompt.is_none_or(|a| a == GuardAction::Allow)
                    && r.response.is_none_or(|a| a == GuardAction::Allow)
            })
    }
}

impl Default for PiiConfig {
    fn default() -> Self {
        PiiConfig {
            threshold: 0.5,
            entities: Vec::new(),
            recognizers: Vec::new(),
            deny: Vec::new(),
            allow: AllowList::default(),
            guard: GuardConfig::default(),
            files: Vec::new(),
            tagger: true,
        }
    }
}

/// A user-defined regex recognizer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomRecognizer {
    pub name: String,
    pub entity: String,
    pub pattern: String,
    #[serde(default = "default_custom_score")]
    pub score: f32,
    #[serde(default)]
    pub context: Vec<String>,
    /// Checksum the match must pass: none, luhn, iban, aba, nhs, ssn.
    #[serde(default)]
    pub validator: Option<String>,
}

fn default_custom_score() -> f32 {
    0.6
}

/// Words that are always a given entity (project code names, say).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DenyList {
    pub entity: String,
    pub words: Vec<String>,
    #[serde(default)]
    pub case_sensitive: bool,
}

/// Values never reported (a support address, a test card).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AllowList {
    pub exact: Vec<String>,
    pub regex: Vec<String>,
}

/// Per-call options: Presidio's `entities`, `score_threshold`, `context`
/// (words that describe the text, e.g. a CSV column's name) and allow list.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    pub entities: Option<&'a [String]>,
    pub threshold: Option<f32>,
    /// Lower-case context words; they raise scores as nearby words do.
    pub context: &'a [String],
    /// Values never reported for this call (exact, or regexes when `allow_regex`).
    pub allow: &'a [String],
    pub allow_regex: bool,
}

/// Context words that speak for the gazetteer entities (a column named
/// "name", a field "city").
fn gazetteer_context(entity: &str, words: &[String]) -> bool {
    let cues: &[&str] = match entity {
        "PERSON" => &[
            "name",
            "names",
            "person",
            "first",
            "last",
            "surname",
            "customer",
            "patient",
            "contact",
            "employee",
            "user",
            "author",
            "owner",
            "full_name",
            "first_name",
            "last_name",
            "fullname",
            "firstname",
            "lastname",
        ],
        "LOCATION" => &[
            "city",
            "town",
            "country",
            "state",
            "location",
            "place",
            "region",
            "address",
            "birthplace",
        ],
        "ORGANIZATION" => &[
            "company",
            "organization",
            "organisation",
            "employer",
            "org",
            "business",
        ],
        "DATE_TIME" => &[
            "date",
            "dob",
            "birthday",
            "birthdate",
            "time",
            "timestamp",
            "created",
            "updated",
        ],
        _ => return false,
    };
    words.iter().any(|w| {
        w.split(|c: char| !c.is_alphanumeric())
            .any(|p| cues.contains(&p))
            || cues.contains(&w.as_str())
    })
}

struct Deny {
    entity: String,
    automaton: AhoCorasick,
}

/// A configured analyzer; cheap to share across threads.
pub struct Analyzer {
    custom: Vec<PatternRecognizer>,
    external: Vec<Box<dyn Recognizer>>,
    deny: Vec<Deny>,
    allow_exact: BTreeSet<String>,
    allow_regex: Vec<Regex>,
    threshold: f32,
    entities: Vec<String>,
    tagger: bool,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("custom", &self.custom.len())
            .field("external", &self.external.len())
            .field("deny", &self.deny.len())
            .field("threshold", &self.threshold)
            .finish()
    }
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new(&PiiConfig::default())
            .unwrap_or_else(|_| unreachable!("the default configuration is valid"))
    }
}

fn custom_check(validator: &str) -> Option<Option<patterns::Check>> {
    Some(match validator {
        "none" | "" => None,
        "luhn" => Some(|t, m| validate::luhn(&validate::digits(&t[m.clone()])).then_some((m, 1.0))),
        "iban" => {
            Some(|t, m| validate::iban_prefix(&t[m.clone()]).map(|n| (m.start..m.start + n, 1.0)))
        }
        "aba" => Some(|t, m| validate::aba_routing(&t[m.clone()]).then_some((m, 1.0))),
        "nhs" => Some(|t, m| validate::uk_nhs(&t[m.clone()]).then_some((m, 1.0))),
        "ssn" => Some(|t, m| validate::us_ssn(&t[m.clone()]).then_some((m, 1.0))),
        _ => return None,
    })
}

impl Analyzer {
    /// Builds an analyzer; user patterns are compiled with a size bound so a
    /// hostile regex is refused rather than allowed to eat memory.
    pub fn new(config: &PiiConfig) -> Result<Analyzer, ConfigError> {
        if !(0.0..=1.0).contains(&config.threshold) {
            return Err(ConfigError::Threshold(config.threshold));
        }
        let g = &config.guard;
        if g.response == GuardAction::Block
            || g.rules
                .iter()
                .any(|r| r.response == Some(GuardAction::Block))
        {
            return Err(ConfigError::BlockResponse);
        }
        let mut custom = Vec::new();
        for c in &config.recognizers {
            if !(0.0..=1.0).contains(&c.score) {
                return Err(ConfigError::Score {
                    name: c.name.clone(),
                    score: c.score,
                });
            }
            let regex = RegexBuilder::new(&c.pattern)
                .size_limit(CUSTOM_REGEX_LIMIT)
                .dfa_size_limit(CUSTOM_REGEX_LIMIT)
                .build()
                .map_err(|e| ConfigError::Pattern {
                    name: c.name.clone(),
                    error: e.to_string(),
                })?;
            let check =
                custom_check(c.validator.as_deref().unwrap_or("none")).ok_or_else(|| {
                    ConfigError::Validator {
                        name: c.name.clone(),
                        validator: c.validator.clone().unwrap_or_default(),
                    }
                })?;
            custom.push(PatternRecognizer {
                name: Cow::Owned(c.name.clone()),
                entity: Cow::Owned(c.entity.clone()),
                regex,
                source: Source::Whole,
                check,
                score: c.score,
                context: c
                    .context
                    .iter()
                    .map(|w| Cow::Owned(w.to_lowercase()))
                    .collect(),
            });
        }
        let mut deny = Vec::new();
        for d in &config.deny {
            let automaton = AhoCorasickBuilder::new()
                .ascii_case_insensitive(!d.case_sensitive)
                .match_kind(MatchKind::LeftmostLongest)
                .build(&d.words)
                .map_err(|e| ConfigError::Deny {
                    entity: d.entity.clone(),
                    error: e.to_string(),
                })?;
            deny.push(Deny {
                entity: d.entity.clone(),
                automaton,
            });
        }
        let mut allow_regex = Vec::new();
        for p in &config.allow.regex {
            let r = RegexBuilder::new(p)
                .size_limit(CUSTOM_REGEX_LIMIT)
                .build()
                .map_err(|e| ConfigError::AllowRegex {
                    pattern: p.clone(),
                    error: e.to_string(),
                })?;
            allow_regex.push(r);
        }
        Ok(Analyzer {
            custom,
            external: Vec::new(),
            deny,
            allow_exact: config.allow.exact.iter().cloned().collect(),
            allow_regex,
            threshold: config.threshold,
            entities: config.entities.clone(),
            tagger: config.tagger,
        })
    }

    /// Adds a recognizer from outside this crate.
    pub fn with_recognizer(mut self, r: Box<dyn Recognizer>) -> Self {
        self.external.push(r);
        self
    }

    /// Every entity type this analyzer can report.
    pub fn supported_entities(&self) -> Vec<String> {
        let mut v: BTreeSet<String> = patterns::builtin()
            .iter()
            .map(|p| p.entity.to_string())
            .collect();
        v.extend(["PERSON", "LOCATION", "ORGANIZATION", "NRP", "TITLE"].map(String::from));
        v.extend(self.custom.iter().map(|p| p.entity.to_string()));
        v.extend(self.deny.iter().map(|d| d.entity.clone()));
        v.extend(self.external.iter().flat_map(|r| r.entities()));
        v.into_iter().collect()
    }

    /// The configured score threshold.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Findings in `text` at or above the configured threshold, sorted by start.
    pub fn analyze(&self, text: &str) -> Vec<Finding> {
        self.analyze_with(text, &Request::default())
    }

    /// Findings in `text` with per-call entity filter and threshold.
    pub fn analyze_with(&self, original: &str, req: &Request) -> Vec<Finding> {
        // Text copied out of JSON or logs keeps its line breaks as `\n`: read them as the
        // spaces they stand for (same length, so offsets hold), or "\nPhone: 961 52 200" hides
        // both the cue and the number's start.
        let unescaped = blank_escapes(original);
        let text: &str = unescaped.as_deref().unwrap_or(original);
        let wanted: &[String] = req.entities.unwrap_or(&self.entities);
        let want = |e: &str| wanted.is_empty() || wanted.iter().any(|w| w == e);
        let threshold = req.threshold.unwrap_or(self.threshold);
        let windows = scan::windows(text);
        let mut out = Vec::new();
        let builtin = patterns::builtin();
        let run = |p: &PatternRecognizer,
                   region: std::ops::Range<usize>,
                   out: &mut Vec<Finding>| {
            let before = out.len();
            p.analyze_region(text, region, out);
            if !p.context.is_empty() {
                let request_context = req.context.iter().any(|w| p.context.iter().any(|c| c == w));
                for f in &mut out[before..] {
                    if request_context || has_context(text, f, &p.context) {
                        f.score = (f.score + CONTEXT_BOOST).clamp(CONTEXT_FLOOR, 1.0);
                    }
                }
            }
        };
        for group in patterns::builtin_sets() {
            for r in patterns::regions(&windows, group.source) {
                for k in group.set.matches(&text[r.clone()]).iter() {
                    let p = &builtin[group.members[k]];
                    if want(&p.entity) {
                        run(p, r.clone(), &mut out);
                    }
                }
            }
        }
        for p in &self.custom {
            if want(&p.entity) {
                run(p, 0..text.len(), &mut out);
            }
        }
        if [
            "PERSON",
            "LOCATION",
            "ORGANIZATION",
            "DATE_TIME",
            "NRP",
            "TITLE",
        ]
        .iter()
        .any(|e| want(e))
        {
            let before = out.len();
            names::analyze(text, &mut out);
            if self.tagger {
                crate::tagger::analyze(text, &mut out);
            }
            if want("TITLE") {
                titles::analyze(text, &mut out);
            }
            if !req.context.is_empty() {
                for f in &mut out[before..] {
                    if gazetteer_context(&f.entity_type, req.context) {
                        f.score = (f.score + CONTEXT_BOOST).clamp(CONTEXT_FLOOR, 1.0);
                    }
                }
            }
            let mut k = before;
            while k < out.len() {
                if want(&out[k].entity_type) {
                    k += 1;
                } else {
                    out.swap_remove(k);
                }
            }
        }
        for d in &self.deny {
            if !want(&d.entity) {
                continue;
            }
            for m in d.automaton.find_iter(text) {
                let glued = |b: Option<&u8>| b.is_some_and(|c| c.is_ascii_alphanumeric());
                if !glued(text.as_bytes().get(m.end()))
                    && !glued(
                        m.start()
                            .checked_sub(1)
                            .and_then(|i| text.as_bytes().get(i)),
                    )
                {
                    out.push(Finding::new(
                        d.entity.clone(),
                        m.start(),
                        m.end(),
                        1.0,
                        "DenyList",
                    ));
                }
            }
        }
        for r in &self.external {
            let before = out.len();
            r.analyze(text, &mut out);
            out.truncate(
                before
                    + out[before..]
                        .iter()
                        .filter(|f| f.end <= text.len() && f.start <= f.end)
                        .count(),
            );
        }
        out.retain(|f| {
            f.score >= threshold
                && f.end <= text.len()
                && text.is_char_boundary(f.start)
                && text.is_char_boundary(f.end)
                && want(&f.entity_type)
                && !self.allowed(&original[f.start..f.end])
                && !allowed_by_request(req, &original[f.start..f.end])
        });
        resolve_overlaps(out)
    }

    fn allowed(&self, value: &str) -> bool {
        self.allow_exact.contains(value) || self.allow_regex.iter().any(|r| r.is_match(value))
    }
}

/// `text` with each escaped line break or tab (`\n`, `\r`, `\t` as two characters) turned
/// into a space and what it stands for; `None` when there is none. An escaped backslash (`\\n`) stays as it is.
fn blank_escapes(text: &str) -> Option<String> {
    let b = text.as_bytes();
    if !b.contains(&b'\\') {
        return None;
    }
    let mut out = b.to_vec();
    let mut i = 0;
    let mut changed = false;
    while i + 1 < out.len() {
        if out[i] == b'\\' {
            // `\n` becomes a space and a real line break, so lines stay lines.
            let second = match out[i + 1] {
                b'n' => Some(b'\n'),
                b'r' | b't' => Some(b' '),
                _ => None,
            };
            if let Some(c) = second {
                out[i] = b' ';
                out[i + 1] = c;
                changed = true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    // ASCII replaced by ASCII: still UTF-8, with every char boundary where it was.
    changed.then(|| String::from_utf8(out).ok()).flatten()
}

fn allowed_by_request(req: &Request, value: &str) -> bool {
    if req.allow_regex {
        req.allow.iter().any(|p| {
            RegexBuilder::new(p)
                .size_limit(CUSTOM_REGEX_LIMIT)
                .build()
                .is_ok_and(|r| r.is_match(value))
        })
    } else {
        req.allow.iter().any(|a| a == value)
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// True when one of `words` appears as a whole word shortly before or after
/// the finding (case-insensitively; phrases match as phrases).
fn has_context(text: &str, f: &Finding, words: &[Cow<'static, str>]) -> bool {
    let mut s = f.start.saturating_sub(CONTEXT_BEFORE);
    while !text.is_char_boundary(s) {
        s += 1;
    }
    let mut e = (f.end + CONTEXT_AFTER).min(text.len());
    while !text.is_char_boundary(e) {
        e -= 1;
    }
    let hay = |r: std::ops::Range<usize>| text[r].to_ascii_lowercase();
    [hay(s..f.start), hay(f.end..e)].iter().any(|h| {
        let hb = h.as_bytes();
        words.iter().any(|w| {
            h.match_indices(w.as_ref()).any(|(i, _)| {
                let before_ok = i == 0 || !is_word_byte(hb[i - 1]);
                let j = i + w.len();
                // Allow plurals and trailing '#', ':' ("SSN#", "phones").
                let after_ok = j >= hb.len()
                    || !is_word_byte(hb[j])
                    || hb[j] == b's' && (j + 1 >= hb.len() || !is_word_byte(hb[j + 1]));
                before_ok && after_ok
            })
        })
    })
}

/// Keeps the best of overlapping findings: higher score, then longer span,
/// then earlier start, then entity name (so the outcome never depends on
/// recognizer order). Identical spans of different entities keep the best.
pub fn resolve_overlaps(mut all: Vec<Finding>) -> Vec<Finding> {
    // Only findings in one cluster (a chain of overlaps) compete: resolve
    // each cluster on its own, so memory stays at the findings themselves.
    all.sort_by_key(|f| (f.start, f.end));
    let mut out = Vec::with_capacity(all.len());
    let mut cluster: Vec<Finding> = Vec::new();
    let mut reach = 0;
    for f in all {
        if !cluster.is_empty() && f.start >= reach {
            resolve_cluster(std::mem::take(&mut cluster), &mut out);
        }
        reach = if cluster.is_empty() {
            f.end
        } else {
            reach.max(f.end)
        };
        cluster.push(f);
    }
    resolve_cluster(cluster, &mut out);
    out
}

fn resolve_cluster(mut all: Vec<Finding>, out: &mut Vec<Finding>) {
    if all.len() <= 1 {
        out.extend(all);
        return;
    }
    all.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.len().cmp(&a.len()))
            .then(a.start.cmp(&b.start))
            .then(a.entity_type.cmp(&b.entity_type))
    });
    // Kept spans never overlap, so the one that could overlap a new span is
    // the kept span starting last before the new one ends: O(log n) a check.
    let mut kept: std::collections::BTreeMap<usize, Finding> = std::collections::BTreeMap::new();
    for f in all {
        let clash = if f.is_empty() {
            kept.range(..=f.start)
                .next_back()
                .is_some_and(|(_, k)| k.start < f.start && f.start < k.end)
        } else {
            kept.range(..f.end)
                .next_back()
                .is_some_and(|(_, k)| k.end > f.start)
        };
        if !clash && !kept.contains_key(&f.start) {
            kept.insert(f.start, f);
        }
    }
    out.extend(kept.into_values());
}

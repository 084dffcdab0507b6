//! Measures a rule set on labeled samples (JSON lines: a text, the file name it would have,
//! whether it holds a secret, a category): recall on the positives and the share of negatives
//! flagged, overall and by category, so a change to the rules is judged on data, not hope.

use super::engine::Scanner;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One labeled sample.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// The text, as it would be in a file (may span lines).
    pub text: String,
    /// Whether the text holds a real-looking credential.
    pub secret: bool,
    /// Free-form grouping for the report (`password-assignment`, `provider-token`, …).
    #[serde(default)]
    pub category: Option<String>,
    /// The file name the text would have: rules may depend on it (`.netrc`, `id_rsa`).
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{source_name}:{line}: {message}")]
    Line {
        source_name: String,
        line: usize,
        message: String,
    },
    #[error("{0}: holds no samples; write one JSON object per line: {{\"text\": \"…\", \"secret\": true, \"category\": \"…\", \"path\": \"config.py\"}}")]
    Empty(String),
}

/// Reads JSON lines; blank lines and lines starting with `#` are skipped. Each error names
/// the line.
pub fn parse(text: &str, source_name: &str) -> Result<Vec<(usize, Sample)>, EvalError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let s: Sample = serde_json::from_str(t).map_err(|e| EvalError::Line {
            source_name: source_name.to_owned(),
            line: i + 1,
            message: format!("not a labeled sample: {e}"),
        })?;
        out.push((i + 1, s));
    }
    if out.is_empty() {
        return Err(EvalError::Empty(source_name.to_owned()));
    }
    Ok(out)
}

/// Counts for one category (or all of them).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Score {
    pub category: String,
    pub positives: usize,
    /// Positives with at least one finding.
    pub found: usize,
    pub negatives: usize,
    /// Negatives with at least one finding.
    pub flagged: usize,
}

impl Score {
    /// Share of positives found (None without positives).
    pub fn recall(&self) -> Option<f64> {
        (self.positives > 0).then(|| self.found as f64 / self.positives as f64)
    }

    /// Share of negatives flagged (None without negatives).
    pub fn flag_rate(&self) -> Option<f64> {
        (self.negatives > 0).then(|| self.flagged as f64 / self.negatives as f64)
    }

    /// Flagged samples that are secrets.
    pub fn precision(&self) -> Option<f64> {
        let all = self.found + self.flagged;
        (all > 0).then(|| self.found as f64 / all as f64)
    }
}

/// A sample the rules got wrong: a missed secret or a flagged negative. Holds no text, so
/// a report can be shared without the secrets in it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Miss {
    pub line: usize,
    pub category: String,
    pub path: String,
    pub secret: bool,
    /// The rules that fired (empty for a missed secret).
    pub rules: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Evaluation {
    pub overall: Score,
    pub by_category: Vec<Score>,
    pub errors: Vec<Miss>,
}

const DEFAULT_PATH: &str = "sample.txt";

/// Scans each sample as a file of its own and scores the result.
pub fn evaluate(scanner: &Scanner, samples: &[(usize, Sample)]) -> Evaluation {
    let mut by: BTreeMap<String, Score> = BTreeMap::new();
    let mut overall = Score {
        category: "all".into(),
        ..Score::default()
    };
    let mut errors = Vec::new();
    for (line, s) in samples {
        let path = s.path.as_deref().unwrap_or(DEFAULT_PATH);
        let category = s.category.clone().unwrap_or_else(|| "uncategorized".into());
        let mut rules: Vec<String> = scanner
            .scan(path, s.text.as_bytes())
            .into_iter()
            .map(|f| f.rule_id)
            .collect();
        rules.sort();
        rules.dedup();
        let flagged = !rules.is_empty();
        let c = by.entry(category.clone()).or_insert_with(|| Score {
            category: category.clone(),
            ..Score::default()
        });
        for score in [&mut *c, &mut overall] {
            if s.secret {
                score.positives += 1;
                score.found += usize::from(flagged);
            } else {
                score.negatives += 1;
                score.flagged += usize::from(flagged);
            }
        }
        if s.secret != flagged {
            errors.push(Miss {
                line: *line,
                category,
                path: path.to_owned(),
                secret: s.secret,
                rules,
            });
        }
    }
    Evaluation {
        overall,
        by_category: by.into_values().collect(),
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::RuleSet;

    #[test]
    fn counts_found_missed_and_flagged() {
        // Built at run time so that custos' scan of its own tree does not report it.
        let key = format!("AKIA{}", "4QWERTYUIOPLKJHG");
        let text = format!(
            r#"
# a comment
{{"text": "aws_access_key_id = {key}", "secret": true, "category": "aws"}}
{{"text": "nothing here", "secret": true, "category": "aws"}}
{{"text": "max_tokens = 1024", "secret": false, "category": "generic", "path": "c.py"}}
"#
        );
        let samples = parse(&text, "t.jsonl").unwrap();
        let scanner = Scanner::new(RuleSet::default_rules().unwrap());
        let e = evaluate(&scanner, &samples);
        assert_eq!(
            (
                e.overall.positives,
                e.overall.found,
                e.overall.negatives,
                e.overall.flagged
            ),
            (2, 1, 1, 0)
        );
        assert_eq!(e.overall.recall(), Some(0.5));
        assert_eq!(e.by_category.len(), 2);
        assert_eq!(e.errors.len(), 1);
        assert_eq!(e.errors[0].line, 4);
        assert!(e.errors[0].secret);
    }

    #[test]
    fn bad_lines_are_named() {
        let err = parse(
            "{\"text\": \"a\", \"secret\": true}\n{\"text\": 3}\n",
            "x.jsonl",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("x.jsonl:2: "), "{err}");
        let err = parse("{\"text\": \"a\", \"secret\": \"yes\"}\n", "x.jsonl")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.jsonl:1: "), "{err}");
        assert!(matches!(parse("\n# only\n", "e"), Err(EvalError::Empty(_))));
    }
}

//! Accuracy evaluation in the shape of Presidio's evaluator: span-labeled
//! samples (`full_text` + `spans` with char offsets), token-level matching
//! (a token counts for an entity when a span overlaps it), precision, recall
//! and F1 per entity and overall.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analyzer::Analyzer;
use crate::finding::byte_at_char;

/// One labeled sample, as Presidio's evaluator and custos' generator write it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Sample {
    pub full_text: String,
    #[serde(default)]
    pub spans: Vec<Span>,
}

/// A labeled span; offsets count Unicode scalar values (Python `str` indices).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Span {
    pub entity_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_value: Option<String>,
    pub start_position: usize,
    pub end_position: usize,
}

/// Label names other datasets use for custos' entities.
pub fn canonical_entity(name: &str) -> &str {
    match name {
        "GPE" | "LOC" | "CITY" | "COUNTRY" | "STATE" | "ADDRESS_CITY" => "LOCATION",
        "NORP" | "NATIONALITY" | "RELIGION" => "NRP",
        "PER" | "NAME" | "FIRST_NAME" | "LAST_NAME" | "FULL_NAME" | "NAME_STUDENT" => "PERSON",
        "ORG" | "COMPANY" | "ORGANISATION" => "ORGANIZATION",
        "ADDRESS" | "STREET" | "STREETADDRESS" => "STREET_ADDRESS",
        "DATE" | "TIME" | "DATETIME" | "BIRTHDAY" | "DOB" => "DATE_TIME",
        "PHONE" | "PHONENUMBER" | "TELEPHONE" | "PHONE_NUM" => "PHONE_NUMBER",
        "EMAIL" | "E-MAIL" => "EMAIL_ADDRESS",
        "SSN" => "US_SSN",
        "IBAN" => "IBAN_CODE",
        "IP" | "IPV4" | "IPV6" => "IP_ADDRESS",
        "CREDIT_CARD_NUMBER" | "CC" => "CREDIT_CARD",
        "DRIVER_LICENSE" => "US_DRIVER_LICENSE",
        "MAC" => "MAC_ADDRESS",
        "JOB" | "JOBTITLE" | "JOB_TITLE" | "OCCUPATION" | "PROFESSION" | "PREFIX" => "TITLE",
        // Presidio's generator labels a bare domain DOMAIN_NAME; its evaluator, like custos'
        // URL recognizer, counts it as a URL.
        "URL_PERSONAL" | "DOMAIN_NAME" | "DOMAIN" => "URL",
        other => other,
    }
}

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq)]
pub struct Counts {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
}

impl Counts {
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Evaluation result.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub samples: usize,
    pub tokens: u64,
    pub per_entity: BTreeMap<String, Counts>,
    pub overall: Counts,
    /// Gold entity types custos does not detect: not scored, listed so a
    /// reader knows what was left out.
    pub ignored_gold: BTreeMap<String, u64>,
    /// Tokens predicted as PII in samples that hold no gold spans at all.
    pub false_positive_tokens_in_clean_samples: u64,
    pub clean_samples: usize,
}

/// Tokens as (start, end) byte offsets: runs of alphanumerics, or one other
/// non-space char — close to what Presidio's evaluator gets from spaCy.
pub fn tokens(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if c.is_whitespace() {
            continue;
        }
        let mut end = i + c.len_utf8();
        if c.is_alphanumeric() {
            while let Some(&(j, d)) = it.peek() {
                if !d.is_alphanumeric() {
                    break;
                }
                end = j + d.len_utf8();
                it.next();
            }
        }
        out.push((i, end));
    }
    out
}

fn label_tokens<'a>(
    toks: &[(usize, usize)],
    spans: &[(usize, usize, &'a str)],
) -> Vec<Option<&'a str>> {
    toks.iter()
        .map(|&(s, e)| {
            spans
                .iter()
                .find(|&&(a, b, _)| a < e && s < b)
                .map(|&(_, _, ent)| ent)
        })
        .collect()
}

/// Runs `analyzer` over `samples` and scores it.
pub fn evaluate(analyzer: &Analyzer, samples: &[Sample]) -> Report {
    let supported = analyzer.supported_entities();
    let mut report = Report {
        samples: samples.len(),
        ..Report::default()
    };
    for s in samples {
        let text = &s.full_text;
        let mut gold: Vec<(usize, usize, &str)> = Vec::new();
        for sp in &s.spans {
            let ent = canonical_entity(&sp.entity_type);
            if !supported.iter().any(|e| e == ent) {
                *report
                    .ignored_gold
                    .entry(sp.entity_type.clone())
                    .or_default() += 1;
                continue;
            }
            gold.push((
                byte_at_char(text, sp.start_position),
                byte_at_char(text, sp.end_position),
                ent,
            ));
        }
        let found = analyzer.analyze(text);
        let pred: Vec<(usize, usize, &str)> = found
            .iter()
            // Through the same mapping as the gold, so custos' own DOMAIN_NAME counts as a URL.
            .map(|f| (f.start, f.end, canonical_entity(f.entity_type.as_ref())))
            .collect();
        let toks = tokens(text);
        report.tokens += toks.len() as u64;
        let g = label_tokens(&toks, &gold);
        let p = label_tokens(&toks, &pred);
        let clean = s.spans.is_empty();
        if clean {
            report.clean_samples += 1;
        }
        for (g, p) in g.into_iter().zip(p) {
            match (g, p) {
                (Some(a), Some(b)) if a == b => {
                    report.per_entity.entry(a.to_string()).or_default().tp += 1
                }
                (g, p) => {
                    if let Some(a) = g {
                        report.per_entity.entry(a.to_string()).or_default().fn_ += 1;
                    }
                    if let Some(b) = p {
                        report.per_entity.entry(b.to_string()).or_default().fp += 1;
                        if clean {
                            report.false_positive_tokens_in_clean_samples += 1;
                        }
                    }
                }
            }
        }
    }
    for c in report.per_entity.values() {
        report.overall.tp += c.tp;
        report.overall.fp += c.fp;
        report.overall.fn_ += c.fn_;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_datasets_labels_map_to_custos_entities() {
        for (label, entity) in [
            ("DOMAIN_NAME", "URL"),
            ("URL_PERSONAL", "URL"),
            ("GPE", "LOCATION"),
            ("NAME_STUDENT", "PERSON"),
            ("JOB_TITLE", "TITLE"),
            ("ZIP_CODE", "ZIP_CODE"),
        ] {
            assert_eq!(canonical_entity(label), entity, "{label}");
        }
    }

    #[test]
    fn token_level_scoring() {
        let samples = vec![
            Sample {
                full_text: "Mail jane@example.com or call 212-555-0147 now".into(),
                spans: vec![
                    Span {
                        entity_type: "EMAIL".into(),
                        entity_value: None,
                        start_position: 5,
                        end_position: 21,
                    },
                    Span {
                        entity_type: "PHONE_NUMBER".into(),
                        entity_value: None,
                        start_position: 30,
                        end_position: 42,
                    },
                    Span {
                        entity_type: "SHOE_SIZE".into(),
                        entity_value: None,
                        start_position: 43,
                        end_position: 46,
                    },
                ],
            },
            Sample {
                full_text: "Nothing personal here.".into(),
                spans: vec![],
            },
        ];
        let r = evaluate(&Analyzer::default(), &samples);
        let email = r.per_entity["EMAIL_ADDRESS"];
        assert_eq!((email.tp, email.fp, email.fn_), (5, 0, 0), "{r:?}");
        assert_eq!(r.ignored_gold["SHOE_SIZE"], 1);
        assert_eq!(r.clean_samples, 1);
        assert_eq!(
            tokens("a-b  cd!"),
            vec![(0, 1), (1, 2), (2, 3), (5, 7), (7, 8)]
        );
    }
}

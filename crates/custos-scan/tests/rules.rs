//! Every default rule finds each of its positive examples and none of its negatives.

use custos_scan::secrets::{RuleSet, Scanner};
use std::collections::BTreeMap;

#[derive(serde::Deserialize)]
struct Examples {
    positive: Vec<String>,
    negative: Vec<String>,
    /// For rules limited to some files (e.g. `.npmrc`): the path to scan the examples as.
    path: Option<String>,
}

#[test]
fn every_rule_has_examples_and_they_hold() {
    let scanner = Scanner::new(RuleSet::default_rules().unwrap());
    let examples: BTreeMap<String, Examples> =
        toml::from_str(include_str!("secret_examples.toml")).unwrap();
    let mut failures = Vec::new();
    for rule in &scanner.rules().rules {
        let Some(ex) = examples.get(&rule.id) else {
            failures.push(format!("{}: no examples", rule.id));
            continue;
        };
        assert!(
            !ex.positive.is_empty() && !ex.negative.is_empty(),
            "{}",
            rule.id
        );
        let path = ex.path.as_deref().unwrap_or("src/config.env");
        for p in &ex.positive {
            let found = scanner.scan(path, p.as_bytes());
            if !found.iter().any(|f| f.rule_id == rule.id) {
                failures.push(format!("{}: missed positive {p:?}", rule.id));
            }
        }
        for n in &ex.negative {
            let found = scanner.scan(path, n.as_bytes());
            if found.iter().any(|f| f.rule_id == rule.id) {
                failures.push(format!("{}: flagged negative {n:?}", rule.id));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

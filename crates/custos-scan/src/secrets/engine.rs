//! The detection engine: one case-insensitive Aho-Corasick pass finds which rules' keywords
//! occur in a file, then only those rules' regexes run; each match's secret is checked for
//! entropy, allowlists and an inline `custos:allow` (or `gitleaks:allow`) on its line.

use super::rules::{Allowlist, RegexTarget, Rule, RuleSet};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// One secret found.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Finding {
    pub rule_id: String,
    pub description: String,
    /// The file, as given to `scan` (relative to the scan root for directory scans).
    pub path: String,
    /// 1-based; 0 for a rule that matches a file by its path alone.
    pub line: usize,
    /// 1-based, in Unicode code points.
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    /// The secret itself; reports redact it unless asked not to.
    pub secret: String,
    /// The whole regex match the secret came from.
    #[serde(rename = "match")]
    pub matched: String,
    pub entropy: f64,
    pub tags: Vec<String>,
    /// SHA-256 over rule, path and secret: stable when lines move, for baselines.
    pub fingerprint: String,
    /// For history scans: the commit that introduced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<super::history::CommitInfo>,
    /// For image scans: the layer the file is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<crate::image::Layer>,
    /// For image scans: a later layer deleted or replaced the file, yet the secret ships in
    /// this layer's bytes to everyone who pulls the image.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub removed_in_later_layer: bool,
}

impl Finding {
    /// The secret cut to its first four characters.
    pub fn redacted_secret(&self) -> String {
        redact(&self.secret)
    }

    /// The match with the secret in it redacted.
    pub fn redacted_match(&self) -> String {
        if self.secret.is_empty() {
            return self.matched.clone();
        }
        self.matched.replace(&self.secret, &redact(&self.secret))
    }
}

fn redact(s: &str) -> String {
    let keep: String = s.chars().take(4).collect();
    format!("{keep}…")
}

/// Shannon entropy of the bytes of `s`, in bits per byte.
pub fn shannon_entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// A rule set ready to scan with.
pub struct Scanner {
    rules: RuleSet,
    keywords: Option<AhoCorasick>,
    /// For each keyword pattern, the rules it enables.
    keyword_rules: Vec<Vec<usize>>,
    /// Rules with a regex and no keywords: tried on every file.
    always: Vec<usize>,
    /// For each keyword pattern, whether a line-scoped rule needs where it occurs.
    located: Vec<bool>,
    /// For each rule, its keyword patterns (a line-scoped rule reads the lines they hit).
    rule_keywords: Vec<Vec<usize>>,
}

impl Scanner {
    pub fn new(rules: RuleSet) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut always = Vec::new();
        let mut rule_keywords = vec![Vec::new(); rules.rules.len()];
        for (i, r) in rules.rules.iter().enumerate() {
            if r.regex.is_none() {
                continue;
            }
            if r.keywords.is_empty() {
                always.push(i);
            }
            for k in &r.keywords {
                let at = match patterns.iter().position(|p| p == k) {
                    Some(at) => {
                        keyword_rules[at].push(i);
                        at
                    }
                    None => {
                        patterns.push(k.clone());
                        keyword_rules.push(vec![i]);
                        patterns.len() - 1
                    }
                };
                rule_keywords[i].push(at);
            }
        }
        let keywords = (!patterns.is_empty())
            .then(|| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    // A full DFA: a few hundred KB for ~150 keywords, and the fastest scan.
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&patterns)
                    .ok()
            })
            .flatten();
        let located = keyword_rules
            .iter()
            .map(|rs| rs.iter().any(|&i| rules.rules[i].line_scoped))
            .collect();
        Self {
            rules,
            keywords,
            keyword_rules,
            always,
            located,
            rule_keywords,
        }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// True when a global allowlist excludes this path outright.
    pub fn path_allowed(&self, path: &str) -> bool {
        self.rules
            .allowlists
            .iter()
            .any(|a| !a.all && a.paths.iter().any(|p| p.is_match(path.as_bytes())))
    }

    /// Scans one file's contents, and what is base64- or percent-encoded inside it.
    pub fn scan(&self, path: &str, content: &[u8]) -> Vec<Finding> {
        let mut out = self.scan_plain(path, content);
        if !self.path_allowed(path) {
            let mut budget = MAX_DECODED;
            self.scan_decoded(path, content, 1, &mut budget, &mut out);
        }
        out
    }

    /// Decodes base64 and percent-encoded runs (Kubernetes secrets, data URLs, query
    /// strings) and scans the text inside, up to `MAX_DEPTH` levels and `MAX_DECODED`
    /// bytes per file. Findings point at the encoded run and carry a `decoded:` tag.
    fn scan_decoded(
        &self,
        path: &str,
        content: &[u8],
        depth: u8,
        budget: &mut usize,
        out: &mut Vec<Finding>,
    ) {
        use base64::Engine;
        static RUNS: std::sync::OnceLock<regex::bytes::Regex> = std::sync::OnceLock::new();
        let runs = RUNS.get_or_init(|| {
            regex::bytes::Regex::new(r"(?-u)[A-Za-z0-9+/_\-]{20,}={0,2}|(?:[A-Za-z0-9._~+\-]*%[0-9A-Fa-f]{2}){3,}[A-Za-z0-9._~+\-]*")
                .unwrap_or_else(|e| panic!("decoding pattern: {e}"))
        });
        let mut lines: Option<Vec<usize>> = None;
        for m in runs.find_iter(content) {
            if *budget == 0 {
                return;
            }
            let run = m.as_bytes();
            let (decoded, how) = if run.contains(&b'%') {
                (percent_decode(run), "decoded:percent")
            } else {
                let trimmed: Vec<u8> = run.iter().copied().filter(|&b| b != b'=').collect();
                let engine = if trimmed.iter().any(|&b| b == b'-' || b == b'_') {
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD
                } else {
                    &base64::engine::general_purpose::STANDARD_NO_PAD
                };
                match engine.decode(&trimmed) {
                    Ok(d) => (d, "decoded:base64"),
                    Err(_) => continue,
                }
            };
            // Only text can hold a secret a rule recognizes; binary (hashes, images) is skipped.
            let printable = decoded
                .iter()
                .filter(|&&b| b == b'\n' || b == b'\t' || (0x20..0x7f).contains(&b))
                .count();
            if decoded.len() < 8 || printable * 10 < decoded.len() * 9 || decoded.as_slice() == run
            {
                continue;
            }
            *budget = budget.saturating_sub(decoded.len());
            let lines = lines.get_or_insert_with(|| memchr_newlines(content));
            let (line, column) = position(lines, content, m.start());
            let (end_line, end_column) = position(lines, content, m.end());
            let mut inner = self.scan_plain(path, &decoded);
            if depth < MAX_DEPTH {
                let mut nested = Vec::new();
                self.scan_decoded(path, &decoded, depth + 1, budget, &mut nested);
                inner.extend(nested);
            }
            for mut f in inner {
                if out
                    .iter()
                    .any(|o| o.secret == f.secret && o.rule_id == f.rule_id)
                {
                    continue;
                }
                f.line = line;
                f.column = column;
                f.end_line = end_line;
                f.end_column = end_column;
                if !f.tags.iter().any(|t| t.starts_with("decoded:")) {
                    f.tags.push(how.to_string());
                }
                out.push(f);
            }
        }
    }

    /// Scans one buffer as it is.
    fn scan_plain(&self, path: &str, content: &[u8]) -> Vec<Finding> {
        let mut out = Vec::new();
        if self.path_allowed(path) {
            return out;
        }
        // Path-only rules: the file's name is the finding (e.g. a committed private key file).
        for r in &self.rules.rules {
            if r.regex.is_none() && r.path.as_ref().is_some_and(|p| p.is_match(path.as_bytes())) {
                out.push(self.finding(r, path, 0, 0, 0, 0, "", "", 0.0));
            }
        }
        let mut candidates = vec![false; self.rules.rules.len()];
        for &i in &self.always {
            candidates[i] = true;
        }
        // Where the keywords of line-scoped rules occur, by pattern.
        let mut at: Vec<Vec<usize>> = vec![Vec::new(); self.keyword_rules.len()];
        if let Some(ac) = &self.keywords {
            let mut left = self.keyword_rules.len();
            let mut seen = vec![false; self.keyword_rules.len()];
            // Once every keyword was seen the pass may stop, unless hits are still located.
            let locating = self.located.iter().any(|&l| l);
            for m in ac.find_overlapping_iter(content) {
                let p = m.pattern().as_usize();
                if self.located[p] {
                    at[p].push(m.start());
                }
                if !seen[p] {
                    seen[p] = true;
                    for &i in &self.keyword_rules[p] {
                        candidates[i] = true;
                    }
                    left -= 1;
                    if left == 0 && !locating {
                        break;
                    }
                }
            }
        }
        let mut lines: Option<Vec<usize>> = None;
        for (i, r) in self.rules.rules.iter().enumerate() {
            if !candidates[i] {
                continue;
            }
            let Some(regex) = &r.regex else { continue };
            if r.path
                .as_ref()
                .is_some_and(|p| !p.is_match(path.as_bytes()))
            {
                continue;
            }
            if !r.line_scoped {
                for caps in regex.captures_iter(content) {
                    self.consider(r, path, content, &mut lines, &caps, 0, &mut out);
                }
                continue;
            }
            let newlines = lines.get_or_insert_with(|| memchr_newlines(content));
            // The lines holding one of this rule's keywords, each once, in order.
            let mut starts: Vec<(usize, usize)> = self.rule_keywords[i]
                .iter()
                .flat_map(|&p| at[p].iter())
                .map(|&o| line_bounds(newlines, content.len(), o))
                .collect();
            starts.sort_unstable();
            starts.dedup();
            for (start, end) in starts {
                for caps in regex.captures_iter(&content[start..end]) {
                    self.consider(r, path, content, &mut lines, &caps, start, &mut out);
                }
            }
        }
        drop_overlapping(&mut out, |id| {
            self.rules
                .rules
                .iter()
                .position(|r| r.id == id)
                .unwrap_or(usize::MAX)
        });
        out
    }

    /// Turns one regex match into a finding unless entropy, an allowlist or an inline allow
    /// comment says otherwise. `base` is where the searched slice starts in `content`.
    #[allow(clippy::too_many_arguments)]
    fn consider(
        &self,
        r: &Rule,
        path: &str,
        content: &[u8],
        lines: &mut Option<Vec<usize>>,
        caps: &regex::bytes::Captures<'_>,
        base: usize,
        out: &mut Vec<Finding>,
    ) {
        let Some(whole) = caps.get(0) else { return };
        let secret = if r.secret_group > 0 {
            caps.get(r.secret_group)
        } else {
            // Gitleaks' rule: the first non-empty group, else the whole match.
            (1..caps.len())
                .filter_map(|g| caps.get(g))
                .find(|g| !g.as_bytes().is_empty())
                .or(Some(whole))
        };
        let Some(secret) = secret else { return };
        let entropy = shannon_entropy(secret.as_bytes());
        if let Some(min) = r.entropy {
            if entropy <= min {
                return;
            }
            // Generic rules also need a digit: words and identifiers rarely have one.
            if r.id.starts_with("generic") && !secret.as_bytes().iter().any(u8::is_ascii_digit) {
                return;
            }
        }
        let lines = lines.get_or_insert_with(|| memchr_newlines(content));
        let (line_start, line_end) = line_bounds(lines, content.len(), base + whole.start());
        let line_text = &content[line_start..line_end];
        if contains_allow_comment(line_text) {
            return;
        }
        let allowed = r
            .allowlists
            .iter()
            .chain(&self.rules.allowlists)
            .any(|a| allows(a, path, secret.as_bytes(), whole.as_bytes(), line_text));
        if allowed {
            return;
        }
        let (line, column) = position(lines, content, base + secret.start());
        let (end_line, end_column) = position(lines, content, base + secret.end());
        out.push(self.finding(
            r,
            path,
            line,
            column,
            end_line,
            end_column,
            &String::from_utf8_lossy(secret.as_bytes()),
            &String::from_utf8_lossy(whole.as_bytes()),
            entropy,
        ));
    }

    #[allow(clippy::too_many_arguments)]
    fn finding(
        &self,
        r: &Rule,
        path: &str,
        line: usize,
        column: usize,
        end_line: usize,
        end_column: usize,
        secret: &str,
        matched: &str,
        entropy: f64,
    ) -> Finding {
        let mut h = Sha256::new();
        h.update(r.id.as_bytes());
        h.update([0]);
        h.update(path.as_bytes());
        h.update([0]);
        h.update(secret.as_bytes());
        Finding {
            rule_id: r.id.clone(),
            description: r.description.clone(),
            path: path.to_owned(),
            line,
            column,
            end_line,
            end_column,
            secret: secret.to_owned(),
            matched: matched.to_owned(),
            entropy: (entropy * 1000.0).round() / 1000.0,
            tags: r.tags.clone(),
            fingerprint: hex::encode(&h.finalize()[..16]),
            commit: None,
            layer: None,
            removed_in_later_layer: false,
        }
    }
}

/// How deep encodings are unwrapped (base64 inside base64 is common in Kubernetes).
const MAX_DEPTH: u8 = 2;
/// Decoded bytes scanned per file, so a file of encoded data stays linear.
const MAX_DECODED: usize = 1 << 20;

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if s[i] == b'+' { b' ' } else { s[i] });
        i += 1;
    }
    out
}

/// Findings of several rules on the same span of a line say one thing: keep one, a specific
/// rule's over a generic one (as Gitleaks does), else the rule listed first.
fn drop_overlapping(findings: &mut Vec<Finding>, rank: impl Fn(&str) -> usize) {
    if findings.len() < 2 {
        return;
    }
    let keys: Vec<(bool, usize)> = findings
        .iter()
        .map(|f| (f.rule_id.starts_with("generic"), rank(&f.rule_id)))
        .collect();
    let mut order: Vec<usize> = (0..findings.len()).collect();
    order.sort_by_key(|&i| keys[i]);
    let mut keep = vec![false; findings.len()];
    // Kept spans by line, start → end: disjoint, so the one starting last before a span's end
    // is the only one that can overlap it (no pairwise comparison on a file of many findings).
    let mut kept: std::collections::HashMap<usize, std::collections::BTreeMap<usize, usize>> =
        std::collections::HashMap::new();
    for i in order {
        let f = &findings[i];
        // Path-only findings (line 0) never overlap.
        if f.line == 0 {
            keep[i] = true;
            continue;
        }
        let spans = kept.entry(f.line).or_default();
        let overlaps = spans
            .range(..f.end_column)
            .next_back()
            .is_some_and(|(_, &end)| f.column < end);
        if !overlaps {
            keep[i] = true;
            spans.insert(f.column, f.end_column);
        }
    }
    let mut i = 0;
    findings.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}

fn contains_allow_comment(line: &[u8]) -> bool {
    let finder = |needle: &[u8]| line.windows(needle.len()).any(|w| w == needle);
    finder(b"custos:allow") || finder(b"gitleaks:allow")
}

fn allows(a: &Allowlist, path: &str, secret: &[u8], matched: &[u8], line: &[u8]) -> bool {
    let target = match a.target {
        RegexTarget::Secret => secret,
        RegexTarget::Match => matched,
        RegexTarget::Line => line,
    };
    let lower = String::from_utf8_lossy(secret).to_lowercase();
    // (criterion present, criterion holds); commits never hold outside git history.
    let checks = [
        (!a.commits.is_empty(), false),
        (
            !a.paths.is_empty(),
            a.paths.iter().any(|p| p.is_match(path.as_bytes())),
        ),
        (
            !a.regexes.is_empty(),
            a.regexes.iter().any(|r| r.is_match(target)),
        ),
        (
            !a.stopwords.is_empty(),
            a.stopwords.iter().any(|w| lower.contains(w.as_str())),
        ),
    ];
    if a.all {
        checks.iter().any(|(has, _)| *has) && checks.iter().all(|(has, ok)| !has || *ok)
    } else {
        checks.iter().any(|(_, ok)| *ok)
    }
}

fn memchr_newlines(content: &[u8]) -> Vec<usize> {
    memchr::memchr_iter(b'\n', content).collect()
}

/// The byte range of the line holding `offset` (without its newline).
fn line_bounds(newlines: &[usize], len: usize, offset: usize) -> (usize, usize) {
    let i = newlines.partition_point(|&n| n < offset);
    let start = if i == 0 { 0 } else { newlines[i - 1] + 1 };
    let end = newlines.get(i).copied().unwrap_or(len);
    (start, end)
}

/// 1-based line and column (in code points) of a byte offset.
fn position(newlines: &[usize], content: &[u8], offset: usize) -> (usize, usize) {
    let i = newlines.partition_point(|&n| n < offset);
    let start = if i == 0 { 0 } else { newlines[i - 1] + 1 };
    // Code points are the bytes that do not continue a UTF-8 sequence (no allocation).
    let column = content[start..offset.max(start)]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count()
        + 1;
    (i + 1, column)
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_finding_per_span_provider_first() {
        let scanner = Scanner::new(RuleSet::default_rules().unwrap());
        // The GitHub rule and the password rules read the same value: the provider names it.
        let token = format!("ghp_{}", "Zq8r2LmX9vB4tP7wQ8Zr2LmX9vB4tP7wA1b7");
        let f = scanner.scan("app.py", format!("password = \"{token}\"\n").as_bytes());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule_id, "github-pat");
        // Many findings on one line stay apart and are all kept.
        let line: String = (0..300)
            .map(|i| format!("ghp_{:0>36} ", format!("Zq8r2LmX9vB4tP7w{i}")))
            .collect();
        assert_eq!(scanner.scan("big.txt", line.as_bytes()).len(), 300);
    }

    #[test]
    fn secrets_inside_base64_and_percent_encoding() {
        use base64::Engine;
        let scanner = Scanner::new(RuleSet::default_rules().unwrap());
        let token = format!("ghp_{}", "Zq8r2LmX9vB4tP7wQ8Zr2LmX9vB4tP7wA1b7");
        let inner = format!("GITHUB_TOKEN={token}\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(inner.as_bytes());
        let yaml = format!("apiVersion: v1\nkind: Secret\ndata:\n  env: {b64}\n");
        let f = scanner.scan("secret.yaml", yaml.as_bytes());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].secret, token);
        assert_eq!((f[0].line, f[0].column), (4, 8));
        assert!(f[0].tags.iter().any(|t| t == "decoded:base64"));
        // Twice encoded, and percent-encoded.
        let twice = base64::engine::general_purpose::STANDARD.encode(b64.as_bytes());
        assert_eq!(scanner.scan("x", format!("v: {twice}").as_bytes()).len(), 1);
        let pct = format!("https://example.com/cb?token={}", token.replace('_', "%5F"))
            .replace("Zq8r", "%5A%71%38r");
        let f = scanner.scan("x", pct.as_bytes());
        assert!(
            f.iter()
                .any(|x| x.secret == token && x.tags.iter().any(|t| t == "decoded:percent")),
            "{f:?}"
        );
        // Encoded binary (an integrity hash) is not decoded into noise.
        assert!(scanner.scan("package-lock.json", b"\"integrity\": \"sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUR8RVV3ijF2Zr6vvg==\"").is_empty());
    }

    use super::*;
    use proptest::prelude::*;

    fn scanner(toml: &str) -> Scanner {
        Scanner::new(RuleSet::parse("t.toml", toml, None).unwrap())
    }

    #[test]
    fn entropy_known_values() {
        assert_eq!(shannon_entropy(b""), 0.0);
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!((shannon_entropy(b"ab") - 1.0).abs() < 1e-9);
        assert!((shannon_entropy(b"0123456789abcdef") - 4.0).abs() < 1e-9);
    }

    #[test]
    fn a_line_scoped_rule_reads_only_the_lines_of_its_keywords() {
        let rule = |scope: &str| {
            format!(
                "[[rules]]\nid = 'pw'\nregex = '''(?:pw|token)[ \\t\\n]*=[ \\t\\n]*\"([a-z0-9]{{6,}})\"'''\nkeywords = ['pw']\n{scope}\n"
            )
        };
        let text = "a = 1\nx pw = \"abc123\" y\nb = 2\ntoken = \"def456\"\npw =\n\"ghi789\"\n";
        let line = scanner(&rule("scope = 'line'")).scan("f", text.as_bytes());
        // Only the second line holds the keyword with its value; the token line has no
        // keyword and the value across a line break is out of a line's reach.
        assert_eq!(line.len(), 1, "{line:?}");
        assert_eq!(
            (line[0].secret.as_str(), line[0].line, line[0].column),
            ("abc123", 2, 9)
        );
        let whole = scanner(&rule("")).scan("f", text.as_bytes());
        let secrets: Vec<&str> = whole.iter().map(|f| f.secret.as_str()).collect();
        assert_eq!(secrets, ["abc123", "def456", "ghi789"]);
        for bad in [
            "[[rules]]\nid = 'pw'\nregex = 'pw'\nkeywords = ['pw']\nscope = 'page'\n",
            "[[rules]]\nid = 'pw'\nregex = 'pw'\nscope = 'line'\n",
        ] {
            let e = RuleSet::parse("r.toml", bad, None).unwrap_err().to_string();
            assert!(e.contains("scope"), "{e}");
        }
    }

    #[test]
    fn keywords_gate_groups_pick_and_positions_count() {
        let s = scanner(
            "[[rules]]\nid = 'tok'\nregex = '''tok_(?:live|test)_([a-z0-9]{8})'''\nkeywords = ['TOK_']\n",
        );
        let text = "first line\n  é x = \"tok_live_abcd1234\"\n";
        let f = s.scan("a.py", text.as_bytes());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].secret, "abcd1234");
        assert_eq!((f[0].line, f[0].column), (2, 19));
        assert_eq!(f[0].redacted_secret(), "abcd…");
        assert_eq!(f[0].redacted_match(), "tok_live_abcd…");
        // Without the keyword the regex never runs (it could not match anyway here).
        assert!(s.scan("a.py", b"nothing").is_empty());
        // An inline allow comment silences the line.
        assert!(s
            .scan("a.py", b"x = 'tok_live_abcd1234' # custos:allow")
            .is_empty());
    }

    #[test]
    fn entropy_threshold_and_generic_digit_rule() {
        let s = scanner(
            "[[rules]]\nid = 'generic-key'\nregex = '''key = \"([a-zA-Z0-9]{12,})\"'''\nentropy = 3.0\nkeywords = ['key']\n",
        );
        assert!(s.scan("a", b"key = \"aaaaaaaaaaaaaaaa\"").is_empty());
        assert!(s.scan("a", b"key = \"ThisIsAnIdentifier\"").is_empty());
        assert_eq!(s.scan("a", b"key = \"q8Zr2LmX9vB4tP7w\"").len(), 1);
    }

    #[test]
    fn allowlists_or_and_targets_and_stopwords() {
        let base = "[[rules]]\nid = 'tok'\nregex = '''tok_([a-z0-9]{8})'''\nkeywords = ['tok_']\n";
        let s = scanner(&format!(
            "{base}[[rules.allowlists]]\nstopwords = ['EXAMPLE']\n"
        ));
        assert!(s.scan("a", b"tok_example1").is_empty());
        assert_eq!(s.scan("a", b"tok_abcdefg1").len(), 1);
        let s = scanner(&format!(
            "{base}[[rules.allowlists]]\ncondition = 'AND'\npaths = ['''test''']\nregexes = ['''^0''']\n"
        ));
        assert!(s.scan("test/a", b"tok_0bcdefg1").is_empty());
        assert_eq!(s.scan("src/a", b"tok_0bcdefg1").len(), 1);
        assert_eq!(s.scan("test/a", b"tok_abcdefg1").len(), 1);
        let s = scanner(&format!(
            "{base}[[rules.allowlists]]\nregexTarget = 'line'\nregexes = ['''fixture''']\n"
        ));
        assert!(s.scan("a", b"v = tok_abcdefg1 # fixture").is_empty());
        let s = scanner(&format!("{base}[allowlist]\npaths = ['''^vendor/''']\n"));
        assert!(s.path_allowed("vendor/x.js"));
        assert!(s.scan("vendor/x.js", b"tok_abcdefg1").is_empty());
    }

    #[test]
    fn path_only_rules_and_fingerprints() {
        let s = scanner("[[rules]]\nid = 'pkcs12'\npath = '''\\.p12$'''\n");
        let f = s.scan("certs/id.p12", b"\x00\x01");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].line, 0);
        let t = scanner("[[rules]]\nid = 'tok'\nregex = '''tok_[a-z0-9]{8}'''\n");
        let a = t.scan("a", b"tok_abcdefg1");
        let b = t.scan("a", b"\n\n\nmoved: tok_abcdefg1");
        assert_eq!(a[0].fingerprint, b[0].fingerprint);
        assert_ne!(
            a[0].fingerprint,
            t.scan("b", b"tok_abcdefg1")[0].fingerprint
        );
    }

    #[test]
    fn generic_findings_yield_to_specific_ones() {
        let s = Scanner::new(RuleSet::default_rules().unwrap());
        let f = s.scan(
            "a",
            b"GITHUB_TOKEN=ghp_Xq8Zr2LmX9vB4tP7wQ8Zr2LmX9vB4tP7wA1b", // custos:allow
        );
        let ids: Vec<&str> = f.iter().map(|x| x.rule_id.as_str()).collect();
        assert_eq!(ids, vec!["github-pat"]);
    }

    proptest! {
        #[test]
        fn scanning_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            static SCANNER: std::sync::OnceLock<Scanner> = std::sync::OnceLock::new();
            let s = SCANNER.get_or_init(|| Scanner::new(RuleSet::default_rules().unwrap()));
            let _ = s.scan("x", &data);
        }

        #[test]
        fn entropy_is_bounded(data in proptest::collection::vec(any::<u8>(), 1..500)) {
            let e = shannon_entropy(&data);
            prop_assert!((0.0..=8.0 + 1e-9).contains(&e));
            prop_assert!(e <= (data.len() as f64).log2() + 1e-9);
        }
    }
}

//! Rules in Gitleaks' TOML format, so a team's `.gitleaks.toml` works unchanged: rules with
//! id, description, regex, secretGroup, entropy, keywords, path and allowlists; global
//! allowlists; and `[extend]` onto custos' default rules (or another file).

use regex::bytes::Regex;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// custos' own default rules, written from the providers' documented token formats.
pub const DEFAULT_RULES: &str = include_str!("default.toml");

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{file}:{line}: {message}")]
    Toml {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: rule {rule:?}: {key}: {message}")]
    Rule {
        file: String,
        rule: String,
        key: &'static str,
        message: String,
    },
    #[error("{file}: {message}")]
    Other { file: String, message: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    extend: Option<RawExtend>,
    #[serde(default)]
    rules: Vec<RawRule>,
    /// Gitleaks before 8.21: one global `[allowlist]`.
    #[serde(default)]
    allowlist: Option<RawAllowlist>,
    /// Gitleaks 8.21+: `[[allowlists]]`.
    #[serde(default)]
    allowlists: Vec<RawAllowlist>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawExtend {
    #[serde(default)]
    use_default: bool,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    disabled_rules: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRule {
    id: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    secret_group: Option<usize>,
    #[serde(default)]
    entropy: Option<f64>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    allowlist: Option<RawAllowlist>,
    #[serde(default)]
    allowlists: Vec<RawAllowlist>,
    /// custos' extension: `"line"` runs the regex only on lines holding a keyword.
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAllowlist {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    condition: Option<String>,
    #[serde(default)]
    regex_target: Option<String>,
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    commits: Vec<String>,
    #[serde(default)]
    stopwords: Vec<String>,
}

/// What an allowlist regex is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegexTarget {
    Secret,
    Match,
    Line,
}

/// A compiled allowlist: with `all`, every kind of criterion it names must hold (Gitleaks'
/// `condition = "AND"`); otherwise any one suffices.
#[derive(Clone, Debug)]
pub struct Allowlist {
    pub description: Option<String>,
    pub all: bool,
    pub target: RegexTarget,
    pub regexes: Vec<Regex>,
    pub paths: Vec<Regex>,
    pub commits: Vec<String>,
    /// Lowercased.
    pub stopwords: Vec<String>,
}

/// One compiled detection rule.
#[derive(Clone, Debug)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub regex: Option<Regex>,
    pub secret_group: usize,
    pub entropy: Option<f64>,
    /// Lowercased; the rule is tried only on text containing one of them (when any).
    pub keywords: Vec<String>,
    pub path: Option<Regex>,
    pub tags: Vec<String>,
    pub allowlists: Vec<Allowlist>,
    /// The regex runs only on the lines where a keyword occurs (`scope = "line"`): broad
    /// rules with common keywords (`password`) would otherwise read whole files.
    pub line_scoped: bool,
}

/// A complete, compiled rule set.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub title: Option<String>,
    pub rules: Vec<Rule>,
    pub allowlists: Vec<Allowlist>,
}

fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> RuleError {
    let line = e.span().map_or(0, |s| {
        text[..s.start.min(text.len())].matches('\n').count() + 1
    });
    RuleError::Toml {
        file: file.to_owned(),
        line,
        message: e.message().to_owned(),
    }
}

fn compile(file: &str, rule: &str, key: &'static str, pattern: &str) -> Result<Regex, RuleError> {
    regex::bytes::RegexBuilder::new(pattern)
        // Gitleaks' rules are Go RE2 patterns, where \w, \d, \s and \b are ASCII-only;
        // ASCII classes also compile to automata a fraction of the Unicode ones' size.
        .unicode(false)
        // Generous limits: some published rules are large alternations.
        .size_limit(64 << 20)
        .dfa_size_limit(64 << 20)
        .build()
        .map_err(|e| RuleError::Rule {
            file: file.to_owned(),
            rule: rule.to_owned(),
            key,
            message: e.to_string(),
        })
}

fn allowlist(file: &str, rule: &str, raw: RawAllowlist) -> Result<Allowlist, RuleError> {
    let all = match raw
        .condition
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("OR") => false,
        Some("AND") => true,
        Some(other) => {
            return Err(RuleError::Rule {
                file: file.to_owned(),
                rule: rule.to_owned(),
                key: "allowlist.condition",
                message: format!("{other:?} is neither \"OR\" nor \"AND\""),
            })
        }
    };
    let target = match raw.regex_target.as_deref() {
        None | Some("secret") => RegexTarget::Secret,
        Some("match") => RegexTarget::Match,
        Some("line") => RegexTarget::Line,
        Some(other) => {
            return Err(RuleError::Rule {
                file: file.to_owned(),
                rule: rule.to_owned(),
                key: "allowlist.regexTarget",
                message: format!("{other:?} is not one of \"secret\", \"match\", \"line\""),
            })
        }
    };
    Ok(Allowlist {
        description: raw.description,
        all,
        target,
        regexes: raw
            .regexes
            .iter()
            .map(|r| compile(file, rule, "allowlist.regexes", r))
            .collect::<Result<_, _>>()?,
        paths: raw
            .paths
            .iter()
            .map(|r| compile(file, rule, "allowlist.paths", r))
            .collect::<Result<_, _>>()?,
        commits: raw.commits,
        stopwords: raw.stopwords.iter().map(|s| s.to_lowercase()).collect(),
    })
}

impl RuleSet {
    /// custos' default rules.
    pub fn default_rules() -> Result<Self, RuleError> {
        Self::parse("<default rules>", DEFAULT_RULES, None)
    }

    /// Reads a Gitleaks-format TOML file (following `[extend]`).
    pub fn from_file(path: &Path) -> Result<Self, RuleError> {
        let text = std::fs::read_to_string(path).map_err(|source| RuleError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text, path.parent())
    }

    /// Parses Gitleaks-format TOML. `base` resolves a relative `[extend] path`.
    pub fn parse(file: &str, text: &str, base: Option<&Path>) -> Result<Self, RuleError> {
        Self::parse_depth(file, text, base, 0)
    }

    fn parse_depth(
        file: &str,
        text: &str,
        base: Option<&Path>,
        depth: usize,
    ) -> Result<Self, RuleError> {
        if depth > 2 {
            return Err(RuleError::Other {
                file: file.to_owned(),
                message: "[extend] nests more than two levels deep".into(),
            });
        }
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        let mut set = match &raw.extend {
            Some(x) if x.use_default => {
                Self::parse_depth("<default rules>", DEFAULT_RULES, None, depth + 1)?
            }
            Some(RawExtend { path: Some(p), .. }) => {
                let path = base.map_or_else(|| PathBuf::from(p), |b| b.join(p));
                let text = std::fs::read_to_string(&path).map_err(|source| RuleError::Io {
                    path: path.clone(),
                    source,
                })?;
                Self::parse_depth(&path.display().to_string(), &text, path.parent(), depth + 1)?
            }
            _ => Self::default(),
        };
        if let Some(x) = &raw.extend {
            set.rules.retain(|r| !x.disabled_rules.contains(&r.id));
        }
        set.title = raw.title.or(set.title);
        for g in raw.allowlist.into_iter().chain(raw.allowlists) {
            set.allowlists.push(allowlist(file, "<global>", g)?);
        }
        for r in raw.rules {
            if r.id.trim().is_empty() {
                return Err(RuleError::Other {
                    file: file.to_owned(),
                    message: "a rule has an empty id".into(),
                });
            }
            if r.regex.is_none() && r.path.is_none() {
                return Err(RuleError::Rule {
                    file: file.to_owned(),
                    rule: r.id,
                    key: "regex",
                    message: "a rule needs a regex, a path, or both".into(),
                });
            }
            let regex = r
                .regex
                .as_deref()
                .map(|p| compile(file, &r.id, "regex", p))
                .transpose()?;
            let groups = regex.as_ref().map_or(0, |x| x.captures_len() - 1);
            let secret_group = r.secret_group.unwrap_or(0);
            if secret_group > groups {
                return Err(RuleError::Rule {
                    file: file.to_owned(),
                    rule: r.id,
                    key: "secretGroup",
                    message: format!(
                        "group {secret_group} does not exist; the regex has {groups} groups"
                    ),
                });
            }
            let line_scoped = match r.scope.as_deref() {
                None | Some("file") => false,
                Some("line") if !r.keywords.is_empty() => true,
                Some("line") => {
                    return Err(RuleError::Rule {
                        file: file.to_owned(),
                        rule: r.id,
                        key: "scope",
                        message: "scope = \"line\" needs keywords: the lines scanned are those \
                                  holding one"
                            .into(),
                    })
                }
                Some(other) => {
                    return Err(RuleError::Rule {
                        file: file.to_owned(),
                        rule: r.id,
                        key: "scope",
                        message: format!("`{other}` is not a scope; use \"file\" or \"line\""),
                    })
                }
            };
            let mut allowlists = Vec::new();
            for a in r.allowlist.into_iter().chain(r.allowlists) {
                allowlists.push(allowlist(file, &r.id, a)?);
            }
            let rule = Rule {
                description: r.description.unwrap_or_else(|| r.id.clone()),
                path: r
                    .path
                    .as_deref()
                    .map(|p| compile(file, &r.id, "path", p))
                    .transpose()?,
                regex,
                secret_group,
                entropy: r.entropy.filter(|e| *e > 0.0),
                keywords: r.keywords.iter().map(|k| k.to_lowercase()).collect(),
                tags: r.tags,
                allowlists,
                line_scoped,
                id: r.id,
            };
            // A rule with the id of an extended one replaces it.
            match set.rules.iter_mut().find(|x| x.id == rule.id) {
                Some(slot) => *slot = rule,
                None => set.rules.push(rule),
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rules_compile() {
        let set = RuleSet::default_rules().unwrap();
        assert!(set.rules.len() >= 150, "{}", set.rules.len());
        let mut ids: Vec<&str> = set.rules.iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate rule ids");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = RuleSet::parse("g.toml", "title = 'x'\n[[rules]]\nid = 3\n", None).unwrap_err();
        assert!(e.to_string().starts_with("g.toml:3:"), "{e}");
        let e = RuleSet::parse("g.toml", "[[rules]]\nid = 'a'\nregex = '(unclosed'\n", None)
            .unwrap_err();
        assert!(e.to_string().contains("rule \"a\": regex"), "{e}");
        let e = RuleSet::parse(
            "g.toml",
            "[[rules]]\nid = 'a'\nregex = 'x(y)'\nsecretGroup = 2\n",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("secretGroup"), "{e}");
        let e = RuleSet::parse("g.toml", "[[rules]]\nid = 'a'\n", None).unwrap_err();
        assert!(e.to_string().contains("needs a regex"), "{e}");
    }

    #[test]
    fn extend_default_disables_and_overrides() {
        let set = RuleSet::parse(
            "g.toml",
            "[extend]\nuseDefault = true\ndisabledRules = ['github-pat']\n\
             [[rules]]\nid = 'internal-token'\nregex = 'itk_[a-z0-9]{20}'\nkeywords = ['ITK_']\n\
             [[allowlists]]\npaths = ['''^vendor/''']\n",
            None,
        )
        .unwrap();
        assert!(set.rules.iter().all(|r| r.id != "github-pat"));
        assert!(set.rules.iter().any(|r| r.id == "internal-token"));
        assert!(set.rules.iter().any(|r| r.id == "aws-access-key-id"));
        assert_eq!(
            set.allowlists.len(),
            1 + RuleSet::default_rules().unwrap().allowlists.len()
        );
    }
}

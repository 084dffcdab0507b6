//! The model registry's vocabulary: names, the life cycle (registered → signed → approved →
//! promoted → retired) and what a registration records. Pure: the control plane stores it.

use serde::{Deserialize, Serialize};

/// Where a model version is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Registered,
    Signed,
    Approved,
    Promoted,
    Retired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Registered => "registered",
            State::Signed => "signed",
            State::Approved => "approved",
            State::Promoted => "promoted",
            State::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "registered" => State::Registered,
            "signed" => State::Signed,
            "approved" => State::Approved,
            "promoted" => State::Promoted,
            "retired" => State::Retired,
            _ => return None,
        })
    }

    /// Why `self` cannot become `next` for a model of `kind`, or `None` when it can.
    /// Weights are signed before approval; a remote (API) model has no weights to sign and is
    /// approved from registered. Retired is final.
    pub fn refuses(self, next: State, kind: Kind) -> Option<String> {
        use State::*;
        let ok = match (self, next) {
            (Retired, _) => return Some("it is retired; register a new version".into()),
            (_, Retired) => true,
            (Registered | Signed, Signed) => kind == Kind::Weights,
            (Signed, Approved) => true,
            (Registered, Approved) => kind == Kind::Remote,
            (Approved, Promoted) => true,
            _ => false,
        };
        if ok {
            return None;
        }
        Some(match (self, next, kind) {
            (_, Signed, Kind::Remote) => "a remote model has no weights to sign".into(),
            (Registered, Approved, Kind::Weights) => {
                "it is not signed: sign it first (custos models sign --registry)".into()
            }
            (_, Promoted, _) => format!(
                "it is {}; only an approved model is promoted",
                self.as_str()
            ),
            _ => format!("a {} model cannot become {}", self.as_str(), next.as_str()),
        })
    }
}

/// Weights custos hashed, or a model served by a provider's API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Weights,
    Remote,
}

/// A file of a registered model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub parameters: Option<u64>,
    /// Why the header could not be read (a weights file by its name that is not one).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub header_error: Option<String>,
}

/// Something named by digest: a dataset (by tag), an evaluation report or an SBOM (by path).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// A dataset's tag, or the file's path as given.
    pub name: String,
    pub sha256: String,
}

/// What a registration records of a model version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub files: Vec<File>,
    /// model-signing's serialization parameters the digest was computed with.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub serialization: Option<serde_json::Value>,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub parameters: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub license: Option<String>,
    #[serde(default)]
    pub datasets: Vec<Reference>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub evaluation: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sbom: Option<Reference>,
    /// The OCI image that packages the model for serving (`sha256:HEX`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub container_digest: Option<String>,
    /// A remote model's provider, its id there and the version's date.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version_date: Option<String>,
}

/// Checks a model or version name: 1–128 of letters, digits, '.', '_', '-', '+'; not
/// starting with '.'.
pub fn check_name(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {s:?} must be 1–128 letters, digits, '.', '_', '-' or '+', not starting with '.'"
        ))
    }
}

/// Splits `NAME@VERSION`.
pub fn parse_ref(s: &str) -> Result<(&str, &str), String> {
    let (name, version) = s
        .rsplit_once('@')
        .ok_or_else(|| format!("{s:?} is not NAME@VERSION"))?;
    check_name("model name", name)?;
    check_name("version", version)?;
    Ok((name, version))
}

/// Whether a trust rule's name pattern (`*` matches any run of characters) covers `name`.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.len() >= head.len()
                && name.starts_with(head)
                && (0..=name.len() - head.len())
                    .filter(|i| name.is_char_boundary(head.len() + i))
                    .any(|i| name_matches(tail, &name[head.len() + i..]))
        }
    }
}

/// Fills the per-file facts (format, parameter count) of a hashed manifest.
pub fn describe(
    root: &std::path::Path,
    manifest: &super::manifest::Manifest,
) -> Result<Registration, String> {
    let single = manifest.resources.len() == 1 && manifest.resources[0].name == ".";
    let mut files = Vec::new();
    let mut params: Option<u64> = None;
    let mut formats: Vec<(String, u64)> = Vec::new();
    for r in &manifest.resources {
        let path = if single {
            root.to_owned()
        } else {
            root.join(&r.name)
        };
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let (format, parameters, header_error) = match custos_scan::sbom::ml::weights_format(&path)
        {
            Some((f, Ok(p))) => (Some(f.to_owned()), p, None),
            Some((f, Err(e))) => (Some(f.to_owned()), None, Some(e)),
            None => (None, None, None),
        };
        if let Some(p) = parameters {
            params = Some(params.unwrap_or(0).saturating_add(p));
        }
        if let Some(f) = &format {
            match formats.iter_mut().find(|(n, _)| n == f) {
                Some((_, b)) => *b += bytes,
                None => formats.push((f.clone(), bytes)),
            }
        }
        files.push(File {
            name: r.name.clone(),
            sha256: r.digest.clone(),
            bytes,
            format,
            parameters,
            header_error,
        });
    }
    formats.sort_by_key(|f| std::cmp::Reverse(f.1));
    Ok(Registration {
        bytes: files.iter().map(|f| f.bytes).sum(),
        files,
        serialization: Some(manifest.serialization.to_json()),
        format: formats.first().map(|(f, _)| f.clone()),
        parameters: params,
        ..Registration::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_life_cycle_allows_only_forward_steps() {
        use State::*;
        assert!(Registered.refuses(Signed, Kind::Weights).is_none());
        assert!(Registered
            .refuses(Approved, Kind::Weights)
            .unwrap()
            .contains("not signed"));
        assert!(Registered.refuses(Approved, Kind::Remote).is_none());
        assert!(Signed.refuses(Promoted, Kind::Weights).is_some());
        assert!(Approved.refuses(Promoted, Kind::Weights).is_none());
        assert!(Promoted.refuses(Retired, Kind::Weights).is_none());
        assert!(Retired
            .refuses(Approved, Kind::Weights)
            .unwrap()
            .contains("retired"));
        assert!(Registered.refuses(Signed, Kind::Remote).is_some());
    }

    #[test]
    fn refs_and_patterns() {
        assert_eq!(parse_ref("llama@3.1").unwrap(), ("llama", "3.1"));
        assert!(parse_ref("llama").is_err());
        assert!(parse_ref("../x@1").is_err());
        assert!(name_matches("llama-*", "llama-3"));
        assert!(name_matches("*", "anything"));
        assert!(name_matches("a*c*e", "abcde"));
        assert!(!name_matches("llama-*", "mistral"));
        assert!(!name_matches("bert", "bert2"));
    }
}

//! What can go wrong hashing, signing and verifying a model, worded for the person at the
//! terminal: which file, which key, what to do.

use std::fmt;
use std::path::PathBuf;

/// One way a model on disk differs from the manifest it was signed or registered with.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// The file (or shard) is there with other content.
    Changed {
        name: String,
        expected: String,
        actual: String,
    },
    /// Signed, but not on disk.
    Missing { name: String },
    /// On disk, but not signed.
    Extra { name: String },
}

impl Difference {
    pub fn name(&self) -> &str {
        match self {
            Difference::Changed { name, .. }
            | Difference::Missing { name }
            | Difference::Extra { name } => name,
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Changed {
                name,
                expected,
                actual,
            } => write!(
                f,
                "{name}: content differs (signed sha256 {expected}, found {actual})"
            ),
            Difference::Missing { name } => write!(f, "{name}: signed but missing"),
            Difference::Extra { name } => write!(f, "{name}: present but not signed"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is a symbolic link; pass --allow-symlinks to follow links", .0.display())]
    Symlink(PathBuf),
    #[error("{} is neither a file nor a directory (a socket, a pipe or a device)", .0.display())]
    Special(PathBuf),
    #[error("{} has a name that is not UTF-8; manifests name files in UTF-8", .0.display())]
    NotUtf8(PathBuf),
    #[error("{0}")]
    Invalid(String),
    #[error("key: {0}")]
    Key(String),
    #[error("signature: {0}")]
    Signature(String),
    #[error("the model differs from its manifest: {}", first(.0))]
    Mismatch(Vec<Difference>),
}

fn first(d: &[Difference]) -> String {
    match d {
        [] => "no difference".into(),
        [one] => one.to_string(),
        [one, rest @ ..] => format!("{one} (and {} more)", rest.len()),
    }
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}

//! `custos models`: the model registry and signing. Offline commands (keygen, sign, verify)
//! need no database and interoperate with OpenSSF's `model_signing`; registry commands go
//! through the control plane, each change with its ledger event.

use crate::control::ChangeArgs;
use crate::{output, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use custos_govern::models::bundle::{self, Bundle, MAX_BUNDLE};
use custos_govern::models::card::{self, Card};
use custos_govern::models::dsse::Envelope;
use custos_govern::models::keys::{Curve, PublicKey, SigningKey};
use custos_govern::models::manifest::{self, Manifest, Method, Options};
use custos_govern::models::provenance::{Material, Provenance, TrainingRun, DEFAULT_BUILD_TYPE};
use custos_govern::models::registry::{self, Kind, Reference, Registration};
use custos_govern::models::trust::{self, TrustedKey};
use custos_govern::models::{Difference, ModelError};
use custos_store::ModelVersion;
use serde_json::{json, Value};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The environment variable that may hold a PEM signing key instead of a file.
const KEY_ENV: &str = "CUSTOS_SIGNING_KEY";
const MAX_KEY: u64 = 64 << 10;
const MAX_REPORT: u64 = 64 << 20;

#[derive(Subcommand, Debug)]
pub enum ModelsCmd {
    /// Make a signing key pair (ECDSA P-256 or P-384): FILE (private, mode 0600) and FILE.pub.
    #[command(
        after_help = "Example:\n  custos models keygen --out signing.pem\n  custos models sign ./my-model --key signing.pem"
    )]
    Keygen {
        /// Where to write the private key; the public key goes to the same path + `.pub`.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Elliptic curve of the key pair.
        #[arg(long, default_value = "p256", value_name = "p256|p384")]
        curve: String,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Sign a model (a folder or one file) into an OpenSSF model-signing bundle.
    #[command(
        after_help = "The bundle is a Sigstore bundle v0.3 holding a DSSE-signed in-toto statement that \
lists every file's SHA-256: `model_signing verify key` accepts it.\n\nExamples:\n  \
custos models sign ./llama-3-8b --key signing.pem --signature llama.sig\n  \
CUSTOS_SIGNING_KEY=\"$(cat signing.pem)\" custos models sign ./llama-3-8b\n  \
custos models sign ./llama-3-8b --key signing.pem --registry llama-3-8b@2026-12 --why \"release candidate\""
    )]
    Sign {
        /// The model folder (or single file).
        path: PathBuf,
        /// The PEM private key (else $CUSTOS_SIGNING_KEY holds the PEM).
        #[arg(
            long,
            alias = "private-key",
            alias = "private_key",
            value_name = "FILE"
        )]
        key: Option<PathBuf>,
        /// Where to write the bundle.
        #[arg(long, default_value = "model.sig", value_name = "FILE")]
        signature: PathBuf,
        #[command(flatten)]
        hashing: HashingArgs,
        /// Cut files into shards of this many bytes (hashed in parallel even within one
        /// file); `model_signing`'s library reads such bundles, its CLI does not.
        #[arg(long, value_name = "BYTES")]
        shard_size: Option<u64>,
        /// Also attach the bundle to this registry entry (NAME@VERSION): it becomes `signed`.
        #[arg(long, value_name = "NAME@VERSION")]
        registry: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Verify a model against a signature bundle, or a registry entry against the trust policy.
    #[command(
        after_help = "Exit status: 0 verified (the manifest is printed), 1 the signature or a file \
does not match (each difference is named), 2 the check could not run.\n\nExamples:\n  \
custos models verify ./llama-3-8b --signature llama.sig --public-key signing.pem.pub\n  \
custos models verify --registry llama-3-8b@2026-12 /srv/models/llama-3-8b\n  \
custos models verify --registry llama-3-8b@2026-12 --attestation run.intoto.json --public-key ci.pub"
    )]
    Verify {
        /// The model folder (or file) to check; with --registry, the weights a runtime serves.
        path: Option<PathBuf>,
        /// The bundle to verify against.
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
        /// The signer's PEM public key (with --registry: instead of the [[registry.trust]] keys).
        #[arg(long, alias = "public_key", value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Check a registry entry: its state, its stored signature against the trust policy,
        /// and PATH's files against it.
        #[arg(long, value_name = "NAME@VERSION")]
        registry: Option<String>,
        /// With --registry: a signed SLSA provenance envelope to hold against the entry.
        #[arg(long, value_name = "FILE", requires = "registry")]
        attestation: Option<PathBuf>,
        #[command(flatten)]
        hashing: HashingArgs,
        /// Check only the files the signature lists; others present are not an error.
        #[arg(long, alias = "ignore_unsigned_files")]
        ignore_unsigned_files: bool,
    },
    /// Register a model version: hash its files into a manifest, with its sources.
    #[command(after_help = "Examples:\n  \
custos models register llama-3-8b 2026-12 ./llama-3-8b --license llama3 --source hf:meta-llama/Meta-Llama-3-8B \\\n      \
--dataset reviews-v3=./data/reviews --eval eval/report.json --sbom sbom.cdx.json --why \"fine-tune for support\"\n  \
custos models register gpt-4o 2024-08-06 --provider openai --model-id gpt-4o-2024-08-06 --version-date 2024-08-06")]
    Register {
        /// Model name, as routes and releases name it.
        name: String,
        /// This version's label (a date, a semver, a training run id).
        version: String,
        /// The weights (a folder of weights, config and tokenizer, or one file); omit for a
        /// remote (API) model.
        path: Option<PathBuf>,
        /// Where the weights came from (a URL, `hf:org/name`, a bucket path).
        #[arg(long)]
        source: Option<String>,
        /// The license (an SPDX id, or a name).
        #[arg(long)]
        license: Option<String>,
        /// A training dataset: TAG=PATH (hashed here) or TAG@sha256:HEX. Repeatable.
        #[arg(long, value_name = "TAG=PATH")]
        dataset: Vec<String>,
        /// The evaluation report (its SHA-256 is recorded).
        #[arg(long, value_name = "FILE")]
        eval: Option<PathBuf>,
        /// The SBOM that describes the model (its SHA-256 is recorded).
        #[arg(long, value_name = "FILE")]
        sbom: Option<PathBuf>,
        /// The OCI image that packages the model for serving: IMAGE@sha256:HEX or sha256:HEX.
        #[arg(long, value_name = "DIGEST")]
        container: Option<String>,
        /// A remote model's provider (as in [[providers]]).
        #[arg(long)]
        provider: Option<String>,
        /// A remote model's id at its provider.
        #[arg(long)]
        model_id: Option<String>,
        /// A remote model's version date (YYYY-MM-DD).
        #[arg(long)]
        version_date: Option<String>,
        #[command(flatten)]
        hashing: HashingArgs,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Attach a bundle signed elsewhere (by `model_signing sign key`) to a registry entry.
    #[command(
        after_help = "Example:\n  model_signing sign key ./llama-3-8b --private_key k.pem --signature llama.sig\n  \
custos models attach llama-3-8b@2026-12 --signature llama.sig --public-key k.pub"
    )]
    Attach {
        /// The registered model version the signature is for.
        #[arg(value_name = "NAME@VERSION")]
        model: String,
        /// The signature bundle (model_signing's Sigstore bundle, key-signed).
        #[arg(long, value_name = "FILE")]
        signature: PathBuf,
        /// The signer's public key (PEM).
        #[arg(long, alias = "public_key", value_name = "FILE")]
        public_key: PathBuf,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Approve a signed (or remote) version for serving.
    Approve {
        /// The model version to approve.
        #[arg(value_name = "NAME@VERSION")]
        model: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Promote an approved version.
    Promote {
        /// The model version to promote.
        #[arg(value_name = "NAME@VERSION")]
        model: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Retire a version: routes naming it stop serving. Final.
    Retire {
        /// The model version to retire.
        #[arg(value_name = "NAME@VERSION")]
        model: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Write signed SLSA Provenance v1 for the training run that made a version, and attach it.
    #[command(
        after_help = "The registered datasets are materials by default (as dataset:TAG).\n\nExample:\n  \
custos models attest llama-3-8b@2026-12 --key ci.pem --builder https://ci.example.com/runners/gpu-7 \\\n      \
--material code=./train.py --param epochs=3 --param lr=2e-5 --invocation-id run-4711 --out run.intoto.json"
    )]
    Attest {
        /// The model version the provenance is about.
        #[arg(value_name = "NAME@VERSION")]
        model: String,
        /// The PEM private key (else $CUSTOS_SIGNING_KEY).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Who ran the training (a URI naming the runner or pipeline).
        #[arg(long)]
        builder: String,
        /// The kind of run (a URI).
        #[arg(long, default_value = DEFAULT_BUILD_TYPE)]
        build_type: String,
        /// A material: NAME=PATH (hashed here) or NAME@sha256:HEX. Repeatable.
        #[arg(long, value_name = "NAME=PATH")]
        material: Vec<String>,
        /// A run parameter KEY=VALUE (numbers and booleans stay typed). Repeatable.
        #[arg(long, value_name = "KEY=VALUE")]
        param: Vec<String>,
        /// The build or training run's id (SLSA invocation id).
        #[arg(long)]
        invocation_id: Option<String>,
        /// RFC 3339 start time of the run.
        #[arg(long)]
        started_on: Option<String>,
        /// RFC 3339 end time of the run.
        #[arg(long)]
        finished_on: Option<String>,
        /// Where to write the DSSE envelope.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Model cards: write one from the registry, lint it, render it, sign and attach it.
    #[command(subcommand)]
    Card(CardCmd),
    /// Datasheets for datasets: write one to fill in (lint with `card lint --datasheet`).
    #[command(subcommand)]
    Datasheet(DatasheetCmd),
    /// List registered versions.
    List {
        /// Only this model's versions.
        name: Option<String>,
    },
    /// Show one version: its registration, state, signer and attestations.
    Show {
        /// The model version to show.
        #[arg(value_name = "NAME@VERSION")]
        model: String,
    },
    /// The transitions of a model (or one version), with who, why and the ledger entry.
    History {
        /// The model, or one version of it.
        #[arg(value_name = "NAME[@VERSION]")]
        model: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum CardCmd {
    /// Write a model card filled with what custos knows (files, digests, datasets, the
    /// evaluation report's metrics, costs from custos' records); the rest says TODO.
    #[command(
        after_help = "Example:\n  custos models card init tiny@1.0 --cost-tag run=ft-2026-12-01 --out MODEL_CARD.md"
    )]
    Init {
        /// The registered model version the card describes.
        #[arg(value_name = "NAME@VERSION")]
        model: String,
        /// Where to write the card (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The evaluation report (default: the registered one, where it was registered from).
        #[arg(long, value_name = "FILE")]
        eval: Option<PathBuf>,
        /// A tag of the training run's usage records (KEY=VALUE, repeatable): fills cost,
        /// GPU-hours and kgCO2e from custos' records.
        #[arg(long, value_name = "KEY=VALUE")]
        cost_tag: Vec<String>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Check a card: every section filled in, numbers present, links resolve; and that its
    /// digests, datasets, metrics and costs agree with the registry, the evaluation report
    /// (by checksum) and custos' cost records. Exit 1 listing each problem with its line.
    #[command(
        after_help = "Examples:\n  custos models card lint MODEL_CARD.md\n  custos models card lint data/DATASHEET.md --datasheet"
    )]
    Lint {
        /// The model card (Markdown with its front matter).
        file: PathBuf,
        /// The registry entry the card describes (default: model_name and custos.version of
        /// the front matter).
        #[arg(long, value_name = "NAME@VERSION")]
        registry: Option<String>,
        /// The evaluation report to compare metrics with (default: custos.evaluation.path).
        #[arg(long, value_name = "FILE")]
        eval: Option<PathBuf>,
        /// The file is a datasheet for a dataset.
        #[arg(long)]
        datasheet: bool,
    },
    /// Render a card as a standalone HTML page.
    Render {
        /// The model card (Markdown with its front matter).
        file: PathBuf,
        /// Write the HTML here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Lint, sign (DSSE) and attach a card snapshot to its registry entry; the gateway then
    /// serves it and promotion records its digest.
    #[command(
        after_help = "Example:\n  custos models card sign MODEL_CARD.md --key release.pem --why \"card for 1.0\""
    )]
    Sign {
        /// The model card (Markdown with its front matter).
        file: PathBuf,
        /// The registered model version the card must describe (its manifest digest is checked).
        #[arg(long, value_name = "NAME@VERSION")]
        registry: Option<String>,
        /// The PEM private key (else $CUSTOS_SIGNING_KEY).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Also write the DSSE envelope here.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// An evaluation report whose figures the card's metrics must match.
        #[arg(long, value_name = "FILE")]
        eval: Option<PathBuf>,
        #[command(flatten)]
        change: ChangeArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum DatasheetCmd {
    /// Write a datasheet for a dataset (TAG=PATH hashes it here; TAG@sha256:HEX names it).
    #[command(
        after_help = "Example:\n  custos models datasheet init reviews-v3=./data/reviews --out data/DATASHEET.md"
    )]
    Init {
        /// The registered dataset version the datasheet describes, and its folder.
        #[arg(value_name = "TAG=PATH")]
        dataset: String,
        /// Write the datasheet here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

/// How files are chosen and hashed (as `model_signing` names these flags).
#[derive(Args, Debug, Clone, Default)]
pub struct HashingArgs {
    /// Paths (relative to the model, or absolute inside it) that are not part of the model.
    #[arg(long = "ignore-paths", alias = "ignore_paths", value_name = "PATH", num_args = 1..)]
    pub ignore_paths: Vec<PathBuf>,
    /// Include .git, .gitattributes, .github and .gitignore (left out by default).
    #[arg(long = "no-ignore-git-paths")]
    pub no_ignore_git_paths: bool,
    /// Follow symbolic links (refused by default).
    #[arg(long, alias = "allow_symlinks")]
    pub allow_symlinks: bool,
    /// Hashing threads (default: one per core).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
}

impl HashingArgs {
    /// The ignore list relative to `model`, plus `also` (the bundle being written, say) when
    /// it lies inside the model.
    fn ignores(&self, model: &Path, also: Option<&Path>) -> Vec<String> {
        let root = model.canonicalize().unwrap_or_else(|_| model.to_owned());
        let cwd = std::env::current_dir().unwrap_or_default();
        let mut out = Vec::new();
        for p in self.ignore_paths.iter().map(PathBuf::as_path).chain(also) {
            let abs = if p.is_absolute() {
                p.to_owned()
            } else {
                cwd.join(p)
            };
            // The file may not exist yet (a signature about to be written).
            let abs = match (
                abs.parent().and_then(|d| d.canonicalize().ok()),
                abs.file_name(),
            ) {
                (Some(dir), Some(name)) => dir.join(name),
                _ => abs,
            };
            if let Ok(rel) = abs.strip_prefix(&root) {
                let rel = rel.to_string_lossy().replace('\\', "/");
                if !rel.is_empty() {
                    out.push(rel);
                }
            } else if p.is_relative() && also != Some(p) {
                // A path relative to the model, as model_signing's API takes them.
                out.push(p.to_string_lossy().into_owned());
            }
        }
        out
    }
}

/// Shows bytes hashed on a terminal while long work runs.
struct Progress {
    bytes: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(show: bool) -> Self {
        let bytes = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let thread = (show && std::io::stderr().is_terminal()).then(|| {
            let (bytes, done) = (bytes.clone(), done.clone());
            std::thread::spawn(move || {
                let start = std::time::Instant::now();
                let mut shown = false;
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(250));
                    let b = bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64;
                    let s = start.elapsed().as_secs_f64().max(0.001);
                    if s > 0.5 {
                        eprint!("\rhashing: {b:.0} MiB ({:.0} MiB/s)   ", b / s);
                        shown = true;
                    }
                }
                if shown {
                    eprint!("\r{:60}\r", "");
                }
            })
        });
        Progress {
            bytes,
            done,
            thread,
        }
    }

    fn counter(&self) -> Option<&AtomicU64> {
        Some(&self.bytes)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_capped(path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if meta.len() > max {
        bail!(
            "{what} {} is {} bytes; more than the {max} custos reads",
            path.display(),
            meta.len()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn signing_key(path: Option<&Path>) -> Result<SigningKey> {
    let text = match path {
        Some(p) => String::from_utf8(read_capped(p, MAX_KEY, "the key")?)
            .map_err(|_| anyhow!("the key {} is not PEM text", p.display()))?,
        None => std::env::var(KEY_ENV).map_err(|_| {
            anyhow!("no signing key: give --key FILE (a PEM private key) or put the PEM in ${KEY_ENV}; custos models keygen makes one")
        })?,
    };
    SigningKey::from_pem(&text).map_err(|e| {
        anyhow!(
            "{}: {e}",
            path.map_or(KEY_ENV.to_string(), |p| p.display().to_string())
        )
    })
}

fn public_key(path: &Path) -> Result<PublicKey> {
    let text = String::from_utf8(read_capped(path, MAX_KEY, "the public key")?)
        .map_err(|_| anyhow!("the public key {} is not PEM text", path.display()))?;
    PublicKey::from_pem(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn sha256_file(path: &Path) -> Result<String> {
    Ok(manifest::file_sha256(path).map_err(|e| anyhow!("{e}"))?.0)
}

/// `TAG=PATH` (a file's SHA-256, or a folder's manifest digest) or `TAG@sha256:HEX`.
fn reference(spec: &str, flag: &str) -> Result<Reference> {
    if let Some((name, hexd)) = spec.split_once("@sha256:") {
        if hex::decode(hexd).map(|d| d.len()) != Ok(32) || name.is_empty() {
            bail!("{flag} {spec:?}: expected NAME@sha256:<64 hex digits>");
        }
        return Ok(Reference {
            name: name.into(),
            sha256: hexd.to_ascii_lowercase(),
        });
    }
    let Some((name, path)) = spec.split_once('=') else {
        bail!("{flag} {spec:?}: expected NAME=PATH or NAME@sha256:HEX");
    };
    let path = Path::new(path);
    let sha256 = if path.is_dir() {
        manifest::hash(path, &Options::default(), None)
            .map_err(|e| anyhow!("{flag} {name}: {e}"))?
            .digest()
    } else {
        sha256_file(path).with_context(|| format!("{flag} {name}"))?
    };
    Ok(Reference {
        name: name.into(),
        sha256,
    })
}

fn file_reference(path: &Path, flag: &str) -> Result<Reference> {
    Ok(Reference {
        name: path.display().to_string(),
        sha256: sha256_file(path).with_context(|| flag.to_string())?,
    })
}

fn hash_options(
    h: &HashingArgs,
    model: &Path,
    also: Option<&Path>,
    shard: Option<u64>,
) -> Result<Options> {
    Ok(Options {
        method: match shard {
            None => Method::Files,
            Some(0) => bail!("--shard-size must be positive"),
            Some(size) => Method::Shards { size },
        },
        allow_symlinks: h.allow_symlinks,
        ignore: h.ignores(model, also),
        ignore_git: !h.no_ignore_git_paths,
        only: None,
        threads: h.threads,
    })
}

fn parse_ref(s: &str) -> Result<(String, String)> {
    let (n, v) = registry::parse_ref(s).map_err(|e| anyhow!(e))?;
    Ok((n.to_owned(), v.to_owned()))
}

/// The `[[registry.trust]]` keys.
pub fn trusted_keys(config: &custos_core::Config) -> Result<Vec<TrustedKey>> {
    config
        .registry
        .trust
        .iter()
        .map(|t| {
            Ok(TrustedKey {
                names: t.names.clone(),
                key: public_key(&t.public_key).context("[[registry.trust]] public_key")?,
                source: t.public_key.display().to_string(),
            })
        })
        .collect()
}

pub fn version_json(m: &ModelVersion) -> Value {
    let attestations: Vec<Value> = serde_json::from_str(&m.attestations).unwrap_or_default();
    json!({
        "name": m.name, "version": m.version, "kind": m.kind, "state": m.state,
        "manifest_digest": m.manifest_digest.as_ref().map(|d| format!("sha256:{d}")),
        "registration": serde_json::from_str::<Value>(&m.registration).unwrap_or(Value::Null),
        "signed": m.signature.is_some(), "signer": m.signer,
        "card_digest": m.card_digest.as_ref().map(|d| format!("sha256:{d}")),
        "attestations": attestations.iter().map(|a| json!({"type": a["type"], "signer": a["signer"]})).collect::<Vec<_>>(),
        "registered_by": m.registered_by,
        "created_at": custos_core::time::format_rfc3339(m.created_at),
        "updated_at": custos_core::time::format_rfc3339(m.updated_at),
    })
}

fn manifest_json(m: &Manifest, signer: Option<&str>) -> Value {
    json!({
        "model": m.model_name,
        "digest": format!("sha256:{}", m.digest()),
        "signer": signer,
        "serialization": m.serialization.to_json(),
        "resources": m.resources,
    })
}

/// What a manifest's items are: files, or shards of files.
fn items(m: &Manifest) -> &'static str {
    match (m.serialization.method, m.resources.len()) {
        (Method::Shards { .. }, 1) => "shard",
        (Method::Shards { .. }, _) => "shards",
        (Method::Files, 1) => "file",
        (Method::Files, _) => "files",
    }
}

fn print_differences(json_out: bool, diffs: &[Difference], error: Option<&str>) {
    if json_out {
        output::json(&json!({"verified": false, "error": error, "differences": diffs}));
    } else {
        if let Some(e) = error {
            eprintln!("verification failed: {e}");
        } else {
            eprintln!("verification failed: the model differs from what was signed");
        }
        for d in diffs {
            eprintln!("  {d}");
        }
    }
}

async fn control(
    ctx: &Ctx,
    change: &ChangeArgs,
) -> Result<(custos_control::Control, custos_control::Actor)> {
    let control = crate::control::open(ctx).await?;
    let actor = crate::control::actor(ctx, control.store(), change).await?;
    Ok((control, actor))
}

fn changed(ctx: &Ctx, r: &custos_control::Recorded<ModelVersion>, what: &str) {
    if ctx.json {
        output::json(&version_json(&r.value));
    } else {
        eprintln!(
            "{what} {}@{} (now {}); ledger entry {}",
            r.value.name,
            r.value.version,
            r.value.state,
            r.ledger.end.saturating_sub(1)
        );
    }
}

pub async fn run(ctx: &Ctx, cmd: ModelsCmd) -> Result<ExitCode> {
    match cmd {
        ModelsCmd::Keygen { out, curve, force } => keygen(ctx, &out, &curve, force),
        ModelsCmd::Sign {
            path,
            key,
            signature,
            hashing,
            shard_size,
            registry,
            change,
        } => {
            let key = signing_key(key.as_deref())?;
            let opts = hash_options(&hashing, &path, Some(&signature), shard_size)?;
            let progress = Progress::start(!ctx.json);
            let m = manifest::hash(&path, &opts, progress.counter()).map_err(|e| anyhow!("{e}"))?;
            drop(progress);
            let b = bundle::sign(&m.statement(), &key).map_err(|e| anyhow!("{e}"))?;
            let text = serde_json::to_string(&b)?;
            std::fs::write(&signature, &text)
                .with_context(|| format!("cannot write {}", signature.display()))?;
            if ctx.json {
                output::json(
                    &json!({"signature": signature, "manifest": manifest_json(&m, Some(&key.public_key().hint()))}),
                );
            } else {
                eprintln!(
                    "signed {} ({} {}, {} bytes, manifest sha256:{}) with {} key {}… into {}",
                    path.display(),
                    m.resources.len(),
                    items(&m),
                    m.bytes,
                    m.digest(),
                    key.curve().name(),
                    &key.public_key().hint()[..16],
                    signature.display()
                );
            }
            if let Some(r) = registry {
                let (name, version) = parse_ref(&r)?;
                let (control, actor) = control(ctx, &change).await?;
                let rec = control
                    .sign_model(
                        &actor,
                        &name,
                        &version,
                        &text,
                        &key.public_key(),
                        &change.reason()?,
                    )
                    .await?;
                if !ctx.json {
                    eprintln!(
                        "attached the signature to {name}@{version}; ledger entry {}",
                        rec.ledger.end.saturating_sub(1)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::Verify {
            path,
            signature,
            public_key: pk,
            registry,
            attestation,
            hashing,
            ignore_unsigned_files,
        } => {
            let r = match registry {
                Some(r) => {
                    verify_registry(
                        ctx,
                        &r,
                        path.as_deref(),
                        pk.as_deref(),
                        attestation.as_deref(),
                        &hashing,
                        ignore_unsigned_files,
                    )
                    .await
                }
                None => verify_offline(
                    ctx,
                    path.as_deref(),
                    signature.as_deref(),
                    pk.as_deref(),
                    &hashing,
                    ignore_unsigned_files,
                ),
            };
            r.or_else(|e| {
                eprintln!("error: {e:#}");
                Ok(ExitCode::from(2))
            })
        }
        ModelsCmd::Register {
            name,
            version,
            path,
            source,
            license,
            dataset,
            eval,
            sbom,
            container,
            provider,
            model_id,
            version_date,
            hashing,
            change,
        } => {
            let container_digest = container
                .map(|c| {
                    let d = c.rsplit('@').next().unwrap_or(&c).to_ascii_lowercase();
                    match d.strip_prefix("sha256:").map(hex::decode) {
                        Some(Ok(b)) if b.len() == 32 => Ok(d),
                        _ => Err(anyhow!(
                            "--container {c:?}: expected IMAGE@sha256:<64 hex digits>"
                        )),
                    }
                })
                .transpose()?;
            let mut datasets = Vec::new();
            for d in &dataset {
                datasets.push(reference(d, "--dataset")?);
            }
            let (kind, digest, mut reg) = match &path {
                Some(p) => {
                    if provider.is_some() || model_id.is_some() {
                        bail!("give either PATH (weights) or --provider/--model-id (a remote model), not both");
                    }
                    let opts = hash_options(&hashing, p, None, None)?;
                    let progress = Progress::start(!ctx.json);
                    let m =
                        manifest::hash(p, &opts, progress.counter()).map_err(|e| anyhow!("{e}"))?;
                    drop(progress);
                    if m.resources.is_empty() {
                        bail!("{} holds no files to register", p.display());
                    }
                    let reg = registry::describe(p, &m).map_err(|e| anyhow!(e))?;
                    for f in &reg.files {
                        if let Some(e) = &f.header_error {
                            eprintln!("warning: {}: the {} header cannot be read ({e}); registered by digest only", f.name, f.format.as_deref().unwrap_or("weights"));
                        }
                    }
                    (Kind::Weights, Some(m.digest()), reg)
                }
                None => {
                    if provider.is_none() || model_id.is_none() {
                        bail!("give PATH (the weights) or, for a remote model, --provider and --model-id");
                    }
                    (Kind::Remote, None, Registration::default())
                }
            };
            reg.source = source;
            reg.license = license;
            reg.datasets = datasets;
            reg.evaluation = eval
                .as_deref()
                .map(|p| file_reference(p, "--eval"))
                .transpose()?;
            reg.sbom = sbom
                .as_deref()
                .map(|p| file_reference(p, "--sbom"))
                .transpose()?;
            reg.container_digest = container_digest;
            reg.provider = provider;
            reg.model_id = model_id;
            reg.version_date = version_date;
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .register_model(
                    &actor,
                    custos_control::NewModel {
                        name,
                        version,
                        kind,
                        manifest_digest: digest,
                        registration: reg.clone(),
                    },
                    &change.reason()?,
                )
                .await?;
            if ctx.json {
                output::json(&version_json(&r.value));
            } else {
                let m = &r.value;
                match kind {
                    Kind::Weights => eprintln!(
                        "registered {}@{}: {} files, {} bytes{}{}, manifest sha256:{}; ledger entry {}",
                        m.name,
                        m.version,
                        reg.files.len(),
                        reg.bytes,
                        reg.format.as_deref().map(|f| format!(", {f}")).unwrap_or_default(),
                        reg.parameters.map(|p| format!(", {p} parameters")).unwrap_or_default(),
                        m.manifest_digest.as_deref().unwrap_or(""),
                        r.ledger.end.saturating_sub(1)
                    ),
                    Kind::Remote => eprintln!(
                        "registered the remote model {}@{} ({} {}); ledger entry {}",
                        m.name,
                        m.version,
                        reg.provider.as_deref().unwrap_or(""),
                        reg.model_id.as_deref().unwrap_or(""),
                        r.ledger.end.saturating_sub(1)
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::Attach {
            model,
            signature,
            public_key: pk,
            change,
        } => {
            let (name, version) = parse_ref(&model)?;
            let text = String::from_utf8(read_capped(&signature, MAX_BUNDLE, "the signature")?)
                .map_err(|_| anyhow!("{} is not a JSON bundle", signature.display()))?;
            let key = public_key(&pk)?;
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .sign_model(&actor, &name, &version, &text, &key, &change.reason()?)
                .await?;
            changed(ctx, &r, "attached the signature to");
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::Approve { model, change } => {
            let (name, version) = parse_ref(&model)?;
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .approve_model(&actor, &name, &version, &change.reason()?)
                .await?;
            changed(ctx, &r, "approved");
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::Promote { model, change } => {
            let (name, version) = parse_ref(&model)?;
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .promote_model(&actor, &name, &version, &change.reason()?)
                .await?;
            changed(ctx, &r, "promoted");
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::Retire { model, change } => {
            let (name, version) = parse_ref(&model)?;
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .retire_model(&actor, &name, &version, &change.reason()?)
                .await?;
            changed(ctx, &r, "retired");
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::Attest {
            model,
            key,
            builder,
            build_type,
            material,
            param,
            invocation_id,
            started_on,
            finished_on,
            out,
            change,
        } => {
            let (name, version) = parse_ref(&model)?;
            let key = signing_key(key.as_deref())?;
            for (flag, t) in [
                ("--started-on", &started_on),
                ("--finished-on", &finished_on),
            ] {
                if let Some(t) = t {
                    custos_core::time::parse_rfc3339(t).ok_or_else(|| {
                        anyhow!("{flag} {t:?} is not an RFC 3339 time (2026-12-01T09:00:00Z)")
                    })?;
                }
            }
            let (control, actor) = control(ctx, &change).await?;
            let entry = control.store().model_version(&name, &version).await?;
            let Some(digest) = entry.manifest_digest.clone() else {
                bail!(
                    "{name}@{version} is a remote model: it has no weights for provenance to name"
                );
            };
            let reg: Registration = serde_json::from_str(&entry.registration)?;
            let mut materials: Vec<Material> = reg
                .datasets
                .iter()
                .map(|d| Material {
                    name: format!("dataset:{}", d.name),
                    sha256: d.sha256.clone(),
                })
                .collect();
            for m in &material {
                let r = reference(m, "--material")?;
                materials.push(Material {
                    name: r.name,
                    sha256: r.sha256,
                });
            }
            let mut parameters = serde_json::Map::new();
            for p in &param {
                let Some((k, v)) = p.split_once('=') else {
                    bail!("--param {p:?}: expected KEY=VALUE")
                };
                let value = serde_json::from_str::<Value>(v)
                    .ok()
                    .filter(|v| v.is_number() || v.is_boolean())
                    .unwrap_or_else(|| json!(v));
                parameters.insert(k.to_owned(), value);
            }
            let p = Provenance {
                subject_name: format!("{name}@{version}"),
                subject_sha256: digest,
                run: TrainingRun {
                    builder_id: builder,
                    build_type,
                    materials,
                    parameters,
                    invocation_id,
                    started_on,
                    finished_on,
                },
            };
            let env = p.sign(&key).map_err(|e| anyhow!("{e}"))?;
            let text = serde_json::to_string_pretty(&env)?;
            if let Some(out) = &out {
                std::fs::write(out, &text)
                    .with_context(|| format!("cannot write {}", out.display()))?;
            }
            let r = control
                .attest_model(
                    &actor,
                    &name,
                    &version,
                    &env,
                    &key.public_key(),
                    &change.reason()?,
                )
                .await?;
            if ctx.json {
                output::json(&json!({"model": version_json(&r.value), "attestation": env}));
            } else {
                if out.is_none() {
                    println!("{text}");
                }
                eprintln!(
                    "attached SLSA provenance to {name}@{version}; ledger entry {}",
                    r.ledger.end.saturating_sub(1)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::Card(cmd) => card(ctx, cmd).await,
        ModelsCmd::Datasheet(DatasheetCmd::Init {
            dataset,
            out,
            force,
        }) => {
            let r = reference(&dataset, "dataset")?;
            let text = card::datasheet_template(&r.name, &r.sha256);
            write_text(out.as_deref(), &text, force)?;
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::List { name } => {
            let store = crate::identity::open(ctx).await?;
            let all = store.model_versions(name.as_deref()).await?;
            if ctx.json {
                output::json(&Value::Array(all.iter().map(version_json).collect()));
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|m| {
                        vec![
                            m.name.clone(),
                            m.version.clone(),
                            m.kind.clone(),
                            m.state.clone(),
                            m.manifest_digest.as_deref().map_or("-".into(), |d| {
                                format!("sha256:{}", &d[..12.min(d.len())])
                            }),
                            m.signer
                                .as_deref()
                                .map_or("-".into(), |s| s[..12.min(s.len())].to_string()),
                            output::time(Some(m.created_at)),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "NAME",
                        "VERSION",
                        "KIND",
                        "STATE",
                        "MANIFEST",
                        "SIGNER",
                        "REGISTERED",
                    ],
                    &rows,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::Show { model } => {
            let (name, version) = parse_ref(&model)?;
            let store = crate::identity::open(ctx).await?;
            let m = store.model_version(&name, &version).await?;
            output::json(&version_json(&m));
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::History { model } => {
            let (name, version) = match model.rsplit_once('@') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (model.clone(), None),
            };
            let store = crate::identity::open(ctx).await?;
            let h = store.model_history(&name, version.as_deref()).await?;
            if h.is_empty() {
                bail!("no history for {model}: custos models list shows what is registered");
            }
            if ctx.json {
                let rows: Vec<Value> = h
                    .iter()
                    .map(|e| {
                        json!({"version": e.version, "at": custos_core::time::format_rfc3339(e.at),
                               "activity": e.activity, "from": e.from_state, "to": e.to_state,
                               "actor": e.actor, "why": e.why, "ticket": e.ticket,
                               "ledger_index": e.ledger_index})
                    })
                    .collect();
                output::json(&Value::Array(rows));
            } else {
                let rows: Vec<Vec<String>> = h
                    .iter()
                    .map(|e| {
                        vec![
                            output::time(Some(e.at)),
                            e.version.clone(),
                            e.activity.clone(),
                            format!(
                                "{} → {}",
                                e.from_state.as_deref().unwrap_or("-"),
                                e.to_state
                            ),
                            e.actor.clone(),
                            output::opt(e.why.as_deref()),
                            output::opt(e.ticket.as_deref()),
                            e.ledger_index.to_string(),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "TIME", "VERSION", "ACTIVITY", "STATE", "ACTOR", "WHY", "TICKET", "LEDGER",
                    ],
                    &rows,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn keygen(ctx: &Ctx, out: &Path, curve: &str, force: bool) -> Result<ExitCode> {
    let curve = Curve::parse(curve).map_err(|e| anyhow!("--curve: {e}"))?;
    let public = PathBuf::from(format!("{}.pub", out.display()));
    for p in [out, public.as_path()] {
        if p.exists() && !force {
            bail!("{} exists; pass --force to replace it", p.display());
        }
    }
    let (key, pem) = SigningKey::generate(curve).map_err(|e| anyhow!("{e}"))?;
    write_private(out, pem.as_bytes())?;
    std::fs::write(&public, key.public_key().to_pem())
        .with_context(|| format!("cannot write {}", public.display()))?;
    if ctx.json {
        output::json(
            &json!({"private_key": out, "public_key": public, "curve": curve.name(), "hint": key.public_key().hint()}),
        );
    } else {
        eprintln!(
            "wrote the {} private key {} (mode 0600) and the public key {} (hint {}…)",
            curve.name(),
            out.display(),
            public.display(),
            &key.public_key().hint()[..16]
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn verify_offline(
    ctx: &Ctx,
    path: Option<&Path>,
    signature: Option<&Path>,
    pk: Option<&Path>,
    hashing: &HashingArgs,
    ignore_unsigned: bool,
) -> Result<ExitCode> {
    let (Some(path), Some(signature), Some(pk)) = (path, signature, pk) else {
        bail!("give PATH --signature FILE --public-key FILE (or --registry NAME@VERSION)");
    };
    let key = public_key(pk)?;
    let bytes = read_capped(signature, MAX_BUNDLE, "the signature")?;
    let signed = match Bundle::parse(&bytes)
        .and_then(|b| b.open(&key))
        .and_then(|s| Manifest::from_statement(&s))
    {
        Ok(m) => m,
        Err(e) => {
            print_differences(ctx.json, &[], Some(&e.to_string()));
            return Ok(ExitCode::from(1));
        }
    };
    check_files(
        ctx,
        path,
        &signed,
        hashing,
        Some(signature),
        ignore_unsigned,
        Some(&key.hint()),
    )
}

/// Re-hashes `path` as `signed` was serialized; prints the verified manifest or each
/// difference.
fn check_files(
    ctx: &Ctx,
    path: &Path,
    signed: &Manifest,
    hashing: &HashingArgs,
    signature: Option<&Path>,
    ignore_unsigned: bool,
    signer: Option<&str>,
) -> Result<ExitCode> {
    let extra = hashing.ignores(path, signature);
    let progress = Progress::start(!ctx.json);
    let (actual, diffs) = match manifest::check(
        path,
        signed,
        &extra,
        ignore_unsigned,
        hashing.threads,
        progress.counter(),
    ) {
        Ok(r) => r,
        Err(e @ (ModelError::Symlink(_) | ModelError::Special(_))) => {
            drop(progress);
            print_differences(ctx.json, &[], Some(&e.to_string()));
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(anyhow!("{e}")),
    };
    drop(progress);
    if !diffs.is_empty() {
        print_differences(ctx.json, &diffs, None);
        return Ok(ExitCode::from(1));
    }
    if ctx.json {
        let mut v = manifest_json(signed, signer);
        v["verified"] = json!(true);
        v["bytes"] = json!(actual.bytes);
        output::json(&v);
    } else {
        // The verified manifest, in sha256sum's format (`sha256sum -c` reads it for files).
        for r in &signed.resources {
            println!("{}  {}", r.digest, r.name);
        }
        eprintln!(
            "verified {}: {} {}, {} bytes, manifest sha256:{}{}",
            path.display(),
            signed.resources.len(),
            items(signed),
            actual.bytes,
            signed.digest(),
            signer
                .map(|s| format!(", signed by key {}…", &s[..16.min(s.len())]))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify_registry(
    ctx: &Ctx,
    model: &str,
    path: Option<&Path>,
    pk: Option<&Path>,
    attestation: Option<&Path>,
    hashing: &HashingArgs,
    ignore_unsigned: bool,
) -> Result<ExitCode> {
    let (name, version) = parse_ref(model)?;
    let store = crate::identity::open(ctx).await?;
    let entry = store.model_version(&name, &version).await?;
    let kind = if entry.kind == "remote" {
        Kind::Remote
    } else {
        Kind::Weights
    };
    if let Some(att) = attestation {
        let Some(pk) = pk else {
            bail!("--attestation needs --public-key: the key that signed the provenance")
        };
        let key = public_key(pk)?;
        let env: Envelope =
            serde_json::from_slice(&read_capped(att, MAX_REPORT, "the attestation")?)
                .map_err(|e| anyhow!("{} is not a DSSE envelope: {e}", att.display()))?;
        let p = match Provenance::open(&env, &key) {
            Ok(p) => p,
            Err(e) => {
                print_differences(ctx.json, &[], Some(&e.to_string()));
                return Ok(ExitCode::from(1));
            }
        };
        let reg: Registration = serde_json::from_str(&entry.registration)?;
        let problems = p.disagreements(
            &format!("{name}@{version}"),
            entry.manifest_digest.as_deref(),
            &reg.datasets,
        );
        if !problems.is_empty() {
            if ctx.json {
                output::json(&json!({"verified": false, "problems": problems}));
            } else {
                eprintln!("the attestation does not match {name}@{version}:");
                for p in &problems {
                    eprintln!("  {p}");
                }
            }
            return Ok(ExitCode::from(1));
        }
        if ctx.json {
            output::json(
                &json!({"verified": true, "model": format!("{name}@{version}"), "provenance": p.statement()}),
            );
        } else {
            println!(
                "verified the provenance of {name}@{version}: built by {} ({} materials), signed by key {}…",
                p.run.builder_id,
                p.run.materials.len(),
                &key.hint()[..16]
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let trust = match pk {
        Some(pk) => vec![TrustedKey {
            names: vec!["*".into()],
            key: public_key(pk)?,
            source: pk.display().to_string(),
        }],
        None => trusted_keys(&ctx.config)?,
    };
    let gate = trust::Entry {
        name: &name,
        version: &version,
        kind,
        state: &entry.state,
        manifest_digest: entry.manifest_digest.as_deref(),
        signature: entry.signature.as_deref(),
    };
    if let Err(why) = trust::servable(&gate, &trust) {
        print_differences(ctx.json, &[], Some(&why));
        return Ok(ExitCode::from(1));
    }
    let Some(path) = path else {
        if ctx.json {
            output::json(&json!({"verified": true, "model": version_json(&entry)}));
        } else {
            println!(
                "{name}@{version} is {} and its signature verifies with a trusted key",
                entry.state
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let Some(bundle) = entry.signature.as_deref() else {
        bail!("{name}@{version} is a remote model: there are no weights to check");
    };
    let (signed, signer) = trust::verify_trusted(&name, bundle, &trust).map_err(|e| anyhow!(e))?;
    check_files(
        ctx,
        path,
        &signed,
        hashing,
        None,
        ignore_unsigned,
        Some(&signer),
    )
}

fn write_text(out: Option<&Path>, text: &str, force: bool) -> Result<()> {
    match out {
        Some(p) => {
            if p.exists() && !force {
                bail!("{} exists; pass --force to replace it", p.display());
            }
            std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

fn read_card(path: &Path) -> Result<(String, Card)> {
    let text = String::from_utf8(read_capped(path, card::MAX_CARD, "the card")?).map_err(|e| {
        anyhow!(
            "{} is not UTF-8 (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let parsed =
        Card::parse(&text).map_err(|p| anyhow!("{}:{}: {}", path.display(), p.line, p.message))?;
    Ok((text, parsed))
}

/// Costs of the records carrying every tag, from custos' store.
async fn run_cost(
    store: &custos_store::Store,
    tags: &[(String, String)],
) -> Result<Option<card::Cost>> {
    let filter = custos_store::UsageFilter {
        tags: tags.to_vec(),
        from_ms: 0,
        until_ms: i64::MAX,
        ..Default::default()
    };
    let rows = store
        .usage_report(&filter, &[custos_store::Dimension::Currency], 0)
        .await?;
    let Some(row) = rows.iter().max_by_key(|r| r.cost.nanos()) else {
        return Ok(None);
    };
    if rows.len() > 1 {
        bail!(
            "the run's records are in {} currencies; cost figures need one",
            rows.len()
        );
    }
    Ok(Some(card::Cost {
        tags: tags.iter().cloned().collect(),
        amount: (row.cost.nanos() as f64 / 1e9 * 100.0).round() / 100.0,
        currency: row.keys.first().cloned().unwrap_or_default(),
        gpu_hours: (row.gpu_ms as f64 / 3_600_000.0 * 1000.0).round() / 1000.0,
        kg_co2e: (row.co2e_mg as f64 / 1e6 * 1000.0).round() / 1000.0,
    }))
}

/// What the registry, the evaluation report and the cost records say of a version; plus the
/// problems found fetching them (a report that is not the registered one).
async fn facts(
    store: &custos_store::Store,
    name: &str,
    version: &str,
    eval: Option<&Path>,
    cost_tags: &[(String, String)],
) -> Result<(card::Facts, Vec<String>)> {
    let entry = store.model_version(name, version).await?;
    let registration: Registration = serde_json::from_str(&entry.registration)?;
    let mut notes = Vec::new();
    let report = eval.map(Path::to_path_buf).or_else(|| {
        registration
            .evaluation
            .as_ref()
            .map(|e| PathBuf::from(&e.name))
            .filter(|p| p.exists())
    });
    let metrics = match (&report, &registration.evaluation) {
        (Some(p), registered) => {
            let sha = sha256_file(p)?;
            match registered {
                Some(r) if r.sha256 != sha => {
                    notes.push(format!(
                        "the evaluation report {} (sha256 {sha}) is not the registered one ({})",
                        p.display(),
                        r.sha256
                    ));
                    None
                }
                _ => {
                    let v: Value = serde_json::from_slice(&read_capped(
                        p,
                        MAX_REPORT,
                        "the evaluation report",
                    )?)
                    .map_err(|e| anyhow!("{}: not JSON: {e}", p.display()))?;
                    Some(
                        card::Metrics::from_report(&v)
                            .map_err(|e| anyhow!("{}: {e}", p.display()))?,
                    )
                }
            }
        }
        (None, _) => None,
    };
    let cost = if cost_tags.is_empty() {
        None
    } else {
        run_cost(store, cost_tags).await?
    };
    Ok((
        card::Facts {
            name: name.into(),
            version: version.into(),
            manifest_digest: entry.manifest_digest,
            registration,
            metrics,
            cost,
        },
        notes,
    ))
}

fn tag_pairs(specs: &[String]) -> Result<Vec<(String, String)>> {
    specs
        .iter()
        .map(|t| {
            t.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| anyhow!("--cost-tag {t:?}: expected KEY=VALUE"))
        })
        .collect()
}

/// The registry entry a card names: `--registry`, else its front matter.
fn card_ref(parsed: &Card, registry: Option<&str>) -> Result<(String, String)> {
    if let Some(r) = registry {
        return parse_ref(r);
    }
    let name = parsed.front.get("model_name").and_then(Value::as_str);
    let version = parsed
        .front
        .pointer("/custos/version")
        .and_then(Value::as_str);
    match (name, version) {
        (Some(n), Some(v)) => parse_ref(&format!("{n}@{v}")),
        _ => bail!("the card names no model_name and custos.version; give --registry NAME@VERSION"),
    }
}

/// Lints a card file against the registry; the problems, each with its line.
async fn lint_file(
    ctx: &Ctx,
    file: &Path,
    registry: Option<&str>,
    eval: Option<&Path>,
    kind: card::Kind,
) -> Result<(String, Card, Option<(String, String)>, Vec<card::Problem>)> {
    let (text, parsed) = read_card(file)?;
    let dir = file
        .parent()
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .unwrap_or(Path::new("."));
    if kind == card::Kind::Datasheet {
        let problems = card::lint(&parsed, kind, None, Some(dir));
        return Ok((text, parsed, None, problems));
    }
    let (name, version) = card_ref(&parsed, registry)?;
    let store = crate::identity::open(ctx).await?;
    let tags: Vec<(String, String)> = parsed
        .front
        .pointer("/custos/cost/tags")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let report = eval.map(Path::to_path_buf).or_else(|| {
        parsed
            .front
            .pointer("/custos/evaluation/path")
            .and_then(Value::as_str)
            .map(|p| {
                let p = Path::new(p);
                if p.is_relative() && dir.join(p).exists() {
                    dir.join(p)
                } else {
                    p.to_path_buf()
                }
            })
            .filter(|p| p.exists())
    });
    let (f, notes) = facts(&store, &name, &version, report.as_deref(), &tags).await?;
    let mut problems = card::lint(&parsed, kind, Some(&f), Some(dir));
    problems.extend(
        notes
            .into_iter()
            .map(|message| card::Problem { line: 0, message }),
    );
    Ok((text, parsed, Some((name, version)), problems))
}

fn print_problems(ctx: &Ctx, file: &Path, problems: &[card::Problem]) {
    if ctx.json {
        output::json(&json!({"file": file, "ok": problems.is_empty(), "problems": problems}));
    } else if problems.is_empty() {
        println!("{}: ok", file.display());
    } else {
        for p in problems {
            eprintln!("{}:{}: {}", file.display(), p.line, p.message);
        }
        eprintln!(
            "{} problem{}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
    }
}

async fn card(ctx: &Ctx, cmd: CardCmd) -> Result<ExitCode> {
    match cmd {
        CardCmd::Init {
            model,
            out,
            eval,
            cost_tag,
            force,
        } => {
            let (name, version) = parse_ref(&model)?;
            let store = crate::identity::open(ctx).await?;
            let (f, notes) = facts(
                &store,
                &name,
                &version,
                eval.as_deref(),
                &tag_pairs(&cost_tag)?,
            )
            .await?;
            for n in notes {
                eprintln!("warning: {n}");
            }
            if !cost_tag.is_empty() && f.cost.is_none() {
                eprintln!(
                    "warning: no usage records carry {}: the cost figures are left TODO",
                    cost_tag.join(", ")
                );
            }
            write_text(out.as_deref(), &card::model_template(&f), force)?;
            Ok(ExitCode::SUCCESS)
        }
        CardCmd::Lint {
            file,
            registry,
            eval,
            datasheet,
        } => {
            let kind = if datasheet {
                card::Kind::Datasheet
            } else {
                card::Kind::Model
            };
            let (_, _, _, problems) =
                lint_file(ctx, &file, registry.as_deref(), eval.as_deref(), kind).await?;
            print_problems(ctx, &file, &problems);
            Ok(if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        CardCmd::Render { file, out } => {
            let (_, parsed) = read_card(&file)?;
            let title = parsed
                .front
                .get("model_name")
                .or_else(|| parsed.front.get("dataset_name"))
                .and_then(Value::as_str)
                .map_or_else(|| file.display().to_string(), str::to_owned);
            let html = card::render_html(&parsed, &title);
            write_text(out.as_deref(), &html, true)?;
            Ok(ExitCode::SUCCESS)
        }
        CardCmd::Sign {
            file,
            registry,
            key,
            out,
            eval,
            change,
        } => {
            let key = signing_key(key.as_deref())?;
            let (text, _, target, problems) = lint_file(
                ctx,
                &file,
                registry.as_deref(),
                eval.as_deref(),
                card::Kind::Model,
            )
            .await?;
            if !problems.is_empty() {
                print_problems(ctx, &file, &problems);
                bail!("the card has problems; fix them before signing it (custos models card lint {})", file.display());
            }
            let Some((name, version)) = target else {
                bail!("the card names no registry entry")
            };
            let entry_digest = crate::identity::open(ctx)
                .await?
                .model_version(&name, &version)
                .await?
                .manifest_digest;
            let env = card::sign(&name, &version, entry_digest.as_deref(), &text, &key)
                .map_err(|e| anyhow!("{e}"))?;
            if let Some(o) = &out {
                std::fs::write(o, serde_json::to_string_pretty(&env)?)
                    .with_context(|| format!("cannot write {}", o.display()))?;
            }
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .attach_card(
                    &actor,
                    &name,
                    &version,
                    &custos_control::SignedCard {
                        text: &text,
                        envelope: &env,
                        key: &key.public_key(),
                    },
                    &change.reason()?,
                )
                .await?;
            if ctx.json {
                output::json(
                    &json!({"model": version_json(&r.value), "card_digest": format!("sha256:{}", card::digest(&text)), "signature": env}),
                );
            } else {
                eprintln!(
                    "signed and attached the card of {name}@{version} (sha256:{}); ledger entry {}",
                    card::digest(&text),
                    r.ledger.end.saturating_sub(1)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

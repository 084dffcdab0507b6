//! `custos audit`: checkpoint keys, signed checkpoints, and offline verification of the
//! ledger; plus `record`, which every control-plane command uses to leave evidence.

use crate::identity::open;
use crate::output;
use crate::Ctx;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use custos_ledger::{
    generate_key, leaf_hash, range_positions, range_proof, read_checkpoint_unverified, root,
    verify_inclusion, Anchor, Checkpoint, Frontier, Hash, LedgerCheck, NodeMap, NoteSigner,
    NoteVerifier, PruneRecord, StoredCheckpoint, StoredNode, StoredPrune,
};
use custos_store::{LedgerEntry, Store};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Make an Ed25519 key pair for signing ledger checkpoints.
    #[command(
        after_help = "Examples:\n  custos audit keygen\n  custos audit keygen --name acme.example/custos --out /etc/custos\n\nThe private key file is written with mode 0600; give verifiers the .pub file only."
    )]
    Keygen {
        /// The key's name; it is also the checkpoints' origin line.
        #[arg(long, default_value = "custos/ledger")]
        name: String,
        /// Directory for ledger.key (private) and ledger.pub (public).
        #[arg(long, default_value = ".custos")]
        out: PathBuf,
    },
    /// Sign the ledger's current tree head (after verifying it) and store the checkpoint.
    #[command(after_help = "Example:\n  custos audit checkpoint --key-file .custos/ledger.key")]
    Checkpoint {
        /// The private key file from `custos audit keygen`.
        #[arg(long, env = "CUSTOS_LEDGER_KEY_FILE", value_name = "FILE")]
        key_file: PathBuf,
    },
    /// An inclusion proof of one entry in the latest signed checkpoint, as JSON that
    /// `custos audit verify-proof` (or anyone with the public key) checks offline.
    #[command(
        after_help = "Examples:\n  custos audit prove --index 42 > proof.json\n  custos audit prove --request-id 0193a1b2-… > proof.json"
    )]
    Prove {
        /// The entry's index in the ledger.
        #[arg(
            long,
            conflicts_with = "request_id",
            required_unless_present = "request_id"
        )]
        index: Option<u64>,
        /// The X-Request-ID of a gateway call.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Check a proof from `custos audit prove` offline: the checkpoint's signature, the
    /// entry's hash, and its path to the signed root.
    #[command(
        name = "verify-proof",
        after_help = "Example:\n  custos audit verify-proof proof.json --public-key ledger.pub"
    )]
    VerifyProof {
        /// The proof file (`-` for standard input).
        file: PathBuf,
        /// The ledger's public key (from `custos audit keygen`) the checkpoint must be signed with.
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
    },
    /// Write ledger entries covered by the latest signed checkpoint as sealed files for WORM
    /// storage: JSONL segments, the checkpoint note, and a manifest with each file's SHA-256
    /// and the range proof that ties the entries to the signed root.
    #[command(
        after_help = "Examples:\n  custos audit export --dir /archive/custos-all\n  custos audit export --since 2026-10-01 --until 2026-11-01 --dir /archive/custos-2026-10\n  custos audit verify-export /archive/custos-2026-10 --public-key ledger.pub\n\nA time-bounded export holds the contiguous entries recorded in [--since, --until) that the\nlatest checkpoint covers; it verifies on its own, without the entries around it."
    )]
    Export {
        /// A new or empty directory.
        #[arg(long)]
        dir: PathBuf,
        /// Entries recorded at or after this time: a date, an RFC 3339 time, or a duration ago.
        #[arg(long, value_parser = parse_when)]
        since: Option<i64>,
        /// Entries recorded before this time (same forms as --since).
        #[arg(long, value_parser = parse_when)]
        until: Option<i64>,
        /// Entries per segment file.
        #[arg(long, default_value_t = 100_000)]
        segment_size: u64,
    },
    /// Check an export with only its files and the public key: file digests, contiguous
    /// entries, and the root recomputed from them against the signed checkpoint.
    #[command(
        name = "verify-export",
        after_help = "Example:\n  custos audit verify-export /archive/custos-2026-11 --public-key ledger.pub"
    )]
    VerifyExport {
        /// The folder `custos audit export` wrote.
        dir: PathBuf,
        /// The ledger's public key the export's checkpoint must be signed with.
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
    },
    /// Remove old events that are past retention and held in verified exports, leaving a
    /// signed record of the prune point so the remainder still verifies.
    #[command(
        after_help = "Example:\n  custos audit export --until 2025-11-01 --dir /archive/custos-2025\n  custos audit prune --before 2025-11-01 --export /archive/custos-2025 --key-file .custos/ledger.key --why \"retention: 12 months, ticket OPS-42\"\n\nOnly a prefix of the log is ever removed: entries recorded before --before, older than the\nconfigured [audit] retention, and contained in the given exports (each re-verified now).\nThe tree's node hashes are kept, so proofs and verification of what remains still work."
    )]
    Prune {
        /// Remove entries recorded before this time (never younger than [audit] retention).
        #[arg(long, value_parser = parse_when)]
        before: i64,
        /// An export directory holding the entries to remove (repeatable).
        #[arg(long = "export", value_name = "DIR", required = true)]
        exports: Vec<PathBuf>,
        /// The private key file: the prune point is signed like a checkpoint.
        #[arg(long, env = "CUSTOS_LEDGER_KEY_FILE", value_name = "FILE")]
        key_file: PathBuf,
        /// Why (a ticket or policy reference); recorded in the ledger.
        #[arg(long)]
        why: Option<String>,
        /// Show what would be removed and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Search the ledger's events.
    #[command(
        after_help = "Examples:\n  custos audit query --activity key.revoke\n  custos audit query --outcome denied --since 24h --json\n  custos audit query --actor key_0193… --since 2026-11-01 --until 2026-12-01"
    )]
    Query {
        #[command(flatten)]
        filter: QueryFilter,
    },
    /// Send the ledger to a SIEM: one JSON document per line (OCSF by default, CloudEvents,
    /// or as recorded) to standard output, a file, syslog or an HTTP collector, in ledger
    /// order; with --cursor a stopped stream resumes where it was.
    #[command(
        after_help = "Examples:\n  custos audit stream --format ocsf --follow\n  custos audit stream --to /var/log/custos/ocsf.jsonl --cursor /var/lib/custos/ocsf.cursor --follow\n  custos audit stream --to syslog+tcp://siem.internal:6514 --activity grant. --follow\n  CUSTOS_SIEM_AUTH='Splunk 0000' custos audit stream --to https://hec.internal:8088/services/collector/raw --authorization-env CUSTOS_SIEM_AUTH --follow\n\nSyslog messages are RFC 5424 (facility log audit); syslog:// is UDP, syslog+tcp:// is TCP\nwith octet counting. An HTTP collector gets each batch as one POST of newline-delimited JSON;\nthe stream retries until it is taken and stops on a 4xx. The cursor file holds the next index\nand is rewritten after each batch is delivered, so delivery is at least once."
    )]
    Stream {
        /// What each line holds.
        #[arg(long, value_enum, default_value = "ocsf")]
        format: crate::audit_stream::Format,
        /// The first ledger index to send (default: the cursor file's, else the first entry).
        #[arg(long)]
        from: Option<u64>,
        /// Keep sending new events until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Where: - (standard output), a file (appended), syslog://HOST:PORT (UDP),
        /// syslog+tcp://HOST:PORT, or an http(s):// collector.
        #[arg(long, default_value = "-", value_name = "DEST")]
        to: String,
        /// A file with the next index to send: read at start, rewritten after each batch.
        #[arg(long, value_name = "FILE")]
        cursor: Option<PathBuf>,
        /// The environment variable holding the HTTP collector's whole Authorization header
        /// value (secrets stay off the command line).
        #[arg(long, value_name = "VAR")]
        authorization_env: Option<String>,
        #[command(flatten)]
        filter: QueryFilter,
    },
    /// Print events as they are appended (with -f, keep watching).
    #[command(
        after_help = "Examples:\n  custos audit tail\n  custos audit tail -f --outcome denied"
    )]
    Tail {
        /// Keep printing new events until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many of the latest events to print first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u64,
        #[command(flatten)]
        filter: QueryFilter,
    },
    /// Recompute every entry, node and root, check every stored checkpoint, and check the
    /// ledger against checkpoints held outside the database (the anchors). Exit 1 on any
    /// damage, naming the first index affected or the anchor contradicted; exit 3 when
    /// nothing outside the database anchors the ledger.
    #[command(
        after_help = "Examples:\n  custos audit verify --public-key .custos/ledger.pub\n  custos audit verify --public-key ledger.pub --checkpoint /mnt/worm/checkpoint-00000000000000012345.note\n  custos audit verify --json\n\nAnchors: the newest checkpoint in [audit] anchor_dir, and every --checkpoint FILE. A\ndatabase administrator can rewrite rows consistently, or delete the tail and its\ncheckpoints; only a checkpoint kept elsewhere shows it. Exit codes: 0 verified and anchored,\n1 damage found, 3 verified but not anchored (the result then proves little)."
    )]
    Verify {
        /// The public key file; without it, signatures are not checked (roots still are).
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// A signed checkpoint note held outside the database (repeatable).
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// A witness's URL (`custos witness serve`): its latest cosigned checkpoint of this
        /// ledger is an anchor (repeatable; [[audit.witnesses]] are asked too).
        #[arg(long = "witness", value_name = "URL")]
        witnesses: Vec<String>,
    },
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct QueryFilter {
    /// The actor's id (an API key id for gateway calls, local:USER for the CLI).
    #[arg(long)]
    actor: Option<String>,
    /// The activity, e.g. model.invoke or key.create; a trailing dot matches a family (key.).
    #[arg(long)]
    activity: Option<String>,
    /// allowed, denied or error.
    #[arg(long)]
    outcome: Option<String>,
    /// Events at or after this time: 2026-11-25, 2026-11-25T10:00:00Z, or a duration ago (24h).
    #[arg(long, value_parser = parse_when)]
    since: Option<i64>,
    /// Events before this time (same forms as --since).
    #[arg(long, value_parser = parse_when)]
    until: Option<i64>,
    /// Print personal identifiers as the ledger holds them (sealed under their subject's
    /// key) instead of opened; an erased subject shows as erased:KEYID either way.
    #[arg(long)]
    sealed: bool,
}

/// Opens sealed identifiers in a page of events unless `--sealed`.
async fn reveal_page(
    store: &custos_store::Store,
    filter: &QueryFilter,
    page: &[LedgerEntry],
) -> Result<Vec<serde_json::Value>> {
    let mut values: Vec<serde_json::Value> = page
        .iter()
        .map(|e| serde_json::from_str(&e.event).unwrap_or(serde_json::Value::Null))
        .collect();
    if !filter.sealed {
        custos_control::seal::reveal(store, &mut values).await?;
    }
    Ok(values)
}

fn parse_when(s: &str) -> Result<i64, String> {
    if let Some(ms) = custos_core::time::parse_rfc3339(s) {
        return Ok(ms);
    }
    match custos_core::duration::parse_duration(s) {
        Ok(d) => Ok(custos_core::time::now_ms() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)),
        Err(_) => Err(format!("{s:?} is neither a date (2026-11-25, 2026-11-25T10:00:00Z) nor a duration ago (24h, 7d)")),
    }
}

impl QueryFilter {
    fn matches(&self, e: &LedgerEntry, v: &serde_json::Value) -> bool {
        let str_at = |path: &[&str]| {
            let mut cur = v;
            for p in path {
                cur = &cur[*p];
            }
            cur.as_str().map(str::to_owned)
        };
        self.actor
            .as_ref()
            .is_none_or(|a| str_at(&["actor", "id"]).as_deref() == Some(a))
            && self.activity.as_ref().is_none_or(|a| {
                let act = str_at(&["activity"]).unwrap_or_default();
                if a.ends_with('.') {
                    act.starts_with(a.as_str())
                } else {
                    act == *a
                }
            })
            && self
                .outcome
                .as_ref()
                .is_none_or(|o| str_at(&["outcome"]).as_deref() == Some(o))
            && self.since.is_none_or(|t| e.recorded_at >= t)
            && self.until.is_none_or(|t| e.recorded_at < t)
    }
}

/// `type:name` (or `type:id`) of an event's resource, qualified by its tenant when it has
/// one: `team:acme/ml`, `api_key:acme/key_0193…`, `tenant:acme`, `model:gpt-4o`.
fn resource_cell(r: &serde_json::Value) -> String {
    if r.is_null() {
        return "-".into();
    }
    let kind = r["type"].as_str().unwrap_or("object");
    let id = r["name"]
        .as_str()
        .or_else(|| r["id"].as_str())
        .or_else(|| r["path"].as_str())
        .unwrap_or("-");
    match r["tenant"].as_str() {
        Some(t) if kind != "tenant" => format!("{kind}:{t}/{id}"),
        _ => format!("{kind}:{id}"),
    }
}

fn print_events(ctx: &Ctx, rows: &[(&LedgerEntry, serde_json::Value)], header: bool) {
    if ctx.json {
        for (e, v) in rows {
            println!(
                "{}",
                json!({"index": e.index, "recorded_at": custos_core::time::format_rfc3339(e.recorded_at), "event": v})
            );
        }
        return;
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(e, v)| {
            let s =
                |x: &serde_json::Value| x.as_str().map_or_else(|| "-".to_owned(), str::to_owned);
            let resource = &v["resources"][0];
            vec![
                e.index.to_string(),
                custos_core::time::format_rfc3339(e.recorded_at),
                s(&v["activity"]),
                s(&v["actor"]["id"]),
                resource_cell(resource),
                s(&v["outcome"]),
                // Denials carry the policies' reason; changes carry why they were made.
                s(if v["reason"].is_string() {
                    &v["reason"]
                } else {
                    &v["why"]
                }),
            ]
        })
        .collect();
    if header {
        output::table(
            &[
                "INDEX", "TIME", "ACTIVITY", "ACTOR", "RESOURCE", "OUTCOME", "REASON",
            ],
            &table,
        );
    } else {
        for r in table {
            println!("{}", r.join("  "));
        }
    }
}

/// Appends one OCSF-shaped control-plane event to the ledger.
/// Records something the CLI observed and acted on (a billing file ingested, an anomaly, a
/// cost gate overridden) as the local operator, through the control plane.
pub async fn record(
    ctx: &Ctx,
    store: &Store,
    activity: &str,
    resource: serde_json::Value,
    why: Option<&str>,
) -> Result<()> {
    let control = custos_control::Control::new(
        store.clone(),
        std::sync::Arc::new(crate::control::engine(ctx)?),
        custos_control::Settings::from_config(&ctx.config),
    );
    let actor = custos_control::Actor::local(&os_login_name());
    let reason = custos_core::Reason::new(why, None).map_err(|e| anyhow::anyhow!("--why: {e}"))?;
    control
        .record_observation(&actor, activity, resource, &reason)
        .await
        .with_context(|| format!("could not record {activity} in the audit ledger"))?;
    Ok(())
}

/// The operator running this CLI, as the ledger names it (`local:<login>`): the login of the
/// process's user id, from the operating system, never from `$USER` (which anyone can set).
pub fn local_operator() -> String {
    format!("local:{}", os_login_name())
}

/// The OS login of this process's user (`unknown` when the system cannot say).
pub fn os_login_name() -> String {
    os_login().unwrap_or_else(|| "unknown".into())
}

#[cfg(target_os = "linux")]
fn os_login() -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    // /proc/self belongs to the process's effective user.
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let (name, _, id) = (f.next()?, f.next()?, f.next()?);
        (id.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    });
    Some(name.unwrap_or_else(|| format!("uid{uid}")))
}

#[cfg(not(target_os = "linux"))]
fn os_login() -> Option<String> {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
}

/// The stored nodes at these positions, as a `NodeSource`.
async fn nodes_at(store: &Store, positions: &[(u32, u64)]) -> Result<NodeMap> {
    Ok(store.ledger_nodes_at(positions).await?)
}

/// This ledger's root at `size`, from stored nodes.
async fn root_at(store: &Store, size: u64) -> Result<Hash> {
    let nodes = nodes_at(store, &Frontier::positions(size)).await?;
    root(&nodes, size).map_err(|e| {
        anyhow::anyhow!("cannot compute the root at size {size}: {e}; run `custos audit verify`")
    })
}

fn read_key(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .trim()
        .to_owned())
}

/// Verifies the ledger and signs its tree head with the key in `key_file`, publishing the
/// checkpoint to the configured anchors; `None` when the ledger has not grown since.
pub(crate) async fn checkpoint(ctx: &Ctx, key_file: &Path) -> Result<Option<(u64, String)>> {
    let signer = NoteSigner::from_key(&read_key(key_file)?)
        .with_context(|| format!("{} is not a custos ledger key", key_file.display()))?;
    let store = open(ctx).await?;
    let report = verify_store(
        &store,
        Some(&signer.verifier()),
        &read_anchors(ctx, &[], Some(&signer.verifier()))?.0,
    )
    .await?;
    if !report.ok() {
        bail!("the ledger does not verify, so it will not be signed; run `custos audit verify` to see where");
    }
    let anchors = custos_gateway::anchor::Anchors::new(&ctx.config.audit)?
        .with_source(&ctx.config.events.source);
    if anchors.is_empty() {
        eprintln!("warning: [audit] has no anchor_dir or anchor_webhooks: this checkpoint stays in the database it protects, where it can be deleted with the entries");
    }
    Ok(custos_gateway::audit::sign_checkpoint(&store, &signer, &anchors).await?)
}

pub(crate) fn read_public_key(path: &Path) -> Result<NoteVerifier> {
    NoteVerifier::from_key(&read_key(path)?)
        .with_context(|| format!("{} is not a custos ledger public key", path.display()))
}

pub async fn run(ctx: &Ctx, cmd: AuditCmd) -> Result<ExitCode> {
    match cmd {
        AuditCmd::Keygen { name, out } => {
            let (private, public) = generate_key(&name)?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let key_path = out.join("ledger.key");
            let pub_path = out.join("ledger.pub");
            if key_path.exists() {
                bail!(
                    "{} already exists; move it away first (a lost key cannot sign again)",
                    key_path.display()
                );
            }
            write_private(&key_path, &private)?;
            std::fs::write(&pub_path, format!("{public}\n"))
                .with_context(|| format!("cannot write {}", pub_path.display()))?;
            if ctx.json {
                output::json(
                    &json!({"private_key_file": key_path, "public_key_file": pub_path, "public_key": public}),
                );
            } else {
                eprintln!(
                    "wrote {} (private, mode 0600) and {}",
                    key_path.display(),
                    pub_path.display()
                );
                println!("{public}");
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Checkpoint { key_file } => {
            match checkpoint(ctx, &key_file).await? {
                Some((size, note)) => {
                    if ctx.json {
                        output::json(&json!({"size": size, "note": note}));
                    } else {
                        print!("{note}");
                    }
                }
                None => eprintln!("the ledger has not grown since the last checkpoint"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Prove { index, request_id } => {
            let store = open(ctx).await?;
            let index = match (index, &request_id) {
                (Some(i), _) => i,
                (None, Some(rid)) => store
                    .ledger_find_request(rid)
                    .await?
                    .with_context(|| format!("no ledger entry has request id {rid:?}"))?,
                (None, None) => bail!("give --index or --request-id"),
            };
            let control = custos_control::Control::new(
                store,
                std::sync::Arc::new(crate::control::engine(ctx)?),
                custos_control::Settings::from_config(&ctx.config),
            );
            output::json(&control.entry_proof(index).await?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::VerifyProof { file, public_key } => {
            let verifier = NoteVerifier::from_key(&read_key(&public_key)?).with_context(|| {
                format!("{} is not a custos ledger public key", public_key.display())
            })?;
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                s
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON proof", file.display()))?;
            let field = |k: &str| v.get(k).with_context(|| format!("the proof lacks `{k}`"));
            let index = field("index")?
                .as_u64()
                .context("`index` must be a number")?;
            let size = field("tree_size")?
                .as_u64()
                .context("`tree_size` must be a number")?;
            let event = field("event")?
                .as_str()
                .context("`event` must be a string")?;
            let note = field("checkpoint")?
                .as_str()
                .context("`checkpoint` must be a string")?;
            let mut path = Vec::new();
            for h in field("proof")?
                .as_array()
                .context("`proof` must be an array")?
            {
                let mut hash = [0u8; 32];
                let text = h.as_str().unwrap_or("");
                if hex::decode_to_slice(text, &mut hash).is_err() {
                    bail!("`proof` holds something that is not a 64-hex-digit hash");
                }
                path.push(hash);
            }
            let checkpoint = verifier
                .open(note)
                .context("the checkpoint's signature does not verify")?;
            let result = if checkpoint.size != size {
                Err(format!(
                    "the proof is for size {size} but the checkpoint is for size {}",
                    checkpoint.size
                ))
            } else {
                verify_inclusion(
                    index,
                    size,
                    &leaf_hash(event.as_bytes()),
                    &path,
                    &checkpoint.root,
                )
                .map_err(|e| e.to_string())
            };
            match result {
                Ok(()) => {
                    eprintln!("proof verified: entry {index} is in the log {} of size {size} signed by {}", checkpoint.origin, verifier.name());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("proof NOT verified: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCmd::Export {
            dir,
            since,
            until,
            segment_size,
        } => {
            if segment_size == 0 {
                bail!("--segment-size must be at least 1");
            }
            if dir.exists()
                && std::fs::read_dir(&dir)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
            {
                bail!(
                    "{} exists and is not empty; exports never overwrite",
                    dir.display()
                );
            }
            let store = open(ctx).await?;
            let (files, manifest) = export_files(&store, since, until, segment_size).await?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (name, bytes) in &files {
                write_sealed(&dir.join(name), bytes)?;
            }
            let (start, end, size) = (
                manifest["first"].as_u64().unwrap_or(0),
                manifest["end"].as_u64().unwrap_or(0),
                manifest["tree_size"].as_u64().unwrap_or(0),
            );
            if ctx.json {
                output::json(&manifest);
            } else {
                eprintln!(
                    "exported entries {start}..{end} ({} of the {size} signed) in {} files to {}",
                    end - start,
                    files.len(),
                    dir.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::VerifyExport { dir, public_key } => {
            let verifier = NoteVerifier::from_key(&read_key(&public_key)?).with_context(|| {
                format!("{} is not a custos ledger public key", public_key.display())
            })?;
            match verify_export(&dir, &verifier) {
                Ok(v) => {
                    eprintln!(
                        "export verified: entries {}..{} are entries of the log of size {} signed by {}",
                        v.first,
                        v.end,
                        v.size,
                        verifier.name()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(problem) => {
                    eprintln!("export NOT verified: {problem}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCmd::Prune {
            before,
            exports,
            key_file,
            why,
            dry_run,
        } => {
            let signer = NoteSigner::from_key(&read_key(&key_file)?)
                .with_context(|| format!("{} is not a custos ledger key", key_file.display()))?;
            let verifier = signer.verifier();
            let store = open(ctx).await?;
            let report = verify_store(
                &store,
                Some(&verifier),
                &read_anchors(ctx, &[], Some(&verifier))?.0,
            )
            .await?;
            if !report.ok() {
                bail!("the ledger does not verify, so nothing will be pruned; run `custos audit verify` to see where");
            }
            let retention = ctx.config.audit.retention.0;
            let retained_from = custos_core::time::now_ms()
                - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX / 2);
            let cutoff = before.min(retained_from);
            let base = store.ledger_latest_prune().await?.map_or(0, |p| p.0);
            let size = store.ledger_size().await?;
            let by_time = store.ledger_index_at_time(base, cutoff).await?;
            let mut covered = Vec::new();
            let mut held = Vec::new();
            for dir in &exports {
                let v = verify_export(dir, &verifier)
                    .map_err(|p| anyhow::anyhow!("{} does not verify: {p}", dir.display()))?;
                if v.size > size || root_at(&store, v.size).await? != v.root {
                    bail!(
                        "{} is not an export of this ledger: its signed root at size {} differs from ours",
                        dir.display(),
                        v.size
                    );
                }
                covered.push((v.first, v.end));
                held.push(json!({"dir": dir, "first": v.first, "end": v.end, "tree_size": v.size, "manifest_sha256": v.manifest_sha256}));
            }
            covered.sort_unstable();
            let mut reach = base;
            for (first, end) in covered {
                if first <= reach {
                    reach = reach.max(end);
                }
            }
            let point = by_time.min(reach);
            let plan = json!({
                "from": base, "to": point, "entries": point.saturating_sub(base),
                "cutoff": custos_core::time::format_rfc3339(cutoff),
                "older_than_cutoff_until": by_time, "exported_until": reach,
                "dry_run": dry_run,
            });
            if point <= base {
                if ctx.json {
                    output::json(&plan);
                } else {
                    eprintln!(
                        "nothing to prune: entries from {base} are {}",
                        if by_time <= base {
                            format!("recorded after {} (the earlier of --before and now minus the {} retention)", custos_core::time::format_rfc3339(cutoff), custos_core::duration::format_duration(retention))
                        } else {
                            format!(
                                "not in the given exports (they hold the log only up to {reach})"
                            )
                        }
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !dry_run {
                let head = Checkpoint {
                    origin: verifier.name().to_owned(),
                    size: point,
                    root: root_at(&store, point).await?,
                };
                let exports_json = serde_json::Value::Array(held.clone()).to_string();
                let exports_sha256: Hash = Sha256::digest(exports_json.as_bytes()).into();
                // The event first: the signed prune record names it (index and leaf hash), so
                // a prune without its event, or an event edited afterwards, fails verify. An
                // event whose prune then failed only says a prune was authorized.
                let event = json!({
                    "schema": 1,
                    "time": custos_core::time::format_rfc3339(custos_core::time::now_ms()),
                    "activity": "audit.prune",
                    "actor": {"type": "operator", "id": local_operator(), "auth": "local"},
                    "resources": [{"type": "ledger", "id": format!("entries {base}..{point}"),
                        "pruned": point - base, "size": point, "root": hex::encode(head.root),
                        "cutoff": custos_core::time::format_rfc3339(cutoff),
                        "exports_sha256": hex::encode(exports_sha256), "exports": held}],
                    "outcome": "allowed",
                    "why": why,
                })
                .to_string();
                let at = store
                    .ledger_append(std::slice::from_ref(&event))
                    .await
                    .context("recording the audit.prune event; nothing was pruned")?;
                let note = signer.sign_prune(&PruneRecord {
                    head,
                    exports_sha256,
                    event_index: at.start,
                    event_leaf: leaf_hash(event.as_bytes()),
                });
                store.ledger_prune(point, &note, &exports_json).await?;
            }
            if ctx.json {
                output::json(&plan);
            } else {
                eprintln!(
                    "{} entries {base}..{point} ({} events recorded before {}); the signed prune record keeps the rest verifiable",
                    if dry_run { "would prune" } else { "pruned" },
                    point - base,
                    custos_core::time::format_rfc3339(cutoff)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Query { filter } => {
            let store = open(ctx).await?;
            let base = store.ledger_latest_prune().await?.map_or(0, |p| p.0);
            // Recorded times ascend with the index: start at --since, stop at --until.
            let mut next = match filter.since {
                Some(t) => store.ledger_index_at_time(base, t).await?,
                None => base,
            } as i64;
            let mut rows_out: Vec<(LedgerEntry, serde_json::Value)> = Vec::new();
            'pages: loop {
                let page = store.ledger_entries(next, 10_000).await?;
                let Some(last) = page.last() else { break };
                next = last.index + 1;
                let values = reveal_page(&store, &filter, &page).await?;
                for (e, v) in page.into_iter().zip(values) {
                    if filter.until.is_some_and(|t| e.recorded_at >= t) {
                        break 'pages;
                    }
                    if !v.is_null() && filter.matches(&e, &v) {
                        rows_out.push((e, v));
                    }
                }
            }
            let rows: Vec<(&LedgerEntry, serde_json::Value)> =
                rows_out.iter().map(|(e, v)| (e, v.clone())).collect();
            print_events(ctx, &rows, true);
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Stream {
            format,
            from,
            follow,
            to,
            cursor,
            authorization_env,
            filter,
        } => {
            let args = crate::audit_stream::StreamArgs {
                format,
                from,
                follow,
                to: &to,
                cursor: cursor.as_ref(),
                authorization_env: authorization_env.as_deref(),
            };
            crate::audit_stream::run(ctx, args, filter.sealed, |e, v| filter.matches(e, v)).await
        }
        AuditCmd::Tail {
            follow,
            lines,
            filter,
        } => {
            let store = open(ctx).await?;
            let size = store.ledger_size().await?;
            let mut next = size.saturating_sub(lines) as i64;
            loop {
                let page = store.ledger_entries(next, 1000).await?;
                if let Some(last) = page.last() {
                    next = last.index + 1;
                }
                let values = reveal_page(&store, &filter, &page).await?;
                let rows: Vec<(&LedgerEntry, serde_json::Value)> = page
                    .iter()
                    .zip(values)
                    .filter(|(e, v)| !v.is_null() && filter.matches(e, v))
                    .collect();
                print_events(ctx, &rows, false);
                if !follow {
                    return Ok(ExitCode::SUCCESS);
                }
                if page.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
        AuditCmd::Verify {
            public_key,
            checkpoints,
            witnesses,
        } => {
            let verifier = match &public_key {
                Some(p) => Some(NoteVerifier::from_key(&read_key(p)?).with_context(|| {
                    format!("{} is not a custos ledger public key", p.display())
                })?),
                None => None,
            };
            let store = open(ctx).await?;
            let (mut anchors, mut problems) = read_anchors(ctx, &checkpoints, verifier.as_ref())?;
            let (more, more_problems) =
                witness_anchors(ctx, &store, &witnesses, verifier.as_ref()).await?;
            anchors.extend(more);
            problems.extend(more_problems);
            let mut report = verify_store(&store, verifier.as_ref(), &anchors).await?;
            report
                .findings
                .extend(problems.drain(..).map(|problem| custos_ledger::Finding {
                    index: None,
                    exact: false,
                    problem,
                }));
            let anchored = report.anchors_checked > 0;
            if ctx.json {
                output::json(&json!({
                    "ok": report.ok(),
                    "anchored": anchored,
                    "entries": report.entries,
                    "pruned": report.pruned,
                    "checkpoints_verified": report.checkpoints_verified,
                    "checkpoints_unchecked": report.checkpoints_unchecked,
                    "anchors_checked": report.anchors_checked,
                    "anchored_size": report.anchored_size,
                    "findings": report.findings.iter().map(|f| json!({"index": f.index, "exact": f.exact, "problem": f.problem})).collect::<Vec<_>>(),
                }));
            } else {
                for f in &report.findings {
                    eprintln!("TAMPERED: {}", f.problem);
                }
                if report.checkpoints_unchecked > 0 {
                    eprintln!(
                        "warning: {} checkpoint signatures not checked (their roots were); pass --public-key",
                        report.checkpoints_unchecked
                    );
                }
                eprintln!(
                    "{}: {} entries, {} signed checkpoints verified, {} external anchors checked",
                    if report.ok() {
                        "ledger verified"
                    } else {
                        "ledger NOT verified"
                    },
                    report.entries,
                    report.checkpoints_verified,
                    report.anchors_checked
                );
                if report.ok() && !anchored {
                    eprintln!("NOT ANCHORED: no checkpoint held outside the database was given, so a ledger rewritten or truncated together with its checkpoints would pass too. Set [audit] anchor_dir (the gateway and `custos audit checkpoint` publish there) or pass --checkpoint FILE.");
                }
            }
            Ok(if !report.ok() {
                ExitCode::from(1)
            } else if !anchored {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// The files of a ledger export (segments, checkpoint note, manifest) of the entries recorded
/// in `[since, until)` that the latest signed checkpoint covers, and the manifest.
pub(crate) async fn export_files(
    store: &Store,
    since: Option<i64>,
    until: Option<i64>,
    segment_size: u64,
) -> Result<(Vec<(String, Vec<u8>)>, serde_json::Value)> {
    let Some((size, note)) = store.ledger_latest_checkpoint().await? else {
        bail!("the ledger has no signed checkpoint yet; run `custos audit checkpoint` first");
    };
    let base = store.ledger_latest_prune().await?.map_or(0, |p| p.0);
    let start = match since {
        Some(t) => store.ledger_index_at_time(base, t).await?,
        None => base,
    };
    let end = match until {
        Some(t) => store.ledger_index_at_time(start, t).await?,
        None => size,
    }
    .min(size);
    if start >= end {
        bail!("no entries in that time range are covered by the latest checkpoint (size {size}, stored from {base}); run `custos audit checkpoint` or widen the range");
    }
    let proof = range_proof(
        &nodes_at(store, &range_positions(size, start, end)).await?,
        size,
        start,
        end,
    )
    .map_err(|e| anyhow::anyhow!("cannot build the range proof: {e}; run `custos audit verify`"))?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut listed = Vec::new();
    let mut first = start;
    while first < end {
        let last = (first + segment_size).min(end);
        let name = format!("segment-{first:012}.jsonl");
        let mut text = String::new();
        let mut next = first;
        while next < last {
            let page = store
                .ledger_entries(next as i64, (last - next).min(10_000) as i64)
                .await?;
            if page.is_empty() {
                bail!("the ledger ends at {next}, before its checkpoint's size {size}; run `custos audit verify`");
            }
            for e in page {
                if e.index as u64 != next {
                    bail!("entry {next} is missing from the ledger; run `custos audit verify`");
                }
                text.push_str(
                    &json!({"index": e.index, "recorded_at": e.recorded_at, "event": e.event})
                        .to_string(),
                );
                text.push('\n');
                next += 1;
            }
        }
        listed.push(json!({"name": name, "sha256": hex::encode(Sha256::digest(text.as_bytes())), "first": first, "last": last - 1}));
        files.push((name, text.into_bytes()));
        first = last;
    }
    listed.push(
        json!({"name": "checkpoint.note", "sha256": hex::encode(Sha256::digest(note.as_bytes()))}),
    );
    files.push(("checkpoint.note".to_owned(), note.into_bytes()));
    let manifest = json!({"format": "custos-ledger-export/1", "tree_size": size,
        "first": start, "end": end,
        "since": since.map(custos_core::time::format_rfc3339),
        "until": until.map(custos_core::time::format_rfc3339),
        "range_proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
        "files": listed,
        "created_at": custos_core::time::format_rfc3339(custos_core::time::now_ms())});
    files.push((
        "manifest.json".to_owned(),
        serde_json::to_string_pretty(&manifest)?.into_bytes(),
    ));
    Ok((files, manifest))
}

/// The `ledger-anchored` compliance check: the ledger verifies, against at least one signed
/// checkpoint held outside the database (`[audit] anchor_dir`, witnesses, `checkpoints`).
pub(crate) async fn anchored_check(
    ctx: &Ctx,
    store: &Store,
    verifier: Option<&NoteVerifier>,
    checkpoints: &[PathBuf],
) -> Result<custos_govern::comply::CheckResult> {
    use custos_govern::comply::{CheckResult, Status};
    let (mut anchors, mut problems) = read_anchors(ctx, checkpoints, verifier)?;
    let (more, more_problems) = witness_anchors(ctx, store, &[], verifier).await?;
    anchors.extend(more);
    problems.extend(more_problems);
    let report = verify_store(store, verifier, &anchors).await?;
    problems.extend(report.findings.iter().map(|f| f.problem.clone()));
    let evidence = vec![
        json!({"entries": report.entries, "checkpoints_verified": report.checkpoints_verified,
        "checkpoints_unchecked": report.checkpoints_unchecked, "anchors_checked": report.anchors_checked,
        "anchored_size": report.anchored_size, "anchors": anchors.iter().map(|a| &a.source).collect::<Vec<_>>()}),
    ];
    let id = "ledger-anchored";
    Ok(if !problems.is_empty() {
        CheckResult::new(id, Status::Fail, format!("the ledger does not verify: {}", problems.join("; ")))
    } else if report.anchors_checked == 0 {
        CheckResult::new(id, Status::Fail, "no signed checkpoint outside the database anchors the ledger (set [audit] anchor_dir or pass --checkpoint)")
    } else if verifier.is_none() {
        CheckResult::new(id, Status::Fail, "checkpoint signatures were not checked: pass --public-key")
    } else {
        CheckResult::new(id, Status::Pass, format!(
            "{} entries verify; {} external anchor(s) agree",
            report.entries, report.anchors_checked
        ))
    }
    .with(evidence))
}

/// The external anchors: the newest checkpoint in `[audit] anchor_dir` and each
/// `--checkpoint` file. Returns them with the problems found reading them (an anchor that
/// does not verify with the public key is itself a finding).
fn read_anchors(
    ctx: &Ctx,
    files: &[PathBuf],
    verifier: Option<&NoteVerifier>,
) -> Result<(Vec<Anchor>, Vec<String>)> {
    let mut notes: Vec<(String, String)> = Vec::new();
    if let Some(dir) = &ctx.config.audit.anchor_dir {
        if let Some(found) = custos_gateway::anchor::latest_in(dir)? {
            notes.push(found);
        }
    }
    for f in files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("--checkpoint {}: cannot read it", f.display()))?;
        notes.push((f.display().to_string(), text));
    }
    let mut anchors = Vec::new();
    let mut problems = Vec::new();
    for (source, note) in notes {
        let opened = match verifier {
            Some(v) => v.open(&note),
            None => read_checkpoint_unverified(&note),
        };
        match opened {
            Ok(checkpoint) => anchors.push(Anchor { source, checkpoint }),
            Err(e) => problems.push(format!(
                "the anchor {source} is not a valid checkpoint: {e}"
            )),
        }
    }
    Ok((anchors, problems))
}

/// The latest checkpoint each witness holds of this ledger (its origin: the public key's
/// name, else the stored checkpoints'), from `--witness` and `[[audit.witnesses]]`.
async fn witness_anchors(
    ctx: &Ctx,
    store: &Store,
    urls: &[String],
    verifier: Option<&NoteVerifier>,
) -> Result<(Vec<Anchor>, Vec<String>)> {
    let mut all: Vec<String> = urls.to_vec();
    all.extend(ctx.config.audit.witnesses.iter().map(|w| w.url.clone()));
    if all.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let origin = match verifier {
        Some(v) => v.name().to_owned(),
        None => match store.ledger_latest_checkpoint().await? {
            Some((_, note)) => note.split('\n').next().unwrap_or("").to_owned(),
            None => {
                return Ok((
                    Vec::new(),
                    vec!["the ledger has no checkpoint to name its origin; pass --public-key to ask a witness".into()],
                ))
            }
        },
    };
    let mut anchors = Vec::new();
    let mut problems = Vec::new();
    for url in all {
        let w = custos_gateway::witness::WitnessClient::new(&url);
        match w.latest(&origin).await {
            Ok(Some(note)) => {
                let opened = match verifier {
                    Some(v) => v.open(&note),
                    None => read_checkpoint_unverified(&note),
                };
                match opened {
                    Ok(checkpoint) => anchors.push(Anchor {
                        source: format!("witness {url}"),
                        checkpoint,
                    }),
                    Err(e) => problems.push(format!(
                        "witness {url} holds a checkpoint of {origin:?} that is not valid: {e}"
                    )),
                }
            }
            Ok(None) => eprintln!("warning: witness {url} holds no checkpoint of {origin:?}"),
            Err(e) => bail!("{e}"),
        }
    }
    Ok((anchors, problems))
}

/// Verifies the stored ledger in one streaming pass: entries and nodes are read page by
/// page, so memory holds the tree's hashes, never the events.
async fn verify_store(
    store: &Store,
    verifier: Option<&NoteVerifier>,
    anchors: &[Anchor],
) -> Result<custos_ledger::Report> {
    let mut check = LedgerCheck::new(verifier);
    for a in anchors {
        check.anchor(a.clone());
    }
    let prune = store.ledger_latest_prune_record().await?;
    let mut next = 0i64;
    if let Some((size, note, exports)) = &prune {
        let below = store.ledger_nodes_below(*size).await?;
        let nodes: Vec<StoredNode> = below
            .iter()
            .map(|x| StoredNode {
                level: x.level,
                index: x.index,
                hash: &x.hash,
            })
            .collect();
        check.pruned(
            &StoredPrune {
                size: i64::try_from(*size).unwrap_or(i64::MAX),
                note,
                exports,
            },
            &nodes,
        );
        next = i64::try_from(*size).unwrap_or(i64::MAX);
    }
    // The nodes are read on another thread while this one hashes the entries: the two
    // scans are the bulk of the work and the machine has more than one core.
    let node_reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut nodes: Vec<(i64, i64, Option<Hash>)> = Vec::new();
            store
                .ledger_scan_nodes(&mut |n| {
                    let mut h = [0u8; 32];
                    let ok = hex::decode_to_slice(n.hash, &mut h).is_ok();
                    nodes.push((n.level, n.index, ok.then_some(h)));
                })
                .await
                .map(|()| nodes)
        })
    };
    store
        .ledger_scan_entries(next, &mut |e| check.entry(e))
        .await?;
    let nodes = node_reader
        .await
        .context("the node reader thread failed")??;
    for (level, index, hash) in &nodes {
        check.node_hash(*level, *index, hash.as_ref());
    }
    let checkpoints = store.ledger_checkpoints().await?;
    let c: Vec<StoredCheckpoint> = checkpoints
        .iter()
        .map(|(size, note)| StoredCheckpoint { size: *size, note })
        .collect();
    Ok(check.finish(&c))
}

/// Writes a file that must not change afterwards: created new, then made read-only.
fn write_sealed(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut perms = f.metadata()?.permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(path, perms)?;
    Ok(())
}

/// Checks an export directory with only its files and the public key.
fn verify_export(
    dir: &Path,
    verifier: &NoteVerifier,
) -> std::result::Result<custos_govern::comply::export::VerifiedExport, String> {
    let read =
        |name: &str| std::fs::read(dir.join(name)).map_err(|e| format!("cannot read {name}: {e}"));
    custos_govern::comply::export::verify(&read, verifier)
}

fn write_private(path: &Path, key: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(f, "{key}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::resource_cell;
    use serde_json::json;

    /// Issue 29 (18): tables showed `tenant:-` and `-:team_…`.
    #[test]
    fn every_kind_of_resource_reads_well() {
        assert_eq!(
            resource_cell(&json!({"type": "tenant", "name": "acme"})),
            "tenant:acme"
        );
        assert_eq!(
            resource_cell(&json!({"type": "team", "id": "team_1", "tenant": "acme", "name": "ml"})),
            "team:acme/ml"
        );
        assert_eq!(
            resource_cell(&json!({"type": "api_key", "id": "key_1", "tenant": "acme"})),
            "api_key:acme/key_1"
        );
        assert_eq!(resource_cell(&json!({"id": "x"})), "object:x");
        assert_eq!(resource_cell(&json!(null)), "-");
    }
}

//! `custos pii`: find and anonymize personal data in text, evaluate accuracy
//! on labeled data, generate a labeled corpus, manage the encryption key.
//! Exit 0 on success (`analyze --fail-on-findings` exits 1 when PII is found),
//! 2 on usage, configuration or I/O errors.

use crate::output;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use custos_pii::anonymize::{Operator, Pseudonyms, Vault, KEY_LEN};
use custos_pii::dataset::{self, Format, OnError, Options};
use custos_pii::{
    evaluate, synth, Analyzer, Anonymizer, CharOffsets, Finding, Key, PiiConfig, Request, Sample,
};
use serde_json::json;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Environment variable holding the AES-256-SIV key (hex or base64).
pub const KEY_ENV: &str = "CUSTOS_PII_KEY";
/// Environment variable holding the salt of the `hash` operator.
pub const SALT_ENV: &str = "CUSTOS_PII_HASH_SALT";

#[derive(Subcommand, Debug)]
pub enum PiiCmd {
    /// Find personal data in a file or standard input.
    #[command(after_help = "Examples:
  custos pii analyze notes.txt
  echo 'Call Jane Doe at 212-555-0147' | custos pii analyze - --json
  custos pii analyze mail.txt --entities EMAIL_ADDRESS,PHONE_NUMBER --threshold 0.7

Offsets in JSON are char offsets (as Presidio counts them) plus byte offsets.
Values are masked in the table unless --show-values; JSON carries no values.")]
    Analyze {
        /// File to read, or `-` for standard input.
        #[arg(default_value = "-")]
        input: PathBuf,
        /// Only these entity types (comma-separated).
        #[arg(long, value_delimiter = ',')]
        entities: Vec<String>,
        /// Minimum score, 0 to 1 (default: `[pii] threshold`, else 0.5).
        #[arg(long)]
        threshold: Option<f32>,
        /// Show the detected values in the table.
        #[arg(long)]
        show_values: bool,
        /// Exit 1 when anything is found (for CI and hooks).
        #[arg(long)]
        fail_on_findings: bool,
    },
    /// Replace personal data in a file or standard input, per entity type.
    #[command(
        after_help = "Operators: replace[:TEXT] (default, <ENTITY_TYPE>), redact, mask[:CHAR[:COUNT[:end]]],
hash[:sha256|sha512] (salt from CUSTOS_PII_HASH_SALT), encrypt, decrypt (key from CUSTOS_PII_KEY),
keep, pseudonymize (<PERSON_1>, <PERSON_2>…; with --vault, reversible by `custos pii deanonymize`).

Examples:
  custos pii anonymize chat.txt
  custos pii anonymize chat.txt --operator PHONE_NUMBER=mask:*:4:end --operator PERSON=pseudonymize
  CUSTOS_PII_KEY=$(cat key.hex) custos pii anonymize in.txt --default-operator pseudonymize --vault vault.json"
    )]
    Anonymize {
        /// File to read, or `-` for standard input.
        #[arg(default_value = "-")]
        input: PathBuf,
        /// ENTITY=OPERATOR, repeatable.
        #[arg(long = "operator", value_name = "ENTITY=OP")]
        operators: Vec<String>,
        /// Operator for entity types without their own.
        #[arg(long, default_value = "replace", value_name = "OP")]
        default_operator: String,
        /// Only these entity types (comma-separated).
        #[arg(long, value_delimiter = ',')]
        entities: Vec<String>,
        /// Minimum score, 0 to 1.
        #[arg(long)]
        threshold: Option<f32>,
        /// Write pseudonyms' encrypted values here (needs CUSTOS_PII_KEY); merged if it exists.
        #[arg(long, value_name = "FILE")]
        vault: Option<PathBuf>,
        /// Write the result here instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Scan or anonymize a dataset: CSV by column, JSON Lines by field, text or logs by line.
    #[command(after_help = "Examples:
  custos pii dataset users.csv --report report.json            count PII per column
  custos pii dataset users.csv --columns email,notes -o clean.csv
  custos pii dataset chats.jsonl.gz --fields messages.content -o clean.jsonl --on-error stop
  custos pii dataset app.log -o app.redacted.log --operator IP_ADDRESS=hash
  CUSTOS_PII_KEY=$(cat key.hex) custos pii dataset tickets.csv -o tickets.pseudo.csv \\
      --default-operator pseudonymize --vault tickets.vault.json   # reversible: pii deanonymize

The format follows the extension (.csv, .tsv, .jsonl, .ndjson, else text; .gz is read
through); gzip is detected by content. Records stream through all cores in batches, so
memory stays flat; output keeps input order. A broken JSON line is reported with its line
number and left out of the output (--on-error skip, the default) or stops the run (stop).
Without -o nothing is written but the report.")]
    Dataset {
        /// The dataset file, or `-` for standard input.
        input: PathBuf,
        /// Override the format: csv, tsv, jsonl or text.
        #[arg(long, value_name = "FORMAT")]
        format: Option<String>,
        /// CSV columns to scan (header names, comma-separated; default all).
        #[arg(long, value_delimiter = ',')]
        columns: Vec<String>,
        /// JSON Lines field paths to scan, dot-separated (default: every string).
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// Write the anonymized dataset here (`-` for standard output).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// ENTITY=OPERATOR, repeatable (see `custos pii anonymize --help`).
        #[arg(long = "operator", value_name = "ENTITY=OP")]
        operators: Vec<String>,
        /// Operator for entity types without their own.
        #[arg(long, default_value = "replace", value_name = "OP")]
        default_operator: String,
        /// Write counts per column and entity here (JSON).
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// skip: report broken records and go on; stop: fail at the first.
        #[arg(long, default_value = "skip", value_parser = ["skip", "stop"])]
        on_error: String,
        /// Worker threads (default: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// With pseudonymize: keep each replaced value, encrypted with CUSTOS_PII_KEY, in this
        /// vault (added to when it exists), so `custos pii deanonymize` can put them back.
        #[arg(long, value_name = "FILE")]
        vault: Option<PathBuf>,
    },
    /// Put pseudonymized values back, from a vault (needs CUSTOS_PII_KEY).
    Deanonymize {
        /// File to read, or `-` for standard input.
        #[arg(default_value = "-")]
        input: PathBuf,
        /// The vault `pii anonymize --vault` wrote (encrypted with CUSTOS_PII_KEY).
        #[arg(long, value_name = "FILE")]
        vault: PathBuf,
    },
    /// Score detection on labeled data: precision, recall and F1 per entity.
    #[command(
        after_help = "DATA is a JSON array (or JSON Lines) of Presidio evaluator samples:
  {\"full_text\": \"…\", \"spans\": [{\"entity_type\": \"PERSON\", \"start_position\": 0, \"end_position\": 8}]}
Offsets count characters. Matching is per token, as Presidio's evaluator does; label names
like GPE, LOC, ORG, DATE are mapped to custos' entity types; types custos does not detect are
listed and not scored.

Examples:
  custos pii generate --count 2000 -o synth.json && custos pii eval synth.json"
    )]
    Eval {
        /// Labeled data: Presidio evaluator samples, a JSON array or JSON Lines (below).
        data: PathBuf,
        /// Minimum score, 0 to 1.
        #[arg(long)]
        threshold: Option<f32>,
        /// Also print up to N samples where predictions and labels differ (shows values).
        #[arg(long, value_name = "N", default_value_t = 0)]
        errors: usize,
    },
    /// Write a seeded synthetic labeled corpus (Presidio evaluator format).
    Generate {
        /// Records to generate.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Random seed: the same seed gives the same records.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Every Nth sample holds no PII (0: none), for false-positive counts.
        #[arg(long, default_value_t = 5)]
        clean_every: usize,
        /// Write here instead of standard output (JSON Lines).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print a new random AES-256-SIV key (hex) for encrypt and vaults.
    Keygen,
    /// List the entity types the analyzer reports.
    Entities,
}

pub(crate) fn read_input(path: &Path) -> Result<String> {
    Ok(read_input_mapped(path)?.0)
}

fn read_input_mapped(path: &Path) -> Result<(String, ByteMap)> {
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    // Invalid UTF-8 is replaced, not refused: a stray byte must not hide the PII around it.
    let bytes = match String::from_utf8(bytes) {
        Ok(s) => return Ok((s, ByteMap::default())),
        Err(e) => e.into_bytes(),
    };
    let mut text = String::with_capacity(bytes.len() + 16);
    let mut map = ByteMap::default();
    let mut orig = 0;
    for chunk in bytes.utf8_chunks() {
        map.starts.push((text.len(), orig));
        text.push_str(chunk.valid());
        orig += chunk.valid().len();
        if !chunk.invalid().is_empty() {
            map.starts.push((text.len(), orig));
            text.push(char::REPLACEMENT_CHARACTER);
            orig += chunk.invalid().len();
        }
    }
    Ok((text, map))
}

fn write_output(path: Option<&Path>, data: &str) -> Result<()> {
    match path {
        Some(p) => std::fs::write(p, data).with_context(|| format!("cannot write {}", p.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(data.as_bytes())
                .and_then(|_| out.flush())
                .context("cannot write to standard output")
        }
    }
}

pub(crate) fn key_from_env() -> Result<Option<Key>> {
    match std::env::var(KEY_ENV) {
        Ok(v) if !v.trim().is_empty() => {
            Ok(Some(Key::parse(&v).with_context(|| {
                format!("{KEY_ENV} is not a valid key")
            })?))
        }
        _ => Ok(None),
    }
}

fn build_anonymizer(operators: &[String], default_operator: &str) -> Result<Anonymizer> {
    let mut ops = HashMap::new();
    for o in operators {
        let (entity, op) = o.split_once('=').with_context(|| {
            format!("--operator {o:?}: expected ENTITY=OPERATOR, e.g. PERSON=mask")
        })?;
        ops.insert(entity.trim().to_string(), Operator::parse(op.trim())?);
    }
    Ok(Anonymizer {
        operators: ops,
        default: Operator::parse(default_operator)?,
        salt: std::env::var(SALT_ENV).unwrap_or_default().into_bytes(),
        key: key_from_env()?,
    })
}

fn check_threshold(t: Option<f32>) -> Result<Option<f32>> {
    match t {
        Some(v) if !(0.0..=1.0).contains(&v) => {
            bail!("--threshold must be between 0 and 1, got {v}")
        }
        t => Ok(t),
    }
}

/// Line (1-based) and column (1-based, in chars) of byte offset `b`.
fn line_col(text: &str, b: usize) -> (usize, usize) {
    let before = &text[..b];
    let line = before.bytes().filter(|&c| c == b'\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn mask_value(v: &str) -> String {
    let n = v.chars().count();
    let shown: String = v.chars().take(if n > 6 { 2 } else { 1 }).collect();
    format!(
        "{shown}{}",
        "*".repeat(n.saturating_sub(shown.chars().count()).min(12))
    )
}

/// Writes findings as a JSON array, one object a line, without building the
/// whole document in memory (a 100 MB input can hold millions of findings).
/// `start`/`end` count chars, as Presidio does; `start_byte`/`end_byte` are
/// offsets into the original input (before invalid UTF-8 was replaced).
fn write_findings_json(text: &str, findings: &[Finding], map: &ByteMap) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut chars = CharOffsets::new(text);
    out.write_all(b"[")?;
    for (i, f) in findings.iter().enumerate() {
        let (start, end) = (chars.char_at(f.start), chars.char_at(f.end));
        let v = json!({
            "entity_type": f.entity_type,
            "start": start,
            "end": end,
            "score": (f64::from(f.score) * 100.0).round() / 100.0,
            "start_byte": map.original(f.start),
            "end_byte": map.original(f.end),
            "recognizer": f.recognizer,
        });
        out.write_all(if i == 0 { b"\n  " } else { b",\n  " })?;
        serde_json::to_writer(&mut out, &v)?;
    }
    out.write_all(if findings.is_empty() {
        b"]\n"
    } else {
        b"\n]\n"
    })?;
    out.flush()?;
    Ok(())
}

/// Where each stretch of the decoded text came from in the input bytes, so
/// offsets can be reported against the file even after invalid UTF-8 was
/// replaced by U+FFFD (3 bytes that stand for 1 to 3 input bytes).
#[derive(Default)]
struct ByteMap {
    /// (offset in text, offset in input) at each stretch start; empty when valid.
    starts: Vec<(usize, usize)>,
}

impl ByteMap {
    fn original(&self, b: usize) -> usize {
        match self.starts.partition_point(|&(t, _)| t <= b) {
            0 => b,
            k => {
                let (t, o) = self.starts[k - 1];
                o + (b - t)
            }
        }
    }
}

fn load_samples(path: &Path) -> Result<Vec<Sample>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed)
            .with_context(|| format!("{}: not a JSON array of samples", path.display()));
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a sample", path.display(), i + 1))?,
        );
    }
    Ok(out)
}

pub fn run(cmd: PiiCmd, config: &PiiConfig, json_out: bool) -> Result<ExitCode> {
    let analyzer = || Analyzer::new(config).context("invalid [pii] configuration");
    match cmd {
        PiiCmd::Analyze {
            input,
            entities,
            threshold,
            show_values,
            fail_on_findings,
        } => {
            let threshold = check_threshold(threshold)?;
            let analyzer = analyzer()?;
            let (text, map) = read_input_mapped(&input)?;
            let req = Request {
                entities: (!entities.is_empty()).then_some(entities.as_slice()),
                threshold,
                ..Default::default()
            };
            let found = analyzer.analyze_with(&text, &req);
            if json_out {
                write_findings_json(&text, &found, &map)?;
            } else if found.is_empty() {
                println!("no personal data found");
            } else {
                let rows: Vec<Vec<String>> = found
                    .iter()
                    .map(|f| {
                        let (l, c) = line_col(&text, f.start);
                        let v = &text[f.start..f.end];
                        vec![
                            format!("{l}:{c}"),
                            f.entity_type.to_string(),
                            format!("{:.2}", f.score),
                            if show_values {
                                v.to_string()
                            } else {
                                mask_value(v)
                            },
                        ]
                    })
                    .collect();
                output::table(&["AT", "ENTITY", "SCORE", "VALUE"], &rows);
            }
            Ok(if fail_on_findings && !found.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        PiiCmd::Anonymize {
            input,
            operators,
            default_operator,
            entities,
            threshold,
            vault,
            output: out,
        } => {
            let threshold = check_threshold(threshold)?;
            let anonymizer = build_anonymizer(&operators, &default_operator)?;
            if vault.is_some() && anonymizer.key.is_none() {
                bail!("--vault needs a key to encrypt the values it holds: set {KEY_ENV} (`custos pii keygen` makes one)");
            }
            let analyzer = analyzer()?;
            let text = read_input(&input)?;
            let req = Request {
                entities: (!entities.is_empty()).then_some(entities.as_slice()),
                threshold,
                ..Default::default()
            };
            let mut found = analyzer.analyze_with(&text, &req);
            if anonymizer.decrypts() {
                if anonymizer.key.is_none() {
                    bail!("decrypt needs the key the values were encrypted with: set {KEY_ENV}");
                }
                let (sealed, unopened) =
                    anonymizer.encrypted_findings(&text, &analyzer.supported_entities());
                // Decrypt acts on ciphertext only: plain values of its types are left as
                // they are, and nothing the analyzer saw inside a token counts.
                found.retain(|f| {
                    let op = anonymizer
                        .operators
                        .get(f.entity_type.as_ref())
                        .unwrap_or(&anonymizer.default);
                    !matches!(op, Operator::Decrypt {})
                        && !sealed.iter().any(|s| f.start < s.end && s.start < f.end)
                });
                found.extend(sealed);
                if unopened > 0 {
                    eprintln!(
                        "warning: {} did not open with this key as a type decrypt is set for; left as they are",
                        output::count(unopened, "encrypted value")
                    );
                }
            }
            let (mut existing, mut pseudo) = open_vault(vault.as_deref(), &anonymizer)?;
            let result = anonymizer.apply(&text, &found, &mut pseudo)?;
            if let Some(p) = &vault {
                save_vault(p, &mut existing, &mut pseudo)?;
            }
            if json_out {
                let mut chars = CharOffsets::new(&result.text);
                let items: Vec<_> = result
                    .items
                    .iter()
                    .map(|i| json!({"start": chars.char_at(i.start), "end": chars.char_at(i.end), "entity_type": i.entity_type, "text": i.text, "operator": i.operator}))
                    .collect();
                let body =
                    serde_json::to_string_pretty(&json!({"text": result.text, "items": items}))?
                        + "\n";
                write_output(out.as_deref(), &body)?;
            } else {
                write_output(out.as_deref(), &result.text)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        PiiCmd::Dataset {
            input,
            format,
            columns,
            fields,
            output: out,
            operators,
            default_operator,
            report,
            on_error,
            threads,
            vault,
        } => {
            let analyzer = analyzer()?;
            let anonymizer = match &out {
                Some(_) => Some(build_anonymizer(&operators, &default_operator)?),
                None => None,
            };
            if vault.is_some() {
                match &anonymizer {
                    None => bail!("--vault keeps the values an anonymized copy replaced: give -o FILE too"),
                    Some(a) if a.key.is_none() => bail!("--vault needs a key to encrypt the values it holds: set {KEY_ENV} (`custos pii keygen` makes one)"),
                    Some(_) => {}
                }
            }
            let (mut existing, pseudo) = match &anonymizer {
                Some(a) => open_vault(vault.as_deref(), a)?,
                None => (Vault::default(), Pseudonyms::default()),
            };
            let pseudo = std::sync::Mutex::new(pseudo);
            let name = input.to_string_lossy().into_owned();
            let tsv = name.trim_end_matches(".gz").ends_with(".tsv");
            let (fmt, delimiter) = match format.as_deref() {
                None => (Format::from_path(&name), if tsv { b'\t' } else { b',' }),
                Some("csv") => (Format::Csv, b','),
                Some("tsv") => (Format::Csv, b'\t'),
                Some("jsonl") | Some("ndjson") => (Format::Jsonl, b','),
                Some("text") | Some("log") => (Format::Text, b','),
                Some(other) => bail!("--format {other:?}: expected csv, tsv, jsonl or text"),
            };
            let on_error = if on_error == "stop" {
                OnError::Stop
            } else {
                OnError::Skip
            };
            let opts = Options {
                format: fmt,
                columns,
                fields,
                delimiter,
                threads,
                on_error,
            };
            let (reader, total): (Box<dyn Read + Send>, Option<u64>) = if input == Path::new("-") {
                (Box::new(std::io::stdin()), None)
            } else {
                let f =
                    std::fs::File::open(&input).with_context(|| format!("cannot read {name}"))?;
                let len = f.metadata().ok().map(|m| m.len());
                (Box::new(f), len)
            };
            let reader =
                dataset::maybe_gunzip(reader).with_context(|| format!("cannot read {name}"))?;
            let show_progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let last = std::sync::Mutex::new(std::time::Instant::now());
            let progress = |read: u64| {
                if !show_progress {
                    return;
                }
                let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
                if l.elapsed() < std::time::Duration::from_millis(200) {
                    return;
                }
                *l = std::time::Instant::now();
                let mb = |b: u64| b as f64 / 1e6;
                match total {
                    // Compressed input: bytes read are compressed bytes, so the share is right.
                    Some(t) if t > 0 => eprint!(
                        "\r{:.1} of {:.1} MB ({:.0}%)  ",
                        mb(read),
                        mb(t),
                        read as f64 * 100.0 / t as f64
                    ),
                    _ => eprint!("\r{:.1} MB  ", mb(read)),
                }
            };
            let to_stdout = out.as_deref() == Some(Path::new("-"));
            let mut sink: Option<Box<dyn Write>> = match &out {
                Some(_) if to_stdout => Some(Box::new(std::io::BufWriter::new(std::io::stdout()))),
                Some(p) => Some(Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot write {}", p.display()))?,
                ))),
                None => None,
            };
            let result = dataset::run(
                reader,
                sink.as_deref_mut().map(|w| w as &mut dyn Write),
                &analyzer,
                anonymizer.as_ref(),
                &pseudo,
                &opts,
                &progress,
            );
            if show_progress {
                eprint!("\r\x1b[K");
            }
            let r = result.with_context(|| name.clone())?;
            if let Some(p) = &vault {
                let mut pseudo = pseudo.into_inner().unwrap_or_else(|e| e.into_inner());
                save_vault(p, &mut existing, &mut pseudo)?;
            }
            if let Some(p) = &report {
                std::fs::write(p, serde_json::to_vec_pretty(&r)?)
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            for e in r.errors.iter().take(10) {
                eprintln!("warning: {name}:{}: {}", e.line, e.message);
            }
            let ragged = if r.ragged_rows > 0 {
                format!(", {} ragged rows", r.ragged_rows)
            } else {
                String::new()
            };
            let summary = format!(
                "{} records, {} with personal data, {} broken{ragged}",
                r.records, r.records_with_pii, r.errors_total
            );
            if to_stdout {
                eprintln!("{summary}");
            } else if json_out {
                output::json(&serde_json::to_value(&r)?);
            } else {
                let mut rows = Vec::new();
                for (col, ents) in &r.entities {
                    for (e, n) in ents {
                        rows.push(vec![col.clone(), e.clone(), n.to_string()]);
                    }
                }
                if !rows.is_empty() {
                    output::table(&["COLUMN", "ENTITY", "COUNT"], &rows);
                }
                println!("{summary}");
            }
            Ok(ExitCode::SUCCESS)
        }
        PiiCmd::Deanonymize { input, vault } => {
            let key = key_from_env()?
                .with_context(|| format!("set {KEY_ENV} to the key the vault was written with"))?;
            let v: Vault = serde_json::from_slice(
                &std::fs::read(&vault)
                    .with_context(|| format!("cannot read {}", vault.display()))?,
            )
            .with_context(|| format!("{}: not a custos vault", vault.display()))?;
            let text = read_input(&input)?;
            write_output(None, &v.reverse(&text, &key)?)?;
            Ok(ExitCode::SUCCESS)
        }
        PiiCmd::Eval {
            data,
            threshold,
            errors,
        } => {
            let threshold = check_threshold(threshold)?;
            let mut config = config.clone();
            if let Some(t) = threshold {
                config.threshold = t;
            }
            let analyzer = Analyzer::new(&config)?;
            let samples = load_samples(&data)?;
            let report = evaluate(&analyzer, &samples);
            if errors > 0 {
                print_errors(&analyzer, &samples, errors);
            }
            if json_out {
                output::json(&serde_json::to_value(&report)?);
                return Ok(ExitCode::SUCCESS);
            }
            let row = |name: &str, c: &custos_pii::eval::Counts| {
                vec![
                    name.to_string(),
                    format!("{:.3}", c.precision()),
                    format!("{:.3}", c.recall()),
                    format!("{:.3}", c.f1()),
                    c.tp.to_string(),
                    c.fp.to_string(),
                    c.fn_.to_string(),
                ]
            };
            let mut rows: Vec<Vec<String>> =
                report.per_entity.iter().map(|(e, c)| row(e, c)).collect();
            rows.push(row("OVERALL", &report.overall));
            output::table(
                &["ENTITY", "PRECISION", "RECALL", "F1", "TP", "FP", "FN"],
                &rows,
            );
            println!(
                "{} samples, {} tokens; {} clean samples with {} false-positive tokens (threshold {})",
                report.samples,
                report.tokens,
                report.clean_samples,
                report.false_positive_tokens_in_clean_samples,
                analyzer.threshold()
            );
            if !report.ignored_gold.is_empty() {
                let list: Vec<String> = report
                    .ignored_gold
                    .iter()
                    .map(|(e, n)| format!("{e} ({n})"))
                    .collect();
                println!(
                    "not scored (custos does not detect these): {}",
                    list.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        PiiCmd::Generate {
            count,
            seed,
            clean_every,
            output: out,
        } => {
            let samples = synth::generate(seed, count, clean_every);
            write_output(
                out.as_deref(),
                &(serde_json::to_string_pretty(&samples)? + "\n"),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        PiiCmd::Keygen => {
            let mut k = [0u8; KEY_LEN];
            getrandom::fill(&mut k).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
            println!("{}", hex::encode(k));
            Ok(ExitCode::SUCCESS)
        }
        PiiCmd::Entities => {
            let analyzer = analyzer()?;
            let e = analyzer.supported_entities();
            if json_out {
                output::json(&json!(e));
            } else {
                for x in e {
                    println!("{x}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints samples whose predicted spans differ from the labeled ones.
fn print_errors(analyzer: &Analyzer, samples: &[Sample], limit: usize) {
    let mut shown = 0;
    for s in samples {
        if shown >= limit {
            break;
        }
        let text = &s.full_text;
        let gold: Vec<(String, String)> = s
            .spans
            .iter()
            .map(|sp| {
                let v: String = text
                    .chars()
                    .skip(sp.start_position)
                    .take(sp.end_position.saturating_sub(sp.start_position))
                    .collect();
                (
                    custos_pii::eval::canonical_entity(&sp.entity_type).to_string(),
                    v,
                )
            })
            .collect();
        let pred: Vec<(String, String)> = analyzer
            .analyze(text)
            .iter()
            .map(|f| (f.entity_type.to_string(), text[f.start..f.end].to_string()))
            .collect();
        let missing: Vec<_> = gold.iter().filter(|g| !pred.contains(g)).collect();
        let extra: Vec<_> = pred.iter().filter(|p| !gold.contains(p)).collect();
        if missing.is_empty() && extra.is_empty() {
            continue;
        }
        shown += 1;
        println!("--- {text}");
        for (e, v) in missing {
            println!("  missed   {e:<18} {v:?}");
        }
        for (e, v) in extra {
            println!("  reported {e:<18} {v:?}");
        }
    }
}

/// The vault at `path` (a new one when there is none) and pseudonyms that continue its
/// numbering, so tokens stay unique across runs.
fn open_vault(path: Option<&Path>, anonymizer: &Anonymizer) -> Result<(Vault, Pseudonyms)> {
    let mut pseudo = Pseudonyms::default();
    let existing = match path {
        Some(p) if p.exists() => serde_json::from_slice::<Vault>(
            &std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| format!("{}: not a custos vault", p.display()))?,
        _ => Vault {
            version: 1,
            ..Vault::default()
        },
    };
    if let Some(k) = &anonymizer.key {
        for (token, enc) in &existing.entries {
            let entity = token
                .trim_start_matches('<')
                .rsplit_once('_')
                .map_or("", |(e, _)| e);
            if let Some(value) = k.decrypt(entity, enc) {
                pseudo.remember(entity, &value, token);
            }
        }
    }
    Ok((existing, pseudo))
}

/// Adds the values `pseudo` replaced (already encrypted) to the vault and writes it.
fn save_vault(path: &Path, existing: &mut Vault, pseudo: &mut Pseudonyms) -> Result<()> {
    existing.entries.extend(std::mem::take(&mut pseudo.vault));
    let data = serde_json::to_vec_pretty(existing)?;
    std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))
}

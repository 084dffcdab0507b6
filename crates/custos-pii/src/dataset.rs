//! Datasets: CSV (by column, header-aware), JSON Lines (by field path) and plain text or
//! logs (by line), streamed in batches through a pool of workers so memory stays flat on
//! multi-GB files; output keeps input order. Gzip input is detected by its magic bytes.
//! Broken records are reported with their line and skipped or fatal, per `OnError`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

use crate::analyzer::{Analyzer, Request};
use crate::anonymize::{Anonymizer, Pseudonyms};
use crate::finding::Finding;

/// Records per batch handed to a worker.
const BATCH: usize = 512;
/// Batches in flight per worker: bounds memory whatever the input size.
const IN_FLIGHT: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
    Text,
}

impl Format {
    /// From a file name (`.csv`, `.jsonl`, `.ndjson`, anything else text; `.gz` looked through).
    pub fn from_path(path: &str) -> Format {
        let p = path
            .strip_suffix(".gz")
            .unwrap_or(path)
            .to_ascii_lowercase();
        if p.ends_with(".csv") || p.ends_with(".tsv") {
            Format::Csv
        } else if p.ends_with(".jsonl") || p.ends_with(".ndjson") {
            Format::Jsonl
        } else {
            Format::Text
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Report the record (line number and reason), leave it out of the output, go on.
    Skip,
    /// Stop at the first broken record.
    Stop,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    /// CSV columns (header names) to scan; empty: all.
    pub columns: Vec<String>,
    /// JSONL field paths (`user.email`, `messages.content`); empty: every string.
    pub fields: Vec<String>,
    pub delimiter: u8,
    pub threads: usize,
    pub on_error: OnError,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("line {line}: {message}")]
    Record { line: u64, message: String },
    #[error("cannot read the input: {0}")]
    Read(std::io::Error),
    #[error("cannot write the output: {0}")]
    Write(std::io::Error),
    #[error("CSV: {0}")]
    Csv(String),
    #[error("CSV column {0:?} is not in the header ({1})")]
    Column(String, String),
}

/// A broken record.
#[derive(Debug, Clone, Serialize)]
pub struct RecordError {
    pub line: u64,
    pub message: String,
}

/// What a dataset run found: counts per column (or field, or `text`) per entity.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub records: u64,
    pub records_with_pii: u64,
    pub entities: BTreeMap<String, BTreeMap<String, u64>>,
    /// CSV rows with another number of fields than the header.
    pub ragged_rows: u64,
    pub errors: Vec<RecordError>,
    /// More errors than `errors` lists (it keeps the first 100).
    pub errors_total: u64,
}

impl Report {
    fn error(&mut self, line: u64, message: String) {
        self.errors_total += 1;
        if self.errors.len() < 100 {
            self.errors.push(RecordError { line, message });
        }
    }
}

/// Wraps `input` in a gzip decoder when it starts with gzip's magic bytes.
pub fn maybe_gunzip<'a, R: Read + Send + 'a>(
    input: R,
) -> std::io::Result<Box<dyn BufRead + Send + 'a>> {
    let mut r = BufReader::with_capacity(1 << 16, input);
    let head = r.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(r),
        )))
    } else {
        Ok(Box::new(r))
    }
}

/// One unit of work: a record's line number and its raw text (CSV: fields).
enum Record {
    Line(u64, String),
    Row(Vec<String>),
}

/// A processed record: output bytes (when anonymizing) and counts.
struct Done {
    out: Vec<u8>,
    counts: Vec<(usize, String)>,
    had_pii: bool,
    error: Option<(u64, String)>,
}

struct Ctx<'a> {
    analyzer: &'a Analyzer,
    anonymizer: Option<&'a Anonymizer>,
    pseudo: &'a Mutex<Pseudonyms>,
    opts: &'a Options,
    /// Column index → wanted (CSV), or field paths (JSONL).
    wanted_columns: Vec<bool>,
}

fn anonymize_value(ctx: &Ctx, text: &str, found: &[Finding]) -> String {
    match ctx.anonymizer {
        Some(a) if !found.is_empty() => {
            let mut p = ctx.pseudo.lock().unwrap_or_else(|e| e.into_inner());
            a.apply(text, found, &mut p)
                .map(|r| r.text)
                .unwrap_or_else(|_| text.to_string())
        }
        _ => text.to_string(),
    }
}

/// Applies `f` to every string under `path` (dot-separated; arrays fan out).
fn visit_path(v: &mut Value, path: &[&str], f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::Array(a) => a.iter_mut().for_each(|x| visit_path(x, path, f)),
        Value::String(s) if path.is_empty() => f(s),
        Value::Object(o) => match path.split_first() {
            Some((head, rest)) => {
                if let Some(x) = o.get_mut(*head) {
                    visit_path(x, rest, f);
                }
            }
            None => o.values_mut().for_each(|x| visit_path(x, path, f)),
        },
        _ => {}
    }
}

fn process(ctx: &Ctx, rec: Record, column_names: &[String]) -> Done {
    let mut counts = Vec::new();
    let mut had_pii = false;
    match rec {
        Record::Line(line, text) => match ctx.opts.format {
            Format::Jsonl => {
                if text.trim().is_empty() {
                    return Done {
                        out: b"\n".to_vec(),
                        counts,
                        had_pii,
                        error: None,
                    };
                }
                let mut v: Value = match serde_json::from_str(&text) {
                    Ok(v) => v,
                    Err(e) => {
                        return Done {
                            out: Vec::new(),
                            counts,
                            had_pii,
                            error: Some((line, format!("not JSON: {e}"))),
                        }
                    }
                };
                let paths: Vec<Vec<&str>> = if ctx.opts.fields.is_empty() {
                    vec![Vec::new()]
                } else {
                    ctx.opts
                        .fields
                        .iter()
                        .map(|p| p.split('.').collect())
                        .collect()
                };
                for (k, path) in paths.iter().enumerate() {
                    let label = ctx.opts.fields.get(k).map_or("*", String::as_str);
                    let context = [path.last().map(|p| p.to_lowercase()).unwrap_or_default()];
                    let req = Request {
                        context: &context,
                        ..Request::default()
                    };
                    visit_path(&mut v, path, &mut |s: &mut String| {
                        let found = ctx.analyzer.analyze_with(s, &req);
                        had_pii |= !found.is_empty();
                        counts.extend(
                            found
                                .iter()
                                .map(|f| (k, format!("{label}\u{0}{}", f.entity_type))),
                        );
                        *s = anonymize_value(ctx, s, &found);
                    });
                }
                let mut out = serde_json::to_vec(&v).unwrap_or_default();
                out.push(b'\n');
                Done {
                    out,
                    counts,
                    had_pii,
                    error: None,
                }
            }
            _ => {
                let found = ctx.analyzer.analyze(&text);
                had_pii = !found.is_empty();
                counts.extend(
                    found
                        .iter()
                        .map(|f| (0, format!("text\u{0}{}", f.entity_type))),
                );
                let mut out = anonymize_value(ctx, &text, &found).into_bytes();
                out.push(b'\n');
                Done {
                    out,
                    counts,
                    had_pii,
                    error: None,
                }
            }
        },
        Record::Row(fields) => {
            let mut row = Vec::with_capacity(fields.len());
            for (i, field) in fields.into_iter().enumerate() {
                if !ctx
                    .wanted_columns
                    .get(i)
                    .copied()
                    .unwrap_or(ctx.opts.columns.is_empty())
                {
                    row.push(field);
                    continue;
                }
                // The column's name is context: "Bob" in a `name` column is a person.
                let context = [column_names
                    .get(i)
                    .map(|n| n.to_lowercase())
                    .unwrap_or_default()];
                let req = Request {
                    context: &context,
                    ..Request::default()
                };
                let found = ctx.analyzer.analyze_with(&field, &req);
                had_pii |= !found.is_empty();
                let name = column_names
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("column {}", i + 1));
                counts.extend(
                    found
                        .iter()
                        .map(|f| (i, format!("{name}\u{0}{}", f.entity_type))),
                );
                row.push(anonymize_value(ctx, &field, &found));
            }
            let mut w = csv::WriterBuilder::new()
                .delimiter(ctx.opts.delimiter)
                .has_headers(false)
                .from_writer(Vec::new());
            let out = match w.write_record(&row) {
                Ok(()) => w.into_inner().unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            Done {
                out,
                counts,
                had_pii,
                error: None,
            }
        }
    }
}

/// Reads `input`, analyzes (and with an `anonymizer`, rewrites into `output`) every
/// record, and returns the report. Pseudonyms are numbered in `pseudo`, shared by all
/// records (seed it from a vault to continue one; read its `vault` after to write one).
/// `progress` is called with bytes read so far.
#[allow(clippy::too_many_arguments)]
pub fn run(
    input: Box<dyn BufRead + Send + '_>,
    mut output: Option<&mut dyn Write>,
    analyzer: &Analyzer,
    anonymizer: Option<&Anonymizer>,
    pseudo: &Mutex<Pseudonyms>,
    opts: &Options,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, DatasetError> {
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let input = Counting {
        inner: input,
        read: counter.clone(),
    };
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads
    };
    let mut report = Report::default();

    // CSV: header first (written through unchanged), then rows.
    let mut csv_reader = None;
    let mut lines = None;
    let mut column_names = Vec::new();
    let mut wanted_columns = Vec::new();
    if opts.format == Format::Csv {
        let mut r = csv::ReaderBuilder::new()
            .delimiter(opts.delimiter)
            .flexible(true)
            .has_headers(true)
            .from_reader(input);
        let header = r
            .byte_headers()
            .map_err(|e| DatasetError::Csv(e.to_string()))?
            .clone();
        column_names = header
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect();
        for c in &opts.columns {
            if !column_names.contains(c) {
                return Err(DatasetError::Column(c.clone(), column_names.join(", ")));
            }
        }
        wanted_columns = column_names
            .iter()
            .map(|n| opts.columns.is_empty() || opts.columns.contains(n))
            .collect();
        if let Some(out) = output.as_deref_mut() {
            let mut w = csv::WriterBuilder::new()
                .delimiter(opts.delimiter)
                .from_writer(Vec::new());
            w.write_record(&header)
                .map_err(|e| DatasetError::Csv(e.to_string()))?;
            out.write_all(&w.into_inner().unwrap_or_default())
                .map_err(DatasetError::Write)?;
        }
        csv_reader = Some(r);
    } else {
        lines = Some(input);
    }
    let ctx = Ctx {
        analyzer,
        anonymizer,
        pseudo,
        opts,
        wanted_columns,
    };
    let header_len = column_names.len();

    let (job_tx, job_rx) = sync_channel::<(u64, Vec<Record>)>(threads * IN_FLIGHT);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = sync_channel::<(u64, Vec<Done>)>(threads * IN_FLIGHT);
    std::thread::scope(|scope| -> Result<(), DatasetError> {
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            let ctx = &ctx;
            let names = &column_names;
            scope.spawn(move || loop {
                let job = job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok((seq, batch)) = job else { break };
                let done: Vec<Done> = batch.into_iter().map(|r| process(ctx, r, names)).collect();
                if done_tx.send((seq, done)).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);
        // The reader runs on its own thread; this one writes, in order.
        let reader = scope.spawn(move || -> Result<(u64, u64), DatasetError> {
            let mut seq = 0u64;
            let mut batch = Vec::with_capacity(BATCH);
            let mut ragged = 0u64;
            let send = |batch: &mut Vec<Record>, seq: &mut u64| -> bool {
                let full = std::mem::replace(batch, Vec::with_capacity(BATCH));
                let ok = job_tx.send((*seq, full)).is_ok();
                *seq += 1;
                ok
            };
            if let Some(mut r) = csv_reader {
                let mut rec = csv::ByteRecord::new();
                loop {
                    match r.read_byte_record(&mut rec) {
                        Ok(false) => break,
                        Ok(true) => {
                            if rec.len() != header_len {
                                ragged += 1;
                            }
                            batch.push(Record::Row(
                                rec.iter()
                                    .map(|f| String::from_utf8_lossy(f).into_owned())
                                    .collect(),
                            ));
                        }
                        Err(e) => return Err(DatasetError::Csv(e.to_string())),
                    }
                    if batch.len() == BATCH && !send(&mut batch, &mut seq) {
                        return Ok((seq, ragged));
                    }
                }
            } else if let Some(mut r) = lines {
                let mut line_no = 0u64;
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    let n = r.read_until(b'\n', &mut buf).map_err(DatasetError::Read)?;
                    if n == 0 {
                        break;
                    }
                    line_no += 1;
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                        if buf.last() == Some(&b'\r') {
                            buf.pop();
                        }
                    }
                    batch.push(Record::Line(
                        line_no,
                        String::from_utf8_lossy(&buf).into_owned(),
                    ));
                    if batch.len() == BATCH && !send(&mut batch, &mut seq) {
                        return Ok((seq, ragged));
                    }
                }
            }
            if !batch.is_empty() {
                send(&mut batch, &mut seq);
            }
            Ok((seq, ragged))
        });
        let mut pending: BTreeMap<u64, Vec<Done>> = BTreeMap::new();
        let mut next = 0u64;
        let mut failure = None;
        for (seq, done) in done_rx.iter() {
            pending.insert(seq, done);
            while let Some(batch) = pending.remove(&next) {
                next += 1;
                for d in batch {
                    report.records += 1;
                    if let Some((line, message)) = d.error {
                        if opts.on_error == OnError::Stop && failure.is_none() {
                            failure = Some(DatasetError::Record {
                                line,
                                message: message.clone(),
                            });
                        }
                        report.error(line, message);
                        continue;
                    }
                    if d.had_pii {
                        report.records_with_pii += 1;
                    }
                    for (_, key) in d.counts {
                        let (col, entity) = key.split_once('\u{0}').unwrap_or(("", &key));
                        *report
                            .entities
                            .entry(col.to_string())
                            .or_default()
                            .entry(entity.to_string())
                            .or_default() += 1;
                    }
                    if failure.is_none() {
                        if let Some(out) = output.as_deref_mut() {
                            out.write_all(&d.out).map_err(DatasetError::Write)?;
                        }
                    }
                }
            }
            progress(counter.load(std::sync::atomic::Ordering::Relaxed));
            if failure.is_some() {
                break;
            }
        }
        drop(done_rx);
        let (_, ragged) = match reader.join() {
            Ok(r) => r?,
            Err(_) => {
                return Err(DatasetError::Read(std::io::Error::other(
                    "the reader thread failed",
                )))
            }
        };
        report.ragged_rows = ragged;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })?;
    if let Some(out) = output {
        out.flush().map_err(DatasetError::Write)?;
    }
    Ok(report)
}

/// Counts bytes read, for progress.
struct Counting<R> {
    inner: R,
    read: Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.read
            .fetch_add(amt as u64, std::sync::atomic::Ordering::Relaxed);
        self.inner.consume(amt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(format: Format) -> Options {
        Options {
            format,
            columns: Vec::new(),
            fields: Vec::new(),
            delimiter: b',',
            threads: 3,
            on_error: OnError::Skip,
        }
    }

    fn go(input: &str, o: &Options) -> (String, Report) {
        let mut out = Vec::new();
        let a = Anonymizer::default();
        let r = run(
            Box::new(input.as_bytes()),
            Some(&mut out),
            &Analyzer::default(),
            Some(&a),
            &Default::default(),
            o,
            &|_| {},
        )
        .unwrap();
        (String::from_utf8(out).unwrap(), r)
    }

    #[test]
    fn csv_by_column_keeps_order_and_counts() {
        let mut input = String::from("id,email,note\n");
        for i in 0..2000 {
            input.push_str(&format!(
                "{i},user{i}@example.com,\"call (212) 555-{:04}\"\n",
                i % 10000
            ));
        }
        input.push_str("9999,ragged\n");
        let mut o = opts(Format::Csv);
        o.columns = vec!["email".into(), "note".into()];
        let (out, r) = go(&input, &o);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "id,email,note");
        assert_eq!(lines[1], "0,<EMAIL_ADDRESS>,call <PHONE_NUMBER>");
        assert!(lines[1500].starts_with("1499,"), "order kept");
        assert_eq!(r.records, 2001);
        assert_eq!(r.entities["email"]["EMAIL_ADDRESS"], 2000);
        assert_eq!(r.ragged_rows, 1);
        o.columns = vec!["nope".into()];
        let e = run(
            Box::new(input.as_bytes()),
            None,
            &Analyzer::default(),
            None,
            &Default::default(),
            &o,
            &|_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("nope") && e.to_string().contains("email"));
    }

    #[test]
    fn jsonl_by_field_path_with_broken_lines() {
        let input = "{\"user\":{\"email\":\"a@example.com\"},\"text\":\"mail b@example.com\"}\n{broken\n{\"user\":[{\"email\":\"c@example.com\"}]}\n";
        let mut o = opts(Format::Jsonl);
        o.fields = vec!["user.email".into()];
        let (out, r) = go(input, &o);
        assert!(
            out.contains("\"<EMAIL_ADDRESS>\"") && out.contains("b@example.com"),
            "{out}"
        );
        assert!(
            !out.contains("broken"),
            "a broken line is not passed through"
        );
        assert_eq!(r.errors[0].line, 2);
        assert_eq!(r.entities["user.email"]["EMAIL_ADDRESS"], 2);
        o.on_error = OnError::Stop;
        let e = run(
            Box::new(input.as_bytes()),
            None,
            &Analyzer::default(),
            None,
            &Default::default(),
            &o,
            &|_| {},
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
    }

    #[test]
    fn gzip_is_read_transparently() {
        use flate2::write::GzEncoder;
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"write to x@example.com\n").unwrap();
        let data = gz.finish().unwrap();
        let input = maybe_gunzip(&data[..]).unwrap();
        let mut out = Vec::new();
        let r = run(
            input,
            Some(&mut out),
            &Analyzer::default(),
            Some(&Anonymizer::default()),
            &Default::default(),
            &opts(Format::Text),
            &|_| {},
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "write to <EMAIL_ADDRESS>\n"
        );
        assert_eq!(r.entities["text"]["EMAIL_ADDRESS"], 1);
    }
}

//! Data subjects and their records: a subject is named as a user writes it
//! (`email:jane@example.com`, `phone:+1 555 0100`, `id:123`, `text:Jane Q. Doe`); `rewrite`
//! streams a CSV or JSON Lines file into a new version without the records that name the
//! subject (or with the subject's values pseudonymized), counting what it did.

use sha2::{Digest, Sha256};
use std::io::{BufRead, Write};

/// The longest JSON Lines record read (a larger one is an error, not a silent skip).
pub const MAX_LINE: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("{0}")]
    Subject(String),
    #[error("line {line}: {why}")]
    Record { line: u64, why: String },
    #[error("reading or writing the data failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Someone whose records are erased or exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// Matched case-insensitively anywhere in a value, at address boundaries.
    Email(String),
    /// The digits, matched against digit runs in values (a leading country code aside).
    Phone(String),
    /// A whole value equal to it (trimmed).
    Id(String),
    /// A case-sensitive substring of a value.
    Text(String),
}

impl Subject {
    pub fn parse(s: &str) -> Result<Subject, EraseError> {
        let bad = |why: &str| EraseError::Subject(format!("subject {s:?}: {why}"));
        let (kind, v) = s
            .split_once(':')
            .ok_or_else(|| bad("write KIND:VALUE, e.g. email:jane@example.com, phone:+15550100, id:123 or text:\"Jane Doe\""))?;
        let v = v.trim();
        if v.is_empty() {
            return Err(bad("the value is empty"));
        }
        Ok(match kind {
            "email" => {
                let (local, domain) = v
                    .split_once('@')
                    .ok_or_else(|| bad("not an e-mail address"))?;
                if local.is_empty() || !domain.contains('.') {
                    return Err(bad("not an e-mail address"));
                }
                Subject::Email(v.to_lowercase())
            }
            "phone" => {
                let digits: String = v.chars().filter(char::is_ascii_digit).collect();
                if digits.len() < 7 {
                    return Err(bad("a phone number has at least 7 digits"));
                }
                Subject::Phone(digits)
            }
            "id" => Subject::Id(v.to_owned()),
            "text" => {
                if v.chars().count() < 3 {
                    return Err(bad("a text subject has at least 3 characters"));
                }
                Subject::Text(v.to_owned())
            }
            _ => return Err(bad("the kind is email, phone, id or text")),
        })
    }

    /// The subject as written canonically (`email:` lower-cased, `phone:` digits).
    pub fn label(&self) -> String {
        match self {
            Subject::Email(v) => format!("email:{v}"),
            Subject::Phone(v) => format!("phone:{v}"),
            Subject::Id(v) => format!("id:{v}"),
            Subject::Text(v) => format!("text:{v}"),
        }
    }

    /// `sha256:HEX` of salt ‖ label: who the receipt is about, unlinkable without the salt.
    pub fn digest(&self, salt: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(self.label().as_bytes());
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// Does `value` name this subject?
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Subject::Email(e) => email_in(value, e),
            Subject::Phone(d) => phone_in(value, d),
            Subject::Id(id) => value.trim() == id,
            Subject::Text(t) => value.contains(t.as_str()),
        }
    }
}

fn email_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._%+-".contains(c)
}

fn email_in(value: &str, email: &str) -> bool {
    if value.len() < email.len() {
        return false;
    }
    let lower = value.to_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(email) {
        let start = from + i;
        let end = start + email.len();
        let before = lower[..start].chars().next_back();
        let after = lower[end..].chars().next();
        // Not part of a longer address (jane@example.com in xjane@example.com or
        // jane@example.company).
        let after_ok = match after {
            None => true,
            Some('.') => !lower[end + 1..].starts_with(|c: char| c.is_ascii_alphanumeric()),
            Some(c) => !(c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        };
        if !before.is_some_and(email_char) && after_ok {
            return true;
        }
        from = start + 1;
    }
    false
}

fn phone_in(value: &str, digits: &str) -> bool {
    // Runs of digits and the separators phone numbers are written with.
    let mut run = String::new();
    let check = |run: &str| {
        let d: String = run.chars().filter(char::is_ascii_digit).collect();
        d.len() >= 7
            && (d == digits || d.ends_with(digits) || digits.ends_with(&d) && d.len() >= 10)
    };
    for c in value.chars() {
        if c.is_ascii_digit() || " -().+/".contains(c) {
            run.push(c);
        } else {
            if check(&run) {
                return true;
            }
            run.clear();
        }
    }
    check(&run)
}

/// `sha256:HEX` of salt ‖ the subjects' labels (sorted, one per line): one request's subject,
/// however many identifiers name them.
pub fn subjects_digest(subjects: &[Subject], salt: &[u8]) -> String {
    let mut labels: Vec<String> = subjects.iter().map(Subject::label).collect();
    labels.sort();
    labels.dedup();
    let mut h = Sha256::new();
    h.update(salt);
    h.update(labels.join("\n").as_bytes());
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The file formats erasure rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// By extension: `.csv`, `.jsonl`/`.ndjson`.
    pub fn of(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// What to do with a record that names a subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Leave it out of the new version.
    Delete,
    /// Keep it with each value that names the subject replaced by `token`.
    Pseudonymize { token: String },
}

/// What a rewrite did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    pub records: u64,
    /// Records that named a subject (left out, or pseudonymized).
    pub matched: u64,
    pub values_replaced: u64,
}

/// Copies `input` to `output` in `format`, handling the records that name any of `subjects`
/// per `mode`. Records that do not are written unchanged (JSON Lines byte for byte).
pub fn rewrite(
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    format: Format,
    subjects: &[Subject],
    mode: &Mode,
) -> Result<Outcome, EraseError> {
    match format {
        Format::Csv => rewrite_csv(input, output, subjects, mode),
        Format::Jsonl => rewrite_jsonl(input, output, subjects, mode),
    }
}

fn names(subjects: &[Subject], v: &str) -> bool {
    subjects.iter().any(|s| s.matches(v))
}

fn rewrite_csv(
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    subjects: &[Subject],
    mode: &Mode,
) -> Result<Outcome, EraseError> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let mut w = csv::WriterBuilder::new().flexible(true).from_writer(output);
    let csv_err = |e: csv::Error| {
        let line = e.position().map_or(0, |p| p.line());
        EraseError::Record {
            line,
            why: e.to_string(),
        }
    };
    let headers = r.byte_headers().map_err(csv_err)?.clone();
    w.write_byte_record(&headers).map_err(csv_err)?;
    let mut out = Outcome::default();
    let mut rec = csv::ByteRecord::new();
    while r.read_byte_record(&mut rec).map_err(csv_err)? {
        out.records += 1;
        let fields: Vec<String> = rec
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        if !fields.iter().any(|f| names(subjects, f)) {
            w.write_byte_record(&rec).map_err(csv_err)?;
            continue;
        }
        out.matched += 1;
        if let Mode::Pseudonymize { token } = mode {
            let replaced: Vec<String> = fields
                .into_iter()
                .map(|f| {
                    if names(subjects, &f) {
                        out.values_replaced += 1;
                        token.clone()
                    } else {
                        f
                    }
                })
                .collect();
            w.write_record(&replaced).map_err(csv_err)?;
        }
    }
    w.flush()?;
    Ok(out)
}

/// Replaces the string leaves of `v` that name a subject; true when any did.
fn scrub(
    v: &mut serde_json::Value,
    subjects: &[Subject],
    token: Option<&str>,
    n: &mut u64,
) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) if names(subjects, s) => {
            if let Some(t) = token {
                *s = t.to_owned();
            }
            *n += 1;
            true
        }
        Value::Number(x) if names(subjects, &x.to_string()) => {
            if let Some(t) = token {
                *v = Value::String(t.to_owned());
            }
            *n += 1;
            true
        }
        // Every leaf is visited (no short circuit): each one naming the subject is replaced.
        Value::Array(a) => {
            let mut any = false;
            for x in a.iter_mut() {
                any |= scrub(x, subjects, token, n);
            }
            any
        }
        Value::Object(o) => {
            let mut any = false;
            for x in o.values_mut() {
                any |= scrub(x, subjects, token, n);
            }
            any
        }
        _ => false,
    }
}

fn rewrite_jsonl(
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    subjects: &[Subject],
    mode: &Mode,
) -> Result<Outcome, EraseError> {
    let mut out = Outcome::default();
    let mut line = Vec::new();
    let mut n = 0u64;
    loop {
        line.clear();
        let read =
            std::io::Read::take(&mut *input, MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        n += 1;
        if line.len() > MAX_LINE {
            return Err(EraseError::Record {
                line: n,
                why: format!("longer than {} MiB", MAX_LINE >> 20),
            });
        }
        let text = std::str::from_utf8(&line).map_err(|e| EraseError::Record {
            line: n,
            why: format!("not UTF-8: {e}"),
        })?;
        if text.trim().is_empty() {
            output.write_all(&line)?;
            continue;
        }
        let mut v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| EraseError::Record {
                line: n,
                why: format!("not JSON: {e}"),
            })?;
        out.records += 1;
        let mut hits = 0;
        let token = match mode {
            Mode::Delete => None,
            Mode::Pseudonymize { token } => Some(token.as_str()),
        };
        if !scrub(&mut v, subjects, token, &mut hits) {
            output.write_all(&line)?;
            continue;
        }
        out.matched += 1;
        if token.is_some() {
            out.values_replaced += hits;
            output.write_all(v.to_string().as_bytes())?;
            output.write_all(b"\n")?;
        }
    }
    output.flush()?;
    Ok(out)
}

/// The records of `input` that name any of `subjects`, as JSON (a CSV row as an object by
/// its header), at most `limit`: a data subject access request's answer.
pub fn find(
    input: &mut dyn BufRead,
    format: Format,
    subjects: &[Subject],
    limit: usize,
) -> Result<Vec<serde_json::Value>, EraseError> {
    let mut found = Vec::new();
    match format {
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(true)
                .from_reader(input);
            let csv_err = |e: csv::Error| EraseError::Record {
                line: e.position().map_or(0, |p| p.line()),
                why: e.to_string(),
            };
            let headers: Vec<String> = r
                .byte_headers()
                .map_err(csv_err)?
                .iter()
                .map(|h| String::from_utf8_lossy(h).into_owned())
                .collect();
            let mut rec = csv::ByteRecord::new();
            while found.len() < limit && r.read_byte_record(&mut rec).map_err(csv_err)? {
                let fields: Vec<String> = rec
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect();
                if fields.iter().any(|f| names(subjects, f)) {
                    let mut o = serde_json::Map::new();
                    for (i, f) in fields.into_iter().enumerate() {
                        let k = headers
                            .get(i)
                            .cloned()
                            .unwrap_or_else(|| format!("column_{}", i + 1));
                        o.insert(k, serde_json::Value::String(f));
                    }
                    found.push(serde_json::Value::Object(o));
                }
            }
        }
        Format::Jsonl => {
            let mut line = Vec::new();
            let mut n = 0u64;
            while found.len() < limit {
                line.clear();
                let read = std::io::Read::take(&mut *input, MAX_LINE as u64 + 1)
                    .read_until(b'\n', &mut line)?;
                if read == 0 {
                    break;
                }
                n += 1;
                if line.len() > MAX_LINE {
                    return Err(EraseError::Record {
                        line: n,
                        why: format!("longer than {} MiB", MAX_LINE >> 20),
                    });
                }
                let text = std::str::from_utf8(&line).map_err(|e| EraseError::Record {
                    line: n,
                    why: format!("not UTF-8: {e}"),
                })?;
                if text.trim().is_empty() {
                    continue;
                }
                let mut v: serde_json::Value =
                    serde_json::from_str(text).map_err(|e| EraseError::Record {
                        line: n,
                        why: format!("not JSON: {e}"),
                    })?;
                let original = v.clone();
                let mut hits = 0;
                if scrub(&mut v, subjects, None, &mut hits) {
                    found.push(original);
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(format: Format, text: &str, subjects: &[&str], mode: Mode) -> (String, Outcome) {
        let subjects: Vec<Subject> = subjects
            .iter()
            .map(|s| Subject::parse(s).unwrap())
            .collect();
        let mut out = Vec::new();
        let o = rewrite(&mut text.as_bytes(), &mut out, format, &subjects, &mode).unwrap();
        (String::from_utf8(out).unwrap(), o)
    }

    #[test]
    fn subjects_match_as_people_write_them() {
        let jane = Subject::parse("email:Jane.Doe@Example.com").unwrap();
        assert!(jane.matches("contact jane.doe@example.com today"));
        assert!(jane.matches("JANE.DOE@EXAMPLE.COM"));
        assert!(jane.matches("mail jane.doe@example.com."));
        assert!(!jane.matches("xjane.doe@example.com"));
        assert!(!jane.matches("jane.doe@example.company"));
        let phone = Subject::parse("phone:+1 (555) 010-0199").unwrap();
        assert!(phone.matches("call 555-010-0199 after 5"));
        assert!(phone.matches("+15550100199"));
        assert!(!phone.matches("order 5550100"));
        let id = Subject::parse("id:123").unwrap();
        assert!(id.matches(" 123 ") && !id.matches("1234"));
        for bad in ["jane", "email:jane", "phone:12", "kind:x", "id:", "text:ab"] {
            assert!(Subject::parse(bad).is_err(), "{bad}");
        }
        assert_ne!(jane.digest(b"a"), jane.digest(b"b"));
    }

    #[test]
    fn csv_records_naming_the_subject_are_left_out_or_pseudonymized() {
        let text = "id,email,note\n1,jane@example.com,hi\n2,bob@example.com,\"says \"\"hi\"\", jane@example.com\"\n3,carol@example.com,ok\n";
        let (out, o) = run(Format::Csv, text, &["email:jane@example.com"], Mode::Delete);
        assert_eq!(out, "id,email,note\n3,carol@example.com,ok\n");
        assert_eq!((o.records, o.matched), (3, 2));
        let (out, o) = run(
            Format::Csv,
            text,
            &["email:jane@example.com"],
            Mode::Pseudonymize {
                token: "[erased]".into(),
            },
        );
        assert!(
            out.contains("1,[erased],hi") && !out.contains("jane"),
            "{out}"
        );
        assert_eq!(o.values_replaced, 2);
    }

    #[test]
    fn jsonl_keeps_other_lines_byte_for_byte_and_names_a_bad_line() {
        let text = "{\"u\": \"bob\",  \"n\": 1}\n{\"u\": {\"mail\": \"JANE@example.com\"}}\n\n{\"ids\": [123]}\n";
        let (out, o) = run(
            Format::Jsonl,
            text,
            &["email:jane@example.com", "id:123"],
            Mode::Delete,
        );
        assert_eq!(out, "{\"u\": \"bob\",  \"n\": 1}\n\n");
        assert_eq!((o.records, o.matched), (3, 2));
        let subjects = [Subject::parse("id:1").unwrap()];
        let e = rewrite(
            &mut "{}\n{oops\n".as_bytes(),
            &mut Vec::new(),
            Format::Jsonl,
            &subjects,
            &Mode::Delete,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("line 2: not JSON"), "{e}");
    }

    #[test]
    fn find_returns_the_subjects_records() {
        let subjects = [Subject::parse("email:jane@example.com").unwrap()];
        let csv = "id,email\n1,jane@example.com\n2,bob@example.com\n";
        let f = find(&mut csv.as_bytes(), Format::Csv, &subjects, 10).unwrap();
        assert_eq!(
            f,
            vec![serde_json::json!({"id": "1", "email": "jane@example.com"})]
        );
        let jl = "{\"a\": 1}\n{\"m\": \"Jane@example.com\"}\n";
        let f = find(&mut jl.as_bytes(), Format::Jsonl, &subjects, 10).unwrap();
        assert_eq!(f, vec![serde_json::json!({"m": "Jane@example.com"})]);
    }

    proptest! {
        #[test]
        fn nothing_naming_the_subject_survives_and_nothing_else_is_lost(
            rows in proptest::collection::vec(("[a-z]{1,8}", any::<bool>()), 0..40)
        ) {
            let mut text = String::from("name,email\n");
            for (n, jane) in &rows {
                let mail = if *jane { "jane@example.com".to_owned() } else { format!("{n}@example.org") };
                text.push_str(&format!("{n},{mail}\n"));
            }
            let (out, o) = run(Format::Csv, &text, &["email:jane@example.com"], Mode::Delete);
            prop_assert!(!out.contains("jane@example.com"));
            let kept = rows.iter().filter(|r| !r.1).count() as u64;
            prop_assert_eq!(o.records - o.matched, kept);
            prop_assert_eq!(out.lines().count() as u64, kept + 1);
        }
    }
}

//! Erasure in Parquet files: a first pass reads the rows to find those naming a subject, a
//! second copies every column chunk without them (or with the subject's text values
//! replaced), keeping the schema and the row groups. Flat schemas only: a nested column
//! (list, map, struct) is refused with an error rather than rewritten wrongly.

use super::erase::{EraseError, Mode, Outcome, Subject};
use parquet::column::reader::ColumnReader;
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, DoubleType, FixedLenByteArrayType, FloatType, Int32Type,
    Int64Type, Int96Type,
};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// By extension: `.parquet`.
pub fn is_parquet(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

fn bad(why: impl std::fmt::Display) -> EraseError {
    EraseError::Record {
        line: 0,
        why: format!("not a Parquet file custos can rewrite: {why}"),
    }
}

fn field_text(f: &Field) -> Option<String> {
    Some(match f {
        Field::Null => return None,
        Field::Str(s) => s.clone(),
        Field::Bytes(b) => String::from_utf8_lossy(b.data()).into_owned(),
        other => other.to_string(),
    })
}

/// Which rows name a subject: `keep[row]`, and (pseudonymizing) the text cells to replace.
struct Marks {
    keep: Vec<bool>,
    replace: HashSet<(usize, usize)>,
    outcome: Outcome,
}

/// The `parquet` crate panics on some malformed pages: a damaged file ends in an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, EraseError>) -> Result<T, EraseError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(bad("its pages cannot be decoded")))
}

fn open(path: &Path) -> Result<SerializedFileReader<std::fs::File>, EraseError> {
    let file = std::fs::File::open(path)?;
    let reader = SerializedFileReader::new(file).map_err(bad)?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    if let Some(c) = schema
        .columns()
        .iter()
        .find(|c| c.max_rep_level() > 0 || c.path().parts().len() != 1)
    {
        return Err(bad(format!(
            "column {} is nested (a list, map or struct); only flat schemas are rewritten",
            c.path()
        )));
    }
    Ok(reader)
}

fn mark(
    reader: &SerializedFileReader<std::fs::File>,
    subjects: &[Subject],
    mode: &Mode,
    want_values: Option<usize>,
) -> Result<(Marks, Vec<serde_json::Map<String, serde_json::Value>>), EraseError> {
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let text_col: Vec<bool> = schema
        .columns()
        .iter()
        .map(|c| c.physical_type() == parquet::basic::Type::BYTE_ARRAY)
        .collect();
    let mut m = Marks {
        keep: Vec::new(),
        replace: HashSet::new(),
        outcome: Outcome::default(),
    };
    let mut found = Vec::new();
    for (r, row) in reader.get_row_iter(None).map_err(bad)?.enumerate() {
        let row = row.map_err(|e| EraseError::Record {
            line: r as u64 + 1,
            why: e.to_string(),
        })?;
        m.outcome.records += 1;
        let mut hits = Vec::new();
        for (c, (_, f)) in row.get_column_iter().enumerate() {
            if let Some(t) = field_text(f) {
                if subjects.iter().any(|s| s.matches(&t)) {
                    hits.push(c);
                }
            }
        }
        if hits.is_empty() {
            m.keep.push(true);
            continue;
        }
        m.outcome.matched += 1;
        if want_values.is_some_and(|n| found.len() < n) {
            let mut rec = serde_json::Map::new();
            for (name, f) in row.get_column_iter() {
                rec.insert(
                    name.clone(),
                    field_text(f).map_or(serde_json::Value::Null, serde_json::Value::String),
                );
            }
            found.push(rec);
        }
        // Pseudonymized when every cell naming the subject is text; otherwise left out, since
        // a number or date cannot hold the token.
        let pseudo = matches!(mode, Mode::Pseudonymize { .. })
            && hits
                .iter()
                .all(|&c| text_col.get(c).copied().unwrap_or(false));
        if pseudo {
            m.outcome.values_replaced += hits.len() as u64;
            m.replace.extend(hits.into_iter().map(|c| (r, c)));
            m.keep.push(true);
        } else {
            m.keep.push(false);
        }
    }
    Ok((m, found))
}

/// The rows of a Parquet file that name a subject (each as column → text), at most `limit`.
pub fn find_parquet(
    path: &Path,
    subjects: &[Subject],
    limit: usize,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, EraseError> {
    guarded(|| {
        let reader = open(path)?;
        Ok(mark(&reader, subjects, &Mode::Delete, Some(limit))?.1)
    })
}

fn same<T: Clone>(_: usize, v: &T) -> T {
    v.clone()
}

/// Copies the flat column `values`/`defs` of one row group, keeping rows per `keep` (from
/// `first`, the group's first row in the file).
fn filter<T: Clone>(
    values: &[T],
    defs: Option<&[i16]>,
    max_def: i16,
    rows: usize,
    first: usize,
    keep: &[bool],
    mut replace: impl FnMut(usize, &T) -> T,
) -> (Vec<T>, Vec<i16>) {
    let mut out = Vec::with_capacity(values.len());
    let mut out_defs = Vec::new();
    let mut vi = 0;
    for r in 0..rows {
        let def = defs.map_or(max_def, |d| d.get(r).copied().unwrap_or(0));
        let present = def == max_def;
        let value = if present {
            let v = values.get(vi);
            vi += 1;
            v
        } else {
            None
        };
        if !keep.get(first + r).copied().unwrap_or(true) {
            continue;
        }
        if defs.is_some() {
            out_defs.push(def);
        }
        if let Some(v) = value {
            out.push(replace(first + r, v));
        }
    }
    (out, out_defs)
}

/// Copies `input` to `output` (a new file) without the records that name any of `subjects`,
/// or with their text values replaced (`Mode::Pseudonymize`); row groups and schema stay.
pub fn rewrite_parquet(
    input: &Path,
    output: &Path,
    subjects: &[Subject],
    mode: &Mode,
) -> Result<Outcome, EraseError> {
    guarded(|| {
        let reader = open(input)?;
        let (marks, _) = mark(&reader, subjects, mode, None)?;
        if marks.outcome.matched == 0 {
            return Ok(marks.outcome);
        }
        let meta = reader.metadata();
        let schema = meta.file_metadata().schema_descr_ptr();
        let props = WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .set_created_by(concat!("custos ", env!("CARGO_PKG_VERSION")).into())
            .build();
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(output)?;
        let mut writer = SerializedFileWriter::new(out, schema.root_schema_ptr(), Arc::new(props))
            .map_err(bad)?;
        let token = match mode {
            Mode::Pseudonymize { token } => token.clone(),
            Mode::Delete => String::new(),
        };
        let mut first = 0usize;
        for g in 0..reader.num_row_groups() {
            let rg = reader.get_row_group(g).map_err(bad)?;
            let rows = usize::try_from(rg.metadata().num_rows()).map_err(bad)?;
            let mut group = writer.next_row_group().map_err(bad)?;
            let mut c = 0;
            while let Some(mut col) = group.next_column().map_err(bad)? {
                let descr = schema.column(c);
                let max_def = descr.max_def_level();
                let reader = rg.get_column_reader(c).map_err(bad)?;
                let keep = &marks.keep;
                macro_rules! copy {
                    ($r:expr, $t:ty, $replace:expr) => {{
                        let mut r = $r;
                        let mut values = Vec::new();
                        let mut defs = Vec::new();
                        r.read_records(rows, (max_def > 0).then_some(&mut defs), None, &mut values)
                            .map_err(bad)?;
                        let d = (max_def > 0).then_some(defs.as_slice());
                        let (v, nd) = filter(&values, d, max_def, rows, first, keep, $replace);
                        col.typed::<$t>()
                            .write_batch(&v, (max_def > 0).then_some(nd.as_slice()), None)
                            .map_err(bad)?;
                    }};
                }
                match reader {
                    ColumnReader::BoolColumnReader(r) => copy!(r, BoolType, same),
                    ColumnReader::Int32ColumnReader(r) => copy!(r, Int32Type, same),
                    ColumnReader::Int64ColumnReader(r) => copy!(r, Int64Type, same),
                    ColumnReader::Int96ColumnReader(r) => copy!(r, Int96Type, same),
                    ColumnReader::FloatColumnReader(r) => copy!(r, FloatType, same),
                    ColumnReader::DoubleColumnReader(r) => copy!(r, DoubleType, same),
                    ColumnReader::FixedLenByteArrayColumnReader(r) => {
                        copy!(r, FixedLenByteArrayType, same)
                    }
                    ColumnReader::ByteArrayColumnReader(r) => {
                        copy!(r, ByteArrayType, |row: usize, v: &ByteArray| if marks
                            .replace
                            .contains(&(row, c))
                        {
                            ByteArray::from(token.as_bytes().to_vec())
                        } else {
                            v.clone()
                        })
                    }
                }
                col.close().map_err(bad)?;
                c += 1;
            }
            group.close().map_err(bad)?;
            first += rows;
        }
        writer.close().map_err(bad)?;
        Ok(marks.outcome)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::data_type::ByteArrayType;

    /// A file of (email optional text, n int64 required) rows in groups of two.
    fn write(path: &Path, rows: &[(Option<&str>, i64)]) {
        let schema = parquet::schema::parser::parse_message_type(
            "message m { optional binary email (UTF8); required int64 n; }",
        )
        .unwrap();
        let f = std::fs::File::create(path).unwrap();
        let mut w =
            SerializedFileWriter::new(f, Arc::new(schema), Arc::new(WriterProperties::default()))
                .unwrap();
        for chunk in rows.chunks(2) {
            let mut g = w.next_row_group().unwrap();
            let mut c = g.next_column().unwrap().unwrap();
            let vals: Vec<ByteArray> = chunk
                .iter()
                .filter_map(|(e, _)| e.map(ByteArray::from))
                .collect();
            let defs: Vec<i16> = chunk.iter().map(|(e, _)| i16::from(e.is_some())).collect();
            c.typed::<ByteArrayType>()
                .write_batch(&vals, Some(&defs), None)
                .unwrap();
            c.close().unwrap();
            let mut c = g.next_column().unwrap().unwrap();
            let ns: Vec<i64> = chunk.iter().map(|(_, n)| *n).collect();
            c.typed::<Int64Type>().write_batch(&ns, None, None).unwrap();
            c.close().unwrap();
            g.close().unwrap();
        }
        w.close().unwrap();
    }

    fn read(path: &Path) -> Vec<(Option<String>, i64)> {
        let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
        r.get_row_iter(None)
            .unwrap()
            .map(|row| {
                let row = row.unwrap();
                let cols: Vec<&Field> = row.get_column_iter().map(|(_, f)| f).collect();
                let e = match cols[0] {
                    Field::Str(s) => Some(s.clone()),
                    _ => None,
                };
                let n = match cols[1] {
                    Field::Long(n) => *n,
                    other => panic!("{other:?}"),
                };
                (e, n)
            })
            .collect()
    }

    #[test]
    fn rows_naming_the_subject_leave_and_the_rest_stay_in_their_groups() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("a.parquet");
        write(
            &src,
            &[
                (Some("bob@example.com"), 1),
                (Some("Jane@Example.com"), 2),
                (None, 3),
                (Some("carol@example.com"), 4711),
                (Some("jane@example.com"), 5),
            ],
        );
        let jane = Subject::parse("email:jane@example.com").unwrap();
        let out = d.path().join("b.parquet");
        let o = rewrite_parquet(&src, &out, std::slice::from_ref(&jane), &Mode::Delete).unwrap();
        assert_eq!((o.records, o.matched), (5, 2));
        assert_eq!(
            read(&out),
            [
                (Some("bob@example.com".into()), 1),
                (None, 3),
                (Some("carol@example.com".into()), 4711)
            ]
        );
        // A number names a subject too (id:4711): that row leaves even when pseudonymizing.
        let id = Subject::parse("id:4711").unwrap();
        let out2 = d.path().join("c.parquet");
        let o = rewrite_parquet(
            &src,
            &out2,
            &[jane.clone(), id],
            &Mode::Pseudonymize {
                token: "[erased]".into(),
            },
        )
        .unwrap();
        assert_eq!((o.matched, o.values_replaced), (3, 2));
        let rows = read(&out2);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[1], (Some("[erased]".into()), 2));
        assert!(!rows.iter().any(|r| r.1 == 4711));
        let found = find_parquet(&src, &[jane], 10).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0]["n"], "2");
    }

    #[test]
    fn damaged_and_nested_files_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.parquet");
        std::fs::write(&p, b"PAR1 not really PAR1").unwrap();
        let s = [Subject::parse("id:1").unwrap()];
        assert!(rewrite_parquet(&p, &d.path().join("y.parquet"), &s, &Mode::Delete).is_err());
        let schema = parquet::schema::parser::parse_message_type(
            "message m { optional group tags (LIST) { repeated group list { optional binary element (UTF8); } } }",
        )
        .unwrap();
        let f = std::fs::File::create(&p).unwrap();
        let w =
            SerializedFileWriter::new(f, Arc::new(schema), Arc::new(WriterProperties::default()))
                .unwrap();
        w.close().unwrap();
        let e = rewrite_parquet(&p, &d.path().join("z.parquet"), &s, &Mode::Delete).unwrap_err();
        assert!(e.to_string().contains("nested"), "{e}");
    }
}

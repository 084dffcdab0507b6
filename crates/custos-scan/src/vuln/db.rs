//! The advisory database: OSV records imported from folders of JSON/YAML files or OSV's
//! per-ecosystem `all.zip` exports into one SQLite file, indexed by (ecosystem, package), so a
//! scan reads only the records of the packages it looks up. Imports are transactional per
//! source; a malformed record is reported by file and entry and skipped.

use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::osv::{index_name, Record};

/// Largest single record accepted (uncompressed).
const MAX_RECORD: u64 = 32 << 20;
/// A zip entry inflating more than this many times its compressed size is a bomb.
const MAX_RATIO: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("advisory database {path}: {error}")]
    Sqlite {
        path: String,
        error: rusqlite::Error,
    },
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: not a zip archive: {error}")]
    Zip { path: String, error: String },
}

/// A record that could not be imported.
#[derive(Debug, Clone, Serialize)]
pub struct ImportWarning {
    pub source: String,
    pub entry: String,
    pub message: String,
}

#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub records: u64,
    pub withdrawn: u64,
    /// Records skipped, and why.
    pub warnings: Vec<ImportWarning>,
    /// Records imported whose severity vectors cannot be scored: the scan falls back to the
    /// database's rating for them, and the user should know why a score is missing.
    pub unscored: Vec<ImportWarning>,
}

#[derive(Debug, Serialize)]
pub struct SourceStatus {
    pub path: String,
    pub imported_at: i64,
    pub records: u64,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub path: String,
    pub records: u64,
    pub by_ecosystem: Vec<(String, u64)>,
    pub sources: Vec<SourceStatus>,
    /// Newest `modified` time among the records (RFC 3339), a proxy for the data's age.
    pub newest_modified: Option<String>,
    /// When the last import finished (Unix seconds).
    pub last_import: Option<i64>,
}

pub struct VulnDb {
    conn: Connection,
    path: String,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl VulnDb {
    /// Opens (creating when needed) the database at `path`.
    pub fn open(path: &Path) -> Result<VulnDb, DbError> {
        let shown = path.display().to_string();
        let err = |error| DbError::Sqlite {
            path: shown.clone(),
            error,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| DbError::Io {
                path: dir.display().to_string(),
                error,
            })?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS advisories (id TEXT PRIMARY KEY, modified TEXT, withdrawn INTEGER NOT NULL, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS affects (ecosystem TEXT NOT NULL, name TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (ecosystem, name, id)) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS affects_by_id ON affects (id);
             CREATE TABLE IF NOT EXISTS sources (path TEXT PRIMARY KEY, imported_at INTEGER NOT NULL, records INTEGER NOT NULL);",
        )
        .map_err(err)?;
        Ok(VulnDb { conn, path: shown })
    }

    fn sql(&self, error: rusqlite::Error) -> DbError {
        DbError::Sqlite {
            path: self.path.clone(),
            error,
        }
    }

    /// Imports a folder (walked for .json/.yaml/.yml/.zip), a zip, or one record file.
    pub fn import(&mut self, source: &Path) -> Result<ImportReport, DbError> {
        let mut report = ImportReport::default();
        let shown = source.display().to_string();
        let io = |error| DbError::Io {
            path: shown.clone(),
            error,
        };
        let meta = std::fs::metadata(source).map_err(io)?;
        let files: Vec<PathBuf> = if meta.is_dir() {
            let mut v: Vec<PathBuf> = ignore::WalkBuilder::new(source)
                .standard_filters(false)
                .build()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
                .map(|e| e.into_path())
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("json" | "yaml" | "yml" | "zip")
                    )
                })
                .collect();
            v.sort();
            v
        } else {
            vec![source.to_path_buf()]
        };
        let tx = self.conn.transaction().map_err(|error| DbError::Sqlite {
            path: self.path.clone(),
            error,
        })?;
        for f in &files {
            let name = f.display().to_string();
            if f.extension().and_then(|e| e.to_str()) == Some("zip") {
                import_zip(&tx, f, &mut report)?;
            } else {
                let meta = std::fs::metadata(f).map_err(|error| DbError::Io {
                    path: name.clone(),
                    error,
                })?;
                if meta.len() > MAX_RECORD {
                    report.warnings.push(ImportWarning {
                        source: name,
                        entry: String::new(),
                        message: format!("{} bytes is too large for an OSV record", meta.len()),
                    });
                    continue;
                }
                let bytes = std::fs::read(f).map_err(|error| DbError::Io {
                    path: name.clone(),
                    error,
                })?;
                let yaml = !name.ends_with(".json");
                insert_record(&tx, &bytes, yaml, &name, "", &mut report).map_err(|error| {
                    DbError::Sqlite {
                        path: name.clone(),
                        error,
                    }
                })?;
            }
        }
        tx.execute(
            "INSERT INTO sources (path, imported_at, records) VALUES (?1, ?2, ?3)
             ON CONFLICT(path) DO UPDATE SET imported_at = excluded.imported_at, records = excluded.records",
            params![std::fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf()).display().to_string(), now(), report.records],
        )
        .map_err(|error| DbError::Sqlite { path: self.path.clone(), error })?;
        tx.commit().map_err(|error| DbError::Sqlite {
            path: self.path.clone(),
            error,
        })?;
        Ok(report)
    }

    /// Every non-withdrawn record that names this package.
    pub fn lookup(&self, ecosystem: &str, name: &str) -> Result<Vec<Record>, DbError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT a.body FROM affects f JOIN advisories a ON a.id = f.id
                 WHERE f.ecosystem = ?1 AND f.name = ?2 AND a.withdrawn = 0",
            )
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map(params![ecosystem, index_name(ecosystem, name)], |r| {
                r.get::<_, String>(0)
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for body in rows {
            let body = body.map_err(|e| self.sql(e))?;
            // Stored bodies were parsed on import; one that no longer parses is skipped.
            if let Ok(r) = serde_json::from_str::<Record>(&body) {
                out.push(r);
            }
        }
        Ok(out)
    }

    pub fn status(&self) -> Result<Status, DbError> {
        let q = |sql: &str| -> Result<Option<String>, DbError> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, Option<String>>(0))
                .optional()
                .map(Option::flatten)
                .map_err(|e| self.sql(e))
        };
        let records: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM advisories WHERE withdrawn = 0",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        let mut st = self
            .conn
            .prepare("SELECT ecosystem, count(DISTINCT id) FROM affects GROUP BY ecosystem ORDER BY ecosystem")
            .map_err(|e| self.sql(e))?;
        let by_ecosystem = st
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(|e| self.sql(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sql(e))?;
        let mut st = self
            .conn
            .prepare("SELECT path, imported_at, records FROM sources ORDER BY imported_at")
            .map_err(|e| self.sql(e))?;
        let sources = st
            .query_map([], |r| {
                Ok(SourceStatus {
                    path: r.get(0)?,
                    imported_at: r.get(1)?,
                    records: r.get::<_, i64>(2)? as u64,
                })
            })
            .map_err(|e| self.sql(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sql(e))?;
        let last_import = sources.iter().map(|s| s.imported_at).max();
        Ok(Status {
            path: self.path.clone(),
            records: records as u64,
            by_ecosystem,
            sources,
            newest_modified: q("SELECT max(modified) FROM advisories")?,
            last_import,
        })
    }
}

fn insert_record(
    tx: &rusqlite::Transaction,
    bytes: &[u8],
    yaml: bool,
    source: &str,
    entry: &str,
    report: &mut ImportReport,
) -> Result<(), rusqlite::Error> {
    let warn = |report: &mut ImportReport, message: String| {
        report.warnings.push(ImportWarning {
            source: source.to_string(),
            entry: entry.to_string(),
            message,
        });
    };
    let value: serde_json::Value = if yaml {
        match serde_norway::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => {
                warn(report, format!("not YAML: {e}"));
                return Ok(());
            }
        }
    } else {
        match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => {
                warn(report, format!("not JSON: {e}"));
                return Ok(());
            }
        }
    };
    let record: Record = match serde_json::from_value(value.clone()) {
        Ok(r) => r,
        Err(e) => {
            warn(report, format!("not an OSV record: {e}"));
            return Ok(());
        }
    };
    if record.id.is_empty() {
        warn(report, "the record has an empty id".into());
        return Ok(());
    }
    // Newer data wins: an older copy of a record does not overwrite a newer one.
    let existing: Option<Option<String>> = tx
        .prepare_cached("SELECT modified FROM advisories WHERE id = ?1")?
        .query_row(params![record.id], |r| r.get(0))
        .optional()?;
    if let (Some(Some(old)), Some(new)) = (&existing, &record.modified) {
        if old > new {
            return Ok(());
        }
    }
    for sev in record
        .severity
        .iter()
        .chain(record.affected.iter().flat_map(|a| a.severity.iter()))
        .filter(|s| s.kind.starts_with("CVSS_V"))
    {
        if let Err(e) = super::cvss::score(&sev.score) {
            report.unscored.push(ImportWarning {
                source: source.to_string(),
                entry: if entry.is_empty() {
                    record.id.clone()
                } else {
                    format!("{entry} ({})", record.id)
                },
                message: format!("{} vector `{}` cannot be scored: {e}", sev.kind, sev.score),
            });
        }
    }
    let withdrawn = record.withdrawn.is_some();
    tx.prepare_cached(
        "INSERT INTO advisories (id, modified, withdrawn, body) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(id) DO UPDATE SET modified = excluded.modified, withdrawn = excluded.withdrawn, body = excluded.body",
    )?
    .execute(params![record.id, record.modified, withdrawn, value.to_string()])?;
    // Only a record seen before has index rows to replace.
    if existing.is_some() {
        tx.prepare_cached("DELETE FROM affects WHERE id = ?1")?
            .execute(params![record.id])?;
    }
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO affects (ecosystem, name, id) VALUES (?1, ?2, ?3)",
    )?;
    for a in &record.affected {
        if let Some(p) = &a.package {
            let eco = p.ecosystem.split(':').next().unwrap_or(&p.ecosystem);
            insert.execute(params![eco, index_name(eco, &p.name), record.id])?;
        }
    }
    if withdrawn {
        report.withdrawn += 1;
    } else {
        report.records += 1;
    }
    Ok(())
}

fn import_zip(
    tx: &rusqlite::Transaction,
    path: &Path,
    report: &mut ImportReport,
) -> Result<(), DbError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|error| DbError::Io {
        path: shown.clone(),
        error,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| DbError::Zip {
        path: shown.clone(),
        error: e.to_string(),
    })?;
    for i in 0..archive.len() {
        let mut entry = match archive.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                report.warnings.push(ImportWarning {
                    source: shown.clone(),
                    entry: format!("#{i}"),
                    message: e.to_string(),
                });
                continue;
            }
        };
        let name = match entry.name() {
            Ok(n) => n.into_owned(),
            Err(e) => {
                report.warnings.push(ImportWarning {
                    source: shown.clone(),
                    entry: format!("#{i}"),
                    message: format!("unreadable name: {e}"),
                });
                continue;
            }
        };
        if entry.is_dir()
            || !(name.ends_with(".json") || name.ends_with(".yaml") || name.ends_with(".yml"))
        {
            continue;
        }
        let (size, packed) = (entry.size(), entry.compressed_size().max(1));
        if size > MAX_RECORD || size / packed > MAX_RATIO {
            report.warnings.push(ImportWarning {
                source: shown.clone(),
                entry: name,
                message: format!(
                    "skipped: {size} bytes from {packed} compressed looks like a zip bomb"
                ),
            });
            continue;
        }
        // The header's size is not trusted: read at most the limit.
        let mut bytes = Vec::with_capacity(size as usize);
        if let Err(e) = (&mut entry).take(MAX_RECORD + 1).read_to_end(&mut bytes) {
            report.warnings.push(ImportWarning {
                source: shown.clone(),
                entry: name,
                message: format!("cannot inflate: {e}"),
            });
            continue;
        }
        if bytes.len() as u64 > MAX_RECORD {
            report.warnings.push(ImportWarning {
                source: shown.clone(),
                entry: name,
                message: "skipped: larger than its header said".into(),
            });
            continue;
        }
        let yaml = !name.ends_with(".json");
        insert_record(tx, &bytes, yaml, &shown, &name, report).map_err(|error| {
            DbError::Sqlite {
                path: shown.clone(),
                error,
            }
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const REC: &str = r#"{"id":"RUSTSEC-2099-0001","modified":"2099-01-01T00:00:00Z","aliases":["CVE-2099-1"],
        "affected":[{"package":{"ecosystem":"crates.io","name":"foo"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.2.0"}]}]}]}"#;

    #[test]
    fn import_folder_and_zip_then_lookup() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("osv");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a.json"), REC).unwrap();
        std::fs::write(src.join("broken.json"), "{").unwrap();
        std::fs::write(src.join("c.json"), r#"{"id":"RUSTSEC-9","severity":[{"type":"CVSS_V4","score":"CVSS:4.0/AV:N/AC:L"}],"affected":[]}"#).unwrap();
        std::fs::write(src.join("b.yaml"), "id: PYSEC-1\naffected:\n  - package: {ecosystem: PyPI, name: Django_Foo}\n    versions: ['1.0']\n").unwrap();
        let zip_path = d.path().join("all.zip");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file("../../evil/GHSA-x.json", opts).unwrap();
        z.write_all(br#"{"id":"GHSA-x","withdrawn":"2020-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"npm","name":"y"},"versions":["1.0.0"]}]}"#).unwrap();
        z.start_file("bomb.json", opts).unwrap();
        z.write_all(&vec![b' '; 4 << 20]).unwrap();
        z.finish().unwrap();
        let mut db = VulnDb::open(&d.path().join("db/vulns.sqlite")).unwrap();
        let r = db.import(&src).unwrap();
        assert_eq!(r.records, 3, "a record with a bad vector is still imported");
        assert!(r.warnings.iter().any(|w| w.source.ends_with("broken.json")));
        assert_eq!(r.unscored.len(), 1);
        assert!(r.unscored[0].source.ends_with("c.json") && r.unscored[0].entry == "RUSTSEC-9");
        assert!(
            r.unscored[0].message.contains("missing base metric"),
            "{}",
            r.unscored[0].message
        );
        let r = db.import(&zip_path).unwrap();
        assert_eq!((r.records, r.withdrawn), (0, 1));
        assert!(r
            .warnings
            .iter()
            .any(|w| w.entry == "bomb.json" && w.message.contains("bomb")));
        assert!(!d.path().join("evil").exists(), "nothing is extracted");
        assert_eq!(db.lookup("crates.io", "foo").unwrap().len(), 1);
        assert_eq!(
            db.lookup("PyPI", "django-foo").unwrap().len(),
            1,
            "names normalized"
        );
        assert!(
            db.lookup("npm", "y").unwrap().is_empty(),
            "withdrawn records are ignored"
        );
        let s = db.status().unwrap();
        assert_eq!(s.records, 3);
        assert_eq!(s.sources.len(), 2);
        assert!(matches!(
            VulnDb::open(d.path()).err(),
            Some(DbError::Sqlite { .. })
        ));
    }
}

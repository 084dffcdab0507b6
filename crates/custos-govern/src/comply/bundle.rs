//! The evidence bundle: a zip of evidence files, a manifest with every file's SHA-256, and a
//! signed statement of the manifest's digest (a signed note by the ledger's key). It verifies
//! with nothing but the archive and the public key; one changed byte anywhere names its file.

use super::export::{self, VerifiedExport};
use custos_ledger::{NoteSigner, NoteVerifier};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, Write};

pub const KIND: &str = "custos.comply-bundle/v1";
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";

/// Bounds on what verification reads, so a hostile archive cannot exhaust memory or disk.
const MAX_ENTRIES: usize = 200_000;
const MAX_FILE: u64 = 2 << 30;
const MAX_MANIFEST: u64 = 256 << 20;
/// An entry inflating more than this many times its compressed size is a bomb.
const MAX_RATIO: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a readable zip archive: {0}")]
    Zip(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write the bundle: {0}")]
    Write(String),
}

/// A path inside the bundle: relative, `/`-separated, no `.`/`..` parts, no backslashes.
pub fn safe_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && !p.chars().any(char::is_control)
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Writes the bundle: `files` (path → bytes), then the manifest and its signed statement.
/// Returns the manifest.
pub fn write<W: Write + Seek>(
    out: W,
    files: &BTreeMap<String, Vec<u8>>,
    period: &str,
    created_at: &str,
    signer: &NoteSigner,
) -> Result<Value, BundleError> {
    for p in files.keys() {
        if !safe_path(p) || p == MANIFEST || p == SIGNATURE {
            return Err(BundleError::Invalid(format!(
                "{p:?} cannot be a file of the bundle"
            )));
        }
    }
    let manifest = json!({
        "format": KIND,
        "period": period,
        "created_at": created_at,
        "signer": signer.verifier().name(),
        "files": files.iter().map(|(p, b)| json!({"path": p, "sha256": sha256(b), "size": b.len()})).collect::<Vec<_>>(),
    });
    let manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BundleError::Write(e.to_string()))?;
    let note = signer
        .sign_statement(
            KIND,
            &[
                format!("period {period}"),
                format!("manifest sha256:{}", sha256(&manifest_bytes)),
            ],
        )
        .map_err(|e| BundleError::Invalid(format!("the period cannot be signed: {e}")))?;
    let mut z = zip::ZipWriter::new(out);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(false);
    let w = |e: zip::result::ZipError| BundleError::Write(e.to_string());
    let io = |e: std::io::Error| BundleError::Write(e.to_string());
    for (p, b) in files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .chain([
            (MANIFEST, manifest_bytes.as_slice()),
            (SIGNATURE, note.as_bytes()),
        ])
    {
        let opts = if b.len() as u64 >= u32::MAX as u64 {
            opts.large_file(true)
        } else {
            opts
        };
        z.start_file(p, opts).map_err(w)?;
        z.write_all(b).map_err(io)?;
    }
    z.finish().map_err(w)?;
    Ok(manifest)
}

/// What a bundle holds, and every problem found; it verifies when `problems` is empty.
#[derive(Debug, Default)]
pub struct Verified {
    pub period: String,
    pub signer: String,
    pub files: usize,
    pub bytes: u64,
    pub ledger: Option<VerifiedExport>,
    /// Release proofs and erasure receipts inside that verified against the same key.
    pub proofs: usize,
    pub problems: Vec<String>,
}

fn read_entry<R: Read + Seek>(
    z: &mut zip::ZipArchive<R>,
    name: &str,
    max: u64,
) -> Result<Vec<u8>, String> {
    let mut e = z.by_name(name).map_err(|_| format!("{name}: missing"))?;
    let (size, packed) = (e.size(), e.compressed_size().max(1));
    if size > max || size / packed > MAX_RATIO {
        return Err(format!(
            "{name}: {size} bytes unpacked is more than a bundle holds"
        ));
    }
    let mut b = Vec::with_capacity(size as usize);
    (&mut e)
        .take(max + 1)
        .read_to_end(&mut b)
        .map_err(|err| format!("{name}: cannot be read: {err}"))?;
    if b.len() as u64 > max {
        return Err(format!("{name}: larger than a bundle holds"));
    }
    Ok(b)
}

/// Checks a bundle against the public key: the signed statement, the manifest's digest,
/// each file's digest, files missing or not in the manifest, and the ledger export inside.
pub fn verify<R: Read + Seek>(reader: R, key: &NoteVerifier) -> Result<Verified, BundleError> {
    let mut z = zip::ZipArchive::new(reader).map_err(|e| BundleError::Zip(e.to_string()))?;
    if z.len() > MAX_ENTRIES {
        return Err(BundleError::Invalid(format!(
            "{} entries: more than a bundle holds",
            z.len()
        )));
    }
    let mut v = Verified::default();
    let mut names = BTreeSet::new();
    for i in 0..z.len() {
        let e = z.by_index(i).map_err(|e| BundleError::Zip(e.to_string()))?;
        let name = match e.name() {
            Ok(n) => n.into_owned(),
            Err(err) => {
                v.problems
                    .push(format!("entry {i}: an unreadable name ({err})"));
                continue;
            }
        };
        if !safe_path(&name) && !e.is_dir() {
            v.problems
                .push(format!("{name:?}: a path outside the bundle"));
        }
        if !e.is_dir() && !names.insert(name.clone()) {
            v.problems.push(format!("{name}: stored twice"));
        }
    }
    let manifest_bytes =
        read_entry(&mut z, MANIFEST, MAX_MANIFEST).map_err(BundleError::Invalid)?;
    let note = read_entry(&mut z, SIGNATURE, 64 << 10).map_err(BundleError::Invalid)?;
    let note = String::from_utf8(note)
        .map_err(|_| BundleError::Invalid(format!("{SIGNATURE}: not UTF-8")))?;
    let lines = key.open_statement(&note, KIND).map_err(|e| {
        BundleError::Invalid(format!(
            "{SIGNATURE}: the signature does not verify with the key {} ({e})",
            key.name()
        ))
    })?;
    v.signer = key.name().to_owned();
    let field = |k: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(k).map(str::to_owned))
    };
    v.period = field("period ").unwrap_or_default();
    if field("manifest sha256:").as_deref() != Some(sha256(&manifest_bytes).as_str()) {
        return Err(BundleError::Invalid(format!(
            "{MANIFEST}: altered (its SHA-256 is not the one {SIGNATURE} signs)"
        )));
    }
    let manifest: Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| BundleError::Invalid(format!("{MANIFEST}: not JSON: {e}")))?;
    if manifest["format"] != KIND {
        return Err(BundleError::Invalid(format!(
            "{MANIFEST}: not a {KIND} manifest"
        )));
    }
    let files = manifest["files"]
        .as_array()
        .ok_or_else(|| BundleError::Invalid(format!("{MANIFEST}: no files list")))?;
    let mut listed = BTreeSet::new();
    for f in files {
        let (Some(path), Some(want)) = (f["path"].as_str(), f["sha256"].as_str()) else {
            v.problems
                .push(format!("{MANIFEST}: an entry without path or sha256"));
            continue;
        };
        listed.insert(path.to_owned());
        if !names.contains(path) {
            v.problems.push(format!("{path}: missing from the bundle"));
            continue;
        }
        let mut e = match z.by_name(path) {
            Ok(e) => e,
            Err(err) => {
                v.problems.push(format!("{path}: cannot be read: {err}"));
                continue;
            }
        };
        let (size, packed) = (e.size(), e.compressed_size().max(1));
        if size > MAX_FILE || size / packed > MAX_RATIO {
            v.problems.push(format!(
                "{path}: {size} bytes unpacked is more than a bundle holds"
            ));
            continue;
        }
        let mut h = Sha256::new();
        match std::io::copy(&mut (&mut e).take(MAX_FILE + 1), &mut HashWriter(&mut h)) {
            Ok(n) => v.bytes += n,
            Err(err) => {
                v.problems.push(format!("{path}: cannot be read: {err}"));
                continue;
            }
        }
        if hex::encode(h.finalize()) != want {
            v.problems.push(format!(
                "{path}: altered (its SHA-256 differs from the manifest)"
            ));
        }
        v.files += 1;
    }
    for n in &names {
        if n != MANIFEST && n != SIGNATURE && !listed.contains(n) {
            v.problems.push(format!("{n}: not in the manifest (added)"));
        }
    }
    // Release proofs and erasure receipts verify on their own, against the same key.
    for path in listed.iter().filter(|p| names.contains(*p)) {
        let release = path.starts_with("releases/") && path.ends_with("/proof.json");
        let erasure = path.starts_with("erasures/") && path.ends_with(".receipt.json");
        if !release && !erasure {
            continue;
        }
        let checked = read_entry(&mut z, path, MAX_MANIFEST).and_then(|b| {
            let v: Value =
                serde_json::from_slice(&b).map_err(|e| format!("{path}: not JSON: {e}"))?;
            if release {
                crate::release::proof::verify(&v, key)
                    .map(|_| ())
                    .map_err(|e| format!("{path}: the release proof does not verify: {e}"))
            } else {
                crate::lifecycle::receipt::verify(&v, key, &[])
                    .map(|_| ())
                    .map_err(|e| format!("{path}: the erasure receipt does not verify: {e}"))
            }
        });
        match checked {
            Ok(()) => v.proofs += 1,
            Err(p) => v.problems.push(p),
        }
    }
    if listed.contains("ledger/manifest.json") {
        let z = RefCell::new(z);
        let read = |name: &str| {
            let path = format!("ledger/{name}");
            read_entry(&mut z.borrow_mut(), &path, MAX_FILE)
        };
        match export::verify(&read, key) {
            Ok(l) => v.ledger = Some(l),
            Err(e) => v.problems.push(format!("ledger/: {e}")),
        }
    }
    Ok(v)
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_ledger::generate_key;
    use std::io::Cursor;

    fn keys() -> (NoteSigner, NoteVerifier) {
        let (sk, pk) = generate_key("custos-test").unwrap();
        (
            NoteSigner::from_key(&sk).unwrap(),
            NoteVerifier::from_key(&pk).unwrap(),
        )
    }

    fn bundle(signer: &NoteSigner) -> Vec<u8> {
        let files = BTreeMap::from([
            ("index.html".to_owned(), b"<html></html>".to_vec()),
            ("risks/risks.yaml".to_owned(), b"risks: []\n".to_vec()),
        ]);
        let mut out = Cursor::new(Vec::new());
        write(&mut out, &files, "2026-Q4", "2026-12-03T00:00:00Z", signer).unwrap();
        out.into_inner()
    }

    #[test]
    fn a_bundle_verifies_with_its_key_only() {
        let (s, v) = keys();
        let b = bundle(&s);
        let r = verify(Cursor::new(&b), &v).unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!((r.period.as_str(), r.files), ("2026-Q4", 2));
        let (_, other) = keys();
        let e = verify(Cursor::new(&b), &other).unwrap_err();
        assert!(e.to_string().contains("manifest.sig"), "{e}");
    }

    /// What to do with an entry: keep it (changed or not) or drop it.
    type Edit = dyn Fn(&str, Vec<u8>) -> Option<Vec<u8>>;

    /// Rebuilds the archive with one entry replaced (or added, or dropped).
    fn rezip(b: &[u8], change: &Edit, add: Option<(&str, &[u8])>) -> Vec<u8> {
        let mut z = zip::ZipArchive::new(Cursor::new(b)).unwrap();
        let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for i in 0..z.len() {
            let mut e = z.by_index(i).unwrap();
            let name = e.name().unwrap().into_owned();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            if let Some(bytes) = change(&name, bytes) {
                out.start_file(name, zip::write::SimpleFileOptions::default())
                    .unwrap();
                out.write_all(&bytes).unwrap();
            }
        }
        if let Some((n, b)) = add {
            out.start_file(n, zip::write::SimpleFileOptions::default())
                .unwrap();
            out.write_all(b).unwrap();
        }
        out.finish().unwrap().into_inner()
    }

    #[test]
    fn one_changed_byte_names_its_file() {
        let (s, v) = keys();
        let b = bundle(&s);
        let flipped = rezip(
            &b,
            &|n, mut bytes| {
                if n == "risks/risks.yaml" {
                    bytes[0] ^= 1;
                }
                Some(bytes)
            },
            None,
        );
        let r = verify(Cursor::new(&flipped), &v).unwrap();
        assert_eq!(
            r.problems,
            ["risks/risks.yaml: altered (its SHA-256 differs from the manifest)"]
        );
        let dropped = rezip(&b, &|n, bytes| (n != "index.html").then_some(bytes), None);
        let r = verify(Cursor::new(&dropped), &v).unwrap();
        assert_eq!(r.problems, ["index.html: missing from the bundle"]);
        let added = rezip(&b, &|_, bytes| Some(bytes), Some(("extra.txt", b"x")));
        let r = verify(Cursor::new(&added), &v).unwrap();
        assert_eq!(r.problems, ["extra.txt: not in the manifest (added)"]);
        let manifest = rezip(
            &b,
            &|n, mut bytes| {
                if n == MANIFEST {
                    bytes.push(b' ');
                }
                Some(bytes)
            },
            None,
        );
        let e = verify(Cursor::new(&manifest), &v).unwrap_err();
        assert!(e.to_string().starts_with("manifest.json: altered"), "{e}");
        assert!(matches!(
            verify(Cursor::new(b"not a zip"), &v),
            Err(BundleError::Zip(_))
        ));
    }

    #[test]
    fn paths_stay_inside() {
        for bad in ["", "/etc/passwd", "a/../b", "a\\b", "./a", "a//b"] {
            assert!(!safe_path(bad), "{bad}");
        }
        assert!(safe_path("releases/rel_1/sbom.json"));
        let (s, _) = keys();
        let files = BTreeMap::from([("../x".to_owned(), vec![])]);
        assert!(write(Cursor::new(Vec::new()), &files, "p", "t", &s).is_err());
    }
}

//! Machine-learning artifacts as SBOM components: model weights (`.safetensors`, `.gguf`,
//! `.onnx`, `.pt`/`.bin` next to a `config.json`), Hugging Face model folders and dataset
//! folders. Each gets its SHA-256, its format, the parameter count when the header says
//! it, and a model card when a README card is found beside it. Headers are read with hard
//! bounds, so a hostile file is an error, never an allocation bomb.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{purl_encode, Component};

/// What an artifact component carries beyond a package's fields.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Artifact {
    /// `machine-learning-model` or `data` (CycloneDX component types).
    pub kind: &'static str,
    pub format: String,
    pub sha256: String,
    pub bytes: u64,
    pub parameters: Option<u64>,
    pub properties: Vec<(String, String)>,
    /// CycloneDX `modelCard`, from config.json and the README card.
    pub model_card: Option<Value>,
}

const MAX_HEADER: u64 = 100 << 20;
const MAX_ITEMS: u64 = 10_000_000;

fn sha256_file(path: &Path) -> Result<(String, u64), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|e| format!("cannot read: {e}"))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// safetensors: an 8-byte little-endian header length, then a JSON header of tensors.
fn safetensors_parameters(path: &Path) -> Result<u64, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| "too short for a safetensors header".to_string())?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER {
        return Err(format!("header length {n} is implausible"));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|_| "truncated safetensors header".to_string())?;
    let v: Value = serde_json::from_slice(&header)
        .map_err(|e| format!("safetensors header is not JSON: {e}"))?;
    let map = v.as_object().ok_or("safetensors header is not an object")?;
    let mut total: u64 = 0;
    for (name, t) in map {
        if name == "__metadata__" {
            continue;
        }
        let shape = t
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("tensor {name:?} has no shape"))?;
        let count = shape
            .iter()
            .try_fold(1u64, |acc, d| d.as_u64().and_then(|d| acc.checked_mul(d)));
        total =
            total.saturating_add(count.ok_or_else(|| format!("tensor {name:?} has a bad shape"))?);
    }
    Ok(total)
}

struct Gguf<R> {
    r: R,
}

impl<R: Read> Gguf<R> {
    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        self.r
            .read_exact(&mut b)
            .map_err(|_| "truncated GGUF".to_string())?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        self.r
            .read_exact(&mut b)
            .map_err(|_| "truncated GGUF".to_string())?;
        Ok(u64::from_le_bytes(b))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u64()?;
        if n > 1 << 24 {
            return Err(format!("GGUF string of {n} bytes is implausible"));
        }
        let mut b = vec![0u8; n as usize];
        self.r
            .read_exact(&mut b)
            .map_err(|_| "truncated GGUF".to_string())?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }
    fn skip(&mut self, n: u64) -> Result<(), String> {
        let copied = std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())
            .map_err(|e| e.to_string())?;
        if copied == n {
            Ok(())
        } else {
            Err("truncated GGUF".into())
        }
    }
    /// Reads a metadata value of `ty`; returns it when it is a string or an integer.
    fn value(&mut self, ty: u32, depth: u8) -> Result<Option<Value>, String> {
        Ok(match ty {
            0 | 1 | 7 => {
                let mut b = [0u8; 1];
                self.r
                    .read_exact(&mut b)
                    .map_err(|_| "truncated GGUF".to_string())?;
                Some(json!(b[0]))
            }
            2 | 3 => {
                self.skip(2)?;
                None
            }
            4 | 5 => Some(json!(self.u32()?)),
            6 => {
                self.skip(4)?;
                None
            }
            8 => Some(json!(self.string()?)),
            9 => {
                if depth > 2 {
                    return Err("GGUF arrays nested too deep".into());
                }
                let ety = self.u32()?;
                let n = self.u64()?;
                if n > MAX_ITEMS {
                    return Err(format!("GGUF array of {n} items is implausible"));
                }
                for _ in 0..n {
                    self.value(ety, depth + 1)?;
                }
                None
            }
            10 | 11 => Some(json!(self.u64()?)),
            12 => {
                self.skip(8)?;
                None
            }
            t => return Err(format!("unknown GGUF value type {t}")),
        })
    }
}

/// GGUF: magic, version, tensor and metadata counts, metadata, then tensor infos whose
/// dimensions give the parameter count.
fn gguf_info(path: &Path) -> Result<(u64, Vec<(String, String)>), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut g = Gguf {
        r: BufReader::new(f),
    };
    let mut magic = [0u8; 4];
    g.r.read_exact(&mut magic)
        .map_err(|_| "too short for GGUF".to_string())?;
    if &magic != b"GGUF" {
        return Err("not a GGUF file (bad magic)".into());
    }
    let version = g.u32()?;
    if !(2..=3).contains(&version) {
        return Err(format!("GGUF version {version} is not supported (2–3)"));
    }
    let tensors = g.u64()?;
    let kvs = g.u64()?;
    if tensors > MAX_ITEMS || kvs > MAX_ITEMS {
        return Err("GGUF counts are implausible".into());
    }
    let mut props = vec![("gguf:version".to_string(), version.to_string())];
    for _ in 0..kvs {
        let key = g.string()?;
        let ty = g.u32()?;
        let v = g.value(ty, 0)?;
        if matches!(
            key.as_str(),
            "general.architecture"
                | "general.name"
                | "general.file_type"
                | "general.quantization_version"
                | "general.license"
        ) {
            if let Some(v) = v {
                props.push((
                    format!("gguf:{key}"),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                ));
            }
        }
    }
    let mut total: u64 = 0;
    for _ in 0..tensors {
        g.string()?;
        let dims = g.u32()?;
        if dims > 8 {
            return Err(format!(
                "a GGUF tensor with {dims} dimensions is implausible"
            ));
        }
        let mut count: u64 = 1;
        for _ in 0..dims {
            count = count.saturating_mul(g.u64()?);
        }
        g.u32()?;
        g.u64()?;
        total = total.saturating_add(count);
    }
    Ok((total, props))
}

/// The card beside a model: README.md front matter (`license`, `pipeline_tag`, `datasets`).
fn card_fields(dir: &Path) -> Vec<(String, Value)> {
    let Ok(text) = std::fs::read_to_string(dir.join("README.md")) else {
        return Vec::new();
    };
    let Some(front) = text
        .strip_prefix("---")
        .and_then(|t| t.split_once("\n---").map(|(f, _)| f))
    else {
        return Vec::new();
    };
    let Ok(v) = serde_norway::from_str::<Value>(front) else {
        return Vec::new();
    };
    [
        "license",
        "pipeline_tag",
        "datasets",
        "language",
        "base_model",
    ]
    .iter()
    .filter_map(|k| v.get(*k).map(|x| (k.to_string(), x.clone())))
    .collect()
}

fn model_card(dir: &Path) -> Option<Value> {
    let config: Option<Value> = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let card = card_fields(dir);
    if config.is_none() && card.is_empty() {
        return None;
    }
    let mut params = serde_json::Map::new();
    if let Some(c) = &config {
        if let Some(a) = c
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
        {
            params.insert("modelArchitecture".into(), json!(a));
        }
        if let Some(t) = c.get("model_type").and_then(Value::as_str) {
            params.insert("architectureFamily".into(), json!(t));
        }
    }
    let mut props = Vec::new();
    for (k, v) in card {
        match k.as_str() {
            "pipeline_tag" => {
                params.insert("task".into(), v);
            }
            "datasets" => {
                let names: Vec<Value> = v.as_array().into_iter().flatten().filter_map(Value::as_str).map(|d| json!({"type": "dataset", "name": d})).collect();
                if !names.is_empty() {
                    params.insert("datasets".into(), Value::Array(names));
                }
            }
            _ => props.push(json!({"name": format!("card:{k}"), "value": v.as_str().map_or_else(|| v.to_string(), str::to_string)})),
        }
    }
    let mut card = json!({"modelParameters": params});
    if !props.is_empty() {
        card["properties"] = Value::Array(props);
    }
    Some(card)
}

fn artifact_component(path: &Path, rel: &str, artifact: Artifact) -> Component {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| rel.to_string());
    let version = artifact.sha256[..12].to_string();
    let purl = format!(
        "pkg:generic/{}@{version}?checksum=sha256:{}",
        purl_encode(&name),
        artifact.sha256
    );
    Component {
        ecosystem: "generic".into(),
        name,
        version,
        purl,
        direct: None,
        depends_on: Vec::new(),
        source: rel.into(),
        is_root: false,
        advisory_name: None,
        advisory_ecosystem: None,
        artifact: Some(artifact),
        dev: false,
        version_range: None,
        layer: None,
    }
}

fn looks_like_pytorch(path: &Path) -> bool {
    let mut head = [0u8; 4];
    let Ok(mut f) = std::fs::File::open(path) else {
        return true; // let the cataloger report why it cannot be read
    };
    match f.read(&mut head) {
        Ok(n) if n >= 2 => head.starts_with(b"PK\x03\x04") || head[0] == 0x80,
        _ => false,
    }
}

/// The format of a weights file by its name (`safetensors`, `gguf`, `onnx`, `pytorch`) and,
/// where the header says it (safetensors, GGUF), its parameter count; `None` when the file is
/// not weights. Reads the header only: the model registry hashes files itself.
pub fn weights_format(path: &Path) -> Option<(&'static str, Result<Option<u64>, String>)> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let format = match ext {
        "safetensors" => "safetensors",
        "gguf" => "gguf",
        "onnx" => "onnx",
        "pt" | "pth" if looks_like_pytorch(path) => "pytorch",
        "bin" if looks_like_pytorch(path) => "pytorch",
        _ => return None,
    };
    let parameters = match format {
        "safetensors" => safetensors_parameters(path).map(Some),
        "gguf" => gguf_info(path).map(|(p, _)| Some(p)),
        _ => Ok(None),
    };
    Some((format, parameters))
}

/// Catalogs a model or dataset file, or `None` when `path` is not one.
pub fn catalog(path: &Path, rel: &str) -> Option<(&'static str, Result<Vec<Component>, String>)> {
    let name = path.file_name()?.to_str()?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let dir = path.parent().unwrap_or(Path::new("."));
    let (kind, format): (&'static str, &str) = match (name, ext) {
        (_, "safetensors") => ("ml-model", "safetensors"),
        (_, "gguf") => ("ml-model", "gguf"),
        (_, "onnx") => ("ml-model", "onnx"),
        (_, "pt" | "pth") => ("ml-model", "pytorch"),
        (n, "bin") if n.starts_with("pytorch_model") && dir.join("config.json").exists() => {
            ("ml-model", "pytorch")
        }
        ("dataset_info.json" | "dataset_infos.json", _) => ("dataset", "huggingface-dataset"),
        _ => return None,
    };
    // `.pth` is also Python's path-configuration file (site-packages holds several): a
    // PyTorch file is a zip archive (torch.save since 1.6) or a pickle (protocol 2+).
    if format == "pytorch" && !looks_like_pytorch(path) {
        return None;
    }
    let result = (|| {
        let (sha256, bytes) = sha256_file(path)?;
        let mut properties = vec![("custos:format".to_string(), format.to_string())];
        let mut parameters = None;
        match format {
            "safetensors" => parameters = Some(safetensors_parameters(path)?),
            "gguf" => {
                let (p, props) = gguf_info(path)?;
                parameters = Some(p);
                properties.extend(props);
            }
            "onnx" => {
                // ONNX is protobuf: confirm the shape of a ModelProto (field 1, ir_version).
                let mut f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
                let mut b = [0u8; 1];
                f.read_exact(&mut b)
                    .map_err(|_| "empty ONNX file".to_string())?;
                if b[0] != 0x08 {
                    return Err("not an ONNX model (no ir_version field first)".into());
                }
                f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
            }
            _ => {}
        }
        if let Some(p) = parameters {
            properties.push(("custos:parameters".into(), p.to_string()));
        }
        let artifact = Artifact {
            kind: if kind == "dataset" {
                "data"
            } else {
                "machine-learning-model"
            },
            format: format.into(),
            sha256,
            bytes,
            parameters,
            properties,
            model_card: if kind == "dataset" {
                None
            } else {
                model_card(dir)
            },
        };
        Ok(vec![artifact_component(path, rel, artifact)])
    })();
    Some((kind, result))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safetensors(tensors: &str) -> Vec<u8> {
        let mut v = (tensors.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(tensors.as_bytes());
        v
    }

    fn gguf() -> Vec<u8> {
        let mut v = b"GGUF".to_vec();
        v.extend(3u32.to_le_bytes());
        v.extend(2u64.to_le_bytes()); // tensors
        v.extend(2u64.to_le_bytes()); // metadata
        let s = |v: &mut Vec<u8>, t: &str| {
            v.extend((t.len() as u64).to_le_bytes());
            v.extend(t.as_bytes());
        };
        s(&mut v, "general.architecture");
        v.extend(8u32.to_le_bytes());
        s(&mut v, "llama");
        s(&mut v, "tokenizer.ggml.tokens");
        v.extend(9u32.to_le_bytes());
        v.extend(8u32.to_le_bytes());
        v.extend(2u64.to_le_bytes());
        s(&mut v, "a");
        s(&mut v, "b");
        for (name, dims) in [("tok_embd", vec![4096u64, 32000]), ("norm", vec![4096])] {
            s(&mut v, name);
            v.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                v.extend(d.to_le_bytes());
            }
            v.extend(0u32.to_le_bytes());
            v.extend(0u64.to_le_bytes());
        }
        v
    }

    #[test]
    fn python_path_files_are_not_pytorch_models() {
        let d = tempfile::tempdir().unwrap();
        let pth = d.path().join("distutils-precedence.pth");
        std::fs::write(&pth, "import os; var = 'SETUPTOOLS_USE_DISTUTILS'\n").unwrap();
        assert!(catalog(&pth, "distutils-precedence.pth").is_none());
        let zip = d.path().join("weights.pth");
        std::fs::write(&zip, b"PK\x03\x04archive/data.pkl").unwrap();
        let pickle = d.path().join("legacy.pt");
        std::fs::write(&pickle, b"\x80\x02}q\x00.").unwrap();
        for (p, rel) in [(&zip, "weights.pth"), (&pickle, "legacy.pt")] {
            let (kind, r) = catalog(p, rel).unwrap();
            assert_eq!(kind, "ml-model");
            assert_eq!(r.unwrap()[0].artifact.as_ref().unwrap().format, "pytorch");
        }
    }

    #[test]
    fn weights_headers_and_cards() {
        let d = tempfile::tempdir().unwrap();
        let st = d.path().join("model.safetensors");
        std::fs::write(&st, safetensors(r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"F32","shape":[3],"data_offsets":[24,36]}}"#)).unwrap();
        std::fs::write(
            d.path().join("config.json"),
            r#"{"architectures":["BertModel"],"model_type":"bert"}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("README.md"), "---\nlicense: apache-2.0\npipeline_tag: fill-mask\ndatasets: [wikipedia]\n---\n# Card\n").unwrap();
        let (_, r) = catalog(&st, "model.safetensors").unwrap();
        let c = &r.unwrap()[0];
        let a = c.artifact.as_ref().unwrap();
        assert_eq!(a.parameters, Some(9));
        let card = a.model_card.as_ref().unwrap();
        assert_eq!(card["modelParameters"]["modelArchitecture"], "BertModel");
        assert_eq!(card["modelParameters"]["task"], "fill-mask");
        assert!(
            c.purl.starts_with("pkg:generic/model.safetensors@")
                && c.purl.contains("checksum=sha256:")
        );

        let g = d.path().join("m.gguf");
        std::fs::write(&g, gguf()).unwrap();
        let (_, r) = catalog(&g, "m.gguf").unwrap();
        let a = r.unwrap()[0].artifact.clone().unwrap();
        assert_eq!(a.parameters, Some(4096 * 32000 + 4096));
        assert!(a
            .properties
            .contains(&("gguf:general.architecture".into(), "llama".into())));

        // Hostile headers are errors, not allocations.
        std::fs::write(&st, u64::MAX.to_le_bytes()).unwrap();
        assert!(catalog(&st, "x")
            .unwrap()
            .1
            .unwrap_err()
            .contains("implausible"));
        let mut bad = gguf();
        bad.truncate(40);
        std::fs::write(&g, bad).unwrap();
        assert!(catalog(&g, "x").unwrap().1.is_err());
        assert!(catalog(Path::new("Cargo.toml"), "x").is_none());
    }
}

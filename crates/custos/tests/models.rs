//! `custos models` as a user runs it: real model files (a safetensors file with a real header,
//! config, tokenizer), real keys, real SQLite, and OpenSSF's `model_signing` CLI on the other
//! side of every signature (when `CUSTOS_TEST_PYTHON`'s venv has it; `./dev test` installs it).

mod common;

use common::{chat, custos, fails, json, ok, serve};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A small Hugging Face-shaped model: 2 MiB of F32 weights in safetensors, config, tokenizer.
fn model(dir: &Path) -> PathBuf {
    let m = dir.join("tiny-llm");
    std::fs::create_dir_all(m.join("tokenizer")).unwrap();
    let n = 512 * 1024;
    let header = format!(
        r#"{{"w":{{"dtype":"F32","shape":[512,1024],"data_offsets":[0,{}]}}}}"#,
        n * 4
    );
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header.as_bytes());
    st.extend((0..n * 4).map(|i| (i * 7 % 251) as u8));
    std::fs::write(m.join("model.safetensors"), st).unwrap();
    std::fs::write(
        m.join("config.json"),
        r#"{"architectures":["TinyLM"],"hidden_size":1024}"#,
    )
    .unwrap();
    std::fs::write(
        m.join("tokenizer/tokenizer.json"),
        r#"{"model":{"type":"BPE"}}"#,
    )
    .unwrap();
    std::fs::create_dir_all(m.join(".git")).unwrap();
    std::fs::write(m.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    m
}

/// The `model_signing` CLI beside `CUSTOS_TEST_PYTHON`, if installed.
fn model_signing() -> Option<PathBuf> {
    let python = std::env::var("CUSTOS_TEST_PYTHON").ok()?;
    let bin = Path::new(&python).parent()?.join("model_signing");
    bin.exists().then_some(bin)
}

fn ms(bin: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run model_signing")
}

#[test]
fn model_signing_bundles_interoperate_both_ways() {
    let Some(bin) = model_signing() else {
        eprintln!("skipping the model_signing interop test: CUSTOS_TEST_PYTHON has no model_signing (./dev test installs it)");
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let m = model(dir);
    for curve in ["p256", "p384"] {
        let key = format!("{curve}.pem");
        let public = format!("{curve}.pem.pub");
        ok(dir, &["models", "keygen", "--out", &key, "--curve", curve]);

        // model_signing signs, custos verifies.
        let out = ms(
            &bin,
            dir,
            &[
                "sign",
                "key",
                "tiny-llm",
                "--private_key",
                &key,
                "--signature",
                "theirs.sig",
            ],
        );
        assert!(
            out.status.success(),
            "model_signing sign: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = json(
            dir,
            &[
                "models",
                "verify",
                "tiny-llm",
                "--signature",
                "theirs.sig",
                "--public-key",
                &public,
            ],
        );
        assert_eq!(v["verified"], true);
        let names: Vec<&str> = v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "config.json",
                "model.safetensors",
                "tokenizer/tokenizer.json"
            ]
        );

        // custos signs, model_signing verifies; both name the model by the same digest.
        let signed = json(
            dir,
            &[
                "models",
                "sign",
                "tiny-llm",
                "--key",
                &key,
                "--signature",
                "ours.sig",
            ],
        );
        assert_eq!(signed["manifest"]["digest"], v["digest"]);
        let out = ms(
            &bin,
            dir,
            &[
                "verify",
                "key",
                "tiny-llm",
                "--signature",
                "ours.sig",
                "--public_key",
                &public,
            ],
        );
        assert!(
            out.status.success(),
            "model_signing verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Tampering fails both tools, whoever signed: a changed, an added and a removed file.
    let weights = m.join("model.safetensors");
    let original = std::fs::read(&weights).unwrap();
    let mut changed = original.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    type Tamper = Box<dyn Fn()>;
    let (w, o, c, mm) = (
        weights.clone(),
        original.clone(),
        changed.clone(),
        m.clone(),
    );
    let cases: Vec<(&str, Tamper, Tamper)> = vec![
        (
            "model.safetensors: content differs",
            Box::new(move || std::fs::write(&w, &c).unwrap()),
            {
                let (w, o) = (weights.clone(), o.clone());
                Box::new(move || std::fs::write(&w, &o).unwrap())
            },
        ),
        (
            "extra.bin: present but not signed",
            Box::new({
                let mm = mm.clone();
                move || std::fs::write(mm.join("extra.bin"), b"x").unwrap()
            }),
            {
                let mm = mm.clone();
                Box::new(move || std::fs::remove_file(mm.join("extra.bin")).unwrap())
            },
        ),
        (
            "config.json: signed but missing",
            Box::new({
                let mm = mm.clone();
                move || {
                    std::fs::rename(mm.join("config.json"), mm.join("../config.json.bak")).unwrap()
                }
            }),
            {
                let mm = mm.clone();
                Box::new(move || {
                    std::fs::rename(mm.join("../config.json.bak"), mm.join("config.json")).unwrap()
                })
            },
        ),
    ];
    for (expected, tamper, restore) in cases {
        tamper();
        for sig in ["theirs.sig", "ours.sig"] {
            let (code, err) = fails(
                dir,
                &[
                    "models",
                    "verify",
                    "tiny-llm",
                    "--signature",
                    sig,
                    "--public-key",
                    "p384.pem.pub",
                ],
            );
            assert_eq!(code, 1, "{err}");
            assert!(err.contains(expected), "{sig}: {err}");
            let out = ms(
                &bin,
                dir,
                &[
                    "verify",
                    "key",
                    "tiny-llm",
                    "--signature",
                    sig,
                    "--public_key",
                    "p384.pem.pub",
                ],
            );
            assert!(
                !out.status.success(),
                "model_signing accepted a tampered model ({expected}, {sig})"
            );
        }
        restore();
    }
    ok(
        dir,
        &[
            "models",
            "verify",
            "tiny-llm",
            "--signature",
            "theirs.sig",
            "--public-key",
            "p384.pem.pub",
        ],
    );
}

#[test]
fn verification_names_what_is_wrong() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let m = model(dir);
    ok(dir, &["models", "keygen", "--out", "k.pem"]);
    ok(dir, &["models", "keygen", "--out", "other.pem"]);
    // A signature written inside the model folder is not part of what it signs.
    ok(
        dir,
        &[
            "models",
            "sign",
            "tiny-llm",
            "--key",
            "k.pem",
            "--signature",
            "tiny-llm/model.sig",
        ],
    );
    let v = json(
        dir,
        &[
            "models",
            "verify",
            "tiny-llm",
            "--signature",
            "tiny-llm/model.sig",
            "--public-key",
            "k.pem.pub",
        ],
    );
    assert_eq!(v["resources"].as_array().unwrap().len(), 3);
    assert!(v["serialization"]["ignore_paths"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "model.sig"));

    let (code, err) = fails(
        dir,
        &[
            "models",
            "verify",
            "tiny-llm",
            "--signature",
            "tiny-llm/model.sig",
            "--public-key",
            "other.pem.pub",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("signed by another key"), "{err}");

    std::fs::write(dir.join("garbage.sig"), "{not json").unwrap();
    let (code, err) = fails(
        dir,
        &[
            "models",
            "verify",
            "tiny-llm",
            "--signature",
            "garbage.sig",
            "--public-key",
            "k.pem.pub",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("invalid JSON at line 1"), "{err}");

    let (code, err) = fails(
        dir,
        &[
            "models",
            "verify",
            "tiny-llm",
            "--signature",
            "missing.sig",
            "--public-key",
            "k.pem.pub",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("missing.sig"), "{err}");

    std::fs::write(
        dir.join("bad.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let (_, err) = fails(dir, &["models", "sign", "tiny-llm", "--key", "bad.pem"]);
    assert!(err.contains("bad.pem") && err.contains("PKCS#8"), "{err}");
    let (_, err) = fails(dir, &["models", "sign", "tiny-llm"]);
    assert!(err.contains("CUSTOS_SIGNING_KEY"), "{err}");

    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(m.join("config.json"), m.join("link.json")).unwrap();
        let (code, err) = fails(
            dir,
            &[
                "models",
                "verify",
                "tiny-llm",
                "--signature",
                "tiny-llm/model.sig",
                "--public-key",
                "k.pem.pub",
            ],
        );
        assert_eq!(code, 1);
        assert!(err.contains("--allow-symlinks"), "{err}");
        let (_, err) = fails(dir, &["models", "sign", "tiny-llm", "--key", "k.pem"]);
        assert!(err.contains("symbolic link"), "{err}");
    }
}

#[test]
fn the_registry_life_cycle_is_ledgered_with_why() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    model(dir);
    std::fs::write(dir.join("eval.json"), r#"{"accuracy":0.91}"#).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/train.csv"), "text,label\nhi,1\n").unwrap();
    ok(dir, &["init"]);
    ok(dir, &["models", "keygen", "--out", "k.pem"]);

    let r = json(
        dir,
        &[
            "models",
            "register",
            "tiny",
            "1.0",
            "tiny-llm",
            "--license",
            "apache-2.0",
            "--dataset",
            "reviews-v3=data",
            "--eval",
            "eval.json",
            "--why",
            "first fine-tune",
            "--ticket",
            "ML-7",
        ],
    );
    assert_eq!(r["state"], "registered");
    assert_eq!(r["registration"]["format"], "safetensors");
    assert_eq!(r["registration"]["parameters"], 512 * 1024);
    assert_eq!(r["registration"]["datasets"][0]["name"], "reviews-v3");
    let digest = r["manifest_digest"].as_str().unwrap().to_owned();
    // The registry names the model by model-signing's digest.
    let signed = json(
        dir,
        &[
            "models",
            "sign",
            "tiny-llm",
            "--key",
            "k.pem",
            "--signature",
            "m.sig",
        ],
    );
    assert_eq!(signed["manifest"]["digest"], digest.as_str());

    let (_, err) = fails(dir, &["models", "register", "tiny", "1.0", "tiny-llm"]);
    assert!(err.contains("tiny@1.0 already exists"), "{err}");
    let (_, err) = fails(dir, &["models", "approve", "tiny@1.0"]);
    assert!(err.contains("not signed"), "{err}");
    let (_, err) = fails(dir, &["models", "promote", "tiny@1.0"]);
    assert!(err.contains("only an approved model is promoted"), "{err}");

    // A signature over other files is refused.
    std::fs::write(dir.join("tiny-llm/extra.txt"), "x").unwrap();
    ok(
        dir,
        &[
            "models",
            "sign",
            "tiny-llm",
            "--key",
            "k.pem",
            "--signature",
            "other.sig",
        ],
    );
    std::fs::remove_file(dir.join("tiny-llm/extra.txt")).unwrap();
    let (_, err) = fails(
        dir,
        &[
            "models",
            "attach",
            "tiny@1.0",
            "--signature",
            "other.sig",
            "--public-key",
            "k.pem.pub",
        ],
    );
    assert!(err.contains("covers other files"), "{err}");

    ok(
        dir,
        &[
            "models",
            "attach",
            "tiny@1.0",
            "--signature",
            "m.sig",
            "--public-key",
            "k.pem.pub",
            "--why",
            "signed by release key",
        ],
    );
    ok(
        dir,
        &["models", "approve", "tiny@1.0", "--why", "eval passed"],
    );
    let p = json(dir, &["models", "promote", "tiny@1.0", "--why", "ship"]);
    assert_eq!(p["state"], "promoted");

    // Provenance: signed, attached, checked against the registry; the dataset must match.
    ok(
        dir,
        &[
            "models",
            "attest",
            "tiny@1.0",
            "--key",
            "k.pem",
            "--builder",
            "https://ci.example/gpu-7",
            "--param",
            "epochs=3",
            "--invocation-id",
            "run-1",
            "--out",
            "run.json",
        ],
    );
    let v = json(
        dir,
        &[
            "models",
            "verify",
            "--registry",
            "tiny@1.0",
            "--attestation",
            "run.json",
            "--public-key",
            "k.pem.pub",
        ],
    );
    assert_eq!(
        v["provenance"]["predicate"]["buildDefinition"]["externalParameters"]["epochs"],
        3
    );
    ok(dir, &["models", "keygen", "--out", "x.pem"]);
    let (code, _) = fails(
        dir,
        &[
            "models",
            "verify",
            "--registry",
            "tiny@1.0",
            "--attestation",
            "run.json",
            "--public-key",
            "x.pem.pub",
        ],
    );
    assert_eq!(code, 1);

    // The registry entry re-verifies against the weights on disk.
    ok(
        dir,
        &[
            "models",
            "verify",
            "--registry",
            "tiny@1.0",
            "tiny-llm",
            "--public-key",
            "k.pem.pub",
        ],
    );
    std::fs::write(dir.join("tiny-llm/config.json"), "{}").unwrap();
    let (code, err) = fails(
        dir,
        &[
            "models",
            "verify",
            "--registry",
            "tiny@1.0",
            "tiny-llm",
            "--public-key",
            "k.pem.pub",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("config.json: content differs"), "{err}");
    // Without a trust rule, no key counts.
    let (code, err) = fails(dir, &["models", "verify", "--registry", "tiny@1.0"]);
    assert_eq!(code, 1);
    assert!(err.contains("[[registry.trust]]"), "{err}");

    ok(
        dir,
        &[
            "models",
            "register",
            "gpt-4o",
            "2024-08-06",
            "--provider",
            "openai",
            "--model-id",
            "gpt-4o-2024-08-06",
        ],
    );
    ok(
        dir,
        &[
            "models",
            "approve",
            "gpt-4o@2024-08-06",
            "--why",
            "vendor review done",
        ],
    );
    ok(
        dir,
        &["models", "retire", "tiny@1.0", "--why", "superseded"],
    );
    let (_, err) = fails(dir, &["models", "approve", "tiny@1.0"]);
    assert!(err.contains("retired"), "{err}");

    let history = json(dir, &["models", "history", "tiny"]);
    let steps: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["activity"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "model.register",
            "model.sign",
            "model.approve",
            "model.promote",
            "model.attest",
            "model.retire"
        ]
    );
    assert_eq!(history[0]["why"], "first fine-tune");
    assert_eq!(history[0]["ticket"], "ML-7");
    let list = json(dir, &["models", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);

    // Every transition is in the ledger, with why, and the ledger verifies.
    let text = ok(dir, &["audit", "query", "--json"]);
    for a in [
        "model.register",
        "model.sign",
        "model.approve",
        "model.promote",
        "model.attest",
        "model.retire",
    ] {
        assert!(text.contains(a), "{a} missing from the ledger");
    }
    assert!(text.contains("eval passed"));
    let out = custos(dir, &["audit", "verify"]);
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_deploy_gate_serves_only_approved_models_signed_by_trusted_keys() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    model(dir);
    std::fs::write(
        dir.join("custos.toml"),
        r#"[[providers]]
name = "mock"
kind = "mock"

[[models]]
name = "tiny"
provider = "mock"
registry = "tiny@1.0"

[[models]]
name = "tiny-untrusted"
provider = "mock"
registry = "tiny@2.0"

[[models]]
name = "tiny-pending"
provider = "mock"
registry = "tiny@3.0"

[[models]]
name = "tiny-missing"
provider = "mock"
registry = "tiny@9.9"

[[models]]
name = "tiny-unsigned"
provider = "mock"
registry = "tiny@4.0"

[[registry.trust]]
public_key = "release.pem.pub"
names = ["tiny", "tiny-*"]
"#,
    )
    .unwrap();
    ok(dir, &["models", "keygen", "--out", "release.pem"]);
    ok(dir, &["models", "keygen", "--out", "laptop.pem"]);
    for (v, key, approve) in [
        ("1.0", "release.pem", true),
        ("2.0", "laptop.pem", true),
        ("3.0", "release.pem", false),
    ] {
        ok(dir, &["models", "register", "tiny", v, "tiny-llm"]);
        ok(
            dir,
            &[
                "models",
                "sign",
                "tiny-llm",
                "--key",
                key,
                "--signature",
                &format!("{v}.sig"),
                "--registry",
                &format!("tiny@{v}"),
            ],
        );
        if approve {
            ok(dir, &["models", "approve", &format!("tiny@{v}")]);
        }
    }
    ok(dir, &["models", "register", "tiny", "4.0", "tiny-llm"]);
    let digest = json(dir, &["models", "show", "tiny@1.0"])["manifest_digest"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(dir, &["teams", "create", "ml"]);
    ok(dir, &["apps", "create", "bot", "--team", "ml"]);
    let key = ok(dir, &["keys", "create", "--team", "ml", "--app", "bot"])
        .trim()
        .to_owned();
    let (_server, url) = serve(dir);

    let (status, body) = chat(&url, &key, "tiny");
    assert_eq!(status, 200, "{body}");
    for (model, why) in [
        ("tiny-untrusted", "verifies with no key trusted"),
        (
            "tiny-pending",
            "is signed; only an approved or promoted model is served",
        ),
        ("tiny-missing", "not in the model registry"),
        (
            "tiny-unsigned",
            "is registered; only an approved or promoted model is served",
        ),
    ] {
        let (status, body) = chat(&url, &key, model);
        assert_eq!(status, 503, "{model}: {body}");
        assert_eq!(
            body["type"], "https://custos.dev/problems/model-unverified",
            "{body}"
        );
        assert!(
            body["detail"].as_str().unwrap().contains(why),
            "{model}: {body}"
        );
    }

    // Approval takes effect without a restart; retirement too.
    ok(dir, &["models", "approve", "tiny@3.0"]);
    ok(
        dir,
        &["models", "retire", "tiny@1.0", "--why", "superseded by 3.0"],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (a, _) = chat(&url, &key, "tiny-pending");
        let (b, _) = chat(&url, &key, "tiny");
        if a == 200 && b == 503 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gate did not pick up the approval and the retirement ({a}, {b})"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Every served call records the manifest digest; every verdict is in the ledger.
    let text = ok(dir, &["audit", "query", "--json"]);
    let invokes: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .filter(|e| e["activity"] == "model.invoke" && e["status"] == 200)
        .collect();
    assert!(
        invokes
            .iter()
            .any(|e| e["resources"][0]["digest"] == digest.as_str()),
        "{invokes:?}"
    );
    let gates: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .filter(|e| e["activity"] == "model.gate")
        .collect();
    assert!(gates
        .iter()
        .any(|e| e["resources"][0]["verdict"] == "refused"
            && e["resources"][0]["name"] == "tiny@2.0"));
    assert!(gates.iter().any(
        |e| e["resources"][0]["verdict"] == "served" && e["resources"][0]["name"] == "tiny@3.0"
    ));
}

fn get(url: &str, key: &str, accept: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(url)
            .bearer_auth(key)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        let (s, h) = (r.status().as_u16(), r.headers().clone());
        (s, h, r.text().await.unwrap())
    })
}

/// Fills in what a person writes in a card template.
fn fill(card: &str) -> String {
    card.replace("TODO: ", "Written by the team. ")
        .replace("type: TODO", "type: text-classification")
        .replace("latency_p50_ms: TODO", "latency_p50_ms: 40")
        .replace("latency_p95_ms: TODO", "latency_p95_ms: 95")
        .replace("throughput_rps: TODO", "throughput_rps: 120")
        .replace("memory_gb: TODO", "memory_gb: 2.5")
}

#[test]
fn model_cards_are_linted_signed_attached_and_served() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    model(dir);
    std::fs::write(
        dir.join("eval.json"),
        r#"{"metrics":{"accuracy":0.91,"f1":0.88},"slices":{"en":{"accuracy":0.93}}}"#,
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/train.csv"), "text,label\nhi,1\n").unwrap();
    ok(dir, &["init"]);
    ok(dir, &["models", "keygen", "--out", "k.pem"]);
    let image = format!("registry.example/tiny@sha256:{}", "a".repeat(64));
    ok(
        dir,
        &[
            "models",
            "register",
            "tiny",
            "1.0",
            "tiny-llm",
            "--dataset",
            "reviews=data",
            "--eval",
            "eval.json",
            "--license",
            "apache-2.0",
            "--container",
            &image,
        ],
    );
    ok(dir, &["teams", "create", "ml"]);
    ok(dir, &["apps", "create", "trainer", "--team", "ml"]);
    ok(
        dir,
        &[
            "usage",
            "record",
            "--team",
            "ml",
            "--app",
            "trainer",
            "--provider",
            "aws",
            "--instance-type",
            "p4d.24xlarge",
            "--gpu-type",
            "a100",
            "--gpu-count",
            "8",
            "--gpu-hours",
            "2",
            "--region",
            "us-east-1",
            "--cost",
            "40",
            "--tags",
            "run=ft-1",
        ],
    );

    ok(
        dir,
        &[
            "models",
            "card",
            "init",
            "tiny@1.0",
            "--cost-tag",
            "run=ft-1",
            "--out",
            "MODEL_CARD.md",
        ],
    );
    let template = std::fs::read_to_string(dir.join("MODEL_CARD.md")).unwrap();
    assert!(
        template.contains("amount: 40")
            && template.contains("| accuracy | 0.91 |")
            && template.contains("| en | accuracy | 0.93 |"),
        "{template}"
    );
    // The template is incomplete: lint says where.
    let (code, err) = fails(dir, &["models", "card", "lint", "MODEL_CARD.md"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("MODEL_CARD.md:")
            && err.contains("latency_p50_ms must be a number")
            && err.contains("still has a TODO"),
        "{err}"
    );
    let (_, err) = fails(
        dir,
        &["models", "card", "sign", "MODEL_CARD.md", "--key", "k.pem"],
    );
    assert!(err.contains("fix them before signing"), "{err}");

    let card = fill(&template);
    std::fs::write(dir.join("MODEL_CARD.md"), &card).unwrap();
    let v = json(dir, &["models", "card", "lint", "MODEL_CARD.md"]);
    assert_eq!(v["ok"], true, "{v}");

    // Inconsistencies, each at its line: a metric, a dataset digest, a cost, a broken link.
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let bad = card
        .replace("| f1 | 0.88 |", "| f1 | 0.9 |")
        .replace("amount: 40", "amount: 25")
        .replace(&"a".repeat(64), &"b".repeat(64))
        .replace(
            "## Robustness\n\n",
            "## Robustness\n\nSee [the red-team log](redteam.md).\n",
        );
    std::fs::write(dir.join("BAD.md"), &bad).unwrap();
    let v = {
        let out = custos(dir, &["models", "card", "lint", "BAD.md", "--json"]);
        assert_eq!(out.status.code(), Some(1));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let problems = v["problems"].as_array().unwrap();
    let at = |m: &str| {
        problems
            .iter()
            .find(|p| p["message"].as_str().unwrap().contains(m))
            .unwrap_or_else(|| panic!("{m}: {v}"))["line"]
            .as_u64()
            .unwrap() as usize
    };
    assert_eq!(at("the table says f1"), line_of(&bad, "| f1 | 0.9 |"));
    assert_eq!(at("custos.cost.amount"), line_of(&bad, "amount: 25"));
    assert_eq!(
        at("custos.container_digest"),
        line_of(&bad, "container_digest:")
    );
    assert_eq!(at("redteam.md"), line_of(&bad, "redteam.md"));
    // An evaluation report that is not the registered one is caught by its checksum.
    std::fs::write(
        dir.join("other-eval.json"),
        r#"{"metrics":{"accuracy":0.99,"f1":0.88}}"#,
    )
    .unwrap();
    let (_, err) = fails(
        dir,
        &[
            "models",
            "card",
            "lint",
            "MODEL_CARD.md",
            "--eval",
            "other-eval.json",
        ],
    );
    assert!(err.contains("not the registered one"), "{err}");

    // Sign and attach; promotion records the card's digest; the gateway serves the snapshot.
    let signed = json(
        dir,
        &[
            "models",
            "card",
            "sign",
            "MODEL_CARD.md",
            "--key",
            "k.pem",
            "--why",
            "card for 1.0",
        ],
    );
    let digest = signed["card_digest"].as_str().unwrap().to_owned();
    ok(
        dir,
        &[
            "models",
            "sign",
            "tiny-llm",
            "--key",
            "k.pem",
            "--signature",
            "m.sig",
            "--registry",
            "tiny@1.0",
        ],
    );
    ok(dir, &["models", "approve", "tiny@1.0"]);
    ok(dir, &["models", "promote", "tiny@1.0", "--why", "ship"]);
    let promoted = ok(dir, &["audit", "query", "--json"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .find(|e| e["activity"] == "model.promote")
        .unwrap();
    assert_eq!(promoted["resources"][0]["card_digest"], digest.as_str());

    ok(
        dir,
        &[
            "models",
            "card",
            "render",
            "MODEL_CARD.md",
            "--out",
            "card.html",
        ],
    );
    assert!(std::fs::read_to_string(dir.join("card.html"))
        .unwrap()
        .contains("<table>"));

    let key = ok(dir, &["keys", "create", "--team", "ml", "--app", "trainer"])
        .trim()
        .to_owned();
    let (_server, url) = serve(dir);
    let card_url = format!("{url}/v1/models/tiny/versions/1.0/card");
    let (status, headers, body) = get(&card_url, &key, "application/json");
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-custos-card-digest"], digest.as_str());
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["card_digest"], digest.as_str());
    assert_eq!(v["markdown"], card.as_str());
    assert_eq!(v["metadata"]["custos"]["cost"]["amount"], 40);
    // The served snapshot hashes to the signed digest.
    let served = format!("sha256:{}", hex_sha256(v["markdown"].as_str().unwrap()));
    assert_eq!(served, digest);
    let (status, headers, body) = get(&card_url, &key, "text/html");
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(body.contains("<h2>Evaluation</h2>"), "{body}");
    let (status, _, body) = get(
        &format!("{url}/v1/models/tiny/versions/9.9/card"),
        &key,
        "application/json",
    );
    assert_eq!(status, 404, "{body}");
    let (status, _, _) = get(&card_url, "ck_wrong", "application/json");
    assert_eq!(status, 401);
}

fn hex_sha256(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

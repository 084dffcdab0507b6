//! Release components as a user adds them: prompt versions and dataset tags through the CLI
//! on a real SQLite database, each addition in the ledger with its reason.

mod common;

use common::{admin, chat, json, ok, refused, serve, token_file};
use serde_json::{json, Value};
use std::path::Path;

#[test]
fn prompts_are_semver_versions_pinned_by_digest() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    ok(dir, &["init"]);
    std::fs::write(
        dir.join("support.md"),
        "You are the support bot of Acme.\n\nQuestion: {{question}}\n",
    )
    .unwrap();
    let p = json(
        dir,
        &[
            "prompts",
            "add",
            "support-bot",
            "2.3.0",
            "support.md",
            "--model",
            "gpt-4o",
            "--why",
            "tone fix",
            "--ticket",
            "CHG-9",
        ],
    );
    assert!(p["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(
        ok(dir, &["prompts", "show", "support-bot@2.3.0"]),
        "You are the support bot of Acme.\n\nQuestion: {{question}}\n"
    );
    assert!(refused(
        dir,
        &["prompts", "add", "support-bot", "2.3.0", "support.md"]
    )
    .contains("is at 2.3.0"));
    assert!(refused(
        dir,
        &["prompts", "add", "support-bot", "2.2.9", "support.md"]
    )
    .contains("must be newer"));
    assert!(
        refused(dir, &["prompts", "add", "support-bot", "v3", "support.md"])
            .contains("not a semantic version")
    );
    std::fs::write(dir.join("empty.md"), "  \n").unwrap();
    assert!(
        refused(dir, &["prompts", "add", "support-bot", "3.0.0", "empty.md"]).contains("empty")
    );
    std::fs::write(dir.join("bin.md"), [0xff, 0xfe, 0x00]).unwrap();
    assert!(
        refused(dir, &["prompts", "add", "support-bot", "3.0.0", "bin.md"]).contains("not UTF-8")
    );
    ok(
        dir,
        &["prompts", "add", "support-bot", "3.0.0-rc.1", "support.md"],
    );
    ok(
        dir,
        &["prompts", "add", "support-bot", "3.0.0", "support.md"],
    );
    let list = json(dir, &["prompts", "list", "support-bot"]);
    let versions: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["2.3.0", "3.0.0-rc.1", "3.0.0"]);
    let events = ok(dir, &["audit", "query", "--json"]);
    let first: Value = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"]["activity"] == "prompt.add")
        .unwrap();
    assert_eq!(first["event"]["activity"], "prompt.add");
    assert_eq!(first["event"]["why"], "tone fix");
    assert_eq!(first["event"]["ticket"], "CHG-9");
}

#[test]
fn datasets_are_tags_pinned_by_digest_with_pii_status() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    ok(dir, &["init"]);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("data/users.csv"),
        "name,email\nBob,bob@example.com\nAda,ada@example.org\n",
    )
    .unwrap();
    ok(
        dir,
        &["pii", "dataset", "data/users.csv", "--report", "pii.json"],
    );
    ok(
        dir,
        &[
            "models",
            "datasheet",
            "init",
            "users=data",
            "--out",
            "DATASHEET.md",
        ],
    );
    let ds = json(
        dir,
        &[
            "datasets",
            "add",
            "users",
            "golden_2025_09",
            "data",
            "--datasheet",
            "DATASHEET.md",
            "--pii-report",
            "pii.json",
            "--why",
            "golden set",
        ],
    );
    assert_eq!(ds["facts"]["digest_of"], "files");
    assert_eq!(ds["facts"]["pii"]["status"], "contains-pii");
    assert_eq!(ds["facts"]["pii"]["entities"]["EMAIL_ADDRESS"], 2);
    assert!(ds["facts"]["datasheet"]["sha256"].is_string());
    // The same folder is named by the same digest wherever custos pins it.
    std::fs::create_dir_all(dir.join("m")).unwrap();
    std::fs::write(dir.join("m/w.bin"), b"weights").unwrap();
    let m = json(
        dir,
        &[
            "models",
            "register",
            "m",
            "1",
            "m",
            "--dataset",
            "users=data",
        ],
    );
    assert_eq!(
        format!(
            "sha256:{}",
            m["registration"]["datasets"][0]["sha256"].as_str().unwrap()
        ),
        ds["digest"].as_str().unwrap()
    );

    assert!(
        refused(dir, &["datasets", "add", "users", "golden_2025_09", "data"])
            .contains("already exists")
    );
    assert!(refused(
        dir,
        &["datasets", "add", "users", "v4", "s3://bucket/users/v4"]
    )
    .contains("--sha256"));
    assert!(refused(
        dir,
        &[
            "datasets",
            "add",
            "users",
            "v4",
            "s3://bucket/users/v4",
            "--sha256",
            "abc"
        ]
    )
    .contains("64 hex"));
    let hex = "7".repeat(64);
    let uri = json(
        dir,
        &[
            "datasets",
            "add",
            "users",
            "v4",
            "s3://bucket/users/v4",
            "--sha256",
            &hex,
        ],
    );
    assert_eq!(uri["facts"]["digest_of"], "given");
    std::fs::write(dir.join("users.dvc"), "outs:\n- md5: 0123\n  path: users\n").unwrap();
    let dvc = json(dir, &["datasets", "add", "users", "v5", "users.dvc"]);
    assert_eq!(dvc["facts"]["digest_of"], "manifest");
    assert!(
        refused(dir, &["datasets", "add", "users", "v6", "missing-dir"]).contains("missing-dir")
    );
    std::fs::write(dir.join("bad.json"), "{\"not\": \"a report\"}").unwrap();
    assert!(refused(
        dir,
        &[
            "datasets",
            "add",
            "users",
            "v7",
            "data",
            "--pii-report",
            "bad.json"
        ]
    )
    .contains("records"));
    assert_eq!(
        json(dir, &["datasets", "list"]).as_array().unwrap().len(),
        3
    );
    let shown = json(dir, &["datasets", "show", "users@golden_2025_09"]);
    assert_eq!(shown["digest"], ds["digest"]);
}

#[test]
fn releases_are_tiered_and_approved_by_other_people_in_their_roles() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let issuer = custos_authz::testkit::TestIssuer::new("https://idp.test");
    std::fs::write(dir.join("jwks.json"), issuer.jwks()).unwrap();
    std::fs::write(
        dir.join("custos.toml"),
        "[[auth.jwt]]\nissuer = \"https://idp.test\"\naudience = \"custos\"\njwks_file = \"jwks.json\"\ntenants = [\"acme\"]\n",
    )
    .unwrap();
    ok(dir, &["tenants", "create", "acme"]);
    ok(dir, &["teams", "create", "ml", "--tenant", "acme"]);
    ok(
        dir,
        &[
            "apps", "create", "support", "--team", "ml", "--tenant", "acme",
        ],
    );
    std::fs::create_dir_all(dir.join("m")).unwrap();
    std::fs::write(dir.join("m/w.bin"), b"weights").unwrap();
    ok(dir, &["models", "register", "llama", "1.4.2", "m"]);
    std::fs::write(dir.join("p.md"), "You are Acme's support bot.\n").unwrap();
    ok(dir, &["prompts", "add", "support", "2.3.0", "p.md"]);
    std::fs::write(dir.join("p2.md"), "You are Acme's support bot. Be brief.\n").unwrap();
    ok(dir, &["prompts", "add", "support", "2.4.0", "p2.md"]);
    for f in [
        "adr.md",
        "junit.xml",
        "eval.json",
        "slo.txt",
        "risk.md",
        "dry-run.log",
        "rollback.md",
    ] {
        std::fs::write(dir.join(f), f).unwrap();
    }
    let alice = token_file(dir, &issuer, "alice", &["release-author", "owner"]);
    let bob = token_file(dir, &issuer, "bob", &["owner"]);
    let carol = token_file(dir, &issuer, "carol", &["platform", "security"]);
    let dave = token_file(dir, &issuer, "dave", &["cab"]);
    let eve = token_file(dir, &issuer, "eve", &["developer"]);

    // Eve may not write releases; Alice may.
    assert!(refused(
        dir,
        &[
            "release",
            "create",
            "ml/support",
            "--tenant",
            "acme",
            "--model",
            "llama@1.4.2",
            "--token-file",
            &eve
        ]
    )
    .contains("denied"));
    let r = json(
        dir,
        &[
            "release",
            "create",
            "ml/support",
            "--tenant",
            "acme",
            "--model",
            "llama@1.4.2",
            "--prompt",
            "support@2.3.0",
            "--adr",
            "adr.md",
            "--evidence",
            "tests=junit.xml",
            "--token-file",
            &alice,
            "--why",
            "first fine-tune",
        ],
    );
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(r["tier"], "high");
    assert_eq!(r["state"], "draft");
    assert!(r["composite"]["model"]["digest"].as_str().unwrap().len() == 64);

    // The author never decides; nobody decides in a role they do not hold or the tier does not name.
    assert!(refused(
        dir,
        &[
            "release",
            "approve",
            &id,
            "--as",
            "owner",
            "--token-file",
            &alice
        ]
    )
    .contains("someone else decides"));
    assert!(refused(
        dir,
        &[
            "release",
            "approve",
            &id,
            "--as",
            "security",
            "--token-file",
            &bob
        ]
    )
    .contains("does not hold the role"));
    assert!(refused(
        dir,
        &[
            "release",
            "approve",
            &id,
            "--as",
            "on-call",
            "--token-file",
            &bob
        ]
    )
    .contains("is not one of them"));
    assert!(refused(
        dir,
        &[
            "release",
            "deny",
            &id,
            "--as",
            "owner",
            "--token-file",
            &bob
        ]
    )
    .contains("why"));
    ok(
        dir,
        &[
            "release",
            "approve",
            &id,
            "--as",
            "owner",
            "--token-file",
            &bob,
            "--why",
            "owner ok",
        ],
    );
    assert!(refused(
        dir,
        &[
            "release",
            "approve",
            &id,
            "--as",
            "owner",
            "--token-file",
            &bob
        ]
    )
    .contains("already decided"));
    ok(
        dir,
        &[
            "release",
            "approve",
            &id,
            "--as",
            "platform",
            "--token-file",
            &carol,
        ],
    );
    ok(
        dir,
        &[
            "release",
            "approve",
            &id,
            "--as",
            "cab",
            "--token-file",
            &dave,
        ],
    );

    // A High release without security approval (and its evidence) is not approved.
    let s = json(dir, &["release", "status", &id]);
    assert_eq!(s["state"], "draft");
    let missing: Vec<&str> = s["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        missing.contains(&"approval by security") && missing.contains(&"evidence: rollback-plan"),
        "{missing:?}"
    );
    ok(
        dir,
        &[
            "release",
            "evidence",
            &id,
            "eval=eval.json",
            "slo=slo.txt",
            "risk-assessment=risk.md",
            "dry-run=dry-run.log",
            "rollback-plan=rollback.md",
            "--token-file",
            &alice,
        ],
    );
    let s = json(
        dir,
        &[
            "release",
            "approve",
            &id,
            "--as",
            "security",
            "--token-file",
            &carol,
            "--why",
            "threat model reviewed",
        ],
    );
    assert_eq!(s["state"], "approved", "{s}");
    assert_eq!(s["missing"].as_array().unwrap().len(), 0);

    // The next release is tiered against it: a prompt minor bump is medium, and may not be lowered.
    assert!(refused(
        dir,
        &[
            "release",
            "create",
            "ml/support",
            "--tenant",
            "acme",
            "--model",
            "llama@1.4.2",
            "--prompt",
            "support@2.4.0",
            "--tier",
            "low",
            "--token-file",
            &alice
        ]
    )
    .contains("not lowered"));
    let next = json(
        dir,
        &[
            "release",
            "create",
            "ml/support",
            "--tenant",
            "acme",
            "--model",
            "llama@1.4.2",
            "--prompt",
            "support@2.4.0",
            "--token-file",
            &alice,
        ],
    );
    assert_eq!(next["tier"], "medium", "{next}");
    assert!(next["reasons"][0]
        .as_str()
        .unwrap()
        .contains("prompt minor bump"));
    let next_id = next["id"].as_str().unwrap().to_owned();
    let denied = json(
        dir,
        &[
            "release",
            "deny",
            &next_id,
            "--as",
            "security",
            "--token-file",
            &carol,
            "--why",
            "no eval",
        ],
    );
    let first = denied["missing"][0].as_str().unwrap();
    assert!(
        first.starts_with("denied by ") && first.ends_with(" as security"),
        "{denied}"
    );
    assert_eq!(denied["state"], "draft");

    // Every step is in the ledger with who and why.
    let text = ok(dir, &["audit", "query", "--json"]);
    for a in [
        "release.create",
        "release.approve",
        "release.evidence",
        "release.deny",
    ] {
        assert!(text.contains(a), "{a}");
    }
    assert!(text.contains("threat model reviewed"));
    assert_eq!(
        json(dir, &["release", "list", "--tenant", "acme"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn promotion_switches_the_alias_on_every_gateway() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let issuer = custos_authz::testkit::TestIssuer::new("https://idp.test");
    std::fs::write(dir.join("jwks.json"), issuer.jwks()).unwrap();
    std::fs::write(
        dir.join("custos.toml"),
        r#"[[auth.jwt]]
issuer = "https://idp.test"
audience = "custos"
jwks_file = "jwks.json"
tenants = ["acme"]

[[providers]]
name = "mock"
kind = "mock"

[[models]]
name = "tiny"
provider = "mock"
registry = "tiny@1.0"

[[models]]
name = "tiny2"
provider = "mock"
registry = "tiny@2.0"

[[registry.trust]]
public_key = "release.pem.pub"
names = ["tiny"]

[release.tiers.high]
approvals = ["owner"]
evidence = ["adr"]
"#,
    )
    .unwrap();
    ok(dir, &["tenants", "create", "acme"]);
    ok(dir, &["teams", "create", "ml", "--tenant", "acme"]);
    ok(
        dir,
        &[
            "apps", "create", "support", "--team", "ml", "--tenant", "acme",
        ],
    );
    std::fs::create_dir_all(dir.join("m")).unwrap();
    std::fs::write(dir.join("m/w.bin"), b"weights").unwrap();
    ok(dir, &["models", "keygen", "--out", "release.pem"]);
    ok(dir, &["models", "register", "tiny", "1.0", "m"]);
    ok(
        dir,
        &[
            "models",
            "sign",
            "m",
            "--key",
            "release.pem",
            "--signature",
            "m.sig",
            "--registry",
            "tiny@1.0",
        ],
    );
    ok(dir, &["models", "approve", "tiny@1.0"]);
    std::fs::write(dir.join("p.md"), "You are Acme's support bot.\n").unwrap();
    ok(dir, &["prompts", "add", "support", "1.0.0", "p.md"]);
    std::fs::write(dir.join("adr.md"), "# ADR 7\n").unwrap();
    let alice = token_file(dir, &issuer, "alice", &["release-author"]);
    let bob = token_file(dir, &issuer, "bob", &["owner"]);
    let r = json(
        dir,
        &[
            "release",
            "create",
            "ml/support",
            "--tenant",
            "acme",
            "--model",
            "tiny@1.0",
            "--prompt",
            "support@1.0.0",
            "--adr",
            "adr.md",
            "--token-file",
            &alice,
        ],
    );
    let id = r["id"].as_str().unwrap().to_owned();
    assert!(
        refused(dir, &["release", "promote", &id, "--token-file", &alice])
            .contains("only an approved release")
    );
    // A high release needs the model's signed card before it is promoted.
    ok(
        dir,
        &[
            "release",
            "approve",
            &id,
            "--as",
            "owner",
            "--token-file",
            &bob,
        ],
    );
    assert!(
        refused(dir, &["release", "promote", &id, "--token-file", &alice]).contains("signed card")
    );
    let card = ok(dir, &["models", "card", "init", "tiny@1.0"]);
    let filled = card.replace(": TODO\n", ": 1\n").replace("TODO: ", "");
    std::fs::write(dir.join("CARD.md"), filled).unwrap();
    ok(
        dir,
        &["models", "card", "sign", "CARD.md", "--key", "release.pem"],
    );

    ok(dir, &["tenants", "list"]);
    let key = ok(
        dir,
        &[
            "keys", "create", "--tenant", "acme", "--team", "ml", "--app", "support",
        ],
    )
    .trim()
    .to_owned();
    let (_a, url_a) = serve(dir);
    let (_b, url_b) = serve(dir);
    let (status, body) = chat(&url_a, &key, "support");
    assert_eq!(status, 404, "{body}");

    // A change freeze refuses the promotion, and lifts when its window is gone.
    let config = std::fs::read_to_string(dir.join("custos.toml")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let year = 1970 + now / 31_557_600;
    std::fs::write(
        dir.join("custos.toml"),
        format!("{config}\n[[release.freeze]]\nfrom = \"{}-01-01T00:00:00Z\"\nuntil = \"{}-01-01T00:00:00Z\"\nreason = \"year-end freeze\"\n", year - 1, year + 2),
    )
    .unwrap();
    let err = refused(dir, &["release", "promote", &id, "--token-file", &alice]);
    assert!(
        err.contains("release-frozen") && err.contains("year-end freeze"),
        "{err}"
    );
    std::fs::write(dir.join("custos.toml"), &config).unwrap();

    let p = json(
        dir,
        &[
            "release",
            "promote",
            &id,
            "--token-file",
            &alice,
            "--why",
            "CHG-311 approved",
            "--no-post-check",
        ],
    );
    assert_eq!(p["state"], "active");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    for url in [&url_a, &url_b] {
        loop {
            let (status, body) = chat(url, &key, "support");
            if status == 200 {
                assert_eq!(body["model"], "tiny", "{body}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{url} never served the alias: {status} {body}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    let text = ok(dir, &["audit", "query", "--json"]);
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .collect();
    let promote = events
        .iter()
        .find(|e| e["activity"] == "release.promote")
        .unwrap();
    assert_eq!(promote["why"], "CHG-311 approved");
    assert!(promote["resources"][0]["checks"][0]["card_digest"].is_string());
    assert!(events.iter().any(|e| e["activity"] == "model.invoke"
        && e["status"] == 200
        && e["resources"][0]["release"] == id.as_str()));

    // A second release swaps the model; rolling back restores the first on the gateways.
    std::fs::create_dir_all(dir.join("m2")).unwrap();
    std::fs::write(dir.join("m2/w.bin"), b"weights, retrained").unwrap();
    ok(dir, &["models", "register", "tiny", "2.0", "m2"]);
    ok(
        dir,
        &[
            "models",
            "sign",
            "m2",
            "--key",
            "release.pem",
            "--signature",
            "m2.sig",
            "--registry",
            "tiny@2.0",
        ],
    );
    ok(dir, &["models", "approve", "tiny@2.0"]);
    let card = ok(dir, &["models", "card", "init", "tiny@2.0"]);
    std::fs::write(
        dir.join("CARD2.md"),
        card.replace(": TODO\n", ": 1\n").replace("TODO: ", ""),
    )
    .unwrap();
    ok(
        dir,
        &["models", "card", "sign", "CARD2.md", "--key", "release.pem"],
    );
    let r2 = json(
        dir,
        &[
            "release",
            "create",
            "ml/support",
            "--tenant",
            "acme",
            "--model",
            "tiny@2.0",
            "--prompt",
            "support@1.0.0",
            "--adr",
            "adr.md",
            "--token-file",
            &alice,
        ],
    );
    assert!(
        r2["reasons"][0].as_str().unwrap().contains("model swap"),
        "{r2}"
    );
    let id2 = r2["id"].as_str().unwrap().to_owned();
    ok(
        dir,
        &[
            "release",
            "approve",
            &id2,
            "--as",
            "owner",
            "--token-file",
            &bob,
        ],
    );
    ok(
        dir,
        &[
            "release",
            "promote",
            &id2,
            "--token-file",
            &alice,
            "--no-post-check",
        ],
    );
    assert_eq!(
        json(dir, &["release", "status", &id])["state"],
        "superseded"
    );
    let served = |want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let (status, body) = chat(&url_b, &key, "support");
            if status == 200 && body["model"] == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the alias never served {want}: {status} {body}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    served("tiny2");
    assert!(refused(
        dir,
        &[
            "release",
            "rollback",
            "ml/support",
            "--tenant",
            "acme",
            "--token-file",
            &alice
        ]
    )
    .contains("why"));
    let back = json(
        dir,
        &[
            "release",
            "rollback",
            "ml/support",
            "--tenant",
            "acme",
            "--token-file",
            &alice,
            "--why",
            "p99 doubled",
        ],
    );
    assert_eq!(back["id"], id.as_str());
    assert_eq!(back["state"], "active");
    assert_eq!(
        json(dir, &["release", "status", &id2])["state"],
        "rolled back"
    );
    served("tiny");
    let text = ok(dir, &["audit", "query", "--json"]);
    let rollback = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .find(|e| e["activity"] == "release.rollback")
        .unwrap();
    assert_eq!(rollback["resources"][0]["rollback_to"]["id"], id.as_str());
    assert_eq!(rollback["why"], "p99 doubled");
}

/// An app with one active release of a remote model (served by the mock) and a prompt.
fn app_with_active_release(dir: &Path, extra_config: &str) -> String {
    std::fs::write(
        dir.join("custos.toml"),
        format!(
            r#"[[providers]]
name = "mock"
kind = "mock"

[[models]]
name = "tiny"
provider = "mock"
registry = "tiny@1.0"

[release.tiers.high]
approvals = []
evidence = ["adr"]
{extra_config}"#
        ),
    )
    .unwrap();
    ok(dir, &["teams", "create", "ml"]);
    ok(dir, &["apps", "create", "bot", "--team", "ml"]);
    ok(
        dir,
        &[
            "models",
            "register",
            "tiny",
            "1.0",
            "--provider",
            "mock",
            "--model-id",
            "tiny",
        ],
    );
    ok(dir, &["models", "approve", "tiny@1.0"]);
    std::fs::write(dir.join("p.md"), "You are a bot.\n").unwrap();
    ok(dir, &["prompts", "add", "bot", "1.0.0", "p.md"]);
    std::fs::write(dir.join("adr.md"), "# ADR 1\n").unwrap();
    let r = json(
        dir,
        &[
            "release",
            "create",
            "ml/bot",
            "--model",
            "tiny@1.0",
            "--prompt",
            "bot@1.0.0",
            "--adr",
            "adr.md",
        ],
    );
    let id = r["id"].as_str().unwrap().to_owned();
    // With no approver roles required, the evidence alone approves it.
    ok(dir, &["release", "evidence", &id, "adr=adr.md"]);
    let p = json(dir, &["release", "promote", &id, "--no-post-check"]);
    assert_eq!(p["state"], "active");
    id
}

#[test]
fn the_drill_rolls_back_a_failing_release_and_its_proof_verifies_offline() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let good = app_with_active_release(dir, "[audit]\nanchor_dir = \"anchors\"\n");
    ok(
        dir,
        &[
            "audit",
            "keygen",
            "--name",
            "test.local/ledger",
            "--out",
            "keys",
        ],
    );
    // Without a key the drill says what it needs before touching anything.
    let err = refused(dir, &["release", "drill", "ml/bot", "-o", "p.json"]);
    assert!(err.contains("--key-file"), "{err}");
    let out = json(
        dir,
        &[
            "release",
            "drill",
            "ml/bot",
            "-o",
            "proof.json",
            "--key-file",
            "keys/ledger.key",
            "--calls",
            "30",
        ],
    );
    let drill = out["release"].as_str().unwrap().to_owned();
    assert_eq!(out["restored"], good.as_str());
    assert_eq!(out["post_check"]["verdict"]["status"], "breach");
    assert_eq!(out["post_check"]["after"]["calls"], 30);
    assert_eq!(out["post_check"]["after"]["errors"], 15);
    assert_eq!(out["post_check"]["before"]["errors"], 0);
    let list = json(dir, &["release", "list"]);
    let state = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state(&good), "active");
    assert_eq!(state(&drill), "rolled back");
    // The drill's key is revoked.
    let keys = ok(dir, &["keys", "list", "--all", "--json"]);
    assert!(
        keys.contains("release-drill") && keys.contains("revoked"),
        "{keys}"
    );

    let v = json(
        dir,
        &[
            "release",
            "verify-proof",
            "proof.json",
            "--public-key",
            "keys/ledger.pub",
        ],
    );
    assert_eq!(v["verified"], true);
    assert_eq!(v["record"]["decision"], "rolled back");
    assert_eq!(v["record"]["rollback_to"]["id"], good.as_str());
    assert!(v["record"]["what"]["checksums"]["model:tiny@1.0"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let proof: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("proof.json")).unwrap()).unwrap();
    // A read-only copy beside the anchored checkpoints (the WORM copy).
    let kept: Vec<_> = std::fs::read_dir(dir.join("anchors/release-proofs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].display().to_string().contains(&drill));
    assert!(std::fs::metadata(&kept[0])
        .unwrap()
        .permissions()
        .readonly());
    assert_eq!(proof["telemetry"]["after"]["errors"], 15);
    // One changed byte anywhere that matters fails: a number in the telemetry, a letter in
    // an event, the checkpoint.
    let text = std::fs::read_to_string(dir.join("proof.json")).unwrap();
    for (from, to) in [
        ("\"errors\": 15", "\"errors\": 14"),
        ("release.rollback", "release.rollbacK"),
        ("test.local/ledger\\n", "test.local/ledgeR\\n"),
    ] {
        assert!(text.contains(from), "{from}");
        std::fs::write(dir.join("bad.json"), text.replacen(from, to, 1)).unwrap();
        let (code, err) = common::fails(
            dir,
            &[
                "release",
                "verify-proof",
                "bad.json",
                "--public-key",
                "keys/ledger.pub",
            ],
        );
        assert_eq!(code, 1);
        assert!(err.contains("proof NOT verified"), "{err}");
    }
    // Proofs are never overwritten; a broken file is an error that says so.
    let err = refused(
        dir,
        &[
            "release",
            "proof",
            &drill,
            "-o",
            "proof.json",
            "--key-file",
            "keys/ledger.key",
        ],
    );
    assert!(err.contains("never overwritten"), "{err}");
    std::fs::write(dir.join("broken.json"), "{\"kind\": ").unwrap();
    let err = refused(
        dir,
        &[
            "release",
            "verify-proof",
            "broken.json",
            "--public-key",
            "keys/ledger.pub",
        ],
    );
    assert!(err.contains("not JSON"), "{err}");
    // The proof of the first release's promotion (approved by evidence, no approvers).
    ok(
        dir,
        &[
            "release",
            "proof",
            &good,
            "-o",
            "good.json",
            "--key-file",
            "keys/ledger.key",
        ],
    );
    let v = json(
        dir,
        &[
            "release",
            "verify-proof",
            "good.json",
            "--public-key",
            "keys/ledger.pub",
        ],
    );
    assert_eq!(v["record"]["decision"], "promoted");
}

#[test]
fn a_spent_error_budget_freezes_promotion_until_it_recovers() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let slo = "\n[[release.slo]]\nname = \"bot availability\"\napp = \"ml/bot\"\nobjective = 50.0\nwindow = \"10m\"\nmin_calls = 5\n";
    app_with_active_release(dir, slo);
    let config = std::fs::read_to_string(dir.join("custos.toml")).unwrap();
    // A drill's injected failures spend no budget.
    ok(
        dir,
        &["audit", "keygen", "--name", "t.local/l", "--out", "k"],
    );
    ok(
        dir,
        &[
            "release",
            "drill",
            "ml/bot",
            "-o",
            "d.json",
            "--key-file",
            "k/ledger.key",
            "--calls",
            "20",
        ],
    );
    let s = json(dir, &["release", "slo"]);
    assert_eq!(s[0]["budget"]["exhausted"], false, "{s}");
    // Real calls failing through a real gateway do.
    std::fs::write(
        dir.join("custos.toml"),
        config.replace("kind = \"mock\"\n", "kind = \"mock\"\nfailure_rate = 1.0\n"),
    )
    .unwrap();
    let key = ok(dir, &["keys", "create", "--team", "ml", "--app", "bot"])
        .trim()
        .to_owned();
    let (server, url) = serve(dir);
    for _ in 0..12 {
        let (status, body) = chat(&url, &key, "bot");
        assert_eq!(status, 503, "{body}");
    }
    // Usage is committed within database.commit_interval of each answer.
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(server);
    std::fs::write(dir.join("custos.toml"), &config).unwrap();
    let out = common::custos(dir, &["release", "slo", "--json"]);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s[0]["budget"]["exhausted"], true, "{s}");
    // Every call failed against a 50% objective: the budget burns at 2x over each lookback,
    // under the alerts' rates.
    let windows: Vec<&str> = s[0]["rates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["window"].as_str().unwrap())
        .collect();
    assert_eq!(windows, ["5m", "30m", "1h", "6h"]);
    assert_eq!(s[0]["rates"][0]["rate"], 2.0, "{s}");
    assert_eq!(s[0]["firing"], json!([]));
    assert_eq!(out.status.code(), Some(1));
    std::fs::write(dir.join("p2.md"), "You are a kinder bot.\n").unwrap();
    ok(dir, &["prompts", "add", "bot", "1.0.1", "p2.md"]);
    let r = json(
        dir,
        &[
            "release",
            "create",
            "ml/bot",
            "--model",
            "tiny@1.0",
            "--prompt",
            "bot@1.0.1",
            "--tier",
            "high",
            "--adr",
            "adr.md",
        ],
    );
    let id = r["id"].as_str().unwrap().to_owned();
    ok(dir, &["release", "evidence", &id, "adr=adr.md"]);
    let err = refused(dir, &["release", "promote", &id, "--no-post-check"]);
    assert!(
        err.contains("release-frozen")
            && err.contains("bot availability")
            && err.contains(" bad of "),
        "{err}"
    );
    // Good calls bring the bad share back under the objective; the freeze lifts.
    let (server, url) = serve(dir);
    for _ in 0..14 {
        let (status, body) = chat(&url, &key, "bot");
        assert_eq!(status, 200, "{body}");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(server);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !common::custos(dir, &["release", "slo"]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "the budget never recovered"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Promotion watches the new release; no calls in the window is no verdict, no rollback.
    let out = ok(
        dir,
        &[
            "release",
            "promote",
            &id,
            "--post-check",
            "1s",
            "--auto-rollback",
        ],
    );
    assert!(
        out.contains(": active") && out.contains("insufficient"),
        "{out}"
    );
    let list = json(dir, &["release", "list"]);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["state"], "active");
}

/// One admin API call over HTTP: (status, body).

#[test]
fn the_admin_api_decides_promotes_checks_rolls_back_and_proves() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let issuer = custos_authz::testkit::TestIssuer::new("https://idp.test");
    std::fs::write(dir.join("jwks.json"), issuer.jwks()).unwrap();
    let first = app_with_active_release(
        dir,
        "[release.tiers.low]\napprovals = [\"owner\"]\n\n[[auth.jwt]]\nissuer = \"https://idp.test\"\naudience = \"custos\"\njwks_file = \"jwks.json\"\ntenants = [\"default\"]\n",
    );
    let token = |sub: &str, roles: &[&str]| common::admin_token(&issuer, sub, roles);
    let bob = token("bob", &["owner"]);
    let admin_tok = token("ada", &["tenant-admin"]);
    std::fs::write(dir.join("p2.md"), "You are a bot.  \n").unwrap();
    ok(dir, &["prompts", "add", "bot", "1.0.1", "p2.md"]);
    let r = json(
        dir,
        &[
            "release",
            "create",
            "ml/bot",
            "--model",
            "tiny@1.0",
            "--prompt",
            "bot@1.0.1",
        ],
    );
    assert_eq!(r["tier"], "low", "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    let (_server, url) = serve(dir);
    let base = "/admin/tenants/default";

    let (s, list) = admin(&url, &admin_tok, "GET", &format!("{base}/releases"), None);
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    // Promotion before approval is refused with what is missing.
    let (s, p) = admin(
        &url,
        &admin_tok,
        "POST",
        &format!("{base}/releases/{id}/promote"),
        Some(serde_json::json!({"why": "early"})),
    );
    assert_eq!(s, 400, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("approval by owner"),
        "{p}"
    );
    // An approver without the role is refused; the owner approves.
    let (s, p) = admin(
        &url,
        &admin_tok,
        "POST",
        &format!("{base}/releases/{id}/approve"),
        Some(serde_json::json!({"role": "owner"})),
    );
    assert!(s == 400 || s == 403, "{s} {p}");
    let (s, p) = admin(
        &url,
        &bob,
        "POST",
        &format!("{base}/releases/{id}/approve"),
        Some(serde_json::json!({"role": "owner", "why": "looks fine"})),
    );
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["data"]["state"], "approved");
    let (s, p) = admin(
        &url,
        &admin_tok,
        "POST",
        &format!("{base}/releases/{id}/promote"),
        Some(serde_json::json!({"why": "CHG-9", "ticket": "CHG-9"})),
    );
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["data"]["state"], "active");
    // The post-check with no calls yet has nothing to judge.
    let (s, p) = admin(
        &url,
        &admin_tok,
        "POST",
        &format!("{base}/releases/{id}/check"),
        Some(serde_json::json!({"auto_rollback": true})),
    );
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["data"]["post_check"]["verdict"]["status"], "insufficient");
    assert!(p["data"]["rolled_back_to"].is_null());
    // Rollback needs why; then the first release is active again.
    let (s, p) = admin(
        &url,
        &admin_tok,
        "POST",
        &format!("{base}/rollback"),
        Some(serde_json::json!({"app": "ml/bot"})),
    );
    assert_eq!(s, 422, "{p}");
    let (s, p) = admin(
        &url,
        &admin_tok,
        "POST",
        &format!("{base}/rollback"),
        Some(serde_json::json!({"app": "ml/bot", "why": "tone regression"})),
    );
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["data"]["id"], first.as_str());
    assert_eq!(p["data"]["state"], "active");
    // The proof waits for a signed checkpoint, then verifies offline.
    let (s, p) = admin(
        &url,
        &admin_tok,
        "GET",
        &format!("{base}/releases/{id}/proof"),
        None,
    );
    assert_eq!(s, 409, "{p}");
    ok(
        dir,
        &["audit", "keygen", "--name", "t.local/l", "--out", "k"],
    );
    ok(dir, &["audit", "checkpoint", "--key-file", "k/ledger.key"]);
    let (s, p) = admin(
        &url,
        &admin_tok,
        "GET",
        &format!("{base}/releases/{id}/proof"),
        None,
    );
    assert_eq!(s, 200, "{p}");
    std::fs::write(dir.join("api-proof.json"), p["data"].to_string()).unwrap();
    let v = json(
        dir,
        &[
            "release",
            "verify-proof",
            "api-proof.json",
            "--public-key",
            "k/ledger.pub",
        ],
    );
    assert_eq!(v["record"]["decision"], "rolled back");
    assert_eq!(v["record"]["why"], "tone regression");
    assert_eq!(v["record"]["rollback_to"]["id"], first.as_str());
    // An id that is not a release of the tenant is not found; SLOs list (none configured).
    let (s, _) = admin(
        &url,
        &admin_tok,
        "GET",
        &format!("{base}/releases/rel_nope"),
        None,
    );
    assert_eq!(s, 404);
    let (s, p) = admin(&url, &admin_tok, "GET", &format!("{base}/slo"), None);
    assert_eq!(s, 200, "{p}");
}

//! The risk register, DPIAs, compliance status and the evidence bundle, end to end through
//! the CLI over a real SQLite store: lint rules by line, a DPIA blocking a promotion, checks
//! passing and failing on fixtures made through the CLI, and a bundle that verifies offline
//! and fails, naming the file, when one byte changes.

mod common;

use common::{custos, fails, json, ok, refused, token_file};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;

fn check<'a>(status: &'a Value, id: &str) -> &'a str {
    status["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id}"))["status"]
        .as_str()
        .unwrap()
}

/// `comply status --json` whatever its exit status (1 when a control fails).
fn status(dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["comply", "status", "--json"];
    args.extend_from_slice(extra);
    let out = custos(dir, &args);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_risk_register_lints_by_line_and_reports() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    ok(dir, &["init"]);
    ok(dir, &["risk", "init", "--system", "support-bot"]);
    // Owners are left for the user: each risk's blank owner is named with its line.
    let out = custos(dir, &["risk", "lint"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("risks.yaml:") && first.contains("error[missing-owner] R01"),
        "{text}"
    );
    let line: usize = first.split(':').nth(1).unwrap().parse().unwrap();
    let yaml = std::fs::read_to_string(dir.join("risks.yaml")).unwrap();
    assert!(yaml
        .lines()
        .nth(line - 1)
        .unwrap()
        .trim()
        .starts_with("owner:"));

    ok(
        dir,
        &["risk", "init", "--force", "--owner", "risk@example.com"],
    );
    ok(dir, &["risk", "lint"]);
    // Break it one rule at a time.
    let yaml = std::fs::read_to_string(dir.join("risks.yaml")).unwrap();
    let cases = [
        (
            yaml.replacen("    mitigation: ", "    mitigation_: ", 1),
            "syntax",
        ),
        (yaml.replacen("due: 20", "due: 19", 1), "overdue"),
        (
            yaml.replacen(
                "status: open",
                "status: accepted\n    acceptance: {by: ciso@example.com, until: 2020-01-01}",
                1,
            ),
            "acceptance-expired",
        ),
        (
            yaml.replacen("controls: [", "controls: [budget:nope/none, ", 1),
            "unknown-control",
        ),
        (
            {
                let cut = yaml.find("  - id: R05").unwrap();
                yaml[..cut].to_owned()
            },
            "too-few-risks",
        ),
    ];
    for (text, rule) in cases {
        std::fs::write(dir.join("bad.yaml"), &text).unwrap();
        let out = custos(dir, &["risk", "lint", "bad.yaml", "--json"]);
        assert_eq!(out.status.code(), Some(1), "{rule}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let p = &v["problems"][0];
        assert_eq!(p["rule"], rule, "{v}");
        assert!(p["line"].as_u64().unwrap() >= 1);
    }
    // Reports: a heat map with every open risk, a table with FAIR exposure.
    let svg = ok(dir, &["risk", "report", "--format", "svg"]);
    assert!(svg.starts_with("<svg") && svg.contains(">R01</text>"));
    let md = ok(dir, &["risk", "report", "--format", "md", "--seed", "7"]);
    assert_eq!(
        md,
        ok(dir, &["risk", "report", "--format", "md", "--seed", "7"])
    );
    assert!(md.contains("| R01 |") && md.contains("seed 7"));
    let html = ok(dir, &["risk", "report", "--format", "html"]);
    assert!(html.contains("<table>") && html.contains("<svg"));
    let (code, err) = fails(dir, &["risk", "lint", "missing.yaml"]);
    assert!(code == 2 && err.contains("missing.yaml"), "{err}");
    std::fs::write(dir.join("latin1.yaml"), b"risks:\n  - id: R\xe9\n").unwrap();
    let (code, err) = fails(dir, &["risk", "lint", "latin1.yaml"]);
    assert!(code == 2 && err.contains("not UTF-8"), "{err}");
}

#[test]
fn a_dpia_blocks_the_release_that_triggered_it_until_approved() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let issuer = custos_authz::testkit::TestIssuer::new("https://idp.test");
    std::fs::write(dir.join("jwks.json"), issuer.jwks()).unwrap();
    std::fs::write(
        dir.join("custos.toml"),
        "[[auth.jwt]]\nissuer = \"https://idp.test\"\naudience = \"custos\"\njwks_file = \"jwks.json\"\ntenants = [\"acme\"]\n\n[[providers]]\nname = \"mock\"\nkind = \"mock\"\n\n[[models]]\nname = \"tiny\"\nprovider = \"mock\"\nregistry = \"tiny@1.0\"\n\n[release.tiers.high]\napprovals = []\nevidence = [\"adr\"]\n",
    )
    .unwrap();
    ok(dir, &["tenants", "create", "acme"]);
    ok(dir, &["teams", "create", "ml", "--tenant", "acme"]);
    ok(
        dir,
        &["apps", "create", "bot", "--team", "ml", "--tenant", "acme"],
    );
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
    // A dataset with personal data: its registration requires a DPIA.
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
            "datasets",
            "add",
            "users",
            "v1",
            "data",
            "--pii-report",
            "pii.json",
        ],
    );
    let list = json(dir, &["dpia", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["trigger"], "pii-dataset");
    assert_eq!(list[0]["state"], "required");

    // Alice writes releases and is a privacy officer too: she still never approves her own DPIA.
    let alice = token_file(
        dir,
        &issuer,
        "alice",
        &["release-author", "owner", "privacy-officer"],
    );
    let pat = token_file(dir, &issuer, "pat", &["privacy-officer"]);
    let eve = token_file(dir, &issuer, "eve", &["developer"]);
    std::fs::write(dir.join("adr.md"), "# ADR 1\n").unwrap();
    std::fs::write(dir.join("vulns.json"), r#"{"findings": [], "failing": 0}"#).unwrap();
    let r = json(
        dir,
        &[
            "release",
            "create",
            "ml/bot",
            "--tenant",
            "acme",
            "--model",
            "tiny@1.0",
            "--data",
            "users@v1",
            "--token-file",
            &alice,
        ],
    );
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(r["tier"], "high");
    ok(
        dir,
        &[
            "release",
            "evidence",
            &id,
            "adr=adr.md",
            "vulns=vulns.json",
            "--token-file",
            &alice,
        ],
    );
    let list = json(dir, &["dpia", "list"]);
    let dpia = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["release"] == id.as_str())
        .expect("the release's DPIA")
        .clone();
    let dpia_id = dpia["id"].as_str().unwrap().to_owned();
    assert_eq!(dpia["trigger"], "high-release-pii");
    let err = refused(
        dir,
        &[
            "release",
            "promote",
            &id,
            "--no-post-check",
            "--token-file",
            &alice,
        ],
    );
    assert!(err.contains(&dpia_id) && err.contains("DPIA"), "{err}");

    // The template must be answered before it is attached.
    ok(dir, &["dpia", "template", &dpia_id, "-o", "dpia.md"]);
    let template = std::fs::read_to_string(dir.join("dpia.md")).unwrap();
    assert!(template.contains("Necessity and proportionality") && template.contains("users@v1"));
    let err = refused(
        dir,
        &[
            "dpia",
            "new",
            &dpia_id,
            "--file",
            "dpia.md",
            "--token-file",
            &alice,
        ],
    );
    assert!(err.contains("incomplete"), "{err}");
    std::fs::write(dir.join("dpia.md"), template.replace("TODO", "Assessed.")).unwrap();
    ok(
        dir,
        &[
            "dpia",
            "new",
            &dpia_id,
            "--file",
            "dpia.md",
            "--why",
            "DPIA for the bot",
            "--token-file",
            &alice,
        ],
    );
    // Not by its author, not by a developer; by the privacy officer.
    assert!(
        refused(dir, &["dpia", "approve", &dpia_id, "--token-file", &alice])
            .contains("cannot approve")
    );
    assert!(!refused(dir, &["dpia", "approve", &dpia_id, "--token-file", &eve]).is_empty());
    ok(
        dir,
        &[
            "dpia",
            "approve",
            &dpia_id,
            "--why",
            "residual risk acceptable",
            "--token-file",
            &pat,
        ],
    );
    let p = json(
        dir,
        &[
            "release",
            "promote",
            &id,
            "--no-post-check",
            "--token-file",
            &alice,
        ],
    );
    assert_eq!(p["state"], "active");
    // The ledger holds the trail: required, drafted, approved.
    let events = ok(dir, &["audit", "query", "--activity", "dpia.", "--json"]);
    let events: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .collect();
    let allowed: Vec<&str> = events
        .iter()
        .filter(|e| e["outcome"] == "allowed")
        .map(|e| e["activity"].as_str().unwrap())
        .collect();
    assert_eq!(
        allowed,
        [
            "dpia.required",
            "dpia.required",
            "dpia.draft",
            "dpia.approve"
        ]
    );
    assert!(
        events.iter().any(|e| e["outcome"] == "denied"),
        "eve's refusal is evidence too"
    );
    // One DPIA (the dataset's) is still required: the check fails until it is approved.
    let s = status(dir, &[]);
    assert_eq!(check(&s, "dpia-approved"), "fail");
    assert_eq!(check(&s, "models-signed"), "pass");
    assert_eq!(check(&s, "high-release-security"), "fail");
    assert_eq!(check(&s, "release-vulns"), "pass");
    assert_eq!(check(&s, "models-carded"), "fail");
    // A changed report is not evidence any more.
    std::fs::write(dir.join("vulns.json"), r#"{"findings": [{"id": "CVE-9", "severity": "critical", "package": "x", "version": "1", "suppressed_by": null}]}"#).unwrap();
    assert_eq!(check(&status(dir, &[]), "release-vulns"), "fail");
    // The dataset's DPIA, written and approved: every DPIA is.
    let other = json(dir, &["dpia", "list"])
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["trigger"] == "pii-dataset")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(dir, &["dpia", "template", &other, "-o", "d2.md"]);
    let t = std::fs::read_to_string(dir.join("d2.md")).unwrap();
    std::fs::write(dir.join("d2.md"), t.replace("TODO", "Assessed.")).unwrap();
    ok(
        dir,
        &[
            "dpia",
            "new",
            &other,
            "--file",
            "d2.md",
            "--token-file",
            &alice,
        ],
    );
    ok(dir, &["dpia", "approve", &other, "--token-file", &pat]);
    assert_eq!(check(&status(dir, &[]), "dpia-approved"), "pass");

    // The bundle carries the release with its proof and the DPIAs with their text; the
    // proof verifies inside the bundle with the same key.
    ok(dir, &["audit", "keygen"]);
    // An erasure closed at once is within its SLA; its receipt goes in the bundle.
    ok(
        dir,
        &[
            "erase",
            "--subject",
            "email:bob@example.com",
            "--why",
            "DSR-1",
            "-o",
            "receipt.json",
            "--key-file",
            ".custos/ledger.key",
        ],
    );
    assert_eq!(check(&status(dir, &[]), "erasure-sla"), "pass");
    let year = &custos_time(0)[..4];
    let b = json(
        dir,
        &[
            "comply",
            "bundle",
            "--period",
            year,
            "-o",
            "b.zip",
            "--key-file",
            ".custos/ledger.key",
        ],
    );
    let files = b["manifest"]["files"].to_string();
    assert!(
        files.contains(&format!("releases/{id}/proof.json")),
        "{files}"
    );
    assert!(files.contains(&format!("dpia/{dpia_id}.md")), "{files}");
    let v = json(
        dir,
        &[
            "comply",
            "verify",
            "b.zip",
            "--public-key",
            ".custos/ledger.pub",
        ],
    );
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["proofs"].as_u64().unwrap() >= 2,
        "a release proof and a receipt: {v}"
    );
}

#[test]
fn checks_pass_and_fail_on_what_the_cli_made() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    ok(dir, &["init"]);
    ok(dir, &["audit", "keygen"]);
    ok(dir, &["teams", "create", "ml"]);
    ok(dir, &["apps", "create", "bot", "--team", "ml"]);
    ok(dir, &["keys", "create", "--team", "ml", "--app", "bot"]);
    let s = status(dir, &[]);
    for (id, want) in [
        ("access-review", "fail"),
        ("key-rotation", "pass"),
        ("team-budgets", "fail"),
        ("pii-guard", "fail"),
        ("risk-register", "not-covered"),
        ("dpia-approved", "not-covered"),
        ("ledger-anchored", "fail"),
    ] {
        assert_eq!(check(&s, id), want, "{id}: {s}");
    }
    ok(dir, &["access", "review", "--tenant", "default"]);
    ok(
        dir,
        &[
            "budgets",
            "create",
            "ml-monthly",
            "--scope",
            "team:ml",
            "--amount",
            "100",
        ],
    );
    let config = std::fs::read_to_string(dir.join("custos.toml")).unwrap();
    std::fs::create_dir_all(dir.join("anchors")).unwrap();
    std::fs::write(
        dir.join("custos.toml"),
        format!("{config}\n[pii.guard]\nprompt = \"redact\"\n").replacen(
            "[audit]\n",
            "[audit]\nanchor_dir = \"anchors\"\n",
            1,
        ),
    )
    .unwrap();
    ok(
        dir,
        &["audit", "checkpoint", "--key-file", ".custos/ledger.key"],
    );
    ok(dir, &["risk", "init", "--owner", "risk@example.com"]);
    let s = status(dir, &[]);
    for id in [
        "access-review",
        "key-rotation",
        "team-budgets",
        "pii-guard",
        "risk-register",
        "ledger-anchored",
    ] {
        assert_eq!(check(&s, id), "pass", "{id}: {s}");
    }
    // A hundred days on, the review and the key have aged out.
    let later = custos_time(100);
    let s = status(dir, &["--as-of", &later]);
    assert_eq!(check(&s, "access-review"), "fail");
    assert_eq!(check(&s, "key-rotation"), "fail");
    // Controls follow their checks; exit 1 while any fails.
    let nist = status(dir, &["--framework", "nist-ai-rmf"]);
    let ctl = |id: &str| {
        nist["controls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(ctl("MEASURE 2.7"), "not-covered"); // release-vulns has nothing to judge
    assert_eq!(ctl("MAP 5.1"), "pass"); // the register
    assert_eq!(ctl("GOVERN 3.1"), "not-covered"); // nothing maps to it
    let (code, _) = fails(dir, &["comply", "status", "--framework", "soc2"]);
    assert_ne!(code, 0);
}

/// `YYYY-MM-DD` `days` from now.
fn custos_time(days: i64) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + days * 86_400;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{m:02}-{day:02}", if m <= 2 { y + 1 } else { y })
}

#[test]
fn the_bundle_verifies_offline_and_names_a_changed_file() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    ok(dir, &["init"]);
    ok(dir, &["audit", "keygen"]);
    ok(dir, &["teams", "create", "ml"]);
    ok(dir, &["access", "review", "--tenant", "default"]);
    ok(dir, &["risk", "init", "--owner", "risk@example.com"]);
    let year = &custos_time(0)[..4];
    let out = json(
        dir,
        &[
            "comply",
            "bundle",
            "--period",
            year,
            "-o",
            "bundle.zip",
            "--key-file",
            ".custos/ledger.key",
            "--why",
            "annual audit",
        ],
    );
    let files: Vec<String> = out["manifest"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    for want in [
        "index.html",
        "ledger/manifest.json",
        "ledger/checkpoint.note",
        "comply/status.json",
        "risks/risks.yaml",
        "risks/lint.json",
        "access-reviews/reviews.json",
    ] {
        assert!(files.iter().any(|f| f == want), "{want} in {files:?}");
    }
    // Verified with the public key alone, away from the database.
    let away = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("bundle.zip"), away.path().join("b.zip")).unwrap();
    std::fs::copy(
        dir.join(".custos/ledger.pub"),
        away.path().join("ledger.pub"),
    )
    .unwrap();
    let v = json(
        away.path(),
        &["comply", "verify", "b.zip", "--public-key", "ledger.pub"],
    );
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["ledger"]["end"].as_u64().unwrap() > 0);
    assert!(
        !away.path().join(".custos").exists(),
        "verify made a database"
    );

    // One changed byte in one file: that file is named.
    let bytes = std::fs::read(away.path().join("b.zip")).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..z.len() {
        let mut e = z.by_index(i).unwrap();
        let name = e.name().unwrap().into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        if name == "risks/risks.yaml" {
            b[10] ^= 0x20;
        }
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(&b).unwrap();
    }
    std::fs::write(away.path().join("t.zip"), w.finish().unwrap().into_inner()).unwrap();
    let out = custos(
        away.path(),
        &["comply", "verify", "t.zip", "--public-key", "ledger.pub"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("risks/risks.yaml: altered"), "{err}");
    // Another key, a broken archive.
    ok(
        away.path(),
        &["audit", "keygen", "--name", "other", "--out", "k"],
    );
    let (code, err) = fails(
        away.path(),
        &["comply", "verify", "b.zip", "--public-key", "k/ledger.pub"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("manifest.sig"), "{err}");
    std::fs::write(away.path().join("junk.zip"), b"PK\x03\x04 not really").unwrap();
    let (code, _) = fails(
        away.path(),
        &["comply", "verify", "junk.zip", "--public-key", "ledger.pub"],
    );
    assert_eq!(code, 2);
    // A bundle never overwrites, and a period must be one.
    let (_, err) = fails(
        dir,
        &[
            "comply",
            "bundle",
            "--period",
            "2026-Q9",
            "-o",
            "x.zip",
            "--key-file",
            ".custos/ledger.key",
        ],
    );
    assert!(err.contains("--period"), "{err}");
}

#[test]
fn the_threat_model_draws_the_deployment_and_names_what_is_off() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::write(
        dir.join("jwks.json"),
        custos_authz::testkit::TestIssuer::new("https://idp.test").jwks(),
    )
    .unwrap();
    std::fs::write(
        dir.join("custos.toml"),
        "[[auth.jwt]]\nissuer = \"https://idp.test\"\naudience = \"custos\"\njwks_file = \"jwks.json\"\ntenants = [\"*\"]\n\n[[providers]]\nname = \"us\"\nkind = \"mock\"\nregion = \"us-east\"\n\n[[providers]]\nname = \"eu\"\nkind = \"mock\"\nregion = \"eu-west\"\n\n[[models]]\nname = \"tiny\"\nprovider = \"us\"\n\n[pii.guard]\nprompt = \"redact\"\n",
    )
    .unwrap();
    ok(dir, &["tenants", "create", "acme"]);
    ok(dir, &["tenants", "regions", "acme", "eu-west"]);
    ok(dir, &["teams", "create", "ml", "--tenant", "acme"]);
    ok(
        dir,
        &["apps", "create", "bot", "--team", "ml", "--tenant", "acme"],
    );
    ok(dir, &["risk", "init", "--owner", "risk@example.com"]);
    let m = json(dir, &["threat", "model"]);
    let control = |surface: &str, id: &str| -> Value {
        m["surfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == surface)
            .unwrap()["controls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{surface}/{id} in {m}"))
            .clone()
    };
    assert_eq!(control("prompt", "guard:pii-prompt")["on"], true);
    let residency = control("data", "residency:acme");
    assert_eq!(residency["on"], false);
    assert!(
        residency["detail"]
            .as_str()
            .unwrap()
            .contains("us (us-east)"),
        "{residency}"
    );
    let oidc = control("access", "auth:oidc:idp.test");
    assert_eq!(oidc["on"], false, "an issuer bound to no tenant is a gap");
    assert_eq!(control("model", "routes:registry-pinned")["on"], false);
    // Flows: the app to the gateway, the gateway to each provider in its own boundary.
    let mermaid = m["mermaid"].as_str().unwrap();
    assert!(mermaid.contains("app_acme_ml_bot ==>"), "{mermaid}");
    assert!(mermaid.contains("provider us (us-east)") && mermaid.contains("prompts, PII redacted"));
    // The register's risks sit on their surfaces.
    let prompt = m["surfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "prompt")
        .unwrap();
    assert!(prompt["risks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == "R01"));
    let svg = ok(dir, &["threat", "model", "--format", "svg"]);
    assert!(svg.starts_with("<svg") && svg.contains("tenant acme"));
    let out = custos(dir, &["threat", "model", "--fail-on-gaps"]);
    assert_eq!(out.status.code(), Some(1));
}

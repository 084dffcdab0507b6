//! `custos iac scan` over fixtures written for it (`tests/fixtures/iac`): every rule fails
//! on something in `fail/` and nothing fails in `pass/`, across Terraform plans,
//! CloudFormation, Kubernetes manifests and Dockerfiles; SARIF that validates; exceptions
//! shared with `vulns`, an expired one failing; inputs that hold nothing to check.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/iac")
}

fn scan(dir: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["iac", "scan"];
    all.extend_from_slice(args);
    all.extend(["--format", "json"]);
    let out = custos(dir, &all);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), v)
}

fn ids(v: &Value) -> BTreeSet<String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_rule_fails_on_its_fixture_and_passes_on_the_fixed_one() {
    let d = tempfile::tempdir().unwrap();
    let rules: Value = json(d.path(), &["iac", "rules"]);
    let mut all: BTreeSet<String> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    all.insert("CUSTOS-COST-001".into());
    let fail = fixtures().join("fail");
    let (code, v) = scan(
        d.path(),
        &[fail.to_str().unwrap(), "--require-tags", "Project,Env"],
    );
    assert_eq!(code, Some(1));
    let found = ids(&v);
    let missed: Vec<&String> = all.difference(&found).collect();
    assert!(
        missed.is_empty(),
        "rules with no failing fixture: {missed:?}"
    );
    assert_eq!(v["files"]["terraform-plan"], 1);
    assert_eq!(v["files"]["cloudformation"], 1);
    assert_eq!(v["files"]["kubernetes"], 1);
    assert_eq!(v["files"]["dockerfile"], 1);
    // Findings say where: file and line for files that have lines, the resource always.
    let priv_ = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule_id"] == "CUSTOS-K8S-006")
        .unwrap();
    assert_eq!(priv_["file"], "k8s.yaml");
    assert_eq!(priv_["line"], 21);
    assert_eq!(
        priv_["resource"],
        "Deployment/inference/vllm (container server)"
    );
    assert!(priv_["remediation"]
        .as_str()
        .unwrap()
        .contains("privileged"));
    let sg = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule_id"] == "CUSTOS-AWS-022")
        .unwrap();
    assert_eq!(
        (sg["file"].as_str(), sg["line"].as_u64()),
        (Some("template.yaml"), Some(4))
    );

    let pass = fixtures().join("pass");
    let (code, v) = scan(
        d.path(),
        &[
            pass.to_str().unwrap(),
            "--require-tags",
            "Project,Env",
            "--fail-on",
            "low",
        ],
    );
    assert_eq!(code, Some(0), "{v}");
    assert!(ids(&v).is_empty(), "{v}");
    assert!(v["resources"].as_u64().unwrap() > 20);

    // SARIF for code scanning, valid against the official schema.
    let sarif = d.path().join("iac.sarif");
    let out = custos(
        d.path(),
        &[
            "iac",
            "scan",
            fail.to_str().unwrap(),
            "--format",
            "sarif",
            "-o",
            sarif.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    assert!(
        doc["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .len()
            > 20
    );
    schema_valid(&sarif, "sarif-2.1.0", "sarif-schema-2.1.0.json");
}

#[test]
fn exceptions_accept_until_they_expire_and_bad_inputs_are_named() {
    let d = tempfile::tempdir().unwrap();
    let k8s = fixtures().join("fail/k8s.yaml");
    let k8s = k8s.to_str().unwrap();
    std::fs::write(
        d.path().join("ex.toml"),
        "[[exception]]\nid = \"CUSTOS-K8S-006\"\nresource = \"Deployment/inference/vllm*\"\nreason = \"the GPU driver needs it until the device plugin lands\"\nowner = \"ml-platform@example.com\"\nexpires = \"2099-12-31\"\n",
    )
    .unwrap();
    let (_, v) = scan(d.path(), &[k8s, "--exceptions", "ex.toml"]);
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule_id"] == "CUSTOS-K8S-006")
        .unwrap();
    assert!(f["suppressed_by"]
        .as_str()
        .unwrap()
        .contains("ml-platform@example.com"));
    // Only the accepted critical finding: with --fail-on critical the scan passes.
    let (code, _) = scan(
        d.path(),
        &[k8s, "--exceptions", "ex.toml", "--fail-on", "critical"],
    );
    assert_eq!(code, Some(0));
    std::fs::write(
        d.path().join("old.toml"),
        "[[exception]]\nid = \"CUSTOS-K8S-005\"\nreason = \"limits come later\"\nowner = \"ml@example.com\"\nexpires = \"2020-01-01\"\n",
    )
    .unwrap();
    let (code, v) = scan(
        d.path(),
        &[k8s, "--exceptions", "old.toml", "--fail-on", "none"],
    );
    assert_eq!(code, Some(1), "an expired exception fails: {v}");
    // Nothing to check, and a broken manifest, are said so (exit 2).
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("notes.yaml"), "title: not infrastructure\n").unwrap();
    let (code, err) = fails(d.path(), &["iac", "scan", "empty"]);
    assert_eq!(code, 2);
    assert!(err.contains("no Terraform plan"), "{err}");
    std::fs::write(
        empty.join("broken.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: [unclosed\n",
    )
    .unwrap();
    let (code, err) = fails(d.path(), &["iac", "scan", "empty"]);
    assert_eq!(code, 2);
    assert!(err.contains("broken.yaml: not YAML"), "{err}");
    let (code, err) = fails(d.path(), &["iac", "scan", "no-such-dir"]);
    assert_eq!(code, 2);
    assert!(err.contains("no such file"), "{err}");
}

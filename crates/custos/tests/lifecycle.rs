//! Data lifecycle as a user drives it: lineage between registered datasets and models, legal
//! holds, and an erasure that rewrites a CSV and a derived JSON Lines file found through
//! lineage, with a receipt that verifies offline and fails when edited.

mod common;

use common::{fails, json, ok, refused};
use serde_json::Value;

#[test]
fn a_subject_is_erased_through_lineage_with_a_receipt_and_holds_block() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::write(
        dir.join("custos.toml"),
        "[audit]\nanchor_dir = \"anchors\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("data/raw")).unwrap();
    std::fs::create_dir_all(dir.join("data/clean")).unwrap();
    std::fs::write(
        dir.join("data/raw/reviews.csv"),
        "id,email,review\n1,jane@example.com,great\n2,bob@example.com,\"jane@example.com told me\"\n3,carol@example.com,ok\n4,x,\"call +1 555 010 0199\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("data/clean/reviews.jsonl"),
        "{\"user\":\"bob\",\"text\":\"fine\"}\n{\"user\":{\"mail\":\"Jane@Example.com\"},\"text\":\"hi\"}\n{\"user\":\"carol\",\"id\":4711}\n",
    )
    .unwrap();
    // A file that lineage does not reach stays as it is.
    std::fs::create_dir_all(dir.join("other")).unwrap();
    std::fs::write(dir.join("other/x.csv"), "email\njane@example.com\n").unwrap();
    ok(dir, &["datasets", "add", "reviews", "raw", "data/raw"]);
    ok(
        dir,
        &["datasets", "add", "reviews-clean", "v1", "data/clean"],
    );
    ok(dir, &["datasets", "add", "other", "v1", "other"]);
    ok(
        dir,
        &[
            "lineage",
            "add",
            "dataset:reviews@raw",
            "dataset:reviews-clean@v1",
            "--job",
            "clean.py@abc",
        ],
    );
    // A model trained on the derived data, known by its dataset digest.
    ok(
        dir,
        &[
            "models",
            "register",
            "m",
            "1.0",
            "--provider",
            "mock",
            "--model-id",
            "m",
            "--dataset",
            "clean=data/clean",
        ],
    );
    let impact = json(dir, &["lineage", "impact", "dataset:reviews@raw"]);
    let to: Vec<&str> = impact
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(to, ["dataset:reviews-clean@v1", "model:m@1.0"]);
    assert!(refused(
        dir,
        &["lineage", "add", "dataset:nope@1", "dataset:reviews@raw"]
    )
    .contains("not registered"));
    ok(
        dir,
        &["audit", "keygen", "--name", "t.local/l", "--out", "k"],
    );

    // A hold on the subject refuses the erasure outright and changes nothing.
    let hold = ok(
        dir,
        &[
            "hold",
            "place",
            "subject:email:JANE@example.com",
            "--why",
            "LIT-7",
        ],
    )
    .trim()
    .to_owned();
    let err = refused(
        dir,
        &[
            "erase",
            "--subject",
            "email:jane@example.com",
            "--why",
            "DSR-42",
            "-o",
            "r0.json",
            "--key-file",
            "k/ledger.key",
        ],
    );
    assert!(err.contains(&hold) && err.contains("LIT-7"), "{err}");
    assert!(std::fs::read_to_string(dir.join("data/raw/reviews.csv"))
        .unwrap()
        .contains("jane"));
    assert!(refused(dir, &["hold", "release", &hold]).contains("why"));
    ok(dir, &["hold", "release", &hold, "--why", "LIT-7 settled"]);
    // A hold on the derived dataset keeps it; the erasure is partial and says why.
    let hold2 = ok(
        dir,
        &[
            "hold",
            "place",
            "dataset:reviews-clean",
            "--why",
            "audit AU-3",
        ],
    )
    .trim()
    .to_owned();
    let r = json(
        dir,
        &[
            "erase",
            "--subject",
            "email:jane@example.com",
            "--subject",
            "phone:+15550100199",
            "--dataset",
            "reviews@raw",
            "--why",
            "DSR-42",
            "-o",
            "r1.json",
            "--key-file",
            "k/ledger.key",
        ],
    );
    assert_eq!(r["objects"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["objects"][0]["matched"], 3);
    assert!(r["not_erased"][0]["why"].as_str().unwrap().contains(&hold2));
    assert_eq!(
        std::fs::read_to_string(dir.join("data/raw/reviews.csv")).unwrap(),
        "id,email,review\n3,carol@example.com,ok\n"
    );
    assert!(
        std::fs::read_to_string(dir.join("data/clean/reviews.jsonl"))
            .unwrap()
            .contains("Jane")
    );
    ok(dir, &["hold", "release", &hold2, "--why", "AU-3 closed"]);

    // Released: the derived JSON Lines file, found through lineage, is rewritten too, and the
    // model trained on it is flagged.
    let r = json(
        dir,
        &[
            "erase",
            "--subject",
            "email:jane@example.com",
            "--subject",
            "id:4711",
            "--dataset",
            "reviews@raw",
            "--why",
            "DSR-42",
            "--ticket",
            "DSR-42",
            "-o",
            "receipt.json",
            "--key-file",
            "k/ledger.key",
        ],
    );
    assert_eq!(r["models_flagged"], serde_json::json!(["m@1.0"]), "{r}");
    assert_eq!(
        std::fs::read_to_string(dir.join("data/clean/reviews.jsonl")).unwrap(),
        "{\"user\":\"bob\",\"text\":\"fine\"}\n"
    );
    assert!(std::fs::read_to_string(dir.join("other/x.csv"))
        .unwrap()
        .contains("jane"));
    let text = std::fs::read_to_string(dir.join("receipt.json")).unwrap();
    assert!(
        !text.to_lowercase().contains("jane"),
        "the receipt names the subject"
    );
    let receipt: Value = serde_json::from_str(&text).unwrap();
    let object = &receipt["receipt"]["objects"][0];
    assert_ne!(object["version_before"], object["version_after"]);
    // A new dataset version was registered; the erasure is done.
    let tags = ok(dir, &["datasets", "list", "reviews-clean"]);
    assert!(tags.contains("v1+erased."), "{tags}");
    let list = json(dir, &["erase", "list"]);
    assert_eq!(list[0]["state"], "done");
    // The seed's audit/deletions/{id}.json, read-only.
    let kept = dir.join(format!(
        "anchors/deletions/{}.json",
        receipt["receipt"]["request"].as_str().unwrap()
    ));
    assert!(std::fs::metadata(&kept).unwrap().permissions().readonly());

    // Offline: verifies, is about Jane (given both identifiers), not about Bob.
    let verify = |file: &str, subjects: &[&str]| {
        let mut args = vec![
            "erase",
            "verify-receipt",
            file,
            "--public-key",
            "k/ledger.pub",
        ];
        for s in subjects {
            args.push("--subject");
            args.push(s);
        }
        common::custos(dir, &args)
    };
    assert!(
        verify("receipt.json", &["email:jane@example.com", "id:4711"])
            .status
            .success()
    );
    assert!(!verify("receipt.json", &["email:bob@example.com"])
        .status
        .success());
    for (from, to) in [
        ("\"records\": 3", "\"records\": 4"),
        ("DSR-42", "DSR-43"),
        ("erasure.complete", "erasure.completE"),
    ] {
        assert!(text.contains(from), "{from}");
        std::fs::write(dir.join("bad.json"), text.replacen(from, to, 1)).unwrap();
        let (code, err) = fails(
            dir,
            &[
                "erase",
                "verify-receipt",
                "bad.json",
                "--public-key",
                "k/ledger.pub",
            ],
        );
        assert_eq!(code, 1);
        assert!(err.contains("receipt NOT verified"), "{err}");
    }
    // The ledger still verifies against its anchors after the erasures.
    let v = ok(dir, &["audit", "verify", "--public-key", "k/ledger.pub"]);
    let _ = v;
    // A subject access request finds Carol's record, and only hers.
    ok(
        dir,
        &[
            "dsar",
            "export",
            "--subject",
            "email:carol@example.com",
            "--why",
            "DSAR-7",
            "-o",
            "carol.json",
        ],
    );
    let export: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("carol.json")).unwrap()).unwrap();
    let records: Vec<&Value> = export["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["records"].as_array().unwrap())
        .collect();
    assert_eq!(records.len(), 1, "{export}");
    assert_eq!(records[0]["email"], "carol@example.com");

    // An erasure that fails midway (a broken JSON Lines file) stays open, and past its SLA
    // it is overdue and recorded.
    std::fs::write(
        dir.join("custos.toml"),
        "[audit]\nanchor_dir = \"anchors\"\n[lifecycle]\nerasure_sla = \"1ms\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("data/clean/broken.jsonl"), "{\"a\": 1}\n{oops\n").unwrap();
    let err = refused(
        dir,
        &[
            "erase",
            "--subject",
            "email:carol@example.com",
            "--why",
            "DSR-50",
            "-o",
            "r50.json",
            "--key-file",
            "k/ledger.key",
        ],
    );
    assert!(
        err.contains("broken.jsonl") && err.contains("line 2"),
        "{err}"
    );
    let (code, out) = {
        let o = common::custos(dir, &["erase", "overdue"]);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    assert_eq!(code, Some(1));
    assert!(out.contains("overdue since"), "{out}");
    let events = ok(dir, &["audit", "query", "--json"]);
    assert_eq!(events.matches("erasure.overdue").count(), 1);
    common::custos(dir, &["erase", "overdue"]);
    let events = ok(dir, &["audit", "query", "--json"]);
    assert_eq!(
        events.matches("erasure.overdue").count(),
        1,
        "recorded once"
    );
    assert!(
        !events.to_lowercase().contains("carol@"),
        "the ledger names a subject"
    );
    assert!(
        !events.to_lowercase().contains("jane@"),
        "the ledger names a subject"
    );

    // Bad input: a subject that is not one, a missing receipt path, an existing receipt.
    assert!(refused(
        dir,
        &["erase", "--subject", "jane", "-o", "x.json", "--why", "x"]
    )
    .contains("KIND:VALUE"));
    assert!(refused(dir, &["erase", "--subject", "email:a@b.c", "--why", "x"]).contains("-o"));
    assert!(refused(
        dir,
        &[
            "erase",
            "--subject",
            "email:a@b.c",
            "--why",
            "x",
            "-o",
            "receipt.json",
            "--key-file",
            "k/ledger.key"
        ]
    )
    .contains("never overwritten"));
}

/// `audit query --json` output: one event per line.
fn events(dir: &std::path::Path, args: &[&str]) -> Vec<Value> {
    ok(dir, args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The ledger cannot forget, so it never knows: a person's identity (a token's subject, an
/// end user's id, an address in `why`, a held subject) is sealed under their own key; an
/// erasure destroys the key, the identity becomes unreadable and the ledger still verifies.
#[test]
fn erasure_shreds_the_subjects_identity_in_the_ledger_which_still_verifies() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let issuer = custos_authz::testkit::TestIssuer::new("https://idp.test");
    std::fs::write(dir.join("jwks.json"), issuer.jwks()).unwrap();
    std::fs::write(
        dir.join("custos.toml"),
        "[[auth.jwt]]\nissuer = \"https://idp.test\"\naudience = \"custos\"\njwks_file = \"jwks.json\"\ntenants = [\"acme\"]\n[database]\ncommit_interval = \"5ms\"\n[audit]\nanchor_dir = \"anchors\"\n",
    )
    .unwrap();
    ok(dir, &["tenants", "create", "acme"]);
    ok(dir, &["teams", "create", "ml"]);
    ok(dir, &["apps", "create", "bot", "--team", "ml"]);
    let key = ok(dir, &["keys", "create", "--team", "ml", "--app", "bot"])
        .trim()
        .to_owned();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/a.csv"), "email\nsomeone@example.org\n").unwrap();
    ok(dir, &["datasets", "add", "a", "v1", "data"]);
    ok(
        dir,
        &["audit", "keygen", "--name", "t.local/l", "--out", "k"],
    );

    // Calls for two end users.
    let (server, url) = common::serve(dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for user in ["Jane@Example.com", "bob-1"] {
        let status = rt.block_on(async {
            reqwest::Client::new()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&serde_json::json!({"model": "gpt-4o-mini", "user": user,
                                          "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
        assert_eq!(status, 200);
    }
    // A `user` that is not a string is refused, saying so.
    let (status, body) = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"model": "gpt-4o-mini", "user": 7,
                                      "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(status, 400);
    assert!(body.contains("`user` must be a string"), "{body}");
    // Jane, as a token's subject, is refused an action; the denial is recorded.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut c = issuer.claims("jane@example.com", "custos", now);
    c["tenant"] = serde_json::json!("acme");
    c["roles"] = serde_json::json!(["developer"]);
    std::fs::write(dir.join("jane.jwt"), issuer.token(&c)).unwrap();
    refused(
        dir,
        &[
            "hold",
            "place",
            "dataset:a",
            "--why",
            "x",
            "--token-file",
            "jane.jwt",
        ],
    );
    // An operator names her in a reason, and holds her records for a while.
    let h = ok(
        dir,
        &[
            "hold",
            "place",
            "dataset:a",
            "--why",
            "asked by jane@example.com via DSR-9",
        ],
    )
    .trim()
    .to_owned();
    ok(dir, &["hold", "release", &h, "--why", "done"]);
    let h = ok(
        dir,
        &[
            "hold",
            "place",
            "subject:email:jane@example.com",
            "--why",
            "LIT-1",
        ],
    )
    .trim()
    .to_owned();
    ok(dir, &["hold", "release", &h, "--why", "LIT-1 closed"]);
    // Wait for the gateway's two call events.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let q = ok(
            dir,
            &["audit", "query", "--activity", "model.invoke", "--json"],
        );
        if q.lines().count() >= 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no call events: {q}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(server);

    // As stored, the ledger never names her (nor Bob); opened, it does.
    let sealed = ok(dir, &["audit", "query", "--sealed", "--json"]).to_lowercase();
    for s in ["jane", "bob-1"] {
        assert!(!sealed.contains(s), "the ledger holds {s}: {sealed}");
    }
    assert!(sealed.contains("sealed:v1:"));
    let opened = ok(dir, &["audit", "query", "--json"]);
    assert!(
        opened.contains("\"end_user\":\"Jane@Example.com\""),
        "{opened}"
    );
    assert!(opened.contains("\"end_user\":\"bob-1\""));
    assert!(opened.contains("asked by jane@example.com via DSR-9"));
    assert!(opened.contains("\"subject\":\"email:jane@example.com\""));
    let denied = events(
        dir,
        &[
            "audit",
            "query",
            "--outcome",
            "denied",
            "--activity",
            "holds.manage",
            "--json",
        ],
    );
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["event"]["actor"]["id"], "jane@example.com");
    // Filtering by actor works on the opened identity.
    assert_eq!(
        events(
            dir,
            &["audit", "query", "--actor", "jane@example.com", "--json"]
        )
        .len(),
        1
    );
    let dsar = json(
        dir,
        &[
            "dsar",
            "export",
            "--subject",
            "email:jane@example.com",
            "--why",
            "DSAR-1",
        ],
    );
    assert_eq!(dsar["custos"]["usage_records_as_end_user"], 1, "{dsar}");

    // A checkpoint signed and published before the erasure.
    ok(dir, &["audit", "checkpoint", "--key-file", "k/ledger.key"]);
    let leaves_before = ok(dir, &["audit", "query", "--sealed", "--json"]);
    // The erasure: her key is destroyed, her usage record's end user cleared.
    let r = json(
        dir,
        &[
            "erase",
            "--subject",
            "email:jane@example.com",
            "--why",
            "DSR-9 from jane@example.com",
            "-o",
            "r.json",
            "--key-file",
            "k/ledger.key",
        ],
    );
    let text = std::fs::read_to_string(dir.join("r.json")).unwrap();
    assert!(
        !text.to_lowercase().contains("jane"),
        "the receipt names her: {text}"
    );
    let receipt: Value = serde_json::from_str(&text).unwrap();
    let own = &receipt["receipt"]["custos"];
    assert_eq!(own["ledger_subject_keys_shredded"], 1, "{receipt}");
    assert_eq!(own["usage_records_end_user_cleared"], 1);
    let _ = r;
    ok(
        dir,
        &[
            "erase",
            "verify-receipt",
            "r.json",
            "--public-key",
            "k/ledger.pub",
        ],
    );
    let opened = ok(dir, &["audit", "query", "--json"]);
    assert!(
        !opened.to_lowercase().contains("jane"),
        "her identity is still readable: {opened}"
    );
    assert!(opened.contains("erased:"));
    assert!(
        opened.contains("\"end_user\":\"bob-1\""),
        "Bob is not erased"
    );
    let denied = events(
        dir,
        &[
            "audit",
            "query",
            "--outcome",
            "denied",
            "--activity",
            "holds.manage",
            "--json",
        ],
    );
    assert!(denied[0]["event"]["actor"]["id"]
        .as_str()
        .unwrap()
        .starts_with("erased:"));
    // Every leaf is as it was: the events stored before are unchanged, and the ledger
    // verifies against the checkpoint published before the erasure.
    let leaves_after = ok(dir, &["audit", "query", "--sealed", "--json"]);
    assert!(leaves_after.starts_with(&leaves_before));
    ok(dir, &["audit", "verify", "--public-key", "k/ledger.pub"]);
    let dsar = json(
        dir,
        &[
            "dsar",
            "export",
            "--subject",
            "email:jane@example.com",
            "--why",
            "DSAR-2",
        ],
    );
    assert_eq!(dsar["custos"]["usage_records_as_end_user"], 0);

    // custos' own records under the lifecycle policy: end-user ids and usage records past
    // their retention, ledger events due for the signed prune.
    let cfg = std::fs::read_to_string(dir.join("custos.toml")).unwrap();
    std::fs::write(
        dir.join("custos.toml"),
        format!("{cfg}[lifecycle.custos]\nend_user_ids = \"1d\"\nusage_records = \"30d\"\nledger = \"365d\"\n"),
    )
    .unwrap();
    let later = |days: i64| {
        custos_core::time::format_rfc3339(custos_core::time::now_ms() + days * 86_400_000)
    };
    let own = |plan: &Value, data: &str| {
        plan["custos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["data"] == data)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let plan = json(dir, &["lifecycle", "plan", "--at", &later(2)]);
    assert_eq!(
        own(&plan, "end-user ids in usage records")["count"],
        1,
        "{plan}"
    );
    assert_eq!(own(&plan, "usage records")["count"], 0);
    assert_eq!(own(&plan, "ledger events")["count"], 0);
    assert_eq!(own(&plan, "gateway stored responses")["action"], "expire");
    let plan = json(dir, &["lifecycle", "plan", "--at", &later(400)]);
    let used = own(&plan, "usage records")["count"].as_u64().unwrap();
    assert!(used >= 2, "{plan}");
    assert!(
        own(&plan, "ledger events")["count"].as_u64().unwrap() >= 10,
        "{plan}"
    );
    assert!(own(&plan, "ledger events")["how"]
        .as_str()
        .unwrap()
        .contains("custos audit prune"));
    assert!(refused(dir, &["lifecycle", "apply", "--at", &later(2)]).contains("why"));
    let r = json(
        dir,
        &[
            "lifecycle",
            "apply",
            "--at",
            &later(2),
            "--why",
            "CHG-1 retention",
        ],
    );
    assert_eq!(r["custos"]["end_users_cleared"], 1, "{r}");
    assert_eq!(r["custos"]["usage_records_deleted"], 0);
    let dsar = json(
        dir,
        &["dsar", "export", "--subject", "id:bob-1", "--why", "DSAR-3"],
    );
    assert_eq!(dsar["custos"]["usage_records_as_end_user"], 0);
    let r = json(
        dir,
        &[
            "lifecycle",
            "apply",
            "--at",
            &later(40),
            "--why",
            "CHG-1 retention",
        ],
    );
    assert_eq!(r["custos"]["usage_records_deleted"].as_u64(), Some(used));
    assert!(
        ok(dir, &["audit", "query", "--activity", "lifecycle.custos"]).contains("lifecycle.custos")
    );
}

/// A Parquet file with one required text column `email`.
fn write_parquet(path: &std::path::Path, emails: &[&str]) {
    use parquet::data_type::{ByteArray, ByteArrayType};
    let schema =
        parquet::schema::parser::parse_message_type("message m { required binary email (UTF8); }")
            .unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::file::writer::SerializedFileWriter::new(
        f,
        std::sync::Arc::new(schema),
        Default::default(),
    )
    .unwrap();
    let mut g = w.next_row_group().unwrap();
    let mut c = g.next_column().unwrap().unwrap();
    let vals: Vec<ByteArray> = emails.iter().map(|e| ByteArray::from(*e)).collect();
    c.typed::<ByteArrayType>()
        .write_batch(&vals, None, None)
        .unwrap();
    c.close().unwrap();
    g.close().unwrap();
    w.close().unwrap();
}

fn read_parquet(path: &std::path::Path) -> Vec<String> {
    use parquet::file::reader::FileReader;
    let r = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(path).unwrap())
        .unwrap();
    r.get_row_iter(None)
        .unwrap()
        .map(|row| {
            let row = row.unwrap();
            match row.get_column_iter().next().unwrap().1 {
                parquet::record::Field::Str(s) => s.clone(),
                other => panic!("{other:?}"),
            }
        })
        .collect()
}

/// The admin API's lifecycle: lineage, holds and an erasure over HTTP, with a receipt that
/// verifies offline once a checkpoint covers it; roles decide who may.
#[test]
fn the_admin_api_records_lineage_holds_and_erases_with_a_receipt() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let issuer = custos_authz::testkit::TestIssuer::new("https://idp.test");
    std::fs::write(dir.join("jwks.json"), issuer.jwks()).unwrap();
    std::fs::write(
        dir.join("custos.toml"),
        "[[auth.jwt]]\nissuer = \"https://idp.test\"\naudience = \"custos\"\njwks_file = \"jwks.json\"\ntenants = [\"default\"]\n",
    )
    .unwrap();
    let token = |sub: &str, roles: &[&str]| common::admin_token(&issuer, sub, roles);
    let dpo = token("dpo", &["privacy-officer"]);
    let dev = token("dev", &["developer"]);
    std::fs::create_dir_all(dir.join("raw")).unwrap();
    std::fs::create_dir_all(dir.join("clean")).unwrap();
    std::fs::write(
        dir.join("raw/a.csv"),
        "email,n\njane@example.com,1\nbob@example.com,2\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("clean/b.jsonl"),
        "{\"who\":\"jane@example.com\"}\n{\"who\":\"bob\"}\n",
    )
    .unwrap();
    write_parquet(
        &dir.join("clean/c.parquet"),
        &["carol@example.com", "JANE@example.com", "dave@example.com"],
    );
    ok(dir, &["datasets", "add", "a", "v1", "raw"]);
    ok(dir, &["datasets", "add", "b", "v1", "clean"]);
    ok(
        dir,
        &["audit", "keygen", "--name", "t.local/l", "--out", "k"],
    );
    let (_server, url) = common::serve(dir);
    let call = |tok: &str, method: &str, path: &str, body: Option<Value>| {
        common::admin(&url, tok, method, path, body)
    };

    let (s, e) = call(
        &dpo,
        "POST",
        "/admin/lineage",
        Some(
            serde_json::json!({"from": "dataset:a@v1", "to": "dataset:b@v1", "job": "clean.py", "why": "ETL"}),
        ),
    );
    assert_eq!(s, 201, "{e}");
    let (s, g) = call(&dpo, "GET", "/admin/lineage?node=dataset:a@v1", None);
    assert_eq!(s, 200, "{g}");
    assert_eq!(g["data"]["downstream"][0]["to"], "dataset:b@v1");
    let (s, g) = call(&dpo, "GET", "/admin/lineage?node=nonsense", None);
    assert_eq!(s, 400, "{g}");
    // A developer may not read holds or run erasures; the denial is recorded.
    let (s, _) = call(&dev, "GET", "/admin/holds", None);
    assert_eq!(s, 403);
    let (s, _) = call(
        &dev,
        "POST",
        "/admin/erasures",
        Some(serde_json::json!({"subjects": ["email:jane@example.com"], "why": "x"})),
    );
    assert_eq!(s, 403);

    // A hold on her refuses the erasure with legal-hold, naming the hold.
    let (s, h) = call(
        &dpo,
        "POST",
        "/admin/holds",
        Some(serde_json::json!({"target": "subject:email:jane@example.com", "why": "LIT-3"})),
    );
    assert_eq!(s, 201, "{h}");
    assert_eq!(h["data"]["target"], "subject");
    let hold = h["data"]["id"].as_str().unwrap().to_owned();
    let (s, p) = call(
        &dpo,
        "POST",
        "/admin/erasures",
        Some(serde_json::json!({"subjects": ["email:jane@example.com"], "why": "DSR-1"})),
    );
    assert_eq!(s, 409, "{p}");
    assert!(p["type"].as_str().unwrap().ends_with("legal-hold"), "{p}");
    assert!(p["detail"].as_str().unwrap().contains(&hold));
    let (s, l) = call(&dpo, "GET", "/admin/holds", None);
    assert_eq!((s, l["data"].as_array().unwrap().len()), (200, 1));
    let (s, _) = call(
        &dpo,
        "POST",
        &format!("/admin/holds/{hold}/release"),
        Some(serde_json::json!({})),
    );
    assert_eq!(s, 422, "a release says why");
    let (s, r) = call(
        &dpo,
        "POST",
        &format!("/admin/holds/{hold}/release"),
        Some(serde_json::json!({"why": "LIT-3 closed"})),
    );
    assert_eq!(s, 200, "{r}");
    assert!(r["data"]["released_at"].is_string());

    // Bad requests say what is wrong.
    for (body, want) in [
        (serde_json::json!({"subjects": [], "why": "x"}), "subjects"),
        (
            serde_json::json!({"subjects": ["jane"], "why": "x"}),
            "subjects[0]",
        ),
        (
            serde_json::json!({"subjects": "email:a@b.co", "why": "x"}),
            "expected a sequence",
        ),
    ] {
        let (s, p) = call(&dpo, "POST", "/admin/erasures", Some(body));
        assert_eq!(s, 400, "{p}");
        assert!(p["detail"].as_str().unwrap().contains(want), "{p}");
    }

    // The erasure, through lineage from a@v1 to b@v1.
    let (s, er) = call(
        &dpo,
        "POST",
        "/admin/erasures",
        Some(
            serde_json::json!({"subjects": ["email:jane@example.com"], "datasets": ["a@v1"], "why": "DSR-1"}),
        ),
    );
    assert_eq!(s, 201, "{er}");
    assert_eq!(er["data"]["state"], "done");
    assert_eq!(
        er["data"]["receipt"]["objects"].as_array().unwrap().len(),
        3,
        "{er}"
    );
    assert_eq!(
        read_parquet(&dir.join("clean/c.parquet")),
        ["carol@example.com", "dave@example.com"]
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("raw/a.csv")).unwrap(),
        "email,n\nbob@example.com,2\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("clean/b.jsonl")).unwrap(),
        "{\"who\":\"bob\"}\n"
    );
    let id = er["data"]["id"].as_str().unwrap().to_owned();
    let receipt_path = format!("/admin/erasures/{id}/receipt");
    let (s, p) = call(&dpo, "GET", &receipt_path, None);
    assert_eq!(s, 409, "no checkpoint covers it yet: {p}");
    ok(dir, &["audit", "checkpoint", "--key-file", "k/ledger.key"]);
    let (s, p) = call(&dpo, "GET", &receipt_path, None);
    assert_eq!(s, 200, "{p}");
    std::fs::write(dir.join("receipt.json"), p["data"].to_string()).unwrap();
    ok(
        dir,
        &[
            "erase",
            "verify-receipt",
            "receipt.json",
            "--public-key",
            "k/ledger.pub",
            "--subject",
            "email:jane@example.com",
        ],
    );
    let (s, l) = call(&dpo, "GET", "/admin/erasures", None);
    assert_eq!(s, 200);
    assert_eq!(l["data"][0]["id"], id.as_str());
    assert_eq!(l["data"][0]["overdue"], false);
    let (s, _) = call(&dpo, "GET", "/admin/erasures/era_nope/receipt", None);
    assert_eq!(s, 404);
}

/// Retention and tiering on a local store: the plan as of a later date, holds and registered
/// datasets kept, a canary run first, every action in the ledger.
#[test]
fn lifecycle_plans_and_applies_retention_and_tiering_on_a_local_store() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::write(
        dir.join("custos.toml"),
        r#"[lifecycle]
store = "lake"

[[lifecycle.class]]
name = "bronze"
prefixes = ["raw/"]
retention = "30d"
tier_after = "7d"
tier_prefix = "archive/raw/"
pii = true

[[lifecycle.class]]
name = "gold"
prefixes = ["gold/"]
"#,
    )
    .unwrap();
    for f in [
        "lake/raw/2025/a.log",
        "lake/raw/2026/b.log",
        "lake/raw/held/c.log",
        "lake/raw/ds/d.csv",
        "lake/gold/labels.csv",
    ] {
        let p = dir.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, f).unwrap();
    }
    ok(dir, &["datasets", "add", "labels", "v1", "lake/raw/ds"]);
    let hold = ok(
        dir,
        &["hold", "place", "location:lake/raw/held", "--why", "LIT-9"],
    )
    .trim()
    .to_owned();
    let later = |days: i64| {
        let ms = custos_core::time::now_ms() + days * 86_400_000;
        custos_core::time::format_rfc3339(ms)
    };
    let plan = json(dir, &["lifecycle", "plan", "--at", &later(10)]);
    let action = |plan: &Value, path: &str| {
        plan["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["path"] == path)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(action(&plan, "raw/2025/a.log")["action"], "move", "{plan}");
    assert_eq!(
        action(&plan, "raw/2025/a.log")["to"],
        "archive/raw/2025/a.log"
    );
    assert!(action(&plan, "raw/held/c.log")["why"]
        .as_str()
        .unwrap()
        .contains(&hold));
    assert!(action(&plan, "raw/ds/d.csv")["why"]
        .as_str()
        .unwrap()
        .contains("labels@v1"));
    assert!(action(&plan, "gold/labels.csv").is_null());
    let plan = json(dir, &["lifecycle", "plan", "--at", &later(40)]);
    assert_eq!(action(&plan, "raw/2026/b.log")["action"], "delete");
    assert_eq!(plan["summary"]["delete"], 2);
    // A canary run first: only the objects under its prefix.
    let canary = json(
        dir,
        &[
            "lifecycle",
            "apply",
            "--at",
            &later(40),
            "--canary",
            "raw/2025/",
            "--why",
            "CHG-77 canary",
        ],
    );
    assert_eq!(canary["applied"].as_array().unwrap().len(), 1, "{canary}");
    assert!(!dir.join("lake/raw/2025/a.log").exists());
    assert!(dir.join("lake/raw/2026/b.log").exists());
    let all = json(
        dir,
        &["lifecycle", "apply", "--at", &later(40), "--why", "CHG-77"],
    );
    assert_eq!(all["failed"], 0, "{all}");
    assert!(!dir.join("lake/raw/2026/b.log").exists());
    assert!(dir.join("lake/raw/held/c.log").exists());
    assert!(dir.join("lake/raw/ds/d.csv").exists());
    assert!(dir.join("lake/gold/labels.csv").exists());
    let events = ok(dir, &["audit", "query", "--json"]);
    assert!(events.contains("lifecycle.run") && events.contains("lifecycle.delete"));
    assert!(events.contains("lifecycle.keep"));
    // Tiering moves, and a bad configuration is an error that names the key.
    std::fs::write(dir.join("lake/raw/2026/e.log"), "e").unwrap();
    json(
        dir,
        &["lifecycle", "apply", "--at", &later(10), "--why", "tier"],
    );
    assert!(dir.join("lake/archive/raw/2026/e.log").exists());
    assert!(!dir.join("lake/raw/2026/e.log").exists());
    std::fs::write(
        dir.join("custos.toml"),
        "[lifecycle]\nstore = \"lake\"\n[[lifecycle.class]]\nname = \"x\"\nprefixes = [\"raw/\"]\ntier_after = \"7d\"\n",
    )
    .unwrap();
    let err = refused(dir, &["lifecycle", "plan"]);
    assert!(
        err.contains("lifecycle.class[0]") && err.contains("tier_prefix"),
        "{err}"
    );
}

/// A moto S3 server on a free loopback port, stopped on drop.
struct Moto(std::process::Child, String);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto() -> Option<Moto> {
    let python = std::env::var("CUSTOS_TEST_PYTHON").ok()?;
    let server = std::path::Path::new(&python).with_file_name("moto_server");
    if !server.exists() {
        eprintln!(
            "skipping the S3 lifecycle test: {} is missing (./dev test installs it)",
            server.display()
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let url = format!("http://127.0.0.1:{port}");
    let m = Moto(child, url.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            eprintln!("skipping the S3 lifecycle test: moto did not start");
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Some(m)
}

fn s3(method: &str, url: &str, body: &'static str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let r = match method {
            "PUT" => c.put(url).body(body),
            _ => c.get(url),
        }
        .send()
        .await
        .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

/// The same plan and apply on an S3-compatible server (moto) on 127.0.0.1.
#[test]
fn lifecycle_applies_to_an_s3_compatible_store() {
    let Some(m) = moto() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::write(
        dir.join("custos.toml"),
        "[lifecycle]\nstore = \"s3://lake/tenant-a\"\n[[lifecycle.class]]\nname = \"bronze\"\nprefixes = [\"raw/\"]\nretention = \"30d\"\ntier_after = \"7d\"\ntier_prefix = \"archive/raw/\"\n",
    )
    .unwrap();
    assert_eq!(s3("PUT", &format!("{}/lake", m.1), "").0, 200);
    for key in ["raw/2025/a.log", "raw/2026/b.log", "raw/held/c.log"] {
        let (s, b) = s3("PUT", &format!("{}/lake/tenant-a/{key}", m.1), "data");
        assert_eq!(s, 200, "{b}");
    }
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_custos"))
            .args(args)
            .arg("--json")
            .current_dir(dir)
            .env_remove("CUSTOS_CONFIG")
            .env_remove("CUSTOS_DATABASE_URL")
            .env("AWS_ENDPOINT", &m.1)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "custos {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    ok(
        dir,
        &[
            "hold",
            "place",
            "location:s3://lake/tenant-a/raw/held/",
            "--why",
            "LIT-1",
        ],
    );
    let later = |days: i64| {
        custos_core::time::format_rfc3339(custos_core::time::now_ms() + days * 86_400_000)
    };
    let plan = run(&["lifecycle", "plan", "--at", &later(10)]);
    assert_eq!(plan["summary"]["move"], 2, "{plan}");
    assert_eq!(plan["summary"]["keep"], 1, "{plan}");
    run(&["lifecycle", "apply", "--at", &later(10), "--why", "tier"]);
    let plan = run(&["lifecycle", "plan", "--at", &later(40)]);
    // The moved objects are in the archive prefix, which no class owns: nothing to delete
    // but what stayed in raw/ (held).
    assert_eq!(plan["summary"]["delete"], 0, "{plan}");
    let (_, listing) = s3("GET", &format!("{}/lake?list-type=2", m.1), "");
    for key in [
        "tenant-a/archive/raw/2025/a.log",
        "tenant-a/archive/raw/2026/b.log",
        "tenant-a/raw/held/c.log",
    ] {
        assert!(
            listing.contains(&format!("<Key>{key}</Key>")),
            "{key}: {listing}"
        );
    }
    assert!(
        !listing.contains("<Key>tenant-a/raw/2025/a.log</Key>"),
        "{listing}"
    );
}

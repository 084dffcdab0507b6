//! The control plane on real databases (a SQLite file, and PostgreSQL when
//! `CUSTOS_TEST_POSTGRES_URL` is set): every change is authorized, carries its reason, and is
//! written with its ledger event in one transaction — both or neither.

use custos_authz::policy::{self, Engine, RequestFacts, TenantFacts};
use custos_control::{Actor, Control, ControlError, KeyRequest, KeyScope, Settings};
use custos_core::{Principal, Reason};
use custos_store::testkit::fresh_postgres;
use custos_store::Store;
use serde_json::Value;
use std::sync::Arc;

async fn databases(test: &str) -> Vec<(String, Store, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let mut out = vec![("sqlite".to_owned(), Store::open(&url).await.unwrap(), dir)];
    if let Some(pg) = fresh_postgres(test).await.unwrap() {
        out.push((
            "postgres".into(),
            Store::open(&pg).await.unwrap(),
            tempfile::tempdir().unwrap(),
        ));
    }
    out
}

fn control(store: &Store) -> Control {
    let schema = policy::schema().unwrap();
    let engine = Engine::new(schema.clone(), policy::configured(&[], &schema).unwrap()).unwrap();
    let config = custos_core::Config::embedded();
    Control::new(
        store.clone(),
        Arc::new(engine),
        Settings::from_config(&config),
    )
}

fn operator() -> Actor {
    Actor::local("tester")
}

/// A token holder of `tenant` with `roles`.
fn member(tenant: &str, roles: &[&str]) -> Actor {
    let mut p = Principal {
        id: "alice".into(),
        issuer: "https://idp.test".into(),
        method: custos_core::principal::AuthMethod::Jwt,
        tenant: tenant.into(),
        tenant_id: format!("ten_{tenant}"),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        mfa: true,
        ..Principal::default()
    };
    p.qualify();
    let facts = RequestFacts {
        step_up: true,
        ..RequestFacts::default()
    };
    Actor::credential(p, facts, TenantFacts::default())
}

async fn events(store: &Store) -> Vec<Value> {
    store
        .ledger_entries(0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(&e.event).unwrap())
        .collect()
}

fn why(text: &str) -> Reason {
    Reason::new(Some(text), Some("CHG-7")).unwrap()
}

#[tokio::test]
async fn a_change_and_its_event_are_written_together() {
    for (db, store, _dir) in databases("control_atomic").await {
        let c = control(&store);
        let op = operator();
        c.create_tenant(&op, "acme", &why("onboarding"))
            .await
            .unwrap();
        let team = c
            .create_team(&op, "acme", "ml", Some(60), None, &why("new team"))
            .await
            .unwrap();
        assert_eq!(team.ledger, 1..2, "{db}");
        let ev = &events(&store).await[1];
        assert_eq!(ev["activity"], "team.create", "{db}");
        assert_eq!(ev["why"], "new team");
        assert_eq!(ev["ticket"], "CHG-7");
        assert_eq!(ev["actor"]["id"], "local:tester");
        assert_eq!(ev["decision"]["action"], "teams.manage");
        assert_eq!(ev["decision"]["policies"][0], "operator.all");
        assert!(ev["change"]["before"].is_null());
        assert!(ev["change"]["after"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"));

        // A change that fails inside its transaction leaves neither change nor event.
        let before = store.ledger_size().await.unwrap();
        let dup = c
            .create_team(&op, "acme", "ml", None, None, &Reason::default())
            .await;
        assert!(
            matches!(
                dup,
                Err(ControlError::Store(custos_store::StoreError::Conflict(_)))
            ),
            "{db}: {dup:?}"
        );
        let missing = c
            .create_app(&op, "acme", "nosuchteam", "bot", &Reason::default())
            .await;
        assert!(matches!(missing, Err(ControlError::Invalid(_))), "{db}");
        assert_eq!(store.ledger_size().await.unwrap(), before, "{db}");
        assert!(store
            .list_apps(Some("acme"), None)
            .await
            .unwrap()
            .is_empty());

        // An update records the state before and after.
        let limits = custos_control::TeamLimits {
            rpm: Some(None),
            tpm: Some(Some(1000)),
        };
        let t = c
            .set_team_limits(&op, "acme", "ml", limits, &Reason::default())
            .await
            .unwrap()
            .value;
        assert_eq!((t.rpm, t.tpm), (None, Some(1000)));
        let ev = events(&store).await.pop().unwrap();
        assert_eq!(ev["activity"], "team.update");
        assert_ne!(ev["change"]["before"], ev["change"]["after"]);
        assert!(ev["why"].is_null());
    }
}

#[tokio::test]
async fn denials_are_recorded_and_change_nothing() {
    for (db, store, _dir) in databases("control_denied").await {
        let c = control(&store);
        c.create_tenant(&operator(), "acme", &Reason::default())
            .await
            .unwrap();
        c.create_tenant(&operator(), "globex", &Reason::default())
            .await
            .unwrap();
        let dev = member("acme", &["developer"]);
        let denied = c
            .create_team(&dev, "acme", "x", None, None, &why("try"))
            .await;
        assert!(matches!(denied, Err(ControlError::Denied { .. })), "{db}");
        // A tenant admin of acme is denied on globex, and allowed at home.
        let admin = member("acme", &["tenant-admin"]);
        let across = c
            .create_team(&admin, "globex", "x", None, None, &why("try"))
            .await;
        assert!(matches!(across, Err(ControlError::Denied { .. })), "{db}");
        c.create_team(&admin, "acme", "x", None, None, &Reason::default())
            .await
            .unwrap();
        assert!(store.list_teams(Some("globex")).await.unwrap().is_empty());
        let evs = events(&store).await;
        let denials: Vec<&Value> = evs.iter().filter(|e| e["outcome"] == "denied").collect();
        assert_eq!(denials.len(), 2, "{db}");
        assert_eq!(denials[1]["resources"][0]["name"], "globex");
        assert_eq!(denials[1]["actor"]["issuer"], "https://idp.test");
        // Catalog-wide prices are not any tenant's: a tenant admin cannot set them.
        let price = custos_finops::pricing::parse_toml(
            "[[price]]\nprovider = \"openai\"\nmodel = \"m\"\ninput_per_1m = \"1\"\n",
        )
        .unwrap();
        let p = c.set_prices(&admin, &price, None, &Reason::default()).await;
        assert!(matches!(p, Err(ControlError::Denied { .. })), "{db}: {p:?}");
        c.set_prices(&operator(), &price, None, &Reason::default())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn actions_that_need_a_reason_refuse_without_one() {
    for (db, store, _dir) in databases("control_why").await {
        let c = control(&store);
        let op = operator();
        c.create_team(&op, "default", "ml", None, None, &Reason::default())
            .await
            .unwrap();
        c.create_app(&op, "default", "ml", "bot", &Reason::default())
            .await
            .unwrap();
        let req = KeyRequest {
            tenant: "default".into(),
            team: "ml".into(),
            app: "bot".into(),
            scope: KeyScope {
                models: "*".into(),
                rpm: None,
                tpm: None,
                env: "prod".into(),
                expires_in_ms: None,
                name: None,
                roles: Vec::new(),
            },
        };
        let key = c.create_key(&op, &req, &Reason::default()).await.unwrap();
        assert!(key.value.secret.starts_with("ck_"));
        let size = store.ledger_size().await.unwrap();
        let r = c
            .revoke_key(&op, None, &key.value.key.id, &Reason::default())
            .await;
        assert!(
            matches!(&r, Err(ControlError::ReasonRequired { action }) if action == "keys.revoke"),
            "{db}: {r:?}"
        );
        assert!(r.unwrap_err().to_string().contains("--why"));
        assert_eq!(store.ledger_size().await.unwrap(), size);
        assert_eq!(
            store
                .key(&key.value.key.id)
                .await
                .unwrap()
                .status(i64::MAX / 2),
            "active"
        );
        let done = c
            .revoke_key(&op, None, &key.value.key.id, &why("leaked in CI"))
            .await
            .unwrap();
        assert!(done.value.revoked_at.is_some());
        let ev = events(&store).await.pop().unwrap();
        assert_eq!(ev["activity"], "key.revoke");
        assert_eq!(ev["why"], "leaked in CI");
        // The secret never reaches the ledger.
        let all = serde_json::to_string(&events(&store).await).unwrap();
        assert!(!all.contains(&key.value.secret), "{db}");
        assert!(!all.contains(&key.value.key.digest_hex), "{db}");
    }
}

/// Changes and the gateway's group-committed events interleave without gaps or duplicates.
#[tokio::test]
async fn changes_and_batch_appends_share_one_ledger() {
    for (db, store, _dir) in databases("control_interleave").await {
        let c = control(&store);
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    let batch: Vec<String> =
                        (0..5).map(|j| format!("{{\"n\":{}}}", i * 5 + j)).collect();
                    store.ledger_append(&batch).await.unwrap();
                }
            })
        };
        for i in 0..20 {
            c.create_tenant(&operator(), &format!("t{i}"), &Reason::default())
                .await
                .unwrap();
        }
        writer.await.unwrap();
        let entries = store.ledger_entries(0, 1000).await.unwrap();
        assert_eq!(entries.len(), 120, "{db}");
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.index, i as i64, "{db}");
        }
        // The stored tree is the tree of the stored entries.
        let leaves: Vec<[u8; 32]> = entries
            .iter()
            .map(|e| custos_ledger::leaf_hash(e.event.as_bytes()))
            .collect();
        let mut frontier = custos_ledger::Frontier::default();
        for l in &leaves {
            frontier.append(*l);
        }
        let nodes = store
            .ledger_nodes_at(&custos_ledger::Frontier::positions(120))
            .await
            .unwrap();
        let stored = custos_ledger::root(&nodes, 120).unwrap();
        assert_eq!(stored, frontier.root(), "{db}");
    }
}

#[tokio::test]
async fn configuration_loads_are_recorded_with_their_diff() {
    for (db, store, _dir) in databases("control_config").await {
        let c = control(&store);
        let system = Actor::system("custos serve");
        let text = "[[providers]]\nname = \"mock\"\nkind = \"mock\"\n\n[[models]]\nname = \"a\"\nprovider = \"mock\"\n";
        let cfg = custos_core::Config::from_toml(text, std::path::Path::new("c.toml")).unwrap();
        let d1 = custos_control::ConfigDigest::new(
            &cfg,
            Some(text),
            &[("p1".into(), "permit(principal, action, resource);".into())],
        );
        let first = c
            .config_loaded(&system, "c.toml", &d1, "start")
            .await
            .unwrap();
        assert!(first.value.previous.is_none());
        let text2 = format!("{text}\n[[models]]\nname = \"b\"\nprovider = \"mock\"\n");
        let cfg2 = custos_core::Config::from_toml(&text2, std::path::Path::new("c.toml")).unwrap();
        let d2 = custos_control::ConfigDigest::new(
            &cfg2,
            Some(&text2),
            &[("p2".into(), "forbid(principal, action, resource);".into())],
        );
        let second = c
            .config_loaded(&system, "c.toml", &d2, "reload")
            .await
            .unwrap();
        assert_eq!(
            second.value.previous.as_deref(),
            Some(d1.file.as_str()),
            "{db}"
        );
        let diff = &second.value.diff;
        assert_eq!(diff["models"]["added"], serde_json::json!(["b"]), "{diff}");
        assert_eq!(diff["policies"]["added"], serde_json::json!(["p2"]));
        assert_eq!(diff["policies"]["removed"], serde_json::json!(["p1"]));
        let ev = events(&store).await.pop().unwrap();
        assert_eq!(ev["activity"], "config.loaded");
        assert_eq!(ev["actor"]["type"], "system");
        assert_eq!(ev["resources"][0]["cause"], "reload");
        assert_eq!(ev["resources"][0]["digest"], d2.file);
        // The same configuration again: recorded, with nothing changed.
        let third = c
            .config_loaded(&system, "c.toml", &d2, "start")
            .await
            .unwrap();
        assert_eq!(third.value.diff, serde_json::json!({}));
    }
}

fn named(id: &str, roles: &[&str]) -> Actor {
    let mut a = member("acme", roles);
    a.principal.id = id.into();
    a.principal.uid = String::new();
    a.principal.qualify();
    a
}

#[tokio::test]
async fn the_model_registry_needs_roles_other_eyes_and_matching_signatures() {
    use custos_govern::models::{bundle, keys, manifest, registry};
    let weights = tempfile::tempdir().unwrap();
    std::fs::write(weights.path().join("model.safetensors"), vec![7u8; 4096]).unwrap();
    std::fs::write(weights.path().join("config.json"), "{}").unwrap();
    let m = manifest::hash(weights.path(), &manifest::Options::default(), None).unwrap();
    let reg = registry::describe(weights.path(), &m).unwrap();
    let (key, _) = keys::SigningKey::generate(keys::Curve::P256).unwrap();
    let signed = bundle::sign(&m.statement(), &key).unwrap().to_string();
    let new = || custos_control::NewModel {
        name: "tiny".into(),
        version: "1.0".into(),
        kind: registry::Kind::Weights,
        manifest_digest: Some(m.digest()),
        registration: reg.clone(),
    };
    for (db, store, _dir) in databases("control_models").await {
        let c = control(&store);
        let steward = named("alice", &["model-steward"]);
        let approver = named("bob", &["model-approver"]);
        let both = named("alice", &["model-steward", "model-approver"]);
        let dev = named("dan", &["developer"]);

        let e = c
            .register_model(&dev, new(), &why("try"))
            .await
            .unwrap_err();
        assert!(matches!(e, ControlError::Denied { .. }), "{db}: {e}");
        let r = c
            .register_model(&steward, new(), &why("fine-tune 1"))
            .await
            .unwrap();
        assert_eq!(r.value.state, "registered");
        assert!(
            c.register_model(&steward, new(), &why("again"))
                .await
                .is_err(),
            "{db}: a version registers once"
        );

        // A signature must cover exactly the registered files.
        let mut other = m.clone();
        other.resources.pop();
        let partial = bundle::sign(&other.statement(), &key).unwrap().to_string();
        let e = c
            .sign_model(
                &steward,
                "tiny",
                "1.0",
                &partial,
                &key.public_key(),
                &why("s"),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("covers other files"), "{db}: {e}");
        c.sign_model(
            &steward,
            "tiny",
            "1.0",
            &signed,
            &key.public_key(),
            &why("release key"),
        )
        .await
        .unwrap();

        let e = c
            .approve_model(&steward, "tiny", "1.0", &why("mine"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ControlError::Denied { .. }),
            "{db}: stewards do not approve: {e}"
        );
        let e = c
            .approve_model(&both, "tiny", "1.0", &why("mine"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("someone else approves"), "{db}: {e}");
        c.approve_model(&approver, "tiny", "1.0", &why("eval passed"))
            .await
            .unwrap();
        let p = c
            .promote_model(&approver, "tiny", "1.0", &why("ship"))
            .await
            .unwrap();
        assert_eq!(p.value.state, "promoted");

        let history = store.model_history("tiny", Some("1.0")).await.unwrap();
        let steps: Vec<_> = history
            .iter()
            .map(|h| (h.activity.as_str(), h.actor.as_str()))
            .collect();
        assert_eq!(steps.len(), 4, "{db}: {steps:?}");
        assert_eq!(history[2].why.as_deref(), Some("eval passed"));
        let ev = events(&store).await;
        let approve = ev
            .iter()
            .find(|e| e["activity"] == "model.approve")
            .unwrap();
        assert_eq!(approve["why"], "eval passed");
        assert_eq!(approve["decision"]["policies"][0], "model-approver.release");
        // Each history row points at its ledger event.
        let at = history[3].ledger_index as usize;
        assert_eq!(ev[at]["activity"], "model.promote", "{db}");
        assert!(ev
            .iter()
            .any(|e| e["outcome"] == "denied" && e["decision"]["action"] == "models.register"));
    }
}

//! The store's behaviour, run against a real SQLite file and, when
//! `CUSTOS_TEST_POSTGRES_URL` is set, a fresh real PostgreSQL database: both backends must
//! pass the same suite.

use custos_store::testkit::Seed as _;
use custos_store::{testkit, KeyFilter, NewKey, Store, StoreError};

async fn backends(test: &str) -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nested/custos.db").display());
    let mut out = vec![(Store::open(&url).await.unwrap(), Some(dir))];
    if let Some(pg) = testkit::fresh_postgres(test).await.unwrap() {
        out.push((Store::open(&pg).await.unwrap(), None));
    }
    out
}

fn new_key(app_id: &str, digest: &str) -> NewKey {
    NewKey {
        digest_hex: digest.into(),
        prefix: format!("ck_live_{}", &digest[..6]),
        name: Some("ci".into()),
        app_id: app_id.into(),
        env: "prod".into(),
        models: "gpt-4o-mini".into(),
        rpm: Some(600),
        tpm: None,
        expires_at: None,
        roles: Vec::new(),
    }
}

#[tokio::test]
async fn identity_lifecycle() {
    for (store, _dir) in backends("identity_lifecycle").await {
        let b = store.backend().as_str();
        let tenant = store.create_tenant("acme").await.unwrap();
        assert!(
            matches!(
                store.create_tenant("acme").await,
                Err(StoreError::Conflict(_))
            ),
            "{b}"
        );
        assert!(
            matches!(
                store.create_tenant("bad name").await,
                Err(StoreError::Invalid(_))
            ),
            "{b}"
        );
        assert_eq!(store.ensure_tenant("acme").await.unwrap(), tenant);
        store.create_tenant("globex").await.unwrap();
        assert_eq!(store.list_tenants().await.unwrap().len(), 2);

        let team = store
            .create_team("acme", "ml", Some(100), None)
            .await
            .unwrap();
        assert_eq!(team.tenant, "acme");
        assert_eq!(team.rpm, Some(100));
        assert!(
            matches!(
                store.create_team("nope", "ml", None, None).await,
                Err(StoreError::NotFound(_))
            ),
            "{b}"
        );
        assert!(
            matches!(
                store.create_team("acme", "ml", None, None).await,
                Err(StoreError::Conflict(_))
            ),
            "{b}"
        );
        store.create_team("globex", "ml", None, None).await.unwrap();
        assert_eq!(store.list_teams(Some("acme")).await.unwrap().len(), 1);
        assert_eq!(store.list_teams(None).await.unwrap().len(), 2);

        let app = store.create_app("acme", "ml", "chatbot").await.unwrap();
        assert_eq!((app.team.as_str(), app.tenant.as_str()), ("ml", "acme"));
        assert!(
            matches!(
                store.create_app("acme", "ml", "chatbot").await,
                Err(StoreError::Conflict(_))
            ),
            "{b}"
        );
        assert_eq!(store.list_apps(Some("acme"), None).await.unwrap().len(), 1);
        assert_eq!(
            store.list_apps(Some("globex"), None).await.unwrap().len(),
            0
        );

        let digest = "a".repeat(64);
        let key = store.insert_key(&new_key(&app.id, &digest)).await.unwrap();
        assert_eq!(key.tenant, "acme");
        assert_eq!(key.app, "chatbot");
        assert_eq!(key.rpm, Some(600));
        assert_eq!(key.team_rpm, Some(100));
        assert_eq!(key.status(custos_core::time::now_ms()), "active");
        assert!(
            matches!(
                store.insert_key(&new_key(&app.id, &digest)).await,
                Err(StoreError::Conflict(_))
            ),
            "{b}"
        );
        assert!(
            matches!(
                store
                    .insert_key(&new_key("app_missing", &"b".repeat(64)))
                    .await,
                Err(StoreError::NotFound(_))
            ),
            "{b}"
        );
        assert_eq!(store.key(&key.prefix).await.unwrap().id, key.id);

        let listed = store
            .list_keys(&KeyFilter {
                team: Some("ml".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);

        // Revocation bumps updated_at so other processes see it.
        let before = store.keys_changed_since(key.updated_at + 1).await.unwrap();
        assert!(before.is_empty(), "{b}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let revoked = store.revoke_key(&key.id, None).await.unwrap();
        assert_eq!(revoked.status(custos_core::time::now_ms()), "revoked");
        let changed = store.keys_changed_since(key.updated_at + 1).await.unwrap();
        assert_eq!(changed.len(), 1, "{b}");
        assert!(store
            .list_keys(&KeyFilter::default())
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store
                .list_keys(&KeyFilter {
                    include_inactive: true,
                    ..Default::default()
                })
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            matches!(
                store
                    .rotate_key(&key.id, &new_key(&app.id, &"c".repeat(64)), 0)
                    .await,
                Err(StoreError::Invalid(_))
            ),
            "{b}"
        );

        // Team limit changes reach the keys' refresh too.
        let k2 = store
            .insert_key(&new_key(&app.id, &"d".repeat(64)))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store
            .set_team_limits("acme", "ml", Some(5), Some(1000))
            .await
            .unwrap();
        let changed = store.keys_changed_since(k2.updated_at + 1).await.unwrap();
        assert_eq!(changed.len(), 2, "{b}");
        assert!(changed
            .iter()
            .all(|k| k.team_rpm == Some(5) && k.team_tpm == Some(1000)));

        // Rotation: successor inherits, old key keeps working until the overlap ends.
        let mut succ = new_key(&app.id, &"e".repeat(64));
        succ.models = k2.models.clone();
        let overlap_end = custos_core::time::now_ms() + 60_000;
        let (old, new) = store
            .rotate_key(&k2.prefix, &succ, overlap_end)
            .await
            .unwrap();
        assert_eq!(old.revoked_at, Some(overlap_end));
        assert_eq!(old.status(custos_core::time::now_ms()), "active");
        assert_eq!(new.rotated_from.as_deref(), Some(old.id.as_str()));
        assert_eq!(
            store.applied_migrations().await.unwrap(),
            (1..=24).collect::<Vec<i64>>()
        );
        let pinned = store
            .set_tenant_regions("acme", &["eu-west".to_owned(), "eu-central".to_owned()])
            .await
            .unwrap();
        assert_eq!(pinned.regions, ["eu-west", "eu-central"]);
        assert_eq!(store.tenant("acme").await.unwrap().regions, pinned.regions);
        assert!(store.set_tenant_regions("nope", &[]).await.is_err());
        assert!(store
            .set_tenant_regions("acme", &["../etc".to_owned()])
            .await
            .is_err());
        store.set_tenant_regions("acme", &[]).await.unwrap();
        assert!(store.list_tenants().await.unwrap()[0].regions.is_empty());
        store.migrate().await.unwrap();
        store.ping().await.unwrap();
    }
}

#[tokio::test]
async fn bad_urls_are_explained() {
    let e = Store::open("mysql://x").await.unwrap_err().to_string();
    assert!(e.contains("sqlite://PATH or postgres://"), "{e}");
    let e = Store::open("sqlite://").await.unwrap_err().to_string();
    assert!(e.contains("names no file"), "{e}");
    let e = Store::open("postgres://u:secretpw@127.0.0.1:1/db") // custos:allow (fake)
        .await
        .unwrap_err()
        .to_string();
    assert!(!e.contains("secretpw"), "{e}");
    assert!(e.contains("cannot connect"), "{e}");
}

#[test]
fn urls_are_redacted() {
    assert_eq!(
        custos_store::redact_url("postgres://u:p@h/db"),
        "postgres://u:***@h/db"
    );
    assert_eq!(
        custos_store::redact_url("postgres://u@h/db"),
        "postgres://u@h/db"
    );
    assert!(custos_store::url_has_password("postgres://u:p@h/db"));
}

/// Replicas started together on a fresh PostgreSQL database all come up: migrations take
/// turns instead of racing to create the same tables.
#[tokio::test]
async fn replicas_starting_together_on_a_fresh_database_all_migrate() {
    let Some(url) = custos_store::testkit::fresh_postgres("migrate_together")
        .await
        .unwrap()
    else {
        return;
    };
    // Four stores, four pools: four replicas' worth of connections, migrating at once.
    let open = || custos_store::Store::open(&url);
    let (a, b, c, d) = tokio::join!(open(), open(), open(), open());
    for s in [a, b, c, d] {
        s.unwrap();
    }
    let applied = custos_store::Store::connect(&url)
        .await
        .unwrap()
        .applied_migrations()
        .await
        .unwrap();
    assert!(applied.windows(2).all(|w| w[1] == w[0] + 1), "{applied:?}");
    assert_eq!(applied.first(), Some(&1));
}

/// SLO alerts: a transition is reported changed once, whoever tries it; a rolled-back
/// change leaves the state as it was.
#[tokio::test]
async fn slo_alert_transitions_happen_once() {
    for (s, _dir) in backends("slo_alerts").await {
        let mut c = s.begin_change().await.unwrap();
        assert!(c
            .slo_alert_set("acme", "avail", "page", true, 1)
            .await
            .unwrap());
        c.commit().await.unwrap();
        let mut c = s.begin_change().await.unwrap();
        assert!(!c
            .slo_alert_set("acme", "avail", "page", true, 2)
            .await
            .unwrap());
        assert!(c
            .slo_alert_set("acme", "avail", "ticket", true, 2)
            .await
            .unwrap());
        drop(c);
        assert_eq!(
            s.slo_alerts_firing().await.unwrap(),
            [("acme".to_owned(), "avail".to_owned(), "page".to_owned())]
        );
        let mut c = s.begin_change().await.unwrap();
        assert!(c
            .slo_alert_set("acme", "avail", "page", false, 3)
            .await
            .unwrap());
        assert!(!c
            .slo_alert_set("acme", "avail", "page", false, 4)
            .await
            .unwrap());
        c.commit().await.unwrap();
        assert!(s.slo_alerts_firing().await.unwrap().is_empty());
    }
}

/// Event receivers' cursors: one holder at a time, leases that lapse, cursors that never
/// move back.
#[tokio::test]
async fn event_cursors_have_one_holder_at_a_time_and_leases_lapse() {
    for (s, _dir) in backends("event_cursors").await {
        // First sight starts at the given index.
        assert_eq!(
            s.event_cursor_claim("r", "a", 1_000, 2_000, 5)
                .await
                .unwrap(),
            Some(5)
        );
        // Another holder waits while the lease runs…
        assert_eq!(
            s.event_cursor_claim("r", "b", 1_500, 2_500, 0)
                .await
                .unwrap(),
            None
        );
        // …and cannot move the cursor.
        assert!(!s
            .event_cursor_advance("r", "b", 9, 1, 0, 1_500)
            .await
            .unwrap());
        assert!(s
            .event_cursor_advance("r", "a", 8, 3, 0, 1_600)
            .await
            .unwrap());
        // The holder renews and sees its progress.
        assert_eq!(
            s.event_cursor_claim("r", "a", 1_700, 2_700, 0)
                .await
                .unwrap(),
            Some(8)
        );
        // Once the lease lapses another holder takes over where it stopped.
        assert_eq!(
            s.event_cursor_claim("r", "b", 2_800, 3_800, 0)
                .await
                .unwrap(),
            Some(8)
        );
        assert!(!s
            .event_cursor_advance("r", "a", 20, 1, 0, 2_900)
            .await
            .unwrap());
        // The cursor never moves back.
        assert!(!s
            .event_cursor_advance("r", "b", 7, 0, 0, 2_900)
            .await
            .unwrap());
        assert!(s
            .event_cursor_advance("r", "b", 10, 1, 1, 2_900)
            .await
            .unwrap());
        // A second receiver has its own cursor.
        assert_eq!(
            s.event_cursor_claim("q", "a", 2_900, 3_900, 2)
                .await
                .unwrap(),
            Some(2)
        );
        let all = s.event_cursors().await.unwrap();
        assert_eq!(all.len(), 2);
        let r = all.iter().find(|c| c.receiver == "r").unwrap();
        assert_eq!((r.next_index, r.delivered, r.dropped), (10, 4, 1));
        assert_eq!(r.holder, "b");
    }
}

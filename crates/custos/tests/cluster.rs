//! Replicas that behave as one: three `custos serve` processes on one PostgreSQL database and
//! one Redis admit exactly a key's rate limit between them, calls sent round-robin.

mod common;

use common::{chat, ok, serve};

/// A deployment folder whose gateways share `db` and `redis`.
fn deployment(dir: &std::path::Path, db: &str, redis: &str, extra: &str) {
    std::fs::write(
        dir.join("custos.toml"),
        format!("[database]\nurl = \"{db}\"\n\n[cluster]\nredis_url = \"{redis}\"\n{extra}"),
    )
    .unwrap();
}

#[test]
fn three_replicas_admit_exactly_a_keys_rate_limit() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(db) = rt
        .block_on(custos_store::testkit::fresh_postgres("three_replicas"))
        .unwrap()
    else {
        return;
    };
    let Some(redis) = rt.block_on(custos_store::testkit::redis("three_replicas")) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    deployment(dir, &db, &redis, "");
    ok(dir, &["teams", "create", "ml"]);
    ok(dir, &["apps", "create", "bot", "--team", "ml"]);
    let out = ok(
        dir,
        &[
            "keys", "create", "--team", "ml", "--app", "bot", "--rpm", "10",
        ],
    );
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("ck_"))
        .expect("the new key")
        .to_owned();
    let replicas: Vec<_> = (0..3).map(|_| serve(dir)).collect();
    let mut admitted = 0;
    let mut limited = 0;
    for i in 0..20 {
        let (status, body) = chat(&replicas[i % 3].1, &key, "gpt-4o-mini");
        match status {
            200 => admitted += 1,
            429 => limited += 1,
            other => panic!("replica {} answered {other}: {body}", i % 3),
        }
    }
    assert_eq!(
        (admitted, limited),
        (10, 10),
        "a limit of 10 a minute across three replicas"
    );
}

#[test]
fn a_redis_that_does_not_answer_is_handled_as_configured() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // Nothing listens on port 1: the shared state is unavailable from the start.
    std::fs::write(
        dir.join("custos.toml"),
        "[cluster]\nredis_url = \"redis://127.0.0.1:1\"\non_redis_error = \"fail_closed\"\ntimeout = \"100ms\"\n",
    )
    .unwrap();
    ok(dir, &["teams", "create", "ml"]);
    ok(dir, &["apps", "create", "bot", "--team", "ml"]);
    let out = ok(
        dir,
        &[
            "keys", "create", "--team", "ml", "--app", "bot", "--rpm", "10",
        ],
    );
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("ck_"))
        .unwrap()
        .to_owned();
    let (server, url) = serve(dir);
    let (status, body) = chat(&url, &key, "gpt-4o-mini");
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("fail_closed"),
        "{body}"
    );
    drop(server);
    // `local`: each replica decides alone, and says so in its metrics.
    std::fs::write(
        dir.join("custos.toml"),
        "[cluster]\nredis_url = \"redis://127.0.0.1:1\"\ntimeout = \"100ms\"\n",
    )
    .unwrap();
    let (_server, url) = serve(dir);
    for _ in 0..10 {
        assert_eq!(chat(&url, &key, "gpt-4o-mini").0, 200);
    }
    assert_eq!(chat(&url, &key, "gpt-4o-mini").0, 429);
    let metrics = get_text(&format!("{url}/metrics"));
    assert!(
        metrics
            .contains("custos_shared_state_fallbacks_total{control=\"quota\",mode=\"local\"} 11"),
        "{metrics}"
    );
}

/// A GET's body, for the metrics page.
fn get_text(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

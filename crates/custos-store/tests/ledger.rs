//! The ledger tables on a real SQLite file and a fresh real PostgreSQL database: appends build
//! the same tree as the reference implementation, concurrent writers never collide, and the
//! database itself refuses to rewrite history.

use custos_ledger::{leaf_hash, root, MemoryTree, NodeSource};
use custos_store::{testkit, Store};

async fn backends(test: &str) -> Vec<(Store, String, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let mut out = vec![(Store::open(&url).await.unwrap(), url, Some(dir))];
    if let Some(pg) = testkit::fresh_postgres(test).await.unwrap() {
        out.push((Store::open(&pg).await.unwrap(), pg, None));
    }
    out
}

fn event(i: usize) -> String {
    format!(r#"{{"schema":1,"activity":"key.create","n":{i}}}"#)
}

#[tokio::test]
async fn appends_build_the_reference_tree() {
    for (store, _, _dir) in backends("ledger_appends").await {
        let b = store.backend().as_str();
        let mut reference = MemoryTree::new();
        let mut next = 0u64;
        for batch in [1usize, 2, 5, 1, 13, 8, 600] {
            let events: Vec<String> = (0..batch).map(|i| event(next as usize + i)).collect();
            let range = store.ledger_append(&events).await.unwrap();
            assert_eq!(range, next..next + batch as u64, "{b}");
            for e in &events {
                reference.append(e.as_bytes());
            }
            next += batch as u64;
        }
        let entries = store.ledger_entries(0, 1000).await.unwrap();
        assert_eq!(entries.len(), 630);
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.index, i as i64);
            assert_eq!(e.leaf_hash, hex::encode(leaf_hash(e.event.as_bytes())));
        }
        let nodes = store.ledger_nodes().await.unwrap();
        for n in &nodes {
            let expected = reference
                .node(n.level as u32, n.index as u64)
                .unwrap()
                .unwrap();
            assert_eq!(
                n.hash,
                hex::encode(expected),
                "{b}: node {}/{}",
                n.level,
                n.index
            );
        }
        // Every complete node is stored: 630 >> level of them at each level.
        let expected: u64 = (0..10).map(|l| 630u64 >> l).sum();
        assert_eq!(nodes.len() as u64, expected, "{b}");
        assert!(root(&reference, 630).is_ok());
    }
}

/// A ledger written before nodes were keyed by the last entry they cover (migration 11)
/// keeps every node through the migration, and appends continue the same tree.
#[tokio::test]
async fn nodes_keyed_by_level_migrate_to_keys_by_last_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![format!("sqlite://{}", dir.path().join("old.db").display())];
    urls.extend(
        testkit::fresh_postgres("ledger_migrate_nodes")
            .await
            .unwrap(),
    );
    for url in urls {
        let store = Store::connect(&url).await.unwrap();
        store.migrate_until(10).await.unwrap();
        let mut reference = MemoryTree::new();
        for i in 0..11 {
            let e = event(i);
            reference.append(e.as_bytes());
            testkit::execute_raw(
                &store,
                &format!(
                    "INSERT INTO ledger_entries (idx, recorded_at, event, leaf_hash) VALUES ({i}, 0, '{e}', '{}')",
                    hex::encode(leaf_hash(e.as_bytes()))
                ),
            )
            .await
            .unwrap();
        }
        for level in 0..4u32 {
            for index in 0..(11u64 >> level) {
                let hash = hex::encode(reference.node(level, index).unwrap().unwrap());
                testkit::execute_raw(
                    &store,
                    &format!("INSERT INTO ledger_nodes (level, idx, hash) VALUES ({level}, {index}, '{hash}')"),
                )
                .await
                .unwrap();
            }
        }
        store.migrate().await.unwrap();
        let nodes = store.ledger_nodes().await.unwrap();
        assert_eq!(nodes.len(), 11 + 5 + 2 + 1, "{url}");
        for n in &nodes {
            let expected = reference.node(n.level as u32, n.index as u64).unwrap();
            assert_eq!(Some(n.hash.clone()), expected.map(hex::encode), "{url}");
        }
        // Appends read the migrated right edge and extend the same tree.
        for i in 11..40 {
            reference.append(event(i).as_bytes());
        }
        let more: Vec<String> = (11..40).map(event).collect();
        assert_eq!(store.ledger_append(&more).await.unwrap(), 11..40);
        let positions: Vec<(u32, u64)> = (0..6u32)
            .flat_map(|l| (0..(40u64 >> l)).map(move |i| (l, i)))
            .collect();
        let stored = store.ledger_nodes_at(&positions).await.unwrap();
        assert_eq!(stored.0.len(), positions.len(), "{url}");
        for ((level, index), hash) in &stored.0 {
            assert_eq!(
                Some(*hash),
                reference.node(*level, *index).unwrap(),
                "{url}"
            );
        }
        assert_eq!(
            root(&stored, 40).unwrap(),
            root(&reference, 40).unwrap(),
            "{url}"
        );
    }
}

#[tokio::test]
async fn concurrent_writers_never_collide() {
    for (store, url, _dir) in backends("ledger_concurrent").await {
        let other = Store::open(&url).await.unwrap();
        let a = tokio::spawn({
            let s = store.clone();
            async move {
                for i in 0..20 {
                    s.ledger_append(&[event(i)]).await.unwrap();
                }
            }
        });
        let b = tokio::spawn(async move {
            for i in 100..120 {
                other.ledger_append(&[event(i)]).await.unwrap();
            }
        });
        a.await.unwrap();
        b.await.unwrap();
        let entries = store.ledger_entries(0, 1000).await.unwrap();
        assert_eq!(entries.len(), 40);
        let mut reference = MemoryTree::new();
        for e in &entries {
            reference.append(e.event.as_bytes());
        }
        for n in store.ledger_nodes().await.unwrap() {
            assert_eq!(
                n.hash,
                hex::encode(
                    reference
                        .node(n.level as u32, n.index as u64)
                        .unwrap()
                        .unwrap()
                )
            );
        }
    }
}

#[tokio::test]
async fn the_database_refuses_to_rewrite_history() {
    for (store, url, _dir) in backends("ledger_append_only").await {
        store.ledger_append(&[event(0), event(1)]).await.unwrap();
        store.ledger_add_checkpoint(2, "note").await.unwrap();
        let raw = Store::open(&url).await.unwrap();
        for sql in [
            "UPDATE ledger_entries SET event = 'forged' WHERE idx = 0",
            "DELETE FROM ledger_entries WHERE idx = 1",
            "UPDATE ledger_nodes SET hash = 'x'",
            "DELETE FROM ledger_nodes",
            "UPDATE ledger_checkpoints SET note = 'forged'",
            "DELETE FROM ledger_checkpoints",
        ] {
            let err = testkit::execute_raw(&raw, sql)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("append-only"), "{sql}: {err}");
        }
        assert_eq!(store.ledger_entries(0, 10).await.unwrap().len(), 2);
        assert_eq!(store.ledger_checkpoints().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn prune_removes_only_entries_below_its_point_and_appends_continue() {
    for (store, url, _dir) in backends("ledger_prune").await {
        let b = store.backend().as_str();
        let events: Vec<String> = (0..10).map(event).collect();
        store.ledger_append(&events).await.unwrap();
        let removed = store.ledger_prune(6, "note at 6", "[]").await.unwrap();
        assert_eq!(removed, 6, "{b}");
        assert_eq!(store.ledger_latest_prune().await.unwrap().unwrap().0, 6);
        let left = store.ledger_entries(0, 100).await.unwrap();
        assert_eq!(left.first().map(|e| e.index), Some(6), "{b}");
        // Entries above the prune point are as protected as before; the record itself too.
        let raw = Store::open(&url).await.unwrap();
        for sql in [
            "DELETE FROM ledger_entries WHERE idx = 7",
            "DELETE FROM ledger_entries",
            "UPDATE ledger_prunes SET size = 9",
            "DELETE FROM ledger_prunes",
        ] {
            let err = testkit::execute_raw(&raw, sql)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("append-only"), "{b}: {sql}: {err}");
        }
        // Pruning everything still leaves the log's size, and appends carry on after it.
        store.ledger_prune(10, "note at 10", "[]").await.unwrap();
        assert_eq!(store.ledger_size().await.unwrap(), 10, "{b}");
        assert_eq!(store.ledger_append(&[event(10)]).await.unwrap(), 10..11);
        // Binary search by recorded time: everything so far was recorded at or before now.
        let now = custos_core::time::now_ms();
        assert_eq!(store.ledger_index_at_time(10, 0).await.unwrap(), 10);
        assert_eq!(
            store.ledger_index_at_time(10, now + 60_000).await.unwrap(),
            11
        );
    }
}

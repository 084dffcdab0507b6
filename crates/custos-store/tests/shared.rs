//! Shared rate limits on a real Redis: replicas with their own connections admit exactly what
//! the limit allows, all limits of a call or none, and token charges settle afterwards.

use custos_store::shared::{Admission, BudgetHold, Claimed, Held, Limit, Shared};
use std::time::Duration;

async fn replicas(test: &str, n: usize) -> Option<Vec<Shared>> {
    let url = custos_store::testkit::redis(test).await?;
    // A prefix of its own per run, so runs never share counters.
    let prefix = format!("custos-test:{}:", uuid::Uuid::now_v7().simple());
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            Shared::connect(&url, &prefix, Duration::from_secs(2))
                .await
                .unwrap(),
        );
    }
    Some(out)
}

#[tokio::test]
async fn three_replicas_admit_exactly_the_limit() {
    let Some(rs) = replicas("three_replicas_admit_exactly_the_limit", 3).await else {
        return;
    };
    let limit = [Limit {
        key: "key:requests:k1",
        limit: 10,
        cost: 1,
    }];
    let mut tasks = Vec::new();
    for i in 0..30 {
        let r = rs[i % 3].clone();
        tasks.push(tokio::spawn(async move { r.admit(&limit).await.unwrap() }));
    }
    let mut admitted = 0;
    let mut waits = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Admission::Admitted { .. } => admitted += 1,
            Admission::Wait { wait, index, .. } => {
                assert_eq!(index, 0);
                waits.push(wait);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(admitted, 10);
    // The next slot opens within one emission interval (6 s for 10 a minute).
    assert!(
        waits.iter().all(|w| *w <= Duration::from_secs(6)),
        "{waits:?}"
    );
}

#[tokio::test]
async fn a_call_is_charged_on_every_limit_or_none() {
    let Some(rs) = replicas("a_call_is_charged_on_every_limit_or_none", 1).await else {
        return;
    };
    let r = &rs[0];
    let both = |tokens| {
        [
            Limit {
                key: "key:requests:k",
                limit: 100,
                cost: 1,
            },
            Limit {
                key: "key:tokens:k",
                limit: 1000,
                cost: tokens,
            },
        ]
    };
    assert!(matches!(
        r.admit(&both(900)).await.unwrap(),
        Admission::Admitted { .. }
    ));
    // 200 more tokens do not fit: refused on the token limit, and the request limit is not
    // charged either.
    match r.admit(&both(200)).await.unwrap() {
        Admission::Wait { index, .. } => assert_eq!(index, 1),
        other => panic!("{other:?}"),
    }
    let requests = [Limit {
        key: "key:requests:k",
        limit: 100,
        cost: 1,
    }];
    let Admission::Admitted { now, tats } = r.admit(&requests).await.unwrap() else {
        panic!("the request limit was charged by a refused call");
    };
    // Two requests charged of 100 a minute: 1.2 s of the period used.
    assert!(
        (tats[0] - now - 1_200_000).abs() < 50_000,
        "{}",
        tats[0] - now
    );
    assert!(matches!(
        r.admit(&[Limit {
            key: "key:tokens:k2",
            limit: 1000,
            cost: 1001
        }])
        .await
        .unwrap(),
        Admission::TooLarge { index: 0 }
    ));
    // Usage beyond the estimate is debt: 100 tokens more leave no room for 50.
    r.settle(&[("key:tokens:k", 1000)], 100).await.unwrap();
    assert!(matches!(
        r.admit(&[Limit {
            key: "key:tokens:k",
            limit: 1000,
            cost: 50
        }])
        .await
        .unwrap(),
        Admission::Wait { .. }
    ));
    // A refund makes room again.
    r.settle(&[("key:tokens:k", 1000)], -500).await.unwrap();
    assert!(matches!(
        r.admit(&[Limit {
            key: "key:tokens:k",
            limit: 1000,
            cost: 50
        }])
        .await
        .unwrap(),
        Admission::Admitted { .. }
    ));
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_in_bounded_time() {
    let started = std::time::Instant::now();
    let r = Shared::connect("redis://127.0.0.1:1", "x:", Duration::from_millis(300)).await;
    assert!(r.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        Shared::connect("not a url", "x:", Duration::from_millis(300))
            .await
            .is_err()
    );
}

const NANOS: i64 = 1_000_000_000;

fn far_future() -> i64 {
    // A window that ends a day from now.
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64)
        + 86_400_000
}

#[tokio::test]
async fn budget_holds_on_three_replicas_never_pass_the_amount() {
    let Some(rs) = replicas("budget_holds_on_three_replicas_never_pass_the_amount", 3).await else {
        return;
    };
    let end = far_future();
    // $30 blocking; each call holds $4: at most 7 can be in flight at once (28 ≤ 30).
    let budget = [BudgetHold {
        key: "b:acme:b1:0",
        amount: Some(30 * NANOS),
        floor: 0,
        expire_at_ms: end,
    }];
    let mut tasks = Vec::new();
    for i in 0..20 {
        let r = rs[i % 3].clone();
        let b = budget.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("h{i}");
            let held = r
                .budget_hold(&id, &b, 4 * NANOS, Duration::from_secs(60), false)
                .await
                .unwrap();
            (id, held)
        }));
    }
    let mut held = Vec::new();
    for t in tasks {
        let (id, h) = t.await.unwrap();
        match h {
            Held::Yes { over } => {
                assert!(over.is_empty());
                held.push(id);
            }
            Held::Refused { index, spent, held } => {
                assert_eq!(index, 0);
                assert_eq!(spent, 0);
                assert_eq!(held, 28 * NANOS);
            }
        }
    }
    assert_eq!(held.len(), 7);
    // Each call costs $5 in the end: the overspend is bounded by what the estimates missed.
    let mut last = 0;
    for id in &held {
        last = rs[0]
            .budget_spend(id, &["b:acme:b1:0"], 4 * NANOS, 5 * NANOS)
            .await
            .unwrap()[0];
    }
    assert_eq!(last, 35 * NANOS);
    // Spent: every later call is refused, on any replica.
    let r = rs[2]
        .budget_hold("late", &budget, 0, Duration::from_secs(60), false)
        .await
        .unwrap();
    assert_eq!(
        r,
        Held::Refused {
            index: 0,
            spent: 35 * NANOS,
            held: 0
        }
    );
    // A spend override holds anyway and says which budget it passed.
    let r = rs[1]
        .budget_hold("forced", &budget, NANOS, Duration::from_secs(60), true)
        .await
        .unwrap();
    assert_eq!(r, Held::Yes { over: vec![0] });
}

#[tokio::test]
async fn budget_holds_are_all_or_none_and_expire_with_their_replica() {
    let Some(rs) = replicas(
        "budget_holds_are_all_or_none_and_expire_with_their_replica",
        1,
    )
    .await
    else {
        return;
    };
    let r = &rs[0];
    let end = far_future();
    let two = [
        BudgetHold {
            key: "b:acme:team:0",
            amount: Some(10 * NANOS),
            floor: 0,
            expire_at_ms: end,
        },
        BudgetHold {
            key: "b:acme:app:0",
            amount: Some(3 * NANOS),
            // The database knows $2 spent that Redis has not seen.
            floor: 2 * NANOS,
            expire_at_ms: end,
        },
    ];
    // $2 fits the team but not the app ($2 spent + $2 > $3): nothing is held anywhere.
    let refused = r
        .budget_hold("a", &two, 2 * NANOS, Duration::from_secs(60), false)
        .await
        .unwrap();
    assert_eq!(
        refused,
        Held::Refused {
            index: 1,
            spent: 2 * NANOS,
            held: 0
        }
    );
    let ok = r
        .budget_hold("b", &two, NANOS, Duration::from_millis(50), false)
        .await
        .unwrap();
    assert_eq!(ok, Held::Yes { over: vec![] });
    // The app is now full (2 + 1 held); once the hold's lifetime passes, a dead replica's
    // hold is released by the next call.
    assert!(matches!(
        r.budget_hold("c", &two, NANOS, Duration::from_secs(60), false)
            .await
            .unwrap(),
        Held::Refused { index: 1, .. }
    ));
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        r.budget_hold("d", &two, NANOS, Duration::from_secs(60), false)
            .await
            .unwrap(),
        Held::Yes { over: vec![] }
    );
    // Settling the expired hold adds its cost without releasing it twice.
    let spent = r
        .budget_spend("b", &["b:acme:team:0", "b:acme:app:0"], NANOS, NANOS / 2)
        .await
        .unwrap();
    assert_eq!(spent, vec![NANOS / 2, 2 * NANOS + NANOS / 2]);
    let refused = r
        .budget_hold("e", &two, 0, Duration::from_secs(60), false)
        .await
        .unwrap();
    // App: 2.5 spent + 1 held ("d") ≥ 3.
    assert_eq!(
        refused,
        Held::Refused {
            index: 1,
            spent: 2 * NANOS + NANOS / 2,
            held: NANOS
        }
    );
}

#[tokio::test]
async fn idempotency_claims_are_shared_and_replayed() {
    let Some(rs) = replicas("idempotency_claims_are_shared_and_replayed", 2).await else {
        return;
    };
    let minute = Duration::from_secs(60);
    let key = "i:acme:k1";
    assert_eq!(
        rs[0]
            .idempotency_claim(key, "sha-a", "r0", minute)
            .await
            .unwrap(),
        Claimed::Run
    );
    assert_eq!(
        rs[1]
            .idempotency_claim(key, "sha-a", "r1", minute)
            .await
            .unwrap(),
        Claimed::InFlight
    );
    assert_eq!(
        rs[1]
            .idempotency_claim(key, "sha-b", "r1", minute)
            .await
            .unwrap(),
        Claimed::Mismatch
    );
    // Only the claimant completes or abandons it.
    assert!(!rs[1]
        .idempotency_complete(key, "r1", 200, b"", b"x", minute)
        .await
        .unwrap());
    rs[1].idempotency_abandon(key, "r1").await.unwrap();
    let body = b"{\"id\":\"chatcmpl-1\"}\x00\xff";
    assert!(rs[0]
        .idempotency_complete(
            key,
            "r0",
            201,
            b"content-type: application/json\n",
            body,
            minute
        )
        .await
        .unwrap());
    assert_eq!(
        rs[1]
            .idempotency_claim(key, "sha-a", "r1", minute)
            .await
            .unwrap(),
        Claimed::Done {
            status: 201,
            headers: b"content-type: application/json\n".to_vec(),
            body: body.to_vec()
        }
    );
    // An abandoned claim frees the key for a retry on any replica.
    let other = "i:acme:k2";
    assert_eq!(
        rs[0]
            .idempotency_claim(other, "s", "r0", minute)
            .await
            .unwrap(),
        Claimed::Run
    );
    rs[0].idempotency_abandon(other, "r0").await.unwrap();
    assert_eq!(
        rs[1]
            .idempotency_claim(other, "s", "r1", minute)
            .await
            .unwrap(),
        Claimed::Run
    );
    // A claim whose replica died lapses after its lifetime.
    let lapsing = "i:acme:k3";
    rs[0]
        .idempotency_claim(lapsing, "s", "r0", Duration::from_millis(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(
        rs[1]
            .idempotency_claim(lapsing, "s", "r1", minute)
            .await
            .unwrap(),
        Claimed::Run
    );
}

#[tokio::test]
async fn change_notices_reach_every_listener() {
    let Some(rs) = replicas("change_notices_reach_every_listener", 2).await else {
        return;
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let listener = rs[1].clone();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        listener
            .listen(
                "changes",
                move || {
                    let _ = ready_tx.send(());
                },
                |m| {
                    seen.push(m.to_owned());
                    seen.len() < 2
                },
            )
            .await
            .unwrap();
        seen
    });
    ready_rx.await.unwrap();
    rs[0].publish("changes", "keys:r0").await.unwrap();
    rs[0].publish("changes", "directory:r0").await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, vec!["keys:r0", "directory:r0"]);
}

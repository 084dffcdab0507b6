//! Shared rate limits on a real Redis: replicas with their own connections admit exactly what
//! the limit allows, all limits of a call or none, and token charges settle afterwards.

use custos_store::shared::{Admission, Limit, Shared};
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

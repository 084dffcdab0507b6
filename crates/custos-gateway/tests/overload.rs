//! Slow and numerous clients, as an attacker sends them, against a real gateway on loopback:
//! bodies trickled a byte at a time, connections that never send a header, more connections
//! than one client may hold. Each is cut off or shed with a 503, and `/healthz` (asked from
//! another loopback address, as a load balancer would) keeps answering within 100 ms.

mod common;

use common::{chat, databases, start, KeySpec};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// `/healthz` from 127.0.0.2, timed.
async fn health_from_elsewhere(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = tokio::time::timeout(Duration::from_secs(2), socket.connect(addr))
        .await
        .expect("connect in time")
        .unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    started.elapsed()
}

#[tokio::test]
async fn slow_bodies_slow_headers_and_connection_floods_leave_health_answering() {
    let dbs = databases("overload").await;
    let gw = start(
        &dbs[0],
        "[server]\nbody_timeout = \"3s\"\nheader_read_timeout = \"3s\"\nmax_connections_per_client = 60\n",
    )
    .await;
    let (key, _) = gw.key(KeySpec::default()).await;
    let addr: SocketAddr = gw.base.trim_start_matches("http://").parse().unwrap();

    // 40 bodies trickled one byte every 500 ms: each is answered 408 within the deadline.
    let body = chat("gpt-4o-mini", "hello").to_string();
    let mut trickles = Vec::new();
    for _ in 0..40 {
        let (key, body) = (key.clone(), body.clone());
        trickles.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).await.unwrap();
            let started = Instant::now();
            let mut buf = [0u8; 4096];
            for b in body.bytes() {
                if s.write_all(&[b]).await.is_err() {
                    break;
                }
                match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => {
                        let took = started.elapsed();
                        // The rest of the answer may come in further segments.
                        let mut answer = buf[..n].to_vec();
                        while let Ok(Ok(m)) =
                            tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await
                        {
                            if m == 0 {
                                break;
                            }
                            answer.extend_from_slice(&buf[..m]);
                        }
                        return (String::from_utf8_lossy(&answer).into_owned(), took);
                    }
                    Ok(_) => break,
                    Err(_) => {}
                }
            }
            (String::new(), started.elapsed())
        }));
    }
    // 15 connections that never send a header.
    let mut idle = Vec::new();
    for _ in 0..15 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // More connections than one client may hold: the excess is answered 503 at once.
    let mut extra = Vec::new();
    for _ in 0..10 {
        extra.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut shed = 0;
    for s in &mut extra {
        let mut out = Vec::new();
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(500), s.read_to_end(&mut out)).await
        {
            let text = String::from_utf8_lossy(&out);
            if text.starts_with("HTTP/1.1 503") {
                assert!(text.contains("retry-after: 1"), "{text}");
                assert!(text.contains("/problems/overloaded"), "{text}");
                shed += 1;
            }
        }
    }
    assert!(shed >= 5, "only {shed} of the excess connections were shed");
    // Meanwhile the health check, from another address, answers promptly, every time.
    for _ in 0..10 {
        let took = health_from_elsewhere(addr).await;
        assert!(took < Duration::from_millis(100), "/healthz took {took:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in trickles {
        let (answer, took) = t.await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "{answer:?} after {took:?}"
        );
        assert!(answer.contains("/problems/body-timeout"), "{answer}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
    // The idle connections were closed by the header timeout.
    for mut s in idle {
        let mut out = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(r.is_ok(), "an idle connection was never closed");
    }
    // And the gateway serves as before.
    let r = gw
        .post("/v1/chat/completions", &key, &chat("gpt-4o-mini", "hi"))
        .await;
    assert_eq!(r.status(), 200);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("custos_connections_shed_total"),
        "{metrics}"
    );
}

/// A flood of calls with bogus keys adds a bounded number of ledger entries: one
/// `auth.refused` per source and reason per window, with the count; calls by a known
/// principal that are refused still leave one event each.
#[tokio::test]
async fn unauthenticated_floods_are_counted_not_recorded_one_by_one() {
    for db in databases("refusal_flood").await {
        let gw = start(&db, "").await;
        let (key, _) = gw
            .key(KeySpec {
                models: Some("gpt-4o"),
                ..KeySpec::default()
            })
            .await;
        gw.state.audit.flush().await;
        let before = gw.store.ledger_size().await.unwrap();
        let body = chat("gpt-4o-mini", "hi");
        for i in 0..300 {
            let bogus = format!("ck_live_bogus{i:04}");
            let r = gw.post("/v1/chat/completions", &bogus, &body).await;
            assert_eq!(r.status(), 401);
        }
        for _ in 0..50 {
            let r = gw
                .client
                .post(format!("{}/v1/chat/completions", gw.base))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
        // A known key asking for a model it may not use: its own event, every time.
        for _ in 0..3 {
            let r = gw.post("/v1/chat/completions", &key, &body).await;
            assert_eq!(r.status(), 403);
        }
        gw.state.refusals.flush(&gw.state.audit).await;
        gw.state.audit.flush().await;
        let after = gw.store.ledger_size().await.unwrap();
        let events: Vec<serde_json::Value> = gw
            .store
            .ledger_entries(before as i64, 1000)
            .await
            .unwrap()
            .iter()
            .map(|e| serde_json::from_str(&e.event).unwrap())
            .collect();
        assert_eq!(after - before, 5, "{} {events:?}", db.name);
        let refused: Vec<_> = events
            .iter()
            .filter(|e| e["activity"] == "auth.refused")
            .collect();
        assert_eq!(refused.len(), 2, "{events:?}");
        let count = |reason: &str| {
            refused
                .iter()
                .find(|e| e["reason"] == reason)
                .map(|e| e["count"].as_u64().unwrap())
        };
        assert_eq!(count("invalid-api-key"), Some(300));
        assert_eq!(count("missing-api-key"), Some(50));
        assert!(refused
            .iter()
            .all(|e| e["src_endpoint"]["ip"] == "127.0.0.1"));
        let denied: Vec<_> = events
            .iter()
            .filter(|e| e["activity"] == "model.invoke" && e["outcome"] == "denied")
            .collect();
        assert_eq!(denied.len(), 3);
        // The refused call's event names the model it asked for (issue 29, item 18).
        assert!(
            denied
                .iter()
                .all(|e| e["resources"][0]["id"] == "gpt-4o-mini"
                    && e["reason"] == "model-not-allowed"),
            "{denied:?}"
        );
    }
}

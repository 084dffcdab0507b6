//! `custos audit stream` as a SIEM's feed: OCSF and CloudEvents lines from a real ledger to
//! standard output, a file with a cursor (resumed without repeats), syslog over UDP and an
//! HTTP collector on loopback, following new events; and bad destinations and cursors
//! refused with what to do.

mod common;

use common::{custos, fails, ok};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn setup() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    ok(d.path(), &["teams", "create", "ml"]);
    ok(d.path(), &["apps", "create", "bot", "--team", "ml"]);
    ok(
        d.path(),
        &["keys", "create", "--team", "ml", "--app", "bot"],
    );
    d
}

fn ledger_size(d: &Path) -> usize {
    ok(d, &["audit", "query", "--json"]).lines().count()
}

#[test]
fn the_ledger_streams_as_ocsf_and_cloudevents_and_resumes_from_its_cursor() {
    let d = setup();
    let dir = d.path();
    let size = ledger_size(dir);
    assert!(size >= 3, "{size}");

    // OCSF to standard output: every event, in ledger order, with OCSF's required fields.
    let all = lines(&ok(dir, &["audit", "stream"]));
    assert_eq!(all.len(), size);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e["metadata"]["sequence"], i as u64, "{e}");
        assert_eq!(e["metadata"]["product"]["name"], "custos");
        assert_eq!(e["metadata"]["version"], "1.4.0");
        for k in [
            "class_uid",
            "category_uid",
            "activity_id",
            "type_uid",
            "severity_id",
            "time",
        ] {
            assert!(e[k].is_u64(), "{k} in {e}");
        }
    }
    let key = all
        .iter()
        .find(|e| e["api"]["operation"] == "key.create")
        .expect("a key.create event");
    assert_eq!(key["class_uid"], 6003);
    assert_eq!(key["activity_id"], 1);
    assert_eq!(key["type_uid"], 600301);
    assert_eq!(key["status"], "Success");
    assert!(key["actor"]["user"]["name"]
        .as_str()
        .unwrap()
        .starts_with("local:"));

    // CloudEvents, filtered like `audit query`.
    let keys = lines(&ok(
        dir,
        &[
            "audit",
            "stream",
            "--format",
            "cloudevents",
            "--activity",
            "key.",
        ],
    ));
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["specversion"], "1.0");
    assert_eq!(keys[0]["type"], "dev.custos.key.create");
    assert_eq!(keys[0]["source"], "/custos");

    // To a file with a cursor: the second run sends only what is new.
    let out = dir.join("siem.jsonl");
    let cursor = dir.join("siem.cursor");
    let args = [
        "audit",
        "stream",
        "--to",
        out.to_str().unwrap(),
        "--cursor",
        cursor.to_str().unwrap(),
    ];
    ok(dir, &args);
    assert_eq!(lines(&std::fs::read_to_string(&out).unwrap()).len(), size);
    assert_eq!(
        std::fs::read_to_string(&cursor).unwrap().trim(),
        size.to_string()
    );
    ok(dir, &["teams", "create", "search"]);
    ok(dir, &args);
    let sent = lines(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(sent.len(), size + 1, "nothing repeated, nothing lost");
    assert_eq!(sent[size]["api"]["operation"], "team.create");
    assert_eq!(sent[size]["metadata"]["sequence"], size as u64);

    // --from overrides the cursor.
    let from = lines(&ok(
        dir,
        &[
            "audit",
            "stream",
            "--from",
            &size.to_string(),
            "--format",
            "ledger",
        ],
    ));
    assert_eq!(from.len(), 1);
    assert_eq!(from[0]["index"], size as u64);
    assert_eq!(from[0]["event"]["activity"], "team.create");
}

#[test]
fn syslog_and_http_collectors_receive_the_stream() {
    let d = setup();
    let dir = d.path();

    // Syslog over UDP, RFC 5424 with facility log audit.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let to = format!("syslog://{}", udp.local_addr().unwrap());
    ok(
        dir,
        &["audit", "stream", "--to", &to, "--activity", "team."],
    );
    let mut buf = vec![0u8; 65_536];
    let n = udp.recv(&mut buf).unwrap();
    let msg = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(msg.starts_with("<110>1 "), "{msg}");
    let (_, json) = msg.split_once(" custos - ledger - ").expect(msg);
    let e: Value = serde_json::from_str(json).unwrap();
    assert_eq!(e["api"]["operation"], "team.create");

    // An HTTP collector: batches of newline-delimited JSON, with the Authorization header
    // taken from the environment.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let collector = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).unwrap();
            req.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&req).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    s.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .unwrap();
                    return text;
                }
            }
            if n == 0 {
                return text;
            }
        }
    });
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args([
            "audit",
            "stream",
            "--format",
            "cloudevents",
            "--to",
            &format!("http://{addr}/collect"),
            "--authorization-env",
            "CUSTOS_TEST_SIEM_AUTH",
        ])
        .current_dir(dir)
        .env_remove("CUSTOS_CONFIG")
        .env_remove("CUSTOS_DATABASE_URL")
        .env("CUSTOS_TEST_SIEM_AUTH", "Bearer test-collector")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let req = collector.join().unwrap();
    let (head, body) = req.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("post /collect "), "{head}");
    assert!(
        head.contains("authorization: bearer test-collector"),
        "{head}"
    );
    assert!(
        head.contains("content-type: application/x-ndjson"),
        "{head}"
    );
    assert_eq!(lines(body).len(), ledger_size(dir));
}

#[test]
fn follow_sends_new_events_as_they_are_recorded() {
    let d = setup();
    let dir = d.path();
    let size = ledger_size(dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["audit", "stream", "--follow", "--from", &size.to_string()])
        .current_dir(dir)
        .env_remove("CUSTOS_CONFIG")
        .env_remove("CUSTOS_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    ok(dir, &["teams", "create", "later"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .expect("the new event within 20 s");
    let _ = child.kill();
    let _ = child.wait();
    let e: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(e["api"]["operation"], "team.create");
    assert_eq!(e["metadata"]["sequence"], size as u64);
}

#[test]
fn bad_destinations_and_cursors_are_refused_with_what_to_do() {
    let d = setup();
    let dir = d.path();
    let (code, err) = fails(dir, &["audit", "stream", "--to", "ftp://example/x"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("syslog://HOST:PORT") && err.contains("http(s)://"),
        "{err}"
    );
    let cursor = dir.join("bad.cursor");
    std::fs::write(&cursor, "forty-two").unwrap();
    let (_, err) = fails(
        dir,
        &["audit", "stream", "--cursor", cursor.to_str().unwrap()],
    );
    assert!(
        err.contains("bad.cursor") && err.contains("not a ledger index"),
        "{err}"
    );
    let (_, err) = fails(
        dir,
        &[
            "audit",
            "stream",
            "--to",
            "http://127.0.0.1:9/x",
            "--authorization-env",
            "CUSTOS_TEST_UNSET_VARIABLE",
        ],
    );
    assert!(err.contains("CUSTOS_TEST_UNSET_VARIABLE"), "{err}");
    let out = custos(dir, &["audit", "stream", "--format", "xml"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Ctrl-C stops a stream that is retrying a collector that does not answer.
#[test]
fn interrupt_stops_a_stream_stuck_on_a_dead_collector() {
    let d = setup();
    let dir = d.path();
    // A port nothing listens on: every POST fails and is retried.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let mut child = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args([
            "audit",
            "stream",
            "--follow",
            "--to",
            &format!("http://{addr}/x"),
        ])
        .current_dir(dir)
        .env_remove("CUSTOS_CONFIG")
        .env_remove("CUSTOS_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the stream did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("retrying") && err.contains("interrupted"),
        "{err}"
    );
}

//! `custos audit stream`: the ledger as a SIEM reads it. Events go out one JSON document per
//! line (OCSF, CloudEvents or as recorded) to standard output, a file, syslog or an HTTP
//! collector, in ledger order; a cursor file makes a stopped stream resume where it was.

use crate::Ctx;
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use custos_control::export::{ocsf, CloudEvent};
use custos_gateway::webhook::{HttpSink, Outcome};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// What each line holds.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// OCSF 1.4: API Activity (6003) for changes and reads, Authentication (3002) for refused
    /// credentials.
    Ocsf,
    /// CloudEvents 1.0 in structured JSON, as webhooks receive them.
    Cloudevents,
    /// The ledger's own event with its index: `{"index": …, "event": {…}}`.
    Ledger,
}

/// Ledger entries read, and lines sent, at a time.
const BATCH: i64 = 500;
/// The largest syslog message sent over UDP; longer events need `syslog+tcp://`.
const UDP_MAX: usize = 60_000;

enum Sink {
    Stdout,
    File(std::fs::File),
    SyslogUdp(std::net::UdpSocket, String),
    SyslogTcp(std::net::TcpStream, String),
    Http(Box<HttpSink>),
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
        .unwrap_or_else(|| "-".into())
}

impl Sink {
    fn open(to: &str, authorization_env: Option<&str>) -> Result<Self> {
        if to == "-" {
            return Ok(Sink::Stdout);
        }
        if let Some(addr) = to.strip_prefix("syslog://") {
            let socket = std::net::UdpSocket::bind(("0.0.0.0", 0))
                .context("cannot open a UDP socket for syslog")?;
            socket
                .connect(addr)
                .with_context(|| format!("syslog://{addr}: not a reachable host:port"))?;
            return Ok(Sink::SyslogUdp(socket, hostname()));
        }
        if let Some(addr) = to.strip_prefix("syslog+tcp://") {
            let stream = std::net::TcpStream::connect(addr)
                .with_context(|| format!("syslog+tcp://{addr}: cannot connect"))?;
            stream.set_write_timeout(Some(Duration::from_secs(30)))?;
            return Ok(Sink::SyslogTcp(stream, hostname()));
        }
        if to.starts_with("http://") || to.starts_with("https://") {
            let authorization = match authorization_env {
                Some(var) => Some(std::env::var(var).with_context(|| {
                    format!("--authorization-env {var}: the environment variable is not set")
                })?),
                None => None,
            };
            return Ok(Sink::Http(Box::new(
                HttpSink::new(to, authorization).map_err(anyhow::Error::msg)?,
            )));
        }
        if to.contains("://") {
            bail!("--to {to}: give -, a file, syslog://HOST:PORT, syslog+tcp://HOST:PORT or an http(s):// URL");
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(to)
            .with_context(|| format!("cannot open {to} to append to"))?;
        Ok(Sink::File(file))
    }

    /// One RFC 5424 message: facility log audit (13), severity from the event.
    fn syslog_line(host: &str, severity: u8, time: &str, line: &str) -> String {
        let pri = 13 * 8 + u32::from(severity);
        format!("<{pri}>1 {time} {host} custos - ledger - {line}")
    }

    /// Sends a batch; returns only once it is delivered (or fails for good).
    async fn send(&mut self, lines: &[(String, u8, String)]) -> Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                for (l, _, _) in lines {
                    writeln!(out, "{l}")?;
                }
                out.flush()?;
            }
            Sink::File(f) => {
                let mut buf = String::new();
                for (l, _, _) in lines {
                    buf.push_str(l);
                    buf.push('\n');
                }
                f.write_all(buf.as_bytes())?;
                f.sync_data()?;
            }
            Sink::SyslogUdp(socket, host) => {
                for (l, sev, time) in lines {
                    let msg = Self::syslog_line(host, *sev, time, l);
                    if msg.len() > UDP_MAX {
                        bail!("an event of {} bytes does not fit a UDP syslog message; use syslog+tcp://", msg.len());
                    }
                    socket.send(msg.as_bytes()).context("syslog over UDP")?;
                }
            }
            Sink::SyslogTcp(stream, host) => {
                // RFC 6587 octet counting: events may hold newlines in their text.
                let mut buf = Vec::new();
                for (l, sev, time) in lines {
                    let msg = Self::syslog_line(host, *sev, time, l);
                    buf.extend_from_slice(format!("{} {msg}", msg.len()).as_bytes());
                }
                stream.write_all(&buf).context("syslog over TCP")?;
            }
            Sink::Http(sink) => {
                let mut body = String::new();
                for (l, _, _) in lines {
                    body.push_str(l);
                    body.push('\n');
                }
                let body = bytes::Bytes::from(body);
                let mut wait = Duration::from_secs(1);
                loop {
                    match sink.post(body.clone()).await {
                        Outcome::Delivered => break,
                        Outcome::Refused(why) => bail!("{why}; the cursor stays before this batch"),
                        Outcome::Failed(why) => {
                            eprintln!("warning: {why}; retrying in {}s", wait.as_secs());
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(Duration::from_secs(60));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn read_cursor(path: &Path) -> Result<Option<u64>> {
    match std::fs::read_to_string(path) {
        Ok(s) => s
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("{}: not a ledger index ({:?})", path.display(), s.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replaces the cursor file atomically, so a crash leaves the old or the new index.
fn write_cursor(path: &Path, next: u64) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{next}\n"))
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

/// The syslog severity of an event: warning for break-glass, refusals and denials, notice
/// for overdue follow-ups, informational otherwise.
fn syslog_severity(event: &serde_json::Value) -> u8 {
    let act = event["activity"].as_str().unwrap_or("");
    if act == "grant.break_glass" || event["outcome"] == "denied" || act == "auth.refused" {
        4
    } else if act.ends_with(".overdue") {
        5
    } else {
        6
    }
}

pub struct StreamArgs<'a> {
    pub format: Format,
    pub from: Option<u64>,
    pub follow: bool,
    pub to: &'a str,
    pub cursor: Option<&'a PathBuf>,
    pub authorization_env: Option<&'a str>,
}

/// Runs the stream; `keep` decides which events go out (the query filters); sealed
/// identifiers are opened unless `sealed`.
pub async fn run(
    ctx: &Ctx,
    args: StreamArgs<'_>,
    sealed: bool,
    keep: impl Fn(&custos_store::LedgerEntry, &serde_json::Value) -> bool,
) -> Result<ExitCode> {
    let store = crate::identity::open(ctx).await?;
    let mut next = match (args.from, args.cursor) {
        (Some(f), _) => f,
        (None, Some(c)) => read_cursor(c)?.unwrap_or(0),
        (None, None) => 0,
    };
    let mut sink = Sink::open(args.to, args.authorization_env)?;
    let version = env!("CARGO_PKG_VERSION");
    let source = &ctx.config.events.source;
    let mut sent = 0u64;
    // Ctrl-C stops the stream wherever it is (also while a collector is being retried); the
    // cursor file already holds the index after the last delivered batch.
    let pump = async {
        loop {
            let page = store.ledger_entries(next as i64, BATCH).await?;
            let Some(last) = page.last().map(|e| e.index as u64) else {
                if !args.follow {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let mut values: Vec<serde_json::Value> = page
                .iter()
                .map(|e| serde_json::from_str(&e.event).unwrap_or(serde_json::Value::Null))
                .collect();
            if !sealed {
                custos_control::seal::reveal(&store, &mut values).await?;
            }
            let mut lines = Vec::new();
            for (e, v) in page.iter().zip(values) {
                if v.is_null() || !keep(e, &v) {
                    continue;
                }
                let index = e.index as u64;
                let time = v["time"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| custos_core::time::format_rfc3339(e.recorded_at));
                let sev = syslog_severity(&v);
                let line = match args.format {
                    Format::Ocsf => ocsf(index, &v, version).to_string(),
                    Format::Cloudevents => CloudEvent::from_ledger(index, v)
                        .to_json(source)
                        .to_string(),
                    Format::Ledger => serde_json::json!({"index": index, "event": v}).to_string(),
                };
                lines.push((line, sev, time));
            }
            if !lines.is_empty() {
                sink.send(&lines).await?;
                sent += lines.len() as u64;
            }
            next = last + 1;
            if let Some(c) = args.cursor {
                write_cursor(c, next)?;
            }
        }
        Ok::<(), anyhow::Error>(())
    };
    tokio::select! {
        r = pump => r?,
        _ = tokio::signal::ctrl_c() => eprintln!("interrupted"),
    }
    if !matches!(sink, Sink::Stdout) {
        eprintln!("sent {sent} event(s); the next index is {next}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_lines_follow_rfc_5424() {
        let l = Sink::syslog_line("host1", 6, "2026-12-04T10:00:00Z", "{\"a\":1}");
        assert_eq!(
            l,
            "<110>1 2026-12-04T10:00:00Z host1 custos - ledger - {\"a\":1}"
        );
    }

    #[test]
    fn the_cursor_file_round_trips_and_bad_ones_are_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cursor");
        assert_eq!(read_cursor(&p).unwrap(), None);
        write_cursor(&p, 42).unwrap();
        assert_eq!(read_cursor(&p).unwrap(), Some(42));
        std::fs::write(&p, "forty").unwrap();
        let e = read_cursor(&p).unwrap_err().to_string();
        assert!(e.contains("not a ledger index"), "{e}");
    }
}
